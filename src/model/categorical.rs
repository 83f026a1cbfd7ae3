//! Drawing words from rows of log-probabilities on the host, by the inverse CDF: the
//! self-critical sampler (`sample_method = sample`) and scheduled sampling both draw one word
//! per caption row per step from a `[rows, V+1]` distribution.
//!
//! [`sample_from_logprobs`] is the plain `f64` rule: `exp` of every entry, the total, then the
//! first index whose running sum exceeds `u · total`. At the reference size it costs two
//! libm `exp` calls per entry: 16 steps × 50 rows × 9488 words took 65 ms of host time per
//! self-critical step (measured on this project's 2-core Xeon), the largest part of the step
//! on the GPU. [`Rows`] draws f32 rows on a CUDA device there (`kernels/sample.cu`: only the
//! word ids come back) and f32 rows on the host with the vectorised `exp` of
//! [`crate::cpu::vmath`] after subtracting the row maximum, sums 64-entry blocks in `f32` and
//! accumulates the blocks in `f64`, then scans only the block that holds the target. The
//! distribution is the same up to `f32` rounding of each probability (about 1e-7 relative);
//! the drawn word can differ from [`sample_from_logprobs`]'s only when `u · total` falls within
//! that rounding of a boundary.

use crate::Result;
use crate::cpu::vmath;
use crate::tensor::{DType, Ids, Tensor};

/// Draws an index from the distribution `exp(logprobs)` with the uniform number `u`
/// (inverse CDF; the last index with positive probability absorbs rounding; 0 when no entry
/// has positive probability).
pub fn sample_from_logprobs(logprobs: &[f64], u: f64) -> usize {
    let total: f64 = logprobs.iter().map(|l| l.exp()).sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (k, &l) in logprobs.iter().enumerate() {
        let p = l.exp();
        if p > 0.0 {
            last = k;
            acc += p;
            if acc > target {
                return k;
            }
        }
    }
    last
}

/// Entries per block of the `f32` path: block sums in `f32` (vectorised), the running sum over
/// blocks in `f64`.
const BLOCK: usize = 64;

/// The rows of a `[rows, classes]` log-probability tensor from which words are drawn (see the
/// module documentation). f32 rows on a CUDA device are drawn there (`kernels/sample.cu`, the
/// same rule): only the word ids come back. Other rows are copied to the host once.
pub struct Rows {
    classes: usize,
    values: Values,
    /// `exp(row − max)` of the row being drawn from, and its block sums (reused across rows).
    exps: Vec<f32>,
    block_sums: Vec<f64>,
}

enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// f32 log-probabilities on a CUDA device, `[rows, classes]`.
    #[cfg(feature = "cuda")]
    Device(Tensor),
}

impl Rows {
    /// The rows of `logprobs` (`[..., classes]`: every position before the last axis is a
    /// row; f32 or f64, on any device).
    pub fn new(logprobs: &Tensor) -> Result<Rows> {
        let classes = logprobs.shape().last().copied().unwrap_or(0);
        if classes == 0 {
            return Err(crate::Error::shape(
                "sample rows",
                &[logprobs.shape()],
                "[..., classes] with classes ≥ 1",
            ));
        }
        let values = match logprobs.dtype() {
            #[cfg(feature = "cuda")]
            DType::F32 if logprobs.is_cuda() => Values::Device(
                logprobs
                    .detach()
                    .reshape(&[logprobs.numel() / classes, classes])?,
            ),
            DType::F32 => Values::F32(logprobs.to_vec_f32()),
            _ => Values::F64(logprobs.to_vec_f64()),
        };
        Ok(Rows {
            classes,
            values,
            exps: Vec::new(),
            block_sums: Vec::new(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match &self.values {
            Values::F32(v) => v.len() / self.classes,
            Values::F64(v) => v.len() / self.classes,
            #[cfg(feature = "cuda")]
            Values::Device(t) => t.shape()[0],
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Draws from the rows that `uniform(r)` gives a number `u ∈ [0, 1)` for, in row order
    /// (so callers draw their random numbers in the order they always did); `None` for the
    /// others. A row without a finite entry (all −∞, or any NaN in f32) gives word 0.
    pub fn draw(
        &mut self,
        mut uniform: impl FnMut(usize) -> Option<f64>,
    ) -> Result<Vec<Option<usize>>> {
        let picks: Vec<Option<f64>> = (0..self.len()).map(&mut uniform).collect();
        #[cfg(feature = "cuda")]
        if let Values::Device(t) = &self.values {
            if picks.iter().all(Option::is_none) {
                return Ok(vec![None; picks.len()]);
            }
            let us: Vec<f64> = picks.iter().map(|u| u.unwrap_or(0.0)).collect();
            let words = crate::cuda::ops::sample_rows(t, &us)?;
            return Ok(picks.iter().zip(words).map(|(u, w)| u.map(|_| w)).collect());
        }
        Ok(picks
            .iter()
            .enumerate()
            .map(|(r, u)| u.map(|u| self.sample_host(r, u)))
            .collect())
    }

    /// Scheduled sampling's words: row `r` draws with the number `uniform(r)` gives, if any
    /// (asked in row order, as [`Rows::draw`]), and keeps `keep[r]` otherwise. f32 rows on a
    /// CUDA device draw there into a copy of `keep` and the words stay in device memory
    /// (nothing is read back; the next decoder step reads them there); other rows give host
    /// words.
    pub fn draw_or_keep(
        &mut self,
        keep: &[usize],
        mut uniform: impl FnMut(usize) -> Option<f64>,
    ) -> Result<Ids> {
        if keep.len() != self.len() {
            return Err(crate::Error::invalid(format!(
                "sample rows: {} words to keep for {} rows",
                keep.len(),
                self.len()
            )));
        }
        let picks: Vec<Option<f64>> = (0..self.len()).map(&mut uniform).collect();
        #[cfg(feature = "cuda")]
        if let Values::Device(t) = &self.values {
            if picks.iter().all(Option::is_none) {
                return Ok(Ids::from(keep));
            }
            // A negative number keeps the row's word.
            let us: Vec<f64> = picks.iter().map(|u| u.unwrap_or(-1.0)).collect();
            return crate::cuda::ops::sample_rows_over(t, &us, keep).map(Ids::from_device);
        }
        let mut drawn = self.draw(|r| picks[r])?;
        Ok(Ids::from(
            keep.iter()
                .zip(drawn.drain(..))
                .map(|(&k, w)| w.unwrap_or(k))
                .collect::<Vec<_>>(),
        ))
    }

    /// Draws a word from row `r` of host values with the uniform number `u`.
    fn sample_host(&mut self, r: usize, u: f64) -> usize {
        let c = self.classes;
        match &self.values {
            Values::F64(v) => sample_from_logprobs(&v[r * c..(r + 1) * c], u),
            Values::F32(v) => sample_f32(
                &v[r * c..(r + 1) * c],
                u,
                &mut self.exps,
                &mut self.block_sums,
            ),
            #[cfg(feature = "cuda")]
            Values::Device(_) => unreachable!("device rows are drawn in `draw`"),
        }
    }

    /// Draws one word from every row with the uniform numbers `u` (one per row).
    pub fn draw_all(&mut self, u: &[f64]) -> Result<Vec<usize>> {
        if u.len() != self.len() {
            return Err(crate::Error::invalid(format!(
                "sample rows: {} uniform numbers for {} rows",
                u.len(),
                self.len()
            )));
        }
        Ok(self
            .draw(|r| Some(u[r]))?
            .into_iter()
            .map(|w| w.expect("every row drawn"))
            .collect())
    }
}

fn sample_f32(row: &[f32], u: f64, exps: &mut Vec<f32>, block_sums: &mut Vec<f64>) -> usize {
    let max = vmath::max(row);
    // NaN anywhere makes `max` NaN; all −∞ leaves nothing to draw.
    if max.is_nan() || max == f32::NEG_INFINITY {
        return 0;
    }
    exps.clear();
    exps.extend(row.iter().map(|&x| x - max));
    vmath::exp_in_place(exps);
    block_sums.clear();
    block_sums.extend(exps.chunks(BLOCK).map(|b| f64::from(vmath::sum(b))));
    let total: f64 = block_sums.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    for (b, &s) in block_sums.iter().enumerate() {
        if acc + s <= target {
            acc += s;
            continue;
        }
        // The target lies in this block (up to the rounding of its f32 sum): scan it. If the
        // element-wise sum falls short by that rounding, go on with the next block.
        for (j, &p) in exps[b * BLOCK..].iter().take(BLOCK).enumerate() {
            acc += f64::from(p);
            if p > 0.0 && acc > target {
                return b * BLOCK + j;
            }
        }
    }
    // Rounding at the very end (u close to 1): the last word with positive probability (the
    // maximum has probability 1 after the shift, so there is one).
    exps.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    /// Scheduled sampling's mix on the host: the drawn rows' words are `draw`'s, the others
    /// keep theirs, and the numbers are asked for in row order.
    #[test]
    fn draw_or_keep_mixes_drawn_and_kept_words() {
        let lp = Tensor::from_vec(
            vec![
                0.5f64.ln(),
                0.5f64.ln(),
                0.0f64.ln(),
                0.0f64.ln(),
                0.0,
                0.0f64.ln(),
            ],
            &[2, 3],
        )
        .unwrap();
        let mut asked = Vec::new();
        let words = Rows::new(&lp)
            .unwrap()
            .draw_or_keep(&[7, 9], |r| {
                asked.push(r);
                (r == 1).then_some(0.5)
            })
            .unwrap();
        assert_eq!(asked, [0, 1]);
        assert_eq!(words.host().unwrap(), &[7, 1]);
        assert!(
            Rows::new(&lp)
                .unwrap()
                .draw_or_keep(&[7], |_| None)
                .is_err()
        );
    }

    #[test]
    fn the_f64_rule_follows_the_distribution() {
        let lp = [0.5f64.ln(), 0.0f64.ln(), 0.25f64.ln(), 0.25f64.ln()];
        assert_eq!(sample_from_logprobs(&lp, 0.0), 0);
        assert_eq!(sample_from_logprobs(&lp, 0.49), 0);
        assert_eq!(sample_from_logprobs(&lp, 0.51), 2);
        assert_eq!(sample_from_logprobs(&lp, 0.999999), 3);
        assert_eq!(sample_from_logprobs(&[f64::NEG_INFINITY; 3], 0.5), 0);
    }

    /// A log-softmax row of `classes` entries, peaked like a trained decoder's (a few words
    /// carry most of the mass), with some forbidden (−∞) words.
    fn row(classes: usize, seed: u64) -> Vec<f32> {
        let mut rng = Philox::new(seed);
        let logits: Vec<f64> = (0..classes)
            .map(|k| {
                if k % 97 == 5 {
                    f64::NEG_INFINITY
                } else {
                    8.0 * rng.next_f64().powi(6) - 4.0
                }
            })
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        logits.iter().map(|l| (l - lse) as f32).collect()
    }

    /// The f32 path picks the f64 rule's word for every u except within f32 rounding of a
    /// boundary of the cumulative distribution.
    #[test]
    fn the_f32_path_agrees_with_the_f64_rule() {
        for (classes, seed) in [(1, 1), (7, 2), (64, 3), (65, 4), (9488, 5)] {
            let lp = row(classes, seed);
            let lp64: Vec<f64> = lp.iter().map(|&x| f64::from(x)).collect();
            let mut rows =
                Rows::new(&Tensor::from_vec(lp.clone(), &[1, classes]).unwrap()).unwrap();
            let probs: Vec<f64> = lp64.iter().map(|l| l.exp()).collect();
            let total: f64 = probs.iter().sum();
            let mut cdf = Vec::with_capacity(classes);
            let mut acc = 0.0;
            for p in &probs {
                acc += p / total;
                cdf.push(acc);
            }
            let mut rng = Philox::new(seed + 100);
            let mut differ = 0;
            for i in 0..2000 {
                let u = if i < 3 {
                    [0.0, 0.5, 0.999_999_9][i]
                } else {
                    rng.next_f64()
                };
                let (fast, exact) = (
                    rows.draw_all(&[u]).unwrap()[0],
                    sample_from_logprobs(&lp64, u),
                );
                assert!(
                    probs[fast] > 0.0,
                    "classes {classes}: drew a forbidden word"
                );
                if fast != exact {
                    differ += 1;
                    let near = cdf.iter().any(|&c| (c - u).abs() < 1e-5);
                    assert!(near, "classes {classes}, u {u}: {fast} vs {exact}");
                }
            }
            assert!(
                differ <= 20,
                "classes {classes}: {differ} of 2000 draws differ"
            );
        }
    }

    #[test]
    fn rows_without_a_finite_entry_give_zero_and_shapes_are_checked() {
        let t = Tensor::from_vec(
            vec![
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                0.0,
                f32::NAN,
                -1.0,
                0.0,
            ],
            &[3, 2],
        )
        .unwrap();
        let mut rows = Rows::new(&t).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.draw_all(&[0.3, 0.3, 0.9]).unwrap(), [0, 0, 1]);
        // Row 2: probabilities e⁻¹ : 1 → u = 0.9 lands on word 1, u = 0.1 on word 0; rows
        // without a number are not drawn.
        assert_eq!(
            rows.draw(|r| (r == 2).then_some(0.1)).unwrap(),
            [None, None, Some(0)]
        );
        assert!(rows.draw_all(&[0.5]).is_err());
        assert_eq!(
            Rows::new(&Tensor::zeros(&[2, 1, 4], DType::F32))
                .unwrap()
                .len(),
            2
        );
        assert!(Rows::new(&Tensor::zeros(&[4, 0], DType::F32)).is_err());
        assert!(Rows::new(&Tensor::zeros(&[], DType::F32)).is_err());
    }

    /// Frequencies over many draws match the probabilities (a loose χ² bound: 3 classes).
    #[test]
    fn frequencies_match_probabilities() {
        let p = [0.2f32, 0.5, 0.3];
        let lp: Vec<f32> = p.iter().map(|x| x.ln()).collect();
        let mut rows = Rows::new(&Tensor::from_vec(lp, &[1, 3]).unwrap()).unwrap();
        let mut rng = Philox::new(9);
        let n = 30_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[rows.draw_all(&[rng.next_f64()]).unwrap()[0]] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(p)
            .map(|(&c, p)| {
                let e = n as f64 * f64::from(p);
                (c as f64 - e).powi(2) / e
            })
            .sum();
        // χ² with 2 degrees of freedom: P(χ² > 13.8) = 0.001.
        assert!(chi2 < 13.8, "counts {counts:?}, χ² {chi2}");
    }
}
