//! Label-smoothed KL loss fused with log_softmax (`kernels/loss.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, row_grid, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches.
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_kernels! { "loss";
        /// Per-row loss and log-sum-exp.
        fn label_smooth_fwd_f32(row_loss: CudaViewMut<'_, f32>, lse_out: Option<CudaViewMut<'_, f32>>, logits: CudaView<'_, f32>,
            targets: CudaView<'_, i32>, weights: Option<CudaView<'_, f32>>, rows: i64, vocab: i32, smoothing: f32);
        /// `dlogits = upstream · scale · w · (softmax - q)`.
        fn label_smooth_bwd_f32(dlogits: CudaViewMut<'_, f32>, logits: CudaView<'_, f32>, lse: CudaView<'_, f32>,
            targets: CudaView<'_, i32>, weights: Option<CudaView<'_, f32>>, upstream: Option<CudaView<'_, f32>>,
            rows: i64, vocab: i32, smoothing: f32, scale: f32);
    }

    crate::__aoanet_cuda_float_kernels! { "loss";
        /// `smoothed_kl_fwd_f32`, `smoothed_kl_fwd_f64`: per-row weighted KL from
        /// log-probabilities, in f64.
        fn smoothed_kl_fwd<T>(row_loss: CudaViewMut<'_, f64>, lp: CudaView<'_, T>, targets: CudaView<'_, i32>,
            weights: CudaView<'_, f64>, rows: i64, classes: i32, q_y: f64, q_other: f64, entropy_term: f64);
        /// `smoothed_kl_bwd_f32`, `smoothed_kl_bwd_f64`: `grad[r, k] = upstream · scale · w_r · q_k`.
        fn smoothed_kl_bwd<T>(grad: CudaViewMut<'_, T>, targets: CudaView<'_, i32>, weights: CudaView<'_, f64>,
            upstream: Option<CudaView<'_, T>>, rows: i64, classes: i32, scale: f64, q_y: f64, q_other: f64);
    }
}

pub use raw::{FLOAT_SIGNATURES, SIGNATURES};

/// The smoothed target distribution of a row: `q_y` at the target, `q_other` elsewhere, and
/// the constant `Σ_k q_k log q_k` (see `train::label_smoothing_loss`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothedTargets {
    /// Probability of the target class.
    pub q_y: f64,
    /// Probability of every other class (0 for the plain cross-entropy).
    pub q_other: f64,
    /// `Σ_k q_k log q_k`.
    pub entropy_term: f64,
}

/// `row_loss[r] = w_r · Σ_k q_k (log q_k − lp[r, k])` (f64; 0 where `w_r = 0`) for
/// log-probabilities `lp [rows, classes]`, targets below `classes` and weights `[rows]`.
pub fn smoothed_kl_forward<T: CudaFloat>(
    dev: &CudaDevice,
    row_loss: CudaViewMut<'_, f64>,
    lp: CudaView<'_, T>,
    targets: CudaView<'_, i32>,
    weights: CudaView<'_, f64>,
    classes: usize,
    q: SmoothedTargets,
) -> Result<()> {
    let rows = targets.len();
    check_len("smoothed_kl", "lp", lp.len(), rows * classes)?;
    check_len("smoothed_kl", "weights", weights.len(), rows)?;
    check_len("smoothed_kl", "row_loss", row_loss.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    let c = to_i32("smoothed_kl", "classes", classes)?;
    // SAFETY: sizes checked; the caller guarantees targets < classes.
    unsafe {
        raw::smoothed_kl_fwd(
            dev,
            row_grid(rows, 256),
            row_loss,
            lp,
            targets,
            weights,
            rows as i64,
            c,
            q.q_y,
            q.q_other,
            q.entropy_term,
        )
    }
}

/// `grad [rows, classes]` (every element written) `= upstream · scale · w_r · q_k`, with the
/// upstream gradient (one element) read on the device (`None`: 1).
#[allow(clippy::too_many_arguments)]
pub fn smoothed_kl_backward<T: CudaFloat>(
    dev: &CudaDevice,
    grad: CudaViewMut<'_, T>,
    targets: CudaView<'_, i32>,
    weights: CudaView<'_, f64>,
    upstream: Option<CudaView<'_, T>>,
    classes: usize,
    scale: f64,
    q: SmoothedTargets,
) -> Result<()> {
    let rows = targets.len();
    check_len("smoothed_kl backward", "grad", grad.len(), rows * classes)?;
    check_len("smoothed_kl backward", "weights", weights.len(), rows)?;
    if let Some(u) = &upstream {
        check_len("smoothed_kl backward", "upstream", u.len(), 1)?;
    }
    if rows * classes == 0 {
        return Ok(());
    }
    let c = to_i32("smoothed_kl backward", "classes", classes)?;
    let cfg = LaunchCfg::elementwise(rows * classes, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked; the caller guarantees targets < classes.
    unsafe {
        raw::smoothed_kl_bwd(
            dev,
            cfg,
            grad,
            targets,
            weights,
            upstream,
            rows as i64,
            c,
            scale,
            q.q_y,
            q.q_other,
        )
    }
}

fn check(
    rows: usize,
    vocab: usize,
    smoothing: f32,
    logits: usize,
    targets: usize,
    weights: Option<usize>,
) -> Result<i32> {
    if !(0.0..1.0).contains(&smoothing) {
        return Err(Error::invalid(format!(
            "cuda label smoothing {smoothing} is not in [0, 1)"
        )));
    }
    check_len("label_smooth", "logits", logits, rows * vocab)?;
    check_len("label_smooth", "targets", targets, rows)?;
    if let Some(w) = weights {
        check_len("label_smooth", "weights", w, rows)?;
    }
    to_i32("label_smooth", "vocab", vocab)
}

/// Per-row weighted KL loss `row_loss [rows]` of logits `[rows, vocab]` against the smoothed
/// targets; saves the log-sum-exp `lse [rows]` for backward when given.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    dev: &CudaDevice,
    row_loss: CudaViewMut<'_, f32>,
    lse: Option<CudaViewMut<'_, f32>>,
    logits: CudaView<'_, f32>,
    targets: CudaView<'_, i32>,
    weights: Option<CudaView<'_, f32>>,
    rows: usize,
    vocab: usize,
    smoothing: f32,
) -> Result<()> {
    let v = check(
        rows,
        vocab,
        smoothing,
        logits.len(),
        targets.len(),
        weights.map(|w| w.len()),
    )?;
    check_len("label_smooth", "row_loss", row_loss.len(), rows)?;
    if let Some(l) = &lse {
        check_len("label_smooth", "lse", l.len(), rows)?;
    }
    if rows == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked above.
    unsafe {
        raw::label_smooth_fwd_f32(
            dev,
            row_grid(rows, 256),
            row_loss,
            lse,
            logits,
            targets,
            weights,
            rows as i64,
            v,
            smoothing,
        )
    }
}

/// `dlogits [rows, vocab]` (overwritten) `= upstream · scale · w_r · (softmax - q)`, with the
/// upstream gradient (one element) read on the device (`None`: 1).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &CudaDevice,
    dlogits: CudaViewMut<'_, f32>,
    logits: CudaView<'_, f32>,
    lse: CudaView<'_, f32>,
    targets: CudaView<'_, i32>,
    weights: Option<CudaView<'_, f32>>,
    upstream: Option<CudaView<'_, f32>>,
    rows: usize,
    vocab: usize,
    smoothing: f32,
    scale: f32,
) -> Result<()> {
    let v = check(
        rows,
        vocab,
        smoothing,
        logits.len(),
        targets.len(),
        weights.map(|w| w.len()),
    )?;
    check_len(
        "label_smooth backward",
        "dlogits",
        dlogits.len(),
        rows * vocab,
    )?;
    check_len("label_smooth backward", "lse", lse.len(), rows)?;
    if let Some(u) = &upstream {
        check_len("label_smooth backward", "upstream", u.len(), 1)?;
    }
    if rows == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked above.
    unsafe {
        raw::label_smooth_bwd_f32(
            dev,
            row_grid(rows, 256),
            dlogits,
            logits,
            lse,
            targets,
            weights,
            upstream,
            rows as i64,
            v,
            smoothing,
            scale,
        )
    }
}
