//! The CPU GEMM: `C = alpha·A·B + beta·C` on strided matrix views, in f32 and f64.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | the views ([`MatRef`], [`MatMut`]), their validation, the entry points |
//! | `config.rs` | [`GemmPath`], [`gemm_path`], [`GemmConfig`] (threads, blocking) |
//! | `scalar.rs` | [`GemmScalar`]: f32 and f64, and which kernel each path uses |
//! | `driver.rs` | the blocked loop nest (BLIS order) and its threading |
//! | `pack.rs` | packing A and B blocks into micro-panels |
//! | `packed_b.rs` | [`PackedB`]: weights packed once, multiplied many times |
//! | `skinny.rs` | at most four rows times a row-major B, without packing |
//! | `kernel.rs` | the micro-kernel contract |
//! | `kernel_avx512.rs`, `kernel_avx2.rs`, `kernel_portable.rs` | the micro-kernels |
//! | `buffer.rs` | aligned, pooled scratch memory |
//!
//! Environment (each read once per process):
//! * `AOANET_GEMM=avx512|avx2|portable` forces a kernel path; a path the CPU lacks (or an
//!   unknown name) is reported once on stderr and replaced by the best supported one.
//! * `AOANET_NUM_THREADS=N` caps the threads (default: available parallelism).
//!
//! Every view is validated before any memory is touched: an offset/stride combination that
//! reaches outside its slice, C rows that overlap, or batch items of C that overlap are an
//! [`Error`], never undefined behaviour. A transposed operand is just a view with
//! swapped strides ([`MatRef::t`]); packing absorbs the layout, so `AᵀB`, `ABᵀ` and `AᵀBᵀ` cost
//! the same as `AB`.
//!
//! Performance notes (numbers from `cargo bench --bench gemm` on the 2-core AVX-512 machine):
//! * Large products reach 82-86% of the measured FMA peak per core.
//! * Weights reused across calls (the decoder's 50-row steps) should be packed once into a
//!   [`PackedB`]: it skips re-packing a 50 MB B on every step (about 80% of peak instead of
//!   about 55% with a plain row-major B).
//! * Large operands in 4 KiB pages cost TLB misses (about 10% on a 2048³ product); a tensor
//!   allocator can back big buffers with transparent huge pages (an anonymous `memmap2` map
//!   with `Advice::HugePage`, as this module's own scratch buffers are; see `--huge` in the
//!   bench).
//! * Tiny products (attention's 36 × 36 × 128 per head) are dominated by packing and reach
//!   only about a third of peak; batches of them run in parallel across the batch.

mod buffer;
mod config;
mod driver;
mod kernel;
#[cfg(target_arch = "x86_64")]
mod kernel_avx2;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
mod kernel_portable;
mod pack;
#[cfg(target_arch = "x86_64")]
mod pack_avx512;
mod packed_b;
mod scalar;
mod skinny;
#[cfg(test)]
mod tests;

pub use crate::cpu::parallel::num_threads;
pub use config::{GemmConfig, GemmPath, gemm_path};
pub use packed_b::PackedB;

/// Time spent in GEMM, for benches that report the GEMM share of a workload.
pub mod stats {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    static ENABLED: AtomicBool = AtomicBool::new(false);
    static NANOS: AtomicU64 = AtomicU64::new(0);
    static MULADDS: AtomicU64 = AtomicU64::new(0);
    static CALLS: AtomicU64 = AtomicU64::new(0);

    /// Starts (or stops) accumulating; off by default, and then costs one relaxed load.
    pub fn enable(on: bool) {
        ENABLED.store(on, Ordering::Relaxed);
    }

    /// `(calls, seconds, GFLOP)` accumulated since the last call, and resets them.
    pub fn take() -> (u64, f64, f64) {
        let calls = CALLS.swap(0, Ordering::Relaxed);
        let nanos = NANOS.swap(0, Ordering::Relaxed);
        let muladds = MULADDS.swap(0, Ordering::Relaxed);
        (calls, nanos as f64 * 1e-9, 2.0 * muladds as f64 * 1e-9)
    }

    /// Records one call's wall time when dropped (if enabled when started).
    pub(crate) struct Timer(Option<(Instant, u64)>);

    impl Timer {
        pub(crate) fn start(muladds: usize) -> Timer {
            Timer(
                ENABLED
                    .load(Ordering::Relaxed)
                    .then(|| (Instant::now(), muladds as u64)),
            )
        }
    }

    impl Drop for Timer {
        fn drop(&mut self) {
            if let Some((t, m)) = self.0 {
                NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                MULADDS.fetch_add(m, Ordering::Relaxed);
                CALLS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
pub use scalar::GemmScalar;

use crate::cpu::parallel::parallel_for_with;
use crate::{Error, Result};
use driver::{BSource, SyncPtr, gemm_raw};

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

/// A read-only strided matrix view: element `(i, j)` is
/// `data[offset + i * row_stride + j * col_stride]`. Transposition is a stride swap
/// ([`MatRef::t`]), so `Aᵀ` costs nothing. Fields are public; the GEMM entry points validate
/// them (or call [`MatRef::check`] yourself).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// The storage the view points into.
    pub data: &'a [T],
    /// Index of element `(0, 0)` in `data`.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance in elements between `(i, j)` and `(i + 1, j)`.
    pub row_stride: usize,
    /// Distance in elements between `(i, j)` and `(i, j + 1)`.
    pub col_stride: usize,
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A row-major contiguous `rows × cols` view of `data` from index 0 (checked when used).
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// A strided view, validated now: fails if any element lies outside `data`.
    pub fn from_parts(
        data: &'a [T],
        offset: usize,
        [rows, cols]: [usize; 2],
        [row_stride, col_stride]: [usize; 2],
    ) -> Result<Self> {
        let v = MatRef {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        };
        v.check()?;
        Ok(v)
    }

    /// The transposed view (rows and columns swapped; no data moves).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Element `(i, j)`, or `None` outside the view or its data.
    pub fn get(&self, i: usize, j: usize) -> Option<T> {
        if i >= self.rows || j >= self.cols {
            return None;
        }
        let idx = self
            .offset
            .checked_add(i.checked_mul(self.row_stride)?)?
            .checked_add(j.checked_mul(self.col_stride)?)?;
        self.data.get(idx).copied()
    }

    /// Fails if any element of the view lies outside `data`.
    pub fn check(&self) -> Result<()> {
        check_ref("matrix view", "A", self, 1, 0)
    }
}

/// A mutable row-major matrix view, possibly padded: element `(i, j)` is
/// `data[offset + i * row_stride + j]`, with `row_stride >= cols` when there are several rows.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    /// The storage the view points into.
    pub data: &'a mut [T],
    /// Index of element `(0, 0)` in `data`.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance in elements between `(i, j)` and `(i + 1, j)`.
    pub row_stride: usize,
}

impl<'a, T: Copy> MatMut<'a, T> {
    /// A row-major contiguous `rows × cols` view of `data` from index 0 (checked when used).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
        }
    }

    /// A padded view, validated now: fails if it reaches outside `data` or rows overlap.
    pub fn from_parts(
        data: &'a mut [T],
        offset: usize,
        [rows, cols]: [usize; 2],
        row_stride: usize,
    ) -> Result<Self> {
        let v = MatMut {
            data,
            offset,
            rows,
            cols,
            row_stride,
        };
        check_mut("matrix view", &v, 1, 0)?;
        Ok(v)
    }

    /// A shorter-lived view of the same matrix, so one `MatMut` can serve several calls.
    pub fn rb(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: self.data,
            offset: self.offset,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
        }
    }

    /// The same matrix as a read-only view.
    pub fn as_ref(&self) -> MatRef<'_, T> {
        MatRef {
            data: self.data,
            offset: self.offset,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: 1,
        }
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
}

/// One past the largest index `batch` items of a view touch (`None` on overflow); the view
/// must be non-empty.
fn last_index(
    offset: usize,
    [rows, cols]: [usize; 2],
    [rs, cs]: [usize; 2],
    batch: usize,
    batch_stride: usize,
) -> Option<usize> {
    offset
        .checked_add((batch - 1).checked_mul(batch_stride)?)?
        .checked_add((rows - 1).checked_mul(rs)?)?
        .checked_add((cols - 1).checked_mul(cs)?)
}

/// Fails unless `batch` items of `v`, `batch_stride` apart, lie inside `v.data`.
pub(crate) fn check_ref<T>(
    op: &str,
    name: &str,
    v: &MatRef<'_, T>,
    batch: usize,
    batch_stride: usize,
) -> Result<()> {
    if v.rows == 0 || v.cols == 0 || batch == 0 {
        return Ok(());
    }
    let shape = [v.rows, v.cols];
    let strides = [v.row_stride, v.col_stride];
    match last_index(v.offset, shape, strides, batch, batch_stride) {
        Some(last) if last < v.data.len() => Ok(()),
        _ => Err(Error::invalid(format!(
            "{op}: {name} view out of bounds: offset {}, shape {shape:?}, strides {strides:?}, \
             {batch} item(s) {batch_stride} apart, over {} elements",
            v.offset,
            v.data.len()
        ))),
    }
}

/// Fails unless `batch` items of `c` lie inside `c.data` without any two rows or items
/// overlapping (overlapping outputs would be written concurrently).
pub(crate) fn check_mut<T>(
    op: &str,
    c: &MatMut<'_, T>,
    batch: usize,
    batch_stride: usize,
) -> Result<()> {
    if c.rows == 0 || c.cols == 0 || batch == 0 {
        return Ok(());
    }
    let shape = [c.rows, c.cols];
    if c.rows > 1 && c.row_stride < c.cols {
        return Err(Error::invalid(format!(
            "{op}: C rows overlap: shape {shape:?} with row stride {}",
            c.row_stride
        )));
    }
    let item_span = (c.rows - 1) * c.row_stride + c.cols;
    if batch > 1 && batch_stride < item_span {
        return Err(Error::invalid(format!(
            "{op}: C batch items overlap: batch stride {batch_stride} < {item_span} elements \
             spanned by one {shape:?} item with row stride {}",
            c.row_stride
        )));
    }
    match last_index(c.offset, shape, [c.row_stride, 1], batch, batch_stride) {
        Some(last) if last < c.data.len() => Ok(()),
        _ => Err(Error::invalid(format!(
            "{op}: C view out of bounds: offset {}, shape {shape:?}, row stride {}, \
             {batch} item(s) {batch_stride} apart, over {} elements",
            c.offset,
            c.row_stride,
            c.data.len()
        ))),
    }
}

/// Fails unless `a` (m × k), `b` (k × n) and `c` (m × n) agree, naming all three shapes.
fn check_shapes(op: &'static str, a: [usize; 2], b: [usize; 2], c: [usize; 2]) -> Result<()> {
    if a[1] != b[0] || c != [a[0], b[1]] {
        return Err(Error::shape(
            op,
            &[&a, &b, &c],
            "A [m, k] · B [k, n] into C [m, n]",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// `C = alpha·A·B + beta·C` with the process-wide configuration ([`GemmConfig::current`]).
/// `beta == 0` means C is overwritten and never read (it may hold NaN). Fails on a shape
/// mismatch (naming all three shapes) or an invalid view.
pub fn gemm<T: GemmScalar>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) -> Result<()> {
    gemm_with(&GemmConfig::current(), alpha, a, b, beta, c)
}

/// [`gemm`] with an explicit configuration (kernel path, threads, blocking): how tests run
/// every path and benches compare thread counts.
pub fn gemm_with<T: GemmScalar>(
    cfg: &GemmConfig,
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) -> Result<()> {
    gemm_batched_with(cfg, 1, alpha, a, 0, b, 0, beta, c, 0)
}

/// `batch` independent products `C_i = alpha·A_i·B_i + beta·C_i`, where item `i` uses the
/// views with offsets advanced by `i · stride` (a stride of 0 broadcasts that operand; C's
/// items must not overlap). Small items run in parallel across the batch, large ones one
/// after another with threads inside each product.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched<T: GemmScalar>(
    batch: usize,
    alpha: T,
    a: MatRef<'_, T>,
    a_batch_stride: usize,
    b: MatRef<'_, T>,
    b_batch_stride: usize,
    beta: T,
    c: MatMut<'_, T>,
    c_batch_stride: usize,
) -> Result<()> {
    let cfg = GemmConfig::current();
    gemm_batched_with(
        &cfg,
        batch,
        alpha,
        a,
        a_batch_stride,
        b,
        b_batch_stride,
        beta,
        c,
        c_batch_stride,
    )
}

/// [`gemm_batched`] with an explicit configuration.
#[allow(clippy::too_many_arguments)]
pub fn gemm_batched_with<T: GemmScalar>(
    cfg: &GemmConfig,
    batch: usize,
    alpha: T,
    a: MatRef<'_, T>,
    a_batch_stride: usize,
    b: MatRef<'_, T>,
    b_batch_stride: usize,
    beta: T,
    c: MatMut<'_, T>,
    c_batch_stride: usize,
) -> Result<()> {
    const OP: &str = "gemm";
    let _timer = stats::Timer::start(batch * a.rows * b.cols * a.cols);
    cfg.check()?;
    check_shapes(OP, a.shape(), b.shape(), c.shape())?;
    check_ref(OP, "A", &a, batch, a_batch_stride)?;
    check_ref(OP, "B", &b, batch, b_batch_stride)?;
    check_mut(OP, &c, batch, c_batch_stride)?;
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let rs_c = c.row_stride;
    // The check above put every item's C inside `c.data`; `c.offset` is in bounds.
    let c_base = SyncPtr(c.data[c.offset..].as_mut_ptr());
    let item = |i: usize| {
        // Wrapping: the checks above bound these offsets for non-empty views, and an empty
        // view (k = 0) is never read, whatever its offset.
        let a_i = MatRef {
            offset: a.offset.wrapping_add(i.wrapping_mul(a_batch_stride)),
            ..a
        };
        let b_i = MatRef {
            offset: b.offset.wrapping_add(i.wrapping_mul(b_batch_stride)),
            ..b
        };
        // SAFETY: item `i`'s C starts `i · c_batch_stride` past `c_base` and lies inside
        // `c.data` (checked above).
        let c_i = SyncPtr(unsafe { c_base.get().add(i * c_batch_stride) });
        (a_i, b_i, c_i)
    };

    let per_item = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let min_flops = cfg.min_flops_per_thread;
    let inside = batch == 1
        || cfg.threads == 1
        || per_item >= 4 * min_flops
        || (batch < 2 * cfg.threads && per_item >= min_flops);
    if inside {
        for i in 0..batch {
            let (a_i, b_i, c_i) = item(i);
            // SAFETY: the views are validated, C items are disjoint and in bounds, the
            // path was checked by `cfg.check()`, and we hold `c` exclusively.
            unsafe { gemm_raw(cfg, alpha, a_i, BSource::Strided(b_i), beta, c_i, rs_c) };
        }
    } else {
        let one = cfg.with_threads(1);
        let min_items = (min_flops / per_item.max(1)).max(1);
        parallel_for_with(cfg.threads, batch, min_items, |range| {
            for i in range {
                let (a_i, b_i, c_i) = item(i);
                // SAFETY: as above; items of different threads write disjoint C items.
                unsafe { gemm_raw(&one, alpha, a_i, BSource::Strided(b_i), beta, c_i, rs_c) };
            }
        });
    }
    Ok(())
}

/// `C = alpha·A·B + beta·C` with a pre-packed B (its path and `kc` are used; the thread count
/// is [`num_threads`]).
pub fn gemm_packed<T: GemmScalar>(
    alpha: T,
    a: MatRef<'_, T>,
    b: &PackedB<T>,
    beta: T,
    c: MatMut<'_, T>,
) -> Result<()> {
    gemm_packed_with(&GemmConfig::current(), alpha, a, b, beta, c)
}

/// [`gemm_packed`] with an explicit configuration (only its thread count matters: the path
/// and blocking are the packed B's).
pub fn gemm_packed_with<T: GemmScalar>(
    cfg: &GemmConfig,
    alpha: T,
    a: MatRef<'_, T>,
    b: &PackedB<T>,
    beta: T,
    c: MatMut<'_, T>,
) -> Result<()> {
    const OP: &str = "gemm_packed";
    let _timer = stats::Timer::start(a.rows * b.cols() * a.cols);
    let cfg = cfg.with_path(b.path())?;
    check_shapes(OP, a.shape(), [b.rows(), b.cols()], c.shape())?;
    check_ref(OP, "A", &a, 1, 0)?;
    check_mut(OP, &c, 1, 0)?;
    if c.rows == 0 || c.cols == 0 {
        return Ok(());
    }
    let rs_c = c.row_stride;
    let c_ptr = SyncPtr(c.data[c.offset..].as_mut_ptr());
    // SAFETY: validated views, C in bounds with non-overlapping rows and held exclusively,
    // the packed path was checked when `b` was built (and again by `with_path`).
    unsafe { gemm_raw(&cfg, alpha, a, BSource::Packed(b), beta, c_ptr, rs_c) };
    Ok(())
}
