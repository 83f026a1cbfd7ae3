//! The corpus evaluator: raw candidate and reference captions per image in, the toolkit's
//! scores out (corpus and per image), under the toolkit's key names.
//!
//! It runs what `COCOEvalCap.evaluate` runs (METRICS.md §0): the PTB tokenizer over all
//! references as one stream and over all candidates as another, in image order; then BLEU-1..4,
//! ROUGE-L and CIDEr-D in process, and METEOR and SPICE through the [`ExternalMetric`] hook
//! when given one (METEOR from `crate::metrics::meteor`, SPICE from [`super::spice`]).
//! A metric that was not computed is `None` (`null` in JSON).

use super::bleu::BleuStats;
use super::cider::{RefVectors, gaussian_penalty, penalty_table, score_with};
use super::df::ShardedDf;
use super::ngram::{NgramCounts, NgramKey, SlottedRefs};
use super::numeric::{is_py_space, np_mean};
use super::parallel::par_map;
use super::rouge::rouge_l;
use super::tokenizer::{PtbTokenizer, tokenize_all_parallel};
use super::words::WordIds;
use crate::json::{self, Value};
use crate::{Error, Result};
use std::fmt;

/// The toolkit's score keys, in its order.
pub const KEYS: [&str; 8] = [
    "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE",
];

const METEOR: usize = 4;
const ROUGE_L: usize = 5;
const CIDER: usize = 6;
const SPICE: usize = 7;

/// An image's identity: a COCO `image_id` or, in the combined form, an `image_name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageKey {
    /// A numeric COCO id.
    Id(i64),
    /// A name (or an id given as a string).
    Name(String),
}

impl ImageKey {
    /// The key as JSON (a number or a string, as it was given).
    pub fn to_json(&self) -> Value {
        match self {
            ImageKey::Id(i) => Value::from(*i),
            ImageKey::Name(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageKey::Id(i) => write!(f, "{i}"),
            ImageKey::Name(s) => f.write_str(s),
        }
    }
}

/// The metrics the evaluator can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// BLEU-1..4.
    Bleu,
    /// METEOR 1.5 (needs its data; see `crate::metrics::meteor`).
    Meteor,
    /// ROUGE-L.
    Rouge,
    /// CIDEr-D (the toolkit's "CIDEr").
    Cider,
    /// SPICE (needs Java and the SPICE jar; see [`super::spice`]).
    Spice,
}

impl Metric {
    /// All metrics, in the toolkit's order.
    pub const ALL: [Metric; 5] = [
        Metric::Bleu,
        Metric::Meteor,
        Metric::Rouge,
        Metric::Cider,
        Metric::Spice,
    ];

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Bleu => "bleu",
            Metric::Meteor => "meteor",
            Metric::Rouge => "rouge",
            Metric::Cider => "cider",
            Metric::Spice => "spice",
        }
    }

    /// Parses a comma-separated list such as `bleu,rouge,cider` (case-insensitive; `rouge_l`,
    /// `cider-d` and `all` accepted).
    pub fn parse_list(list: &str) -> Result<Vec<Metric>> {
        let mut out = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let found: &[Metric] = match item.to_ascii_lowercase().as_str() {
                "bleu" => &[Metric::Bleu],
                "meteor" => &[Metric::Meteor],
                "rouge" | "rouge_l" | "rouge-l" => &[Metric::Rouge],
                "cider" | "cider-d" | "ciderd" => &[Metric::Cider],
                "spice" => &[Metric::Spice],
                "all" => &Metric::ALL,
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown metric {item:?}; choose from bleu, meteor, rouge, cider, spice, all"
                    )));
                }
            };
            for &m in found {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        if out.is_empty() {
            return Err(Error::invalid("no metric selected"));
        }
        Ok(out)
    }
}

/// What the evaluator scores: per image a key, one candidate and at least one reference, all
/// raw (untokenized) text, in evaluation order.
#[derive(Clone, Debug, Default)]
pub struct EvalSet {
    /// Image keys.
    pub keys: Vec<ImageKey>,
    /// One candidate caption per image.
    pub candidates: Vec<String>,
    /// The reference captions of each image.
    pub references: Vec<Vec<String>>,
}

impl EvalSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the invariants the toolkit asserts: equal lengths, at least one image, at least
    /// one reference per image.
    pub fn validate(&self) -> Result<()> {
        if self.keys.len() != self.candidates.len() || self.keys.len() != self.references.len() {
            return Err(Error::invalid(format!(
                "{} images but {} candidates and {} reference sets",
                self.keys.len(),
                self.candidates.len(),
                self.references.len()
            )));
        }
        if self.keys.is_empty() {
            return Err(Error::invalid("no image to evaluate"));
        }
        if let Some(i) = self.references.iter().position(Vec::is_empty) {
            return Err(Error::invalid(format!(
                "image {} has no reference caption",
                self.keys[i]
            )));
        }
        Ok(())
    }
}

/// A metric computed outside the in-process scorers: METEOR (its own module) or SPICE (an
/// external Java step). It gets the toolkit's *tokenized* captions, as the toolkit's scorers
/// do, and returns the corpus score and one score per image, in the given order.
pub trait ExternalMetric {
    /// The toolkit's key for this metric: `"METEOR"` or `"SPICE"`.
    fn key(&self) -> &'static str;

    /// Scores `candidates[i]` against `references[i]` for every image `keys[i]`.
    fn score(
        &self,
        keys: &[ImageKey],
        candidates: &[String],
        references: &[Vec<String>],
    ) -> Result<(f64, Vec<f64>)>;
}

/// Which metrics to compute and the external scorers to use.
#[derive(Clone, Copy)]
pub struct Evaluator<'a> {
    /// BLEU-1..4.
    pub bleu: bool,
    /// ROUGE-L.
    pub rouge: bool,
    /// CIDEr-D.
    pub cider: bool,
    /// METEOR, if available.
    pub meteor: Option<&'a dyn ExternalMetric>,
    /// SPICE, if available.
    pub spice: Option<&'a dyn ExternalMetric>,
}

impl Default for Evaluator<'_> {
    fn default() -> Self {
        Self::offline()
    }
}

impl<'a> Evaluator<'a> {
    /// BLEU, ROUGE-L and CIDEr-D: everything that needs no data file or Java.
    pub fn offline() -> Self {
        Evaluator {
            bleu: true,
            rouge: true,
            cider: true,
            meteor: None,
            spice: None,
        }
    }

    /// Adds METEOR.
    pub fn with_meteor(mut self, meteor: &'a dyn ExternalMetric) -> Self {
        self.meteor = Some(meteor);
        self
    }

    /// Adds SPICE.
    pub fn with_spice(mut self, spice: &'a dyn ExternalMetric) -> Self {
        self.spice = Some(spice);
        self
    }

    /// Tokenizes and scores `set`.
    pub fn evaluate(&self, set: &EvalSet) -> Result<Evaluation> {
        set.validate()?;
        let (cands, refs) = tokenize(set);
        let n = set.len();
        let mut corpus: [Option<f64>; 8] = [None; 8];
        let mut per_image: Vec<[Option<f64>; 8]> = vec![[None; 8]; n];
        let mut bleu_stats = None;

        if self.bleu || self.rouge || self.cider {
            let offline = offline_scores(self, &cands, &refs)?;
            if let Some((totals, per)) = offline.bleu {
                let scores = totals.scores();
                for k in 0..4 {
                    corpus[k] = Some(scores[k]);
                    for (img, p) in per_image.iter_mut().zip(&per) {
                        img[k] = Some(p[k]);
                    }
                }
                bleu_stats = Some(totals);
            }
            if let Some(per) = offline.cider {
                fill(&mut corpus, &mut per_image, CIDER, np_mean(&per), &per);
            }
            if let Some(per) = offline.rouge {
                fill(&mut corpus, &mut per_image, ROUGE_L, np_mean(&per), &per);
            }
        }
        for (slot, ext) in [(METEOR, self.meteor), (SPICE, self.spice)] {
            if let Some(ext) = ext {
                let (score, per) = ext.score(&set.keys, &cands, &refs)?;
                if per.len() != n {
                    return Err(Error::invalid(format!(
                        "{} returned {} per-image scores for {n} images",
                        ext.key(),
                        per.len()
                    )));
                }
                fill(&mut corpus, &mut per_image, slot, score, &per);
            }
        }
        Ok(Evaluation {
            keys: set.keys.clone(),
            corpus,
            per_image,
            bleu_stats,
            tokenized_candidates: cands,
            tokenized_references: refs,
        })
    }
}

/// A sentence's word ids as BLEU/CIDEr-D split it and, where different, as ROUGE-L splits it.
type Split2 = (Vec<u32>, Option<Vec<u32>>);

/// Per-image results of the in-process scorers.
struct Offline {
    bleu: Option<(BleuStats, Vec<[f64; 4]>)>,
    cider: Option<Vec<f64>>,
    rouge: Option<Vec<f64>>,
}

/// BLEU, CIDEr-D and ROUGE-L over tokenized text: words interned once; n-grams counted once per
/// sentence and numbered once per image, shared by BLEU's clipping, the document frequencies and
/// CIDEr-D; frequencies counted on sharded threads; images scored in parallel (no result
/// depends on the thread count).
fn offline_scores(ev: &Evaluator<'_>, cands: &[String], refs: &[Vec<String>]) -> Result<Offline> {
    let mut words = WordIds::new();
    // BLEU and CIDEr-D split on any whitespace, ROUGE-L on single spaces. The tokenizer's
    // output separates tokens by single spaces, so the two agree except for "" and for tokens
    // holding other whitespace (then split again).
    let mut split_both = |s: &str| {
        let ws = words.split_whitespace(s);
        let plain =
            !s.is_empty() && (s.is_ascii() || !s.chars().any(|c| c != ' ' && is_py_space(c)));
        let sp = if plain && !s.contains("  ") && !s.starts_with(' ') && !s.ends_with(' ') {
            None
        } else {
            Some(words.split_space(s))
        };
        (ws, sp)
    };
    let cand_split: Vec<Split2> = cands.iter().map(|s| split_both(s)).collect();
    let ref_split: Vec<Vec<Split2>> = refs
        .iter()
        .map(|rs| rs.iter().map(|s| split_both(s)).collect())
        .collect();
    let space = |x: &Split2| -> Vec<u32> { x.1.clone().unwrap_or_else(|| x.0.clone()) };

    let counts = ev.bleu || ev.cider;
    let (cand_counts, slotted): (Vec<NgramCounts>, Vec<SlottedRefs>) = if counts {
        (
            par_map(&cand_split, 1024, |s| NgramCounts::new(&s.0)),
            par_map(&ref_split, 256, |rs| {
                let tokens: Vec<&[u32]> = rs.iter().map(|s| s.0.as_slice()).collect();
                SlottedRefs::from_tokens(&tokens)
            }),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let (df, per_image_df) = if ev.cider {
        let keys: Vec<&[NgramKey]> = slotted.iter().map(|s| s.sorted_keys.as_slice()).collect();
        let (df, per) = ShardedDf::build(&keys);
        (Some(df), per)
    } else {
        (None, Vec::new())
    };
    let ref_len = df.as_ref().map_or(0.0, |d| (d.num_images() as f64).ln());
    let penalties = penalty_table();
    let penalty = |d: i64| match penalties.get(d.unsigned_abs() as usize) {
        Some(&p) => p,
        None => gaussian_penalty(d),
    };
    let idf_of = |count: u32| ref_len - f64::from(count).max(1.0).ln();

    let images: Vec<usize> = (0..cands.len()).collect();
    let (do_bleu, do_cider, do_rouge) = (ev.bleu, ev.cider, ev.rouge);
    let per: Vec<(Option<BleuStats>, Option<f64>, Option<f64>)> = par_map(&images, 128, |&i| {
        let bleu = do_bleu.then(|| BleuStats::from_slotted(&cand_counts[i], &slotted[i]));
        let cider = do_cider.then(|| {
            let df = df.as_ref().expect("frequencies built");
            let slot_idf = slotted[i].by_slot(per_image_df[i].iter().map(|&c| idf_of(c)));
            let vectors = RefVectors::new(&slotted[i], slot_idf);
            score_with(
                &cand_counts[i],
                &slotted[i],
                &vectors,
                |k| idf_of(df.get(k)),
                penalty,
            )
        });
        let rouge = do_rouge.then(|| {
            let c = space(&cand_split[i]);
            let r: Vec<Vec<u32>> = ref_split[i].iter().map(space).collect();
            rouge_l(&c, &r)
        });
        (bleu, cider, rouge)
    });
    let bleu = ev.bleu.then(|| {
        let mut totals = BleuStats::default();
        let mut scores = Vec::with_capacity(per.len());
        for (b, _, _) in &per {
            let b = b.as_ref().expect("BLEU computed");
            totals.add(b);
            scores.push(b.scores());
        }
        (totals, scores)
    });
    Ok(Offline {
        bleu,
        cider: ev
            .cider
            .then(|| per.iter().map(|p| p.1.expect("CIDEr computed")).collect()),
        rouge: ev
            .rouge
            .then(|| per.iter().map(|p| p.2.expect("ROUGE computed")).collect()),
    })
}

fn fill(
    corpus: &mut [Option<f64>; 8],
    per_image: &mut [[Option<f64>; 8]],
    slot: usize,
    score: f64,
    per: &[f64],
) {
    corpus[slot] = Some(score);
    for (img, &p) in per_image.iter_mut().zip(per) {
        img[slot] = Some(p);
    }
}

/// The toolkit's two tokenizer runs: all references as one stream, all candidates as another
/// (each spread over threads with the same result as one stream).
fn tokenize(set: &EvalSet) -> (Vec<String>, Vec<Vec<String>>) {
    let flat: Vec<&str> = set
        .references
        .iter()
        .flat_map(|rs| rs.iter().map(String::as_str))
        .collect();
    let (cands, flat_tok) = if flat.len() + set.candidates.len() < 4096 {
        // Small sets: the two streams side by side.
        std::thread::scope(|s| {
            let refs = s.spawn(|| PtbTokenizer::new().tokenize_all(&flat));
            let cands = PtbTokenizer::new().tokenize_all(&set.candidates);
            (cands, refs.join().expect("tokenizer thread"))
        })
    } else {
        (
            tokenize_all_parallel(&set.candidates),
            tokenize_all_parallel(&flat),
        )
    };
    let mut it = flat_tok.into_iter();
    let refs = set
        .references
        .iter()
        .map(|rs| it.by_ref().take(rs.len()).collect())
        .collect();
    (cands, refs)
}

/// Scores of an evaluation: corpus and per image, indexed like [`KEYS`].
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Image keys, in evaluation order.
    pub keys: Vec<ImageKey>,
    /// Corpus scores by [`KEYS`] index; `None` where not computed.
    pub corpus: [Option<f64>; 8],
    /// Per-image scores by [`KEYS`] index.
    pub per_image: Vec<[Option<f64>; 8]>,
    /// BLEU's corpus counts, when BLEU was computed.
    pub bleu_stats: Option<BleuStats>,
    /// The tokenized candidates (what the scorers saw).
    pub tokenized_candidates: Vec<String>,
    /// The tokenized references.
    pub tokenized_references: Vec<Vec<String>>,
}

impl Evaluation {
    /// The corpus score under a toolkit key (`"Bleu_4"`, `"CIDEr"`, ...).
    pub fn get(&self, key: &str) -> Option<f64> {
        KEYS.iter()
            .position(|&k| k == key)
            .and_then(|i| self.corpus[i])
    }

    /// Image `i`'s score under a toolkit key.
    pub fn image(&self, i: usize, key: &str) -> Option<f64> {
        KEYS.iter()
            .position(|&k| k == key)
            .and_then(|k| self.per_image[i][k])
    }

    /// The toolkit's keys at top level (`null` where not computed) and `per_image`: a list of
    /// `{image_id, <keys>...}` in evaluation order.
    pub fn to_json(&self) -> Value {
        let mut fields: Vec<(String, Value)> = KEYS
            .iter()
            .zip(&self.corpus)
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let per: Vec<Value> = self
            .keys
            .iter()
            .zip(&self.per_image)
            .map(|(key, scores)| {
                let mut f = vec![("image_id".to_string(), key.to_json())];
                f.extend(
                    KEYS.iter()
                        .zip(scores)
                        .map(|(k, v)| (k.to_string(), Value::from(*v))),
                );
                Value::Object(f)
            })
            .collect();
        fields.push(("per_image".to_string(), Value::Array(per)));
        json::object(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> EvalSet {
        EvalSet {
            keys: vec![ImageKey::Id(1), ImageKey::Name("b".into())],
            candidates: vec!["A dog runs.".into(), "".into()],
            references: vec![
                vec!["A dog runs.".into(), "The dog is running!".into()],
                vec!["Two cats sleep.".into()],
            ],
        }
    }

    #[test]
    fn identical_candidate_scores_one_and_json_has_every_key() {
        let e = Evaluator::offline().evaluate(&set()).unwrap();
        assert!((e.image(0, "Bleu_1").unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(e.image(0, "ROUGE_L"), Some(1.0));
        assert_eq!(e.image(1, "CIDEr"), Some(0.0));
        assert_eq!(e.get("METEOR"), None);
        assert_eq!(e.tokenized_candidates, ["a dog runs", ""]);
        let j = e.to_json();
        for k in KEYS {
            assert!(j.get(k).is_some(), "{k}");
        }
        assert!(j.get("SPICE").unwrap().is_null());
        let per = j.get("per_image").unwrap().as_array().unwrap();
        assert_eq!(per[1].get("image_id").unwrap().as_str(), Some("b"));
    }

    #[test]
    fn external_metrics_plug_in() {
        struct Fake;
        impl ExternalMetric for Fake {
            fn key(&self) -> &'static str {
                "METEOR"
            }
            fn score(
                &self,
                k: &[ImageKey],
                c: &[String],
                r: &[Vec<String>],
            ) -> Result<(f64, Vec<f64>)> {
                assert_eq!(
                    (k.len(), c[0].as_str(), r[0][1].as_str()),
                    (2, "a dog runs", "the dog is running")
                );
                Ok((0.5, vec![0.25, 0.75]))
            }
        }
        let e = Evaluator::offline()
            .with_meteor(&Fake)
            .evaluate(&set())
            .unwrap();
        assert_eq!(e.get("METEOR"), Some(0.5));
        assert_eq!(e.image(1, "METEOR"), Some(0.75));
    }

    #[test]
    fn metric_lists_parse_and_bad_sets_are_refused() {
        assert_eq!(
            Metric::parse_list("BLEU, cider-d,rouge_l").unwrap(),
            [Metric::Bleu, Metric::Cider, Metric::Rouge]
        );
        assert_eq!(Metric::parse_list("all").unwrap().len(), 5);
        assert!(
            Metric::parse_list("bleu,wmd")
                .unwrap_err()
                .to_string()
                .contains("wmd")
        );
        let mut s = set();
        s.references[1].clear();
        let e = Evaluator::offline().evaluate(&s).unwrap_err().to_string();
        assert!(e.contains("image b has no reference"), "{e}");
        assert!(Evaluator::offline().evaluate(&EvalSet::default()).is_err());
    }
}
