// loss.cu — the label-smoothed loss of AoANet (AOANET.md 2.3) fused with log_softmax over the
// vocabulary: no [rows x V] log-probability tensor is written.
//
// Per row r with logits x (V classes), target y, weight w (the caption mask; null = 1):
//   lse = log sum_k exp(x_k);  lp_k = x_k - lse
//   q_y = 1 - s,  q_k = s / (V - 1) for k != y                (s = smoothing; s = 0: plain NLL)
//   row_loss = w * sum_k q_k (log q_k - lp_k)                  (KL(q || p), as KLDivLoss)
//            = w * [ (1-s) log(1-s) + s log(s/(V-1)) - (1-s) lp_y - s/(V-1) (sum_k lp_k - lp_y) ]
//   with sum_k lp_k = sum_k x_k - V lse (terms q log q are 0 when q = 0).
// Backward: d row_loss / d x_k = w (softmax_k - q_k); the kernel writes
//   dlogits = upstream * scale * w * (softmax - q), where `scale` is the 1 / sum(mask) of the
//   token mean and `upstream` points at the loss's upstream gradient on the device (null: 1),
//   so that the backward pass never waits for the GPU to read it.
//
// Kernels (wrappers: src/cuda/kernels/loss.rs; tests: tests/cuda_loss.rs):
//   label_smooth_fwd_f32   row_loss[r] and lse[r] (saved for backward; may be null)
//   label_smooth_bwd_f32   dlogits [rows, V] (overwritten)
// One block per row (grid-stride), blockDim a multiple of 32. A target outside [0, V) gives
// a NaN loss.
//
// The same loss from LOG-PROBABILITIES, as `train::label_smoothing_loss` / `lm_loss` take them
// (the model applies log_softmax itself), in f32 and f64, accumulating in double like the CPU:
//   smoothed_kl_fwd_{f32,f64}  row_loss[r] = w_r (C - q_other sum_k lp_k - (q_y - q_other) lp_y)
//                              (double; 0 where w_r = 0, and no read of the other classes when
//                              q_other = 0, so -inf there cannot make 0 * -inf = NaN)
//   smoothed_kl_bwd_{f32,f64}  grad[r, k] = upstream scale w_r q_k  (q_k = q_y at the target,
//                              q_other elsewhere; 0 where w_r = 0), every element written;
//                              upstream is read on the device (null: 1)
// C = sum_k q_k log q_k, q_y, q_other and scale (= -upstream / sum w) come from the host in f64.

#include "common.cuh"

extern "C" __global__ void label_smooth_fwd_f32(float* row_loss, float* lse_out, const float* logits,
                                                const int* targets, const float* weights, i64 rows,
                                                int vocab, float smoothing) {
    __shared__ float scratch[64];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = logits + r * vocab;
        float m = NEG_INF, s = 0.0f, sx = 0.0f;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
            const float x = xr[j];
            softmax_add(m, s, x);
            sx += x;
        }
        // merge (m, s) across the block, then the plain sum of x
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
            const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
            softmax_merge(m, s, m2, s2);
        }
        __syncthreads();
        if (lane == 0) {
            scratch[warp] = m;
            scratch[32 + warp] = s;
        }
        __syncthreads();
        m = lane < nwarps ? scratch[lane] : NEG_INF;
        s = lane < nwarps ? scratch[32 + lane] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
            const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
            softmax_merge(m, s, m2, s2);
        }
        sx = block_sum(sx, scratch);  // syncs before reusing scratch
        if (threadIdx.x == 0) {
            const float lse = m + logf(s);
            const int y = targets[r];
            float loss;
            if (y < 0 || y >= vocab) {
                loss = __int_as_float(0x7fc00000);
            } else {
                const float conf = 1.0f - smoothing;
                const float other = vocab > 1 ? smoothing / (vocab - 1) : 0.0f;
                const float lp_y = xr[y] - lse;
                const float sum_lp = sx - (float)vocab * lse;
                float qlogq = 0.0f;
                if (conf > 0.0f) qlogq += conf * logf(conf);
                if (other > 0.0f) qlogq += smoothing * logf(other);
                loss = qlogq - conf * lp_y - other * (sum_lp - lp_y);
            }
            row_loss[r] = (weights ? weights[r] : 1.0f) * loss;
            if (lse_out) lse_out[r] = lse;
        }
    }
}

extern "C" __global__ void label_smooth_bwd_f32(float* dlogits, const float* logits, const float* lse,
                                                const int* targets, const float* weights,
                                                const float* upstream, i64 rows, int vocab,
                                                float smoothing, float scale) {
    const float up = upstream ? *upstream : 1.0f;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = logits + r * vocab;
        float* dr = dlogits + r * vocab;
        const float l = lse[r];
        const int y = targets[r];
        const float w = up * scale * (weights ? weights[r] : 1.0f);
        const float conf = 1.0f - smoothing;
        const float other = vocab > 1 ? smoothing / (vocab - 1) : 0.0f;
        for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
            const float q = (j == y) ? conf : other;
            dr[j] = w * (expf(xr[j] - l) - q);
        }
    }
}

// ------------------------------------------------------------------------------------------
// From log-probabilities (train::label_smoothing_loss on the GPU)

template <typename T>
__device__ __forceinline__ void smoothed_kl_fwd_impl(double* row_loss, const T* lp, const int* targets,
                                                     const double* weights, i64 rows, int classes,
                                                     double q_y, double q_other,
                                                     double entropy_term) {
    __shared__ double scratch[32];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const double w = weights[r];
        if (w == 0.0) {  // uniform per block: every thread skips the row together
            if (threadIdx.x == 0) row_loss[r] = 0.0;
            continue;
        }
        const T* row = lp + r * classes;
        const double lp_y = (double)row[targets[r]];
        double loss;
        if (q_other == 0.0) {
            loss = entropy_term - q_y * lp_y;
        } else {
            double s = 0.0;
            for (int j = threadIdx.x; j < classes; j += blockDim.x) s += (double)row[j];
            s = block_sum(s, scratch);
            loss = entropy_term - q_other * s - (q_y - q_other) * lp_y;
        }
        if (threadIdx.x == 0) row_loss[r] = w * loss;
    }
}

extern "C" __global__ void smoothed_kl_fwd_f32(double* row_loss, const float* lp, const int* targets,
                                               const double* weights, i64 rows, int classes,
                                               double q_y, double q_other, double entropy_term) {
    smoothed_kl_fwd_impl(row_loss, lp, targets, weights, rows, classes, q_y, q_other, entropy_term);
}
extern "C" __global__ void smoothed_kl_fwd_f64(double* row_loss, const double* lp,
                                               const int* targets, const double* weights, i64 rows,
                                               int classes, double q_y, double q_other,
                                               double entropy_term) {
    smoothed_kl_fwd_impl(row_loss, lp, targets, weights, rows, classes, q_y, q_other, entropy_term);
}

template <typename T>
__device__ __forceinline__ void smoothed_kl_bwd_impl(T* grad, const int* targets,
                                                     const double* weights, const T* upstream,
                                                     i64 rows, int classes, double scale,
                                                     double q_y, double q_other) {
    if (upstream) scale *= (double)*upstream;
    const i64 n = rows * classes;
    GRID_STRIDE(e, n) {
        const i64 r = e / classes;
        const int j = (int)(e % classes);
        const double w = weights[r];
        T v = (T)0;
        if (w != 0.0) {
            if (j == targets[r]) v = (T)(scale * w * q_y);
            else if (q_other != 0.0) v = (T)(scale * w * q_other);
        }
        grad[e] = v;
    }
}

extern "C" __global__ void smoothed_kl_bwd_f32(float* grad, const int* targets, const double* weights,
                                               const float* upstream, i64 rows, int classes,
                                               double scale, double q_y, double q_other) {
    smoothed_kl_bwd_impl(grad, targets, weights, upstream, rows, classes, scale, q_y, q_other);
}
extern "C" __global__ void smoothed_kl_bwd_f64(double* grad, const int* targets,
                                               const double* weights, const double* upstream,
                                               i64 rows, int classes, double scale, double q_y,
                                               double q_other) {
    smoothed_kl_bwd_impl(grad, targets, weights, upstream, rows, classes, scale, q_y, q_other);
}
