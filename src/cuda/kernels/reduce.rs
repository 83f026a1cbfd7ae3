//! Reductions (`kernels/reduce.cu`).

use std::sync::Arc;

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, multi_tensor_blocks, row_grid, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches (see [`float_kernels!`](crate::cuda::kernels)).
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "reduce";
        /// `reduce_rows_f32`, `reduce_rows_f64`: `out[r] (=|+=) op_j x[r, j]`.
        fn reduce_rows<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, rows: i64, cols: i32, op: i32, accumulate: i32);
        /// `reduce_axis_f32`, `reduce_axis_f64`: `out[o, i] = op_l x[o, l, i]`.
        fn reduce_axis<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, outer: i64, len: i64, inner: i64, op: i32);
        /// `sum_cols_f32`, `sum_cols_f64`: column sums, chunks of rows summed by each column
        /// tile's last block (`part` and `counters` null for one chunk).
        fn sum_cols<T>(out: CudaViewMut<'_, T>, part: Option<CudaViewMut<'_, T>>, x: CudaView<'_, T>, rows: i64, cols: i32, rows_per_chunk: i64, accumulate: i32, counters: Option<CudaViewMut<'_, i32>>);
        /// `argmax_rows_f32`, `argmax_rows_f64`: row argmax and max.
        fn argmax_rows<T>(idx: CudaViewMut<'_, i32>, val: CudaViewMut<'_, T>, x: CudaView<'_, T>, rows: i64, cols: i32);
        /// `max_axis_f32`, `max_axis_f64`: max over an axis and its first index.
        fn max_axis<T>(val: CudaViewMut<'_, T>, idx: CudaViewMut<'_, i32>, x: CudaView<'_, T>, outer: i64, len: i64, inner: i64);
        /// `scatter_axis_f32`, `scatter_axis_f64`: the adjoint of `max_axis`.
        fn scatter_axis<T>(gx: CudaViewMut<'_, T>, g: CudaView<'_, T>, idx: CudaView<'_, i32>, outer: i64, len: i64, inner: i64);
        /// `sum_partial_f32`, `sum_partial_f64`: sums of consecutive chunks.
        fn sum_partial<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, n: i64, per: i64);
        /// `count_nonfinite_f32`, `count_nonfinite_f64`: `*count +=` non-finite elements.
        fn count_nonfinite<T>(count: CudaViewMut<'_, u32>, x: CudaView<'_, T>, n: i64);
        /// `count_nonfinite_multi_f32`, `count_nonfinite_multi_f64`: the same over the tensors
        /// of `table`.
        fn count_nonfinite_multi<T>(count: CudaViewMut<'_, u32>, table: CudaView<'_, u64>, tensors: i32);
    }
}

pub use raw::FLOAT_SIGNATURES;

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Reduce {
    /// Σ.
    Sum = 0,
    /// Σ / n.
    Mean = 1,
    /// max.
    Max = 2,
}

/// `out[r] = op_j x[r, j]` over `[rows, cols]`; `accumulate` adds into `out` instead.
pub fn rows<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    rows: usize,
    cols: usize,
    op: Reduce,
    accumulate: bool,
) -> Result<()> {
    check_len("reduce_rows", "x", x.len(), rows * cols)?;
    check_len("reduce_rows", "out", out.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    let c = to_i32("reduce_rows", "cols", cols)?;
    // SAFETY: sizes checked above.
    unsafe {
        raw::reduce_rows(
            dev,
            row_grid(rows, 256),
            out,
            x,
            rows as i64,
            c,
            op as i32,
            i32::from(accumulate),
        )
    }
}

/// `out[o, i] = op_l x[o, l, i]` for `x` viewed as `[outer, len, inner]`: any axis.
pub fn axis<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    dims: [usize; 3],
    op: Reduce,
) -> Result<()> {
    let [outer, len, inner] = dims;
    check_len("reduce_axis", "x", x.len(), outer * len * inner)?;
    check_len("reduce_axis", "out", out.len(), outer * inner)?;
    if outer * inner == 0 {
        return Ok(());
    }
    let cfg = LaunchCfg::elementwise(outer * inner, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe {
        raw::reduce_axis(
            dev,
            cfg,
            out,
            x,
            outer as i64,
            len as i64,
            inner as i64,
            op as i32,
        )
    }
}

/// `out[j] (=|+=) Σ_r x[r, j]` for `x [rows, cols]` (bias gradients, column sums) in one
/// launch: chunks of rows summed in parallel (at least [`SUM_COLS_MIN_CHUNK`] rows each, at
/// most 256 chunks), then in chunk order by the last block of each column tile. Deterministic.
pub fn sum_cols<T: CudaFloat>(
    dev: &std::sync::Arc<CudaDevice>,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<()> {
    check_len("sum_cols", "x", x.len(), rows * cols)?;
    check_len("sum_cols", "out", out.len(), cols)?;
    if cols == 0 {
        return Ok(());
    }
    let c = to_i32("sum_cols", "cols", cols)?;
    let per_chunk = SUM_COLS_MIN_CHUNK.max(rows.div_ceil(256));
    let chunks = rows.div_ceil(per_chunk).max(1);
    let col_tiles = cols.div_ceil(128);
    let cfg = LaunchCfg {
        grid: (col_tiles as u32, chunks as u32, 1),
        block: (128, 1, 1),
        smem: 0,
    };
    let (mut part, mut counters);
    let (part_view, counter_view) = if chunks == 1 {
        (None, None)
    } else {
        part = dev.alloc::<T>(chunks * cols)?;
        counters = super::gemm::TileCounters::lend(dev, col_tiles)?;
        (Some(part.view_mut()), Some(counters.view_mut(col_tiles)?))
    };
    // SAFETY: x holds rows · cols elements and out cols (checked above); with several chunks the
    // partial sums hold chunks · cols and there is a zero counter per column tile (lent for this
    // launch, left zero by it); the grid covers the columns (guarded in the kernel).
    unsafe {
        raw::sum_cols(
            dev,
            cfg,
            out,
            part_view,
            x,
            rows as i64,
            c,
            per_chunk as i64,
            i32::from(accumulate),
            counter_view,
        )
    }
}

/// The fewest rows a chunk of [`sum_cols`] sums serially before the chunks are summed.
pub const SUM_COLS_MIN_CHUNK: usize = 32;

/// Per row of `x [rows, cols]`: the index of the maximum (the first on ties; the first NaN if
/// the row has one, as the CPU's `argmax_last`) and the maximum.
pub fn argmax<T: CudaFloat>(
    dev: &CudaDevice,
    idx: CudaViewMut<'_, i32>,
    val: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    check_len("argmax", "x", x.len(), rows * cols)?;
    check_len("argmax", "idx", idx.len(), rows)?;
    check_len("argmax", "val", val.len(), rows)?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let c = to_i32("argmax", "cols", cols)?;
    // SAFETY: sizes checked above.
    unsafe { raw::argmax_rows(dev, row_grid(rows, 256), idx, val, x, rows as i64, c) }
}

/// `val[o, i]`, `idx[o, i]`: the maximum over `l` of `x [outer, len, inner]` and its first
/// index (a NaN wins, as the CPU's `max_axis`).
pub fn max_axis<T: CudaFloat>(
    dev: &CudaDevice,
    val: CudaViewMut<'_, T>,
    idx: CudaViewMut<'_, i32>,
    x: CudaView<'_, T>,
    dims: [usize; 3],
) -> Result<()> {
    let [outer, len, inner] = dims;
    if len == 0 {
        return Err(Error::invalid("cuda max_axis: an empty axis"));
    }
    to_i32("max_axis", "len", len)?;
    check_len("max_axis", "x", x.len(), outer * len * inner)?;
    check_len("max_axis", "val", val.len(), outer * inner)?;
    check_len("max_axis", "idx", idx.len(), outer * inner)?;
    if outer * inner == 0 {
        return Ok(());
    }
    let cfg = LaunchCfg::elementwise(outer * inner, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe {
        raw::max_axis(
            dev,
            cfg,
            val,
            idx,
            x,
            outer as i64,
            len as i64,
            inner as i64,
        )
    }
}

/// `gx [outer, len, inner]` (every element written) `= g[o, i]` at `l = idx[o, i]`, else 0.
pub fn scatter_axis<T: CudaFloat>(
    dev: &CudaDevice,
    gx: CudaViewMut<'_, T>,
    g: CudaView<'_, T>,
    idx: CudaView<'_, i32>,
    dims: [usize; 3],
) -> Result<()> {
    let [outer, len, inner] = dims;
    check_len("scatter_axis", "gx", gx.len(), outer * len * inner)?;
    check_len("scatter_axis", "g", g.len(), outer * inner)?;
    check_len("scatter_axis", "idx", idx.len(), outer * inner)?;
    let n = outer * len * inner;
    if n == 0 {
        return Ok(());
    }
    let cfg = LaunchCfg::elementwise(n, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above; idx values are < len by construction (from max_axis).
    unsafe { raw::scatter_axis(dev, cfg, gx, g, idx, outer as i64, len as i64, inner as i64) }
}

/// The sum of all `x` into `out[0]`, deterministic: chunk sums, then their sum.
pub fn sum_all<T: CudaFloat>(
    dev: &std::sync::Arc<CudaDevice>,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
) -> Result<()> {
    const PER: usize = 8192;
    check_len("sum_all", "out", out.len(), 1)?;
    let n = x.len();
    let launch = |out: CudaViewMut<'_, T>, x: CudaView<'_, T>, n: usize, per: usize| {
        let chunks = n.div_ceil(per).max(1);
        let cfg = LaunchCfg::linear(chunks.min(MAX_GRID_STRIDE_BLOCKS as usize) as u32, 256);
        // SAFETY: out holds ceil(n / per) elements (checked by the callers), x n elements.
        unsafe { raw::sum_partial(dev, cfg, out, x, n as i64, per as i64) }
    };
    if n <= PER {
        if n == 0 {
            return fill_one(dev, out);
        }
        return launch(out, x, n, PER);
    }
    let chunks = n.div_ceil(PER);
    let mut part = dev.alloc::<T>(chunks)?;
    launch(part.view_mut(), x, n, PER)?;
    sum_all(dev, out, part.view())
}

fn fill_one<T: CudaFloat>(dev: &CudaDevice, out: CudaViewMut<'_, T>) -> Result<()> {
    let mut out = out;
    super::elementwise::fill(dev, out.reborrow(), T::ZERO)
}

/// How many elements of `x` are NaN or infinite.
pub fn count_nonfinite<T: CudaFloat>(
    dev: &std::sync::Arc<CudaDevice>,
    x: CudaView<'_, T>,
) -> Result<u64> {
    let mut count = dev.zeros::<u32>(1)?;
    add_nonfinite(dev, count.view_mut(), x)?;
    Ok(u64::from(count.to_host()?[0]))
}

/// Adds the number of NaN or infinite elements of `x` to `count[0]` on the device, without
/// waiting: checking many tensors costs one launch each and a single read-back.
pub fn add_nonfinite<T: CudaFloat>(
    dev: &CudaDevice,
    count: CudaViewMut<'_, u32>,
    x: CudaView<'_, T>,
) -> Result<()> {
    let n = x.len();
    if n == 0 {
        return Ok(());
    }
    check_len("count_nonfinite", "count", count.len(), 1)?;
    let cfg = LaunchCfg::elementwise(n, 4096);
    // SAFETY: x holds n elements, count at least one.
    unsafe { raw::count_nonfinite(dev, cfg, count, x, n as i64) }
}

/// Elements per block of `count_nonfinite_multi` (`NF_CHUNK` in `kernels/reduce.cu`).
const NONFINITE_CHUNK: usize = 16_384;

/// Adds the number of NaN or infinite elements of all of `xs` to `count[0]` in one launch
/// (after a small upload of their addresses), without waiting.
pub fn add_nonfinite_many<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    count: CudaViewMut<'_, u32>,
    xs: &[CudaView<'_, T>],
) -> Result<()> {
    check_len("count_nonfinite", "count", count.len(), 1)?;
    let live: Vec<&CudaView<'_, T>> = xs.iter().filter(|x| !x.is_empty()).collect();
    let (first, grid) = multi_tensor_blocks(
        "count_nonfinite",
        live.iter().map(|x| x.len()),
        NONFINITE_CHUNK,
    )?;
    if live.is_empty() {
        return Ok(());
    }
    let table: Vec<u64> = live
        .iter()
        .zip(first)
        .flat_map(|(x, first)| [x.device_ptr(), x.len() as u64, first])
        .collect();
    let tensors = to_i32("count_nonfinite", "tensor count", live.len())?;
    let table = dev.htod(&table)?;
    // SAFETY: each table entry is the address and length of a view borrowed for this call;
    // the blocks cover exactly each tensor's chunks; count holds one element.
    unsafe {
        raw::count_nonfinite_multi::<T>(
            dev,
            LaunchCfg::linear(grid, 256),
            count,
            table.view(),
            tensors,
        )
    }
}
