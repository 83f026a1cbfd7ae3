// softmax.cu — row softmax and log_softmax over the last axis, forward and backward.
//
// Kernels (wrappers: src/cuda/kernels/softmax.rs; tests: tests/cuda_softmax.rs, and the f64
// versions through the tensor ops in tests/cuda_ops.rs):
//   softmax_fwd_{f32,f64}   y = softmax(x) or log_softmax(x) per row (`log_out` selects)
//   softmax_bwd_{f32,f64}   dx from y and dy:
//                             softmax:      dx_j = y_j (dy_j - sum_k dy_k y_k)
//                             log_softmax:  dx_j = dy_j - exp(y_j) sum_k dy_k
//
// Layout: one block per row (grid-stride over rows), any blockDim that is a multiple of 32
// (the wrapper uses 256, or 128 for short rows). The forward reads each row twice: one pass
// computes the max and the sum of exponentials together (online softmax: when the running max
// grows, the running sum is rescaled by exp(old - new)), one pass writes the output.

#include "common.cuh"

// Block-wide merge of per-thread online-softmax states (m, s). Every thread gets the result.
template <typename T>
__device__ __forceinline__ void block_softmax_stats(T& m, T& s, T* scratch /*64*/) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const T m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const T s2 = __shfl_xor_sync(0xffffffffu, s, o);
        softmax_merge(m, s, m2, s2);
    }
    __syncthreads();  // scratch may still be in use by the previous row
    if (lane == 0) {
        scratch[warp] = m;
        scratch[32 + warp] = s;
    }
    __syncthreads();
    m = lane < nwarps ? scratch[lane] : neg_inf<T>();
    s = lane < nwarps ? scratch[32 + lane] : (T)0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const T m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const T s2 = __shfl_xor_sync(0xffffffffu, s, o);
        softmax_merge(m, s, m2, s2);
    }
}

template <typename T>
__device__ __forceinline__ void softmax_fwd_impl(T* y, const T* x, i64 rows, int cols, int log_out) {
    __shared__ T scratch[64];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        T m = neg_inf<T>(), s = (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) softmax_add(m, s, xr[j]);
        block_softmax_stats(m, s, scratch);
        if (log_out) {
            const T lse = m + x_log(s);
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] - lse;
        } else {
            const T inv = (T)1 / s;
            for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = x_exp(xr[j] - m) * inv;
        }
    }
}

extern "C" __global__ void softmax_fwd_f32(float* y, const float* x, i64 rows, int cols,
                                           int log_out) {
    softmax_fwd_impl(y, x, rows, cols, log_out);
}
extern "C" __global__ void softmax_fwd_f64(double* y, const double* x, i64 rows, int cols,
                                           int log_out) {
    softmax_fwd_impl(y, x, rows, cols, log_out);
}

template <typename T>
__device__ __forceinline__ void softmax_bwd_impl(T* dx, const T* y, const T* dy, i64 rows, int cols,
                                                 int log_out) {
    __shared__ T scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* yr = y + row * cols;
        const T* gr = dy + row * cols;
        T* dr = dx + row * cols;
        T acc = (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) acc += log_out ? gr[j] : gr[j] * yr[j];
        acc = block_sum(acc, scratch);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            dr[j] = log_out ? gr[j] - x_exp(yr[j]) * acc : yr[j] * (gr[j] - acc);
    }
}

extern "C" __global__ void softmax_bwd_f32(float* dx, const float* y, const float* dy, i64 rows,
                                           int cols, int log_out) {
    softmax_bwd_impl(dx, y, dy, rows, cols, log_out);
}
extern "C" __global__ void softmax_bwd_f64(double* dx, const double* y, const double* dy, i64 rows,
                                           int cols, int log_out) {
    softmax_bwd_impl(dx, y, dy, rows, cols, log_out);
}
