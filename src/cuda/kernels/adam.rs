//! Adam with the element-wise gradient clamp fused (`kernels/adam.cu`): the same arithmetic as
//! the CPU's [`crate::train::Adam`].

use std::sync::Arc;

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, multi_tensor_blocks, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches.
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "adam";
        /// `adam_f32`, `adam_f64`: one Adam step over `n` parameters.
        fn adam<T>(param: CudaViewMut<'_, T>, m: CudaViewMut<'_, T>, v: CudaViewMut<'_, T>, grad: CudaView<'_, T>,
            n: i64, lerp_weight: T, lerp_small: i32, beta2: T, one_minus_beta2: T, neg_step_size: T, bc2_sqrt: T,
            eps: T, weight_decay: T, use_wd: i32, clip: T, use_clip: i32);
        /// `adam_multi_f32`, `adam_multi_f64`: one Adam step over the tensors of `table`.
        fn adam_multi<T>(table: CudaView<'_, u64>, count: i32, lerp_weight: T, lerp_small: i32, beta2: T,
            one_minus_beta2: T, eps: T, weight_decay: T, use_wd: i32, clip: T, use_clip: i32);
    }
}

/// Words per tensor in `adam_multi`'s table (`kernels/adam.cu`).
const SLOT_WORDS: usize = 8;
/// Elements per block of `adam_multi` (`ADAM_CHUNK` in `kernels/adam.cu`).
const CHUNK: usize = 8192;

pub use raw::FLOAT_SIGNATURES;

/// Adam's hyper-parameters for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// β₁ (0.9 in AoANet).
    pub beta1: f64,
    /// β₂ (0.999).
    pub beta2: f64,
    /// ε (1e-8).
    pub eps: f64,
    /// The step number, starting at 1.
    pub t: u64,
    /// Element-wise gradient clamp to `[−c, c]` (0.1 in AoANet), if any.
    pub clip: Option<f64>,
    /// L2 weight decay added to the gradient (0 in AoANet: off).
    pub weight_decay: f64,
}

/// The per-step scalars the host forms in f64: `(lerp_weight, −lr / (1 − β₁ᵗ), √(1 − β₂ᵗ))`,
/// `β^t` with `powf` as the CPU's Adam forms them.
fn step_scalars(h: &AdamStep, t: u64) -> (f64, f64, f64) {
    let t = t as f64;
    let bias_correction1 = 1.0 - h.beta1.powf(t);
    let bias_correction2 = 1.0 - h.beta2.powf(t);
    (
        1.0 - h.beta1,
        -(h.lr / bias_correction1),
        bias_correction2.sqrt(),
    )
}

/// One tensor of [`step_many`]: a parameter, its two moments, its gradient (all of one length)
/// and its step number after incrementing (from 1).
pub struct AdamTensor<'a, T> {
    /// The parameter, updated in place.
    pub param: CudaViewMut<'a, T>,
    /// The first moment, updated in place.
    pub m: CudaViewMut<'a, T>,
    /// The second moment, updated in place.
    pub v: CudaViewMut<'a, T>,
    /// The gradient, read.
    pub grad: CudaView<'a, T>,
    /// This tensor's step number (1 on its first step).
    pub t: u64,
}

/// One step over every tensor of `tensors` in one launch: for each, exactly what [`step`]
/// computes with its own step number (`h.t` is not used). The per-tensor table (a few KiB)
/// is uploaded first, behind the work already queued.
pub fn step_many<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    tensors: Vec<AdamTensor<'_, T>>,
    h: AdamStep,
) -> Result<()> {
    for (i, x) in tensors.iter().enumerate() {
        if x.t == 0 {
            return Err(Error::invalid("cuda adam: step numbers start at 1"));
        }
        let n = x.param.len();
        for (what, len) in [("m", x.m.len()), ("v", x.v.len()), ("grad", x.grad.len())] {
            check_len("adam", &format!("tensor {i}'s {what}"), len, n)?;
        }
    }
    let live: Vec<&AdamTensor<'_, T>> = tensors.iter().filter(|x| !x.param.is_empty()).collect();
    let (first, grid) = multi_tensor_blocks("adam", live.iter().map(|x| x.param.len()), CHUNK)?;
    if live.is_empty() {
        return Ok(());
    }
    let mut table = Vec::with_capacity(live.len() * SLOT_WORDS);
    for (x, first) in live.iter().zip(first) {
        let (_, neg_step_size, bc2_sqrt) = step_scalars(&h, x.t);
        table.extend_from_slice(&[
            x.param.device_ptr(),
            x.m.device_ptr(),
            x.v.device_ptr(),
            x.grad.device_ptr(),
            x.param.len() as u64,
            first,
            neg_step_size.to_bits(),
            bc2_sqrt.to_bits(),
        ]);
    }
    let count = live.len();
    let table = dev.htod(&table)?;
    let lerp_weight = 1.0 - h.beta1;
    // SAFETY: every table entry holds the addresses of four device views of its `n` elements
    // of T, borrowed (the mutable three exclusively) for this call, and blocks cover exactly
    // each tensor's chunks; the table is on the device before the kernel runs (same stream).
    unsafe {
        raw::adam_multi(
            dev,
            LaunchCfg::linear(grid, 256),
            table.view(),
            to_i32("adam", "tensor count", count)?,
            T::from_f64(lerp_weight),
            i32::from(lerp_weight.abs() < 0.5),
            T::from_f64(h.beta2),
            T::from_f64(1.0 - h.beta2),
            T::from_f64(h.eps),
            T::from_f64(h.weight_decay),
            i32::from(h.weight_decay != 0.0),
            T::from_f64(h.clip.unwrap_or(0.0)),
            i32::from(h.clip.is_some()),
        )
    }
}

/// One step: clamps `grad`, updates `m`, `v` and `param` in place. The per-step scalars are
/// formed in f64 as the CPU's Adam forms them (`β^t` with `powf`) and rounded to `T`.
pub fn step<T: CudaFloat>(
    dev: &CudaDevice,
    param: CudaViewMut<'_, T>,
    m: CudaViewMut<'_, T>,
    v: CudaViewMut<'_, T>,
    grad: CudaView<'_, T>,
    h: AdamStep,
) -> Result<()> {
    if h.t == 0 {
        return Err(Error::invalid("cuda adam: step numbers start at 1"));
    }
    let n = param.len();
    for (what, len) in [("m", m.len()), ("v", v.len()), ("grad", grad.len())] {
        check_len("adam", what, len, n)?;
    }
    if n == 0 {
        return Ok(());
    }
    let (lerp_weight, neg_step_size, bc2_sqrt) = step_scalars(&h, h.t);
    let cfg = LaunchCfg::elementwise(n, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: all four views hold n elements.
    unsafe {
        raw::adam(
            dev,
            cfg,
            param,
            m,
            v,
            grad,
            n as i64,
            T::from_f64(lerp_weight),
            // PyTorch's lerp picks its formula by the weight's size, for accuracy.
            i32::from(lerp_weight.abs() < 0.5),
            T::from_f64(h.beta2),
            T::from_f64(1.0 - h.beta2),
            T::from_f64(neg_step_size),
            T::from_f64(bc2_sqrt),
            T::from_f64(h.eps),
            T::from_f64(h.weight_decay),
            i32::from(h.weight_decay != 0.0),
            T::from_f64(h.clip.unwrap_or(0.0)),
            i32::from(h.clip.is_some()),
        )
    }
}
