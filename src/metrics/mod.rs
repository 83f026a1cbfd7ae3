//! Caption metrics equal to the coco-caption toolkit (pycocoevalcap 1.2): PTB tokenizer, BLEU,
//! METEOR, ROUGE-L, CIDEr-D, plus the CIDEr-D training reward and its document frequencies.
//!
//! | module | what |
//! | --- | --- |
//! | [`numeric`] | numpy's pairwise summation (`np.mean`), Python's whitespace |
//! | [`ngram`] | n-grams over token ids packed into a `u128`, per-sentence counts in reference order |
//! | [`df`] | CIDEr-D document frequencies: builder, file format |
//! | [`cider`] | CIDEr-D: evaluation-time and the SCST reward on token indices |

mod hash;

pub mod cider;
pub mod df;
pub mod ngram;
pub mod numeric;

pub use cider::{CiderD, CiderRefs, corpus_cider_d, reward_tokens};
pub use df::{DfBuilder, DocumentFrequencies};
