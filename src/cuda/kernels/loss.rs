//! Label-smoothed KL loss fused with log_softmax (`kernels/loss.cu`).

use super::{check_len, row_grid, to_i32};
use crate::cuda::{CudaDevice, CudaView, CudaViewMut};
use crate::{Error, Result};

crate::__aoanet_cuda_kernels! { "loss";
    /// Per-row loss and log-sum-exp.
    fn label_smooth_fwd_f32(row_loss: CudaViewMut<'_, f32>, lse_out: Option<CudaViewMut<'_, f32>>, logits: CudaView<'_, f32>,
        targets: CudaView<'_, i32>, weights: Option<CudaView<'_, f32>>, rows: i64, vocab: i32, smoothing: f32);
    /// `dlogits = scale · w · (softmax - q)`.
    fn label_smooth_bwd_f32(dlogits: CudaViewMut<'_, f32>, logits: CudaView<'_, f32>, lse: CudaView<'_, f32>,
        targets: CudaView<'_, i32>, weights: Option<CudaView<'_, f32>>, rows: i64, vocab: i32, smoothing: f32, scale: f32);
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
        label_smooth_fwd_f32(
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

/// `dlogits [rows, vocab]` (overwritten) `= scale · w_r · (softmax - q)`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &CudaDevice,
    dlogits: CudaViewMut<'_, f32>,
    logits: CudaView<'_, f32>,
    lse: CudaView<'_, f32>,
    targets: CudaView<'_, i32>,
    weights: Option<CudaView<'_, f32>>,
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
    if rows == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked above.
    unsafe {
        label_smooth_bwd_f32(
            dev,
            row_grid(rows, 256),
            dlogits,
            logits,
            lse,
            targets,
            weights,
            rows as i64,
            v,
            smoothing,
            scale,
        )
    }
}
