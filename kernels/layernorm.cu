// layernorm.cu — the reference's LayerNorm (AOANET.md 1.8), NOT nn.LayerNorm:
//     y = gamma * (x - mean) / (std + eps) + beta,   std = sqrt(sum (x - mean)^2 / (D - 1))
// i.e. the UNBIASED std, and eps (1e-6) ADDED TO THE STD, not to the variance.
//
// Kernels (wrappers: src/cuda/kernels/layernorm.rs; tests: tests/cuda_layernorm.rs):
//   layernorm_fwd_f32         y, and per row the mean and std saved for backward (may be null)
//   layernorm_bwd_f32         dx (overwritten) from dy, x, gamma and the saved mean/std
//   layernorm_bwd_params_f32  per-chunk partial sums of dgamma, dbeta ([chunks, D]); the
//                             wrapper reduces them over chunks and ADDS into the parameter
//                             gradients (gradient accumulation rule: parameters +=).
//
// Backward, per row, with r = 1 / (std + eps), xc = x - mean, a = dy * gamma (D = cols):
//   d(xc_i r)/dx_j = (delta_ij - 1/D) r + xc_i dr/dx_j,  dr/dx_j = -r^2 xc_j / ((D-1) std)
//   => dx_j = r (a_j - mean(a)) - r^2 xc_j (sum_i a_i xc_i) / ((D - 1) std)
// When std == 0 every xc is 0 and the second term is 0 (we skip it rather than divide 0/0).
//
// Layout: one block per row (grid-stride), blockDim a multiple of 32. Two passes for the
// statistics (mean, then the centred sum of squares) so large offsets do not cancel.

#include "common.cuh"

extern "C" __global__ void layernorm_fwd_f32(float* y, float* mean_out, float* std_out,
                                             const float* x, const float* gamma,
                                             const float* beta, i64 rows, int cols, float eps) {
    __shared__ float scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        float* yr = y + row * cols;
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
        const float mean = block_sum(s, scratch) / cols;
        float ss = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float d = xr[j] - mean;
            ss += d * d;
        }
        const float stdv = sqrtf(block_sum(ss, scratch) / (cols - 1));
        const float r = 1.0f / (stdv + eps);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            yr[j] = gamma[j] * ((xr[j] - mean) * r) + beta[j];
        if (threadIdx.x == 0) {
            if (mean_out) mean_out[row] = mean;
            if (std_out) std_out[row] = stdv;
        }
    }
}

extern "C" __global__ void layernorm_bwd_f32(float* dx, const float* dy, const float* x,
                                             const float* gamma, const float* mean,
                                             const float* stdv, i64 rows, int cols, float eps) {
    __shared__ float scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* xr = x + row * cols;
        const float* gr = dy + row * cols;
        float* dr = dx + row * cols;
        const float mu = mean[row], sd = stdv[row];
        const float r = 1.0f / (sd + eps);
        float sa = 0.0f, sax = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float a = gr[j] * gamma[j];
            sa += a;
            sax += a * (xr[j] - mu);
        }
        sa = block_sum(sa, scratch);
        sax = block_sum(sax, scratch);
        const float ma = sa / cols;
        const float k = sd > 0.0f ? r * r * sax / ((cols - 1) * sd) : 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            dr[j] = r * (gr[j] * gamma[j] - ma) - k * (xr[j] - mu);
    }
}

// Block (x: columns, y: chunk of rows). Thread handles column j of rows
// [chunk * rows_per_chunk, ...) and writes partial sums for that chunk. Deterministic: no
// atomics; the wrapper sums the [chunks, cols] partials in a fixed order.
extern "C" __global__ void layernorm_bwd_params_f32(float* dgamma_part, float* dbeta_part,
                                                    const float* dy, const float* x,
                                                    const float* mean, const float* stdv,
                                                    i64 rows, int cols, i64 rows_per_chunk,
                                                    float eps) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const i64 chunk = blockIdx.y;
    if (j >= cols) return;
    const i64 r0 = chunk * rows_per_chunk;
    const i64 r1 = min(rows, r0 + rows_per_chunk);
    float g = 0.0f, b = 0.0f;
    for (i64 row = r0; row < r1; ++row) {
        const float d = dy[row * cols + j];
        const float xhat = (x[row * cols + j] - mean[row]) / (stdv[row] + eps);
        g += d * xhat;
        b += d;
    }
    dgamma_part[chunk * cols + j] = g;
    dbeta_part[chunk * cols + j] = b;
}
