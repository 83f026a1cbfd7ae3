//! The fused LSTM cell (`kernels/lstm.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches.
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "lstm";
        /// `lstm_cell_fwd_f32`, `lstm_cell_fwd_f64`: gates, state update and output in one pass.
        fn lstm_cell_fwd<T>(h: CudaViewMut<'_, T>, c: CudaViewMut<'_, T>, gates: Option<CudaViewMut<'_, T>>,
            gx: CudaView<'_, T>, gh: CudaView<'_, T>, b_ih: Option<CudaView<'_, T>>, b_hh: Option<CudaView<'_, T>>,
            c_prev: Option<CudaView<'_, T>>, batch: i64, hidden: i32, ld_out: i64, ld_cp: i64);
        /// `lstm_cell_bwd_f32`, `lstm_cell_bwd_f64`: pre-activation gate gradients and `dc_prev`.
        fn lstm_cell_bwd<T>(dgates: CudaViewMut<'_, T>, dc_prev: Option<CudaViewMut<'_, T>>, dh: Option<CudaView<'_, T>>,
            dc: Option<CudaView<'_, T>>, gates: CudaView<'_, T>, c_prev: Option<CudaView<'_, T>>, batch: i64, hidden: i32,
            ld_dh: i64, ld_dc: i64, ld_cp: i64);
    }
}

pub use raw::FLOAT_SIGNATURES;

/// The inputs of one cell step: the two GEMM results `[B, 4H]`, the biases `[4H]`, `c_prev [B, H]`.
#[derive(Clone, Copy, Debug)]
pub struct LstmInputs<'a, T = f32> {
    /// `x · W_ihᵀ`.
    pub gx: CudaView<'a, T>,
    /// `h_prev · W_hhᵀ`.
    pub gh: CudaView<'a, T>,
    /// `b_ih` (None = 0).
    pub b_ih: Option<CudaView<'a, T>>,
    /// `b_hh` (None = 0).
    pub b_hh: Option<CudaView<'a, T>>,
    /// The previous cell state (None = 0).
    pub c_prev: Option<CudaView<'a, T>>,
}

/// Row strides (in elements) of the `[B, H]` operands; all `H` for dense ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmStrides {
    /// Of the outputs `h` and `c` (`H` for the tensor op's two dense blocks of one
    /// `[2, B, H]`; `2H` for rows `[h ; c]`).
    pub out: usize,
    /// Of `c_prev` (any view with unit-stride rows).
    pub c_prev: usize,
    /// Of `dh`.
    pub dh: usize,
    /// Of `dc`.
    pub dc: usize,
}

impl LstmStrides {
    /// Every operand dense `[B, H]`.
    pub fn dense(hidden: usize) -> LstmStrides {
        LstmStrides {
            out: hidden,
            c_prev: hidden,
            dh: hidden,
            dc: hidden,
        }
    }
}

/// Checks that a `[batch, hidden]` operand with row stride `ld` fits in `len` elements.
fn check_rows(
    op: &'static str,
    what: &str,
    len: usize,
    batch: usize,
    hidden: usize,
    ld: usize,
) -> Result<()> {
    if ld < hidden {
        return Err(Error::invalid(format!(
            "cuda {op}: {what} row stride {ld} is below the hidden size {hidden}"
        )));
    }
    check_len(
        op,
        what,
        len,
        if batch == 0 {
            0
        } else {
            (batch - 1) * ld + hidden
        },
    )
}

/// `h, c [B, H]` and (optionally) the activated gates `[B, 4H]` saved for backward; dense
/// operands.
pub fn forward<T: CudaFloat>(
    dev: &CudaDevice,
    h: CudaViewMut<'_, T>,
    c: CudaViewMut<'_, T>,
    gates: Option<CudaViewMut<'_, T>>,
    inp: LstmInputs<'_, T>,
    batch: usize,
    hidden: usize,
) -> Result<()> {
    forward_strided(
        dev,
        h,
        c,
        gates,
        inp,
        batch,
        hidden,
        LstmStrides::dense(hidden),
    )
}

/// [`forward`] with row strides for `h`, `c` and `c_prev` (`h` and `c` may be two views into
/// one buffer, e.g. columns `0..H` and `H..2H` of a `[B, 2H]` result).
#[allow(clippy::too_many_arguments)]
pub fn forward_strided<T: CudaFloat>(
    dev: &CudaDevice,
    h: CudaViewMut<'_, T>,
    c: CudaViewMut<'_, T>,
    gates: Option<CudaViewMut<'_, T>>,
    inp: LstmInputs<'_, T>,
    batch: usize,
    hidden: usize,
    ld: LstmStrides,
) -> Result<()> {
    let b4h = batch * 4 * hidden;
    check_rows("lstm", "h", h.len(), batch, hidden, ld.out)?;
    check_rows("lstm", "c", c.len(), batch, hidden, ld.out)?;
    check_len("lstm", "gx", inp.gx.len(), b4h)?;
    check_len("lstm", "gh", inp.gh.len(), b4h)?;
    if let Some(g) = &gates {
        check_len("lstm", "gates", g.len(), b4h)?;
    }
    for (what, b) in [("b_ih", inp.b_ih), ("b_hh", inp.b_hh)] {
        if let Some(b) = b {
            check_len("lstm", what, b.len(), 4 * hidden)?;
        }
    }
    if let Some(cp) = inp.c_prev {
        check_rows("lstm", "c_prev", cp.len(), batch, hidden, ld.c_prev)?;
    }
    if batch * hidden == 0 {
        return Ok(());
    }
    let hd = to_i32("lstm", "hidden", hidden)?;
    let cfg = LaunchCfg::elementwise(batch * hidden, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe {
        raw::lstm_cell_fwd(
            dev,
            cfg,
            h,
            c,
            gates,
            inp.gx,
            inp.gh,
            inp.b_ih,
            inp.b_hh,
            inp.c_prev,
            batch as i64,
            hd,
            ld.out as i64,
            ld.c_prev as i64,
        )
    }
}

/// `dgates [B, 4H]` (pre-activation, overwritten) and `dc_prev [B, H]` (overwritten); dense
/// operands.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: CudaFloat>(
    dev: &CudaDevice,
    dgates: CudaViewMut<'_, T>,
    dc_prev: Option<CudaViewMut<'_, T>>,
    dh: Option<CudaView<'_, T>>,
    dc: Option<CudaView<'_, T>>,
    gates: CudaView<'_, T>,
    c_prev: Option<CudaView<'_, T>>,
    batch: usize,
    hidden: usize,
) -> Result<()> {
    backward_strided(
        dev,
        dgates,
        dc_prev,
        dh,
        dc,
        gates,
        c_prev,
        batch,
        hidden,
        LstmStrides::dense(hidden),
    )
}

/// [`backward`] with row strides for `dh`, `dc` and `c_prev` (`dc_prev` stays dense).
#[allow(clippy::too_many_arguments)]
pub fn backward_strided<T: CudaFloat>(
    dev: &CudaDevice,
    dgates: CudaViewMut<'_, T>,
    dc_prev: Option<CudaViewMut<'_, T>>,
    dh: Option<CudaView<'_, T>>,
    dc: Option<CudaView<'_, T>>,
    gates: CudaView<'_, T>,
    c_prev: Option<CudaView<'_, T>>,
    batch: usize,
    hidden: usize,
    ld: LstmStrides,
) -> Result<()> {
    let (bh, b4h) = (batch * hidden, batch * 4 * hidden);
    check_len("lstm backward", "dgates", dgates.len(), b4h)?;
    check_len("lstm backward", "gates", gates.len(), b4h)?;
    if let Some(d) = &dc_prev {
        check_len("lstm backward", "dc_prev", d.len(), bh)?;
    }
    for (what, v, s) in [
        ("dh", dh, ld.dh),
        ("dc", dc, ld.dc),
        ("c_prev", c_prev, ld.c_prev),
    ] {
        if let Some(v) = v {
            check_rows("lstm backward", what, v.len(), batch, hidden, s)?;
        }
    }
    if bh == 0 {
        return Ok(());
    }
    let hd = to_i32("lstm backward", "hidden", hidden)?;
    let cfg = LaunchCfg::elementwise(bh, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe {
        raw::lstm_cell_bwd(
            dev,
            cfg,
            dgates,
            dc_prev,
            dh,
            dc,
            gates,
            c_prev,
            batch as i64,
            hd,
            ld.dh as i64,
            ld.dc as i64,
            ld.c_prev as i64,
        )
    }
}
