//! The reference LayerNorm, unbiased std with eps added to the std (`kernels/layernorm.cu`).

use super::{check_len, reduce, row_grid, to_i32};
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

crate::__aoanet_cuda_kernels! { "layernorm";
    /// Forward; `mean_out`/`std_out` per row for backward (may be null).
    fn layernorm_fwd_f32(y: CudaViewMut<'_, f32>, mean_out: Option<CudaViewMut<'_, f32>>, std_out: Option<CudaViewMut<'_, f32>>,
        x: CudaView<'_, f32>, gamma: CudaView<'_, f32>, beta: CudaView<'_, f32>, rows: i64, cols: i32, eps: f32);
    /// Input gradient (overwritten).
    fn layernorm_bwd_f32(dx: CudaViewMut<'_, f32>, dy: CudaView<'_, f32>, x: CudaView<'_, f32>, gamma: CudaView<'_, f32>,
        mean: CudaView<'_, f32>, stdv: CudaView<'_, f32>, rows: i64, cols: i32, eps: f32);
    /// Per-chunk partial parameter gradients `[chunks, cols]`.
    fn layernorm_bwd_params_f32(dgamma_part: CudaViewMut<'_, f32>, dbeta_part: CudaViewMut<'_, f32>, dy: CudaView<'_, f32>,
        x: CudaView<'_, f32>, mean: CudaView<'_, f32>, stdv: CudaView<'_, f32>, rows: i64, cols: i32, rows_per_chunk: i64, eps: f32);
}

/// The reference's epsilon (added to the std).
pub const EPS: f32 = 1e-6;

fn check_cols(cols: usize) -> Result<i32> {
    if cols < 2 {
        return Err(Error::invalid(format!(
            "cuda layernorm: {cols} columns; the unbiased std needs at least 2"
        )));
    }
    to_i32("layernorm", "cols", cols)
}

/// Normalises each row of `x [rows, cols]`; saves per-row mean and std when given.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    dev: &CudaDevice,
    y: CudaViewMut<'_, f32>,
    saved: Option<(CudaViewMut<'_, f32>, CudaViewMut<'_, f32>)>,
    x: CudaView<'_, f32>,
    gamma: CudaView<'_, f32>,
    beta: CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    let c = check_cols(cols)?;
    check_len("layernorm", "x", x.len(), rows * cols)?;
    check_len("layernorm", "y", y.len(), rows * cols)?;
    check_len("layernorm", "gamma", gamma.len(), cols)?;
    check_len("layernorm", "beta", beta.len(), cols)?;
    let (mean, std) = match saved {
        Some((m, s)) => {
            check_len("layernorm", "mean", m.len(), rows)?;
            check_len("layernorm", "std", s.len(), rows)?;
            (Some(m), Some(s))
        }
        None => (None, None),
    };
    if rows == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked above; any block size that is a multiple of 32.
    unsafe {
        layernorm_fwd_f32(
            dev,
            row_grid(rows, 256),
            y,
            mean,
            std,
            x,
            gamma,
            beta,
            rows as i64,
            c,
            eps,
        )
    }
}

/// Gradients: `dx` overwritten; `dgamma`, `dbeta` ACCUMULATED (+=).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &std::sync::Arc<CudaDevice>,
    dx: CudaViewMut<'_, f32>,
    dgamma: CudaViewMut<'_, f32>,
    dbeta: CudaViewMut<'_, f32>,
    dy: CudaView<'_, f32>,
    x: CudaView<'_, f32>,
    gamma: CudaView<'_, f32>,
    mean: CudaView<'_, f32>,
    std: CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<()> {
    let c = check_cols(cols)?;
    for (what, len) in [("dy", dy.len()), ("x", x.len()), ("dx", dx.len())] {
        check_len("layernorm backward", what, len, rows * cols)?;
    }
    for (what, len) in [
        ("gamma", gamma.len()),
        ("dgamma", dgamma.len()),
        ("dbeta", dbeta.len()),
    ] {
        check_len("layernorm backward", what, len, cols)?;
    }
    check_len("layernorm backward", "mean", mean.len(), rows)?;
    check_len("layernorm backward", "std", std.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked above.
    unsafe {
        layernorm_bwd_f32(
            dev,
            row_grid(rows, 256),
            dx,
            dy,
            x,
            gamma,
            mean,
            std,
            rows as i64,
            c,
            eps,
        )?;
    }
    // Parameter gradients: partial sums over chunks of rows, then a deterministic column sum.
    let per_chunk = 64usize;
    let chunks = rows.div_ceil(per_chunk);
    let mut gp = dev.alloc::<f32>(chunks * cols)?;
    let mut bp = dev.alloc::<f32>(chunks * cols)?;
    let cfg = LaunchCfg {
        grid: (cols.div_ceil(128) as u32, chunks as u32, 1),
        block: (128, 1, 1),
        smem: 0,
    };
    if chunks > 65535 {
        return Err(Error::invalid(format!(
            "cuda layernorm backward: {rows} rows is too many"
        )));
    }
    // SAFETY: the partial buffers hold chunks·cols elements; the grid covers exactly the
    // columns (guarded in the kernel) and the chunks.
    unsafe {
        layernorm_bwd_params_f32(
            dev,
            cfg,
            gp.view_mut(),
            bp.view_mut(),
            dy,
            x,
            mean,
            std,
            rows as i64,
            c,
            per_chunk as i64,
            eps,
        )?;
    }
    reduce::sum_cols(dev, dgamma, gp.view(), chunks, cols, true)?;
    reduce::sum_cols(dev, dbeta, bp.view(), chunks, cols, true)
}
