//! Reductions (`kernels/reduce.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, row_grid, to_i32};
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

crate::__aoanet_cuda_kernels! { "reduce";
    /// `out[r] (=|+=) op_j x[r, j]`.
    fn reduce_rows_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, rows: i64, cols: i32, op: i32, accumulate: i32);
    /// `out[o, i] = op_l x[o, l, i]`.
    fn reduce_axis_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, outer: i64, len: i64, inner: i64, op: i32);
    /// Column sums per chunk of rows.
    fn sum_cols_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, rows: i64, cols: i32, rows_per_chunk: i64, accumulate: i32);
    /// Row argmax and max.
    fn argmax_rows_f32(idx: CudaViewMut<'_, i32>, val: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, rows: i64, cols: i32);
}

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
pub fn rows(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
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
        reduce_rows_f32(
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
pub fn axis(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
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
        reduce_axis_f32(
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

/// `out[j] (=|+=) Σ_r x[r, j]` for `x [rows, cols]` (bias gradients). Deterministic: chunks of
/// 256 rows are summed into a workspace, repeatedly, until one chunk is left.
pub fn sum_cols(
    dev: &std::sync::Arc<CudaDevice>,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    accumulate: bool,
) -> Result<()> {
    const PER_CHUNK: usize = 256;
    check_len("sum_cols", "x", x.len(), rows * cols)?;
    check_len("sum_cols", "out", out.len(), cols)?;
    if cols == 0 {
        return Ok(());
    }
    let c = to_i32("sum_cols", "cols", cols)?;
    let launch =
        |out: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, rows: usize, chunks: usize, acc: bool| {
            if chunks > 65535 {
                return Err(Error::invalid(format!(
                    "cuda sum_cols: {rows} rows is too many"
                )));
            }
            let cfg = LaunchCfg {
                grid: (cols.div_ceil(128) as u32, chunks as u32, 1),
                block: (128, 1, 1),
                smem: 0,
            };
            // SAFETY: out holds chunks·cols elements (checked by the callers below), x rows·cols.
            unsafe {
                sum_cols_f32(
                    dev,
                    cfg,
                    out,
                    x,
                    rows as i64,
                    c,
                    PER_CHUNK as i64,
                    i32::from(acc),
                )
            }
        };
    if rows <= PER_CHUNK {
        return launch(out, x, rows, 1, accumulate);
    }
    let chunks = rows.div_ceil(PER_CHUNK);
    let mut part = dev.alloc::<f32>(chunks * cols)?;
    launch(part.view_mut(), x, rows, chunks, false)?;
    sum_cols(dev, out, part.view(), chunks, cols, accumulate)
}

/// Per row of `x [rows, cols]`: the index of the maximum (first on ties) and the maximum.
pub fn argmax(
    dev: &CudaDevice,
    idx: CudaViewMut<'_, i32>,
    val: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
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
    unsafe { argmax_rows_f32(dev, row_grid(rows, 256), idx, val, x, rows as i64, c) }
}
