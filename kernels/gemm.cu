// gemm.cu — batched matrix products with transposed operands and a fused epilogue.
//
//   C[z] = act(alpha * op(A[z]) op(B[z]) + beta * C[z] + bias),   z < batch
//   op(A) is M x K: A is row-major M x K (transA = 0) or K x M (transA = 1), leading dim lda;
//   op(B) is K x N: B is row-major K x N (transB = 0) or N x K (transB = 1, e.g. x W^T with a
//   PyTorch weight W [out, in]); C is row-major M x N with leading dim ldc; matrices of batch z
//   start at z * sA, z * sB, z * sC elements. bias [N] may be null; act 0 = none, 1 = ReLU.
//   beta == 0 never reads C (it may hold garbage or NaN).
//
// Kernels (wrappers: src/cuda/kernels/gemm.rs; tests: tests/cuda_gemm.rs; bench: benches/kernels.rs):
//   gemm_f32    SIMT: 64x64 block tile, K step 16, 256 threads with 4x4 outputs each
//               (rows ty + 16 i, columns tx + 16 j: conflict-free shared reads)
//   gemm_f64    the same SIMT kernel in double (gradient checks and f64 parity on the GPU)
//   gemm_tf32   tensor cores, f32 inputs rounded to TF32 (mma.sync m16n8k8), f32 accumulate
//   gemm_bf16   tensor cores, bf16 inputs (mma.sync m16n8k16), f32 accumulate and output
// The tensor-core kernels use 128 threads (2 x 2 warps, 32x32 outputs per warp) and a 64x64
// block tile; shared tiles are stored K-contiguous for both operands (As[m][k], Bs[n][k]) so a
// fragment register (two consecutive k) is one 32-bit load, rows padded against bank conflicts.
// Grid: x = column tiles, y = row tiles, z = grid-stride over the batch.
// First versions: plain synchronous tile loads (no cp.async double buffering yet), to be
// measured against cuBLAS before being made faster.

#include "common.cuh"

#define ACT_NONE 0
#define ACT_RELU 1

template <typename T>
__device__ __forceinline__ T epilogue(T acc, const T* crow_elem, T alpha, T beta, const T* bias,
                                      int n, int act) {
    T v = alpha * acc;
    if (beta != (T)0) v += beta * *crow_elem;
    if (bias) v += bias[n];
    if (act == ACT_RELU) v = x_max(v, (T)0);
    return v;
}

// ------------------------------------------------------------------------------------------ SIMT

template <typename T>
__device__ __forceinline__ void gemm_simt(T* C, const T* A, const T* B, const T* bias, int M, int N,
                                          int K, i64 lda, i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC,
                                          int batch, int transA, int transB, T alpha, T beta,
                                          int act) {
    __shared__ T As[16][64 + 4];
    __shared__ T Bs[16][64 + 4];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const T* Az = A + z * sA;
        const T* Bz = B + z * sB;
        T* Cz = C + z * sC;
        T acc[4][4] = {};
        for (int k0 = 0; k0 < K; k0 += 16) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int e = tid + 256 * r;
                int m, k;
                if (transA) { k = e >> 6; m = e & 63; } else { m = e >> 4; k = e & 15; }
                const int gm = m0 + m, gk = k0 + k;
                T a = (T)0;
                if (gm < M && gk < K) a = transA ? Az[gk * lda + gm] : Az[gm * lda + gk];
                As[k][m] = a;
                int n;
                if (transB) { n = e >> 4; k = e & 15; } else { k = e >> 6; n = e & 63; }
                const int gn = n0 + n;
                const int gk2 = k0 + k;
                T b = (T)0;
                if (gn < N && gk2 < K) b = transB ? Bz[gn * ldb + gk2] : Bz[gk2 * ldb + gn];
                Bs[k][n] = b;
            }
            __syncthreads();
#pragma unroll
            for (int k = 0; k < 16; ++k) {
                T a[4], b[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
            }
            __syncthreads();  // the tiles are overwritten by the next k step
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int m = m0 + ty + 16 * i;
            if (m >= M) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int n = n0 + tx + 16 * j;
                if (n >= N) continue;
                T* c = Cz + m * ldc + n;
                *c = epilogue(acc[i][j], c, alpha, beta, bias, n, act);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) gemm_f32(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act) {
    gemm_simt(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA, transB, alpha, beta,
              act);
}

extern "C" __global__ void __launch_bounds__(256) gemm_f64(
    double* C, const double* A, const double* B, const double* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, double alpha,
    double beta, int act) {
    gemm_simt(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA, transB, alpha, beta,
              act);
}

// ------------------------------------------------------------------------------------------ tensor cores

// Writes one warp's 32x32 accumulator block (2 x 4 mma tiles of 16x8) through the epilogue.
// Accumulator layout of m16n8 (PTX ISA, "mma.m16n8k* fragments for .f32 accumulators"):
// c0, c1 at (row g, cols 2t, 2t+1), c2, c3 at (row g + 8, same cols); g = lane / 4, t = lane % 4.
__device__ __forceinline__ void store_warp_tile(float acc[2][4][4], float* Cz, int M, int N, i64 ldc,
                                                int wm, int wn, float alpha, float beta,
                                                const float* bias, int act) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int im = 0; im < 2; ++im)
#pragma unroll
        for (int in = 0; in < 4; ++in)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int m = wm + im * 16 + g + (r >= 2 ? 8 : 0);
                const int n = wn + in * 8 + 2 * t + (r & 1);
                if (m < M && n < N) {
                    float* c = Cz + m * ldc + n;
                    *c = epilogue(acc[im][in][r], c, alpha, beta, bias, n, act);
                }
            }
}

__device__ __forceinline__ u32 f32_to_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

extern "C" __global__ void __launch_bounds__(128) gemm_tf32(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act) {
    // K step 16 (two m16n8k8 steps); rows padded to 20 words: fragment loads hit 32 banks.
    __shared__ u32 As[64][16 + 4];
    __shared__ u32 Bs[64][16 + 4];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const float* Az = A + z * sA;
        const float* Bz = B + z * sB;
        float acc[2][4][4] = {};
        for (int k0 = 0; k0 < K; k0 += 16) {
#pragma unroll
            for (int r = 0; r < 8; ++r) {  // 64 x 16 elements of each operand, 128 threads
                const int e = tid + 128 * r;
                int m, k;
                if (transA) { k = e >> 6; m = e & 63; } else { m = e >> 4; k = e & 15; }
                float a = 0.0f;
                if (m0 + m < M && k0 + k < K)
                    a = transA ? Az[(k0 + k) * lda + m0 + m] : Az[(m0 + m) * lda + k0 + k];
                As[m][k] = f32_to_tf32(a);
                int n;
                if (transB) { n = e >> 4; k = e & 15; } else { k = e >> 6; n = e & 63; }
                float b = 0.0f;
                if (n0 + n < N && k0 + k < K)
                    b = transB ? Bz[(n0 + n) * ldb + k0 + k] : Bz[(k0 + k) * ldb + n0 + n];
                Bs[n][k] = f32_to_tf32(b);
            }
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < 16; ks += 8) {
                u32 a[2][4], b[4][2];
#pragma unroll
                for (int im = 0; im < 2; ++im) {
                    const int r0 = wm + im * 16 + g;
                    a[im][0] = As[r0][ks + t];
                    a[im][1] = As[r0 + 8][ks + t];
                    a[im][2] = As[r0][ks + t + 4];
                    a[im][3] = As[r0 + 8][ks + t + 4];
                }
#pragma unroll
                for (int in = 0; in < 4; ++in) {
                    const int c0 = wn + in * 8 + g;
                    b[in][0] = Bs[c0][ks + t];
                    b[in][1] = Bs[c0][ks + t + 4];
                }
#pragma unroll
                for (int im = 0; im < 2; ++im)
#pragma unroll
                    for (int in = 0; in < 4; ++in) {
                        float* d = acc[im][in];
                        asm volatile(
                            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                            : "r"(a[im][0]), "r"(a[im][1]), "r"(a[im][2]), "r"(a[im][3]),
                              "r"(b[in][0]), "r"(b[in][1]));
                    }
            }
            __syncthreads();
        }
        // the tile's origin: local (m, n) below are relative to (m0, n0)
        store_warp_tile(acc, C + z * sC + (i64)m0 * ldc + n0, M - m0, N - n0, ldc, wm, wn, alpha,
                        beta, bias ? bias + n0 : nullptr, act);
    }
}

extern "C" __global__ void __launch_bounds__(128) gemm_bf16(
    float* C, const bf16* A, const bf16* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act) {
    // K step 32 (two m16n8k16 steps); rows of 32 bf16 padded by 8 (80 bytes = 20 words).
    __shared__ __align__(16) bf16 As[64][32 + 8];
    __shared__ __align__(16) bf16 Bs[64][32 + 8];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const bf16* Az = A + z * sA;
        const bf16* Bz = B + z * sB;
        float acc[2][4][4] = {};
        for (int k0 = 0; k0 < K; k0 += 32) {
#pragma unroll
            for (int r = 0; r < 16; ++r) {  // 64 x 32 elements of each operand, 128 threads
                const int e = tid + 128 * r;
                int m, k;
                if (transA) { k = e >> 6; m = e & 63; } else { m = e >> 5; k = e & 31; }
                bf16 a = 0;
                if (m0 + m < M && k0 + k < K)
                    a = transA ? Az[(k0 + k) * lda + m0 + m] : Az[(m0 + m) * lda + k0 + k];
                As[m][k] = a;
                int n;
                if (transB) { n = e >> 5; k = e & 31; } else { k = e >> 6; n = e & 63; }
                bf16 b = 0;
                if (n0 + n < N && k0 + k < K)
                    b = transB ? Bz[(n0 + n) * ldb + k0 + k] : Bz[(k0 + k) * ldb + n0 + n];
                Bs[n][k] = b;
            }
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < 32; ks += 16) {
                // Fragments of m16n8k16 (PTX ISA, ".bf16 A/B fragments"): A regs hold
                // (row g | g+8, k 2t..2t+1 | 2t+8..2t+9); B regs (k 2t..2t+1 | 2t+8.., col g).
                u32 a[2][4], b[4][2];
#pragma unroll
                for (int im = 0; im < 2; ++im) {
                    const int r0 = wm + im * 16 + g;
                    a[im][0] = *reinterpret_cast<const u32*>(&As[r0][ks + 2 * t]);
                    a[im][1] = *reinterpret_cast<const u32*>(&As[r0 + 8][ks + 2 * t]);
                    a[im][2] = *reinterpret_cast<const u32*>(&As[r0][ks + 2 * t + 8]);
                    a[im][3] = *reinterpret_cast<const u32*>(&As[r0 + 8][ks + 2 * t + 8]);
                }
#pragma unroll
                for (int in = 0; in < 4; ++in) {
                    const int c0 = wn + in * 8 + g;
                    b[in][0] = *reinterpret_cast<const u32*>(&Bs[c0][ks + 2 * t]);
                    b[in][1] = *reinterpret_cast<const u32*>(&Bs[c0][ks + 2 * t + 8]);
                }
#pragma unroll
                for (int im = 0; im < 2; ++im)
#pragma unroll
                    for (int in = 0; in < 4; ++in) {
                        float* d = acc[im][in];
                        asm volatile(
                            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                            : "r"(a[im][0]), "r"(a[im][1]), "r"(a[im][2]), "r"(a[im][3]),
                              "r"(b[in][0]), "r"(b[in][1]));
                    }
            }
            __syncthreads();
        }
        // the tile's origin: local (m, n) below are relative to (m0, n0)
        store_warp_tile(acc, C + z * sC + (i64)m0 * ldc + n0, M - m0, N - n0, ldc, wm, wn, alpha,
                        beta, bias ? bias + n0 : nullptr, act);
    }
}
