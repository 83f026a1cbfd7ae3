//! Row softmax / log_softmax (`kernels/softmax.cu`).

use super::{check_len, row_grid, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};

/// The raw launches (see [`float_kernels!`](crate::cuda::kernels)).
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "softmax";
        /// `softmax_fwd_f32`, `softmax_fwd_f64`: `y = softmax(x)` (or log_softmax when
        /// `log_out != 0`) over rows of `cols`.
        fn softmax_fwd<T>(y: CudaViewMut<'_, T>, x: CudaView<'_, T>, rows: i64, cols: i32, log_out: i32);
        /// `softmax_bwd_f32`, `softmax_bwd_f64`: backward from the output `y` and `dy`.
        fn softmax_bwd<T>(dx: CudaViewMut<'_, T>, y: CudaView<'_, T>, dy: CudaView<'_, T>, rows: i64, cols: i32, log_out: i32);
    }
}

pub use raw::FLOAT_SIGNATURES;

fn cfg(rows: usize, cols: usize) -> LaunchCfg {
    row_grid(rows, if cols <= 256 { 128 } else { 256 })
}

/// `y = softmax(x)` or `log_softmax(x)` over the last axis of a `[rows, cols]` matrix.
pub fn forward<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
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
    unsafe { raw::softmax_fwd(dev, cfg(rows, cols), y, x, rows as i64, c, i32::from(log)) }
}

/// `dx` (overwritten) from the forward output `y` and the gradient `dy`.
pub fn backward<T: CudaFloat>(
    dev: &CudaDevice,
    dx: CudaViewMut<'_, T>,
    y: CudaView<'_, T>,
    dy: CudaView<'_, T>,
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
        raw::softmax_bwd(
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
