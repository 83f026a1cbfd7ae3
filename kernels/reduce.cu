// reduce.cu — reductions: over rows (last axis), over any axis, column sums, argmax, the max
// with its index and its adjoint, whole-tensor sums, and a non-finite count.
//
// Kernels (wrappers: src/cuda/kernels/reduce.rs; tests: tests/cuda_reduce.rs, and the f64
// versions through the tensor ops in tests/cuda_ops.rs):
//   reduce_rows_{f32,f64}    out[r] (=|+=) op_j x[r, j]       op: 0 sum, 1 mean, 2 max; block/row
//   reduce_axis_{f32,f64}    out[o, i] = op_l x[o, l, i]      one thread per output (short axes)
//   sum_cols_{f32,f64}       out[j] (=|+=) sum over rows of x[r, j] (bias gradients, column
//                            sums), chunks of rows in parallel, summed in chunk order by each
//                            column tile's last block: one launch, deterministic
//   argmax_rows_{f32,f64}    idx[r], val[r] = argmax_j / max_j x[r, j]: the first maximum, and
//                            the first NaN if the row has one (as the CPU's argmax_last)
//   max_axis_{f32,f64}       val[o, i], idx[o, i] = max / first argmax over l of x[o, l, i]
//                            (NaN wins, as the CPU's max_axis); one thread per output
//   scatter_axis_{f32,f64}   gx[o, l, i] = (l == idx[o, i]) ? g[o, i] : 0   (max's backward;
//                            writes every element, so gx needs no zeroing)
//   sum_partial_{f32,f64}    out[b] = sum of x[b * per .. (b + 1) * per]   (sum of everything in
//                            two launches; deterministic)
//   count_nonfinite_{f32,f64} *count += number of NaN / inf elements (all_finite)
//   count_nonfinite_multi_{f32,f64}  the same over many tensors in one launch (the trainer's
//                            check of every gradient each step: one launch, not ~80): a table
//                            of 3 u64 words per tensor (address, n, first block), block b
//                            counting NF_CHUNK elements of its tensor (common.cuh:
//                            multi_tensor_slot)
//
// `accumulate` = 1 adds into `out` (parameter gradients accumulate), 0 overwrites.

#include "common.cuh"

#define R_SUM 0
#define R_MEAN 1
#define R_MAX 2

template <typename T>
__device__ __forceinline__ void reduce_rows_impl(T* out, const T* x, i64 rows, int cols, int op,
                                                 int accumulate) {
    __shared__ T scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T v = op == R_MAX ? neg_inf<T>() : (T)0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            v = op == R_MAX ? x_max(v, xr[j]) : v + xr[j];
        v = op == R_MAX ? block_max(v, scratch) : block_sum(v, scratch);
        if (op == R_MEAN) v /= (T)cols;
        if (threadIdx.x == 0) out[row] = accumulate ? out[row] + v : v;
    }
}

extern "C" __global__ void reduce_rows_f32(float* out, const float* x, i64 rows, int cols, int op,
                                           int accumulate) {
    reduce_rows_impl(out, x, rows, cols, op, accumulate);
}
extern "C" __global__ void reduce_rows_f64(double* out, const double* x, i64 rows, int cols, int op,
                                           int accumulate) {
    reduce_rows_impl(out, x, rows, cols, op, accumulate);
}

template <typename T>
__device__ __forceinline__ void reduce_axis_impl(T* out, const T* x, i64 outer, i64 len, i64 inner,
                                                 int op) {
    const i64 n = outer * inner;
    GRID_STRIDE(t, n) {
        const i64 o = t / inner, i = t % inner;
        const T* p = x + o * len * inner + i;
        T v = op == R_MAX ? neg_inf<T>() : (T)0;
        for (i64 l = 0; l < len; ++l) v = op == R_MAX ? x_max(v, p[l * inner]) : v + p[l * inner];
        if (op == R_MEAN) v /= (T)len;
        out[t] = v;
    }
}

extern "C" __global__ void reduce_axis_f32(float* out, const float* x, i64 outer, i64 len,
                                           i64 inner, int op) {
    reduce_axis_impl(out, x, outer, len, inner, op);
}
extern "C" __global__ void reduce_axis_f64(double* out, const double* x, i64 outer, i64 len,
                                           i64 inner, int op) {
    reduce_axis_impl(out, x, outer, len, inner, op);
}

// grid (ceil(cols / blockDim.x), chunks). Thread j of chunk c sums column j over the chunk's
// rows. One chunk (`counters` null): the sum goes to out[j] (stored, or added with
// `accumulate`). More: each chunk's sums go to part [chunks, cols], and the last block of each
// column tile to finish (a count per tile, after __threadfence) sums the chunks in order into
// out and sets its count back to zero. Deterministic: the order of the sums is fixed, whichever
// block finishes last. Parallel over rows as well as columns: a bias gradient over 850 rows
// of 4096 columns is 27 x 32 blocks, not 16 blocks of threads each walking 850 rows.
template <typename T>
__device__ __forceinline__ void sum_cols_impl(T* out, T* part, const T* x, i64 rows, int cols,
                                              i64 rows_per_chunk, int accumulate, int* counters) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const i64 c = blockIdx.y;
    if (j < cols) {
        const i64 r0 = c * rows_per_chunk;
        const i64 r1 = min(rows, r0 + rows_per_chunk);
        T s = (T)0;
        for (i64 r = r0; r < r1; ++r) s += x[r * cols + j];
        if (!counters) out[j] = accumulate ? out[j] + s : s;
        else part[c * cols + j] = s;
    }
    if (!counters || !last_block_of_tile(&counters[blockIdx.x], 1, (int)gridDim.y)) return;
    if (j < cols) {
        T s = (T)0;
        for (int k = 0; k < (int)gridDim.y; ++k) s += __ldcg(part + (i64)k * cols + j);
        out[j] = accumulate ? out[j] + s : s;
    }
    if (threadIdx.x == 0) counters[blockIdx.x] = 0;
}

extern "C" __global__ void sum_cols_f32(float* out, float* part, const float* x, i64 rows,
                                        int cols, i64 rows_per_chunk, int accumulate,
                                        int* counters) {
    sum_cols_impl(out, part, x, rows, cols, rows_per_chunk, accumulate, counters);
}
extern "C" __global__ void sum_cols_f64(double* out, double* part, const double* x, i64 rows,
                                        int cols, i64 rows_per_chunk, int accumulate,
                                        int* counters) {
    sum_cols_impl(out, part, x, rows, cols, rows_per_chunk, accumulate, counters);
}

// Whether (v, i) comes before (best, bi) in the CPU's argmax order: the first NaN, else the
// first maximum.
template <typename T> __device__ __forceinline__ bool arg_better(T v, int i, T best, int bi) {
    const bool vn = x_isnan(v), bn = x_isnan(best);
    if (vn || bn) return vn && (!bn || i < bi);
    return v > best || (v == best && i < bi);
}

template <typename T>
__device__ __forceinline__ void argmax_rows_impl(int* idx, T* val, const T* x, i64 rows, int cols) {
    __shared__ T sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T best = neg_inf<T>();
        int bi = 0x7fffffff;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            if (arg_better(xr[j], j, best, bi)) {
                best = xr[j];
                bi = j;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const T v2 = __shfl_xor_sync(0xffffffffu, best, o);
            const int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
            if (arg_better(v2, i2, best, bi)) {
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
            best = lane < nwarps ? sv[lane] : neg_inf<T>();
            bi = lane < nwarps ? si[lane] : 0x7fffffff;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const T v2 = __shfl_xor_sync(0xffffffffu, best, o);
                const int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
                if (arg_better(v2, i2, best, bi)) {
                    best = v2;
                    bi = i2;
                }
            }
            if (lane == 0) {
                idx[row] = bi == 0x7fffffff ? 0 : bi;
                val[row] = best;
            }
        }
    }
}

extern "C" __global__ void argmax_rows_f32(int* idx, float* val, const float* x, i64 rows,
                                           int cols) {
    argmax_rows_impl(idx, val, x, rows, cols);
}
extern "C" __global__ void argmax_rows_f64(int* idx, double* val, const double* x, i64 rows,
                                           int cols) {
    argmax_rows_impl(idx, val, x, rows, cols);
}

template <typename T>
__device__ __forceinline__ void max_axis_impl(T* val, int* idx, const T* x, i64 outer, i64 len,
                                              i64 inner) {
    const i64 n = outer * inner;
    GRID_STRIDE(t, n) {
        const i64 o = t / inner, i = t % inner;
        const T* p = x + o * len * inner + i;
        T best = p[0];
        int at = 0;
        for (i64 l = 1; l < len; ++l) {
            const T v = p[l * inner];
            if (v > best || (x_isnan(v) && !x_isnan(best))) {
                best = v;
                at = (int)l;
            }
        }
        val[t] = best;
        idx[t] = at;
    }
}

extern "C" __global__ void max_axis_f32(float* val, int* idx, const float* x, i64 outer, i64 len,
                                        i64 inner) {
    max_axis_impl(val, idx, x, outer, len, inner);
}
extern "C" __global__ void max_axis_f64(double* val, int* idx, const double* x, i64 outer, i64 len,
                                        i64 inner) {
    max_axis_impl(val, idx, x, outer, len, inner);
}

template <typename T>
__device__ __forceinline__ void scatter_axis_impl(T* gx, const T* g, const int* idx, i64 outer,
                                                  i64 len, i64 inner) {
    const i64 n = outer * len * inner;
    GRID_STRIDE(e, n) {
        const i64 i = e % inner;
        const i64 r = e / inner;
        const i64 l = r % len, o = r / len;
        const i64 k = o * inner + i;
        gx[e] = (idx[k] == l) ? g[k] : (T)0;
    }
}

extern "C" __global__ void scatter_axis_f32(float* gx, const float* g, const int* idx, i64 outer,
                                            i64 len, i64 inner) {
    scatter_axis_impl(gx, g, idx, outer, len, inner);
}
extern "C" __global__ void scatter_axis_f64(double* gx, const double* g, const int* idx, i64 outer,
                                            i64 len, i64 inner) {
    scatter_axis_impl(gx, g, idx, outer, len, inner);
}

// One block per chunk of `per` elements (grid-stride over chunks).
template <typename T>
__device__ __forceinline__ void sum_partial_impl(T* out, const T* x, i64 n, i64 per) {
    __shared__ T scratch[32];
    const i64 chunks = (n + per - 1) / per;
    for (i64 c = blockIdx.x; c < chunks; c += gridDim.x) {
        const i64 a = c * per, b = min(n, a + per);
        T s = (T)0;
        for (i64 i = a + threadIdx.x; i < b; i += blockDim.x) s += x[i];
        s = block_sum(s, scratch);
        if (threadIdx.x == 0) out[c] = s;
    }
}

extern "C" __global__ void sum_partial_f32(float* out, const float* x, i64 n, i64 per) {
    sum_partial_impl(out, x, n, per);
}
extern "C" __global__ void sum_partial_f64(double* out, const double* x, i64 n, i64 per) {
    sum_partial_impl(out, x, n, per);
}

template <typename T>
__device__ __forceinline__ void count_nonfinite_impl(u32* count, const T* x, i64 n) {
    u32 local = 0;
    GRID_STRIDE(i, n) {
        const T v = x[i];
        // NaN fails v == v; +-inf is the only value with v - v != 0.
        if (v != v || v - v != (T)0) ++local;
    }
    if (local) atomicAdd(count, local);
}

extern "C" __global__ void count_nonfinite_f32(u32* count, const float* x, i64 n) {
    count_nonfinite_impl(count, x, n);
}
extern "C" __global__ void count_nonfinite_f64(u32* count, const double* x, i64 n) {
    count_nonfinite_impl(count, x, n);
}

#define NF_CHUNK 16384

template <typename T>
__device__ __forceinline__ void count_nonfinite_multi_impl(u32* count, const u64* table,
                                                           int tensors) {
    const i64 block = blockIdx.x;
    const u64* s = table + (i64)multi_tensor_slot(table, tensors, 3, 2, block) * 3;
    const T* x = (const T*)s[0];
    const i64 n = (i64)s[1];
    const i64 start = (block - (i64)s[2]) * NF_CHUNK;
    const i64 end = start + NF_CHUNK < n ? start + NF_CHUNK : n;
    u32 local = 0;
    for (i64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        const T v = x[i];
        if (v != v || v - v != (T)0) ++local;
    }
    if (local) atomicAdd(count, local);
}

extern "C" __global__ void count_nonfinite_multi_f32(u32* count, const u64* table, int tensors) {
    count_nonfinite_multi_impl<float>(count, table, tensors);
}
extern "C" __global__ void count_nonfinite_multi_f64(u32* count, const u64* table, int tensors) {
    count_nonfinite_multi_impl<double>(count, table, tensors);
}
