//! Adam with the element-wise gradient clamp fused (`kernels/adam.cu`): the same arithmetic as
//! the CPU's [`crate::train::Adam`].

use super::{MAX_GRID_STRIDE_BLOCKS, check_len};
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
    }
}

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
    let t = h.t as f64;
    let bias_correction1 = 1.0 - h.beta1.powf(t);
    let bias_correction2 = 1.0 - h.beta2.powf(t);
    let step_size = h.lr / bias_correction1;
    let lerp_weight = 1.0 - h.beta1;
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
            T::from_f64(-step_size),
            T::from_f64(bias_correction2.sqrt()),
            T::from_f64(h.eps),
            T::from_f64(h.weight_decay),
            i32::from(h.weight_decay != 0.0),
            T::from_f64(h.clip.unwrap_or(0.0)),
            i32::from(h.clip.is_some()),
        )
    }
}
