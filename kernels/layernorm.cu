// layernorm.cu — the reference's LayerNorm (AOANET.md 1.8), NOT nn.LayerNorm:
//     y = gamma * (x - mean) / (std + eps) + beta,   std = sqrt(sum (x - mean)^2 / (D - 1))
// i.e. the UNBIASED std, and eps (1e-6) ADDED TO THE STD, not to the variance.
//
// Kernels (wrappers: src/cuda/kernels/layernorm.rs; tests: tests/cuda_layernorm.rs, and the f64
// versions through the tensor ops in tests/cuda_ops.rs), each in f32 and f64:
//   layernorm_fwd_*           y, and per row the mean and std saved for backward (may be null)
//   layernorm_bwd_*           dx (overwritten) from dy, x, gamma and the saved mean/std
//   layernorm_bwd_params_*    dgamma, dbeta from per-chunk partial sums: with one chunk the
//                             wrapper passes the gradients themselves, stored or
//                             (`accumulate`) added to; with more, the partials go to a
//                             [chunks, D] workspace and the last block of each column tile
//                             sums them in chunk order into the gradients (one launch).
//
// Backward, per row, with r = 1 / (std + eps), xc = x - mean, a = dy * gamma (D = cols):
//   d(xc_i r)/dx_j = (delta_ij - 1/D) r + xc_i dr/dx_j,  dr/dx_j = -r^2 xc_j / ((D-1) std)
//   => dx_j = r (a_j - mean(a)) - r^2 xc_j (sum_i a_i xc_i) / ((D - 1) std)
// When std == 0 every xc is 0 and the second term is 0 (we skip it rather than divide 0/0).
//
// Layout: one block per row (grid-stride), blockDim a multiple of 32. Two passes for the
// statistics (mean, then the centred sum of squares) so large offsets do not cancel.

#include "common.cuh"

template <typename T>
__device__ __forceinline__ void layernorm_fwd_impl(T* y, T* mean_out, T* std_out, const T* x,
                                                   const T* gamma, const T* beta, i64 rows,
                                                   int cols, T eps) {
    __shared__ T scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        T s = (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
        const T mean = block_sum(s, scratch) / (T)cols;
        T ss = (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const T d = xr[j] - mean;
            ss += d * d;
        }
        const T stdv = x_sqrt(block_sum(ss, scratch) / (T)(cols - 1));
        const T r = (T)1 / (stdv + eps);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            yr[j] = gamma[j] * ((xr[j] - mean) * r) + beta[j];
        if (threadIdx.x == 0) {
            if (mean_out) mean_out[row] = mean;
            if (std_out) std_out[row] = stdv;
        }
    }
}

extern "C" __global__ void layernorm_fwd_f32(float* y, float* mean_out, float* std_out,
                                             const float* x, const float* gamma,
                                             const float* beta, i64 rows, int cols, float eps) {
    layernorm_fwd_impl(y, mean_out, std_out, x, gamma, beta, rows, cols, eps);
}
extern "C" __global__ void layernorm_fwd_f64(double* y, double* mean_out, double* std_out,
                                             const double* x, const double* gamma,
                                             const double* beta, i64 rows, int cols, double eps) {
    layernorm_fwd_impl(y, mean_out, std_out, x, gamma, beta, rows, cols, eps);
}

template <typename T>
__device__ __forceinline__ void layernorm_bwd_impl(T* dx, const T* dy, const T* x, const T* gamma,
                                                   const T* mean, const T* stdv, i64 rows, int cols,
                                                   T eps) {
    __shared__ T scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        const T* gr = dy + row * cols;
        T* dr = dx + row * cols;
        const T mu = mean[row], sd = stdv[row];
        const T r = (T)1 / (sd + eps);
        T sa = (T)0, sax = (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const T a = gr[j] * gamma[j];
            sa += a;
            sax += a * (xr[j] - mu);
        }
        sa = block_sum(sa, scratch);
        sax = block_sum(sax, scratch);
        const T ma = sa / (T)cols;
        const T k = sd > (T)0 ? r * r * sax / ((T)(cols - 1) * sd) : (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            dr[j] = r * (gr[j] * gamma[j] - ma) - k * (xr[j] - mu);
    }
}

extern "C" __global__ void layernorm_bwd_f32(float* dx, const float* dy, const float* x,
                                             const float* gamma, const float* mean,
                                             const float* stdv, i64 rows, int cols, float eps) {
    layernorm_bwd_impl(dx, dy, x, gamma, mean, stdv, rows, cols, eps);
}
extern "C" __global__ void layernorm_bwd_f64(double* dx, const double* dy, const double* x,
                                             const double* gamma, const double* mean,
                                             const double* stdv, i64 rows, int cols, double eps) {
    layernorm_bwd_impl(dx, dy, x, gamma, mean, stdv, rows, cols, eps);
}

// Block (x: columns, y: chunk of rows). Thread handles column j of rows
// [chunk * rows_per_chunk, ...) and writes (or adds) the chunk's partial sums.
// With `counters` null (one chunk): `dgamma_part`/`dbeta_part` are the gradients themselves,
// stored or (`accumulate`) added to. Otherwise they are [chunks, cols] partials, and the last
// block of each column tile to finish (a count per tile, after __threadfence) sums the
// partials in chunk order into `dgamma`/`dbeta` (stored or added) and sets its count back to
// zero: the sum sum_cols computes over the partials, in the same launch. Deterministic: the
// order of the sums is fixed, whichever block finishes last.
template <typename T>
__device__ __forceinline__ void layernorm_bwd_params_impl(T* dgamma_part, T* dbeta_part,
                                                          const T* dy, const T* x, const T* mean,
                                                          const T* stdv, i64 rows, int cols,
                                                          i64 rows_per_chunk, T eps,
                                                          int accumulate, T* dgamma, T* dbeta,
                                                          int* counters) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const i64 chunk = blockIdx.y;
    if (j < cols) {
        const i64 r0 = chunk * rows_per_chunk;
        const i64 r1 = min(rows, r0 + rows_per_chunk);
        T g = (T)0, b = (T)0;
        for (i64 row = r0; row < r1; ++row) {
            const T d = dy[row * cols + j];
            const T xhat = (x[row * cols + j] - mean[row]) / (stdv[row] + eps);
            g += d * xhat;
            b += d;
        }
        T* pg = dgamma_part + chunk * cols + j;
        T* pb = dbeta_part + chunk * cols + j;
        const int add = accumulate && !counters;
        *pg = add ? *pg + g : g;
        *pb = add ? *pb + b : b;
    }
    if (!counters || !last_block_of_tile(&counters[blockIdx.x], 1, (int)gridDim.y)) return;
    if (j < cols) {
        T g = (T)0, b = (T)0;
        for (int c = 0; c < (int)gridDim.y; ++c) {
            g += __ldcg(dgamma_part + (i64)c * cols + j);  // L2: written by other SMs
            b += __ldcg(dbeta_part + (i64)c * cols + j);
        }
        dgamma[j] = accumulate ? dgamma[j] + g : g;
        dbeta[j] = accumulate ? dbeta[j] + b : b;
    }
    if (threadIdx.x == 0) counters[blockIdx.x] = 0;
}

extern "C" __global__ void layernorm_bwd_params_f32(float* dgamma_part, float* dbeta_part,
                                                    const float* dy, const float* x,
                                                    const float* mean, const float* stdv,
                                                    i64 rows, int cols, i64 rows_per_chunk,
                                                    float eps, int accumulate, float* dgamma,
                                                    float* dbeta, int* counters) {
    layernorm_bwd_params_impl(dgamma_part, dbeta_part, dy, x, mean, stdv, rows, cols,
                              rows_per_chunk, eps, accumulate, dgamma, dbeta, counters);
}
extern "C" __global__ void layernorm_bwd_params_f64(double* dgamma_part, double* dbeta_part,
                                                    const double* dy, const double* x,
                                                    const double* mean, const double* stdv,
                                                    i64 rows, int cols, i64 rows_per_chunk,
                                                    double eps, int accumulate, double* dgamma,
                                                    double* dbeta, int* counters) {
    layernorm_bwd_params_impl(dgamma_part, dbeta_part, dy, x, mean, stdv, rows, cols,
                              rows_per_chunk, eps, accumulate, dgamma, dbeta, counters);
}
