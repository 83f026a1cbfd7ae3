//! A dataset: features, captions and vocabulary together, from a data folder on disk or built
//! in memory (the synthetic world). The loader runs over either through this one type.
//!
//! # The data folder (`aoanet train --data DIR`)
//!
//! | file | written by | content |
//! | --- | --- | --- |
//! | `feats.bin` | `aoanet-data bu-features` / `npz-features` / `synth` | [`FeatureStore`] |
//! | `captions.bin` | `aoanet-data labels` / `synth` | [`Captions`]: token ids, splits, raw references |
//! | `vocab.txt` | `aoanet-data labels` / `synth` | [`Vocab`] |
//! | `train-df.bin` | `aoanet-data ngrams` | CIDEr-D document frequencies of the train split |

use super::captions::{Captions, Split};
use super::features::FeatureStore;
use super::vocab::Vocab;
use crate::{Error, Result};
use std::path::Path;

/// File name of the feature store in a data folder.
pub const FEATURES_FILE: &str = "feats.bin";
/// File name of the captions in a data folder.
pub const CAPTIONS_FILE: &str = "captions.bin";
/// File name of the vocabulary in a data folder.
pub const VOCAB_FILE: &str = "vocab.txt";
/// File name of the train split's CIDEr-D document frequencies in a data folder.
pub const DF_FILE: &str = "train-df.bin";

/// Features, captions and vocabulary that agree with each other.
#[derive(Debug)]
pub struct Dataset {
    /// Region features of every image.
    pub features: FeatureStore,
    /// Captions, splits and raw references.
    pub captions: Captions,
    /// The vocabulary the captions' token ids refer to.
    pub vocab: Vocab,
}

impl Dataset {
    /// Checks that the parts agree: the vocabulary size is the captions', and every captioned
    /// image has features (an error names the captions file, the image and the store).
    pub fn new(features: FeatureStore, captions: Captions, vocab: Vocab) -> Result<Dataset> {
        Self::check(&features, &captions, &vocab, Path::new("captions"))?;
        Ok(Dataset {
            features,
            captions,
            vocab,
        })
    }

    fn check(
        features: &FeatureStore,
        captions: &Captions,
        vocab: &Vocab,
        captions_name: &Path,
    ) -> Result<()> {
        if vocab.len() != captions.vocab_size() {
            return Err(Error::format(
                captions_name,
                format!(
                    "token ids refer to a vocabulary of {} words, but the vocabulary has {}",
                    captions.vocab_size(),
                    vocab.len()
                ),
            ));
        }
        let missing: Vec<_> = captions
            .iter()
            .filter(|img| !features.contains(img.id))
            .collect();
        if let Some(first) = missing.first() {
            return Err(Error::format(
                captions_name,
                format!(
                    "{} captioned image(s) have no features in {}, e.g. image {} ({} split)",
                    missing.len(),
                    features.path().display(),
                    first.id,
                    first.split.name()
                ),
            ));
        }
        Ok(())
    }

    /// Opens the data folder `dir` (see the module docs).
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref();
        let features = FeatureStore::open(dir.join(FEATURES_FILE))?;
        let captions_path = dir.join(CAPTIONS_FILE);
        let captions = Captions::read(&captions_path)?;
        let vocab = Vocab::read(dir.join(VOCAB_FILE))?;
        Self::check(&features, &captions, &vocab, &captions_path)?;
        Ok(Dataset {
            features,
            captions,
            vocab,
        })
    }

    /// Writes the dataset as a data folder (creating `dir`); each file appears atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.features.save(dir.join(FEATURES_FILE))?;
        self.captions.write(dir.join(CAPTIONS_FILE))?;
        self.vocab.write(dir.join(VOCAB_FILE))
    }

    /// Number of images of `split`.
    pub fn split_len(&self, split: Split) -> usize {
        self.captions.iter().filter(|i| i.split == split).count()
    }
}
