// driver.cpp: a CPU stand-in for libcuda.so, enough of the CUDA driver API for aoanet's CUDA
// backend, running the real kernels/*.cu (compiled for the host with emu.h) on the CPU.
//
// Built by cuda-emu/build into target/cuda-emu/libcuda.so; cudarc loads libcuda.so by name at
// run time, so with that directory first in LD_LIBRARY_PATH the whole CUDA path of the
// library (NVRTC compile, module load, launches, copies, events, the memory pool, the staging
// rings) runs without a GPU, and the GPU tests (tests/cuda_*.rs) test the kernels' logic.
//
// The device: one "GPU", compute capability 9.0 (NVRTC compiles for sm_90 as for an H100; the
// cubin is checked to be an ELF image naming the function, then the host build of the same
// source runs). Memory: device pointers are host addresses; each allocation ends at a
// PROT_NONE page, so a kernel that runs past the end of a buffer faults at once (with the
// library's exact pool, AOANET_CUDA_POOL=exact, every buffer is its own allocation). Every queued
// operation runs to completion when it is queued (one in-order stream, as the library uses),
// so events are complete when recorded and waits return at once. Launches run block by block
// on the calling thread (launches from different host threads run concurrently, as the
// library's tests make them); each CUDA thread of a block is a fiber (see `Block`).

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <utility>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu.h"
#include "registry.h"

typedef int CUresult;
enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_UNKNOWN = 999,
};

// ============================================================================================
// Fibers: a minimal x86-64 context switch (callee-saved registers, MXCSR and the x87 control
// word, as the SysV ABI requires a call to preserve). No system call per switch, unlike
// swapcontext: a launch of 1024 blocks of 256 threads makes half a million switches.
// ============================================================================================

#if !defined(__x86_64__)
#error "cuda-emu: the fiber switch is written for x86-64"
#endif

extern "C" void emu_switch(void** save_sp, void* next_sp);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace {

const size_t kStackBytes = 128 * 1024;

enum class State : uint8_t { Runnable, AtBlock, AtWarp, Done };

struct Fiber {
    void* sp = nullptr;
    State state = State::Done;
    unsigned warp_mask = 0;
    int pred = 0;
    uint3 tid{};
};

// One block in flight on this host thread: its fibers, the scheduler's saved stack pointer,
// the warps' exchange slots.
struct Block {
    std::vector<Fiber> fibers;
    std::vector<unsigned char> slots;  // [warps][32 lanes][64 bytes]
    void* sched_sp = nullptr;
    unsigned current = 0;
    int sync_result = 0;
    void (*body)(void*) = nullptr;
    void* ctx = nullptr;
};

// Each host thread keeps its fiber stacks (each with a PROT_NONE guard page below it).
struct Stacks {
    std::vector<unsigned char*> tops;
    ~Stacks() {
        for (unsigned char* t : tops) munmap(t - kStackBytes - 4096, kStackBytes + 4096);
    }
    unsigned char* top(size_t i) {
        while (tops.size() <= i) {
            void* p = mmap(nullptr, kStackBytes + 4096, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) {
                std::fprintf(stderr, "cuda-emu: cannot map a fiber stack\n");
                std::abort();
            }
            mprotect(p, 4096, PROT_NONE);
            tops.push_back(static_cast<unsigned char*>(p) + 4096 + kStackBytes);
        }
        return tops[i];
    }
};

thread_local Block* t_block = nullptr;
thread_local Stacks t_stacks;

[[noreturn]] void fiber_main() {
    Block* b = t_block;
    b->body(b->ctx);
    Fiber& f = b->fibers[b->current];
    f.state = State::Done;
    void* dead;
    emu_switch(&dead, b->sched_sp);
    __builtin_unreachable();
}

// A fresh fiber's stack: what emu_switch pops (control words, six registers) and then the
// address it returns to, placed so fiber_main starts as if called (rsp = 8 mod 16).
void* initial_sp(unsigned char* top) {
    uintptr_t sp = reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15);
    sp -= 8;  // the slot a call would have pushed above the return address: alignment
    sp -= 8;
    *reinterpret_cast<void**>(sp) = reinterpret_cast<void*>(&fiber_main);
    sp -= 6 * 8;
    std::memset(reinterpret_cast<void*>(sp), 0, 6 * 8);
    sp -= 8;
    uint32_t mxcsr = 0x1f80;
    uint16_t fcw = 0x037f;
    std::memcpy(reinterpret_cast<void*>(sp), &mxcsr, 4);
    std::memcpy(reinterpret_cast<void*>(sp + 4), &fcw, 2);
    return reinterpret_cast<void*>(sp);
}

void resume(Block& b, unsigned i) {
    b.current = i;
    threadIdx = b.fibers[i].tid;
    emu_switch(&b.sched_sp, b.fibers[i].sp);
}

// The order a block's threads run in between two barriers. On a GPU they run at once, so a
// kernel whose result depends on that order (a thread reads what another wrote with no
// barrier between) is wrong; in index order (the default) the reader runs after every
// lower-numbered writer and such a missing barrier passes. AOANET_CUDA_EMU_THREAD_ORDER=reverse
// runs them last to first, and `shuffle` (or `shuffle:SEED`) in a new permutation
// i -> (a i + c) mod n each round (from the seed, the block and the round), so a read before
// another thread's write is caught whichever thread is lower. Read once.
struct ThreadOrder {
    enum Mode { Forward, Reverse, Shuffle };
    Mode mode = Forward;
    uint64_t seed = 1;

    static const ThreadOrder& get() {
        static const ThreadOrder order = [] {
            ThreadOrder o;
            const char* v = std::getenv("AOANET_CUDA_EMU_THREAD_ORDER");
            if (!v || !*v || std::strcmp(v, "forward") == 0) return o;
            if (std::strcmp(v, "reverse") == 0) {
                o.mode = Reverse;
                return o;
            }
            if (std::strncmp(v, "shuffle", 7) == 0 && (v[7] == 0 || v[7] == ':')) {
                o.mode = Shuffle;
                if (v[7] == ':') o.seed = std::strtoull(v + 8, nullptr, 10);
                return o;
            }
            std::fprintf(stderr, "cuda-emu: AOANET_CUDA_EMU_THREAD_ORDER=%s: use forward, "
                                 "reverse or shuffle[:seed]\n", v);
            std::abort();
        }();
        return order;
    }
};

// Thread `i` of the `n` to run in round `round` of a block (see ThreadOrder).
struct RoundOrder {
    unsigned n, a = 1, c = 0;
    bool reverse = false;

    RoundOrder(unsigned threads, uint64_t block, uint64_t round) : n(threads) {
        const ThreadOrder& o = ThreadOrder::get();
        if (o.mode == ThreadOrder::Reverse) reverse = true;
        if (o.mode != ThreadOrder::Shuffle || n < 2) return;
        uint64_t h = (o.seed * 0x9e3779b97f4a7c15ull) ^ (block * 0xbf58476d1ce4e5b9ull) ^
                     (round * 0x94d049bb133111ebull);
        h ^= h >> 31;
        h *= 0xd6e8feb86659fd39ull;
        h ^= h >> 29;
        c = unsigned(h % n);
        a = unsigned((h >> 20) % n) | 1;
        while (std::gcd(a, n) != 1) a += 2;  // a multiplier prime to n: a permutation
    }

    unsigned at(unsigned i) const {
        if (reverse) return n - 1 - i;
        return unsigned((uint64_t(a) * i + c) % n);
    }
};

// Runs one block; false (with a message) if its threads deadlock at a barrier.
bool run_block(Block& b, const EmuGrid& g) {
    const unsigned n = g.block[0] * g.block[1] * g.block[2];
    const unsigned warps = (n + 31) / 32;
    b.fibers.assign(n, Fiber{});
    b.slots.assign(size_t(warps) * 32 * 64, 0);
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = b.fibers[i];
        f.tid = {i % g.block[0], (i / g.block[0]) % g.block[1], i / (g.block[0] * g.block[1])};
        f.sp = initial_sp(t_stacks.top(i));
        f.state = State::Runnable;
    }
    const uint64_t block_id =
        blockIdx.x + uint64_t(g.grid[0]) * (blockIdx.y + uint64_t(g.grid[1]) * blockIdx.z);
    for (uint64_t round = 0;; ++round) {
        const RoundOrder order(n, block_id, round);
        for (unsigned k = 0; k < n; ++k) {
            const unsigned i = order.at(k);
            if (b.fibers[i].state == State::Runnable) resume(b, i);
        }
        // Every fiber now waits at a barrier or has returned.
        bool released = false;
        for (unsigned w = 0; w < warps; ++w) {
            const unsigned lo = w * 32, hi = std::min(n, lo + 32);
            unsigned waiting = 0, mask = 0;
            for (unsigned i = lo; i < hi; ++i)
                if (b.fibers[i].state == State::AtWarp) {
                    waiting |= 1u << (i - lo);
                    mask = b.fibers[i].warp_mask;
                }
            if (!waiting) continue;
            unsigned expected = 0;
            for (unsigned i = lo; i < hi; ++i)
                if (((mask >> (i - lo)) & 1u) && b.fibers[i].state != State::Done)
                    expected |= 1u << (i - lo);
            if ((expected & ~waiting) == 0) {
                for (unsigned i = lo; i < hi; ++i)
                    if ((waiting >> (i - lo)) & 1u) b.fibers[i].state = State::Runnable;
                released = true;
            }
        }
        unsigned live = 0, at_block = 0;
        int any = 0, all = 1, count = 0;
        for (const Fiber& f : b.fibers) {
            if (f.state == State::Done) continue;
            ++live;
            if (f.state == State::AtBlock) {
                ++at_block;
                any |= f.pred != 0;
                all &= f.pred != 0;
                count += f.pred != 0;
            }
        }
        if (live == 0) return true;
        if (!released && at_block == live) {
            // The result is stored per op by whoever asked; see emu_block_sync.
            b.sync_result = 0;
            for (Fiber& f : b.fibers)
                if (f.state == State::AtBlock) f.state = State::Runnable;
            b.sync_result = (any & 1) | (all << 1) | (count << 2);
            released = true;
        }
        if (!released) {
            unsigned at_warp = live - at_block;
            std::fprintf(stderr,
                         "cuda-emu: %s: block (%u,%u,%u) deadlocked: %u threads at "
                         "__syncthreads, %u at a warp collective, %u returned\n",
                         g.name, blockIdx.x, blockIdx.y, blockIdx.z, at_block, at_warp, n - live);
            return false;
        }
    }
}

void park(State s) {
    Block* b = t_block;
    Fiber& f = b->fibers[b->current];
    f.state = s;
    emu_switch(&f.sp, b->sched_sp);
}

}  // namespace

extern "C" int emu_block_sync(int pred, int op) {
    Block* b = t_block;
    b->fibers[b->current].pred = pred;
    park(State::AtBlock);
    const int r = t_block->sync_result;
    switch (op) {
        case 1: return r & 1;
        case 2: return (r >> 1) & 1;
        case 3: return r >> 2;
        default: return 0;
    }
}

extern "C" void emu_warp_sync(unsigned mask) {
    Block* b = t_block;
    b->fibers[b->current].warp_mask = mask;
    park(State::AtWarp);
}

extern "C" int emu_lane(void) { return int(t_block->current & 31); }

extern "C" void* emu_warp_slot(int lane) {
    Block* b = t_block;
    const size_t warp = b->current / 32;
    return &b->slots[(warp * 32 + size_t(lane)) * 64];
}

namespace {

thread_local const EmuGrid* t_grid = nullptr;
struct sigaction g_previous_segv;

// A fault inside a kernel (an access past the end of a buffer reaches the guard page after
// it, or a freed buffer's unmapped pages) names the kernel, block and thread, then lets the
// previous handler (Rust's stack-overflow check, then the default: the process dies) see it.
void on_fault(int sig, siginfo_t* info, void*) {
    const EmuGrid* g = t_grid;
    const Block* b = t_block;
    if (g && b) {
        char msg[512];
        const Fiber& f = b->fibers[b->current];
        const int n = std::snprintf(
            msg, sizeof msg,
            "cuda-emu: %s: block (%u,%u,%u) thread (%u,%u,%u) accessed %p, outside every "
            "live device allocation (past a buffer's end, or freed)\n",
            g->name, blockIdx.x, blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z, info->si_addr);
        if (n > 0) {
            ssize_t ignored = write(2, msg, size_t(n) < sizeof msg ? size_t(n) : sizeof msg - 1);
            (void)ignored;
        }
    }
    sigaction(sig, &g_previous_segv, nullptr);
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &g_previous_segv);
    });
}

// The order a grid's blocks run in. A GPU promises none, so a kernel whose result depends on
// it is wrong; in grid order (x fastest, then y, z: the default) such a kernel can pass every
// test. AOANET_CUDA_EMU_BLOCK_ORDER=reverse runs them last to first, and `shuffle` (or
// `shuffle:SEED`) in a permutation i -> (a i + c) mod n drawn from the seed, the kernel's name
// and the grid's size, so a failure repeats whatever else runs beside it. Read once.
struct BlockOrder {
    uint64_t blocks, a = 1, c = 0;
    bool reverse = false;

    explicit BlockOrder(const EmuGrid& g)
        : blocks(uint64_t(g.grid[0]) * g.grid[1] * g.grid[2]) {
        static const std::pair<int, uint64_t> mode = [] {
            const char* v = std::getenv("AOANET_CUDA_EMU_BLOCK_ORDER");
            if (!v || !*v || std::strcmp(v, "forward") == 0) return std::make_pair(0, uint64_t(0));
            if (std::strcmp(v, "reverse") == 0) return std::make_pair(1, uint64_t(0));
            if (std::strncmp(v, "shuffle", 7) == 0)
                return std::make_pair(2, v[7] == ':' ? uint64_t(std::strtoull(v + 8, nullptr, 10)) : uint64_t(1));
            std::fprintf(stderr, "cuda-emu: AOANET_CUDA_EMU_BLOCK_ORDER=%s: use forward, reverse "
                                 "or shuffle[:seed]\n", v);
            std::abort();
        }();
        if (mode.first == 1) reverse = true;
        if (mode.first != 2 || blocks < 2) return;
        uint64_t h = mode.second * 0x9e3779b97f4a7c15ull + blocks;
        for (const char* p = g.name; *p; ++p) h = (h ^ uint64_t((unsigned char)*p)) * 0x100000001b3ull;
        c = h % blocks;
        a = (h >> 17) % blocks | 1;
        while (std::gcd(a, blocks) != 1) a += 2;  // a multiplier prime to n: a permutation
    }

    uint64_t at(uint64_t i) const {
        if (reverse) return blocks - 1 - i;
        return uint64_t((unsigned __int128)a * i % blocks + c) % blocks;
    }
};

}  // namespace

extern "C" int emu_run_grid(const EmuGrid* g, void (*body)(void*), void* ctx) {
    install_fault_handler();
    const EmuGrid* outer_grid = t_grid;
    t_grid = g;
    Block block;
    block.body = body;
    block.ctx = ctx;
    Block* outer = t_block;
    t_block = &block;
    blockDim = {g->block[0], g->block[1], g->block[2]};
    gridDim = {g->grid[0], g->grid[1], g->grid[2]};
    int rc = CUDA_SUCCESS;
    const BlockOrder order(*g);
    for (uint64_t i = 0; i < order.blocks && rc == CUDA_SUCCESS; ++i) {
        const uint64_t b = order.at(i);
        blockIdx = {unsigned(b % g->grid[0]), unsigned(b / g->grid[0] % g->grid[1]),
                    unsigned(b / g->grid[0] / g->grid[1])};
        if (!run_block(block, *g)) rc = CUDA_ERROR_LAUNCH_FAILED;
    }
    t_block = outer;
    t_grid = outer_grid;
    return rc;
}

// ============================================================================================
// Kernels, modules, memory
// ============================================================================================

namespace {

std::unordered_map<std::string, const EmuKernel*>& kernels() {
    static std::unordered_map<std::string, const EmuKernel*> k;
    return k;
}

struct Function {
    const EmuKernel* kernel;
    int max_dynamic_smem;
};

struct Module {
    std::vector<unsigned char> image;
    std::map<std::string, Function*> functions;
};

struct Event {
    std::chrono::steady_clock::time_point when;
    bool recorded = false;
};

struct Allocation {
    void* map;
    size_t map_bytes;
    size_t bytes;
};

std::mutex g_lock;  // the allocation table and the modules' function tables
std::map<uintptr_t, Allocation> g_allocations;
size_t g_allocated = 0;
const size_t kDeviceBytes = size_t(80) << 30;
int g_context_token = 0;
thread_local void* t_current_context = nullptr;

size_t page_size() {
    static const size_t p = size_t(sysconf(_SC_PAGESIZE));
    return p;
}

// The allocation holding [p, p + n), or null.
const Allocation* find(uintptr_t p, size_t n) {
    auto it = g_allocations.upper_bound(p);
    if (it == g_allocations.begin()) return nullptr;
    --it;
    if (p < it->first || p + n > it->first + it->second.bytes) return nullptr;
    return &it->second;
}

CUresult check_range(const char* what, uintptr_t p, size_t n) {
    if (n == 0 || find(p, n)) return CUDA_SUCCESS;
    std::fprintf(stderr, "cuda-emu: %s: [0x%lx, +%zu) is not inside one device allocation\n", what,
                 (unsigned long)p, n);
    return CUDA_ERROR_INVALID_VALUE;
}

// Whether AOANET_CUDA_EMU_TRACE asks for a line per launch (read once, not per launch).
bool trace_launches() {
    static const bool on = [] {
        const char* v = std::getenv("AOANET_CUDA_EMU_TRACE");
        return v && *v && std::strcmp(v, "0") != 0;
    }();
    return on;
}

// AOANET_CUDA_EMU_PROFILE=FILE (or `-`, standard error): at exit, a table of the CPU time
// each kernel took here, its launches and its blocks, most time first. The times are the
// emulator's, not a GPU's (tensor-core instructions cost far more here, memory far less), but
// a kernel whose share stands out against the work it does, or whose launches run fewer
// blocks than an H100 has SMs (132) for a long time, is worth a look on the GPU. Read once.
struct KernelProfile {
    uint64_t launches = 0, blocks = 0, threads = 0, narrow = 0;
    double secs = 0, narrow_secs = 0;
};

std::mutex g_profile_lock;

// Never destroyed: the table is read by an atexit handler, which may run after the static
// destructors of objects constructed later than its registration.
std::unordered_map<std::string, KernelProfile>& profile_table() {
    static auto* t = new std::unordered_map<std::string, KernelProfile>();
    return *t;
}

const char* profile_path() {
    static const char* path = [] {
        const char* v = std::getenv("AOANET_CUDA_EMU_PROFILE");
        return v && *v ? v : nullptr;
    }();
    return path;
}

bool profiling() { return profile_path() != nullptr; }

void write_profile() {
    std::lock_guard<std::mutex> lock(g_profile_lock);
    std::vector<std::pair<std::string, KernelProfile>> rows(profile_table().begin(),
                                                           profile_table().end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.secs > b.second.secs; });
    double total = 0;
    for (const auto& r : rows) total += r.second.secs;
    const bool to_stderr = std::strcmp(profile_path(), "-") == 0;
    FILE* f = to_stderr ? stderr : std::fopen(profile_path(), "w");
    if (!f) {
        std::fprintf(stderr, "cuda-emu: AOANET_CUDA_EMU_PROFILE=%s: cannot write: %s\n",
                     profile_path(), std::strerror(errno));
        return;
    }
    std::fprintf(f, "# cuda-emu profile: CPU seconds per kernel (not GPU time), %.3f s in all\n"
                    "# kernel launches blocks/launch threads/block seconds share "
                    "narrow_launches(<132 blocks) narrow_seconds\n", total);
    for (const auto& [name, p] : rows)
        std::fprintf(f, "%s %llu %.1f %.0f %.4f %.1f%% %llu %.4f\n", name.c_str(),
                     (unsigned long long)p.launches, double(p.blocks) / double(p.launches),
                     double(p.threads) / double(p.launches), p.secs,
                     total > 0 ? 100.0 * p.secs / total : 0.0, (unsigned long long)p.narrow,
                     p.narrow_secs);
    if (!to_stderr) std::fclose(f);
}

void profile_launch(const char* name, uint64_t blocks, uint64_t threads, double secs) {
    static std::once_flag once;
    std::call_once(once, [] { std::atexit(write_profile); });
    std::lock_guard<std::mutex> lock(g_profile_lock);
    KernelProfile& p = profile_table()[name];
    p.launches += 1;
    p.blocks += blocks;
    p.threads += threads;
    p.secs += secs;
    if (blocks < 132) {
        p.narrow += 1;
        p.narrow_secs += secs;
    }
}

// Whether AOANET_CUDA_EMU_HOST_ONLY asks to check launches without running them: results are
// garbage (fresh memory is then zero, not NaN, so a loss read stays finite), but the time a
// workload takes is the host's own work (the library's bookkeeping, autograd, the pool,
// cudarc) with the kernels' time taken out. Read once.
bool host_only() {
    static const bool on = [] {
        const char* v = std::getenv("AOANET_CUDA_EMU_HOST_ONLY");
        return v && *v && std::strcmp(v, "0") != 0;
    }();
    return on;
}

}  // namespace

extern "C" void emu_register(const EmuKernel* k) { kernels()[k->name] = k; }

// ============================================================================================
// The driver API (the subset cudarc calls for aoanet), C linkage, CUDA 13 signatures.
// ============================================================================================

typedef int CUdevice;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef void* CUfunction;
typedef unsigned long long CUdeviceptr;

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT CUresult cuInit(unsigned) { return CUDA_SUCCESS; }
EXPORT CUresult cuDriverGetVersion(int* v) {
    *v = 13000;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetCount(int* n) {
    *n = 1;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    std::snprintf(name, size_t(len), "cuda-emu: kernels on the CPU");
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = kDeviceBytes;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    std::lock_guard<std::mutex> l(g_lock);
    *total = kDeviceBytes;
    *free_bytes = kDeviceBytes - g_allocated;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetAttribute(int* v, int attribute, CUdevice) {
    switch (attribute) {
        case 1: *v = 1024; break;                    // max threads per block
        case 2: *v = 1024; break;                    // max block dim x
        case 3: *v = 1024; break;                    // y
        case 4: *v = 64; break;                      // z
        case 5: *v = 2147483647; break;              // max grid dim x
        case 6: case 7: *v = 65535; break;           // y, z
        case 8: *v = 48 * 1024; break;               // shared memory per block
        case 10: *v = 32; break;                     // warp size
        case 16: *v = 132; break;                    // multiprocessors
        case 75: *v = 9; break;                      // compute capability major
        case 76: *v = 0; break;                      // minor
        case 97: *v = 227 * 1024; break;             // opt-in shared memory per block
        case 115: *v = 0; break;                     // memory pools: not supported
        default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice) {
    *c = &g_context_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return CUDA_SUCCESS; }
EXPORT CUresult cuCtxGetCurrent(CUcontext* c) {
    *c = t_current_context;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    t_current_context = c;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetDevice(CUdevice* d) {
    *d = 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }

EXPORT CUresult cuStreamCreate(CUstream* s, unsigned) {
    *s = new int(0);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamCreateWithPriority(CUstream* s, unsigned flags, int) {
    return cuStreamCreate(s, flags);
}
EXPORT CUresult cuStreamDestroy_v2(CUstream s) {
    delete static_cast<int*>(s);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamSynchronize(CUstream) { return CUDA_SUCCESS; }
EXPORT CUresult cuStreamQuery(CUstream) { return CUDA_SUCCESS; }
EXPORT CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return CUDA_SUCCESS; }

EXPORT CUresult cuEventCreate(CUevent* e, unsigned) {
    *e = new Event();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventDestroy_v2(CUevent e) {
    delete static_cast<Event*>(e);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventRecord(CUevent e, CUstream) {
    if (!e) return CUDA_ERROR_INVALID_HANDLE;
    Event* ev = static_cast<Event*>(e);
    ev->when = std::chrono::steady_clock::now();
    ev->recorded = true;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventSynchronize(CUevent e) { return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
EXPORT CUresult cuEventQuery(CUevent e) { return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
EXPORT CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
    Event* s = static_cast<Event*>(a);
    Event* t = static_cast<Event*>(b);
    if (!s || !t || !s->recorded || !t->recorded) return CUDA_ERROR_INVALID_HANDLE;
    *ms = std::chrono::duration<float, std::milli>(t->when - s->when).count();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) {
    return cuEventElapsedTime(ms, a, b);
}

// Device memory: each allocation is its own mapping, ending where a PROT_NONE page begins, so
// reads or writes past its end fault. The start is 16-byte aligned (a float4), not 256 as
// cuMemAlloc's, so that an overrun of more than 15 bytes reaches the page.
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* out, size_t bytes) {
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    const size_t page = page_size();
    const size_t used = (bytes + 15) & ~size_t(15);
    const size_t data_pages = (used + page - 1) / page * page;
    const size_t map_bytes = data_pages + page;
    void* m = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    unsigned char* base = static_cast<unsigned char*>(m);
    mprotect(base + data_pages, page, PROT_NONE);
    unsigned char* p = base + data_pages - used;
    // Fresh device memory is not zero on a GPU; fill it with a NaN pattern (0xff bytes) so a
    // kernel that reads what nobody wrote shows up in its results.
    std::memset(p, host_only() ? 0 : 0xff, used);
    std::lock_guard<std::mutex> l(g_lock);
    g_allocations[reinterpret_cast<uintptr_t>(p)] = Allocation{m, map_bytes, bytes};
    g_allocated += bytes;
    *out = reinterpret_cast<CUdeviceptr>(p);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    std::lock_guard<std::mutex> l(g_lock);
    auto it = g_allocations.find(uintptr_t(p));
    if (it == g_allocations.end()) {
        std::fprintf(stderr, "cuda-emu: cuMemFree of 0x%llx, not an allocation\n", p);
        return CUDA_ERROR_INVALID_VALUE;
    }
    munmap(it->second.map, it->second.map_bytes);
    g_allocated -= it->second.bytes;
    g_allocations.erase(it);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    *p = std::aligned_alloc(4096, (bytes + 4095) & ~size_t(4095));
    return *p ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
EXPORT CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
EXPORT CUresult cuMemFreeHost(void* p) {
    std::free(p);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream) {
    std::lock_guard<std::mutex> l(g_lock);
    if (CUresult r = check_range("cuMemcpyHtoD", uintptr_t(dst), n)) return r;
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream) {
    std::lock_guard<std::mutex> l(g_lock);
    if (CUresult r = check_range("cuMemcpyDtoH", uintptr_t(src), n)) return r;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream) {
    std::lock_guard<std::mutex> l(g_lock);
    if (CUresult r = check_range("cuMemcpyDtoD (destination)", uintptr_t(dst), n)) return r;
    if (CUresult r = check_range("cuMemcpyDtoD (source)", uintptr_t(src), n)) return r;
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    return cuMemcpyHtoDAsync_v2(dst, src, n, nullptr);
}
EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    return cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
}
EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    return cuMemcpyDtoDAsync_v2(dst, src, n, nullptr);
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream) {
    std::lock_guard<std::mutex> l(g_lock);
    if (CUresult r = check_range("cuMemsetD8", uintptr_t(dst), n)) return r;
    std::memset(reinterpret_cast<void*>(dst), v, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    return cuMemsetD8Async(dst, v, n, nullptr);
}
EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream) {
    std::lock_guard<std::mutex> l(g_lock);
    if (CUresult r = check_range("cuMemsetD32", uintptr_t(dst), n * 4)) return r;
    unsigned* p = reinterpret_cast<unsigned*>(dst);
    for (size_t i = 0; i < n; ++i) p[i] = v;
    return CUDA_SUCCESS;
}

// Modules: the image NVRTC made must be an ELF cubin; its functions are the host builds.
EXPORT CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    const unsigned char* p = static_cast<const unsigned char*>(image);
    if (!p || std::memcmp(p, "\x7f" "ELF", 4) != 0 || p[4] != 2) {
        std::fprintf(stderr, "cuda-emu: cuModuleLoadData: not a 64-bit ELF cubin\n");
        return CUDA_ERROR_INVALID_IMAGE;
    }
    // ELF64 header: section headers at e_shoff (0x28), e_shentsize (0x3a), e_shnum (0x3c);
    // the image's size is where its section header table ends.
    uint64_t shoff;
    uint16_t shentsize, shnum;
    std::memcpy(&shoff, p + 0x28, 8);
    std::memcpy(&shentsize, p + 0x3a, 2);
    std::memcpy(&shnum, p + 0x3c, 2);
    const size_t size = size_t(shoff) + size_t(shentsize) * shnum;
    Module* m = new Module();
    m->image.assign(p, p + size);
    *out = m;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleUnload(CUmodule h) {
    Module* m = static_cast<Module*>(h);
    for (auto& f : m->functions) delete f.second;
    delete m;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleGetFunction(CUfunction* out, CUmodule h, const char* name) {
    std::lock_guard<std::mutex> l(g_lock);
    Module* m = static_cast<Module*>(h);
    auto found = m->functions.find(name);
    if (found != m->functions.end()) {
        *out = found->second;
        return CUDA_SUCCESS;
    }
    // The cubin must contain the name (as a symbol), and the host build must have it.
    const std::string n(name);
    const auto at = std::search(m->image.begin(), m->image.end(), n.begin(), n.end());
    if (at == m->image.end()) return CUDA_ERROR_NOT_FOUND;
    auto k = kernels().find(n);
    if (k == kernels().end()) {
        std::fprintf(stderr, "cuda-emu: kernel %s is in the cubin but not in the host build\n", name);
        return CUDA_ERROR_NOT_FOUND;
    }
    Function* f = new Function{k->second, 48 * 1024};
    m->functions[n] = f;
    *out = f;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuFuncSetAttribute(CUfunction h, int attribute, int value) {
    Function* f = static_cast<Function*>(h);
    if (attribute == 8) {  // max dynamic shared memory
        if (value > 227 * 1024) return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_smem = value;
    }
    return CUDA_SUCCESS;
}
EXPORT CUresult cuFuncGetAttribute(int* v, int attribute, CUfunction h) {
    Function* f = static_cast<Function*>(h);
    *v = attribute == 0 ? f->kernel->max_threads : 0;  // max threads per block
    return CUDA_SUCCESS;
}

EXPORT CUresult cuLaunchKernel(CUfunction h, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned smem, CUstream, void** params,
                               void** extra) {
    Function* f = static_cast<Function*>(h);
    if (!f) return CUDA_ERROR_INVALID_HANDLE;
    const EmuKernel* k = f->kernel;
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    if (extra || !params) {
        std::fprintf(stderr, "cuda-emu: %s: launch without a parameter array\n", k->name);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (threads == 0 || gx == 0 || gy == 0 || gz == 0 || bz > 64 || gy > 65535 || gz > 65535 ||
        gx > 2147483647u)
        return CUDA_ERROR_INVALID_VALUE;
    if (threads > (unsigned long long)k->max_threads) {
        std::fprintf(stderr, "cuda-emu: %s: %llu threads per block, its __launch_bounds__ is %d\n",
                     k->name, threads, k->max_threads);
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    if (smem > unsigned(f->max_dynamic_smem)) return CUDA_ERROR_INVALID_VALUE;
    EmuGrid g{{gx, gy, gz}, {bx, by, bz}, k->name};
    // No lock: launches from different host threads run at once (the library's tests do,
    // each on its own buffers); one thread's operations stay in its order.
    if (trace_launches())
        std::fprintf(stderr, "cuda-emu: %s grid (%u,%u,%u) block (%u,%u,%u)\n", k->name, gx, gy, gz,
                     bx, by, bz);
    if (host_only()) return CUDA_SUCCESS;
    if (!profiling()) return k->launch(k->fn, params, &g);
    const auto start = std::chrono::steady_clock::now();
    const CUresult rc = k->launch(k->fn, params, &g);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    profile_launch(k->name, uint64_t(gx) * gy * gz, threads, secs);
    return rc;
}

namespace {

struct ErrorText {
    CUresult code;
    const char* name;
    const char* text;
};

const ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
     "too many resources requested for launch"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED",
     "unspecified launch failure (cuda-emu: see stderr)"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported (by cuda-emu)"},
};

const ErrorText& error_text(CUresult e) {
    static const ErrorText unknown{CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"};
    for (const ErrorText& t : kErrors)
        if (t.code == e) return t;
    return unknown;
}

}  // namespace

EXPORT CUresult cuGetErrorString(CUresult e, const char** s) {
    *s = error_text(e).text;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorName(CUresult e, const char** s) {
    *s = error_text(e).name;
    return CUDA_SUCCESS;
}
