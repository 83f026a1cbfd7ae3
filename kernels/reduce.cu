// reduce.cu — reductions: over rows (last axis), over any axis, column sums, argmax.
//
// Kernels (wrappers: src/cuda/kernels/reduce.rs; tests: tests/cuda_reduce.rs):
//   reduce_rows_f32   out[r] (=|+=) op_j x[r, j]        op: 0 sum, 1 mean, 2 max; block per row
//   reduce_axis_f32   out[o, i] = op_l x[o, l, i]       one thread per output (short axes)
//   sum_cols_f32      out[c, j] (=|+=) sum over rows of chunk c of x[r, j]  (bias gradients;
//                     the wrapper chains launches until one chunk is left; deterministic)
//   argmax_rows_f32   idx[r], val[r] = argmax_j / max_j x[r, j] (first index on ties)
//
// `accumulate` = 1 adds into `out` (parameter gradients accumulate), 0 overwrites.

#include "common.cuh"

#define R_SUM 0
#define R_MEAN 1
#define R_MAX 2

extern "C" __global__ void reduce_rows_f32(float* out, const float* x, i64 rows, int cols, int op,
                                           int accumulate) {
    __shared__ float scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        float v = op == R_MAX ? NEG_INF : 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            v = op == R_MAX ? fmaxf(v, xr[j]) : v + xr[j];
        v = op == R_MAX ? block_max(v, scratch) : block_sum(v, scratch);
        if (op == R_MEAN) v /= cols;
        if (threadIdx.x == 0) out[row] = accumulate ? out[row] + v : v;
    }
}

extern "C" __global__ void reduce_axis_f32(float* out, const float* x, i64 outer, i64 len,
                                           i64 inner, int op) {
    const i64 n = outer * inner;
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < n; t += (i64)gridDim.x * blockDim.x) {
        const i64 o = t / inner, i = t % inner;
        const float* p = x + o * len * inner + i;
        float v = op == R_MAX ? NEG_INF : 0.0f;
        for (i64 l = 0; l < len; ++l) v = op == R_MAX ? fmaxf(v, p[l * inner]) : v + p[l * inner];
        if (op == R_MEAN) v /= (float)len;
        out[t] = v;
    }
}

// grid (ceil(cols / blockDim.x), chunks); out has [chunks, cols].
extern "C" __global__ void sum_cols_f32(float* out, const float* x, i64 rows, int cols,
                                        i64 rows_per_chunk, int accumulate) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    const i64 c = blockIdx.y;
    const i64 r0 = c * rows_per_chunk;
    const i64 r1 = min(rows, r0 + rows_per_chunk);
    float s = 0.0f;
    for (i64 r = r0; r < r1; ++r) s += x[r * cols + j];
    const i64 o = c * cols + j;
    out[o] = accumulate ? out[o] + s : s;
}

extern "C" __global__ void argmax_rows_f32(int* idx, float* val, const float* x, i64 rows,
                                           int cols) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        float best = NEG_INF;
        int bi = 0x7fffffff;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float v = xr[j];
            if (v > best || (v == best && j < bi)) {
                best = v;
                bi = j;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float v2 = __shfl_xor_sync(0xffffffffu, best, o);
            const int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
            if (v2 > best || (v2 == best && i2 < bi)) {
                best = v2;
                bi = i2;
            }
        }
        __syncthreads();
        if (lane == 0) {
            sv[warp] = best;
            si[warp] = bi;
        }
        __syncthreads();
        if (warp == 0) {
            best = lane < nwarps ? sv[lane] : NEG_INF;
            bi = lane < nwarps ? si[lane] : 0x7fffffff;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const float v2 = __shfl_xor_sync(0xffffffffu, best, o);
                const int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
                if (v2 > best || (v2 == best && i2 < bi)) {
                    best = v2;
                    bi = i2;
                }
            }
            if (lane == 0) {
                idx[row] = bi == 0x7fffffff ? 0 : bi;  // NaNs never win; an all-NaN row gives 0
                val[row] = best;
            }
        }
    }
}
