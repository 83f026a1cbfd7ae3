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
//   gemm_bf16   tensor cores, bf16 inputs (mma.sync m16n8k16), f32 accumulate and output;
//               gemm_bf16_ff takes f32 A and B, gemm_bf16_fb f32 A and bf16 B, rounding the f32
//               ones to bf16 as they are loaded (the same bits as cast_f32_bf16 copies, one
//               launch and no copy instead of three launches and two copies per product)
// The tensor-core kernels use 128 threads (2 x 2 warps, 32x32 outputs per warp) and a 64x64
// block tile; shared tiles are stored K-contiguous for both operands (As[m][k], Bs[n][k]) so a
// fragment register (two consecutive k) is one 32-bit load, rows padded against bank conflicts.
// These 64x64 kernels load synchronously; the wrapper's plan picks them only where padding to
// 128x128 tiles would more than double the work (batched 64x64 attention scores, 50 rows by
// the vocabulary), and gemm_f64 serves the f64 gradient checks.
//
// Large tiles, for products that fill the GPU with 128x128 tiles (measured on the H100: the
// 64x64 kernels above reached 0.29-0.32 of cuBLAS f32, and the TF32 one ran slower than SIMT):
//   gemm_large_f32   SIMT, 128x128 tile, K step 8, 256 threads with 8x8 outputs each (two 4x4
//                    quads 64 apart: float4 shared reads), smem double-buffered
//   gemm_half_f32    the same with 64x128 tiles and 128 threads, for products of <= 64 rows
//   gemm_tf32_large  tensor cores, 128x128 tile, K step 16, 8 warps of 64x32 outputs
//   gemm_bf16_large  the same with bf16 inputs, K step 32 (and _ff, _fb as above)
// All three prefetch the next K step's tile into registers while the tensor cores (or FMAs)
// work on the current one in shared memory, so one __syncthreads per K step suffices.
// Split K (every kernel but gemm_f64): when fewer than 1.5 blocks per SM would run, the
// wrapper splits K into slices (Gemm::plan in src/cuda/kernels/gemm.rs), one grid z per slice;
// the last block of each tile to finish sums the slices in a fixed order and applies the
// epilogue (deterministic, unlike atomics), in the same launch (see "split K" below).
// Grid: x = column tiles, y = row tiles, z = grid-stride over the batch (or the K slices).

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

// ------------------------------------------------------------------------------------------ split K
//
// A product whose tiles are too few to fill the GPU splits K into slices (the wrapper's plan,
// Gemm::plan): with P non-null, `batch` counts slices (grid z), A and B step sA and sB elements
// from one slice to the next, and C, ldc, alpha, beta, bias and act describe the whole product
// (sC is unused). Block (x, y, z) stores slice z of tile (x, y), unscaled, into P[z] ([M][N],
// leading dim N); the tile's last block to finish (an atomic count per tile in `counters`) sums
// the slices in slice order (the same bits whichever block finishes last) and writes C through
// the epilogue. `counters` holds a zero per tile of the grid, and the last block sets its count
// back to zero, so one buffer of counters serves product after product on a stream. One launch
// where a separate reduction kernel used to follow every split product.

// finish_split's sum for f32 slices with N % 4 == 0 (`mn` = M * N, the slice stride): each
// thread takes four groups of four adjacent columns (16-byte loads), so sixteen elements'
// loads are in flight per slice.
__device__ __forceinline__ void finish_split_f32x4(float* C, const float* P, const float* bias,
                                                   int N, i64 mn, i64 ldc, int slices, float alpha,
                                                   float beta, int act, int m0, int n0, int rows,
                                                   int cols) {
    const int per_row = cols / 4, groups = rows * per_row, step = blockDim.x;
    for (int g = threadIdx.x; g < groups; g += 4 * step) {
        float4 a[4];
        const float* p[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int gq = min(g + q * step, groups - 1);  // past the end: a repeat, not stored
            p[q] = P + (i64)(m0 + gq / per_row) * N + n0 + (gq % per_row) * 4;
            a[q] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll 1
        for (int s = 0; s < slices; ++s) {
            float4 v[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) v[q] = __ldcg(reinterpret_cast<const float4*>(p[q] + s * mn));
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                a[q].x += v[q].x;
                a[q].y += v[q].y;
                a[q].z += v[q].z;
                a[q].w += v[q].w;
            }
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int gq = g + q * step;
            if (gq >= groups) break;
            const int m = m0 + gq / per_row, n = n0 + (gq % per_row) * 4;
            float* c = C + (i64)m * ldc + n;
            c[0] = epilogue(a[q].x, c, alpha, beta, bias, n, act);
            c[1] = epilogue(a[q].y, c + 1, alpha, beta, bias, n + 1, act);
            c[2] = epilogue(a[q].z, c + 2, alpha, beta, bias, n + 2, act);
            c[3] = epilogue(a[q].w, c + 3, alpha, beta, bias, n + 3, act);
        }
    }
}

// After a block's slices are stored (split mode only): the last block of tile (m0, n0), of
// BM x BN outputs, sums the slices into C. This block runs alone at the end of its tile, and
// the first version (one element and one L2 load at a time) waited for memory once per element
// and slice. Now each thread sums four elements at once (a block apart, so each load
// instruction of a warp still reads consecutive columns: four loads in flight), and the
// 128-wide kernels' f32 tiles four groups of four columns (finish_split_f32x4: sixteen). On the
// H200 (the kernel clock, `CudaDevice::time_kernels`) the refiner's 360 x 1024 x 1024 product
// in 4 slices went from 52 to 33 us, the decoder's 50 x 2048 x 2048 in 8 from 33 to 27 us.
// Each element is still summed in slice order from zero, so the bits are the same.
template <typename T, int BM, int BN>
__device__ __forceinline__ void finish_split(T* C, const T* P, const T* bias, int M, int N,
                                             i64 ldc, int slices, T alpha, T beta, int act,
                                             int* counters, int m0, int n0) {
    if (!P) return;
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    // This block stored slices z, z + gridDim.z, ...: it counts them all.
    const int done = (slices - (int)blockIdx.z + (int)gridDim.z - 1) / (int)gridDim.z;
    if (!last_block_of_tile(&counters[tile], done, slices)) return;
    const int rows = min(BM, M - m0), cols = min(BN, N - n0), count = rows * cols;
    const i64 mn = (i64)M * N;
    const int step = blockDim.x;
    // (Not in the 64x64 kernels: with it ptxas gave three of them a stack frame.)
    if constexpr (sizeof(T) == 4 && BN == 128) {
        if (N % 4 == 0) {  // then cols % 4 == 0 and every group of four is 16-byte aligned
            finish_split_f32x4(C, P, bias, N, mn, ldc, slices, alpha, beta, act, m0, n0, rows, cols);
            if (threadIdx.x == 0) counters[tile] = 0;
            return;
        }
    }
    // Element e of the tile: row e / cols, column e % cols; its slice-0 address.
    auto at = [&](int e) { return P + (i64)(m0 + e / cols) * N + n0 + e % cols; };
    for (int e = threadIdx.x; e < count; e += 4 * step) {
        const bool in1 = e + step < count, in2 = e + 2 * step < count, in3 = e + 3 * step < count;
        const T* p0 = at(e);
        const T* p1 = in1 ? at(e + step) : p0;
        const T* p2 = in2 ? at(e + 2 * step) : p0;
        const T* p3 = in3 ? at(e + 3 * step) : p0;
        T a0 = (T)0, a1 = (T)0, a2 = (T)0, a3 = (T)0;
#pragma unroll 1
        for (int s = 0; s < slices; ++s) {
            const i64 o = s * mn;
            a0 += __ldcg(p0 + o);  // L2: written by other SMs
            a1 += __ldcg(p1 + o);
            a2 += __ldcg(p2 + o);
            a3 += __ldcg(p3 + o);
        }
        auto put = [&](int e, T acc) {
            const int n = n0 + e % cols;
            T* c = C + (i64)(m0 + e / cols) * ldc + n;
            *c = epilogue(acc, c, alpha, beta, bias, n, act);
        };
        put(e, a0);
        if (in1) put(e + step, a1);
        if (in2) put(e + 2 * step, a2);
        if (in3) put(e + 3 * step, a3);
    }
    if (threadIdx.x == 0) counters[tile] = 0;
}

// ------------------------------------------------------------------------------------------ SIMT

template <typename T>
__device__ __forceinline__ void gemm_simt(T* C, const T* A, const T* B, const T* bias, int M, int N,
                                          int K, i64 lda, i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC,
                                          int batch, int transA, int transB, T alpha, T beta,
                                          int act, T* P, int* counters) {
    __shared__ T As[16][64 + 4];
    __shared__ T Bs[16][64 + 4];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const T* Az = A + z * sA;
        const T* Bz = B + z * sB;
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
        // Entry z of C through the epilogue, or (split K) slice z as it is into P.
        auto store = [&](T* Cz, i64 ld, T al, T be, const T* bi, int ac) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int m = m0 + ty + 16 * i;
                if (m >= M) continue;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int n = n0 + tx + 16 * j;
                    if (n >= N) continue;
                    T* c = Cz + m * ld + n;
                    *c = epilogue(acc[i][j], c, al, be, bi, n, ac);
                }
            }
        };
        if (P)
            store(P + (i64)z * M * N, N, (T)1, (T)0, nullptr, ACT_NONE);
        else
            store(C + z * sC, ldc, alpha, beta, bias, act);
    }
    finish_split<T, 64, 64>(C, P, bias, M, N, ldc, batch, alpha, beta, act, counters, m0, n0);
}

extern "C" __global__ void __launch_bounds__(256) gemm_f32(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_simt(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA, transB, alpha, beta,
              act, P, counters);
}

extern "C" __global__ void __launch_bounds__(256) gemm_f64(
    double* C, const double* A, const double* B, const double* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, double alpha,
    double beta, int act, double* P, int* counters) {
    gemm_simt(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA, transB, alpha, beta,
              act, P, counters);
}

// ------------------------------------------------------------------------------------------ tensor cores

// Writes one warp's accumulator block (IM x IN mma tiles of 16x8) through the epilogue.
// Accumulator layout of m16n8 (PTX ISA, "mma.m16n8k* fragments for .f32 accumulators"):
// c0, c1 at (row g, cols 2t, 2t+1), c2, c3 at (row g + 8, same cols); g = lane / 4, t = lane % 4.
template <int IM, int IN>
__device__ __forceinline__ void store_warp_tile(float (&acc)[IM][IN][4], float* Cz, int M, int N,
                                                i64 ldc, int wm, int wn, float alpha, float beta,
                                                const float* bias, int act) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int im = 0; im < IM; ++im)
#pragma unroll
        for (int in = 0; in < IN; ++in)
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

// A warp's accumulators of batch entry z through the epilogue into C, or (split K) as they are
// into slice z of P. Written in whichever form each kernel compiles without local memory
// (tests/kernels_compile.rs): the compiler spilled the 64x64 TF32 kernel's registers with two inlined
// stores and the 128x128 ones' with one store of selected arguments.
template <int IM, int IN>
__device__ __forceinline__ void store_tc_tile(float (&acc)[IM][IN][4], float* C, float* P, int M,
                                              int N, i64 ldc, i64 sC, int z, int m0, int n0,
                                              int wm, int wn, float alpha, float beta,
                                              const float* bias, int act) {
    const bool split = P != nullptr;
    float* slice = split ? P + (i64)z * M * N + (i64)m0 * N + n0 : nullptr;
    float* entry = C + z * sC + (i64)m0 * ldc + n0;
    const float* bias_n0 = bias ? bias + n0 : nullptr;
    if (IM == 2) {  // the 64x64 kernels: one store
        store_warp_tile(acc, split ? slice : entry, M - m0, N - n0, split ? (i64)N : ldc, wm, wn,
                        split ? 1.0f : alpha, split ? 0.0f : beta, split ? nullptr : bias_n0,
                        split ? ACT_NONE : act);
    } else if (split) {  // the 128x128 kernels: two
        store_warp_tile(acc, slice, M - m0, N - n0, (i64)N, wm, wn, 1.0f, 0.0f, nullptr, ACT_NONE);
    } else {
        store_warp_tile(acc, entry, M - m0, N - n0, ldc, wm, wn, alpha, beta, bias_n0, act);
    }
}

__device__ __forceinline__ u32 f32_to_tf32(float x) {
#ifdef AOANET_CUDA_EMU
    return emu_f32_to_tf32(x);
#else
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#endif
}

// D += A B for one warp: A 16x8 (tf32, 4 registers a lane), B 8x8 (2), D 16x8 f32 (4), in the
// fragment layout of the PTX ISA's mma.m16n8k8 (the CPU emulator, cuda-emu/, reproduces it).
__device__ __forceinline__ void mma_m16n8k8_tf32(float* d, const u32* a, const u32* b) {
#ifdef AOANET_CUDA_EMU
    emu_mma_m16n8k8_tf32(d, a, b);
#else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// D += A B for one warp: A 16x16 (bf16 pairs, 4 registers a lane), B 16x8 (2), D 16x8 f32 (4),
// as mma.m16n8k16.
__device__ __forceinline__ void mma_m16n8k16_bf16(float* d, const u32* a, const u32* b) {
#ifdef AOANET_CUDA_EMU
    emu_mma_m16n8k16_bf16(d, a, b);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

extern "C" __global__ void __launch_bounds__(128) gemm_tf32(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
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
                        mma_m16n8k8_tf32(d, a[im], b[in]);
                    }
            }
            __syncthreads();
        }
        // the tile's origin: local (m, n) below are relative to (m0, n0)
        store_tc_tile(acc, C, P, M, N, ldc, sC, z, m0, n0, wm, wn, alpha, beta, bias, act);
    }
    finish_split<float, 64, 64>(C, P, bias, M, N, ldc, batch, alpha, beta, act, counters, m0, n0);
}

// An operand element as the bf16 tensor cores take it: bf16 as stored, f32 rounded to nearest
// even (the same bits as a cast_f32_bf16 copy, so a product reading f32 operands directly
// equals one reading their bf16 copies).
__device__ __forceinline__ bf16 as_bf16(bf16 x) { return x; }
__device__ __forceinline__ bf16 as_bf16(float x) { return f32_to_bf16(x); }

// The 64x64 bf16 tensor-core kernel over operands stored as EA and EB (bf16 or f32).
template <typename EA, typename EB>
__device__ __forceinline__ void gemm_bf16_small(float* C, const EA* A, const EB* B,
                                                const float* bias, int M, int N, int K, i64 lda,
                                                i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC,
                                                int batch, int transA, int transB, float alpha,
                                                float beta, int act, float* P, int* counters) {
    // K step 32 (two m16n8k16 steps); rows of 32 bf16 padded by 8 (80 bytes = 20 words).
    __shared__ __align__(16) bf16 As[64][32 + 8];
    __shared__ __align__(16) bf16 Bs[64][32 + 8];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const EA* Az = A + z * sA;
        const EB* Bz = B + z * sB;
        float acc[2][4][4] = {};
        for (int k0 = 0; k0 < K; k0 += 32) {
#pragma unroll
            for (int r = 0; r < 16; ++r) {  // 64 x 32 elements of each operand, 128 threads
                const int e = tid + 128 * r;
                int m, k;
                if (transA) { k = e >> 6; m = e & 63; } else { m = e >> 5; k = e & 31; }
                bf16 a = 0;
                if (m0 + m < M && k0 + k < K)
                    a = as_bf16(transA ? Az[(k0 + k) * lda + m0 + m] : Az[(m0 + m) * lda + k0 + k]);
                As[m][k] = a;
                int n;
                if (transB) { n = e >> 5; k = e & 31; } else { k = e >> 6; n = e & 63; }
                bf16 b = 0;
                if (n0 + n < N && k0 + k < K)
                    b = as_bf16(transB ? Bz[(n0 + n) * ldb + k0 + k] : Bz[(k0 + k) * ldb + n0 + n]);
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
                        mma_m16n8k16_bf16(d, a[im], b[in]);
                    }
            }
            __syncthreads();
        }
        // the tile's origin: local (m, n) below are relative to (m0, n0)
        store_tc_tile(acc, C, P, M, N, ldc, sC, z, m0, n0, wm, wn, alpha, beta, bias, act);
    }
    finish_split<float, 64, 64>(C, P, bias, M, N, ldc, batch, alpha, beta, act, counters, m0, n0);
}

extern "C" __global__ void __launch_bounds__(128) gemm_bf16(
    float* C, const bf16* A, const bf16* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_bf16_small<bf16, bf16>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA,
                                transB, alpha, beta, act, P, counters);
}

// bf16 products of f32 operands, rounded as they are loaded (no cast_f32_bf16 copies).
extern "C" __global__ void __launch_bounds__(128) gemm_bf16_ff(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_bf16_small<float, float>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA,
                                transB, alpha, beta, act, P, counters);
}

// x W^T with x in f32 (rounded as loaded) and B (the weight) already in bf16.
extern "C" __global__ void __launch_bounds__(128) gemm_bf16_fb(
    float* C, const float* A, const bf16* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_bf16_small<float, bf16>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA,
                                transB, alpha, beta, act, P, counters);
}

// ------------------------------------------------------------------------------------------ large tiles

// SIMT with 128-column tiles of BM = 128 or 64 rows, 2 * BM threads (16 x BM/8); thread
// (tx, ty) owns rows {4ty..4ty+3, BM/2+4ty..BM/2+4ty+3} and columns {4tx..4tx+3, 64+4tx..
// 64+4tx+3}, so its shared reads are float4s. Shared tiles are As[k][m] and Bs[k][n] (M- and
// N-contiguous), double-buffered. BM = 64 (gemm_half_f32) serves products of at most 64 rows
// (the decoder's 50), where a 128-row tile would compute over 60% padding.
template <int BM>
__device__ __forceinline__ void gemm_simt_big(float* C, const float* A, const float* B,
                                              const float* bias, int M, int N, int K, i64 lda,
                                              i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch,
                                              int transA, int transB, float alpha, float beta,
                                              int act, float* P, int* counters) {
    constexpr int PB = 128 / BM;  // staging passes over the 8 x 128 B tile
    __shared__ __align__(16) float As[2][8][BM + 4];
    __shared__ __align__(16) float Bs[2][8][128 + 4];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * 128;
    // Each thread stages 4 elements of A and 4 * PB of B per K step. K-contiguous operand
    // (A not transposed, B transposed): row tid/2 (+ BM per pass), k 4*(tid%2)..+3, stored
    // transposed (scalar). Row-contiguous operand: k tid/(rows/4), 4 rows from
    // 4*(tid%(rows/4)), stored as one float4.
    const int kc_row = tid >> 1, kc_k = (tid & 1) * 4;
    const int rca_k = tid / (BM / 4), rca_row = (tid % (BM / 4)) * 4;
    const int rcb_k = tid >> 5, rcb_row = (tid & 31) * 4;  // + BM/16 k rows per pass
    const int ktiles = (K + 7) / 8;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const float* Az = A + z * sA;
        const float* Bz = B + z * sB;
        float ra[4], rb[PB][4];
        // Four consecutive elements (stride 1 in memory either way) into r: one float4 when
        // all four are in range and 16-byte aligned, else bounds-checked scalars.
        auto load4 = [](float (&r)[4], const float* p, bool row_in, int left) {
            if (row_in && left >= 4 && (((u64)p) & 15) == 0) {
                const float4 v = *reinterpret_cast<const float4*>(p);
                r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
            } else {
#pragma unroll
                for (int i = 0; i < 4; ++i) r[i] = (row_in && i < left) ? p[i] : 0.0f;
            }
        };
        // Global -> registers for the K step starting at k0 (zeros outside the matrices).
        auto load = [&](int k0) {
            if (!transA)  // row m0 + kc_row, k from k0 + kc_k
                load4(ra, Az + (i64)(m0 + kc_row) * lda + k0 + kc_k, m0 + kc_row < M, K - k0 - kc_k);
            else  // k0 + rca_k, rows from m0 + rca_row
                load4(ra, Az + (i64)(k0 + rca_k) * lda + m0 + rca_row, k0 + rca_k < K, M - m0 - rca_row);
#pragma unroll
            for (int p = 0; p < PB; ++p) {
                if (transB) {
                    const int n = n0 + kc_row + p * BM;
                    load4(rb[p], Bz + (i64)n * ldb + k0 + kc_k, n < N, K - k0 - kc_k);
                } else {
                    const int k = k0 + rcb_k + p * (BM / 16);
                    load4(rb[p], Bz + (i64)k * ldb + n0 + rcb_row, k < K, N - n0 - rcb_row);
                }
            }
        };
        auto store = [&](int buf) {
            if (!transA) {
#pragma unroll
                for (int i = 0; i < 4; ++i) As[buf][kc_k + i][kc_row] = ra[i];
            } else {
                *reinterpret_cast<float4*>(&As[buf][rca_k][rca_row]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
            }
#pragma unroll
            for (int p = 0; p < PB; ++p) {
                if (transB) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) Bs[buf][kc_k + i][kc_row + p * BM] = rb[p][i];
                } else {
                    *reinterpret_cast<float4*>(&Bs[buf][rcb_k + p * (BM / 16)][rcb_row]) =
                        make_float4(rb[p][0], rb[p][1], rb[p][2], rb[p][3]);
                }
            }
        };
        float acc[8][8] = {};
        load(0);
        store(0);
        __syncthreads();
        for (int kt = 0; kt < ktiles; ++kt) {
            const int cur = kt & 1;
            const bool more = kt + 1 < ktiles;
            if (more) load((kt + 1) * 8);
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][k][ty * 4]);
                const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][k][BM / 2 + ty * 4]);
                const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][k][tx * 4]);
                const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][k][64 + tx * 4]);
                const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
                for (int i = 0; i < 8; ++i)
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
            // The other buffer was last read in step kt - 1, before the barrier that ended it.
            if (more) store(cur ^ 1);
            __syncthreads();
        }
        // Entry z of C through the epilogue, or (split K) slice z as it is into P.
        auto store_tile = [&](float* Cz, i64 ld, float al, float be, const float* bi, int ac) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int m = m0 + (i < 4 ? ty * 4 + i : BM / 2 + ty * 4 + i - 4);
                if (m >= M) continue;
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const int n = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
                    if (n >= N) continue;
                    float* c = Cz + (i64)m * ld + n;
                    *c = epilogue(acc[i][j], c, al, be, bi, n, ac);
                }
            }
        };
        if (P)
            store_tile(P + (i64)z * M * N, N, 1.0f, 0.0f, nullptr, ACT_NONE);
        else
            store_tile(C + z * sC, ldc, alpha, beta, bias, act);
    }
    finish_split<float, BM, 128>(C, P, bias, M, N, ldc, batch, alpha, beta, act, counters, m0, n0);
}

extern "C" __global__ void __launch_bounds__(256, 2) gemm_large_f32(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_simt_big<128>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA, transB,
                       alpha, beta, act, P, counters);
}

extern "C" __global__ void __launch_bounds__(128, 4) gemm_half_f32(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_simt_big<64>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA, transB,
                      alpha, beta, act, P, counters);
}

// One thread's share of a 128-row tile of an operand for the tensor-core kernels: 8 words
// (8 TF32 values, or 16 bf16 values packed in pairs, lower k in the low half as mma wants)
// of row r, k kk..; the shared tile is S[row][k] (K-contiguous), so the 8 words are two
// 16-byte stores. `kcontig`: element (row, k) of the operand is at src[row * ld + k] (else at
// src[k * ld + row]); src points at the tile's (row 0, k 0); zeros outside rows_left x k_left.
// K-contiguous operand: row = tid / 2, so a warp covers 16 rows x 2 half-steps; vector loads
// when the 32 bytes are in range and aligned. Row-contiguous: row = tid % 128, so each scalar
// load instruction of a warp reads 32 consecutive elements of one k.
struct TileMap {
    int row, kk;
};

__device__ __forceinline__ TileMap tile_map(bool kcontig, int per) {
    const int tid = threadIdx.x;
    return kcontig ? TileMap{tid >> 1, (tid & 1) * per} : TileMap{tid & 127, (tid >> 7) * per};
}

__device__ __forceinline__ void load_words_tf32(u32 (&w)[8], const float* src, i64 ld, bool kcontig,
                                                TileMap mp, int rows_left, int k_left) {
    const bool row_in = mp.row < rows_left;
    if (kcontig) {
        const float* p = src + (i64)mp.row * ld + mp.kk;
        if (row_in && mp.kk + 8 <= k_left && (((u64)p) & 15) == 0) {
            const float4 v0 = *reinterpret_cast<const float4*>(p);
            const float4 v1 = *reinterpret_cast<const float4*>(p + 4);
            const float v[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
            for (int i = 0; i < 8; ++i) w[i] = f32_to_tf32(v[i]);
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) w[i] = f32_to_tf32((row_in && mp.kk + i < k_left) ? p[i] : 0.0f);
        }
    } else {
        const float* p = src + (i64)mp.kk * ld + mp.row;
#pragma unroll
        for (int i = 0; i < 8; ++i)
            w[i] = f32_to_tf32((row_in && mp.kk + i < k_left) ? p[(i64)i * ld] : 0.0f);
    }
}

__device__ __forceinline__ void load_words_bf16(u32 (&w)[8], const bf16* src, i64 ld, bool kcontig,
                                                TileMap mp, int rows_left, int k_left) {
    const bool row_in = mp.row < rows_left;
    if (kcontig) {
        const bf16* p = src + (i64)mp.row * ld + mp.kk;
        if (row_in && mp.kk + 16 <= k_left && (((u64)p) & 15) == 0) {
            const uint4 v0 = *reinterpret_cast<const uint4*>(p);
            const uint4 v1 = *reinterpret_cast<const uint4*>(p + 8);
            w[0] = v0.x; w[1] = v0.y; w[2] = v0.z; w[3] = v0.w;
            w[4] = v1.x; w[5] = v1.y; w[6] = v1.z; w[7] = v1.w;
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const u32 lo = (row_in && mp.kk + 2 * i < k_left) ? p[2 * i] : 0;
                const u32 hi = (row_in && mp.kk + 2 * i + 1 < k_left) ? p[2 * i + 1] : 0;
                w[i] = lo | (hi << 16);
            }
        }
    } else {
        const bf16* p = src + (i64)mp.kk * ld + mp.row;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const u32 lo = (row_in && mp.kk + 2 * i < k_left) ? p[(i64)(2 * i) * ld] : 0;
            const u32 hi = (row_in && mp.kk + 2 * i + 1 < k_left) ? p[(i64)(2 * i + 1) * ld] : 0;
            w[i] = lo | (hi << 16);
        }
    }
}

// load_words_bf16 for an f32 operand: 16 elements rounded to bf16 as they are loaded (what
// cast_f32_bf16 then load_words_bf16 would give, without the copy).
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
    return (u32)f32_to_bf16(lo) | ((u32)f32_to_bf16(hi) << 16);
}

__device__ __forceinline__ void load_words_bf16(u32 (&w)[8], const float* src, i64 ld, bool kcontig,
                                                TileMap mp, int rows_left, int k_left) {
    const bool row_in = mp.row < rows_left;
    if (kcontig) {
        const float* p = src + (i64)mp.row * ld + mp.kk;
        if (row_in && mp.kk + 16 <= k_left && (((u64)p) & 15) == 0) {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const float4 v = reinterpret_cast<const float4*>(p)[q];
                w[2 * q] = pack_bf16(v.x, v.y);
                w[2 * q + 1] = pack_bf16(v.z, v.w);
            }
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const float lo = (row_in && mp.kk + 2 * i < k_left) ? p[2 * i] : 0.0f;
                const float hi = (row_in && mp.kk + 2 * i + 1 < k_left) ? p[2 * i + 1] : 0.0f;
                w[i] = pack_bf16(lo, hi);
            }
        }
    } else {
        const float* p = src + (i64)mp.kk * ld + mp.row;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float lo = (row_in && mp.kk + 2 * i < k_left) ? p[(i64)(2 * i) * ld] : 0.0f;
            const float hi = (row_in && mp.kk + 2 * i + 1 < k_left) ? p[(i64)(2 * i + 1) * ld] : 0.0f;
            w[i] = pack_bf16(lo, hi);
        }
    }
}

// Two 16-byte stores of a thread's 8 words at S[row][kk] (rows of 20 words: 16-byte aligned).
__device__ __forceinline__ void store_words(u32* tile, TileMap mp, int kk_words, const u32 (&w)[8]) {
    uint4* d = reinterpret_cast<uint4*>(tile + mp.row * 20 + kk_words);
    d[0] = make_uint4(w[0], w[1], w[2], w[3]);
    d[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

// The 8 warps of a large tensor-core tile: 2 (rows) x 4 (columns) of 64x32 outputs, each
// 4 x 4 mma tiles of 16x8. Shared tiles: [2 buffers][128 rows][20 words] per operand, rows
// padded from 16 to 20 words so the fragment loads (8 rows x 4 words per instruction) hit 32
// distinct banks.
#define LARGE_TC_SMEM_WORDS (2 * 128 * 20)

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 from the generic address of a shared word.
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const u32* p) {
#ifdef AOANET_CUDA_EMU
    emu_ldmatrix_x4(r, p);
    return;
#endif
    u32 addr;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

template <bool BF16>
__device__ __forceinline__ void mma_tile_step(float (&acc)[4][4][4], const u32* As, const u32* Bs,
                                              int wm, int wn) {
    const int lane = threadIdx.x & 31;
    // tf32: 16 k per step = two m16n8k8 (words ks + t, ks + t + 4); bf16: 32 k = 16 words per
    // row = two m16n8k16 (word pairs ks + t, ks + t + 4 hold k 2t.., 2t + 8..).
#pragma unroll
    for (int ks = 0; ks < 16; ks += 8) {
        // Fragments by ldmatrix.x4 (four 8x4-word matrices, lane L giving the address of row
        // L % 8 of matrix L / 8; thread T receives word T % 4 of row T / 4 of each): for A tile
        // im the matrices are (rows 0-7 | 8-15) x (words ks.. | ks+4..) = a0, a1, a2, a3; for B
        // the n-tiles 2p and 2p+1, each (words ks.. | ks+4..). One instruction instead of four
        // 32-bit loads (the H100 ran this kernel's first version at 0.14 of cuBLAS TF32).
        u32 a[4][4], b[4][2];
#pragma unroll
        for (int im = 0; im < 4; ++im)
            ldmatrix_x4(a[im], As + (wm + im * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * 20 + ks +
                                   (lane >> 4) * 4);
#pragma unroll
        for (int p = 0; p < 2; ++p) {
            u32 r[4];
            ldmatrix_x4(r, Bs + (wn + (2 * p + (lane >> 4)) * 8 + (lane & 7)) * 20 + ks +
                               ((lane >> 3) & 1) * 4);
            b[2 * p][0] = r[0];
            b[2 * p][1] = r[1];
            b[2 * p + 1][0] = r[2];
            b[2 * p + 1][1] = r[3];
        }
#pragma unroll
        for (int im = 0; im < 4; ++im)
#pragma unroll
            for (int in = 0; in < 4; ++in) {
                float* d = acc[im][in];
                if (BF16)
                    mma_m16n8k16_bf16(d, a[im], b[in]);
                else
                    mma_m16n8k8_tf32(d, a[im], b[in]);
            }
    }
}

// The large tensor-core kernel: TF32 (K step 16) over f32 operands, or bf16 (K step 32) over
// operands stored as EA and EB (bf16, or f32 rounded as loaded).
template <typename EA, typename EB, bool BF16>
__device__ __forceinline__ void gemm_tc_large(float* C, const EA* A, const EB* B, const float* bias,
                                              int M, int N, int K, i64 lda, i64 ldb, i64 ldc,
                                              i64 sA, i64 sB, i64 sC, int batch, int transA,
                                              int transB, float alpha, float beta, int act,
                                              float* P, int* counters) {
    __shared__ __align__(16) u32 As[LARGE_TC_SMEM_WORDS];
    __shared__ __align__(16) u32 Bs[LARGE_TC_SMEM_WORDS];
    constexpr int BK = BF16 ? 32 : 16;  // elements of K per step: 16 words per row either way
    constexpr int PER = BF16 ? 16 : 8;  // elements per thread per row
    const int warp = threadIdx.x >> 5;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int m0 = blockIdx.y * 128, n0 = blockIdx.x * 128;
    const bool a_kc = !transA, b_kc = transB;
    const TileMap ma = tile_map(a_kc, PER), mb = tile_map(b_kc, PER);
    const int ktiles = (K + BK - 1) / BK;
    for (int z = blockIdx.z; z < batch; z += gridDim.z) {
        const EA* Az = A + z * sA;
        const EB* Bz = B + z * sB;
        // The tile's (row 0, k k0) in each operand.
        auto a_at = [&](int k0) { return a_kc ? Az + (i64)m0 * lda + k0 : Az + (i64)k0 * lda + m0; };
        auto b_at = [&](int k0) { return b_kc ? Bz + (i64)n0 * ldb + k0 : Bz + (i64)k0 * ldb + n0; };
        u32 wa[8], wb[8];
        auto load = [&](int k0) {
            if (BF16) {
                load_words_bf16(wa, a_at(k0), lda, a_kc, ma, M - m0, K - k0);
                load_words_bf16(wb, b_at(k0), ldb, b_kc, mb, N - n0, K - k0);
            } else {
                load_words_tf32(wa, reinterpret_cast<const float*>(a_at(k0)), lda, a_kc, ma, M - m0, K - k0);
                load_words_tf32(wb, reinterpret_cast<const float*>(b_at(k0)), ldb, b_kc, mb, N - n0, K - k0);
            }
        };
        // Word offset of a thread's first element within its row.
        const int a_kw = BF16 ? ma.kk / 2 : ma.kk, b_kw = BF16 ? mb.kk / 2 : mb.kk;
        float acc[4][4][4] = {};
        load(0);
        store_words(As, ma, a_kw, wa);
        store_words(Bs, mb, b_kw, wb);
        __syncthreads();
        for (int kt = 0; kt < ktiles; ++kt) {
            const int cur = (kt & 1) * 128 * 20;
            const bool more = kt + 1 < ktiles;
            if (more) load((kt + 1) * BK);
            mma_tile_step<BF16>(acc, As + cur, Bs + cur, wm, wn);
            // The other buffer was last read in step kt - 1, before the barrier that ended it.
            if (more) {
                const int nxt = 128 * 20 - cur;
                store_words(As + nxt, ma, a_kw, wa);
                store_words(Bs + nxt, mb, b_kw, wb);
            }
            __syncthreads();
        }
        store_tc_tile(acc, C, P, M, N, ldc, sC, z, m0, n0, wm, wn, alpha, beta, bias, act);
    }
    finish_split<float, 128, 128>(C, P, bias, M, N, ldc, batch, alpha, beta, act, counters, m0, n0);
}

extern "C" __global__ void __launch_bounds__(256, 2) gemm_tf32_large(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_tc_large<float, float, false>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch, transA,
                                transB, alpha, beta, act, P, counters);
}

extern "C" __global__ void __launch_bounds__(256, 2) gemm_bf16_large(
    float* C, const bf16* A, const bf16* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_tc_large<bf16, bf16, true>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch,
                                    transA, transB, alpha, beta, act, P, counters);
}

// gemm_bf16_large over f32 operands, rounded as they are loaded (no cast_f32_bf16 copies).
extern "C" __global__ void __launch_bounds__(256, 2) gemm_bf16_large_ff(
    float* C, const float* A, const float* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_tc_large<float, float, true>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch,
                                      transA, transB, alpha, beta, act, P, counters);
}

// gemm_bf16_large with A in f32 (rounded as loaded) and B already in bf16 (a weight's copy).
extern "C" __global__ void __launch_bounds__(256, 2) gemm_bf16_large_fb(
    float* C, const float* A, const bf16* B, const float* bias, int M, int N, int K, i64 lda,
    i64 ldb, i64 ldc, i64 sA, i64 sB, i64 sC, int batch, int transA, int transB, float alpha,
    float beta, int act, float* P, int* counters) {
    gemm_tc_large<float, bf16, true>(C, A, B, bias, M, N, K, lda, ldb, ldc, sA, sB, sC, batch,
                                     transA, transB, alpha, beta, act, P, counters);
}
