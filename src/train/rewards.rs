//! The self-critical reward (AOANET.md 3.2-3.3): CIDEr-D of each sampled caption against all
//! of its image's references, on token ids with the training set's document frequencies, minus
//! a baseline: the greedy caption's score (the reference) or the mean of the image's other
//! samples.
//!
//! Token strings are the reference's `array_to_str`: every token up to and including the
//! first EOS 0. References come from the label arrays, truncated to `seq_length` (16), so they
//! end in a 0 only when shorter than that.

use super::options::Baseline;
use crate::data::ngrams::document_frequencies;
use crate::data::{Captions, Split};
use crate::metrics::{CiderD, CiderRefs, DocumentFrequencies, reward_tokens};
use crate::{Error, Result};

/// CIDEr-D over fixed training document frequencies.
pub struct RewardScorer {
    cider: CiderD,
}

impl RewardScorer {
    /// A scorer over `df` (the train split's, `aoanet-data ngrams`).
    pub fn new(df: DocumentFrequencies) -> Result<RewardScorer> {
        Ok(RewardScorer {
            cider: CiderD::new(df)?,
        })
    }

    /// A scorer over the frequencies counted from `captions`' train split, as `aoanet-data
    /// ngrams` counts them.
    pub fn from_captions(captions: &Captions) -> Result<RewardScorer> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(document_frequencies(captions, Split::Train, threads))
    }

    /// The prepared references of one image from its label rows (each truncated to
    /// `seq_length` tokens, without EOS): a 0 is appended to those shorter than `seq_length`.
    pub fn prepare(&self, gts: &[Vec<u32>], seq_length: usize) -> CiderRefs {
        let refs: Vec<Vec<u32>> = gts
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if r.len() < seq_length {
                    r.push(0);
                }
                r
            })
            .collect();
        self.cider.prepare(&refs)
    }

    /// CIDEr-D of each row of `seq` (`[rows × max_length]`, 0 from EOS on) against the
    /// references of its image, rows `i·per_image .. (i+1)·per_image` belonging to image `i`.
    pub fn score_rows(
        &self,
        seq: &[usize],
        max_length: usize,
        per_image: usize,
        refs: &[CiderRefs],
    ) -> Result<Vec<f64>> {
        let rows = seq.len() / max_length.max(1);
        if max_length == 0 || rows * max_length != seq.len() || rows != refs.len() * per_image {
            return Err(Error::invalid(format!(
                "rewards: {} tokens in rows of {max_length} for {} images × {per_image}",
                seq.len(),
                refs.len()
            )));
        }
        let mut tokens: Vec<u32> = Vec::with_capacity(max_length);
        Ok((0..rows)
            .map(|r| {
                tokens.clear();
                tokens.extend(
                    seq[r * max_length..(r + 1) * max_length]
                        .iter()
                        .map(|&w| w as u32),
                );
                self.cider
                    .score(reward_tokens(&tokens), &refs[r / per_image])
            })
            .collect())
    }
}

/// The rewards `score − baseline` of each sample (`per_image` consecutive samples per image).
/// `greedy` holds one score per image for [`Baseline::Greedy`].
pub fn advantages(
    scores: &[f64],
    per_image: usize,
    baseline: Baseline,
    greedy: Option<&[f64]>,
) -> Result<Vec<f64>> {
    match baseline {
        Baseline::Greedy => {
            let g = greedy.ok_or_else(|| Error::invalid("rewards: no greedy baseline scores"))?;
            if g.len() * per_image != scores.len() {
                return Err(Error::invalid(
                    "rewards: one greedy score per image is needed",
                ));
            }
            Ok(scores
                .iter()
                .enumerate()
                .map(|(r, s)| s - g[r / per_image])
                .collect())
        }
        Baseline::Mean => {
            if per_image < 2 {
                return Err(Error::invalid(
                    "rewards: the mean baseline needs at least 2 samples per image",
                ));
            }
            Ok(scores
                .chunks(per_image)
                .flat_map(|img| {
                    let total: f64 = img.iter().sum();
                    img.iter()
                        .map(move |s| s - (total - s) / (per_image - 1) as f64)
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::DfBuilder;

    #[test]
    fn scores_follow_array_to_str_and_baselines_subtract() {
        let mut b = DfBuilder::new();
        b.add_image(&[vec![5u32, 6, 7, 0]]);
        b.add_image(&[vec![8u32, 9, 0]]);
        let scorer = RewardScorer::new(b.finish()).unwrap();
        let refs = vec![scorer.prepare(&[vec![5, 6, 7]], 16)];
        // The reference itself (EOS included), a prefix, junk after EOS that must not count.
        let seq = vec![5, 6, 7, 0, 0, 5, 6, 0, 0, 0, 5, 6, 7, 0, 0];
        let s = scorer.score_rows(&seq, 5, 3, &refs).unwrap();
        assert!(s[0] > s[1], "{s:?}");
        assert_eq!(s[0], s[2]);
        // Same as scoring the explicit string "5 6 7 0".
        let direct = scorer.cider.score(&[5, 6, 7, 0], &refs[0]);
        assert_eq!(s[0], direct);
        // A 16-token reference gets no EOS.
        let long: Vec<u32> = (1..=16).collect();
        let full = scorer.prepare(std::slice::from_ref(&long), 16);
        let mut with_eos = long.clone();
        with_eos.push(0);
        assert!(scorer.cider.score(&long, &full) > scorer.cider.score(&with_eos, &full));

        let a = advantages(&s, 3, Baseline::Greedy, Some(&[s[1]])).unwrap();
        assert_eq!(a[1], 0.0);
        let m = advantages(&[1.0, 2.0, 6.0], 3, Baseline::Mean, None).unwrap();
        assert_eq!(m, vec![1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5]);
        assert!(advantages(&[1.0], 1, Baseline::Mean, None).is_err());
        assert!(scorer.score_rows(&seq, 4, 3, &refs).is_err());
    }
}
