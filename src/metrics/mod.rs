//! Caption metrics equal to the coco-caption toolkit (pycocoevalcap 1.2): PTB tokenizer, BLEU,
//! METEOR, ROUGE-L, CIDEr-D, plus the CIDEr-D training reward and its document frequencies.
//!
//! | module | what |
//! | --- | --- |
//! | [`numeric`] | numpy's pairwise summation (`np.mean`), Python's whitespace |
//! | [`ngram`] | n-grams over token ids packed into a `u128`, per-sentence counts in reference order |
//! | [`df`] | CIDEr-D document frequencies: builder, file format |
//! | [`cider`] | CIDEr-D: evaluation-time and the SCST reward on token indices |
//! | [`words`] | word interning for the word-level metrics |
//! | [`bleu`] | BLEU-1..4 (`closest`) |
//! | [`rouge`] | ROUGE-L (β 1.2) |

mod hash;

pub mod bleu;
pub mod cider;
pub mod df;
pub mod meteor;
pub mod ngram;
pub mod numeric;
pub mod rouge;
pub mod words;

pub use bleu::{BleuStats, corpus_bleu};
pub use cider::{CiderD, CiderRefs, corpus_cider_d, reward_tokens};
pub use df::{DfBuilder, DocumentFrequencies};
pub use rouge::{corpus_rouge_l, rouge_l};
pub use words::WordIds;
