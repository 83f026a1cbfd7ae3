// elementwise.cu — elementwise and broadcast ops, strided copies, casts, layout helpers.
//
// Kernels (each has a launch wrapper in src/cuda/kernels/elementwise.rs and a test in
// tests/cuda_elementwise.rs or, for the f64 versions the tensor ops use, tests/cuda_ops.rs):
//   fill_{f32,f64}          out[i] = value
//   axpy_{f32,f64}          y[i] += alpha * x[i]         (in-place gradient accumulation)
//   unary_{f32,f64}         out[i] = op(x[i]) for the U_* op codes below
//   binary_{f32,f64}        out[i] = op(a[ia], b[ib]) with broadcasting/strides given by a Bcast
//                           and the B_* op codes below (two scalar parameters for some ops)
//   copy_strided_{f32,f64}  dst[jd] = src[js]: any strided view to any strided view (Bcast's
//                           sa = source strides, sb = destination strides): contiguous copies,
//                           concat, the adjoint of narrow
//   copy_blocks_{f32,f64}   concat of dense pieces in one launch: piece k (a table of 5 u64 words
//                           per piece: source address, n, inner, destination offset, first
//                           block) is `n / inner` rows of `inner` elements, row o going to
//                           dst[offset + o * dst_row_stride ..]; block b copies CB_CHUNK
//                           elements of its piece (common.cuh: multi_tensor_slot)
//   sum_many_{f32,f64}      out[i] = src[0][i] + src[1][i] + ... in that order (up to SUM_MAX
//                           sources, addresses by value; out may be src[0]): the gradient pieces
//                           a tensor collected in a backward pass, summed in one launch with
//                           the bits of adding them one by one
//   copy_blocks_small_{f32,f64}  the same for up to CB_SMALL pieces with the table passed by
//                           value (no upload: a concat of two pieces is then one launch and
//                           nothing else)
//   split_blocks{,_small}_{f32,f64}  the adjoint (concat's backward): the table's pieces are
//                           dense destinations, row o of piece k read from
//                           src[offset + o * src_row_stride ..]
//   cast_f32_f64 / cast_f64_f32     f32 <-> f64 (to_dtype on the device)
//   cast_f32_bf16 / cast_bf16_f32   dtype conversion (round to nearest even)
//   permute0213_f32         [d0,d1,d2,d3] -> [d0,d2,d1,d3]   (split / merge attention heads)
//   mask_keys_f32           masked_fill(score, key mask == 0, value) over rows of keys
//
// All kernels use grid-stride loops with 64-bit indices, so any grid size is correct; the
// wrappers launch 256 threads per block and cap the number of blocks.

#include "common.cuh"

// Unary op codes (`Unary` in src/cuda/kernels/elementwise.rs lists the same numbers).
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
#define U_SCALE 11   // x * alpha (mul_scalar: one rounding, like the CPU's x * c)
#define U_SHIFT 12   // x + alpha (add_scalar)

// Binary op codes (`Binary` in src/cuda/kernels/elementwise.rs).
#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_MAX 4
#define B_MIN 5
#define B_RELU_BWD 6     // a = dy, b = x (or y):  dy * (b > 0)
#define B_SIGMOID_BWD 7  // a = dy, b = y:  dy * y * (1 - y)
#define B_TANH_BWD 8     // a = dy, b = y:  dy * (1 - y^2)
#define B_FILL_WHERE 9   // b != 0 ? alpha : a      (masked_fill)
#define B_ZERO_WHERE 10  // b != 0 ? 0 : a          (masked_fill backward, where's b side)
#define B_KEEP_WHERE 11  // b != 0 ? a : 0          (where's a side)
#define B_CLAMP_BWD 12   // a = dy, b = x:  alpha <= x <= beta ? dy : 0
#define B_POW_BWD 13     // a = dy, b = x:  dy * alpha * x^beta   (beta = alpha - 1)
#define B_SCALED_DIV 14  // a * alpha / b           (sqrt backward: dy * 0.5 / y)
#define B_RELU_SCALE_BWD 15  // a = dy, b = y:  b > 0 ? dy * alpha : 0   (relu_dropout backward)

// Broadcast description: out is contiguous with `shape`; operand a is read at
// sum_d idx_d * sa[d], b at sum_d idx_d * sb[d] (stride 0 = broadcast dimension).
// Up to 6 dimensions; unused leading dims have shape 1. Mirrors `Bcast` in Rust (#[repr(C)]).
struct Bcast {
    i64 shape[6];
    i64 sa[6];
    i64 sb[6];
    int ndim;
};

// The two operand offsets of output element i.
__device__ __forceinline__ void bcast_offsets(const Bcast& bc, i64 i, i64& ia, i64& ib) {
    i64 rest = i;
    ia = 0;
    ib = 0;
    for (int d = bc.ndim - 1; d >= 0; --d) {
        const i64 idx = rest % bc.shape[d];
        rest /= bc.shape[d];
        ia += idx * bc.sa[d];
        ib += idx * bc.sb[d];
    }
}

// ------------------------------------------------------------------------------------------
// fill, axpy

template <typename T> __device__ __forceinline__ void fill_impl(T* out, i64 n, T value) {
    GRID_STRIDE(i, n) out[i] = value;
}

extern "C" __global__ void fill_f32(float* out, i64 n, float value) { fill_impl(out, n, value); }
extern "C" __global__ void fill_f64(double* out, i64 n, double value) { fill_impl(out, n, value); }

template <typename T> __device__ __forceinline__ void axpy_impl(T* y, const T* x, i64 n, T alpha) {
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

extern "C" __global__ void axpy_f32(float* y, const float* x, i64 n, float alpha) {
    axpy_impl(y, x, n, alpha);
}
extern "C" __global__ void axpy_f64(double* y, const double* x, i64 n, double alpha) {
    axpy_impl(y, x, n, alpha);
}

// ------------------------------------------------------------------------------------------
// unary

template <typename T> __device__ __forceinline__ T unary_op(int op, T x, T alpha, T beta) {
    switch (op) {
        case U_AFFINE: return alpha * x + beta;
        case U_NEG: return -x;
        case U_EXP: return x_exp(x);
        case U_LOG: return x_log(x);
        case U_SQRT: return x_sqrt(x);
        case U_RELU: return x > (T)0 ? x : (T)0;
        case U_SIGMOID: return x_sigmoid(x);
        case U_TANH: return x_tanh(x);
        case U_POW: return x_pow(x, alpha);
        // fmax/fmin return the non-NaN operand, as Rust's max/min (the CPU's clamp) do
        case U_CLAMP: return x_min(x_max(x, alpha), beta);
        case U_RECIP: return (T)1 / x;
        case U_SCALE: return x * alpha;
        case U_SHIFT: return x + alpha;
        default: return quiet_nan<T>();  // unknown op: NaN, never silent
    }
}

template <typename T>
__device__ __forceinline__ void unary_impl(T* out, const T* x, i64 n, int op, T alpha, T beta) {
    GRID_STRIDE(i, n) out[i] = unary_op(op, x[i], alpha, beta);
}

extern "C" __global__ void unary_f32(float* out, const float* x, i64 n, int op, float alpha,
                                     float beta) {
    unary_impl(out, x, n, op, alpha, beta);
}
extern "C" __global__ void unary_f64(double* out, const double* x, i64 n, int op, double alpha,
                                     double beta) {
    unary_impl(out, x, n, op, alpha, beta);
}

// ------------------------------------------------------------------------------------------
// binary

template <typename T> __device__ __forceinline__ T binary_op(int op, T a, T b, T alpha, T beta) {
    switch (op) {
        case B_ADD: return a + b;
        case B_SUB: return a - b;
        case B_MUL: return a * b;
        case B_DIV: return a / b;
        case B_MAX: return x_max(a, b);
        case B_MIN: return x_min(a, b);
        case B_RELU_BWD: return b > (T)0 ? a : (T)0;
        case B_SIGMOID_BWD: return a * b * ((T)1 - b);
        case B_TANH_BWD: return a * ((T)1 - b * b);
        case B_FILL_WHERE: return b != (T)0 ? alpha : a;
        case B_ZERO_WHERE: return b != (T)0 ? (T)0 : a;
        case B_KEEP_WHERE: return b != (T)0 ? a : (T)0;
        case B_CLAMP_BWD: return (b >= alpha && b <= beta) ? a : (T)0;
        case B_POW_BWD: return a * alpha * x_pow(b, beta);
        case B_SCALED_DIV: return a * alpha / b;
        case B_RELU_SCALE_BWD: return b > (T)0 ? a * alpha : (T)0;
        default: return quiet_nan<T>();
    }
}

template <typename T>
__device__ __forceinline__ void binary_impl(T* out, const T* a, const T* b, i64 n, int op, T alpha,
                                            T beta, const Bcast& bc) {
    GRID_STRIDE(i, n) {
        i64 ia, ib;
        bcast_offsets(bc, i, ia, ib);
        out[i] = binary_op(op, a[ia], b[ib], alpha, beta);
    }
}

extern "C" __global__ void binary_f32(float* out, const float* a, const float* b, i64 n, int op,
                                      float alpha, float beta, Bcast bc) {
    binary_impl(out, a, b, n, op, alpha, beta, bc);
}
extern "C" __global__ void binary_f64(double* out, const double* a, const double* b, i64 n, int op,
                                      double alpha, double beta, Bcast bc) {
    binary_impl(out, a, b, n, op, alpha, beta, bc);
}

// ------------------------------------------------------------------------------------------
// strided copy: element i of the index space `shape` (row-major) goes from src[sum idx*sa] to
// dst[sum idx*sb]. Distinct i must map to distinct destinations (the wrapper checks that the
// destination strides are those of a dense or narrowed tensor, never 0 on a dimension > 1).

template <typename T>
__device__ __forceinline__ void copy_strided_impl(T* dst, const T* src, i64 n, const Bcast& bc) {
    GRID_STRIDE(i, n) {
        i64 is, id;
        bcast_offsets(bc, i, is, id);
        dst[id] = src[is];
    }
}

extern "C" __global__ void copy_strided_f32(float* dst, const float* src, i64 n, Bcast bc) {
    copy_strided_impl(dst, src, n, bc);
}
extern "C" __global__ void copy_strided_f64(double* dst, const double* src, i64 n, Bcast bc) {
    copy_strided_impl(dst, src, n, bc);
}

#define CB_SLOT 5
#define CB_CHUNK 2048
#define CB_UNROLL 8

// SPLIT false: the table's pieces are sources, copied into rows of `rows` (concat); SPLIT
// true: they are destinations, filled from rows of `rows` (split, concat's adjoint).
// A block copies CB_CHUNK elements, each thread CB_UNROLL of them with all its loads issued
// before its stores (sources and destinations are distinct buffers): with 8192 elements per
// block, one load and one store at a time, the decoder's 50-row concatenations took 16 us
// per launch on the H200 in 14 blocks, each thread waiting for memory 32 times; this way 6 us
// on the H100.
template <typename T, bool SPLIT>
__device__ __forceinline__ void copy_blocks_impl(T* rows, const u64* table, int pieces,
                                                 i64 row_stride) {
    const i64 block = blockIdx.x;
    const u64* s = table + (i64)multi_tensor_slot(table, pieces, CB_SLOT, 4, block) * CB_SLOT;
    T* piece = (T*)s[0];
    const i64 n = (i64)s[1], inner = (i64)s[2], offset = (i64)s[3];
    const i64 start = (block - (i64)s[4]) * CB_CHUNK;
    const i64 end = start + CB_CHUNK < n ? start + CB_CHUNK : n;
    for (i64 e0 = start + threadIdx.x; e0 < end; e0 += CB_UNROLL * (i64)blockDim.x) {
        T v[CB_UNROLL];
        i64 at[CB_UNROLL];
#pragma unroll
        for (int u = 0; u < CB_UNROLL; ++u) {
            const i64 e = e0 + (i64)u * blockDim.x;
            const i64 o = e / inner;
            at[u] = offset + o * row_stride + (e - o * inner);
            if (e < end) v[u] = SPLIT ? rows[at[u]] : piece[e];
        }
#pragma unroll
        for (int u = 0; u < CB_UNROLL; ++u) {
            const i64 e = e0 + (i64)u * blockDim.x;
            if (e >= end) break;
            if (SPLIT)
                piece[e] = v[u];
            else
                rows[at[u]] = v[u];
        }
    }
}

extern "C" __global__ void copy_blocks_f32(float* dst, const u64* table, int pieces,
                                           i64 dst_row_stride) {
    copy_blocks_impl<float, false>(dst, table, pieces, dst_row_stride);
}
extern "C" __global__ void copy_blocks_f64(double* dst, const u64* table, int pieces,
                                           i64 dst_row_stride) {
    copy_blocks_impl<double, false>(dst, table, pieces, dst_row_stride);
}

extern "C" __global__ void split_blocks_f32(const float* src, const u64* table, int pieces,
                                            i64 src_row_stride) {
    copy_blocks_impl<float, true>((float*)src, table, pieces, src_row_stride);
}
extern "C" __global__ void split_blocks_f64(const double* src, const u64* table, int pieces,
                                            i64 src_row_stride) {
    copy_blocks_impl<double, true>((double*)src, table, pieces, src_row_stride);
}

#define CB_SMALL 4
struct SmallBlocks {
    u64 w[CB_SLOT * CB_SMALL];
};

extern "C" __global__ void copy_blocks_small_f32(float* dst, SmallBlocks table, int pieces,
                                                 i64 dst_row_stride) {
    copy_blocks_impl<float, false>(dst, table.w, pieces, dst_row_stride);
}
extern "C" __global__ void copy_blocks_small_f64(double* dst, SmallBlocks table, int pieces,
                                                 i64 dst_row_stride) {
    copy_blocks_impl<double, false>(dst, table.w, pieces, dst_row_stride);
}

extern "C" __global__ void split_blocks_small_f32(const float* src, SmallBlocks table, int pieces,
                                                  i64 src_row_stride) {
    copy_blocks_impl<float, true>((float*)src, table.w, pieces, src_row_stride);
}
extern "C" __global__ void split_blocks_small_f64(const double* src, SmallBlocks table,
                                                  int pieces, i64 src_row_stride) {
    copy_blocks_impl<double, true>((double*)src, table.w, pieces, src_row_stride);
}

// ------------------------------------------------------------------------------------------
// casts

extern "C" __global__ void cast_f32_f64(double* out, const float* x, i64 n) {
    GRID_STRIDE(i, n) out[i] = (double)x[i];
}

// Round to nearest even, as Rust's `as f32`.
extern "C" __global__ void cast_f64_f32(float* out, const double* x, i64 n) {
    GRID_STRIDE(i, n) out[i] = __double2float_rn(x[i]);
}

extern "C" __global__ void cast_f32_bf16(bf16* out, const float* x, i64 n) {
    GRID_STRIDE(i, n) out[i] = f32_to_bf16(x[i]);
}

extern "C" __global__ void cast_bf16_f32(float* out, const bf16* x, i64 n) {
    GRID_STRIDE(i, n) out[i] = bf16_to_f32(x[i]);
}

// ------------------------------------------------------------------------------------------
// attention layout helpers (f32)

// out[a][c][b][e] = x[a][b][c][e] for x of shape [d0, d1, d2, d3].
extern "C" __global__ void permute0213_f32(float* out, const float* x, i64 d0, i64 d1, i64 d2,
                                           i64 d3) {
    const i64 n = d0 * d1 * d2 * d3;
    GRID_STRIDE(i, n) {
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
    GRID_STRIDE(i, n) {
        const i64 row = i / nk;
        const int k = (int)(i % nk);
        const i64 b = row / rows_per_batch;
        if (mask[b * nk + k] == 0) scores[i] = value;
    }
}

#define SUM_MAX 16
struct SumSources {
    u64 p[SUM_MAX];
};

template <typename T>
__device__ __forceinline__ void sum_many_impl(T* out, const SumSources& src, int count, i64 n) {
    GRID_STRIDE(i, n) {
        T acc = ((const T*)src.p[0])[i];
        // Unrolled to constant indices: a loop up to `count` indexes the parameter table
        // dynamically, which makes the compiler copy it to local memory (ptxas: a 128-byte
        // stack frame) and read each address from there.
#pragma unroll
        for (int k = 1; k < SUM_MAX; ++k)
            if (k < count) acc += ((const T*)src.p[k])[i];
        out[i] = acc;
    }
}

extern "C" __global__ void sum_many_f32(float* out, SumSources src, int count, i64 n) {
    sum_many_impl(out, src, count, n);
}
extern "C" __global__ void sum_many_f64(double* out, SumSources src, int count, i64 n) {
    sum_many_impl(out, src, count, n);
}
