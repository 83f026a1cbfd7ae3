// elementwise.cu — elementwise and broadcast ops, casts, layout helpers.
//
// Kernels (each has a launch wrapper in src/cuda/ops/elementwise.rs and a test in
// tests/cuda_elementwise.rs):
//   fill_f32         out[i] = value
//   axpy_f32         y[i] += alpha * x[i]              (the skeleton's round-trip kernel)
//   unary_f32        out[i] = op(x[i]) for the op codes below
//   binary_f32       out[i] = op(a[ia], b[ib]) with broadcasting/strides given by a Bcast
//   cast_f32_bf16 / cast_bf16_f32   dtype conversion (round to nearest even)
//   permute0213_f32  [d0,d1,d2,d3] -> [d0,d2,d1,d3]   (split / merge attention heads)
//   mask_keys_f32    masked_fill(score, key mask == 0, value) over rows of keys
//
// All kernels use grid-stride loops with 64-bit indices, so any grid size is correct; the
// wrappers launch 256 threads per block and at most 65535*... blocks.

#include "common.cuh"

// Unary op codes (src/cuda/ops/elementwise.rs `Unary` must list the same numbers).
#define U_AFFINE 0   // alpha * x + beta
#define U_NEG 1
#define U_EXP 2
#define U_LOG 3
#define U_SQRT 4
#define U_RELU 5
#define U_SIGMOID 6
#define U_TANH 7
#define U_POW 8      // x ^ alpha
#define U_CLAMP 9    // min(max(x, alpha), beta)
#define U_RECIP 10

// Binary op codes (`Binary` in src/cuda/ops/elementwise.rs).
#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_MAX 4
#define B_MIN 5
#define B_RELU_BWD 6     // a = dy, b = x:  dy * (x > 0)
#define B_SIGMOID_BWD 7  // a = dy, b = y:  dy * y * (1 - y)
#define B_TANH_BWD 8     // a = dy, b = y:  dy * (1 - y^2)

// Broadcast description: out is contiguous with `shape`; operand a is read at
// sum_d idx_d * sa[d], b at sum_d idx_d * sb[d] (stride 0 = broadcast dimension).
// Up to 6 dimensions; unused leading dims have shape 1. Mirrors `Bcast` in Rust (#[repr(C)]).
struct Bcast {
    i64 shape[6];
    i64 sa[6];
    i64 sb[6];
    int ndim;
};

extern "C" __global__ void fill_f32(float* out, i64 n, float value) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = value;
}

extern "C" __global__ void axpy_f32(float* y, const float* x, i64 n, float alpha) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        y[i] += alpha * x[i];
}

__device__ __forceinline__ float unary_op(int op, float x, float alpha, float beta) {
    switch (op) {
        case U_AFFINE: return alpha * x + beta;
        case U_NEG: return -x;
        case U_EXP: return expf(x);
        case U_LOG: return logf(x);
        case U_SQRT: return sqrtf(x);
        case U_RELU: return x > 0.0f ? x : 0.0f;
        case U_SIGMOID: return 1.0f / (1.0f + expf(-x));
        case U_TANH: return tanhf(x);
        case U_POW: return powf(x, alpha);
        case U_CLAMP: return fminf(fmaxf(x, alpha), beta);
        case U_RECIP: return 1.0f / x;
        default: return __int_as_float(0x7fc00000);  // unknown op: NaN, never silent
    }
}

extern "C" __global__ void unary_f32(float* out, const float* x, i64 n, int op, float alpha,
                                     float beta) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = unary_op(op, x[i], alpha, beta);
}

__device__ __forceinline__ float binary_op(int op, float a, float b) {
    switch (op) {
        case B_ADD: return a + b;
        case B_SUB: return a - b;
        case B_MUL: return a * b;
        case B_DIV: return a / b;
        case B_MAX: return fmaxf(a, b);
        case B_MIN: return fminf(a, b);
        case B_RELU_BWD: return b > 0.0f ? a : 0.0f;
        case B_SIGMOID_BWD: return a * b * (1.0f - b);
        case B_TANH_BWD: return a * (1.0f - b * b);
        default: return __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void binary_f32(float* out, const float* a, const float* b, i64 n, int op,
                                      Bcast bc) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 rest = i, ia = 0, ib = 0;
        for (int d = bc.ndim - 1; d >= 0; --d) {
            const i64 idx = rest % bc.shape[d];
            rest /= bc.shape[d];
            ia += idx * bc.sa[d];
            ib += idx * bc.sb[d];
        }
        out[i] = binary_op(op, a[ia], b[ib]);
    }
}

extern "C" __global__ void cast_f32_bf16(bf16* out, const float* x, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void cast_bf16_f32(float* out, const bf16* x, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = bf16_to_f32(x[i]);
}

// out[a][c][b][e] = x[a][b][c][e] for x of shape [d0, d1, d2, d3].
extern "C" __global__ void permute0213_f32(float* out, const float* x, i64 d0, i64 d1, i64 d2,
                                           i64 d3) {
    const i64 n = d0 * d1 * d2 * d3;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        // i indexes the output [d0, d2, d1, d3]
        const i64 e = i % d3;
        i64 r = i / d3;
        const i64 b = r % d1;
        r /= d1;
        const i64 c = r % d2;
        const i64 a = r / d2;
        out[i] = x[((a * d1 + b) * d2 + c) * d3 + e];
    }
}

// scores: [rows, nk] with rows = batches * rows_per_batch; mask: [batches, nk], 0 = masked.
// masked_fill: a masked score is REPLACED by `value` (the reference uses -1e9).
extern "C" __global__ void mask_keys_f32(float* scores, const u8* mask, i64 rows, int nk,
                                         i64 rows_per_batch, float value) {
    const i64 n = rows * nk;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 row = i / nk;
        const int k = (int)(i % nk);
        const i64 b = row / rows_per_batch;
        if (mask[b * nk + k] == 0) scores[i] = value;
    }
}
