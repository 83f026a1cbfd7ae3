//! Embedding lookup and scatter-add gradient (`kernels/embedding.cu`).

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaView, CudaViewMut, LaunchCfg};

crate::__aoanet_cuda_kernels! { "embedding";
    /// `out[t] = table[ids[t]]`.
    fn embedding_fwd_f32(out: CudaViewMut<'_, f32>, table: CudaView<'_, f32>, ids: CudaView<'_, i32>, n: i64, dim: i32, vocab: i32);
    /// `dtable[ids[t]] += dout[t]`, deterministic.
    fn embedding_bwd_f32(dtable: CudaViewMut<'_, f32>, dout: CudaView<'_, f32>, ids: CudaView<'_, i32>, n: i64, dim: i32, vocab: i32);
}

/// Gathers rows `ids` of `table [vocab, dim]` into `out [n, dim]`; out-of-range ids give NaN rows.
pub fn forward(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    table: CudaView<'_, f32>,
    ids: CudaView<'_, i32>,
    vocab: usize,
    dim: usize,
) -> Result<()> {
    let n = ids.len();
    check_len("embedding", "table", table.len(), vocab * dim)?;
    check_len("embedding", "out", out.len(), n * dim)?;
    if n * dim == 0 {
        return Ok(());
    }
    let (d, v) = (
        to_i32("embedding", "dim", dim)?,
        to_i32("embedding", "vocab", vocab)?,
    );
    let cfg = LaunchCfg::elementwise(n * dim, MAX_GRID_STRIDE_BLOCKS);
    // SAFETY: sizes checked; ids are range-checked in the kernel.
    unsafe { embedding_fwd_f32(dev, cfg, out, table, ids, n as i64, d, v) }
}

/// `dtable[ids[t], :] += dout[t, :]` (accumulates, in token order).
pub fn backward(
    dev: &CudaDevice,
    dtable: CudaViewMut<'_, f32>,
    dout: CudaView<'_, f32>,
    ids: CudaView<'_, i32>,
    vocab: usize,
    dim: usize,
) -> Result<()> {
    let n = ids.len();
    check_len("embedding backward", "dtable", dtable.len(), vocab * dim)?;
    check_len("embedding backward", "dout", dout.len(), n * dim)?;
    if n * dim == 0 {
        return Ok(());
    }
    let (d, v) = (
        to_i32("embedding", "dim", dim)?,
        to_i32("embedding", "vocab", vocab)?,
    );
    let cfg = LaunchCfg::linear(dim.div_ceil(128) as u32, 128);
    // SAFETY: sizes checked; ids are range-checked in the kernel.
    unsafe { embedding_bwd_f32(dev, cfg, dtable, dout, ids, n as i64, d, v) }
}
