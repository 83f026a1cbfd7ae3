//! Adam's fused step on the device (`train::Adam::step` for parameters on a CUDA device).

use super::{device_of, with_buffer_mut, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::adam::{self as k, AdamStep};
use crate::tensor::Tensor;

/// Adam's settings and step count for one update (the CPU optimiser's, passed through).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// L2 penalty (0: none).
    pub weight_decay: f64,
    /// Element-wise gradient clamp, if any.
    pub grad_clip: Option<f64>,
    /// This parameter's step count after incrementing (from 1).
    pub step: u64,
}

/// One step on `p` (and its moments `m`, `v`, all contiguous on one device) from the gradient
/// `g`, in place.
pub(crate) fn adam_update(
    p: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    h: AdamHyper,
) -> Result<()> {
    let dev = device_of(p)?;
    let step = AdamStep {
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        t: h.step,
        clip: h.grad_clip,
        weight_decay: h.weight_decay,
    };
    let range = |t: &Tensor| {
        t.layout()
            .contiguous_range()
            .ok_or_else(|| crate::Error::invalid("Adam: a parameter or moment is not contiguous"))
    };
    let (rp, rm, rv) = (range(p)?, range(m)?, range(v)?);
    with_cuda_float!(p.dtype(), "Adam", T => {
        with_dense::<T, _>(g, "Adam", |gv| {
            with_buffer_mut::<T, _>(p, "Adam", |pb| {
                with_buffer_mut::<T, _>(m, "Adam", |mb| {
                    with_buffer_mut::<T, _>(v, "Adam", |vb| {
                        k::step(&dev, pb.slice_mut(rp)?, mb.slice_mut(rm)?, vb.slice_mut(rv)?, gv, step)
                    })
                })
            })
        })
    })
}
