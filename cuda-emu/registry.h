// registry.h: how each kernel of kernels/*.cu makes itself known to the emulated driver.
// cuda-emu/build appends `EMU_KERNEL(name, max_threads)` for every `extern "C" __global__`
// function of a file; cuModuleGetFunction finds it by name, cuLaunchKernel calls `launch` with
// the driver's untyped parameter array, which the template below unpacks by the kernel's own
// parameter types (so a wrapper/kernel mismatch in count is the same undefined behaviour it is
// on a GPU, and `tests/kernels_coverage.rs` is what guards it).

#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

struct EmuGrid {
    unsigned grid[3];
    unsigned block[3];
    const char* name;
};

struct EmuKernel {
    const char* name;
    int max_threads;  // __launch_bounds__, or 1024
    int (*launch)(void* fn, void** params, const EmuGrid* grid);
    void* fn;
};

extern "C" {
void emu_register(const EmuKernel* k);
// Runs `body(ctx)` as every thread of every block of the grid; 0, or a CUresult on failure.
int emu_run_grid(const EmuGrid* grid, void (*body)(void*), void* ctx);
}

template <typename... A>
struct EmuLauncher {
    typedef void (*Fn)(A...);
    struct Call {
        Fn fn;
        std::tuple<typename std::decay<A>::type...> args;
    };
    template <std::size_t... I>
    static int go(Fn fn, void** params, const EmuGrid* grid, std::index_sequence<I...>) {
        Call call{fn, {*static_cast<typename std::decay<A>::type*>(params[I])...}};
        (void)params;
        return emu_run_grid(
            grid, [](void* p) { std::apply(static_cast<Call*>(p)->fn, static_cast<Call*>(p)->args); },
            &call);
    }
    static int launch(void* fn, void** params, const EmuGrid* grid) {
        return go(reinterpret_cast<Fn>(fn), params, grid, std::index_sequence_for<A...>{});
    }
};

template <typename... A>
EmuKernel emu_kernel(const char* name, int max_threads, void (*fn)(A...)) {
    return EmuKernel{name, max_threads, &EmuLauncher<A...>::launch, reinterpret_cast<void*>(fn)};
}

#define EMU_KERNEL(name, max_threads)                                                 \
    static const EmuKernel emu_kernel_##name = emu_kernel(#name, max_threads, &name); \
    static const int emu_registered_##name = (emu_register(&emu_kernel_##name), 0);
