//! The non-beam path: greedy decoding and sampling, batched over rows exactly as the
//! reference's `AttModel._sample` (AttModel.py:194-276) with `CaptionModel.sample_next_word`
//! (AOANET.md 4.1).
//!
//! Per step t = 0, 1, …: run the decoder on the previous words (0 at t = 0), add the optional
//! constraints to the log-probabilities, pick a word per row, then
//! `unfinished &= word > 0; word *= unfinished` — a row that has emitted EOS keeps feeding 0.
//! The loop stops after `max_length` words or when every row has finished.
//!
//! What is recorded per step is what the reference records: the log-probability of the word
//! *picked* (before a finished row's word is forced to 0), so finished rows keep recording
//! values until the loop stops; steps after the stop are 0.
//!
//! This function does not switch gradients off: under [`crate::autograd::no_grad`] it is
//! evaluation decoding; with gradients on (self-critical training, dropout on), the returned
//! log-probabilities are differentiable with respect to the model's parameters.

use super::options::{DecodeOptions, SampleMethod};
use crate::Result;
use crate::model::categorical::{Rows, sample_from_logprobs};
use crate::model::{AoaModel, Encoded};
use crate::nn::Ctx;
#[cfg(feature = "cuda")]
use crate::tensor::Ids;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// The trigram penalty of the reference: `ln(1/2) · α` with α = 2, per previous occurrence.
const TRIGRAM_PENALTY: f64 = -0.693 * 2.0;

/// Decoded rows from [`sample`].
pub struct Samples {
    /// Number of rows R.
    pub rows: usize,
    /// Words per row (`max_length`).
    pub max_length: usize,
    /// The words `[R × max_length]`, row-major; 0 from a row's EOS on.
    pub seq: Vec<usize>,
    /// The log-probability of each picked word `[R, max_length]` (0 after the loop stopped),
    /// in the model's dtype; differentiable when decoding ran with gradients on.
    pub logprobs: Tensor,
    /// When asked for: the attention over regions at each step, averaged over heads,
    /// `attention[t]` = `[R × N]` row-major (one entry per step that ran).
    pub attention: Option<Vec<Vec<f32>>>,
}

impl Samples {
    /// Row `r`'s words (length `max_length`, zero-padded).
    pub fn row(&self, r: usize) -> &[usize] {
        &self.seq[r * self.max_length..(r + 1) * self.max_length]
    }
}

/// Decodes every row of `enc` with `opts` (its `sample_method`, `temperature`,
/// `decoding_constraint`, `remove_bad_endings`, `block_trigrams`, `max_length`; `beam_size`
/// is ignored). Random draws come from `ctx.rng`, so a seed fixes the result. Dropout follows
/// `ctx.train`.
///
/// Self-critical training (AOANET.md 3.2) calls it twice on the same rows: the greedy baseline
/// under `no_grad` with `Ctx::eval`, and the samples (`SampleMethod::Sample`) with gradients
/// on and `Ctx::train`, on an encoding expanded to n rows per image ([`Encoded::expand`]) or
/// encoded per row — the caller decides. The samples' `logprobs` then carry the graph back to
/// the parameters; entries after a row's EOS are finite and meant to be masked by the loss.
pub fn sample(
    model: &AoaModel,
    enc: &Encoded,
    opts: &DecodeOptions,
    ctx: &mut Ctx,
    with_attention: bool,
) -> Result<Samples> {
    opts.validate(model.config().vocab_size + 1)?;
    let maps = std::mem::replace(&mut ctx.attention_maps, with_attention);
    let result = sample_steps(model, enc, opts, ctx, with_attention);
    ctx.attention_maps = maps;
    result
}

/// [`sample`] with the context's attention maps set as asked.
fn sample_steps(
    model: &AoaModel,
    enc: &Encoded,
    opts: &DecodeOptions,
    ctx: &mut Ctx,
    with_attention: bool,
) -> Result<Samples> {
    #[cfg(feature = "cuda")]
    if enc.batch() > 0 && device_loop_applies(model, opts, with_attention) {
        return sample_on_device(model, enc, opts, ctx);
    }
    let classes = model.config().vocab_size + 1;
    let rows = enc.batch();
    let len = opts.max_length;
    let dtype = model.dtype();
    let mut state = model.try_init_state(rows)?;
    let device = model.device();
    let mut it = vec![0usize; rows];
    let mut seq = vec![0usize; rows * len];
    let mut unfinished = vec![true; rows];
    let mut picked: Vec<Tensor> = Vec::with_capacity(len);
    let mut attention = with_attention.then(Vec::new);
    let mut trigrams: Vec<HashMap<(usize, usize), Vec<usize>>> = vec![HashMap::new(); rows];
    for t in 0..len {
        let out = model.step(&it, enc, &state, ctx)?;
        state = out.state;
        if let Some(a) = attention.as_mut() {
            let maps = out.attention.ok_or_else(|| {
                crate::Error::invalid("sample: the decoder returned no attention maps")
            })?;
            a.push(maps.to_vec_f32());
        }
        let adjust = constraints(opts, &seq, len, t, classes, &mut trigrams);
        let logprobs = match adjust {
            Some(adj) => out.logprobs.add(
                &Tensor::from_vec(adj, &[rows, classes])?
                    .to_dtype(dtype)?
                    .to_device(device)?,
            )?,
            None => out.logprobs,
        };
        let (words, lp) = next_word(&logprobs, opts, ctx)?;
        for r in 0..rows {
            // The reference: `unfinished = it > 0` at t = 0, then `unfinished *= it > 0`.
            unfinished[r] &= words[r] > 0;
            it[r] = if unfinished[r] { words[r] } else { 0 };
            seq[r * len + t] = it[r];
        }
        picked.push(lp.unsqueeze(1)?);
        if !unfinished.iter().any(|&u| u) {
            break;
        }
    }
    let logprobs = recorded(picked, rows, len, dtype, device)?;
    Ok(Samples {
        rows,
        max_length: len,
        seq,
        logprobs,
        attention,
    })
}

#[cfg(feature = "cuda")]
thread_local! {
    static DEVICE_LOOP: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Whether [`sample`] on a GPU keeps the loop's words on the device (`true`, the default) or
/// reads each step's words back before queuing the next step (the host loop: the baseline
/// the `gpu_model` bench and the tests compare with). Both give the same captions,
/// log-probabilities, gradients and generator state. Set per thread.
#[cfg(feature = "cuda")]
pub fn set_device_loop(on: bool) {
    DEVICE_LOOP.with(|d| d.set(on));
}

/// The recorded log-probabilities `[rows, len]` from the steps' `[rows, 1]` columns; steps
/// after the loop stopped record 0, as the reference's zero-initialised buffer.
fn recorded(
    mut picked: Vec<Tensor>,
    rows: usize,
    len: usize,
    dtype: crate::tensor::DType,
    device: crate::tensor::Device,
) -> Result<Tensor> {
    if picked.len() < len {
        picked.push(Tensor::zeros_on(
            &[rows, len - picked.len()],
            dtype,
            device,
        )?);
    }
    let parts: Vec<&Tensor> = picked.iter().collect();
    Tensor::concat(&parts, 1)
}

/// Whether the loop runs on the device ([`sample_on_device`]): a model on a GPU, greedy
/// decoding or plain sampling (f32: the sampling kernel's type), no attention maps to read
/// back and no constraint that looks at the words on the host.
#[cfg(feature = "cuda")]
fn device_loop_applies(model: &AoaModel, opts: &DecodeOptions, with_attention: bool) -> bool {
    let method = match opts.sample_method {
        SampleMethod::Greedy => true,
        SampleMethod::Sample => model.dtype() == crate::tensor::DType::F32,
        SampleMethod::TopK(_) | SampleMethod::TopP(_) => false,
    };
    DEVICE_LOOP.with(|d| d.get())
        && matches!(model.device(), crate::tensor::Device::Cuda(_))
        && method
        && !with_attention
        && !opts.block_trigrams
        && !opts.remove_bad_endings
        && !opts.decoding_constraint
}

/// The loop of [`sample`] with its words on the GPU: each step's words are picked there
/// (arg-max or the sampling kernel), the bookkeeping of finished rows runs there
/// (`kernels/sample.cu`: `decode_advance`) and the next step reads its inputs there, so the
/// host queues step after step without waiting. Whether every row has finished after step
/// `t` is read once step `t + 1` is queued (a later read, which waits only for step `t`):
/// when it has, step `t + 1` is dropped unrecorded and the generator rewound to before it,
/// so the result (words, recorded log-probabilities, gradients, the generator's state after)
/// is the host loop's. The captions are read once at the end.
#[cfg(feature = "cuda")]
fn sample_on_device(
    model: &AoaModel,
    enc: &Encoded,
    opts: &DecodeOptions,
    ctx: &mut Ctx,
) -> Result<Samples> {
    use crate::cuda::ops::decode::DeviceWords;
    let rows = enc.batch();
    let len = opts.max_length;
    let (dtype, device) = (model.dtype(), model.device());
    let mut state = model.try_init_state(rows)?;
    let mut loop_words = DeviceWords::new(&enc.mean_feats, rows, len)?;
    let mut it = Ids::from(vec![0usize; rows]);
    // Every step's input after the first (their host copies come from the captions).
    let mut inputs: Vec<Ids> = Vec::with_capacity(len);
    let mut picked: Vec<Tensor> = Vec::with_capacity(len);
    let mut previous_count: Option<crate::cuda::LaterRead<i32>> = None;
    for t in 0..len {
        let before = ctx.rng.state();
        let out = model.step_ids(&it, enc, &state, ctx)?;
        let (words, lp) = next_word_on_device(&out.logprobs, opts, ctx, &loop_words)?;
        let (next, count) = loop_words.advance(&words, t)?;
        // Step t − 1's count, read now that step t is queued: zero means the host loop
        // would have stopped before step t.
        if let Some(read) = previous_count.take()
            && read.wait()?[0] == 0
        {
            *ctx.rng = crate::rng::Philox::from_state(before);
            break;
        }
        picked.push(lp.unsqueeze(1)?);
        state = out.state;
        inputs.push(next.clone());
        it = next;
        previous_count = Some(count);
    }
    let seq = loop_words.seq()?;
    for (t, input) in inputs.iter().enumerate() {
        input.know((0..rows).map(|r| seq[r * len + t]).collect());
    }
    Ok(Samples {
        rows,
        max_length: len,
        seq,
        logprobs: recorded(picked, rows, len, dtype, device)?,
        attention: None,
    })
}

/// [`next_word`] for the device loop: the words stay on the device.
#[cfg(feature = "cuda")]
fn next_word_on_device(
    logprobs: &Tensor,
    opts: &DecodeOptions,
    ctx: &mut Ctx,
    loop_words: &crate::cuda::ops::decode::DeviceWords,
) -> Result<(Ids, Tensor)> {
    if opts.sample_method == SampleMethod::Greedy {
        let words = loop_words.argmax(logprobs)?;
        let lp = logprobs.gather_last_ids(&words)?;
        return Ok((words, lp));
    }
    let scaled = scale(logprobs, opts.temperature)?;
    let u: Vec<f64> = (0..scaled.shape()[0]).map(|_| ctx.rng.next_f64()).collect();
    let words = loop_words.sample(&scaled, &u)?;
    let lp = scaled.gather_last_ids(&words)?;
    Ok((words, lp))
}

/// `logprobs / temperature` (division, as the reference; skipped at 1, where it is exact).
fn scale(logprobs: &Tensor, temperature: f64) -> Result<Tensor> {
    if temperature == 1.0 {
        return Ok(logprobs.clone());
    }
    logprobs.div(&Tensor::full_on(
        &[],
        temperature,
        logprobs.dtype(),
        logprobs.device(),
    )?)
}

/// The additive adjustments of step `t` (`[R × C]`, row-major), or `None` when there are
/// none: −∞ on the previous word (`decoding_constraint`), −∞ on EOS after a bad ending
/// (`remove_bad_endings`), and −0.693·2 per earlier occurrence of each trigram
/// (`block_trigrams`, from t = 3). `trigrams` is the per-row memory the reference keeps.
fn constraints(
    opts: &DecodeOptions,
    seq: &[usize],
    len: usize,
    t: usize,
    classes: usize,
    trigrams: &mut [HashMap<(usize, usize), Vec<usize>>],
) -> Option<Vec<f64>> {
    let rows = trigrams.len();
    let block = opts.block_trigrams && t >= 3;
    let bad = opts.remove_bad_endings && t > 0;
    let constrain = opts.decoding_constraint && t > 0;
    if !(block || bad || constrain) {
        return None;
    }
    let mut adj = vec![0.0f64; rows * classes];
    for r in 0..rows {
        let s = &seq[r * len..(r + 1) * len];
        let row = &mut adj[r * classes..(r + 1) * classes];
        if constrain {
            row[s[t - 1]] = f64::NEG_INFINITY;
        }
        if bad && opts.bad_endings.contains(&s[t - 1]) {
            row[0] = f64::NEG_INFINITY;
        }
        if block {
            // Remember the trigram completed at the previous step, then penalise every word
            // that completed the current prefix before.
            trigrams[r]
                .entry((s[t - 3], s[t - 2]))
                .or_default()
                .push(s[t - 1]);
            if let Some(words) = trigrams[r].get(&(s[t - 2], s[t - 1])) {
                let mut counts: HashMap<usize, f64> = HashMap::new();
                for &w in words {
                    *counts.entry(w).or_default() += 1.0;
                }
                for (w, n) in counts {
                    row[w] += n * TRIGRAM_PENALTY;
                }
            }
        }
    }
    Some(adj)
}

/// Picks one word per row of `logprobs [R, C]`; returns the words and the log-probability
/// the reference records for them (`[R]`, differentiable through `logprobs`).
fn next_word(
    logprobs: &Tensor,
    opts: &DecodeOptions,
    ctx: &mut Ctx,
) -> Result<(Vec<usize>, Tensor)> {
    let classes = logprobs.shape()[1];
    if opts.sample_method == SampleMethod::Greedy {
        let words = logprobs.argmax_last()?;
        let lp = logprobs.gather_last(&words)?;
        return Ok((words, lp));
    }
    let scaled = scale(logprobs, opts.temperature)?;
    if opts.sample_method == SampleMethod::Sample {
        let mut rows = Rows::new(&scaled)?;
        let u: Vec<f64> = (0..rows.len()).map(|_| ctx.rng.next_f64()).collect();
        let words = rows.draw_all(&u)?;
        let lp = scaled.gather_last(&words)?;
        return Ok((words, lp));
    }
    let values = scaled.to_vec_f64();
    let rows = values.len() / classes;
    let mut words = Vec::with_capacity(rows);
    match opts.sample_method {
        SampleMethod::Greedy | SampleMethod::Sample => unreachable!("handled above"),
        SampleMethod::TopK(k) => {
            // Draw among the k largest (ties: the lowest ids); the recorded value is the
            // scaled log-probability itself, unnormalised, as the reference gathers it.
            let mut restricted = vec![f64::NEG_INFINITY; classes];
            for row in values.chunks_exact(classes) {
                restricted.fill(f64::NEG_INFINITY);
                for i in top_indices(row, k) {
                    restricted[i] = row[i];
                }
                words.push(sample_from_logprobs(&restricted, ctx.rng.next_f64()));
            }
            Ok((words.clone(), scaled.gather_last(&words)?))
        }
        SampleMethod::TopP(p) => {
            // softmax, sort descending, keep while the cumulative sum before a word is < p
            // (the first word always), renormalise; the recorded value is the log of the
            // renormalised probability.
            let probs = scaled.softmax()?;
            let pv = probs.to_vec_f64();
            let mut keep = vec![0.0f64; rows * classes];
            let mut restricted = vec![f64::NEG_INFINITY; classes];
            for (r, row) in pv.chunks_exact(classes).enumerate() {
                let order = top_indices(row, classes);
                restricted.fill(f64::NEG_INFINITY);
                let mut cum = 0.0;
                for (n, &i) in order.iter().enumerate() {
                    if n > 0 && cum >= p {
                        break;
                    }
                    cum += row[i];
                    keep[r * classes + i] = 1.0;
                    restricted[i] = row[i].ln();
                }
                words.push(sample_from_logprobs(&restricted, ctx.rng.next_f64()));
            }
            let keep = Tensor::from_vec(keep, &[rows, classes])?
                .to_dtype(probs.dtype())?
                .to_device(probs.device())?;
            let kept = probs.mul(&keep)?.sum_axis(1, false)?;
            let lp = probs.gather_last(&words)?.div(&kept)?.log()?;
            Ok((words, lp))
        }
    }
}

/// The indices of the `k` largest values of `row`, largest first; equal values in index order
/// (a stable descending sort).
pub(crate) fn top_indices<T: PartialOrd + Copy>(row: &[T], k: usize) -> Vec<usize> {
    let k = k.min(row.len());
    if k == row.len() {
        let mut all: Vec<usize> = (0..row.len()).collect();
        all.sort_by(|&a, &b| {
            row[b]
                .partial_cmp(&row[a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        return all;
    }
    // Insertion into a short sorted list: O(C·k) with k the beam size, no allocation per
    // element.
    let mut top: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &v) in row.iter().enumerate() {
        if top.len() == k && v.partial_cmp(&row[top[k - 1]]) != Some(std::cmp::Ordering::Greater) {
            continue;
        }
        let pos = top.iter().position(|&j| v > row[j]).unwrap_or(top.len());
        top.insert(pos, i);
        top.truncate(k);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_indices_are_a_stable_descending_sort() {
        let row = [0.5f32, 2.0, -1.0, 2.0, 0.5, f32::NEG_INFINITY];
        assert_eq!(top_indices(&row, 1), vec![1]);
        assert_eq!(top_indices(&row, 3), vec![1, 3, 0]);
        assert_eq!(top_indices(&row, 6), vec![1, 3, 0, 4, 2, 5]);
        assert_eq!(top_indices(&row, 9), vec![1, 3, 0, 4, 2, 5]);
    }

    #[test]
    fn constraints_follow_the_reference() {
        let (len, classes) = (9, 6);
        // Row 0 repeats the trigram (1, 2) → 3 and is at prefix (1, 2) again; row 1 ends
        // with bad ending 4.
        let seq = [
            [1, 2, 3, 1, 2, 3, 1, 2, 0], //
            [5, 4, 5, 4, 0, 0, 0, 0, 0],
        ]
        .concat();
        let opts = DecodeOptions {
            block_trigrams: true,
            decoding_constraint: true,
            remove_bad_endings: true,
            bad_endings: vec![4],
            ..DecodeOptions::greedy(len)
        };
        let mut trigrams = vec![HashMap::new(); 2];
        for t in 0..=1 {
            let adj = constraints(&opts, &seq, len, t, classes, &mut trigrams);
            if t == 0 {
                assert!(adj.is_none(), "nothing applies at t = 0");
            }
        }
        // Steps 2..9 as the decoder walks them (the memory is built step by step).
        let mut last = Vec::new();
        for t in 2..len {
            last = constraints(&opts, &seq, len, t, classes, &mut trigrams).unwrap();
            if t == 4 {
                // Row 1 after "5 4 5 4": EOS forbidden and 4 forbidden.
                let r1 = &last[classes..];
                assert_eq!(r1[0], f64::NEG_INFINITY);
                assert_eq!(r1[4], f64::NEG_INFINITY);
            }
        }
        // t = 8, row 0: prefix (1, 2), seen completed by 3 twice (at 2 and 5).
        let r0 = &last[..classes];
        assert_eq!(r0[2], f64::NEG_INFINITY, "previous word");
        assert_eq!(r0[3], 2.0 * TRIGRAM_PENALTY);
        assert_eq!(r0[0], 0.0);
        assert_eq!(r0[1], 0.0);
        // Nothing applies without the options.
        let none = DecodeOptions::greedy(len);
        assert!(constraints(&none, &seq, len, 5, classes, &mut trigrams).is_none());
    }
}
