//! Fused multi-head attention, forward and backward (`kernels/attention.cu`), and the unfused
//! composition of simpler kernels beside it (for tests and benches).

use std::sync::Arc;

use super::{check_len, dropout, elementwise, gemm, softmax, to_i32};
use crate::cuda::{CudaBuffer, CudaDevice, CudaView, CudaViewMut, LaunchCfg};
use crate::rng::PhiloxState;
use crate::{Error, Result};

crate::__aoanet_cuda_kernels! { "attention";
    /// Forward: output and per-row log-sum-exp.
    fn attn_fwd_f32(out: CudaViewMut<'_, f32>, lse: Option<CudaViewMut<'_, f32>>, q: CudaView<'_, f32>, k: CudaView<'_, f32>,
        v: CudaView<'_, f32>, mask: Option<CudaView<'_, u8>>, b: i32, h: i32, nq: i32, nk: i32, dh: i32,
        q_bs: i64, q_rs: i64, k_bs: i64, k_rs: i64, v_bs: i64, v_rs: i64, o_bs: i64, o_rs: i64,
        scale: f32, p_drop: f32, seed: u64, stream: u64, offset: u64, drop_qmajor: i32);
    /// Forward for one query per (b, h) (the decoder): a warp per (b, h), no shared memory.
    fn attn_decode_fwd_f32(out: CudaViewMut<'_, f32>, lse: Option<CudaViewMut<'_, f32>>, q: CudaView<'_, f32>, k: CudaView<'_, f32>,
        v: CudaView<'_, f32>, mask: Option<CudaView<'_, u8>>, b: i32, h: i32, nq: i32, nk: i32, dh: i32,
        q_bs: i64, q_rs: i64, k_bs: i64, k_rs: i64, v_bs: i64, v_rs: i64, o_bs: i64, o_rs: i64,
        scale: f32, p_drop: f32, seed: u64, stream: u64, offset: u64, drop_qmajor: i32);
    /// Backward, part 1: dQ and delta = rowsum(dO ⊙ O).
    fn attn_bwd_dq_f32(dq: CudaViewMut<'_, f32>, delta: CudaViewMut<'_, f32>, dout: CudaView<'_, f32>, out: CudaView<'_, f32>,
        q: CudaView<'_, f32>, k: CudaView<'_, f32>, v: CudaView<'_, f32>, mask: Option<CudaView<'_, u8>>, lse: CudaView<'_, f32>,
        b: i32, h: i32, nq: i32, nk: i32, dh: i32, q_bs: i64, q_rs: i64, k_bs: i64, k_rs: i64, v_bs: i64, v_rs: i64,
        o_bs: i64, o_rs: i64, scale: f32, p_drop: f32, seed: u64, stream: u64, offset: u64, drop_qmajor: i32);
    /// Backward, part 2: dK and dV.
    fn attn_bwd_dkdv_f32(dk: CudaViewMut<'_, f32>, dv: CudaViewMut<'_, f32>, dout: CudaView<'_, f32>, q: CudaView<'_, f32>,
        k: CudaView<'_, f32>, v: CudaView<'_, f32>, mask: Option<CudaView<'_, u8>>, lse: CudaView<'_, f32>, delta: CudaView<'_, f32>,
        b: i32, h: i32, nq: i32, nk: i32, dh: i32, q_bs: i64, q_rs: i64, k_bs: i64, k_rs: i64, v_bs: i64, v_rs: i64,
        o_bs: i64, o_rs: i64, scale: f32, p_drop: f32, seed: u64, stream: u64, offset: u64, drop_qmajor: i32);
}

/// Where element `(b, i, head, d)` of a `[B, rows, H·dh]`-like operand lives:
/// `b · batch_stride + i · row_stride + head · dh + d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Elements between batches.
    pub batch_stride: usize,
    /// Elements between rows (tokens).
    pub row_stride: usize,
}

impl Layout {
    /// A contiguous `[B, rows, width]` tensor.
    pub fn contiguous(rows: usize, width: usize) -> Layout {
        Layout {
            batch_stride: rows * width,
            row_stride: width,
        }
    }
}

/// The problem: batch, heads, query and key counts, head size, and the operands' layouts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention {
    /// Batch size B.
    pub batch: usize,
    /// Heads H.
    pub heads: usize,
    /// Queries per batch element.
    pub nq: usize,
    /// Keys per batch element.
    pub nk: usize,
    /// Head size (a multiple of 32, at most 128).
    pub dh: usize,
    /// Layout of Q (and dQ).
    pub q: Layout,
    /// Layout of K (and dK).
    pub k: Layout,
    /// Layout of V (and dV).
    pub v: Layout,
    /// Layout of O (and dO).
    pub o: Layout,
    /// Dropout on the probabilities: probability and the Philox position of element 0 of the
    /// `[B, H, Nq, Nk]` probability tensor. `None` in eval.
    pub dropout: Option<(f32, PhiloxState)>,
    /// Number the dropout words query-major, as the `[B, Nq, H, Nk]` permutation of the
    /// probabilities (the decoder's captions sharing an image's keys, numbered as the
    /// reference's one query per caption row); `false`: head-major, `[B, H, Nq, Nk]`. The two
    /// agree when `Nq = 1`.
    pub dropout_query_major: bool,
}

impl Attention {
    /// All four operands contiguous `[B, N, H·dh]`, no dropout.
    pub fn contiguous(batch: usize, heads: usize, nq: usize, nk: usize, dh: usize) -> Attention {
        let w = heads * dh;
        Attention {
            batch,
            heads,
            nq,
            nk,
            dh,
            q: Layout::contiguous(nq, w),
            k: Layout::contiguous(nk, w),
            v: Layout::contiguous(nk, w),
            o: Layout::contiguous(nq, w),
            dropout: None,
            dropout_query_major: false,
        }
    }

    fn extent(&self, l: Layout, rows: usize) -> usize {
        if self.batch == 0 || rows == 0 {
            return 0;
        }
        (self.batch - 1) * l.batch_stride + (rows - 1) * l.row_stride + self.heads * self.dh
    }

    /// Number of (b, h, query) rows: the length of `lse` and `delta`.
    pub fn rows(&self) -> usize {
        self.batch * self.heads * self.nq
    }

    fn validate(&self) -> Result<()> {
        if self.dh == 0 || !self.dh.is_multiple_of(32) || self.dh > 128 {
            return Err(Error::invalid(format!(
                "cuda attention: head size {} must be a multiple of 32 up to 128",
                self.dh
            )));
        }
        if self.nk == 0 && self.nq > 0 {
            return Err(Error::invalid("cuda attention: no keys"));
        }
        if self.batch > 65535 || self.heads > 65535 {
            return Err(Error::invalid("cuda attention: batch or heads above 65535"));
        }
        if let Some((p, _)) = self.dropout
            && !(0.0..1.0).contains(&p)
        {
            return Err(Error::invalid(format!(
                "cuda attention: dropout {p} not in [0, 1)"
            )));
        }
        Ok(())
    }

    /// The forward's launch: two query rows per warp, up to 8 warps.
    fn cfg_forward(&self) -> LaunchCfg {
        let warps = self.nq.div_ceil(2).clamp(1, 8);
        LaunchCfg {
            grid: (
                self.nq.div_ceil(2 * warps) as u32,
                self.heads as u32,
                self.batch as u32,
            ),
            block: (32 * warps as u32, 1, 1),
            smem: 0,
        }
    }

    fn cfg(&self, rows: usize) -> LaunchCfg {
        let warps = rows.clamp(1, 8);
        LaunchCfg {
            grid: (
                rows.div_ceil(warps) as u32,
                self.heads as u32,
                self.batch as u32,
            ),
            block: (32 * warps as u32, 1, 1),
            smem: 0,
        }
    }

    fn drop_args(&self) -> (f32, u64, u64, u64, i32) {
        let order = i32::from(self.dropout_query_major);
        match self.dropout {
            Some((p, s)) => (p, s.seed, s.stream, s.offset, order),
            None => (0.0, 0, 0, 0, order),
        }
    }

    #[allow(clippy::type_complexity)]
    fn ints(&self) -> Result<(i32, i32, i32, i32, i32)> {
        Ok((
            self.batch as i32,
            self.heads as i32,
            to_i32("attention", "nq", self.nq)?,
            to_i32("attention", "nk", self.nk)?,
            self.dh as i32,
        ))
    }

    fn strides(&self) -> [i64; 8] {
        [
            self.q.batch_stride as i64,
            self.q.row_stride as i64,
            self.k.batch_stride as i64,
            self.k.row_stride as i64,
            self.v.batch_stride as i64,
            self.v.row_stride as i64,
            self.o.batch_stride as i64,
            self.o.row_stride as i64,
        ]
    }
}

/// The tensors of a forward call.
#[derive(Clone, Copy, Debug)]
pub struct AttnInputs<'a> {
    /// Queries.
    pub q: CudaView<'a, f32>,
    /// Keys.
    pub k: CudaView<'a, f32>,
    /// Values.
    pub v: CudaView<'a, f32>,
    /// Key mask `[B, Nk]`, 1 = attend (None = all keys).
    pub mask: Option<CudaView<'a, u8>>,
}

impl AttnInputs<'_> {
    fn check(&self, a: &Attention) -> Result<()> {
        check_len("attention", "q", self.q.len(), a.extent(a.q, a.nq))?;
        check_len("attention", "k", self.k.len(), a.extent(a.k, a.nk))?;
        check_len("attention", "v", self.v.len(), a.extent(a.v, a.nk))?;
        if let Some(m) = self.mask {
            check_len("attention", "mask", m.len(), a.batch * a.nk)?;
        }
        Ok(())
    }
}

/// Fused forward: writes `out` and (for backward) `lse [B, H, Nq]`.
pub fn forward(
    dev: &CudaDevice,
    a: &Attention,
    out: CudaViewMut<'_, f32>,
    lse: Option<CudaViewMut<'_, f32>>,
    x: AttnInputs<'_>,
) -> Result<()> {
    a.validate()?;
    x.check(a)?;
    check_len("attention", "out", out.len(), a.extent(a.o, a.nq))?;
    if let Some(l) = &lse {
        check_len("attention", "lse", l.len(), a.rows())?;
    }
    if a.rows() == 0 {
        return Ok(());
    }
    let (b, h, nq, nk, dh) = a.ints()?;
    let s = a.strides();
    let (p, seed, stream, offset, qmajor) = a.drop_args();
    let scale = 1.0 / (a.dh as f32).sqrt();
    // One query per (b, h): the decoder's kernel, 4 warps of 128 threads a block, one warp
    // per (b, h) (kernels/attention.cu says why).
    macro_rules! launch {
        ($kernel:ident, $cfg:expr) => {
            // SAFETY: every operand's extent checked; dh ≤ 128 and a multiple of 32; the
            // block size is one the kernel is written for.
            unsafe {
                $kernel(
                    dev, $cfg, out, lse, x.q, x.k, x.v, x.mask, b, h, nq, nk, dh, s[0], s[1], s[2],
                    s[3], s[4], s[5], s[6], s[7], scale, p, seed, stream, offset, qmajor,
                )
            }
        };
    }
    if a.nq == 1 {
        let pairs = a.batch * a.heads;
        let cfg = LaunchCfg {
            grid: (pairs.div_ceil(4) as u32, 1, 1),
            block: (128, 1, 1),
            smem: 0,
        };
        return launch!(attn_decode_fwd_f32, cfg);
    }
    launch!(attn_fwd_f32, a.cfg_forward())
}

/// Gradients of the fused attention.
#[derive(Debug)]
pub struct AttnGrads<'a> {
    /// dQ (layout of Q), overwritten.
    pub dq: CudaViewMut<'a, f32>,
    /// dK (layout of K), overwritten.
    pub dk: CudaViewMut<'a, f32>,
    /// dV (layout of V), overwritten.
    pub dv: CudaViewMut<'a, f32>,
}

/// Fused backward from the forward's `out` and `lse` and the incoming `dout`.
pub fn backward(
    dev: &Arc<CudaDevice>,
    a: &Attention,
    g: AttnGrads<'_>,
    dout: CudaView<'_, f32>,
    out: CudaView<'_, f32>,
    lse: CudaView<'_, f32>,
    x: AttnInputs<'_>,
) -> Result<()> {
    a.validate()?;
    x.check(a)?;
    check_len("attention backward", "out", out.len(), a.extent(a.o, a.nq))?;
    check_len(
        "attention backward",
        "dout",
        dout.len(),
        a.extent(a.o, a.nq),
    )?;
    check_len("attention backward", "dq", g.dq.len(), a.extent(a.q, a.nq))?;
    check_len("attention backward", "dk", g.dk.len(), a.extent(a.k, a.nk))?;
    check_len("attention backward", "dv", g.dv.len(), a.extent(a.v, a.nk))?;
    check_len("attention backward", "lse", lse.len(), a.rows())?;
    if a.rows() == 0 {
        return Ok(());
    }
    let (b, h, nq, nk, dh) = a.ints()?;
    let s = a.strides();
    let (p, seed, stream, offset, qmajor) = a.drop_args();
    let scale = 1.0 / (a.dh as f32).sqrt();
    let mut delta = dev.alloc::<f32>(a.rows())?;
    // SAFETY: as in `forward`; delta holds B·H·Nq rows. The two launches are ordered on the
    // device's stream, so dkdv reads the delta that dq wrote.
    unsafe {
        attn_bwd_dq_f32(
            dev,
            a.cfg(a.nq),
            g.dq,
            delta.view_mut(),
            dout,
            out,
            x.q,
            x.k,
            x.v,
            x.mask,
            lse,
            b,
            h,
            nq,
            nk,
            dh,
            s[0],
            s[1],
            s[2],
            s[3],
            s[4],
            s[5],
            s[6],
            s[7],
            scale,
            p,
            seed,
            stream,
            offset,
            qmajor,
        )?;
        attn_bwd_dkdv_f32(
            dev,
            a.cfg(a.nk),
            g.dk,
            g.dv,
            dout,
            x.q,
            x.k,
            x.v,
            x.mask,
            lse,
            delta.view(),
            b,
            h,
            nq,
            nk,
            dh,
            s[0],
            s[1],
            s[2],
            s[3],
            s[4],
            s[5],
            s[6],
            s[7],
            scale,
            p,
            seed,
            stream,
            offset,
            qmajor,
        )
    }
}

/// The unfused composition for contiguous `[B, N, H·dh]` operands: split heads (permute),
/// `S = Q Kᵀ / √dh` (batched GEMM), masked_fill, softmax, dropout, `P V` (batched GEMM), merge
/// heads. Materialises `S` and `P` (`[B, H, Nq, Nk]`), which the fused kernel avoids. Returns
/// `P` after dropout so tests can inspect it.
pub fn unfused_forward(
    dev: &Arc<CudaDevice>,
    a: &Attention,
    out: CudaViewMut<'_, f32>,
    x: AttnInputs<'_>,
    precision: gemm::Precision,
) -> Result<CudaBuffer<f32>> {
    a.validate()?;
    let w = a.heads * a.dh;
    if a.q != Layout::contiguous(a.nq, w)
        || a.k != Layout::contiguous(a.nk, w)
        || a.v != Layout::contiguous(a.nk, w)
        || a.o != Layout::contiguous(a.nq, w)
    {
        return Err(Error::invalid(
            "cuda unfused attention: operands must be contiguous [B, N, H*dh]",
        ));
    }
    if a.dropout.is_some() && a.dropout_query_major && a.nq > 1 {
        return Err(Error::invalid(
            "cuda unfused attention: dropout is numbered head-major only (dropout_query_major \
             with more than one query)",
        ));
    }
    x.check(a)?;
    check_len("attention", "out", out.len(), a.batch * a.nq * w)?;
    let (bh, nq, nk, dh) = (a.batch * a.heads, a.nq, a.nk, a.dh);
    let split = |t: CudaView<'_, f32>, n: usize| -> Result<CudaBuffer<f32>> {
        let mut o = dev.alloc::<f32>(a.batch * n * w)?;
        elementwise::permute0213(dev, o.view_mut(), t, [a.batch, n, a.heads, dh])?;
        Ok(o)
    };
    let (qh, kh, vh) = (split(x.q, nq)?, split(x.k, nk)?, split(x.v, nk)?);
    let mut s = dev.alloc::<f32>(bh * nq * nk)?;
    let mut g = gemm::Gemm::new(nq, nk, dh, false, true).batched(bh);
    g.alpha = 1.0 / (dh as f32).sqrt();
    gemm::gemm(dev, &g, s.view_mut(), qh.view(), kh.view(), None, precision)?;
    if let Some(m) = x.mask {
        elementwise::mask_keys(dev, s.view_mut(), m, a.batch, a.heads * nq, nk, -1e9)?;
    }
    let mut p = dev.alloc::<f32>(bh * nq * nk)?;
    softmax::forward(dev, p.view_mut(), s.view(), bh * nq, nk, false)?;
    if let Some((pd, state)) = a.dropout {
        dropout::dropout(dev, s.view_mut(), p.view(), f64::from(pd), state)?;
        std::mem::swap(&mut s, &mut p);
    }
    let mut oh = dev.alloc::<f32>(bh * nq * dh)?;
    let g2 = gemm::Gemm::new(nq, dh, nk, false, false).batched(bh);
    gemm::gemm(
        dev,
        &g2,
        oh.view_mut(),
        p.view(),
        vh.view(),
        None,
        precision,
    )?;
    elementwise::permute0213(dev, out, oh.view(), [a.batch, a.heads, nq, dh])?;
    Ok(p)
}
