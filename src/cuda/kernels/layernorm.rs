//! The reference LayerNorm, unbiased std with eps added to the std (`kernels/layernorm.cu`).

use super::{check_len, row_grid, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches (see [`float_kernels!`](crate::cuda::kernels)).
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "layernorm";
        /// `layernorm_fwd_f32`, `layernorm_fwd_f64`: forward; `mean_out`/`std_out` per row for
        /// backward (may be null).
        fn layernorm_fwd<T>(y: CudaViewMut<'_, T>, mean_out: Option<CudaViewMut<'_, T>>, std_out: Option<CudaViewMut<'_, T>>,
            x: CudaView<'_, T>, gamma: CudaView<'_, T>, beta: CudaView<'_, T>, rows: i64, cols: i32, eps: T);
        /// `layernorm_bwd_f32`, `layernorm_bwd_f64`: input gradient (overwritten).
        fn layernorm_bwd<T>(dx: CudaViewMut<'_, T>, dy: CudaView<'_, T>, x: CudaView<'_, T>, gamma: CudaView<'_, T>,
            mean: CudaView<'_, T>, stdv: CudaView<'_, T>, rows: i64, cols: i32, eps: T);
        /// `layernorm_bwd_params_f32`, `layernorm_bwd_params_f64`: the parameter gradients from
        /// per-chunk partial sums: one chunk straight into `dgamma_part`/`dbeta_part` (stored or
        /// added), more through `[chunks, cols]` partials summed by each column tile's last
        /// block into `dgamma`/`dbeta` (with `counters`, one per column tile, zero before and
        /// after).
        fn layernorm_bwd_params<T>(dgamma_part: CudaViewMut<'_, T>, dbeta_part: CudaViewMut<'_, T>, dy: CudaView<'_, T>,
            x: CudaView<'_, T>, mean: CudaView<'_, T>, stdv: CudaView<'_, T>, rows: i64, cols: i32, rows_per_chunk: i64, eps: T,
            accumulate: i32, dgamma: Option<CudaViewMut<'_, T>>, dbeta: Option<CudaViewMut<'_, T>>,
            counters: Option<CudaViewMut<'_, i32>>);
    }
}

pub use raw::FLOAT_SIGNATURES;

/// The reference's epsilon (added to the std).
pub const EPS: f64 = 1e-6;

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
pub fn forward<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    saved: Option<(CudaViewMut<'_, T>, CudaViewMut<'_, T>)>,
    x: CudaView<'_, T>,
    gamma: CudaView<'_, T>,
    beta: CudaView<'_, T>,
    rows: usize,
    cols: usize,
    eps: f64,
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
        raw::layernorm_fwd(
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
            T::from_f64(eps),
        )
    }
}

/// How [`backward`] writes the parameter gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamGrads {
    /// Add to what `dgamma` and `dbeta` hold (gradient accumulation).
    Accumulate,
    /// Overwrite them (they may hold anything: a fresh allocation needs no zeroing).
    Overwrite,
}

/// Rows per partial sum of the parameter gradients: at most this many rows (the decoder's 50
/// queries) are summed straight into them; more go through partial sums that the same launch
/// adds up (its last block per column tile).
pub const ROWS_PER_CHUNK: usize = 64;

/// Gradients: `dx` overwritten; `dgamma`, `dbeta` as `params` says.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: CudaFloat>(
    dev: &std::sync::Arc<CudaDevice>,
    params: ParamGrads,
    dx: CudaViewMut<'_, T>,
    dgamma: CudaViewMut<'_, T>,
    dbeta: CudaViewMut<'_, T>,
    dy: CudaView<'_, T>,
    x: CudaView<'_, T>,
    gamma: CudaView<'_, T>,
    mean: CudaView<'_, T>,
    std: CudaView<'_, T>,
    rows: usize,
    cols: usize,
    eps: f64,
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
    let accumulate = params == ParamGrads::Accumulate;
    if rows == 0 {
        if !accumulate {
            super::elementwise::fill(dev, dgamma, T::ZERO)?;
            super::elementwise::fill(dev, dbeta, T::ZERO)?;
        }
        return Ok(());
    }
    // SAFETY: sizes checked above.
    unsafe {
        raw::layernorm_bwd(
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
            T::from_f64(eps),
        )?;
    }
    // Parameter gradients: partial sums over chunks of rows; one chunk is summed straight into
    // the gradients, more are summed in chunk order by each column tile's last block.
    let chunks = rows.div_ceil(ROWS_PER_CHUNK);
    let col_tiles = cols.div_ceil(128);
    let cfg = LaunchCfg {
        grid: (col_tiles as u32, chunks as u32, 1),
        block: (128, 1, 1),
        smem: 0,
    };
    if chunks > 65535 {
        return Err(Error::invalid(format!(
            "cuda layernorm backward: {rows} rows is too many"
        )));
    }
    // One chunk: its sums go straight into the gradients. More: into partials, which the
    // last block of each column tile sums into the gradients (with a zero counter per tile,
    // lent for this launch and left zero by it).
    let (mut gp, mut bp, mut counters);
    let (parts, finish) = if chunks == 1 {
        ((dgamma, dbeta), (None, None, None))
    } else {
        gp = dev.alloc::<T>(chunks * cols)?;
        bp = dev.alloc::<T>(chunks * cols)?;
        counters = super::gemm::TileCounters::lend(dev, col_tiles)?;
        (
            (gp.view_mut(), bp.view_mut()),
            (
                Some(dgamma),
                Some(dbeta),
                Some(counters.view_mut(col_tiles)?),
            ),
        )
    };
    // SAFETY: the parts hold chunks · cols elements (the gradients themselves for one chunk),
    // the gradients cols (checked above), the counters one per column tile; the grid covers
    // the columns (guarded in the kernel) and the chunks.
    unsafe {
        raw::layernorm_bwd_params(
            dev,
            cfg,
            parts.0,
            parts.1,
            dy,
            x,
            mean,
            std,
            rows as i64,
            c,
            ROWS_PER_CHUNK as i64,
            T::from_f64(eps),
            i32::from(accumulate),
            finish.0,
            finish.1,
            finish.2,
        )
    }
}
