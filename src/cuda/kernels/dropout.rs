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
        /// `lstm_input_f32`, `lstm_input_f64`: `y = [relu_dropout(table[ids]) ; base +
        /// dropout(x)]`.
        fn lstm_input<T>(y: CudaViewMut<'_, T>, table: CudaView<'_, T>, ids: CudaView<'_, i32>, base: CudaView<'_, T>, x: CudaView<'_, T>, rows: i64, e: i64, d: i64, vocab: i32, p_e: f32, scale_e: T, seed_e: u64, stream_e: u64, offset_e: u64, p_x: f32, scale_x: T, seed_x: u64, stream_x: u64, offset_x: u64);
        /// `lstm_input_bwd_f32`, `lstm_input_bwd_f64`: the gradients of the embedding half (before
        /// the table's scatter), of `base` and of `x`.
        fn lstm_input_bwd<T>(g_emb: CudaViewMut<'_, T>, g_base: CudaViewMut<'_, T>, g_x: CudaViewMut<'_, T>, dy: CudaView<'_, T>, y: CudaView<'_, T>, rows: i64, e: i64, d: i64, p_e: f32, scale_e: T, seed_e: u64, stream_e: u64, offset_e: u64, p_x: f32, scale_x: T, seed_x: u64, stream_x: u64, offset_x: u64);
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

/// The dropout of one half of [`lstm_input`]: probability `p` from the words of `state` on,
/// or nothing (`p = 0`; evaluation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HalfDropout {
    /// The drop probability, in `[0, 1)`; 0 keeps every element.
    pub p: f64,
    /// Where the half's words start (unused when `p = 0`).
    pub state: PhiloxState,
}

impl HalfDropout {
    /// No dropout.
    pub const NONE: HalfDropout = HalfDropout {
        p: 0.0,
        state: PhiloxState {
            seed: 0,
            stream: 0,
            offset: 0,
        },
    };

    /// `(p as f32, 1 / (1 − p) rounded to T)`, the CPU's scale; an error outside `[0, 1)`.
    fn kernel_args<T: CudaFloat>(&self) -> Result<(f32, T)> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(Error::invalid(format!(
                "cuda lstm_input: p = {} is not in [0, 1)",
                self.p
            )));
        }
        Ok((self.p as f32, T::from_f64(1.0 / (1.0 - self.p))))
    }
}

/// The shapes of [`lstm_input`]: `rows` words, embeddings of `embed` from a table of `vocab`
/// rows, and `base`/`x` of `width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmInputDims {
    /// Rows (words) of the step.
    pub rows: usize,
    /// Embedding width E.
    pub embed: usize,
    /// Width D of `base` and `x`.
    pub width: usize,
    /// Rows of the embedding table.
    pub vocab: usize,
}

/// The decoder's LSTM input of one step in one launch: `y [rows, E + D]` with
/// `y[r, :E] = relu_dropout(table[ids[r]])` and `y[r, E:] = base[r] + dropout(x[r])`, the
/// values, bit for bit, of the embedding lookup, [`relu_dropout`], [`add_dropout`] and a
/// concatenation (`drops[0]` and `drops[1]` the two halves' draws). An id outside the table
/// gives NaN, as the embedding kernel does.
#[allow(clippy::too_many_arguments)]
pub fn lstm_input<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    table: CudaView<'_, T>,
    ids: CudaView<'_, i32>,
    base: CudaView<'_, T>,
    x: CudaView<'_, T>,
    dims: LstmInputDims,
    drops: [HalfDropout; 2],
) -> Result<()> {
    let LstmInputDims {
        rows,
        embed,
        width,
        vocab,
    } = dims;
    check_len("lstm_input", "y", y.len(), rows * (embed + width))?;
    check_len("lstm_input", "table", table.len(), vocab * embed)?;
    check_len("lstm_input", "ids", ids.len(), rows)?;
    check_len("lstm_input", "base", base.len(), rows * width)?;
    check_len("lstm_input", "x", x.len(), rows * width)?;
    let ((pe, se), (px, sx)) = (drops[0].kernel_args::<T>()?, drops[1].kernel_args::<T>()?);
    let vocab = super::to_i32("lstm_input", "vocab", vocab)?;
    if y.is_empty() {
        return Ok(());
    }
    let (a, b) = (drops[0].state, drops[1].state);
    // SAFETY: every view holds the elements checked above; ids are range-checked in the kernel.
    unsafe {
        raw::lstm_input::<T>(
            dev,
            LaunchCfg::elementwise(y.len(), MAX_GRID_STRIDE_BLOCKS),
            y,
            table,
            ids,
            base,
            x,
            rows as i64,
            embed as i64,
            width as i64,
            vocab,
            pe,
            se,
            a.seed,
            a.stream,
            a.offset,
            px,
            sx,
            b.seed,
            b.stream,
            b.offset,
        )
    }
}

/// The gradients of [`lstm_input`] from `dy [rows, E + D]` and its output `y`, in one launch:
/// `g_emb [rows, E]` (the ReLU-and-dropout backward of the embedding half: `dy · scale` where
/// `y > 0`; the caller adds its rows into the table's gradient), `g_base [rows, D]` (`dy`) and
/// `g_x [rows, D]` (the dropout of `dy` with the same words).
#[allow(clippy::too_many_arguments)]
pub fn lstm_input_backward<T: CudaFloat>(
    dev: &CudaDevice,
    g_emb: CudaViewMut<'_, T>,
    g_base: CudaViewMut<'_, T>,
    g_x: CudaViewMut<'_, T>,
    dy: CudaView<'_, T>,
    y: CudaView<'_, T>,
    dims: LstmInputDims,
    drops: [HalfDropout; 2],
) -> Result<()> {
    let LstmInputDims {
        rows, embed, width, ..
    } = dims;
    check_len(
        "lstm_input backward",
        "dy",
        dy.len(),
        rows * (embed + width),
    )?;
    check_len("lstm_input backward", "y", y.len(), rows * (embed + width))?;
    check_len("lstm_input backward", "g_emb", g_emb.len(), rows * embed)?;
    check_len("lstm_input backward", "g_base", g_base.len(), rows * width)?;
    check_len("lstm_input backward", "g_x", g_x.len(), rows * width)?;
    let ((pe, se), (px, sx)) = (drops[0].kernel_args::<T>()?, drops[1].kernel_args::<T>()?);
    if dy.is_empty() {
        return Ok(());
    }
    let (a, b) = (drops[0].state, drops[1].state);
    // SAFETY: every view holds the elements checked above.
    unsafe {
        raw::lstm_input_bwd::<T>(
            dev,
            LaunchCfg::elementwise(dy.len(), MAX_GRID_STRIDE_BLOCKS),
            g_emb,
            g_base,
            g_x,
            dy,
            y,
            rows as i64,
            embed as i64,
            width as i64,
            pe,
            se,
            a.seed,
            a.stream,
            a.offset,
            px,
            sx,
            b.seed,
            b.stream,
            b.offset,
        )
    }
}
