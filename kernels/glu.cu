// glu.cu — GLU over the last axis (AOANET.md 1.8): x = [a ; b] (halves of the last axis),
//     out = a * sigmoid(b)
// Backward: da = dy * sigmoid(b);  db = dy * a * sigmoid(b) * (1 - sigmoid(b)).
//
// Kernels (wrappers: src/cuda/kernels/glu.rs; tests: tests/cuda_glu.rs):
//   glu_fwd_f32   out [rows, half] from x [rows, 2*half]
//   glu_bwd_f32   dx [rows, 2*half] (overwritten) from dy [rows, half] and x
//
// Grid-stride over the rows*half outputs, 64-bit indices.

#include "common.cuh"

extern "C" __global__ void glu_fwd_f32(float* out, const float* x, i64 rows, int half) {
    const i64 n = rows * half;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 r = i / half;
        const int j = (int)(i % half);
        const float a = x[r * 2 * half + j], b = x[r * 2 * half + half + j];
        out[i] = a / (1.0f + expf(-b));
    }
}

extern "C" __global__ void glu_bwd_f32(float* dx, const float* dy, const float* x, i64 rows,
                                       int half) {
    const i64 n = rows * half;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 r = i / half;
        const int j = (int)(i % half);
        const i64 ia = r * 2 * half + j, ib = ia + half;
        const float a = x[ia];
        const float sg = 1.0f / (1.0f + expf(-x[ib]));
        const float g = dy[i];
        dx[ia] = g * sg;
        dx[ib] = g * a * sg * (1.0f - sg);
    }
}
