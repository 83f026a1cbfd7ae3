// selftest.cpp: the emulator's own semantics, through the driver API as cudarc calls it —
// what the kernels' tests (tests/cuda_*.rs) do not reach: deadlock detection, launch bounds,
// copies outside an allocation, threads that return before a barrier, warp shuffles with a
// width, ballots and barrier reductions, and the order threads run in between barriers
// (AOANET_CUDA_EMU_THREAD_ORDER, read from the environment as the driver reads it). Built and
// run by cuda-emu/build (once per thread order); exits non-zero on the first failed check.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "emu.h"
#include "registry.h"

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
extern "C" {
CUresult cuModuleLoadData(void** module, const void* image);
CUresult cuModuleGetFunction(void** f, void* module, const char* name);
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned smem, void* stream, void** params, void** extra);
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes);
CUresult cuMemFree_v2(CUdeviceptr p);
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* stream);
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* stream);
}

// ---- test kernels ----------------------------------------------------------------------------

// out[t] = value of lane (t ^ 5) within groups of 8 (xor stays in the group), then the value
// of lane 3 of each group of 16, then down by 2 within 32 (lanes past the end keep theirs).
extern "C" __global__ void st_shuffles(int* out) {
    const int t = threadIdx.x;
    out[3 * t] = __shfl_xor_sync(0xffffffffu, t, 5, 8);
    out[3 * t + 1] = __shfl_sync(0xffffffffu, t, 3, 16);
    out[3 * t + 2] = __shfl_down_sync(0xffffffffu, t, 2);
}

// Threads at or past `live` return first; the rest meet at two barriers: an OR, a count.
extern "C" __global__ void st_barriers(int* out, int live) {
    const int t = threadIdx.x;
    if (t >= live) return;
    const int any = __syncthreads_or(t == 7);
    const int count = __syncthreads_count(t % 3 == 0);
    const unsigned ballot = __ballot_sync(0xffffffffu, t & 1);
    if (t == 0) {
        out[0] = any;
        out[1] = count;
        out[2] = (int)ballot;
    }
}

// Half the block waits at __syncthreads while the other half waits at a warp collective that
// needs the first half's lanes: a deadlock on a GPU, an error here.
extern "C" __global__ void st_deadlock(int* out) {
    if (threadIdx.x < 16)
        __syncthreads();
    else
        out[0] = __shfl_sync(0xffffffffu, 1, 0);
}

// Records the order the threads run in, twice, with a barrier between: out[0] counts,
// out[1 + k] is the k-th thread to get there.
extern "C" __global__ void st_order(int* out) {
    out[1 + atomicAdd(&out[0], 1)] = (int)threadIdx.x;
    __syncthreads();
    out[1 + atomicAdd(&out[0], 1)] = (int)threadIdx.x;
}

extern "C" __global__ void __launch_bounds__(64) st_bounded(int* out) { out[threadIdx.x] = 1; }

EMU_KERNEL(st_shuffles, 1024)
EMU_KERNEL(st_barriers, 1024)
EMU_KERNEL(st_deadlock, 1024)
EMU_KERNEL(st_bounded, (64))
EMU_KERNEL(st_order, 1024)

// ---- checks ------------------------------------------------------------------------------------

static int failures = 0;

#define CHECK(cond, ...)                                            \
    do {                                                            \
        if (!(cond)) {                                              \
            std::fprintf(stderr, "selftest: FAILED %s: ", #cond);   \
            std::fprintf(stderr, __VA_ARGS__);                      \
            std::fprintf(stderr, "\n");                             \
            ++failures;                                             \
        }                                                           \
    } while (0)

// A module image with the test kernels' names (the stand-in checks names against the image).
static void* module() {
    std::vector<unsigned char> image(64, 0);
    const char names[] = "st_shuffles\0st_barriers\0st_deadlock\0st_bounded\0st_order";
    image.insert(image.end(), names, names + sizeof names);
    std::memcpy(image.data(), "\x7f" "ELF\x02", 5);
    const unsigned long long shoff = image.size();  // no section headers: size = shoff
    std::memcpy(image.data() + 0x28, &shoff, 8);
    void* m = nullptr;
    CHECK(cuModuleLoadData(&m, image.data()) == 0, "module load");
    return m;
}

static CUresult launch(void* m, const char* name, unsigned threads, void** params) {
    void* f = nullptr;
    if (cuModuleGetFunction(&f, m, name) != 0) return -1;
    return cuLaunchKernel(f, 1, 1, 1, threads, 1, 1, 0, nullptr, params, nullptr);
}

int main() {
    void* m = module();
    CUdeviceptr buf;
    CHECK(cuMemAlloc_v2(&buf, 64 * 3 * sizeof(int)) == 0, "alloc");
    std::vector<int> host(64 * 3);

    void* args[] = {&buf, nullptr};
    CHECK(launch(m, "st_shuffles", 64, args) == 0, "shuffles launch");
    cuMemcpyDtoHAsync_v2(host.data(), buf, host.size() * sizeof(int), nullptr);
    for (int t = 0; t < 64; ++t) {
        const int lane = t % 32, warp = t - lane;
        CHECK(host[3 * t] == warp + (lane ^ 5), "xor width 8, thread %d: %d", t, host[3 * t]);
        CHECK(host[3 * t + 1] == warp + (lane & ~15) + 3, "sync width 16, thread %d: %d", t,
              host[3 * t + 1]);
        const int down = lane + 2 < 32 ? t + 2 : t;
        CHECK(host[3 * t + 2] == down, "down 2, thread %d: %d", t, host[3 * t + 2]);
    }

    int live = 20;
    void* bargs[] = {&buf, &live};
    CHECK(launch(m, "st_barriers", 64, bargs) == 0, "barriers launch (44 threads returned)");
    cuMemcpyDtoHAsync_v2(host.data(), buf, 3 * sizeof(int), nullptr);
    CHECK(host[0] == 1, "syncthreads_or: %d", host[0]);
    CHECK(host[1] == 7, "syncthreads_count over 0..19 of t %% 3 == 0: %d", host[1]);
    CHECK((unsigned)host[2] == 0xaaaaau, "ballot of odd lanes among 20: %#x", host[2]);

    CHECK(launch(m, "st_deadlock", 32, args) == 719, "a deadlock fails the launch");
    CHECK(launch(m, "st_bounded", 64, args) == 0, "64 threads within the bound");
    CHECK(launch(m, "st_bounded", 128, args) == 701, "128 threads past __launch_bounds__(64)");

    // The order of the threads between barriers, as AOANET_CUDA_EMU_THREAD_ORDER asks.
    const char* mode = std::getenv("AOANET_CUDA_EMU_THREAD_ORDER");
    const std::string order = mode && *mode ? std::string(mode) : "forward";
    const int n = 64;
    std::vector<int> ran(1 + 2 * n, 0);
    cuMemcpyHtoDAsync_v2(buf, ran.data(), sizeof(int), nullptr);
    CHECK(launch(m, "st_order", n, args) == 0, "order launch");
    cuMemcpyDtoHAsync_v2(ran.data(), buf, ran.size() * sizeof(int), nullptr);
    CHECK(ran[0] == 2 * n, "every thread counted twice: %d", ran[0]);
    bool rounds_differ = false, moved = false;
    for (int round = 0; round < 2; ++round) {
        std::vector<int> seen(n, 0);
        for (int k = 0; k < n; ++k) {
            const int t = ran[1 + round * n + k];
            CHECK(t >= 0 && t < n && !seen[t]++, "round %d, place %d: thread %d twice", round, k, t);
            if (order == "forward") CHECK(t == k, "forward, round %d: place %d ran %d", round, k, t);
            if (order == "reverse")
                CHECK(t == n - 1 - k, "reverse, round %d: place %d ran %d", round, k, t);
            moved |= t != k;
            rounds_differ |= round == 1 && t != ran[1 + k];
        }
    }
    if (order.rfind("shuffle", 0) == 0) {
        CHECK(moved, "shuffle: threads ran in index order");
        CHECK(rounds_differ, "shuffle: both rounds ran in one order");
    }

    std::vector<int> big(1000);
    CHECK(cuMemcpyHtoDAsync_v2(buf, big.data(), big.size() * sizeof(int), nullptr) == 1,
          "a copy past the allocation's end is refused");
    CHECK(cuMemFree_v2(buf) == 0, "free");
    CHECK(cuMemFree_v2(buf) == 1, "a second free is refused");

    if (failures) {
        std::fprintf(stderr, "selftest: %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("cuda-emu: selftest passed\n");
    return 0;
}
