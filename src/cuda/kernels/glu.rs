//! GLU over the last axis (`kernels/glu.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};

crate::__aoanet_cuda_kernels! { "glu";
    /// `out = a ⊙ σ(b)` for `x = [a ; b]`.
    fn glu_fwd_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, rows: i64, half: i32);
    /// `dx` (overwritten) from `dy` and `x`.
    fn glu_bwd_f32(dx: CudaViewMut<'_, f32>, dy: CudaView<'_, f32>, x: CudaView<'_, f32>, rows: i64, half: i32);
}

/// `out [rows, half] = x[:, :half] ⊙ σ(x[:, half:])` for `x [rows, 2·half]`.
pub fn forward(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
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
    unsafe { glu_fwd_f32(dev, cfg, out, x, rows as i64, h) }
}

/// `dx [rows, 2·half]` (overwritten) from `dy [rows, half]`.
pub fn backward(
    dev: &CudaDevice,
    dx: CudaViewMut<'_, f32>,
    dy: CudaView<'_, f32>,
    x: CudaView<'_, f32>,
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
    unsafe { glu_bwd_f32(dev, cfg, dx, dy, x, rows as i64, h) }
}
