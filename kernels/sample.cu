// sample.cu — one word per row of log-probabilities, drawn on the device by the inverse CDF
// (self-critical sampling and scheduled sampling: AOANET.md 3.2, 2.4), so that only the word
// ids travel back to the host instead of the [rows, V+1] distribution.
//
// Per row r with entries x_k (log-probabilities, any additive shift) and the host's uniform
// number u_r in [0, 1):
//   m = max_k x_k;  p_k = exp(x_k - m);  total = sum_k p_k
//   word = the first k with p_k > 0 and p_0 + ... + p_k > u_r * total
//   (rounding at the very end: the last k with p_k > 0)
//   a row containing NaN, or with every x_k = -inf, gives word 0;
//   a negative u_r leaves words[r] as it is (scheduled sampling: the rows that keep their
//   label, written there by the host, so the mixed words never leave the device).
// This is the rule of `model::categorical::Rows` on the host (f32 exponentials, sums in
// double); the two agree except when u_r * total falls within rounding of a boundary.
//
// Layout: one block per row (grid-stride over rows), blockDim a multiple of 32 up to 256.
// Thread t owns the contiguous chunk [t * chunk, (t + 1) * chunk) of the row, sums its
// p_k in double, and an inclusive scan over the threads gives each chunk's range of the CDF;
// the one thread whose range holds the target scans its chunk for the word.
//
// Kernels (wrappers: src/cuda/kernels/sample.rs; tests: tests/cuda_sample.rs):
//   sample_rows_f32   words[r] (int) from lp [rows, classes] and uniforms [rows] (double),
//                     rows with a negative number untouched
//   topk_rows_f32     the k largest entries of each row, in the order (value descending,
//                     index ascending) of a stable descending sort: values [rows, k] and
//                     indices [rows, k] (index -1 and value -inf past a row's non-NaN
//                     entries). Beam search reads these k candidates per row instead of the
//                     whole [rows, V+1] distribution. k rounds of a block-wide arg-max, each
//                     over the entries that come after the previous round's pick in that
//                     order; k is small (beam size plus a few), the row stays in L1/L2.
//   decode_advance    the decoding loop's bookkeeping after a step's words are picked
//                     (AttModel._sample: `unfinished &= word > 0; word *= unfinished`), on the
//                     device, so that the loop queues step after step without reading words:
//                     it[r] = seq[r * len + t] = unfinished[r] ? words[r] : 0 with
//                     unfinished[r] &= words[r] > 0 first, and alive[t] += the rows still
//                     unfinished (integer: the same count whatever the order). The host reads
//                     alive[t] a step later to stop the loop.

#include "common.cuh"

#define SAMPLE_MAX_THREADS 256

extern "C" __global__ void __launch_bounds__(SAMPLE_MAX_THREADS) sample_rows_f32(
    int* words, const float* lp, const double* uniforms, i64 rows, int classes) {
    __shared__ float scratch[32];
    __shared__ double prefix[SAMPLE_MAX_THREADS];
    __shared__ int found;
    const int t = threadIdx.x, nt = blockDim.x;
    const int chunk = (classes + nt - 1) / nt;
    const int lo = min(t * chunk, classes), hi = min(lo + chunk, classes);
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        // The same number for every thread of the block: the whole block skips the row.
        if (uniforms[r] < 0.0) continue;
        const float* x = lp + r * classes;
        float m = neg_inf<float>();
        int nan = 0;
        for (int j = t; j < classes; j += nt) {
            const float v = x[j];
            nan |= x_isnan(v);
            m = fmaxf(m, v);
        }
        m = block_max(m, scratch);
        // Both conditions are the same for every thread of the block: the whole block skips.
        if (__syncthreads_or(nan) || m == neg_inf<float>()) {
            if (t == 0) words[r] = 0;
            continue;
        }
        double s = 0.0;
        for (int j = lo; j < hi; ++j) s += (double)expf(x[j] - m);
        // Inclusive scan of the chunk sums (Hillis-Steele over the block's threads).
        prefix[t] = s;
        if (t == 0) found = -1;
        __syncthreads();
        for (int off = 1; off < nt; off <<= 1) {
            const double add = t >= off ? prefix[t - off] : 0.0;
            __syncthreads();
            prefix[t] += add;
            __syncthreads();
        }
        const double total = prefix[nt - 1];
        const double target = uniforms[r] * total;
        const double before = t > 0 ? prefix[t - 1] : 0.0;
        // The chunks' ranges [before, prefix[t]) are disjoint: at most one thread enters.
        if (s > 0.0 && before <= target && target < prefix[t]) {
            double acc = before;
            int word = -1, last = -1;
            for (int j = lo; j < hi; ++j) {
                const float p = expf(x[j] - m);
                if (p > 0.0f) {
                    last = j;
                    acc += (double)p;
                    if (acc > target) {
                        word = j;
                        break;
                    }
                }
            }
            // The element-wise sum fell short of the scan's by rounding: the chunk's last
            // word with positive probability.
            found = word >= 0 ? word : last;
        }
        __syncthreads();
        if (found >= 0) {
            if (t == 0) words[r] = found;
        } else {
            // target >= total by rounding (u close to 1): the row's last positive word.
            float last = -1.0f;
            for (int j = t; j < classes; j += nt)
                if (expf(x[j] - m) > 0.0f) last = (float)j;  // j < 2^24: exact in float
            last = block_max(last, scratch);
            if (t == 0) words[r] = (int)last;
        }
        __syncthreads();  // `found` and `prefix` are rewritten for the next row
    }
}

// Whether (v, j) comes before (w, i) in the order (value descending, index ascending).
__device__ __forceinline__ bool topk_before(float v, int j, float w, int i) {
    return v > w || (v == w && j < i);
}

// The first of the warp's candidates (v, i) in that order, in every lane (i < 0: none).
__device__ __forceinline__ void topk_warp_best(float& v, int& i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (oi >= 0 && (i < 0 || topk_before(ov, oi, v, i))) {
            v = ov;
            i = oi;
        }
    }
}

extern "C" __global__ void __launch_bounds__(SAMPLE_MAX_THREADS) topk_rows_f32(
    float* values, int* indices, const float* x, i64 rows, int cols, int k) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        // The previous pick; (+inf, -1) before the first round: every entry comes after it.
        float pv = __int_as_float(0x7f800000);
        int pi = -1;
        for (int round = 0; round < k; ++round) {
            float bv = neg_inf<float>();
            int bi = -1;  // none yet
            for (int j = threadIdx.x; j < cols; j += blockDim.x) {
                const float v = xr[j];
                if (x_isnan(v) || !topk_before(pv, pi, v, j)) continue;  // not after the pick
                if (bi < 0 || topk_before(v, j, bv, bi)) {
                    bv = v;
                    bi = j;
                }
            }
            topk_warp_best(bv, bi);
            __syncthreads();  // sv/si of the previous round are read
            if (lane == 0) {
                sv[warp] = bv;
                si[warp] = bi;
            }
            __syncthreads();
            bv = lane < nwarps ? sv[lane] : neg_inf<float>();
            bi = lane < nwarps ? si[lane] : -1;
            topk_warp_best(bv, bi);
            if (threadIdx.x == 0) {
                values[r * k + round] = bi >= 0 ? bv : neg_inf<float>();
                indices[r * k + round] = bi;
            }
            if (bi < 0) {
                // Nothing left: the remaining rounds find nothing either.
                for (int rest = round + 1 + threadIdx.x; rest < k; rest += blockDim.x) {
                    values[r * k + rest] = neg_inf<float>();
                    indices[r * k + rest] = -1;
                }
                break;
            }
            pv = bv;
            pi = bi;
        }
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(256) decode_advance(
    int* it, int* unfinished, int* seq, int* alive, const int* words, i64 rows, int len, int t) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    // Every thread of a block runs the same number of rounds (the barrier inside counts).
    const i64 rounds = (rows + stride - 1) / stride;
    for (i64 k = 0; k < rounds; ++k) {
        const i64 r = k * stride + (i64)blockIdx.x * blockDim.x + threadIdx.x;
        int on = 0;
        if (r < rows) {
            const int w = words[r];
            on = unfinished[r] && w > 0;
            unfinished[r] = on;
            const int next = on ? w : 0;
            it[r] = next;
            seq[r * len + t] = next;
        }
        const int count = __syncthreads_count(on);
        if (threadIdx.x == 0 && count > 0) atomicAdd(alive + t, count);
    }
}
