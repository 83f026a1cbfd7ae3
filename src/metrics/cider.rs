//! CIDEr-D (`Cider(n=4, sigma=6.0)` of coco-caption, `CiderD` of the SCST reward): tf-idf
//! n-gram vectors, clipped cosine similarity per order, a Gaussian penalty on the difference of
//! the "lengths" (which are bigram counts, a quirk of the reference), the mean over the four
//! orders and the references, times 10.
//!
//! One core serves both uses (METRICS.md §4, AOANET.md §3.3):
//! * evaluation: words interned to ids, frequencies from the evaluated images' references
//!   ([`corpus_cider_d`]);
//! * the training reward: token indices, EOS 0 included ([`reward_tokens`]), fixed training-set
//!   frequencies loaded from a file ([`CiderD::new`] with [`DocumentFrequencies::read`]).
//!
//! The reference side of an image is precomputed once ([`CiderD::prepare`]); scoring a caption
//! then costs one frequency lookup and one slot lookup per candidate n-gram.
//!
//! Every floating-point operation runs in the reference's order (n-grams in first-occurrence
//! order per order, references in order, `pow(e, x)` for the penalty), so scores are
//! bit-identical to the Python code.

use super::df::{DfBuilder, DocumentFrequencies};
use super::hash::FastMap;
use super::ngram::{MAX_N, NgramCounts, NgramKey};
use super::numeric::np_mean;
use crate::{Error, Result};

/// Width of CIDEr-D's Gaussian length penalty.
pub const SIGMA: f64 = 6.0;

/// The prefix of a decoded or label sequence that the SCST reward scores: every token up to and
/// **including** the first EOS (0), or the whole sequence if it has none (the reference's
/// `array_to_str`). Labels zero-padded to 16 thus keep one trailing 0 unless they fill all 16.
pub fn reward_tokens(seq: &[u32]) -> &[u32] {
    match seq.iter().position(|&t| t == 0) {
        Some(i) => &seq[..=i],
        None => seq,
    }
}

/// The reference side of one image, precomputed: for each distinct n-gram of any reference a
/// slot holding that n-gram's tf-idf weight in every reference (0 where absent), and each
/// reference's per-order norms and "length".
#[derive(Clone, Debug)]
pub struct CiderRefs {
    slots: FastMap<NgramKey, u32>,
    /// `weights[slot * num_refs + r]`.
    weights: Vec<f64>,
    norms: Vec<[f64; MAX_N]>,
    lengths: Vec<i64>,
}

impl CiderRefs {
    /// Number of references.
    pub fn num_refs(&self) -> usize {
        self.norms.len()
    }
}

/// A CIDEr-D scorer over fixed document frequencies.
#[derive(Clone, Debug)]
pub struct CiderD {
    df: DocumentFrequencies,
    ref_len: f64,
    /// `exp(-δ²/(2σ²))` for |δ| below this table's length, computed with `pow` as the reference.
    penalty: Vec<f64>,
}

/// CIDEr-D's length: the total count of bigrams, i.e. words − 1, but 0 for one word.
fn bigram_length(num_tokens: usize) -> i64 {
    num_tokens.saturating_sub(1) as i64
}

fn gaussian_penalty(delta: i64) -> f64 {
    let d = delta as f64;
    // black_box keeps LLVM from rewriting pow(e, x) as exp(x): the reference calls libm's pow.
    std::hint::black_box(std::f64::consts::E).powf(-(d * d) / (2.0 * SIGMA * SIGMA))
}

impl CiderD {
    /// A scorer over `df`. An error if `df` counted no image (its `ref_len` would be `ln 0`).
    pub fn new(df: DocumentFrequencies) -> Result<Self> {
        if df.num_images() == 0 {
            return Err(Error::invalid(
                "CIDEr-D needs document frequencies counted over at least one image",
            ));
        }
        let ref_len = df.ref_len();
        let penalty = (0..64).map(gaussian_penalty).collect();
        Ok(CiderD {
            df,
            ref_len,
            penalty,
        })
    }

    /// The document frequencies.
    pub fn df(&self) -> &DocumentFrequencies {
        &self.df
    }

    #[inline]
    fn weight(&self, key: NgramKey, tf: u32) -> f64 {
        let df = f64::from(self.df.get_key(key)).max(1.0);
        f64::from(tf) * (self.ref_len - df.ln())
    }

    #[inline]
    fn penalty(&self, delta: i64) -> f64 {
        match self.penalty.get(delta.unsigned_abs() as usize) {
            Some(&p) => p,
            None => gaussian_penalty(delta),
        }
    }

    /// Precomputes the reference side of one image from its references' token ids.
    pub fn prepare<S: AsRef<[u32]>>(&self, refs: &[S]) -> CiderRefs {
        let num_refs = refs.len();
        let counted: Vec<NgramCounts> = refs.iter().map(|r| NgramCounts::new(r.as_ref())).collect();
        let mut slots: FastMap<NgramKey, u32> = FastMap::default();
        for c in &counted {
            for &(k, _) in c.all() {
                let next = slots.len() as u32;
                slots.entry(k).or_insert(next);
            }
        }
        let mut weights = vec![0.0; slots.len() * num_refs];
        let mut norms = Vec::with_capacity(num_refs);
        let mut lengths = Vec::with_capacity(num_refs);
        for (r, c) in counted.iter().enumerate() {
            let mut norm = [0.0f64; MAX_N];
            for (n, acc) in norm.iter_mut().enumerate() {
                for &(k, tf) in c.order(n + 1) {
                    let w = self.weight(k, tf);
                    *acc += w * w;
                    weights[slots[&k] as usize * num_refs + r] = w;
                }
            }
            norms.push(norm.map(f64::sqrt));
            lengths.push(bigram_length(c.len()));
        }
        CiderRefs {
            slots,
            weights,
            norms,
            lengths,
        }
    }

    /// CIDEr-D of `candidate` against prepared references (×10 scale, as the reference).
    /// 0 for an image without references.
    pub fn score(&self, candidate: &[u32], refs: &CiderRefs) -> f64 {
        let num_refs = refs.num_refs();
        if num_refs == 0 {
            return 0.0;
        }
        let cand = NgramCounts::new(candidate);
        // val[r * MAX_N + n]: the clipped dot product, accumulated over the candidate's n-grams
        // of order n+1 in first-occurrence order, for every reference at once.
        let mut val = vec![0.0f64; num_refs * MAX_N];
        let mut norm_c = [0.0f64; MAX_N];
        for (n, norm) in norm_c.iter_mut().enumerate() {
            for &(k, tf) in cand.order(n + 1) {
                let w = self.weight(k, tf);
                *norm += w * w;
                if let Some(&slot) = refs.slots.get(&k) {
                    let row = &refs.weights[slot as usize * num_refs..][..num_refs];
                    for (r, &wr) in row.iter().enumerate() {
                        // Python's min(a, b) keeps a unless b < a.
                        let m = if wr < w { wr } else { w };
                        val[r * MAX_N + n] += m * wr;
                    }
                }
            }
            *norm = norm.sqrt();
        }
        let len_c = bigram_length(cand.len());
        let mut score = [0.0f64; MAX_N];
        for r in 0..num_refs {
            let pen = self.penalty(len_c - refs.lengths[r]);
            for n in 0..MAX_N {
                let mut v = val[r * MAX_N + n];
                let norm_r = refs.norms[r][n];
                if norm_c[n] != 0.0 && norm_r != 0.0 {
                    v /= norm_c[n] * norm_r;
                }
                score[n] += v * pen;
            }
        }
        let mut mean = 0.0;
        for s in score {
            mean += s;
        }
        mean /= MAX_N as f64;
        mean /= num_refs as f64;
        mean * 10.0
    }
}

/// Evaluation-time CIDEr-D over a corpus: frequencies from the evaluated images' own references,
/// then each image's score and their `np.mean`. `candidates[i]` is scored against `refs[i]`.
/// Returns `(corpus, per_image)`; an error if there are no images.
pub fn corpus_cider_d<C, R, S>(candidates: &[C], refs: &[R]) -> Result<(f64, Vec<f64>)>
where
    C: AsRef<[u32]>,
    R: AsRef<[S]>,
    S: AsRef<[u32]>,
{
    if candidates.len() != refs.len() {
        return Err(Error::invalid(format!(
            "CIDEr-D: {} candidates but {} reference sets",
            candidates.len(),
            refs.len()
        )));
    }
    let mut b = DfBuilder::new();
    for r in refs {
        b.add_image(r.as_ref());
    }
    let scorer = CiderD::new(b.finish())?;
    let per_image: Vec<f64> = candidates
        .iter()
        .zip(refs)
        .map(|(c, r)| scorer.score(c.as_ref(), &scorer.prepare(r.as_ref())))
        .collect();
    Ok((np_mean(&per_image), per_image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_tokens_keep_the_first_eos() {
        assert_eq!(reward_tokens(&[5, 6, 0, 0, 0]), &[5, 6, 0]);
        assert_eq!(reward_tokens(&[5, 6, 7]), &[5, 6, 7]);
        assert_eq!(reward_tokens(&[0, 4]), &[0]);
    }

    #[test]
    fn penalty_table_equals_direct_pow() {
        let s = CiderD::new(DocumentFrequencies::from_images([vec![vec![1u32]]])).unwrap();
        for d in -70..70 {
            assert_eq!(s.penalty(d).to_bits(), gaussian_penalty(d).to_bits());
        }
        assert_eq!(gaussian_penalty(0), 1.0);
    }

    #[test]
    fn identical_candidate_beats_partial_and_empty_scores_zero() {
        let refs = vec![
            vec![vec![1u32, 2, 3, 4, 0], vec![1, 5, 3, 0]],
            vec![vec![7u32, 8, 9, 0], vec![7, 8, 0]],
            vec![vec![10u32, 11, 0]],
        ];
        let cands = vec![vec![1u32, 2, 3, 4, 0], vec![7, 9, 0], vec![]];
        let (corpus, per) = corpus_cider_d(&cands, &refs).unwrap();
        assert!(per[0] > per[1] && per[1] > 0.0, "{per:?}");
        assert_eq!(per[2], 0.0);
        assert_eq!(corpus, np_mean(&per));
        assert!(corpus_cider_d::<Vec<u32>, Vec<Vec<u32>>, Vec<u32>>(&[], &[]).is_err());
    }
}
