//! METEOR 1.5 as the coco-caption toolkit runs it, natively.
//!
//! The reference is `pycocoevalcap/meteor/meteor-1.5.jar` started as
//! `java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm` and fed by `meteor.py`
//! (`../../../shared/METRICS.md` §5). For each image the wrapper sends the candidate and its
//! references; the jar normalises every line, aligns the candidate with each reference through
//! four stages (exact words, Snowball stems, WordNet synonyms, paraphrases) and a beam search,
//! and keeps the 23 sufficient statistics of the best-scoring reference. The image's score is
//! computed from those statistics; the corpus score from their sum (so it is **not** the mean
//! of the image scores).
//!
//! | file | what |
//! | --- | --- |
//! | `data.rs` | `meteor.bin`: the memory-mapped resources ([`MeteorData`]) |
//! | `tables.rs` | building `meteor.bin` from the jar's files ([`build_meteor_data`]) |
//! | `normalize.rs` | the `-norm` tokenizer/normaliser |
//! | `stemmer.rs` | the Snowball English stemmer |
//! | `align.rs` | the matching stages and the beam search |
//! | `java.rs` | the `java.lang.String` behaviours the results depend on |
//!
//! # Using it
//! ```no_run
//! use aoanet::metrics::meteor::{Meteor, corpus_score};
//! # fn main() -> aoanet::Result<()> {
//! // $AOANET_METEOR_DATA, else $XDG_DATA_HOME/aoanet/meteor.bin or ~/.local/share/aoanet/meteor.bin
//! let meteor = Meteor::open_default()?.expect("build it with `aoanet-data meteor-data`");
//! // PTB-tokenized, punctuation-filtered text, as the toolkit passes it.
//! let stats = meteor.score_segment("a man riding a horse", &["a man is riding a horse", "a horse"]);
//! let image_score = stats.score();
//! let corpus = corpus_score(&[stats]);
//! # let _ = (image_score, corpus); Ok(()) }
//! ```
//! [`Meteor::evaluate`] does a whole set (per-image scores and the corpus score) at once.
//! [`Meteor`] is `Sync`: share one between threads.

mod align;
mod data;
mod java;
mod normalize;
mod stemmer;
mod tables;

pub use data::{ENV_VAR, MAGIC, MeteorData, VERSION};
pub use tables::{BuildSummary, MeteorSources, build_meteor_data};

use crate::{Error, Result};
use std::path::Path;

/// METEOR's English parameters for the default ("rank") task: α, β, γ, δ.
pub const PARAMETERS: [f64; 4] = [0.85, 0.20, 0.60, 0.75];
/// The scoring weight of each stage: exact, stem, synonym, paraphrase.
pub const STAGE_WEIGHTS: [f64; 4] = [1.0, 0.6, 0.8, 0.6];
/// The number of sufficient statistics per segment.
pub const STATS_LEN: usize = 23;

/// Words matched by one stage, split into content and function words on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageMatches {
    /// Candidate content words matched.
    pub test_content: u32,
    /// Reference content words matched.
    pub ref_content: u32,
    /// Candidate function words matched.
    pub test_function: u32,
    /// Reference function words matched.
    pub ref_function: u32,
}

/// The 23 sufficient statistics of one segment, in the jar's order:
/// `tstLen refLen tstFunc refFunc`, then per stage (exact, stem, synonym, paraphrase)
/// `tstContent refContent tstFunction refFunction`, then `chunks tstWordMatches refWordMatches`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeteorStats {
    /// Candidate words.
    pub test_len: u32,
    /// Reference words.
    pub ref_len: u32,
    /// Candidate function words.
    pub test_function: u32,
    /// Reference function words.
    pub ref_function: u32,
    /// Matches per stage: exact, stem, synonym, paraphrase.
    pub stages: [StageMatches; 4],
    /// Chunks: runs of matches contiguous and in order on both sides.
    pub chunks: u32,
    /// Candidate words matched.
    pub test_word_matches: u32,
    /// Reference words matched.
    pub ref_word_matches: u32,
}

impl MeteorStats {
    /// The statistics as the jar holds them (doubles), in its order.
    pub fn to_array(&self) -> [f64; STATS_LEN] {
        let mut v = [0.0; STATS_LEN];
        v[0] = f64::from(self.test_len);
        v[1] = f64::from(self.ref_len);
        v[2] = f64::from(self.test_function);
        v[3] = f64::from(self.ref_function);
        for (i, s) in self.stages.iter().enumerate() {
            v[4 + 4 * i] = f64::from(s.test_content);
            v[5 + 4 * i] = f64::from(s.ref_content);
            v[6 + 4 * i] = f64::from(s.test_function);
            v[7 + 4 * i] = f64::from(s.ref_function);
        }
        v[20] = f64::from(self.chunks);
        v[21] = f64::from(self.test_word_matches);
        v[22] = f64::from(self.ref_word_matches);
        v
    }

    /// The line the jar prints for a `SCORE` request, e.g. `5.0 9.0 2.0 5.0 3.0 ...`.
    pub fn to_toolkit_string(&self) -> String {
        let v = self.to_array();
        let parts: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
        parts.join(" ")
    }

    /// Parses a line in the jar's format (23 non-negative whole numbers).
    pub fn parse(line: &str) -> Result<MeteorStats> {
        let vals: Vec<&str> = line.split_whitespace().collect();
        if vals.len() != STATS_LEN {
            return Err(Error::invalid(format!(
                "METEOR statistics need {STATS_LEN} numbers, got {}: {line:?}",
                vals.len()
            )));
        }
        let mut n = [0u32; STATS_LEN];
        for (slot, s) in n.iter_mut().zip(&vals) {
            let x: f64 = s
                .parse()
                .map_err(|_| Error::invalid(format!("METEOR statistic {s:?} is not a number")))?;
            if !(x >= 0.0 && x.fract() == 0.0 && x <= f64::from(u32::MAX)) {
                return Err(Error::invalid(format!(
                    "METEOR statistic {s:?} is not a count"
                )));
            }
            *slot = x as u32;
        }
        let stage = |i: usize| StageMatches {
            test_content: n[4 + 4 * i],
            ref_content: n[5 + 4 * i],
            test_function: n[6 + 4 * i],
            ref_function: n[7 + 4 * i],
        };
        Ok(MeteorStats {
            test_len: n[0],
            ref_len: n[1],
            test_function: n[2],
            ref_function: n[3],
            stages: [stage(0), stage(1), stage(2), stage(3)],
            chunks: n[20],
            test_word_matches: n[21],
            ref_word_matches: n[22],
        })
    }

    /// The segment's METEOR score, computed from the statistics as the jar's `EVAL` does.
    pub fn score(&self) -> f64 {
        score_of(&self.to_array())
    }

    /// Whether every word on both sides is matched in a single chunk: then fragmentation is 0
    /// and, in a corpus sum, the segment's chunk is not counted.
    pub fn is_perfect(&self) -> bool {
        is_perfect(&self.to_array())
    }
}

/// `(testTotalMatches, referenceTotalMatches)` from the per-stage counts.
fn total_matches(v: &[f64; STATS_LEN]) -> (f64, f64) {
    let (mut t, mut r) = (0.0, 0.0);
    for i in 0..4 {
        t += v[4 + 4 * i];
        t += v[6 + 4 * i];
        r += v[5 + 4 * i];
        r += v[7 + 4 * i];
    }
    (t, r)
}

fn is_perfect(v: &[f64; STATS_LEN]) -> bool {
    let (t, r) = total_matches(v);
    t == v[0] && r == v[1] && v[20] == 1.0
}

/// `MeteorScorer.computeMetrics`, operation for operation, so the result is bit-identical.
fn score_of(v: &[f64; STATS_LEN]) -> f64 {
    let [alpha, beta, gamma, delta] = PARAMETERS;
    let w = STAGE_WEIGHTS;
    let test_len_w = (delta * (v[0] - v[2])) + ((1.0 - delta) * v[2]);
    let ref_len_w = (delta * (v[1] - v[3])) + ((1.0 - delta) * v[3]);
    let (mut test_m, mut ref_m) = (0.0, 0.0);
    for i in 0..4 {
        test_m += v[4 + 4 * i] * w[i] * delta;
    }
    for i in 0..4 {
        ref_m += v[5 + 4 * i] * w[i] * delta;
    }
    for i in 0..4 {
        test_m += v[6 + 4 * i] * w[i] * (1.0 - delta);
    }
    for i in 0..4 {
        ref_m += v[7 + 4 * i] * w[i] * (1.0 - delta);
    }
    let precision = test_m / test_len_w;
    let recall = ref_m / ref_len_w;
    let f_mean = 1.0 / (((1.0 - alpha) / precision) + (alpha / recall));
    let frag = if is_perfect(v) {
        0.0
    } else {
        v[20] / ((v[21] + v[22]) / 2.0)
    };
    let penalty = gamma * frag.powf(beta);
    let score = f_mean * (1.0 - penalty);
    // NaN (0/0) becomes 0, and the score is clamped at 0 (Java's Math.max gives +0.0).
    if score > 0.0 { score } else { 0.0 }
}

/// The corpus METEOR of a set of segments: their statistics summed (`MeteorStats.addStats`,
/// which leaves out the chunk of each perfect segment) and scored once.
pub fn corpus_score(stats: &[MeteorStats]) -> f64 {
    let mut sum = [0.0f64; STATS_LEN];
    for s in stats {
        let v = s.to_array();
        let perfect = is_perfect(&v);
        for (i, (acc, x)) in sum.iter_mut().zip(v).enumerate() {
            if i != 20 || !perfect {
                *acc += x;
            }
        }
    }
    score_of(&sum)
}

/// METEOR over a set of images: each image's statistics and score, and the corpus score.
#[derive(Clone, Debug, PartialEq)]
pub struct MeteorResult {
    /// Per image, the statistics of its best reference.
    pub stats: Vec<MeteorStats>,
    /// Per image, its score.
    pub per_image: Vec<f64>,
    /// The corpus score (from the summed statistics).
    pub corpus: f64,
}

/// The METEOR 1.5 scorer (English, `-norm`), over memory-mapped resources.
#[derive(Debug)]
pub struct Meteor {
    data: MeteorData,
}

impl Meteor {
    /// A scorer over already opened resources.
    pub fn new(data: MeteorData) -> Meteor {
        Meteor { data }
    }

    /// Opens the resources at `path` ([`MeteorData::open`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Meteor> {
        MeteorData::open(path).map(Meteor::new)
    }

    /// Opens the resources found through `$AOANET_METEOR_DATA` or the default location
    /// ([`MeteorData::open_default`]); `Ok(None)` when there are none.
    pub fn open_default() -> Result<Option<Meteor>> {
        Ok(MeteorData::open_default()?.map(Meteor::new))
    }

    /// The resources.
    pub fn data(&self) -> &MeteorData {
        &self.data
    }

    /// The statistics of one image: `candidate` against each of `references` (PTB-tokenized
    /// text, words separated by spaces), keeping the first best-scoring reference.
    ///
    /// The text goes through exactly what `meteor.py` and the jar do with it: `|||` removed
    /// from the candidate and one pass of `"  "` → `" "`, the request line split at `|||` (so
    /// a reference containing `|||` counts as several), each part trimmed, normalised and
    /// lower-cased. No references behave as one empty reference, as in the toolkit. (A line
    /// break inside a caption would desynchronise the toolkit's pipe; here it is white space.)
    pub fn score_segment<R: AsRef<str>>(&self, candidate: &str, references: &[R]) -> MeteorStats {
        self.score_segment_cached(candidate, references, &mut align::WordCache::default())
    }

    /// [`Meteor::score_segment`] with word look-ups kept in `cache` across calls.
    fn score_segment_cached<R: AsRef<str>>(
        &self,
        candidate: &str,
        references: &[R],
        cache: &mut align::WordCache,
    ) -> MeteorStats {
        let hyp = candidate.replace("|||", "").replace("  ", " ");
        let refs: Vec<&str> = references.iter().map(AsRef::as_ref).collect();
        let line = format!("SCORE ||| {} ||| {}", refs.join(" ||| "), hyp);
        let parts = java::split_literal(&line, "|||");
        // The request always has at least three parts: "SCORE", the references, the candidate.
        let (test, refs) = match parts.split_last() {
            Some((test, rest)) if rest.len() >= 2 => (*test, &rest[1..]),
            _ => return MeteorStats::default(),
        };
        let prefix = |w: &str| self.data.prefix_kind(w);
        let sentence = |text: &str, cache: &mut align::WordCache| {
            let line = normalize::normalize(java::trim(text), prefix);
            align::Sentence::new(&line, &self.data, cache)
        };
        let test = sentence(test, cache);
        let mut best: Option<(f64, MeteorStats)> = None;
        for r in refs {
            let reference = sentence(r, cache);
            let stats = align::align(&test, &reference, &self.data, cache);
            let score = stats.score();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, stats));
            }
        }
        best.map(|(_, s)| s).unwrap_or_default()
    }

    /// Scores a set of images, `candidates[i]` against `references[i]`, as
    /// `pycocoevalcap.meteor.Meteor.compute_score` does: per-image scores and the corpus score
    /// from the summed statistics. Images are spread over the available cores; the result does
    /// not depend on how (each image is scored on its own, the sum runs in image order).
    pub fn evaluate<C, R>(&self, candidates: &[C], references: &[Vec<R>]) -> Result<MeteorResult>
    where
        C: AsRef<str> + Sync,
        R: AsRef<str> + Sync,
    {
        if candidates.len() != references.len() {
            return Err(Error::invalid(format!(
                "METEOR: {} candidates but {} reference lists",
                candidates.len(),
                references.len()
            )));
        }
        let n = candidates.len();
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        // Below a few hundred images a thread costs more than it saves.
        let chunk = n.div_ceil(threads).max(256);
        let score_range = |lo: usize, hi: usize| -> Vec<MeteorStats> {
            let mut cache = align::WordCache::default();
            (lo..hi)
                .map(|i| {
                    self.score_segment_cached(candidates[i].as_ref(), &references[i], &mut cache)
                })
                .collect()
        };
        let stats: Vec<MeteorStats> = if n <= chunk {
            score_range(0, n)
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .step_by(chunk)
                    .map(|lo| s.spawn(move || score_range(lo, (lo + chunk).min(n))))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a METEOR worker panicked"))
                    .collect()
            })
        };
        let per_image = stats.iter().map(MeteorStats::score).collect();
        let corpus = corpus_score(&stats);
        Ok(MeteorResult {
            stats,
            per_image,
            corpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_through_the_toolkit_format() {
        let line = "8.0 14.0 3.0 7.0 2.0 2.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 3.0 3.0";
        let s = MeteorStats::parse(line).unwrap();
        assert_eq!(s.to_toolkit_string(), line);
        assert!(MeteorStats::parse("1.0 2.0").is_err());
        assert!(MeteorStats::parse(&line.replace("8.0", "-1.0")).is_err());
        assert!(MeteorStats::parse(&line.replace("8.0", "nan")).is_err());
    }

    #[test]
    fn scores_equal_the_jar_from_statistics() {
        // (statistics, the jar's EVAL output) from the fakecap fixture.
        let cases = [
            (
                "8.0 14.0 3.0 7.0 2.0 2.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 3.0 3.0",
                0.11800553855761298,
            ),
            (
                "10.0 10.0 5.0 6.0 1.0 1.0 2.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 3.0 3.0 3.0",
                0.10928961748633881,
            ),
            (
                "9.0 9.0 3.0 3.0 6.0 6.0 3.0 3.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 9.0 9.0",
                1.0,
            ),
        ];
        for (line, want) in cases {
            let got = MeteorStats::parse(line).unwrap().score();
            assert_eq!(got.to_bits(), f64::to_bits(want), "{line}");
        }
    }

    #[test]
    fn empty_candidate_scores_zero_and_is_never_nan() {
        let empty = MeteorStats::parse(
            "0.0 9.0 0.0 5.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0",
        )
        .unwrap();
        assert_eq!(empty.score().to_bits(), 0.0f64.to_bits());
        assert_eq!(MeteorStats::default().score().to_bits(), 0.0f64.to_bits());
        assert_eq!(corpus_score(&[]).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn corpus_sum_skips_the_chunk_of_perfect_segments() {
        let perfect = MeteorStats::parse(
            "9.0 9.0 3.0 3.0 6.0 6.0 3.0 3.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 9.0 9.0",
        )
        .unwrap();
        let other = MeteorStats::parse(
            "8.0 14.0 3.0 7.0 2.0 2.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 3.0 3.0",
        )
        .unwrap();
        // With the perfect segment's chunk left out, the sum has 2 chunks, not 3.
        let mut summed = [0.0; STATS_LEN];
        for (i, (a, b)) in perfect.to_array().iter().zip(other.to_array()).enumerate() {
            summed[i] = a + b;
        }
        summed[20] = 2.0;
        assert_eq!(corpus_score(&[perfect, other]), score_of(&summed));
        assert_eq!(corpus_score(&[perfect]), 1.0);
    }
}
