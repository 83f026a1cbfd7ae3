// common.cuh — the header every kernels/*.cu file includes (NVRTC gets it as a named header,
// see src/cuda/nvrtc.rs). It holds what more than one kernel family needs:
//
//   1. fixed-width type names used in every kernel signature (the Rust launch wrappers spell the
//      same names: src/cuda/args.rs, and tests/kernels_coverage.rs compares them);
//   2. bf16 / f16 conversions written with PTX, so no CUDA header is needed;
//   3. math overloads for float and double, and warp and block reductions as templates;
//   4. Philox4x32-10, bit for bit the generator of src/rng.rs, and the dropout keep rule.
//
// Conventions for all kernels:
//   * `extern "C"` so the symbol is the plain name the launch wrapper asks for;
//   * element counts and offsets are i64 (64-bit) whenever a tensor can pass 2^31 elements;
//     per-row sizes (columns, head dims) are `int`;
//   * no kernel assumes a particular block size unless its header comment says so, and then the
//     wrapper in src/cuda/ launches exactly that size.

#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;
// bf16 and f16 are carried as their 16-bit patterns; convert with the functions below.
typedef unsigned short bf16;
typedef unsigned short f16;

// -inf without <math.h> (NVRTC has no INFINITY macro unless a header defines it).
#define NEG_INF (__int_as_float(0xff800000))

// ------------------------------------------------------------------------------------------
// 16-bit float conversions
// ------------------------------------------------------------------------------------------

__device__ __forceinline__ float bf16_to_f32(bf16 x) { return __int_as_float(((u32)x) << 16); }

// Round to nearest even, NaN stays NaN (cvt.rn.bf16.f32 needs sm_80, our oldest target).
__device__ __forceinline__ bf16 f32_to_bf16(float x) {
#ifdef AOANET_CUDA_EMU
    return emu_f32_to_bf16(x);
#else
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
#endif
}

__device__ __forceinline__ float f16_to_f32(f16 x) {
#ifdef AOANET_CUDA_EMU
    return emu_f16_to_f32(x);
#else
    float r;
    asm("cvt.f32.f16 %0, %1;" : "=f"(r) : "h"(x));
    return r;
#endif
}

__device__ __forceinline__ f16 f32_to_f16(float x) {
#ifdef AOANET_CUDA_EMU
    return emu_f32_to_f16(x);
#else
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
#endif
}

// ------------------------------------------------------------------------------------------
// Math for both compute types. Kernels that exist in f32 and f64 are templates over T with one
// `extern "C"` entry point per type (`name_f32`, `name_f64`, written out so the Rust coverage
// test can parse them); these overloads pick the matching CUDA function.
// ------------------------------------------------------------------------------------------

__device__ __forceinline__ float x_exp(float x) { return expf(x); }
__device__ __forceinline__ double x_exp(double x) { return exp(x); }
__device__ __forceinline__ float x_log(float x) { return logf(x); }
__device__ __forceinline__ double x_log(double x) { return log(x); }
__device__ __forceinline__ float x_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double x_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float x_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double x_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float x_pow(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double x_pow(double x, double p) { return pow(x, p); }
__device__ __forceinline__ float x_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double x_max(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float x_min(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double x_min(double a, double b) { return fmin(a, b); }
__device__ __forceinline__ float x_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double x_abs(double x) { return fabs(x); }
__device__ __forceinline__ bool x_isnan(float x) { return x != x; }
__device__ __forceinline__ bool x_isnan(double x) { return x != x; }

// -inf and NaN of each type.
template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double(0xfff0000000000000ull);
}
template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double quiet_nan<double>() {
    return __longlong_as_double(0x7ff8000000000000ull);
}

// 1 / (1 + e^-x): 0 for x -> -inf (e^-x = inf), 1 for x -> inf.
template <typename T> __device__ __forceinline__ T x_sigmoid(T x) {
    return (T)1 / ((T)1 + x_exp(-x));
}

// Grid-stride loop over [0, n) with a 64-bit index.
#define GRID_STRIDE(i, n) \
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// The "last block finishes the tile" protocol of the launches that sum partial results in the
// same launch (split-K GEMM tiles, LayerNorm's parameter gradients, column sums). After its
// partial results are stored, every thread of the block calls this: the stores are fenced to
// the whole device before the block adds `add` to its tile's counter, and the block that
// brings the counter to `total` is the last one; it gets true, after another fence so that the
// other blocks' results are read after their counts (through L2: __ldcg), and must set the
// counter back to zero when it is done, for the next launch that borrows the counters.
__device__ __forceinline__ bool last_block_of_tile(int* counter, int add, int total) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, add) + add == total;
    __syncthreads();
    if (last) __threadfence();
    return last;
}

// Multi-tensor launches (adam_multi, count_nonfinite_multi): a table of `words` u64 words per
// tensor, word `first_word` of each holding the tensor's first block; the tensors' blocks follow
// each other (first blocks strictly increasing). Returns the tensor of block `block`: the last
// whose first block is <= it (a binary search).
__device__ __forceinline__ int multi_tensor_slot(const u64* table, int count, int words,
                                                 int first_word, i64 block) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if ((i64)table[(i64)mid * words + first_word] <= block) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// ------------------------------------------------------------------------------------------
// Reductions (templates: float and double)
// ------------------------------------------------------------------------------------------

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = x_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the whole block; every thread gets the result. `scratch` holds >= 32 values.
// Contains __syncthreads(): every thread of the block must call it.
template <typename T> __device__ __forceinline__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : (T)0;
    return warp_sum(v);
}

// Max over the whole block; same contract as block_sum.
template <typename T> __device__ __forceinline__ T block_max(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : neg_inf<T>();
    return warp_max(v);
}

// Online-softmax merge of two (max, sum of exp(x - max)) pairs.
template <typename T> __device__ __forceinline__ void softmax_merge(T& m, T& s, T m2, T s2) {
    const T mn = x_max(m, m2);
    // exp(-inf - -inf) would be NaN: an empty side (s == 0, m == -inf) contributes nothing.
    const T a = (m == neg_inf<T>()) ? (T)0 : s * x_exp(m - mn);
    const T b = (m2 == neg_inf<T>()) ? (T)0 : s2 * x_exp(m2 - mn);
    m = mn;
    s = a + b;
}

// Adds one element x to an online-softmax state (m, s): one exp per element. -inf elements
// contribute nothing; NaN propagates into s.
template <typename T> __device__ __forceinline__ void softmax_add(T& m, T& s, T x) {
    if (x > m) {
        s = (m == neg_inf<T>() ? (T)0 : s * x_exp(m - x)) + (T)1;
        m = x;
    } else {
        s += (x == neg_inf<T>()) ? (T)0 : x_exp(x - m);
    }
}

// ------------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al. 2011), identical to src/rng.rs:
//   key     = [seed lo, seed hi]
//   counter = [block lo, block hi, stream lo, stream hi],  block = offset / 4
//   word `offset` of stream `stream` = lane (offset % 4) of that block.
// ------------------------------------------------------------------------------------------

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
    const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k.x += W0;
            k.y += W1;
        }
        const u32 hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
        const u32 hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// The 32-bit word at `offset` of stream `stream` of `seed`.
__device__ __forceinline__ u32 philox_word(u64 seed, u64 stream, u64 offset) {
    const u64 block = offset >> 2;
    const uint4 ctr = make_uint4((u32)block, (u32)(block >> 32), (u32)stream, (u32)(stream >> 32));
    const uint4 w = philox4x32_10(ctr, make_uint2((u32)seed, (u32)(seed >> 32)));
    switch (offset & 3) {
        case 0: return w.x;
        case 1: return w.y;
        case 2: return w.z;
        default: return w.w;
    }
}

// The dropout rule shared with the CPU (src/cuda/mod.rs documents it for the Rust side):
// element i of a dropout call with base offset `off` uses word `off + i`;
// u = (word >> 8) * 2^-24 (rng::u32_to_unit_f32), and the element is KEPT iff u >= p.
// Kept elements are scaled by 1 / (1 - p) (inverted dropout).
__device__ __forceinline__ bool dropout_keep(u32 word, float p) {
    return (float)(word >> 8) * (1.0f / 16777216.0f) >= p;
}
