//! `train::label_smoothing_loss` and `lm_loss` on the device: the per-row KL from the
//! log-probabilities in one kernel (accumulated in f64, as the CPU does), its deterministic
//! sum, and the gradient in one kernel; the same loss straight from logits
//! (`train::label_smoothing_loss_from_logits`); and the reward loss. No backward reads its
//! upstream gradient on the host: the kernels take it from device memory, so a backward pass
//! never waits for the GPU.

use super::{device_of, output, upload_ids, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::elementwise::{self as ew, Unary};
use crate::cuda::kernels::{loss as k, reduce as red};
use crate::cuda::{CudaBuffer, CudaStorage};
use crate::tensor::{DType, Storage, Tensor};

pub use k::SmoothedTargets;

/// `Σ_r w_r · KL_r / total` as a 0-d tensor in `lp`'s dtype on its device, for
/// log-probabilities `lp` with rows of `classes`, the targets and weights on the device and
/// `total = Σ w` (no graph).
fn smoothed_kl(
    lp: &Tensor,
    t: &CudaBuffer<i32>,
    w: &CudaBuffer<f64>,
    classes: usize,
    q: SmoothedTargets,
    total: f64,
) -> Result<Tensor> {
    let dev = device_of(lp)?;
    let mut row_loss = dev.alloc::<f64>(t.len())?;
    with_cuda_float!(lp.dtype(), "label_smoothing", T => {
        with_dense::<T, _>(lp, "label_smoothing", |lv| {
            k::smoothed_kl_forward(&dev, row_loss.view_mut(), lv, t.view(), w.view(), classes, q)
        })
    })?;
    // Σ rows in f64, then / total, then rounded to the loss dtype, all on the device.
    let mut sum = dev.alloc::<f64>(1)?;
    red::sum_all(&dev, sum.view_mut(), row_loss.view())?;
    let mut mean = dev.alloc::<f64>(1)?;
    ew::unary(&dev, mean.view_mut(), sum.view(), Unary::Scale(1.0 / total))?;
    let loss = Tensor::from_storage(Storage::Cuda(CudaStorage::F64(mean)), &[])?;
    if lp.dtype() == DType::F64 {
        Ok(loss)
    } else {
        super::cast(&loss, lp.dtype())
    }
}

/// The gradient `upstream · scale · w_r · q_k` shaped `shape` (the log-probabilities'), on
/// the device of `upstream` (the loss's 0-d upstream gradient, read there: no wait for it).
#[allow(clippy::too_many_arguments)]
fn smoothed_kl_backward(
    upstream: &Tensor,
    shape: &[usize],
    t: &CudaBuffer<i32>,
    w: &CudaBuffer<f64>,
    classes: usize,
    q: SmoothedTargets,
    scale: f64,
) -> Result<Tensor> {
    let dev = device_of(upstream)?;
    with_cuda_float!(upstream.dtype(), "label_smoothing", T => {
        with_dense::<T, _>(upstream, "label_smoothing", |up| {
            output::<T>(&dev, shape, |o| {
                k::smoothed_kl_backward(&dev, o, t.view(), w.view(), Some(up), classes, scale, q)
            })
        })
    })
}

/// `train::label_smoothing_loss` / `lm_loss` for log-probabilities on a CUDA device, with its
/// backward recorded: `op` names the node; `weights` are the mask values (checked by the
/// caller) and `total` their sum. The targets and weights are uploaded once, for both passes.
pub(crate) fn smoothed_kl_loss(
    op: &'static str,
    lp: &Tensor,
    targets: &[usize],
    weights: Vec<f64>,
    classes: usize,
    q: SmoothedTargets,
    total: f64,
) -> Result<Tensor> {
    let dev = device_of(lp)?;
    let t = upload_ids(&dev, op, targets)?;
    let w = dev.htod(&weights)?;
    let loss = smoothed_kl(lp, &t, &w, classes, q, total)?;
    let shape = lp.shape().to_vec();
    Ok(loss.record(op, &[lp], move |g| {
        Ok(vec![Some(smoothed_kl_backward(
            g,
            &shape,
            &t,
            &w,
            classes,
            q,
            -1.0 / total,
        )?)])
    }))
}

/// `train::label_smoothing_loss` of `log_softmax(logits)` for f32 logits on a CUDA device, in
/// two kernels that never form the log-probabilities: per row the log-sum-exp and the KL
/// (`label_smooth_fwd_f32`), and backward `(softmax − q)·w / total` times the upstream
/// gradient read on the device (`label_smooth_bwd_f32`). `weights` are the mask values
/// (checked by the caller) and `total` their sum. The rows' losses are summed in f32 (the
/// composed path sums them in f64).
pub(crate) fn smoothed_kl_loss_from_logits(
    op: &'static str,
    logits: &Tensor,
    targets: &[usize],
    weights: &[f64],
    smoothing: f64,
    total: f64,
) -> Result<Tensor> {
    let dev = device_of(logits)?;
    let (rows, vocab) = (targets.len(), *logits.shape().last().unwrap_or(&0));
    let t = upload_ids(&dev, op, targets)?;
    let w32: Vec<f32> = weights.iter().map(|&v| v as f32).collect();
    let w = dev.htod(&w32)?;
    let mut row_loss = dev.alloc::<f32>(rows)?;
    let mut lse = dev.alloc::<f32>(rows)?;
    with_dense::<f32, _>(logits, op, |lv| {
        k::forward(
            &dev,
            row_loss.view_mut(),
            Some(lse.view_mut()),
            lv,
            t.view(),
            Some(w.view()),
            rows,
            vocab,
            smoothing as f32,
        )
    })?;
    let mut sum = dev.alloc::<f32>(1)?;
    red::sum_all(&dev, sum.view_mut(), row_loss.view())?;
    let loss = output::<f32>(&dev, &[], |o| {
        ew::unary(&dev, o, sum.view(), Unary::Scale(1.0 / total))
    })?;
    let (x, shape) = (logits.clone(), logits.shape().to_vec());
    Ok(loss.record(op, &[logits], move |g| {
        let grad = with_dense::<f32, _>(&x, op, |lv| {
            with_dense::<f32, _>(g, op, |up| {
                output::<f32>(&dev, &shape, |o| {
                    k::backward(
                        &dev,
                        o,
                        lv,
                        lse.view(),
                        t.view(),
                        Some(w.view()),
                        Some(up),
                        rows,
                        vocab,
                        smoothing as f32,
                        (1.0 / total) as f32,
                    )
                })
            })
        })?;
        Ok(vec![Some(grad)])
    }))
}

/// `train::reward_loss` for log-probabilities `[rows, steps]` on a CUDA device: `Σ lp·coef /
/// total` formed in f64 on the device (as the CPU accumulates in f64), with its backward
/// `coef · upstream / total` recorded. `coef` is `−reward·mask` per token (host, f64).
pub(crate) fn reward_loss(lp: &Tensor, coef: Vec<f64>, total: f64) -> Result<Tensor> {
    let (dtype, device, shape) = (lp.dtype(), lp.device(), lp.shape().to_vec());
    let c = Tensor::from_vec(coef, &shape)?.to_device(device)?;
    let loss = crate::autograd::no_grad(|| {
        lp.detach()
            .to_dtype(DType::F64)?
            .mul(&c)?
            .sum_all()?
            .mul_scalar(1.0 / total)?
            .to_dtype(dtype)
    })?;
    // The upstream gradient multiplies on the device (no wait to read it); `c / total` first,
    // which for the usual upstream 1 gives the bits of `c · (1 / total)`.
    let c = c.mul_scalar(1.0 / total)?;
    Ok(loss.record("reward_loss", &[lp], move |g| {
        Ok(vec![Some(
            c.mul(&g.to_dtype(DType::F64)?)?.to_dtype(dtype)?,
        )])
    }))
}
