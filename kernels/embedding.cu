// embedding.cu — gathers and scatter-adds by integer index: the embedding lookup and its
// gradient, index_select along any axis and its adjoint, and the per-row gather of the target
// log-probabilities.
//
// Kernels (wrappers: src/cuda/kernels/embedding.rs; tests: tests/cuda_embedding.rs, and through
// the tensor ops in tests/cuda_ops.rs), each in f32 and f64:
//   embedding_fwd_*    out[t, :] = table[ids[t], :]; an id outside [0, vocab) writes NaN so
//                      the error cannot pass silently (the tensor op also checks ids on the host)
//   index_select_*     out[o, k, i] = x[o, ids[k], i]   for x viewed as [outer, len, inner]
//   index_add_*        gx[o, ids[k], i] += g[o, k, i]   (index_select's adjoint; gx is zeroed or
//                      accumulated by the caller), in k order
//   scatter_rows_*     out[dest[k], :] += src[j] for j = start[k] .. start[k+1] - 1, in that
//                      order, for each k < unique: a table of u64 words [dest[unique],
//                      start[unique + 1], src[tokens]], src holding the addresses of rows of
//                      `row` elements. The gradient of an embedding used at every decoding
//                      step, in one launch: the host groups the steps' tokens by id keeping
//                      their order, so each element adds the same values in the same order as
//                      a sequential loop over the steps' tokens (the same bits), with a thread
//                      per (id, column)
//   gather_last_*      out[r] = x[r, ids[r]]
//   scatter_last_*     gx[r, j] = (j == ids[r]) ? g[r] : 0   (writes every element)
//
// The scatter-adds give each thread one destination column (scatter_rows: one (id, d); index_add:
// one (o, i)) and walk the indices in order: two indices with the same value never race (the
// same thread handles both), no atomics are needed, and the sums are bit-for-bit reproducible
// (and equal to a sequential CPU loop over the indices).

#include "common.cuh"

template <typename T>
__device__ __forceinline__ void embedding_fwd_impl(T* out, const T* table, const int* ids, i64 n,
                                                   int dim, int vocab) {
    const i64 total = n * dim;
    GRID_STRIDE(i, total) {
        const i64 t = i / dim;
        const int d = (int)(i % dim);
        const int id = ids[t];
        out[i] = (id >= 0 && id < vocab) ? table[(i64)id * dim + d] : quiet_nan<T>();
    }
}

extern "C" __global__ void embedding_fwd_f32(float* out, const float* table, const int* ids, i64 n,
                                             int dim, int vocab) {
    embedding_fwd_impl(out, table, ids, n, dim, vocab);
}
extern "C" __global__ void embedding_fwd_f64(double* out, const double* table, const int* ids,
                                             i64 n, int dim, int vocab) {
    embedding_fwd_impl(out, table, ids, n, dim, vocab);
}

template <typename T>
__device__ __forceinline__ void scatter_rows_impl(T* out, const u64* table, i64 unique, i64 row) {
    const u64* dest = table;
    const u64* start = table + unique;
    const u64* src = start + unique + 1;
    const i64 total = unique * row;
    GRID_STRIDE(e, total) {
        const i64 k = e / row, d = e % row;
        T* o = out + (i64)dest[k] * row + d;
        T acc = *o;
        for (u64 j = start[k]; j < start[k + 1]; ++j) acc += ((const T*)src[j])[d];
        *o = acc;
    }
}

extern "C" __global__ void scatter_rows_f32(float* out, const u64* table, i64 unique, i64 row) {
    scatter_rows_impl(out, table, unique, row);
}
extern "C" __global__ void scatter_rows_f64(double* out, const u64* table, i64 unique, i64 row) {
    scatter_rows_impl(out, table, unique, row);
}

template <typename T>
__device__ __forceinline__ void index_select_impl(T* out, const T* x, const int* ids, i64 outer,
                                                  i64 len, i64 inner, i64 nids) {
    const i64 total = outer * nids * inner;
    GRID_STRIDE(e, total) {
        const i64 i = e % inner;
        const i64 r = e / inner;
        const i64 k = r % nids, o = r / nids;
        out[e] = x[(o * len + ids[k]) * inner + i];
    }
}

extern "C" __global__ void index_select_f32(float* out, const float* x, const int* ids, i64 outer,
                                            i64 len, i64 inner, i64 nids) {
    index_select_impl(out, x, ids, outer, len, inner, nids);
}
extern "C" __global__ void index_select_f64(double* out, const double* x, const int* ids, i64 outer,
                                            i64 len, i64 inner, i64 nids) {
    index_select_impl(out, x, ids, outer, len, inner, nids);
}

template <typename T>
__device__ __forceinline__ void index_add_impl(T* gx, const T* g, const int* ids, i64 outer, i64 len,
                                               i64 inner, i64 nids) {
    const i64 cols = outer * inner;
    GRID_STRIDE(c, cols) {
        const i64 o = c / inner, i = c % inner;
        for (i64 k = 0; k < nids; ++k) gx[(o * len + ids[k]) * inner + i] += g[(o * nids + k) * inner + i];
    }
}

extern "C" __global__ void index_add_f32(float* gx, const float* g, const int* ids, i64 outer,
                                         i64 len, i64 inner, i64 nids) {
    index_add_impl(gx, g, ids, outer, len, inner, nids);
}
extern "C" __global__ void index_add_f64(double* gx, const double* g, const int* ids, i64 outer,
                                         i64 len, i64 inner, i64 nids) {
    index_add_impl(gx, g, ids, outer, len, inner, nids);
}

template <typename T>
__device__ __forceinline__ void gather_last_impl(T* out, const T* x, const int* ids, i64 rows,
                                                 i64 cols) {
    GRID_STRIDE(r, rows) out[r] = x[r * cols + ids[r]];
}

extern "C" __global__ void gather_last_f32(float* out, const float* x, const int* ids, i64 rows,
                                           i64 cols) {
    gather_last_impl(out, x, ids, rows, cols);
}
extern "C" __global__ void gather_last_f64(double* out, const double* x, const int* ids, i64 rows,
                                           i64 cols) {
    gather_last_impl(out, x, ids, rows, cols);
}

template <typename T>
__device__ __forceinline__ void scatter_last_impl(T* gx, const T* g, const int* ids, i64 rows,
                                                  i64 cols) {
    const i64 total = rows * cols;
    GRID_STRIDE(e, total) {
        const i64 r = e / cols, j = e % cols;
        gx[e] = (j == ids[r]) ? g[r] : (T)0;
    }
}

extern "C" __global__ void scatter_last_f32(float* gx, const float* g, const int* ids, i64 rows,
                                            i64 cols) {
    scatter_last_impl(gx, g, ids, rows, cols);
}
extern "C" __global__ void scatter_last_f64(double* gx, const double* g, const int* ids, i64 rows,
                                            i64 cols) {
    scatter_last_impl(gx, g, ids, rows, cols);
}
