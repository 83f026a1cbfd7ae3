//! Gathers and scatter-adds by integer index (`kernels/embedding.cu`): the embedding lookup and
//! its gradient, `index_select` along any axis and its adjoint, and the per-row gather of the
//! target log-probabilities.

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};
use std::sync::Arc;

/// The raw launches (see [`float_kernels!`](crate::cuda::kernels)).
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "embedding";
        /// `embedding_fwd_f32`, `embedding_fwd_f64`: `out[t] = table[ids[t]]`.
        fn embedding_fwd<T>(out: CudaViewMut<'_, T>, table: CudaView<'_, T>, ids: CudaView<'_, i32>, n: i64, dim: i32, vocab: i32);
        /// `scatter_rows_f32`, `scatter_rows_f64`: `out[dest[k]] += src[start[k]..start[k+1]]`
        /// in order, from a table of u64 words (see [`super::scatter_rows`]).
        fn scatter_rows<T>(out: CudaViewMut<'_, T>, table: CudaView<'_, u64>, unique: i64, row: i64);
        /// `index_select_f32`, `index_select_f64`: `out[o, k, i] = x[o, ids[k], i]`.
        fn index_select<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, ids: CudaView<'_, i32>, outer: i64, len: i64, inner: i64, nids: i64);
        /// `index_add_f32`, `index_add_f64`: `gx[o, ids[k], i] += g[o, k, i]`, deterministic.
        fn index_add<T>(gx: CudaViewMut<'_, T>, g: CudaView<'_, T>, ids: CudaView<'_, i32>, outer: i64, len: i64, inner: i64, nids: i64);
        /// `gather_last_f32`, `gather_last_f64`: `out[r] = x[r, ids[r]]`.
        fn gather_last<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, ids: CudaView<'_, i32>, rows: i64, cols: i64);
        /// `scatter_last_f32`, `scatter_last_f64`: `gx[r, j] = j == ids[r] ? g[r] : 0`.
        fn scatter_last<T>(gx: CudaViewMut<'_, T>, g: CudaView<'_, T>, ids: CudaView<'_, i32>, rows: i64, cols: i64);
    }
}

pub use raw::FLOAT_SIGNATURES;

fn grid(n: usize) -> LaunchCfg {
    LaunchCfg::elementwise(n, MAX_GRID_STRIDE_BLOCKS)
}

/// Gathers rows `ids` of `table [vocab, dim]` into `out [n, dim]`; out-of-range ids give NaN rows.
pub fn forward<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    table: CudaView<'_, T>,
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
    // SAFETY: sizes checked; ids are range-checked in the kernel.
    unsafe { raw::embedding_fwd(dev, grid(n * dim), out, table, ids, n as i64, d, v) }
}

/// One piece of [`scatter_rows`]: `values [ids.len(), row]` to add at rows `ids`.
#[derive(Debug)]
pub struct RowsPiece<'a, T> {
    /// Destination rows, one per row of `values` (repeats add up).
    pub ids: &'a [usize],
    /// The rows to add, row-major.
    pub values: CudaView<'a, T>,
}

/// `out [rows, row]`: adds every piece's rows at its ids, piece after piece and row after row
/// (the order, and so the bits, of a sequential loop over the pieces' rows), in one launch. The host groups
/// the rows by destination, keeping their order; the kernel gives each (destination, column)
/// its own thread, so the launch is as wide as the rows touched times `row`.
pub fn scatter_rows<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    out: CudaViewMut<'_, T>,
    rows: usize,
    row: usize,
    pieces: &[RowsPiece<'_, T>],
) -> Result<()> {
    check_len("scatter_rows", "out", out.len(), rows * row)?;
    let mut tokens: Vec<(usize, u64)> = Vec::new();
    for p in pieces {
        check_len("scatter_rows", "values", p.values.len(), p.ids.len() * row)?;
        if let Some(&bad) = p.ids.iter().find(|&&i| i >= rows) {
            return Err(Error::invalid(format!(
                "cuda scatter_rows: row {bad} out of range for {rows} rows"
            )));
        }
        let base = p.values.device_ptr();
        let bytes = (row * std::mem::size_of::<T>()) as u64;
        tokens.extend(
            p.ids
                .iter()
                .enumerate()
                .map(|(k, &i)| (i, base + k as u64 * bytes)),
        );
    }
    if tokens.is_empty() || row == 0 {
        return Ok(());
    }
    // A stable sort: each destination's rows stay in piece and row order.
    tokens.sort_by_key(|&(i, _)| i);
    let mut dest: Vec<u64> = Vec::new();
    let mut start: Vec<u64> = Vec::new();
    for (j, &(i, _)) in tokens.iter().enumerate() {
        if dest.last() != Some(&(i as u64)) {
            dest.push(i as u64);
            start.push(j as u64);
        }
    }
    start.push(tokens.len() as u64);
    let unique = dest.len();
    let mut words = dest;
    words.extend(start);
    words.extend(tokens.iter().map(|&(_, a)| a));
    let table = dev.htod(&words)?;
    // SAFETY: every destination row is below `rows` and `out` holds rows · row elements (checked
    // above); each source address is a row inside a view borrowed for this call; the table is
    // on the device before the kernel (same stream).
    unsafe {
        raw::scatter_rows(
            dev,
            grid(unique * row),
            out,
            table.view(),
            unique as i64,
            row as i64,
        )
    }
}

/// `out [outer, ids.len(), inner] = x [outer, len, inner]` at `ids` along the middle axis. The
/// ids must be below `len` (the tensor op checks them on the host; the kernel does not).
pub fn index_select<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    ids: CudaView<'_, i32>,
    dims: [usize; 3],
) -> Result<()> {
    let [outer, len, inner] = dims;
    let k = ids.len();
    check_len("index_select", "x", x.len(), outer * len * inner)?;
    check_len("index_select", "out", out.len(), outer * k * inner)?;
    let n = outer * k * inner;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked; the caller guarantees ids < len.
    unsafe {
        raw::index_select(
            dev,
            grid(n),
            out,
            x,
            ids,
            outer as i64,
            len as i64,
            inner as i64,
            k as i64,
        )
    }
}

/// `gx [outer, len, inner] += g [outer, ids.len(), inner]` at `ids` (accumulates; repeated ids
/// add up, in order). The ids must be below `len`.
pub fn index_add<T: CudaFloat>(
    dev: &CudaDevice,
    gx: CudaViewMut<'_, T>,
    g: CudaView<'_, T>,
    ids: CudaView<'_, i32>,
    dims: [usize; 3],
) -> Result<()> {
    let [outer, len, inner] = dims;
    let k = ids.len();
    check_len("index_add", "gx", gx.len(), outer * len * inner)?;
    check_len("index_add", "g", g.len(), outer * k * inner)?;
    if outer * inner * k == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked; the caller guarantees ids < len.
    unsafe {
        raw::index_add(
            dev,
            grid(outer * inner),
            gx,
            g,
            ids,
            outer as i64,
            len as i64,
            inner as i64,
            k as i64,
        )
    }
}

/// `out[r] = x[r, ids[r]]` for `x [rows, cols]`; ids below `cols`.
pub fn gather_last<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    ids: CudaView<'_, i32>,
    cols: usize,
) -> Result<()> {
    let rows = ids.len();
    check_len("gather_last", "x", x.len(), rows * cols)?;
    check_len("gather_last", "out", out.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked; the caller guarantees ids < cols.
    unsafe { raw::gather_last(dev, grid(rows), out, x, ids, rows as i64, cols as i64) }
}

/// `gx [rows, cols]` (every element written) `= g[r]` at `ids[r]`, 0 elsewhere.
pub fn scatter_last<T: CudaFloat>(
    dev: &CudaDevice,
    gx: CudaViewMut<'_, T>,
    g: CudaView<'_, T>,
    ids: CudaView<'_, i32>,
    cols: usize,
) -> Result<()> {
    let rows = ids.len();
    check_len("scatter_last", "gx", gx.len(), rows * cols)?;
    check_len("scatter_last", "g", g.len(), rows)?;
    if rows * cols == 0 {
        return Ok(());
    }
    // SAFETY: sizes checked; the caller guarantees ids < cols.
    unsafe { raw::scatter_last(dev, grid(rows * cols), gx, g, ids, rows as i64, cols as i64) }
}
