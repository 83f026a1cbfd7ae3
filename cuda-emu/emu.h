// emu.h: the CUDA C device language for a host C++ compiler, so that kernels/*.cu run on the
// CPU inside the emulated driver (driver.cpp). Force-included before each kernel file by
// cuda-emu/build; the kernel files themselves stay NVRTC sources, with `#ifdef
// AOANET_CUDA_EMU` only around their few lines of inline PTX.
//
// Execution model (see driver.cpp): every CUDA thread of a block is a fiber with its own
// stack; all fibers of a block run on one host thread, switching only at the collectives
// below (__syncthreads, warp shuffles, mma, ldmatrix). Hence:
//   * `__shared__` variables are `static thread_local`: one copy per host thread, which runs
//     one block at a time, so one copy per block;
//   * threadIdx and the other built-ins are host-thread-local values the scheduler sets
//     before it resumes a fiber; a collective is an opaque call, so the compiler reloads them.
// What this cannot show: timing, races between threads that a barrier does not order (fibers
// interleave only at collectives), the device's exact rounding of exp/log (the host libm is
// used), FMA contraction (NVRTC contracts a*b+c; the host build does not).

#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

#define AOANET_CUDA_EMU 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
};
struct uint2 {
    unsigned x, y;
};
struct __attribute__((aligned(16))) uint4 {
    unsigned x, y, z, w;
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// The built-in variables of the running fiber (set by the scheduler in driver.cpp).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
static const int warpSize = 32;

// ---- collectives, implemented by the scheduler (driver.cpp) -------------------------------

extern "C" {
// __syncthreads: returns when every live thread of the block has arrived. `op` 0: plain, 1:
// returns the OR of `pred` over the block, 2: the AND, 3: the count of nonzero.
int emu_block_sync(int pred, int op);
// Returns when every live lane of this thread's warp named in `mask` has arrived.
void emu_warp_sync(unsigned mask);
// This thread's lane and a 64-byte exchange slot of lane `lane` of its warp.
int emu_lane(void);
void* emu_warp_slot(int lane);
}

inline void __syncthreads() { emu_block_sync(0, 0); }
inline int __syncthreads_or(int p) { return emu_block_sync(p, 1); }
inline int __syncthreads_and(int p) { return emu_block_sync(p, 2); }
inline int __syncthreads_count(int p) { return emu_block_sync(p, 3); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu_warp_sync(mask); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Every lane publishes `v`, then reads lane `src(lane)`'s (its own when that lane is outside
// the warp or the mask, as the hardware leaves it).
template <typename T, typename F>
inline T emu_exchange(unsigned mask, T v, F src) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    const int lane = emu_lane();
    std::memcpy(emu_warp_slot(lane), &v, sizeof(T));
    emu_warp_sync(mask);
    const int s = src(lane);
    T r = v;
    if (s >= 0 && s < 32 && ((mask >> s) & 1u)) std::memcpy(&r, emu_warp_slot(s), sizeof(T));
    emu_warp_sync(mask);
    return r;
}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return emu_exchange(mask, v, [=](int lane) { return (lane & ~(width - 1)) + (src & (width - 1)); });
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu_exchange(mask, v, [=](int lane) {
        const int s = lane ^ lane_mask;
        return (s & ~(width - 1)) == (lane & ~(width - 1)) ? s : lane;
    });
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu_exchange(mask, v, [=](int lane) {
        const int s = lane + (int)delta;
        return (s & ~(width - 1)) == (lane & ~(width - 1)) ? s : lane;
    });
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu_exchange(mask, v, [=](int lane) {
        const int s = lane - (int)delta;
        return s >= (lane & ~(width - 1)) ? s : lane;
    });
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    const int lane = emu_lane();
    const unsigned char p = pred != 0;
    std::memcpy(emu_warp_slot(lane), &p, 1);
    emu_warp_sync(mask);
    unsigned r = 0;
    for (int l = 0; l < 32; ++l)
        if ((mask >> l) & 1u) r |= (unsigned)*static_cast<unsigned char*>(emu_warp_slot(l)) << l;
    emu_warp_sync(mask);
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, !pred) == 0; }

// ---- bit casts and rounding intrinsics ------------------------------------------------------

template <typename To, typename From>
inline To emu_bits(From x) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between sizes");
    To r;
    std::memcpy(&r, &x, sizeof r);
    return r;
}
inline float __int_as_float(int x) { return emu_bits<float>(x); }
inline float __uint_as_float(unsigned x) { return emu_bits<float>(x); }
inline int __float_as_int(float x) { return emu_bits<int>(x); }
inline unsigned __float_as_uint(float x) { return emu_bits<unsigned>(x); }
inline double __longlong_as_double(long long x) { return emu_bits<double>(x); }
inline long long __double_as_longlong(double x) { return emu_bits<long long>(x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
// The host build never contracts (-ffp-contract=off), so plain operations round as these do.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __double2float_rn(double x) { return (float)x; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
// A load that bypasses L1 on a GPU (`ld.global.cg`): one coherent memory here.
template <typename T>
inline T __ldcg(const T* p) { return *p; }

// CUDA's min and max accept mixed integer and floating types (device overloads).
template <typename A, typename B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)b < (C)a ? (C)b : (C)a;
}
template <typename A, typename B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a < (C)b ? (C)b : (C)a;
}

// ---- atomics (blocks run on several host threads) -------------------------------------------

template <typename T>
inline T emu_atomic_add_float(T* p, T v) {
    typedef typename std::conditional<sizeof(T) == 4, unsigned, unsigned long long>::type U;
    U* q = reinterpret_cast<U*>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED);
    for (;;) {
        const U want = emu_bits<U>(emu_bits<T>(old) + v);
        if (__atomic_compare_exchange_n(q, &old, want, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            return emu_bits<T>(old);
    }
}
inline float atomicAdd(float* p, float v) { return emu_atomic_add_float(p, v); }
inline double atomicAdd(double* p, double v) { return emu_atomic_add_float(p, v); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
inline int atomicMax(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}

// ---- the PTX the kernels use, as the PTX ISA defines it ------------------------------------

// cvt.rn.bf16.f32: round to nearest even; NaN stays a (quiet) NaN.
inline unsigned short emu_f32_to_bf16(float x) {
    const unsigned u = emu_bits<unsigned>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// cvt.rna.tf32.f32: round to 10 mantissa bits, ties away from zero; the low 13 bits are 0.
inline unsigned emu_f32_to_tf32(float x) {
    const unsigned u = emu_bits<unsigned>(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return u & 0xffffe000u;  // inf, nan
    return (u + 0x1000u) & 0xffffe000u;
}

// cvt.f32.f16 and cvt.rn.f16.f32 (GCC's _Float16 rounds to nearest even).
inline float emu_f16_to_f32(unsigned short h) { return (float)emu_bits<_Float16>(h); }
inline unsigned short emu_f32_to_f16(float x) { return emu_bits<unsigned short>((_Float16)x); }

inline float emu_bf16_lo(unsigned w) { return emu_bits<float>(w << 16); }
inline float emu_bf16_hi(unsigned w) { return emu_bits<float>(w & 0xffff0000u); }

// One warp's D += A B (A 16 x K, B K x 8, D 16 x 8 f32): every lane publishes its four A and
// two B registers, `gather(registers of lane l, l / 4, l % 4, A, B)` places each lane's
// elements, then each lane computes its own four D entries: rows g (d0, d1) and g + 8 (d2,
// d3), columns 2t and 2t + 1, for lane 4 g + t. Products are exact in f32 for bf16 and tf32
// inputs; the sums run in k order (the hardware's order is unspecified).
template <int K, typename Gather>
inline void emu_mma(float* d, const unsigned* a, const unsigned* b, Gather gather) {
    const int lane = emu_lane();
    unsigned* mine = static_cast<unsigned*>(emu_warp_slot(lane));
    for (int i = 0; i < 4; ++i) mine[i] = a[i];
    mine[4] = b[0];
    mine[5] = b[1];
    emu_warp_sync(0xffffffffu);
    float A[16][K], B[K][8];
    for (int l = 0; l < 32; ++l)
        gather(static_cast<const unsigned*>(emu_warp_slot(l)), l >> 2, l & 3, A, B);
    emu_warp_sync(0xffffffffu);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
        float acc = d[i];
        for (int k = 0; k < K; ++k) acc += A[row][k] * B[k][col];
        d[i] = acc;
    }
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (fragments as in the PTX ISA, "Matrix
// Fragments for mma.m16n8k16"): lane L = 4 g + t holds A rows g and g + 8, columns 2t, 2t + 1
// (registers 0, 1) and 2t + 8, 2t + 9 (registers 2, 3), the lower column in the low half; B
// rows (k) 2t, 2t + 1 (register 0) and 2t + 8, 2t + 9 (register 1) of column g.
inline void emu_mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b) {
    emu_mma<16>(d, a, b, [](const unsigned* s, int g, int t, float (&A)[16][16], float (&B)[16][8]) {
        for (int r = 0; r < 4; ++r) {
            const int row = g + ((r & 1) ? 8 : 0), col = 2 * t + ((r & 2) ? 8 : 0);
            A[row][col] = emu_bf16_lo(s[r]);
            A[row][col + 1] = emu_bf16_hi(s[r]);
        }
        for (int r = 0; r < 2; ++r) {
            B[2 * t + 8 * r][g] = emu_bf16_lo(s[4 + r]);
            B[2 * t + 8 * r + 1][g] = emu_bf16_hi(s[4 + r]);
        }
    });
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: lane L = 4 g + t holds A (g, t), (g + 8,
// t), (g, t + 4), (g + 8, t + 4) in registers 0..3; B rows t and t + 4 of column g. The low
// 13 bits of each tf32 register are ignored.
inline void emu_mma_m16n8k8_tf32(float* d, const unsigned* a, const unsigned* b) {
    emu_mma<8>(d, a, b, [](const unsigned* s, int g, int t, float (&A)[16][8], float (&B)[8][8]) {
        for (int r = 0; r < 4; ++r)
            A[g + ((r & 1) ? 8 : 0)][t + ((r & 2) ? 4 : 0)] = emu_bits<float>(s[r] & 0xffffe000u);
        B[t][g] = emu_bits<float>(s[4] & 0xffffe000u);
        B[t + 4][g] = emu_bits<float>(s[5] & 0xffffe000u);
    });
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane L gives the address of row L % 8 of matrix
// L / 8 (16 bytes); register j of lane T receives 32-bit word T % 4 of row T / 4 of matrix j.
inline void emu_ldmatrix_x4(unsigned (&r)[4], const unsigned* p) {
    const int lane = emu_lane();
    std::memcpy(emu_warp_slot(lane), &p, sizeof p);
    emu_warp_sync(0xffffffffu);
    for (int j = 0; j < 4; ++j) {
        const unsigned* row;
        std::memcpy(&row, emu_warp_slot(8 * j + lane / 4), sizeof row);
        r[j] = row[lane % 4];
    }
    emu_warp_sync(0xffffffffu);
}
