//! GLU over the last axis (`kernels/glu.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};

/// The raw launches (see [`float_kernels!`](crate::cuda::kernels)).
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "glu";
        /// `glu_fwd_f32`, `glu_fwd_f64`: `out = a ⊙ σ(b)` for `x = [a ; b]`.
        fn glu_fwd<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, rows: i64, half: i32);
        /// `glu_bwd_f32`, `glu_bwd_f64`: `dx` (overwritten) from `dy` and `x`.
        fn glu_bwd<T>(dx: CudaViewMut<'_, T>, dy: CudaView<'_, T>, x: CudaView<'_, T>, rows: i64, half: i32);
    }
}

pub use raw::FLOAT_SIGNATURES;

/// `out [rows, half] = x[:, :half] ⊙ σ(x[:, half:])` for `x [rows, 2·half]`.
pub fn forward<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    rows: usize,
    half: usize,
) -> Result<()> {
    check_len("glu", "x", x.len(), rows * 2 * half)?;
    check_len("glu", "out", out.len(), rows * half)?;
    if rows * half == 0 {
        return Ok(());
    }
    let h = to_i32("glu", "half", half)?;
    let cfg = LaunchCfg::elementwise(rows * half, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe { raw::glu_fwd(dev, cfg, out, x, rows as i64, h) }
}

/// `dx [rows, 2·half]` (overwritten) from `dy [rows, half]`.
pub fn backward<T: CudaFloat>(
    dev: &CudaDevice,
    dx: CudaViewMut<'_, T>,
    dy: CudaView<'_, T>,
    x: CudaView<'_, T>,
    rows: usize,
    half: usize,
) -> Result<()> {
    check_len("glu backward", "x", x.len(), rows * 2 * half)?;
    check_len("glu backward", "dx", dx.len(), rows * 2 * half)?;
    check_len("glu backward", "dy", dy.len(), rows * half)?;
    if rows * half == 0 {
        return Ok(());
    }
    let h = to_i32("glu backward", "half", half)?;
    let cfg = LaunchCfg::elementwise(rows * half, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe { raw::glu_bwd(dev, cfg, dx, dy, x, rows as i64, h) }
}
