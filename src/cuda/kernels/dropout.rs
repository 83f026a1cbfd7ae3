//! Philox words and inverted dropout, identical to the CPU (`kernels/dropout.cu`).
//!
//! See the module docs of [`crate::cuda`] for the mask rule.

use super::{MAX_GRID_STRIDE_BLOCKS, check_len};
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};
use crate::rng::PhiloxState;
use crate::{Error, Result};

crate::__aoanet_cuda_kernels! { "dropout";
    /// Words `offset..offset+n` of Philox stream `(seed, stream)`.
    fn philox_u32(out: CudaViewMut<'_, u32>, n: i64, seed: u64, stream: u64, offset: u64);
    /// `y = keep ? x / (1-p) : 0`, element `i` using word `offset + i`.
    fn dropout_f32(y: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, n: i64, p: f32, seed: u64, stream: u64, offset: u64);
}

fn cfg(n: usize) -> LaunchCfg {
    // one thread per Philox block of 4 words (+1 for a misaligned start)
    LaunchCfg::elementwise(n / 4 + 2, MAX_GRID_STRIDE_BLOCKS)
}

/// Fills `out` with the words of `state`'s stream starting at `state.offset` (the generator is
/// not advanced: the caller owns the offset bookkeeping).
pub fn philox_words(dev: &CudaDevice, out: CudaViewMut<'_, u32>, state: PhiloxState) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    // SAFETY: the kernel writes exactly n = out.len() words.
    unsafe {
        philox_u32(
            dev,
            cfg(n),
            out,
            n as i64,
            state.seed,
            state.stream,
            state.offset,
        )
    }
}

/// Inverted dropout of `x` into `y` with probability `p` using words from `state.offset` on.
/// The backward is the same call on the gradient with the same `state`.
pub fn dropout(
    dev: &CudaDevice,
    y: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
    p: f32,
    state: PhiloxState,
) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "cuda dropout: p = {p} is not in [0, 1)"
        )));
    }
    let n = y.len();
    check_len("dropout", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: both views hold n elements.
    unsafe {
        dropout_f32(
            dev,
            cfg(n),
            y,
            x,
            n as i64,
            p,
            state.seed,
            state.stream,
            state.offset,
        )
    }
}
