//! Choosing words on the device (`kernels/sample.cu`): drawing one per row of
//! log-probabilities, and the top `k` of each row for beam search.

use super::{check_len, row_grid, to_i32};
use crate::Result;
use crate::cuda::{CudaDevice, CudaView, CudaViewMut};

crate::__aoanet_cuda_kernels! { "sample";
    /// `words[r]` drawn from row `r` of `lp [rows, classes]` with the uniform `uniforms[r]`.
    fn sample_rows_f32(words: CudaViewMut<'_, i32>, lp: CudaView<'_, f32>, uniforms: CudaView<'_, f64>, rows: i64, classes: i32);
    /// The decoding loop's bookkeeping of step `t` (see [`advance_words`]).
    fn decode_advance(it: CudaViewMut<'_, i32>, unfinished: CudaViewMut<'_, i32>, seq: CudaViewMut<'_, i32>, alive: CudaViewMut<'_, i32>, words: CudaView<'_, i32>, rows: i64, len: i32, t: i32);
    /// The `k` largest entries of each row (value descending, index ascending).
    fn topk_rows_f32(values: CudaViewMut<'_, f32>, indices: CudaViewMut<'_, i32>, x: CudaView<'_, f32>, rows: i64, cols: i32, k: i32);
}

/// `words [rows]` (overwritten where `uniforms[r] ≥ 0`): for each such row of
/// `lp [rows, classes]`, the first word whose cumulative probability exceeds `uniforms[r]`
/// times the row's total (see the kernel's comment for the exact rule, shared with
/// `model::categorical::Rows`); a row with a negative number keeps its word.
pub fn sample_rows(
    dev: &CudaDevice,
    words: CudaViewMut<'_, i32>,
    lp: CudaView<'_, f32>,
    uniforms: CudaView<'_, f64>,
    rows: usize,
    classes: usize,
) -> Result<()> {
    check_len("sample_rows", "lp", lp.len(), rows * classes)?;
    check_len("sample_rows", "uniforms", uniforms.len(), rows)?;
    check_len("sample_rows", "words", words.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    if classes == 0 {
        return Err(crate::Error::invalid(
            "cuda sample_rows: rows of no classes",
        ));
    }
    let c = to_i32("sample_rows", "classes", classes)?;
    // SAFETY: sizes checked above; 256 threads is the kernel's maximum block.
    unsafe {
        sample_rows_f32(
            dev,
            row_grid(rows, 256),
            words,
            lp,
            uniforms,
            rows as i64,
            c,
        )
    }
}

/// `values [rows, k]` and `indices [rows, k]` (overwritten): the `k` largest entries of each
/// row of `x [rows, cols]` in the order of a stable descending sort (ties: lower index first);
/// NaN entries are skipped, and a row with fewer than `k` others pads with −∞ and index −1.
pub fn topk_rows(
    dev: &CudaDevice,
    values: CudaViewMut<'_, f32>,
    indices: CudaViewMut<'_, i32>,
    x: CudaView<'_, f32>,
    rows: usize,
    cols: usize,
    k: usize,
) -> Result<()> {
    check_len("topk_rows", "x", x.len(), rows * cols)?;
    check_len("topk_rows", "values", values.len(), rows * k)?;
    check_len("topk_rows", "indices", indices.len(), rows * k)?;
    if rows * k == 0 {
        return Ok(());
    }
    let (c, kk) = (
        to_i32("topk_rows", "cols", cols)?,
        to_i32("topk_rows", "k", k)?,
    );
    // SAFETY: sizes checked above; 256 threads is the kernel's maximum block.
    unsafe {
        topk_rows_f32(
            dev,
            row_grid(rows, 256),
            values,
            indices,
            x,
            rows as i64,
            c,
            kk,
        )
    }
}

/// The decoding loop's bookkeeping after step `t`'s words `words [rows]` are picked
/// (`AttModel._sample`): for each row, `unfinished[r] &= words[r] > 0`, then
/// `it[r] = seq[r · len + t] = unfinished[r] ? words[r] : 0`, and `alive[t]` grows by the
/// number of rows still unfinished (`alive` must start at zero). `it` is the next step's input;
/// `seq [rows, len]` collects the caption words.
#[allow(clippy::too_many_arguments)]
pub fn advance_words(
    dev: &CudaDevice,
    it: CudaViewMut<'_, i32>,
    unfinished: CudaViewMut<'_, i32>,
    seq: CudaViewMut<'_, i32>,
    alive: CudaViewMut<'_, i32>,
    words: CudaView<'_, i32>,
    len: usize,
    t: usize,
) -> Result<()> {
    let rows = words.len();
    check_len("advance_words", "it", it.len(), rows)?;
    check_len("advance_words", "unfinished", unfinished.len(), rows)?;
    check_len("advance_words", "seq", seq.len(), rows * len)?;
    check_len("advance_words", "alive", alive.len(), len)?;
    if t >= len {
        return Err(crate::Error::invalid(format!(
            "cuda advance_words: step {t} of a loop of {len}"
        )));
    }
    if rows == 0 {
        return Ok(());
    }
    let (l, tt) = (
        to_i32("advance_words", "len", len)?,
        to_i32("advance_words", "t", t)?,
    );
    // SAFETY: sizes checked above; t < len indexes `alive` and every row's `seq` slot.
    unsafe {
        decode_advance(
            dev,
            crate::cuda::LaunchCfg::elementwise(rows, super::MAX_GRID_STRIDE_BLOCKS),
            it,
            unfinished,
            seq,
            alive,
            words,
            rows as i64,
            l,
            tt,
        )
    }
}
