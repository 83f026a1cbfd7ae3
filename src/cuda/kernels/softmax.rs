//! Row softmax / log_softmax (`kernels/softmax.cu`).

use super::{check_len, row_grid, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};

crate::__aoanet_cuda_kernels! { "softmax";
    /// `y = softmax(x)` (or log_softmax when `log_out != 0`) over rows of `cols`.
    fn softmax_fwd_f32(y: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, rows: i64, cols: i32, log_out: i32);
    /// Backward of [`softmax_fwd_f32`] from its output `y` and `dy`.
    fn softmax_bwd_f32(dx: CudaViewMut<'_, f32>, y: CudaView<'_, f32>, dy: CudaView<'_, f32>, rows: i64, cols: i32, log_out: i32);
}

fn cfg(rows: usize, cols: usize) -> LaunchCfg {
    row_grid(rows, if cols <= 256 { 128 } else { 256 })
}

/// `y = softmax(x)` or `log_softmax(x)` over the last axis of a `[rows, cols]` matrix.
pub fn forward(
    dev: &CudaDevice,
    y: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    log: bool,
) -> Result<()> {
    check_len("softmax", "x", x.len(), rows * cols)?;
    check_len("softmax", "y", y.len(), rows * cols)?;
    if rows * cols == 0 {
        return Ok(());
    }
    let c = to_i32("softmax", "cols", cols)?;
    // SAFETY: x and y hold rows·cols elements; any block size that is a multiple of 32 works.
    unsafe { softmax_fwd_f32(dev, cfg(rows, cols), y, x, rows as i64, c, i32::from(log)) }
}

/// `dx` (overwritten) from the forward output `y` and the gradient `dy`.
pub fn backward(
    dev: &CudaDevice,
    dx: CudaViewMut<'_, f32>,
    y: CudaView<'_, f32>,
    dy: CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    log: bool,
) -> Result<()> {
    for (what, len) in [("y", y.len()), ("dy", dy.len()), ("dx", dx.len())] {
        check_len("softmax backward", what, len, rows * cols)?;
    }
    if rows * cols == 0 {
        return Ok(());
    }
    let c = to_i32("softmax backward", "cols", cols)?;
    // SAFETY: all three hold rows·cols elements.
    unsafe {
        softmax_bwd_f32(
            dev,
            cfg(rows, cols),
            dx,
            y,
            dy,
            rows as i64,
            c,
            i32::from(log),
        )
    }
}
