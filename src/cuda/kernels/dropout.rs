//! Philox words and inverted dropout, identical to the CPU (`kernels/dropout.cu`).
//!
//! See the module docs of [`crate::cuda`] for the mask rule.

use super::{MAX_GRID_STRIDE_BLOCKS, check_len};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::rng::PhiloxState;
use crate::{Error, Result};

/// The raw launches.
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_kernels! { "dropout";
        /// Words `offset..offset+n` of Philox stream `(seed, stream)`.
        fn philox_u32(out: CudaViewMut<'_, u32>, n: i64, seed: u64, stream: u64, offset: u64);
    }

    crate::__aoanet_cuda_float_kernels! { "dropout";
        /// `dropout_f32`, `dropout_f64`: `y = keep ? x · scale : 0`, element `i` using word
        /// `offset + i`.
        fn dropout<T>(y: CudaViewMut<'_, T>, x: CudaView<'_, T>, n: i64, p: f32, scale: T, seed: u64, stream: u64, offset: u64);
        /// `relu_dropout_f32`, `relu_dropout_f64`: the same on `relu(x)`.
        fn relu_dropout<T>(y: CudaViewMut<'_, T>, x: CudaView<'_, T>, n: i64, p: f32, scale: T, seed: u64, stream: u64, offset: u64);
        /// `dropout_steps_f32`, `dropout_steps_f64`: dropout of `x [outer, steps, width]`,
        /// segment `(o, t)` using words `offset + t · step_stride + o · width ..`.
        fn dropout_steps<T>(y: CudaViewMut<'_, T>, x: CudaView<'_, T>, outer: i64, steps: i64, width: i64, p: f32, scale: T, seed: u64, stream: u64, offset: u64, step_stride: u64);
        /// `add_dropout_f32`, `add_dropout_f64`: `y = a + dropout(x)`.
        fn add_dropout<T>(y: CudaViewMut<'_, T>, a: CudaView<'_, T>, x: CudaView<'_, T>, n: i64, p: f32, scale: T, seed: u64, stream: u64, offset: u64);
    }
}

pub use raw::{FLOAT_SIGNATURES, SIGNATURES};

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
        raw::philox_u32(
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

/// What the dropout kernels do besides dropping.
enum Variant<'a, T> {
    /// Nothing: [`dropout`].
    Plain,
    /// ReLU first: [`relu_dropout`].
    Relu,
    /// Add to this: [`add_dropout`].
    AddTo(CudaView<'a, T>),
}

/// The dropout kernel of `variant`, with the checks and the scale they share.
fn launch<T: CudaFloat>(
    variant: Variant<'_, T>,
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    p: f64,
    state: PhiloxState,
) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "cuda dropout: p = {p} is not in [0, 1]"
        )));
    }
    let n = y.len();
    check_len("dropout", "x", x.len(), n)?;
    if let Variant::AddTo(a) = &variant {
        check_len("add_dropout", "a", a.len(), n)?;
    }
    if n == 0 {
        return Ok(());
    }
    let scale = if p < 1.0 {
        T::from_f64(1.0 / (1.0 - p))
    } else {
        T::ZERO
    };
    let (n_i, pf) = (n as i64, p as f32);
    let (seed, stream, offset) = (state.seed, state.stream, state.offset);
    // SAFETY: every view holds n elements.
    unsafe {
        match variant {
            Variant::Plain => {
                raw::dropout::<T>(dev, cfg(n), y, x, n_i, pf, scale, seed, stream, offset)
            }
            Variant::Relu => {
                raw::relu_dropout::<T>(dev, cfg(n), y, x, n_i, pf, scale, seed, stream, offset)
            }
            Variant::AddTo(a) => {
                raw::add_dropout::<T>(dev, cfg(n), y, a, x, n_i, pf, scale, seed, stream, offset)
            }
        }
    }
}

/// Inverted dropout of `x` into `y` with probability `p` using words from `state.offset` on:
/// the CPU's rule ([`crate::ops::dropout_keeps`] with `p as f32`) and the CPU's scale
/// (`1 / (1 − p)` in f64, rounded to `T`; 0 when `p = 1`), so both devices give the same
/// values bit for bit. The backward is the same call on the gradient with the same `state`.
pub fn dropout<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    p: f64,
    state: PhiloxState,
) -> Result<()> {
    launch(Variant::Plain, dev, y, x, p, state)
}

/// [`dropout`] of `relu(x)` in one pass: the values of the ReLU kernel followed by the dropout
/// kernel, bit for bit.
pub fn relu_dropout<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    p: f64,
    state: PhiloxState,
) -> Result<()> {
    launch(Variant::Relu, dev, y, x, p, state)
}

/// `a + dropout(x)` in one pass: the values of [`dropout`] followed by an addition, bit for
/// bit (the kernel rounds the product and the sum separately).
pub fn add_dropout<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    a: CudaView<'_, T>,
    x: CudaView<'_, T>,
    p: f64,
    state: PhiloxState,
) -> Result<()> {
    launch(Variant::AddTo(a), dev, y, x, p, state)
}

/// Dropout of `x [outer, steps, width]` into `y` where each step drew its own mask, one after
/// another: step `t` uses the words of a [`dropout`] of its `[outer, width]` slice drawn at
/// `first.offset + t · step_stride` (the decoder's output dropout, drawn at every step of
/// teacher forcing and applied to all steps' outputs in one launch). The values, bit for bit,
/// of one [`dropout`] per step; the backward is the same call on the gradient.
#[allow(clippy::too_many_arguments)]
pub fn dropout_steps<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    shape: [usize; 3],
    p: f64,
    first: PhiloxState,
    step_stride: u64,
) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "cuda dropout_steps: p = {p} is not in [0, 1]"
        )));
    }
    let [outer, steps, width] = shape;
    let n = outer * steps * width;
    check_len("dropout_steps", "y", y.len(), n)?;
    check_len("dropout_steps", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    if steps > 1 && step_stride < (outer * width) as u64 {
        return Err(Error::invalid(format!(
            "cuda dropout_steps: steps {step_stride} words apart overlap ({} words each)",
            outer * width
        )));
    }
    let scale = if p < 1.0 {
        T::from_f64(1.0 / (1.0 - p))
    } else {
        T::ZERO
    };
    let threads = outer * steps * (width / 4 + 2);
    // SAFETY: x and y hold outer · steps · width elements (checked above); the kernel writes
    // each element of y once.
    unsafe {
        raw::dropout_steps::<T>(
            dev,
            LaunchCfg::elementwise(threads, MAX_GRID_STRIDE_BLOCKS),
            y,
            x,
            outer as i64,
            steps as i64,
            width as i64,
            p as f32,
            scale,
            first.seed,
            first.stream,
            first.offset,
            step_stride,
        )
    }
}
