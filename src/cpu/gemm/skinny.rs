//! The skinny path: at most [`SKINNY_ROWS`] rows of A times a row-major B, without packing.
//!
//! With one to four rows (a single image's beams, a GEMV), every element of B is used at most
//! four times, so copying B into panels costs as much as the arithmetic. Instead each row of
//! B is streamed once and added, scaled, into the (few) rows of C:
//!
//! ```text
//! C[i, :] = beta·C[i, :];   for each chunk of 2048 columns: for p: for i:
//!     C[i, chunk] += (alpha·A[i, p]) · B[p, chunk]
//! ```
//!
//! The loops are plain Rust, compiled inside `#[target_feature]` wrappers so that the
//! compiler vectorises them for the chosen path. Threads split the columns.

use std::ops::Range;

use super::config::{GemmConfig, GemmPath};
use super::driver::SyncPtr;
use super::{GemmScalar, MatRef};
use crate::cpu::parallel::{chunk_count, chunk_range};

/// Products with at most this many rows (and a row-major B) take the skinny path.
pub(crate) const SKINNY_ROWS: usize = 4;

/// `C = alpha·A·B + beta·C` for `a.rows ≤ SKINNY_ROWS`, `b.col_stride == 1`.
///
/// # Safety
/// As [`gemm_raw`](super::driver::gemm_raw): C (`a.rows × b.cols`, row stride `rs_c`) is
/// valid and exclusively ours, rows not overlapping; the views are validated; `cfg.path`
/// runs on this CPU.
pub(crate) unsafe fn skinny<T: GemmScalar>(
    cfg: &GemmConfig,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: SyncPtr<T>,
    rs_c: usize,
) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    // Threads take column ranges of at least 64 columns.
    let threads = cfg.threads.min(flops / cfg.min_flops_per_thread).max(1);
    let parts = chunk_count(n.div_ceil(64), 1, threads);
    let work = |part: usize| {
        let r = chunk_range(n.div_ceil(64), parts, part);
        let cols = r.start * 64..(r.end * 64).min(n);
        // SAFETY: column ranges of different parts are disjoint; the rest is the caller's
        // contract, and the wrapper's CPU features are those of the checked `cfg.path`.
        unsafe { run(cfg.path, alpha, a, b, beta, c, rs_c, cols) };
    };
    if parts <= 1 {
        work(0);
    } else {
        std::thread::scope(|s| {
            let work = &work;
            for part in 1..parts {
                s.spawn(move || work(part));
            }
            work(0);
        });
    }
}

/// Calls [`rows_times_b`] compiled for `path`.
///
/// # Safety
/// C columns `cols` of every row are exclusively ours; the CPU runs `path`.
#[allow(clippy::too_many_arguments)]
unsafe fn run<T: GemmScalar>(
    path: GemmPath,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: SyncPtr<T>,
    rs_c: usize,
    cols: Range<usize>,
) {
    let mut rows: [&mut [T]; SKINNY_ROWS] = Default::default();
    for (i, row) in rows.iter_mut().enumerate().take(a.rows) {
        // SAFETY: row `i` of C is valid for `b.cols ≥ cols.end` elements, rows do not overlap
        // (`rs_c ≥ n` when there are several), and the columns `cols` are ours alone.
        *row = unsafe {
            std::slice::from_raw_parts_mut(c.get().add(i * rs_c + cols.start), cols.len())
        };
    }
    let rows = &mut rows[..a.rows];
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked that the CPU runs this path.
        GemmPath::Avx512 => unsafe { rows_avx512(alpha, a, b, beta, rows, cols) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        GemmPath::Avx2 => unsafe { rows_avx2(alpha, a, b, beta, rows, cols) },
        _ => rows_times_b(alpha, a, b, beta, rows, cols),
    }
}

/// [`rows_times_b`] vectorised for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn rows_avx512<T: GemmScalar>(
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    rows: &mut [&mut [T]],
    cols: Range<usize>,
) {
    rows_times_b(alpha, a, b, beta, rows, cols);
}

/// [`rows_times_b`] vectorised for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2<T: GemmScalar>(
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    rows: &mut [&mut [T]],
    cols: Range<usize>,
) {
    rows_times_b(alpha, a, b, beta, rows, cols);
}

/// Columns per chunk: the chunk of every C row (at most 4 × 8 KiB of f32) stays in L1
/// while all of `k` streams past it, and each B row piece is long enough (8 KiB) for the
/// hardware prefetcher to stream (256 columns was 5x slower: latency-bound on B).
const CHUNK: usize = 2048;

/// `rows[i] = beta·rows[i] + Σ_p (alpha·A[i, p])·B[p, cols]` (`beta == 0` never reads C).
#[inline(always)]
fn rows_times_b<T: GemmScalar>(
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    rows: &mut [&mut [T]],
    cols: Range<usize>,
) {
    for row in rows.iter_mut() {
        if beta == T::ZERO {
            row.fill(T::ZERO);
        } else if beta != T::ONE {
            row.iter_mut().for_each(|x| *x = beta * *x);
        }
    }
    for c0 in (0..cols.len()).step_by(CHUNK) {
        let width = CHUNK.min(cols.len() - c0);
        for p in 0..a.cols {
            let start = b.offset + p * b.row_stride + cols.start + c0;
            let brow = &b.data[start..start + width];
            for (i, row) in rows.iter_mut().enumerate() {
                let s = alpha * a.data[a.offset + i * a.row_stride + p * a.col_stride];
                for (y, &x) in row[c0..c0 + width].iter_mut().zip(brow) {
                    *y = *y + s * x;
                }
            }
        }
    }
}
