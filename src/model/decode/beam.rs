//! Beam search with the reference's semantics (`CaptionModel.beam_search` driven by
//! `AttModel._sample_beam`, AOANET.md 4.2), run for all images of a batch at once.
//!
//! The reference searches one image at a time; here every step runs the decoder once for all
//! images × beams, and the per-image bookkeeping below reproduces the reference's choices
//! exactly:
//!
//! - the first step (word 0, zero state) gives `init_logprobs` straight from the model; every
//!   later step's log-probabilities go through a second `log_softmax(logprobs / T)`;
//! - the log-probabilities are rounded to f32 (`.float()`) and the running sums are f32, so
//!   candidate scores round and tie as in the reference;
//! - at local time s of a group: −∞ on the previous word (`decoding_constraint`, s > 0), −∞ on
//!   EOS after a bad ending (`remove_bad_endings`, s > 0), −1000 on the last class (UNK,
//!   always), then −λ per choice of an earlier group at the same local time (diversity);
//! - `beam_step`: each beam's row sorted descending; candidates enumerated by sorted column c,
//!   then beam q (only beam 0 at s = 0); stably sorted by `sum[q] + value` descending; the
//!   best B′ (= beam_size / group_size) continue, copying their parent's words, per-word
//!   log-probabilities (the values *without* the diversity penalty) and state;
//! - a beam whose new word is EOS, and every beam at s = max_length − 1, is pushed to the
//!   finished list with score `length_penalty(s + 1, sum)`; its running sum becomes −1000 (it
//!   keeps its slot and is fed word 0);
//! - group g starts at global time g (the reference's time offsets); the finished lists are
//!   sorted by score (stable) and the best B′ of each group kept, groups concatenated; the
//!   first is the caption.
//!
//! Each row's distribution is kept as its `k` best words only (`Candidates`: a stable
//! descending sort's prefix), with `k` the number of words a step picks from per row plus the
//! most words the step's adjustments can lower: every adjustment above only lowers a value,
//! so a word outside that prefix can never overtake `k − (lowered words)` ≥ B′ words of it,
//! and the search picks exactly what it would from the whole row. On a CUDA device the
//! renormalisation and the prefix are computed there (`kernels/sample.cu`, `topk_rows_f32`)
//! and only `[rows, k]` comes back instead of `[rows, V+1]`.
//!
//! Two savings that do not change any result: the first step runs once per image (all its
//! beams are identical), and an image whose B′-th best finished score is at least every live
//! running sum is settled early — later beams can only score lower and sort after the ties
//! (only with one group and no length penalty, where scores never rise).

use super::options::{DecodeOptions, LengthPenalty};
use super::sample::top_indices;
use crate::autograd::no_grad;
use crate::cpu::parallel::num_threads;
use crate::model::{AoaModel, DecoderState, Encoded};
use crate::nn::Ctx;
use crate::rng::Philox;
use crate::tensor::Float;
use crate::tensor::Tensor;
use crate::{Result, with_float};

/// One finished beam.
#[derive(Clone, Debug, PartialEq)]
pub struct Beam {
    /// The words, `max_length` long, zero-padded (the EOS included when there is one).
    pub seq: Vec<usize>,
    /// The log-probability of each word as the search saw it (f32, UNK suppression and
    /// constraints included, diversity excluded), 0 after the beam finished.
    pub logprobs: Vec<f32>,
    /// The ranking score: `length_penalty(len, summed log-probability)`.
    pub score: f64,
    /// When asked for: the attention over regions (averaged over heads) when each word was
    /// chosen, one `[N]` vector per word up to and including the EOS.
    pub attention: Option<Vec<Vec<f32>>>,
}

/// The beams returned for one image: the best `beam_size / group_size` of each group, groups
/// in order, each group best first.
#[derive(Clone, Debug, PartialEq)]
pub struct BeamResult {
    /// The returned beams; `beams[0]` is the caption.
    pub beams: Vec<Beam>,
}

impl BeamResult {
    /// The caption: the best beam of the first group.
    pub fn best(&self) -> &Beam {
        &self.beams[0]
    }
}

/// A live beam of one group.
#[derive(Clone)]
struct Slot {
    seq: Vec<usize>,
    logps: Vec<f32>,
    sum: f32,
    attention: Vec<Vec<f32>>,
}

/// The search state of one group of one image.
struct Group {
    slots: Vec<Slot>,
    done: Vec<Beam>,
}

/// One image's search.
struct ImageSearch {
    groups: Vec<Group>,
}

/// The `k` best words of each row and their f32 log-probabilities, in the order of a stable
/// descending sort (ties: lower word first). Rows with fewer than `k` usable entries end with
/// word `u32::MAX`.
#[derive(Clone, Debug, Default)]
struct Candidates {
    k: usize,
    words: Vec<u32>,
    values: Vec<f32>,
}

impl Candidates {
    const NONE: u32 = u32::MAX;

    /// From full rows `[rows, c]` on the host.
    fn from_rows(lp: &[f32], c: usize, k: usize) -> Candidates {
        let rows = lp.len() / c;
        let mut out = Candidates {
            k,
            words: vec![Self::NONE; rows * k],
            values: vec![f32::NEG_INFINITY; rows * k],
        };
        let per = rows_per_thread(rows);
        std::thread::scope(|s| {
            for ((src, words), values) in lp
                .chunks(per * c)
                .zip(out.words.chunks_mut(per * k))
                .zip(out.values.chunks_mut(per * k))
            {
                s.spawn(move || {
                    for ((row, w), v) in src
                        .chunks_exact(c)
                        .zip(words.chunks_exact_mut(k))
                        .zip(values.chunks_exact_mut(k))
                    {
                        for (j, i) in top_indices(row, k).into_iter().enumerate() {
                            w[j] = i as u32;
                            v[j] = row[i];
                        }
                    }
                });
            }
        });
        out
    }

    /// The `k` best of every row of f32 `lp [rows, c]` on a CUDA device, computed there.
    #[cfg(feature = "cuda")]
    fn on_device(lp: &Tensor, k: usize) -> Result<Candidates> {
        let (values, words) = crate::cuda::ops::topk_rows(lp, k)?;
        Ok(Candidates {
            k,
            words: words
                .into_iter()
                .map(|w| u32::try_from(w).unwrap_or(Self::NONE))
                .collect(),
            values,
        })
    }

    /// Rows `rows` of this, in order.
    fn select(&self, rows: &[usize]) -> Candidates {
        let k = self.k;
        Candidates {
            k,
            words: rows
                .iter()
                .flat_map(|&r| self.words[r * k..(r + 1) * k].iter().copied())
                .collect(),
            values: rows
                .iter()
                .flat_map(|&r| self.values[r * k..(r + 1) * k].iter().copied())
                .collect(),
        }
    }

    /// Row `r`'s words and values.
    fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let k = self.k;
        (
            &self.words[r * k..(r + 1) * k],
            &self.values[r * k..(r + 1) * k],
        )
    }

    /// Overwrites row `dst` with row `src` of `from`.
    fn set_row(&mut self, dst: usize, from: &Candidates, src: usize) {
        let k = self.k;
        let (w, v) = from.row(src);
        self.words[dst * k..(dst + 1) * k].copy_from_slice(w);
        self.values[dst * k..(dst + 1) * k].copy_from_slice(v);
    }
}

/// Beam search for every row (image) of `enc`, with `opts` (`beam_size`, `group_size`,
/// `diversity_lambda`, `decoding_constraint`, `remove_bad_endings`, `length_penalty`,
/// `temperature`, `max_length`). Runs in evaluation mode without a graph.
pub fn beam_search(
    model: &AoaModel,
    enc: &Encoded,
    opts: &DecodeOptions,
    with_attention: bool,
) -> Result<Vec<BeamResult>> {
    let classes = model.config().vocab_size + 1;
    opts.validate(classes)?;
    no_grad(|| Search::new(model, opts, classes, with_attention).run(enc))
}

/// The batched search: rows are laid out image-major, then group, then beam.
struct Search<'a> {
    model: &'a AoaModel,
    opts: &'a DecodeOptions,
    classes: usize,
    groups: usize,
    per_group: usize,
    with_attention: bool,
    /// Candidates kept per row instead of [`Search::candidates_per_row`]'s (tests: the whole
    /// row, to check that the prefix changes nothing).
    keep: Option<usize>,
}

impl<'a> Search<'a> {
    fn new(
        model: &'a AoaModel,
        opts: &'a DecodeOptions,
        classes: usize,
        with_attention: bool,
    ) -> Self {
        Search {
            model,
            opts,
            classes,
            groups: opts.group_size,
            per_group: opts.beam_size / opts.group_size,
            with_attention,
            keep: None,
        }
    }

    fn run(&self, enc: &Encoded) -> Result<Vec<BeamResult>> {
        let images = enc.batch();
        let beam = self.opts.beam_size;
        let len = self.opts.max_length;
        let mut rng = Philox::new(0);
        let mut ctx = Ctx::eval(&mut rng).with_attention_maps(self.with_attention);

        // The first step, once per image: word 0 from the zero state.
        let first = self.model.step(
            &vec![0; images],
            enc,
            &self.model.try_init_state(images)?,
            &mut ctx,
        )?;
        let first_lp = self.candidates(&first.logprobs, false)?;
        let first_att = self.attention_rows(first.attention.as_ref(), images)?;
        let expand: Vec<usize> = (0..images * beam).map(|r| r / beam).collect();
        let mut state = first.state.select_rows(&expand)?;
        // An image's beams are queries against one copy of its regions (as captions in
        // training): a beam-th of the key and value reads of copying them per beam.
        // (An encoding whose rows already share regions gets a copy per row first, so that
        // an image of the search is one row of region tensors.)
        let own;
        let enc = if enc.group == 1 {
            enc
        } else {
            own = enc.select_rows(&(0..images).collect::<Vec<_>>())?;
            &own
        };
        let mut enc_rows = enc.expand(beam)?;
        let mut lp = first_lp.select(&expand);
        let mut att: Vec<Vec<f32>> = expand.iter().map(|&i| first_att[i].clone()).collect();

        let mut searches: Vec<ImageSearch> = (0..images)
            .map(|_| ImageSearch {
                groups: (0..self.groups)
                    .map(|_| Group {
                        slots: vec![
                            Slot {
                                seq: vec![0; len],
                                logps: vec![0.0; len],
                                sum: 0.0,
                                attention: Vec::new(),
                            };
                            self.per_group
                        ],
                        done: Vec::new(),
                    })
                    .collect(),
            })
            .collect();
        // The images still searching, in row order.
        let mut live: Vec<usize> = (0..images).collect();

        for t in 0..len + self.groups - 1 {
            // Per kept row: its parent row (old numbering), its next word, whether it steps.
            let mut parents = Vec::with_capacity(live.len() * beam);
            let mut words = Vec::with_capacity(live.len() * beam);
            let mut steps = Vec::new();
            // Positions in `live` of the images that go on.
            let mut kept = Vec::with_capacity(live.len());
            let mut still_live = Vec::with_capacity(live.len());
            for (k, &image) in live.iter().enumerate() {
                let search = &mut searches[image];
                let block = parents.len();
                for g in 0..self.groups {
                    let base = (k * self.groups + g) * self.per_group;
                    let active = g <= t && t < len + g;
                    if !active {
                        for b in 0..self.per_group {
                            parents.push(base + b);
                            words.push(0);
                        }
                        continue;
                    }
                    let local = t - g;
                    let rows = base..base + self.per_group;
                    let from = self.beam_step(search, g, local, &lp, rows.start, &att[rows]);
                    for (vix, q) in from.into_iter().enumerate() {
                        parents.push(base + q);
                        words.push(search.groups[g].slots[vix].seq[local]);
                        if local + 1 < len {
                            steps.push(block + g * self.per_group + vix);
                        }
                    }
                }
                if self.settled(search, t) {
                    // Drop the block: this image's results are final.
                    parents.truncate(block);
                    words.truncate(block);
                    steps.retain(|&r| r < block);
                } else {
                    still_live.push(image);
                    kept.push(k);
                }
            }
            let dropped = still_live.len() != live.len();
            live = still_live;
            if live.is_empty() {
                break;
            }
            if dropped {
                enc_rows = enc_rows.select_images(&kept)?;
            }
            state = state.select_rows(&parents)?;
            // Rows that do not step keep their parent's log-probabilities (groups that have
            // not started yet keep the first step's).
            let mut new_lp = lp.select(&parents);
            let mut new_att = vec![Vec::new(); parents.len()];
            let mut stepping = vec![false; parents.len()];
            for &r in &steps {
                stepping[r] = true;
            }
            for (r, &p) in parents.iter().enumerate() {
                if !stepping[r] {
                    new_att[r] = att[p].clone();
                }
            }
            if !steps.is_empty() {
                let all = steps.len() == parents.len();
                let (sub_enc, sub_state) = if all {
                    (enc_rows.clone(), state.clone())
                } else {
                    (enc_rows.select_rows(&steps)?, state.select_rows(&steps)?)
                };
                let it: Vec<usize> = steps.iter().map(|&r| words[r]).collect();
                let out = self.model.step(&it, &sub_enc, &sub_state, &mut ctx)?;
                let next = self.candidates(&out.logprobs, true)?;
                let next_att = self.attention_rows(out.attention.as_ref(), steps.len())?;
                for (k, &r) in steps.iter().enumerate() {
                    new_lp.set_row(r, &next, k);
                    new_att[r] = next_att[k].clone();
                }
                state = if all {
                    out.state
                } else {
                    merge_rows(&state, &out.state, &steps)?
                };
            }
            lp = new_lp;
            att = new_att;
        }

        Ok(searches
            .into_iter()
            .map(|s| BeamResult {
                beams: s
                    .groups
                    .into_iter()
                    .flat_map(|g| self.best_done(g.done))
                    .collect(),
            })
            .collect())
    }

    /// One `beam_step` of group `g` of one image at local time `local` over its rows' f32
    /// log-probabilities (rows `first ..` of `lp`, one per beam, and the attention that
    /// produced each); returns each new beam's parent (0..B′) and pushes the beams that
    /// finish.
    fn beam_step(
        &self,
        search: &mut ImageSearch,
        g: usize,
        local: usize,
        lp: &Candidates,
        first: usize,
        att: &[Vec<f32>],
    ) -> Vec<usize> {
        let c = self.classes;
        let opts = self.opts;
        let bdash = self.per_group;
        let len = opts.max_length;
        // The words earlier groups chose at this local time (each beam's, repeats kept).
        let earlier: Vec<usize> = search.groups[..g]
            .iter()
            .flat_map(|pg| pg.slots.iter().map(|s| s.seq[local]))
            .collect();
        let group = &mut search.groups[g];
        let rows = if local == 0 { 1 } else { bdash };
        let cols = bdash.min(c);
        // Per beam q: (word, augmented value, raw value) for its top `cols` sorted words,
        // from the row's candidates with the step's adjustments applied.
        let mut tops: Vec<Vec<(usize, f32, f32)>> = Vec::with_capacity(rows);
        for q in 0..rows {
            let prev = (local > 0).then(|| group.slots[q].seq[local - 1]);
            let bad_ending =
                prev.is_some_and(|p| opts.remove_bad_endings && opts.bad_endings.contains(&p));
            let (words, values) = lp.row(first + q);
            let mut top: Vec<(usize, f32, f32)> = words
                .iter()
                .zip(values)
                .filter(|(w, _)| **w != Candidates::NONE)
                .map(|(&w, &v)| {
                    let w = w as usize;
                    let mut v = v;
                    if opts.decoding_constraint && prev == Some(w) {
                        v = f32::NEG_INFINITY;
                    }
                    if bad_ending && w == 0 {
                        v = f32::NEG_INFINITY;
                    }
                    if w == c - 1 {
                        v -= 1000.0;
                    }
                    let raw = v;
                    for &e in &earlier {
                        if e == w {
                            v -= opts.diversity_lambda as f32;
                        }
                    }
                    (w, v, raw)
                })
                .collect();
            // A stable descending sort of the whole row: ties by word.
            top.sort_by(|a, b| {
                b.1.partial_cmp(&a.1)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.0.cmp(&b.0))
            });
            top.truncate(cols);
            tops.push(top);
        }
        // Candidates column-major (c, then q), as the reference enumerates them.
        struct Candidate {
            q: usize,
            word: usize,
            p: f32,
            raw: f32,
        }
        let mut candidates = Vec::with_capacity(rows * cols);
        for col in 0..cols {
            for (q, top) in tops.iter().enumerate() {
                let Some(&(word, value, raw)) = top.get(col) else {
                    continue;
                };
                candidates.push(Candidate {
                    q,
                    word,
                    p: group.slots[q].sum + value,
                    raw,
                });
            }
        }
        // Stable: equal scores keep the enumeration order, as Python's `sorted`.
        candidates.sort_by(|a, b| b.p.partial_cmp(&a.p).unwrap_or(std::cmp::Ordering::Equal));
        let mut slots = Vec::with_capacity(bdash);
        let mut parents = Vec::with_capacity(bdash);
        for v in candidates.iter().take(bdash) {
            let mut s = group.slots[v.q].clone();
            s.seq[local] = v.word;
            s.logps[local] = v.raw;
            s.sum = v.p;
            if self.with_attention {
                s.attention.push(att[v.q].clone());
            }
            slots.push(s);
            parents.push(v.q);
        }
        for s in &mut slots {
            if s.seq[local] == 0 || local == len - 1 {
                group.done.push(Beam {
                    seq: s.seq.clone(),
                    logprobs: s.logps.clone(),
                    score: opts.length_penalty.apply(local + 1, s.sum as f64),
                    attention: self.with_attention.then(|| s.attention.clone()),
                });
                s.sum = -1000.0;
            }
        }
        group.slots = slots;
        parents
    }

    /// Whether an image's result can no longer change after global step `t`: one group, no
    /// length penalty (so a beam's score never rises), and its B′-th best finished score is
    /// at least every running sum (any later finished beam scores at most that, and sorts
    /// after equal scores already found).
    fn settled(&self, search: &ImageSearch, t: usize) -> bool {
        if self.groups != 1
            || self.opts.length_penalty != LengthPenalty::None
            || t + 1 >= self.opts.max_length
        {
            return false;
        }
        let group = &search.groups[0];
        if group.done.len() < self.per_group {
            return false;
        }
        let mut scores: Vec<f64> = group.done.iter().map(|b| b.score).collect();
        scores.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
        let kth = scores[self.per_group - 1];
        group.slots.iter().all(|s| kth >= s.sum as f64)
    }

    /// The best B′ finished beams, stably sorted by score.
    fn best_done(&self, mut done: Vec<Beam>) -> Vec<Beam> {
        done.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        done.truncate(self.per_group);
        done
    }

    /// How many best words per row a step needs (see the module documentation): the B′ it
    /// picks from plus every word its adjustments can lower (the previous word, EOS after a
    /// bad ending, UNK, earlier groups' choices); the whole row if diversity could raise one.
    fn candidates_per_row(&self) -> usize {
        let c = self.classes;
        if let Some(k) = self.keep {
            return k.min(c);
        }
        let opts = self.opts;
        if self.groups > 1 && opts.diversity_lambda < 0.0 {
            return c;
        }
        let lowered = 1
            + usize::from(opts.decoding_constraint)
            + usize::from(opts.remove_bad_endings)
            + (self.groups - 1) * self.per_group;
        (self.per_group.min(c) + lowered).min(c)
    }

    /// The candidates of every row of `logprobs` (the first step's, or with `renormalise` a
    /// later step's `log_softmax(logprobs / T)`), rounded to f32 (`.float()`).
    fn candidates(&self, logprobs: &Tensor, renormalise: bool) -> Result<Candidates> {
        let k = self.candidates_per_row();
        #[cfg(feature = "cuda")]
        if logprobs.is_cuda() && logprobs.dtype() == crate::tensor::DType::F32 {
            let lp = if renormalise {
                let t = self.opts.temperature;
                let scaled = if t == 1.0 {
                    logprobs.clone()
                } else {
                    logprobs.div(&Tensor::full_on(
                        &[],
                        t,
                        logprobs.dtype(),
                        logprobs.device(),
                    )?)?
                };
                scaled.log_softmax()?
            } else {
                logprobs.clone()
            };
            return Candidates::on_device(&lp, k);
        }
        let rows = if renormalise {
            self.renormalise(logprobs)?
        } else {
            logprobs.to_vec_f32()
        };
        Ok(Candidates::from_rows(&rows, self.classes, k))
    }

    /// `log_softmax(logprobs / T)` in the model's dtype, rounded to f32 (`.float()`): one
    /// pass over the rows, split across threads (at full size this is 150 rows × 9488).
    fn renormalise(&self, logprobs: &Tensor) -> Result<Vec<f32>> {
        let t = self.opts.temperature;
        let c = self.classes;
        with_float!(logprobs.dtype(), "beam_search", T => {
            // `with_data`: on a GPU the rows are copied to the host first.
            logprobs.with_data::<T, _>(|x| {
                let mut out = vec![0f32; x.len()];
                let rows = x.len() / c;
                let per = rows_per_thread(rows) * c;
                std::thread::scope(|s| {
                    for (src, dst) in x.chunks(per).zip(out.chunks_mut(per)) {
                        s.spawn(move || log_softmax_rows(src, dst, c, T::from_f64(t)));
                    }
                });
                out
            })
        })
    }

    /// The attention rows `[R, N]` as vectors (empty when not asked for).
    fn attention_rows(&self, attention: Option<&Tensor>, rows: usize) -> Result<Vec<Vec<f32>>> {
        if !self.with_attention {
            return Ok(vec![Vec::new(); rows]);
        }
        let attention = attention.ok_or_else(|| {
            crate::Error::invalid("beam search: the decoder returned no attention maps")
        })?;
        let v = attention.to_vec_f32();
        let n = v.len() / rows.max(1);
        Ok(v.chunks_exact(n.max(1)).map(|r| r.to_vec()).collect())
    }
}

/// Row-wise `log_softmax(x / t)` of `src` into `dst` (rounded to f32), as the op computes it:
/// max subtracted, exponentials summed in order. The division is skipped at t = 1, where it
/// is exact.
fn log_softmax_rows<T: Float>(src: &[T], dst: &mut [f32], c: usize, t: T) {
    let mut scaled = vec![T::ZERO; c];
    for (x, y) in src.chunks_exact(c).zip(dst.chunks_exact_mut(c)) {
        let x = if t == T::ONE {
            x
        } else {
            for (s, &v) in scaled.iter_mut().zip(x) {
                *s = v / t;
            }
            &scaled[..]
        };
        let max = x.iter().copied().fold(x[0], |m, v| m.max(v));
        let sum: T = x.iter().map(|&v| (v - max).exp()).sum();
        let lse = sum.ln();
        for (o, &v) in y.iter_mut().zip(x) {
            *o = (v - max - lse).to_f64() as f32;
        }
    }
}

/// Rows each thread takes in the row-parallel passes over `rows` rows (at least 16 each).
fn rows_per_thread(rows: usize) -> usize {
    rows.div_ceil(num_threads().min(rows / 16).max(1))
}

/// `state` with rows `rows` replaced, in order, by the rows of `sub`.
fn merge_rows(state: &DecoderState, sub: &DecoderState, rows: &[usize]) -> Result<DecoderState> {
    let total = state.batch();
    let mut map: Vec<usize> = (0..total).collect();
    for (k, &r) in rows.iter().enumerate() {
        map[r] = total + k;
    }
    let merge = |a: &Tensor, b: &Tensor| Tensor::concat(&[a, b], 0)?.index_select(0, &map);
    Ok(DecoderState {
        h: merge(&state.h, &sub.h)?,
        c: merge(&state.c, &sub.c)?,
        ctx: merge(&state.ctx, &sub.ctx)?,
        ctx_cell: merge(&state.ctx_cell, &sub.ctx_cell)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AoaConfig;
    use crate::nn::Module;
    use crate::tensor::DType;

    /// The search on each row's best few words picks exactly what it picks on whole rows,
    /// with every adjustment that lowers values (constraints, bad endings, UNK, diversity).
    #[test]
    fn candidates_prefix_gives_the_whole_rows_result() {
        let vocab = 40;
        let mut c = AoaConfig::small(vocab, 16);
        c.rnn_size = 32;
        c.input_encoding_size = 32;
        c.refiner_layers = 1;
        let m = AoaModel::new(c, DType::F32, 3).unwrap();
        for (name, p) in m.named_parameters() {
            if name.ends_with("weight") && !name.contains("norm") {
                p.update_(&p.mul_scalar(3.0).unwrap()).unwrap();
            }
        }
        let mut rng = Philox::new(5);
        let feats = Tensor::randn(&[4, 5, 16], DType::F32, &mut rng);
        let enc = no_grad(|| m.encode(&feats, None, None, &mut Ctx::eval(&mut rng), None)).unwrap();
        let classes = vocab + 1;
        let variants = [
            DecodeOptions::beam(3, 9),
            DecodeOptions {
                group_size: 2,
                diversity_lambda: 0.5,
                decoding_constraint: true,
                remove_bad_endings: true,
                bad_endings: vec![1, 2, 3, 4, 5],
                length_penalty: LengthPenalty::Wu(0.7),
                ..DecodeOptions::beam(4, 9)
            },
            DecodeOptions {
                temperature: 0.7,
                decoding_constraint: true,
                ..DecodeOptions::beam(5, 9)
            },
        ];
        for opts in &variants {
            opts.validate(classes).unwrap();
            let search = Search::new(&m, opts, classes, true);
            assert!(search.candidates_per_row() < classes, "{opts:?}");
            let prefix = no_grad(|| search.run(&enc)).unwrap();
            let mut whole = Search::new(&m, opts, classes, true);
            whole.keep = Some(classes);
            let full = no_grad(|| whole.run(&enc)).unwrap();
            assert_eq!(prefix, full, "{opts:?}");
        }
    }
}
