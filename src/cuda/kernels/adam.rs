//! Adam with the element-wise gradient clamp fused (`kernels/adam.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len};
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

crate::__aoanet_cuda_kernels! { "adam";
    /// One Adam step over `n` parameters.
    fn adam_f32(param: CudaViewMut<'_, f32>, m: CudaViewMut<'_, f32>, v: CudaViewMut<'_, f32>, grad: CudaView<'_, f32>,
        n: i64, step_size: f32, beta1: f32, beta2: f32, eps: f32, inv_sqrt_bc2: f32, clip: f32, weight_decay: f32);
}

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
    /// Element-wise gradient clamp (0.1 in AoANet; 0 = none).
    pub clip: f64,
    /// L2 weight decay added to the gradient (0 in AoANet).
    pub weight_decay: f64,
}

/// One step: clamps `grad`, updates `m`, `v` and `param` in place.
pub fn step(
    dev: &CudaDevice,
    param: CudaViewMut<'_, f32>,
    m: CudaViewMut<'_, f32>,
    v: CudaViewMut<'_, f32>,
    grad: CudaView<'_, f32>,
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
    // Bias corrections in f64 on the host, as PyTorch computes them in Python floats.
    let t = h.t.min(i32::MAX as u64) as i32;
    let bc1 = 1.0 - h.beta1.powi(t);
    let bc2 = 1.0 - h.beta2.powi(t);
    let step_size = (h.lr / bc1) as f32;
    let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
    let cfg = LaunchCfg::elementwise(n, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: all four views hold n elements.
    unsafe {
        adam_f32(
            dev,
            cfg,
            param,
            m,
            v,
            grad,
            n as i64,
            step_size,
            h.beta1 as f32,
            h.beta2 as f32,
            h.eps as f32,
            inv_sqrt_bc2,
            h.clip as f32,
            h.weight_decay as f32,
        )
    }
}
