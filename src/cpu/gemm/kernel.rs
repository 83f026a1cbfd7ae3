//! The micro-kernel contract shared by every path, and the row-count dispatch helper.
//!
//! A micro-kernel multiplies one packed A micro-panel by one packed B micro-panel and writes
//! an `m × n` tile of C (`m ≤ mr`, `n ≤ nr`):
//!
//! ```text
//! C[i, j] = alpha * Σ_p A[p * mr + i] * B[p * nr + j] + beta * C[i, j]      (p < k)
//! ```
//!
//! `beta == 0` never reads C (it may hold NaN). Kernels are instantiated per exact row count
//! (`const M`) so an edge tile of 8 rows costs 8 rows of FMAs, not `mr`; columns past `n` are
//! computed from the zero padding of the B panel and masked off at the store.

/// Raw micro-kernel: `(k, (a, b, prefetch, c, rs_c, m, n), alpha, beta)`.
///
/// # Safety
/// `a` is readable for `k * mr` elements, `b` for `k * nr` elements and 64-byte aligned;
/// `c + i * rs_c + j` is writable (and readable when `beta != 0`) for `i < m`, `j < n`, and
/// no other thread touches that tile during the call; `1 ≤ m ≤ mr`, `1 ≤ n ≤ nr`; the CPU
/// supports the kernel's path. `prefetch` is only a hint (the next B panel, `k * nr`
/// elements): kernels may prefetch from it but never read it, so it may dangle.
pub type KernelFn<T> = unsafe fn(usize, KernelPtrs<T>, T, T);

/// The pointers and sizes of one kernel call: `(a, b, prefetch, c, rs_c, m, n)`.
pub type KernelPtrs<T> = (*const T, *const T, *const T, *mut T, usize, usize, usize);

/// A micro-kernel and the register-tile shape its packed panels must have.
#[derive(Clone, Copy)]
pub struct Kernel<T> {
    /// Rows per packed A micro-panel (the register tile's height).
    pub mr: usize,
    /// Columns per packed B micro-panel (the register tile's width).
    pub nr: usize,
    /// The kernel itself.
    pub run: KernelFn<T>,
}

/// Expands to a `match` on a runtime row count that calls `$tile::<R, $nv>(args…)` for each
/// listed `R`, so each edge height gets its own fully unrolled, register-resident kernel.
macro_rules! dispatch_rows {
    ($m:expr, $tile:ident::<_, $nv:literal> $args:tt, [$($r:literal),*]) => {
        match $m {
            $($r => $tile::<$r, $nv> $args,)*
            other => unreachable!("micro-kernel called with {other} rows"),
        }
    };
}
pub(crate) use dispatch_rows;
