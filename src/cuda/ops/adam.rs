//! Adam's fused step on the device (`train::Adam::step` for parameters on a CUDA device): per
//! parameter ([`adam_update`]) or, for a whole model, all parameters in one launch
//! ([`adam_update_many`]).

use std::sync::RwLockWriteGuard;

use super::{
    ReadLocks, dense, device_of, not_on_cuda, with_buffer_mut, with_cuda_float, with_dense,
};
use crate::cuda::kernels::adam::{self as k, AdamStep, AdamTensor};
use crate::cuda::{CudaBuffer, CudaFloat};
use crate::tensor::{Storage, Tensor};
use crate::{Error, Result};

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

impl AdamHyper {
    fn kernel_step(&self) -> AdamStep {
        AdamStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            t: self.step,
            clip: self.grad_clip,
            weight_decay: self.weight_decay,
        }
    }
}

/// The storage range of a contiguous parameter or moment.
fn dense_range(t: &Tensor) -> Result<std::ops::Range<usize>> {
    t.layout()
        .contiguous_range()
        .ok_or_else(|| Error::invalid("Adam: a parameter or moment is not contiguous"))
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
    let step = h.kernel_step();
    let (rp, rm, rv) = (dense_range(p)?, dense_range(m)?, dense_range(v)?);
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

/// One parameter of [`adam_update_many`].
pub(crate) struct AdamItem<'a> {
    /// The parameter (contiguous), updated in place.
    pub p: &'a Tensor,
    /// Its first moment (contiguous), updated in place.
    pub m: &'a Tensor,
    /// Its second moment (contiguous), updated in place.
    pub v: &'a Tensor,
    /// Its gradient.
    pub g: &'a Tensor,
    /// Its step count after incrementing (from 1).
    pub step: u64,
}

/// One step over every item in one kernel launch: for each, the arithmetic of
/// [`adam_update`] with its own step count (`h.step` is not used). All items are on one
/// device, of one dtype, and no two share storage (each buffer is locked once).
pub(crate) fn adam_update_many(items: &[AdamItem<'_>], h: AdamHyper) -> Result<()> {
    let Some(first) = items.first() else {
        return Ok(());
    };
    let dev = device_of(first.p)?;
    let dtype = first.p.dtype();
    for it in items {
        if it.p.device() != first.p.device() || it.p.dtype() != dtype {
            return Err(Error::invalid(format!(
                "Adam: one launch takes parameters of one device and dtype ({} {} and {} {})",
                first.p.device(),
                dtype,
                it.p.device(),
                it.p.dtype()
            )));
        }
    }
    // Each storage is locked once below: a shared one would deadlock, so refuse it first.
    let mut seen = std::collections::HashSet::new();
    for it in items {
        for t in [it.p, it.m, it.v, it.g] {
            if !seen.insert(t.storage_key().0) {
                return Err(Error::invalid(
                    "Adam: two parameters, moments or gradients of one launch share storage",
                ));
            }
        }
    }
    let grads: Vec<Tensor> = items.iter().map(|it| dense(it.g)).collect::<Result<_>>()?;
    let mut ranges = Vec::with_capacity(items.len());
    for it in items {
        ranges.push([dense_range(it.p)?, dense_range(it.m)?, dense_range(it.v)?]);
    }
    with_cuda_float!(dtype, "Adam", T => {
        // Every buffer stays locked until the launch is queued: parameters and moments for
        // writing (which bumps their versions, as an in-place update must), gradients for
        // reading.
        let mut ps = items.iter().map(|it| lock_cuda(it.p)).collect::<Result<Vec<_>>>()?;
        let mut ms = items.iter().map(|it| lock_cuda(it.m)).collect::<Result<Vec<_>>>()?;
        let mut vs = items.iter().map(|it| lock_cuda(it.v)).collect::<Result<Vec<_>>>()?;
        let gs = ReadLocks::new(&grads);
        let mut tensors = Vec::with_capacity(items.len());
        for (i, ((p, m), v)) in ps.iter_mut().zip(ms.iter_mut()).zip(vs.iter_mut()).enumerate() {
            let [rp, rm, rv] = ranges[i].clone();
            tensors.push(AdamTensor {
                param: typed_mut::<T>(p)?.slice_mut(rp)?,
                m: typed_mut::<T>(m)?.slice_mut(rm)?,
                v: typed_mut::<T>(v)?.slice_mut(rv)?,
                grad: gs.view::<T>(&grads[i], "Adam")?,
                t: items[i].step,
            });
        }
        k::step_many(&dev, tensors, h.kernel_step())
    })
}

/// `t`'s storage locked for writing, when it is on a CUDA device.
fn lock_cuda(t: &Tensor) -> Result<RwLockWriteGuard<'_, Storage>> {
    let s = t.storage_write();
    match &*s {
        Storage::Cuda(_) => Ok(s),
        _ => Err(not_on_cuda("Adam", t)),
    }
}

/// The typed device buffer of a CUDA storage, writable.
fn typed_mut<T: CudaFloat>(s: &mut Storage) -> Result<&mut CudaBuffer<T>> {
    match s {
        Storage::Cuda(c) => T::buffer_mut(c),
        _ => None,
    }
    .ok_or_else(|| Error::invalid(format!("Adam: a parameter or moment is not {}", T::DTYPE)))
}
