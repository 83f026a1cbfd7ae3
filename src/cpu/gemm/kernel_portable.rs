//! The portable micro-kernel: plain Rust on any target, 4 × 8 tiles of any [`GemmScalar`].
//!
//! It exists so the crate builds and computes correctly everywhere (and as the baseline the
//! SIMD paths are checked and timed against); the compiler vectorises the inner `j` loop with
//! whatever the target offers. Separate multiply and add, no FMA, so results can differ from
//! the SIMD paths in the last bit.

use std::slice;

use super::GemmScalar;
use super::kernel::{Kernel, KernelPtrs};

/// Rows of a register tile (and of a packed A micro-panel).
const MR: usize = 4;
/// Columns of a register tile (and of a packed B micro-panel).
const NR: usize = 8;

/// One `M × NR` tile, stored `M × n`; see [`KernelFn`](super::kernel::KernelFn).
///
/// # Safety
/// The `KernelFn` contract.
#[allow(clippy::too_many_arguments)]
unsafe fn tile<T: GemmScalar, const M: usize>(
    k: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    rs_c: usize,
    n: usize,
    alpha: T,
    beta: T,
) {
    // SAFETY: the contract makes `a` readable for `k * MR` and `b` for `k * NR` elements.
    let (a, b) = unsafe {
        (
            slice::from_raw_parts(a, k * MR),
            slice::from_raw_parts(b, k * NR),
        )
    };
    let mut acc = [[T::ZERO; NR]; M];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (acc, &ai) in acc.iter_mut().zip(ap) {
            for (x, &bj) in acc.iter_mut().zip(bp) {
                *x = *x + ai * bj;
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        // SAFETY: row `i < m` of the tile is ours for `n` elements; rows do not overlap
        // because validated C views have `row_stride >= cols`.
        let row = unsafe { slice::from_raw_parts_mut(c.add(i * rs_c), n) };
        for (y, &x) in row.iter_mut().zip(acc) {
            *y = if beta == T::ZERO {
                alpha * x
            } else {
                alpha * x + beta * *y
            };
        }
    }
}

/// Row dispatch for [`tile`]: the `KernelFn` of this path (no prefetching).
///
/// # Safety
/// The `KernelFn` contract.
unsafe fn run<T: GemmScalar>(
    k: usize,
    (a, b, _prefetch, c, rs_c, m, n): KernelPtrs<T>,
    alpha: T,
    beta: T,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match m {
            1 => tile::<T, 1>(k, a, b, c, rs_c, n, alpha, beta),
            2 => tile::<T, 2>(k, a, b, c, rs_c, n, alpha, beta),
            3 => tile::<T, 3>(k, a, b, c, rs_c, n, alpha, beta),
            4 => tile::<T, 4>(k, a, b, c, rs_c, n, alpha, beta),
            other => unreachable!("micro-kernel called with {other} rows"),
        }
    }
}

/// The portable kernel for `T`.
pub(crate) fn kernel<T: GemmScalar>() -> Kernel<T> {
    Kernel {
        mr: MR,
        nr: NR,
        run: run::<T>,
    }
}
