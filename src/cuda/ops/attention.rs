//! Fused multi-head attention as a differentiable op on the device (`kernels/attention.cu`
//! through [`crate::cuda::kernels::attention`]): the forward writes the output and the per-row
//! log-sum-exp, the backward recomputes the probabilities from them, so no `[B, H, Nq, Nk]`
//! tensor is stored between the passes. `nn::MultiHeadAoa` calls it when its inputs are f32
//! on a CUDA device and the head size is one the kernels take; elsewhere it composes the same
//! computation from matmul/masked_fill/softmax/dropout, which the tests compare against.
//!
//! Operands: queries `[B, Nq, H·d]`, keys and values `[B, Nk, H·d]` (heads packed in the last
//! axis, as the projections write them); the output has the queries' shape. Dropout on the
//! probabilities uses the Philox words of the `[B, H, Nq, Nk]` tensor the composition would
//! drop, so both paths draw the same mask.

use std::sync::Arc;

use super::{device_of, with_dense};
use crate::cuda::kernels::attention::{self as k, Attention, AttnGrads, AttnInputs};
use crate::cuda::{CudaBuffer, CudaDevice, CudaFloat};
use crate::rng::PhiloxState;
use crate::tensor::{DType, Storage, Tensor};
use crate::{Error, Result};

/// One fused attention call: the head count, the key mask and the dropout.
#[derive(Clone)]
pub(crate) struct FusedAttention {
    /// Heads `H` (the last axis is `H·d`).
    pub heads: usize,
    /// `[B, Nk]`, 1 = attend; `None` attends to every key.
    pub mask: Option<Arc<CudaBuffer<u8>>>,
    /// Drop probability and the Philox position of element 0 of the probabilities.
    pub dropout: Option<(f32, PhiloxState)>,
    /// Number the dropout words query-major ([`Attention::dropout_query_major`]).
    pub dropout_query_major: bool,
}

impl FusedAttention {
    /// The kernels' problem description for dense `q [B, Nq, H·d]` and `k [B, Nk, H·d]`.
    fn problem(&self, q: &Tensor, k: &Tensor) -> Result<Attention> {
        let ok = q.rank() == 3
            && k.rank() == 3
            && q.shape()[0] == k.shape()[0]
            && q.shape()[2] == k.shape()[2]
            && self.heads > 0
            && q.shape()[2].is_multiple_of(self.heads);
        if !ok || q.dtype() != DType::F32 || k.dtype() != DType::F32 {
            return Err(Error::shape(
                "fused attention",
                &[q.shape(), k.shape()],
                format!(
                    "f32 queries [B, Nq, H·d] and keys [B, Nk, H·d] with H = {}",
                    self.heads
                ),
            ));
        }
        let (b, nq, w) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        Ok(Attention {
            dropout: self.dropout,
            dropout_query_major: self.dropout_query_major,
            ..Attention::contiguous(b, self.heads, nq, k.shape()[1], w / self.heads)
        })
    }
}

/// A dense f32 tensor of `shape` over `buf`.
fn wrap(buf: CudaBuffer<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_storage(Storage::Cuda(<f32 as CudaFloat>::wrap(buf)), shape)
}

/// Runs `f` on dense views of `q`, `k` and `v` (copies made first where they are not dense).
fn with_qkv<R>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&CudaBuffer<u8>>,
    f: impl FnOnce(AttnInputs<'_>) -> Result<R>,
) -> Result<R> {
    with_dense::<f32, _>(q, "attention", |qv| {
        with_dense::<f32, _>(k, "attention", |kv| {
            with_dense::<f32, _>(v, "attention", |vv| {
                f(AttnInputs {
                    q: qv,
                    k: kv,
                    v: vv,
                    mask: mask.map(CudaBuffer::view),
                })
            })
        })
    })
}

/// `softmax(mask(Q Kᵀ/√d)) V` per head, with dropout on the probabilities, recorded for
/// autograd with the fused backward.
pub(crate) fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spec: FusedAttention,
) -> Result<Tensor> {
    let a = spec.problem(q, k)?;
    if v.shape() != k.shape() || v.dtype() != DType::F32 {
        return Err(Error::shape(
            "fused attention",
            &[k.shape(), v.shape()],
            "values of the keys' shape, f32",
        ));
    }
    let dev = device_of(q)?;
    let training =
        crate::autograd::is_grad_enabled() && [q, k, v].iter().any(|t| t.requires_grad());
    let mut out = dev.alloc::<f32>(q.numel())?;
    let mut lse = if training {
        Some(dev.alloc::<f32>(a.rows())?)
    } else {
        None
    };
    with_qkv(q, k, v, spec.mask.as_deref(), |x| {
        k::forward(
            &dev,
            &a,
            out.view_mut(),
            lse.as_mut().map(CudaBuffer::view_mut),
            x,
        )
    })?;
    let out = wrap(out, q.shape())?;
    let Some(lse) = lse else {
        return Ok(out);
    };
    let saved = (out.detach(), q.clone(), k.clone(), v.clone());
    Ok(out.record("attention", &[q, k, v], move |g| {
        let (out, q, k, v) = saved;
        let [dq, dk, dv] = backward(&dev, &a, g, &out, &lse, [&q, &k, &v], spec.mask.as_deref())?;
        Ok(vec![Some(dq), Some(dk), Some(dv)])
    }))
}

/// `[∂q, ∂k, ∂v]` from the output gradient `g`, the forward's output and log-sum-exp.
fn backward(
    dev: &Arc<CudaDevice>,
    a: &Attention,
    g: &Tensor,
    out: &Tensor,
    lse: &CudaBuffer<f32>,
    [q, k, v]: [&Tensor; 3],
    mask: Option<&CudaBuffer<u8>>,
) -> Result<[Tensor; 3]> {
    let mut dq = dev.alloc::<f32>(q.numel())?;
    let mut dk = dev.alloc::<f32>(k.numel())?;
    let mut dv = dev.alloc::<f32>(v.numel())?;
    with_dense::<f32, _>(g, "attention backward", |gv| {
        with_dense::<f32, _>(out, "attention backward", |ov| {
            with_qkv(q, k, v, mask, |x| {
                let grads = AttnGrads {
                    dq: dq.view_mut(),
                    dk: dk.view_mut(),
                    dv: dv.view_mut(),
                };
                k::backward(dev, a, grads, gv, ov, lse.view(), x)
            })
        })
    })?;
    Ok([
        wrap(dq, q.shape())?,
        wrap(dk, k.shape())?,
        wrap(dv, v.shape())?,
    ])
}

/// `bytes` on `like`'s device (the fused kernels' key mask).
pub(crate) fn upload_bytes(like: &Tensor, bytes: &[u8]) -> Result<Arc<CudaBuffer<u8>>> {
    Ok(Arc::new(device_of(like)?.htod(bytes)?))
}
