//! Caption metrics equal to the coco-caption toolkit (pycocoevalcap 1.2): PTB tokenizer, BLEU,
//! METEOR, ROUGE-L, CIDEr-D, plus the CIDEr-D training reward and its document frequencies.
//!
//! | module | what |
//! | --- | --- |
//! | [`numeric`] | numpy's pairwise summation (`np.mean`), Python's whitespace |
//! | [`ngram`] | n-grams over token ids packed into a `u128`, per-sentence counts in reference order |
//! | [`df`] | CIDEr-D document frequencies: builder, file format |
//! | [`cider`] | CIDEr-D: evaluation-time and the SCST reward on token indices |
//! | [`tokenizer`] | the PTB tokenizer and punctuation filter |
//! | `meteor` | METEOR 1.5 (its own branch; plugs in through [`ExternalMetric`]) |
//! | [`words`] | word interning for the word-level metrics |
//! | [`bleu`] | BLEU-1..4 (`closest`) |
//! | [`rouge`] | ROUGE-L (β 1.2) |
//! | [`eval`] | the corpus evaluator: raw captions in, the toolkit's keys out; the METEOR/SPICE hook |
//! | [`input`] | reading COCO results + annotations, or the combined captions/prediction form |
//! | [`spice`] | SPICE through the external Java jar |
//! | [`perplexity`] | perplexity from log-probabilities |
//! | [`bad_endings`] | the share of captions ending in an article or preposition |

mod hash;
mod parallel;

pub mod bad_endings;
pub mod bleu;
pub mod cider;
pub mod df;
pub mod eval;
pub mod input;
pub mod meteor;
pub mod ngram;
pub mod numeric;
pub mod perplexity;
pub mod rouge;
pub mod spice;
pub mod tokenizer;
pub mod words;

pub use bad_endings::{BAD_ENDINGS, bad_ending_rate};
pub use bleu::{BleuStats, corpus_bleu};
pub use cider::{CiderD, CiderRefs, corpus_cider_d, reward_tokens};
pub use df::{DfBuilder, DocumentFrequencies};
pub use eval::{EvalSet, Evaluation, Evaluator, ExternalMetric, ImageKey, KEYS, Metric};
pub use perplexity::Perplexity;
pub use rouge::{corpus_rouge_l, rouge_l};
pub use tokenizer::PtbTokenizer;
pub use words::WordIds;
