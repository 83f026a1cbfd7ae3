//! Data: the memory-mapped feature store, vocabulary and captions, the batch loader, the
//! synthetic world. Nothing here knows tensors: the loader hands out plain vectors.
//!
//! | module | job |
//! | --- | --- |
//! | [`features`] | the feature store file: validated open (mmap), zero-copy reads, streaming writer |
//! | [`captions`] | `captions.bin`: token ids, splits, raw references |
//! | [`vocab`] | `vocab.txt`, word counts, Karpathy's tokenisation |
//! | [`dataset`] | the data folder: features + captions + vocabulary, checked together |
//! | [`loader`] | batches in the reference's layout, seeded order, saveable position, read-ahead |
//! | [`ngrams`] | the train split's CIDEr-D document frequencies (the SCST reward's) |
//! | [`synth`] | the synthetic world, in memory, and its SVG drawings |

mod bytes;
pub mod captions;
pub mod dataset;
pub mod features;
pub mod loader;
pub mod ngrams;
pub mod synth;
pub mod vocab;

pub use bytes::fnv1a64;
pub use captions::{Captions, CaptionsBuilder, Split};
pub use dataset::Dataset;
pub use features::{Dtype, FeatureStore, FeatureStoreWriter};
pub use loader::{Batch, Loader, LoaderConfig, LoaderState, Mode};
pub use synth::{SynthConfig, World};
pub use vocab::Vocab;
