//! Allocator tuning for training loops.
//!
//! Every step allocates and frees the same large activation buffers (tens of megabytes). With
//! glibc's defaults, blocks above the dynamic mmap threshold (at most 32 MiB) are mapped and
//! unmapped each time, so every step pays a page fault per 4 KiB page touched (about a tenth
//! of a training step in profiles). Raising the mmap and trim thresholds keeps freed blocks
//! in the heap for reuse; resident memory then stays at the step's peak instead of oscillating
//! below it. Called by the `aoanet` binary and the benches; a library embedding aoanet decides
//! for itself.

/// Keeps large freed blocks in the process heap (glibc only; elsewhere a no-op). Returns
/// whether the allocator accepted the settings.
pub fn keep_large_blocks() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's mallopt parameter numbers (malloc.h).
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only adjusts allocator thresholds; any value is valid input and the
        // call is thread-safe in glibc.
        unsafe {
            let a = mallopt(M_MMAP_THRESHOLD, 1 << 30);
            let b = mallopt(M_TRIM_THRESHOLD, i32::MAX);
            a == 1 && b == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
