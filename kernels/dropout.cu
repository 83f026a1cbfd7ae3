// dropout.cu — inverted dropout from Philox4x32-10, the same masks as the CPU.
//
// Kernels (wrappers: src/cuda/kernels/dropout.rs; tests: tests/cuda_dropout.rs):
//   philox_u32   out[i] = word (offset + i) of Philox stream (seed, stream): equals
//                rng::Philox::with_stream(seed, stream) advanced to `offset`, then fill_u32
//   relu_dropout_{f32,f64}  the same on relu(x) (x > 0 ? x : 0, as unary relu): one pass for
//                the ReLU + dropout pairs of the model, the values of the two ops in a row; its
//                backward is elementwise.cu's B_RELU_SCALE_BWD on the output
//   add_dropout_{f32,f64}  y[i] = a[i] + dropout(x)[i]: a residual connection or the decoder's
//                `mean_feats + ctx_drop(ctx)` in one pass; both roundings explicit (no fused
//                multiply-add), so the values of the dropout kernel followed by the add kernel;
//                its backward is a pass-through for a and dropout_* of the gradient for x
//   dropout_{f32,f64}  y[i] = keep(i) ? x[i] * scale : 0, where keep(i) uses word (offset + i)
//                (rule in common.cuh: dropout_keep) and scale = 1 / (1 - p) is computed by the
//                caller exactly as the CPU computes it (in f64, then rounded to T), so kept
//                elements equal the CPU's bit for bit. The backward of dropout is the same call
//                on dy with the same (seed, stream, offset): the mask is regenerated, never stored.
//   dropout_steps_{f32,f64}  dropout of x [outer, steps, width] where step t drew its own
//                words: segment (o, t), `width` elements, uses words
//                offset + t * step_stride + o * width + [0, width): the masks of `steps`
//                dropouts drawn one after another, `step_stride` words apart (the decoder's
//                output dropout, drawn at every step and applied once to all steps' outputs).
//   lstm_input_{f32,f64}  the decoder's LSTM input of one step, out [rows, E + D]:
//                out[r, :E] = relu_dropout(table[ids[r], :]) (words off_e + r * E + c) and
//                out[r, E:] = base[r] + dropout(x[r]) (words off_x + r * D + c): an embedding
//                lookup, relu_dropout, add_dropout and a concatenation, four launches, in one,
//                with the values of those kernels (an id outside [0, vocab) gives a row of
//                NaN, as embedding_fwd; the host refuses such ids first). p = 0 for a half:
//                no dropout (scale 1).
//   lstm_input_bwd_{f32,f64}  its backward from dy [rows, E + D] and the output y: the
//                embedding half's gradient (dy * scale_e where y > 0, else 0; the table's
//                rows are added by scatter_rows), base's (dy) and x's (dropout of dy), three
//                launches (a split, the ReLU-scale product and a dropout) in one.
//
// Each thread computes one Philox block (4 words) and handles the up to 4 elements that use
// it, so each word is computed once (lstm_input and its backward: one word per element, the
// block computed for each; the step's tensors are small).

#include "common.cuh"

extern "C" __global__ void philox_u32(u32* out, i64 n, u64 seed, u64 stream, u64 offset) {
    if (n <= 0) return;
    const u64 first = offset >> 2, last = (offset + (u64)n - 1) >> 2;
    const uint2 key = make_uint2((u32)seed, (u32)(seed >> 32));
    for (u64 b = first + blockIdx.x * (u64)blockDim.x + threadIdx.x; b <= last; b += (u64)gridDim.x * blockDim.x) {
        const uint4 w = philox4x32_10(make_uint4((u32)b, (u32)(b >> 32), (u32)stream, (u32)(stream >> 32)), key);
        const u32 words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const u64 word = 4 * b + l;
            if (word >= offset && word < offset + (u64)n) out[word - offset] = words[l];
        }
    }
}

// Products and sums rounded on their own, never contracted into a fused multiply-add: the
// fused kernels must give the bits of the separate ones.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// y = [addend +] dropout([relu](x)); `addend` null: no addition.
template <typename T, bool RELU>
__device__ __forceinline__ void dropout_impl(T* y, const T* x, const T* addend, i64 n, float p,
                                             T scale, u64 seed, u64 stream, u64 offset) {
    if (n <= 0) return;
    const u64 first = offset >> 2, last = (offset + (u64)n - 1) >> 2;
    const uint2 key = make_uint2((u32)seed, (u32)(seed >> 32));
    for (u64 b = first + blockIdx.x * (u64)blockDim.x + threadIdx.x; b <= last; b += (u64)gridDim.x * blockDim.x) {
        const uint4 w = philox4x32_10(make_uint4((u32)b, (u32)(b >> 32), (u32)stream, (u32)(stream >> 32)), key);
        const u32 words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const u64 word = 4 * b + l;
            if (word >= offset && word < offset + (u64)n) {
                const i64 i = (i64)(word - offset);
                T v = x[i];
                if (RELU) v = v > (T)0 ? v : (T)0;
                const T kept = dropout_keep(words[l], p) ? mul_rn(v, scale) : (T)0;
                y[i] = addend ? add_rn(addend[i], kept) : kept;
            }
        }
    }
}

extern "C" __global__ void dropout_f32(float* y, const float* x, i64 n, float p, float scale,
                                       u64 seed, u64 stream, u64 offset) {
    dropout_impl<float, false>(y, x, nullptr, n, p, scale, seed, stream, offset);
}
extern "C" __global__ void dropout_f64(double* y, const double* x, i64 n, float p, double scale,
                                       u64 seed, u64 stream, u64 offset) {
    dropout_impl<double, false>(y, x, nullptr, n, p, scale, seed, stream, offset);
}
extern "C" __global__ void relu_dropout_f32(float* y, const float* x, i64 n, float p,
                                            float scale, u64 seed, u64 stream, u64 offset) {
    dropout_impl<float, true>(y, x, nullptr, n, p, scale, seed, stream, offset);
}
extern "C" __global__ void relu_dropout_f64(double* y, const double* x, i64 n, float p,
                                            double scale, u64 seed, u64 stream, u64 offset) {
    dropout_impl<double, true>(y, x, nullptr, n, p, scale, seed, stream, offset);
}
extern "C" __global__ void add_dropout_f32(float* y, const float* a, const float* x, i64 n,
                                           float p, float scale, u64 seed, u64 stream,
                                           u64 offset) {
    dropout_impl<float, false>(y, x, a, n, p, scale, seed, stream, offset);
}
extern "C" __global__ void add_dropout_f64(double* y, const double* a, const double* x, i64 n,
                                           float p, double scale, u64 seed, u64 stream,
                                           u64 offset) {
    dropout_impl<double, false>(y, x, a, n, p, scale, seed, stream, offset);
}

// One thread per Philox block a segment can touch: floor(w0 / 4) .. floor((w0 + width - 1) / 4),
// at most width / 4 + 2 of them; a thread past its segment's last block does nothing.
template <typename T>
__device__ __forceinline__ void dropout_steps_impl(T* y, const T* x, i64 outer, i64 steps,
                                                   i64 width, float p, T scale, u64 seed,
                                                   u64 stream, u64 offset, u64 step_stride) {
    if (outer <= 0 || steps <= 0 || width <= 0) return;
    const i64 per_segment = width / 4 + 2;
    const i64 total = outer * steps * per_segment;
    const uint2 key = make_uint2((u32)seed, (u32)(seed >> 32));
    GRID_STRIDE(e, total) {
        const i64 segment = e / per_segment, j = e % per_segment;
        const i64 o = segment / steps, t = segment % steps;
        const u64 w0 = offset + (u64)t * step_stride + (u64)o * (u64)width;
        const u64 b = (w0 >> 2) + (u64)j;
        if (4 * b > w0 + (u64)width - 1) continue;
        const uint4 w = philox4x32_10(make_uint4((u32)b, (u32)(b >> 32), (u32)stream, (u32)(stream >> 32)), key);
        const u32 words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            const u64 word = 4 * b + l;
            if (word >= w0 && word < w0 + (u64)width) {
                const i64 i = segment * width + (i64)(word - w0);
                y[i] = dropout_keep(words[l], p) ? mul_rn(x[i], scale) : (T)0;
            }
        }
    }
}

extern "C" __global__ void dropout_steps_f32(float* y, const float* x, i64 outer, i64 steps,
                                             i64 width, float p, float scale, u64 seed,
                                             u64 stream, u64 offset, u64 step_stride) {
    dropout_steps_impl<float>(y, x, outer, steps, width, p, scale, seed, stream, offset, step_stride);
}
extern "C" __global__ void dropout_steps_f64(double* y, const double* x, i64 outer, i64 steps,
                                             i64 width, float p, double scale, u64 seed,
                                             u64 stream, u64 offset, u64 step_stride) {
    dropout_steps_impl<double>(y, x, outer, steps, width, p, scale, seed, stream, offset, step_stride);
}

// The dropout of one half of lstm_input: p = 0 keeps every element (scale 1, no words drawn).
template <typename T>
struct HalfDrop {
    float p;
    T scale;
    u64 seed, stream, offset;

    __device__ __forceinline__ bool keep(i64 word) const {
        return p == 0.0f || dropout_keep(philox_word(seed, stream, offset + (u64)word), p);
    }
};

template <typename T>
__device__ __forceinline__ void lstm_input_impl(T* y, const T* table, const int* ids, const T* base,
                                                const T* x, i64 rows, i64 e, i64 d, int vocab,
                                                HalfDrop<T> de, HalfDrop<T> dx) {
    const i64 width = e + d, total = rows * width;
    GRID_STRIDE(i, total) {
        const i64 r = i / width, c = i % width;
        if (c < e) {
            const int id = ids[r];
            if (id < 0 || id >= vocab) {
                y[i] = quiet_nan<T>();  // not through the ReLU, which would make it 0
                continue;
            }
            T v = table[(i64)id * e + c];
            v = v > (T)0 ? v : (T)0;
            if (de.p != 0.0f) v = de.keep(r * e + c) ? mul_rn(v, de.scale) : (T)0;
            y[i] = v;
        } else {
            const i64 k = r * d + (c - e);
            T v = x[k];
            if (dx.p != 0.0f) v = dx.keep(k) ? mul_rn(v, dx.scale) : (T)0;
            y[i] = add_rn(base[k], v);
        }
    }
}

template <typename T>
__device__ __forceinline__ void lstm_input_bwd_impl(T* g_emb, T* g_base, T* g_x, const T* dy,
                                                    const T* y, i64 rows, i64 e, i64 d,
                                                    HalfDrop<T> de, HalfDrop<T> dx) {
    const i64 width = e + d, total = rows * width;
    GRID_STRIDE(i, total) {
        const i64 r = i / width, c = i % width;
        const T g = dy[i];
        if (c < e) {
            g_emb[r * e + c] = y[i] > (T)0 ? mul_rn(g, de.scale) : (T)0;
        } else {
            const i64 k = r * d + (c - e);
            g_base[k] = g;
            g_x[k] = dx.p == 0.0f ? g : (dx.keep(k) ? mul_rn(g, dx.scale) : (T)0);
        }
    }
}

extern "C" __global__ void lstm_input_f32(float* y, const float* table, const int* ids,
                                          const float* base, const float* x, i64 rows, i64 e,
                                          i64 d, int vocab, float p_e, float scale_e, u64 seed_e,
                                          u64 stream_e, u64 offset_e, float p_x, float scale_x,
                                          u64 seed_x, u64 stream_x, u64 offset_x) {
    lstm_input_impl<float>(y, table, ids, base, x, rows, e, d, vocab,
                           HalfDrop<float>{p_e, scale_e, seed_e, stream_e, offset_e},
                           HalfDrop<float>{p_x, scale_x, seed_x, stream_x, offset_x});
}
extern "C" __global__ void lstm_input_f64(double* y, const double* table, const int* ids,
                                          const double* base, const double* x, i64 rows, i64 e,
                                          i64 d, int vocab, float p_e, double scale_e, u64 seed_e,
                                          u64 stream_e, u64 offset_e, float p_x, double scale_x,
                                          u64 seed_x, u64 stream_x, u64 offset_x) {
    lstm_input_impl<double>(y, table, ids, base, x, rows, e, d, vocab,
                            HalfDrop<double>{p_e, scale_e, seed_e, stream_e, offset_e},
                            HalfDrop<double>{p_x, scale_x, seed_x, stream_x, offset_x});
}
extern "C" __global__ void lstm_input_bwd_f32(float* g_emb, float* g_base, float* g_x,
                                              const float* dy, const float* y, i64 rows, i64 e,
                                              i64 d, float p_e, float scale_e, u64 seed_e,
                                              u64 stream_e, u64 offset_e, float p_x,
                                              float scale_x, u64 seed_x, u64 stream_x,
                                              u64 offset_x) {
    lstm_input_bwd_impl<float>(g_emb, g_base, g_x, dy, y, rows, e, d,
                               HalfDrop<float>{p_e, scale_e, seed_e, stream_e, offset_e},
                               HalfDrop<float>{p_x, scale_x, seed_x, stream_x, offset_x});
}
extern "C" __global__ void lstm_input_bwd_f64(double* g_emb, double* g_base, double* g_x,
                                              const double* dy, const double* y, i64 rows, i64 e,
                                              i64 d, float p_e, double scale_e, u64 seed_e,
                                              u64 stream_e, u64 offset_e, float p_x,
                                              double scale_x, u64 seed_x, u64 stream_x,
                                              u64 offset_x) {
    lstm_input_bwd_impl<double>(g_emb, g_base, g_x, dy, y, rows, e, d,
                                HalfDrop<double>{p_e, scale_e, seed_e, stream_e, offset_e},
                                HalfDrop<double>{p_x, scale_x, seed_x, stream_x, offset_x});
}
