//! BLEU-1..4 as coco-caption computes it (`bleu_scorer.py`, David Chiang's scorer, option
//! `closest`): clipped n-gram counts against the per-n-gram maximum over the references, the
//! closest reference length (ties to the shorter), the `tiny`/`small` constants that keep every
//! score above 0, a cumulative geometric mean, and a brevity penalty when the candidate side is
//! shorter. The corpus score comes from the summed counts, not from the per-image scores.

use super::hash::FastMap;
use super::ngram::{MAX_N, NgramCounts, NgramKey};

/// Added to the clipped counts (the reference's `tiny`).
const TINY: f64 = 1e-15;
/// Added to the guess counts and lengths (the reference's `small`).
const SMALL: f64 = 1e-9;

/// The counts BLEU needs, for one image or summed over a corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BleuStats {
    /// Candidate words.
    pub testlen: usize,
    /// Closest reference length (summed over images for a corpus).
    pub reflen: usize,
    /// Candidate n-grams of order k+1: `max(0, testlen - k)`.
    pub guess: [usize; MAX_N],
    /// Candidate n-grams of order k+1 found in the references, clipped per n-gram.
    pub correct: [usize; MAX_N],
}

impl BleuStats {
    /// Counts one candidate (token ids) against its references.
    pub fn new<S: AsRef<[u32]>>(candidate: &[u32], refs: &[S]) -> Self {
        let mut max_counts: FastMap<NgramKey, u32> = FastMap::default();
        let mut reflens = Vec::with_capacity(refs.len());
        for r in refs {
            let r = r.as_ref();
            reflens.push(r.len());
            for &(k, c) in NgramCounts::new(r).all() {
                let m = max_counts.entry(k).or_insert(0);
                *m = (*m).max(c);
            }
        }
        let testlen = candidate.len();
        // min over (|l - testlen|, l): the closest length, the shorter one on a tie.
        let reflen = reflens
            .iter()
            .map(|&l| (l.abs_diff(testlen), l))
            .min()
            .map_or(0, |(_, l)| l);
        let cand = NgramCounts::new(candidate);
        let mut correct = [0usize; MAX_N];
        for (k, slot) in correct.iter_mut().enumerate() {
            for &(key, c) in cand.order(k + 1) {
                *slot += c.min(max_counts.get(&key).copied().unwrap_or(0)) as usize;
            }
        }
        let guess = std::array::from_fn(|k| testlen.saturating_sub(k));
        BleuStats {
            testlen,
            reflen,
            guess,
            correct,
        }
    }

    /// Adds another image's counts (the corpus totals).
    pub fn add(&mut self, other: &BleuStats) {
        self.testlen += other.testlen;
        self.reflen += other.reflen;
        for k in 0..MAX_N {
            self.guess[k] += other.guess[k];
            self.correct[k] += other.correct[k];
        }
    }

    /// `(testlen + tiny) / (reflen + small)`, the length ratio the toolkit prints.
    pub fn ratio(&self) -> f64 {
        (self.testlen as f64 + TINY) / (self.reflen as f64 + SMALL)
    }

    /// BLEU-1..4 from these counts, in the reference's operation order.
    pub fn scores(&self) -> [f64; MAX_N] {
        let mut out = [0.0; MAX_N];
        let mut b = 1.0f64;
        for k in 0..MAX_N {
            b *= (self.correct[k] as f64 + TINY) / (self.guess[k] as f64 + SMALL);
            // black_box keeps LLVM from turning pow(b, 0.5) into sqrt(b): Python calls libm's
            // pow, which differs from sqrt by an ulp on some inputs.
            out[k] = b.powf(std::hint::black_box(1.0 / (k + 1) as f64));
        }
        let ratio = self.ratio();
        if ratio < 1.0 {
            let bp = (1.0 - 1.0 / ratio).exp();
            for s in &mut out {
                *s *= bp;
            }
        }
        out
    }
}

/// Corpus BLEU: the summed counts, the corpus BLEU-1..4 and each image's BLEU-1..4.
/// `candidates[i]` is scored against `refs[i]`.
pub fn corpus_bleu<C, R, S>(
    candidates: &[C],
    refs: &[R],
) -> (BleuStats, [f64; MAX_N], Vec<[f64; MAX_N]>)
where
    C: AsRef<[u32]>,
    R: AsRef<[S]>,
    S: AsRef<[u32]>,
{
    let mut total = BleuStats::default();
    let mut per_image = Vec::with_capacity(candidates.len());
    for (c, r) in candidates.iter().zip(refs) {
        let s = BleuStats::new(c.as_ref(), r.as_ref());
        total.add(&s);
        per_image.push(s.scores());
    }
    (total, total.scores(), per_image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_clip_and_pick_the_shorter_closest_length() {
        // candidate "a a a" vs refs "a b" and "a a b c": a clips at 2.
        let s = BleuStats::new(&[0, 0, 0], &[vec![0, 1], vec![0, 0, 1, 2]]);
        assert_eq!(s.correct, [2, 1, 0, 0]);
        assert_eq!(s.guess, [3, 2, 1, 0]);
        // |2-3| == |4-3|: the tie goes to 2.
        assert_eq!(s.reflen, 2);
    }

    #[test]
    fn identical_candidate_scores_one_up_to_the_constants() {
        let s = BleuStats::new(&[1, 2, 3, 4, 5], &[vec![1, 2, 3, 4, 5]]);
        for b in s.scores() {
            assert!((b - 1.0).abs() < 1e-9 && b < 1.0, "{b}");
        }
        let empty = BleuStats::new(&[], &[vec![1, 2]]).scores();
        assert_eq!(empty, [0.0; 4]);
    }
}
