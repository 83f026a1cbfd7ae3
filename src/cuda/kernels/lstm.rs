//! The fused LSTM cell (`kernels/lstm.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};

crate::__aoanet_cuda_kernels! { "lstm";
    /// Gates, state update and output in one pass.
    fn lstm_cell_fwd_f32(h: CudaViewMut<'_, f32>, c: CudaViewMut<'_, f32>, gates: Option<CudaViewMut<'_, f32>>,
        gx: CudaView<'_, f32>, gh: CudaView<'_, f32>, b_ih: Option<CudaView<'_, f32>>, b_hh: Option<CudaView<'_, f32>>,
        c_prev: Option<CudaView<'_, f32>>, batch: i64, hidden: i32);
    /// Pre-activation gate gradients and `dc_prev`.
    fn lstm_cell_bwd_f32(dgates: CudaViewMut<'_, f32>, dc_prev: Option<CudaViewMut<'_, f32>>, dh: Option<CudaView<'_, f32>>,
        dc: Option<CudaView<'_, f32>>, gates: CudaView<'_, f32>, c_prev: Option<CudaView<'_, f32>>, batch: i64, hidden: i32);
}

/// The inputs of one cell step: the two GEMM results `[B, 4H]`, the biases `[4H]`, `c_prev [B, H]`.
#[derive(Clone, Copy, Debug)]
pub struct LstmInputs<'a> {
    /// `x · W_ihᵀ`.
    pub gx: CudaView<'a, f32>,
    /// `h_prev · W_hhᵀ`.
    pub gh: CudaView<'a, f32>,
    /// `b_ih` (None = 0).
    pub b_ih: Option<CudaView<'a, f32>>,
    /// `b_hh` (None = 0).
    pub b_hh: Option<CudaView<'a, f32>>,
    /// The previous cell state (None = 0).
    pub c_prev: Option<CudaView<'a, f32>>,
}

/// `h, c [B, H]` and (optionally) the activated gates `[B, 4H]` saved for backward.
pub fn forward(
    dev: &CudaDevice,
    h: CudaViewMut<'_, f32>,
    c: CudaViewMut<'_, f32>,
    gates: Option<CudaViewMut<'_, f32>>,
    inp: LstmInputs<'_>,
    batch: usize,
    hidden: usize,
) -> Result<()> {
    let (bh, b4h) = (batch * hidden, batch * 4 * hidden);
    check_len("lstm", "h", h.len(), bh)?;
    check_len("lstm", "c", c.len(), bh)?;
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
        check_len("lstm", "c_prev", cp.len(), bh)?;
    }
    if bh == 0 {
        return Ok(());
    }
    let hd = to_i32("lstm", "hidden", hidden)?;
    let cfg = LaunchCfg::elementwise(bh, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe {
        lstm_cell_fwd_f32(
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
        )
    }
}

/// `dgates [B, 4H]` (pre-activation, overwritten) and `dc_prev [B, H]` (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dev: &CudaDevice,
    dgates: CudaViewMut<'_, f32>,
    dc_prev: Option<CudaViewMut<'_, f32>>,
    dh: Option<CudaView<'_, f32>>,
    dc: Option<CudaView<'_, f32>>,
    gates: CudaView<'_, f32>,
    c_prev: Option<CudaView<'_, f32>>,
    batch: usize,
    hidden: usize,
) -> Result<()> {
    let (bh, b4h) = (batch * hidden, batch * 4 * hidden);
    check_len("lstm backward", "dgates", dgates.len(), b4h)?;
    check_len("lstm backward", "gates", gates.len(), b4h)?;
    if let Some(d) = &dc_prev {
        check_len("lstm backward", "dc_prev", d.len(), bh)?;
    }
    for (what, v) in [("dh", dh), ("dc", dc), ("c_prev", c_prev)] {
        if let Some(v) = v {
            check_len("lstm backward", what, v.len(), bh)?;
        }
    }
    if bh == 0 {
        return Ok(());
    }
    let hd = to_i32("lstm backward", "hidden", hidden)?;
    let cfg = LaunchCfg::elementwise(bh, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked above.
    unsafe {
        lstm_cell_bwd_f32(
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
        )
    }
}
