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

/// The `KernelFn` of this path: an `m × NR` tile, stored `m × n`.
///
/// # Safety
/// The `KernelFn` contract.
unsafe fn run<T: GemmScalar>(
    k: usize,
    (a, b, _prefetch, c, rs_c, m, n): KernelPtrs<T>,
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
    // Row by row: each row's `NR` accumulators are the only loop-carried state, which the
    // compiler keeps in vector registers (a whole `MR × NR` accumulator array was scalarised
    // and spilled). The B panel is re-read per row, from L1.
    let mut acc = [[T::ZERO; NR]; MR];
    for (i, acc) in acc.iter_mut().enumerate().take(m) {
        for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            let ai = ap[i];
            let bp: &[T; NR] = bp.try_into().expect("chunks_exact(NR)");
            for (x, &bj) in acc.iter_mut().zip(bp) {
                *x = *x + ai * bj;
            }
        }
    }
    for (i, acc) in acc.iter().take(m).enumerate() {
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

/// The portable kernel for `T`.
pub(crate) fn kernel<T: GemmScalar>() -> Kernel<T> {
    Kernel {
        mr: MR,
        nr: NR,
        run: run::<T>,
    }
}
