//! Checkpoints: one safetensors file holding everything a run needs to continue exactly.
//!
//! | part | where |
//! | --- | --- |
//! | model weights | tensors under the reference's `state_dict` names (`embed.0.weight`, ...) |
//! | Adam moments and step counts | tensors under `optimizer.` ([`AdamState::add_to`]) |
//! | iteration, epoch, learning rate, best score, RNG and loader position, plateau state, training seconds | metadata `train_state` ([`TrainState`]) |
//! | training options | metadata `options` ([`TrainOptions::to_json`]) |
//! | model configuration | metadata `model_config` ([`AoaConfig::to_json`]) |
//! | vocabulary | metadata `vocab`: `{"1": word, ...}`, the reference's `ix_to_word` form |
//! | history | metadata `history` |
//!
//! A file converted from the reference's `model.pth` (`data-tools/pth_to_safetensors.py`) has
//! the same weight names and, with `--infos`, `vocab` and `opt` metadata: [`Checkpoint::open`]
//! reads it too, as a model without training state.
//!
//! Files are written atomically ([`crate::io::write_atomic`]: temporary file, fsync, rename,
//! fsync of the folder): the previous checkpoint stays in place, complete, until the new one
//! is renamed over it, so a crash or `kill -9` at any moment leaves a readable checkpoint.

use super::AdamState;
use super::history::{self, HistoryRecord};
use super::options::{Stage, TrainOptions};
use super::schedule::{PlateauMode, PlateauState};
use crate::data::{LoaderState, Vocab};
use crate::io::{SafeTensors, Unexpected, Writer, write_atomic};
use crate::json::{self, Value};
use crate::model::{AoaConfig, AoaModel};
use crate::nn::Module;
use crate::rng::PhiloxState;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The last checkpoint of a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The checkpoint with the best val CIDEr-D of a run folder.
pub const BEST_FILE: &str = "checkpoint-best.safetensors";
/// The prefix of the optimiser's tensors.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";
/// The value of the `format` metadata entry.
pub const FORMAT: &str = "aoanet-checkpoint-1";

/// Where a run stands: the counters and generator states that make a resumed run continue
/// exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// The stage the run is in.
    pub stage: Stage,
    /// Iterations done (over all stages: SCST continues XE's count, as the reference).
    pub iteration: u64,
    /// Epochs done.
    pub epoch: u64,
    /// The learning rate in use (SCST's plateau schedule changes it).
    pub lr: f64,
    /// The best val CIDEr-D so far, and its iteration.
    pub best: Option<(f64, u64)>,
    /// The training generator (dropout, scheduled sampling, SCST samples).
    pub rng: PhiloxState,
    /// The train loader's position.
    pub loader: LoaderState,
    /// `ReduceLROnPlateau`'s state (SCST).
    pub plateau: Option<PlateauState>,
    /// Seconds spent training in this stage so far (over resumes).
    pub seconds: f64,
}

impl TrainState {
    /// As JSON (64-bit values as decimal strings).
    pub fn to_json(&self) -> Value {
        json::object([
            ("stage", Value::from(self.stage.name())),
            ("iteration", Value::from(self.iteration.to_string())),
            ("epoch", Value::from(self.epoch.to_string())),
            ("lr", Value::from(self.lr)),
            (
                "best",
                match self.best {
                    Some((score, it)) => json::object([
                        ("score", Value::from(score)),
                        ("iteration", Value::from(it.to_string())),
                    ]),
                    None => Value::Null,
                },
            ),
            (
                "rng",
                json::object([
                    ("seed", self.rng.seed.to_string()),
                    ("stream", self.rng.stream.to_string()),
                    ("offset", self.rng.offset.to_string()),
                ]),
            ),
            ("loader", self.loader.to_json()),
            ("plateau", self.plateau.map_or(Value::Null, |p| p.to_json())),
            ("seconds", Value::from(self.seconds)),
        ])
    }

    /// Reads [`TrainState::to_json`]'s output.
    pub fn from_json(v: &Value) -> Result<TrainState> {
        let bad = |k: &str| Error::invalid(format!("training state: missing or bad {k}"));
        let big = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad(k))
        };
        let num = |k: &str| v.get(k).and_then(Value::as_f64).ok_or_else(|| bad(k));
        let rng = v.get("rng").ok_or_else(|| bad("rng"))?;
        let best = match v.get("best") {
            None | Some(Value::Null) => None,
            Some(b) => Some((
                b.get("score")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| bad("best.score"))?,
                big(b, "iteration")?,
            )),
        };
        let plateau = match v.get("plateau") {
            None | Some(Value::Null) => None,
            Some(p) => Some(PlateauState::from_json(p, PlateauMode::Min)?),
        };
        Ok(TrainState {
            stage: Stage::parse(
                v.get("stage")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("stage"))?,
            )?,
            iteration: big(v, "iteration")?,
            epoch: big(v, "epoch")?,
            lr: num("lr")?,
            best,
            rng: PhiloxState {
                seed: big(rng, "seed")?,
                stream: big(rng, "stream")?,
                offset: big(rng, "offset")?,
            },
            loader: LoaderState::from_json(v.get("loader").ok_or_else(|| bad("loader"))?)?,
            plateau,
            seconds: num("seconds")?,
        })
    }
}

/// Everything written into a checkpoint.
pub struct CheckpointContents<'a> {
    /// The model's parameters, by name.
    pub params: &'a [(String, Tensor)],
    /// The optimiser state.
    pub adam: &'a AdamState,
    /// Counters and generator states.
    pub state: &'a TrainState,
    /// The run's options.
    pub options: &'a TrainOptions,
    /// The model's configuration.
    pub model: &'a AoaConfig,
    /// The vocabulary.
    pub vocab: &'a Vocab,
    /// The history so far.
    pub history: &'a [HistoryRecord],
}

/// The vocabulary as the reference's `ix_to_word` object.
fn vocab_json(vocab: &Vocab) -> Value {
    Value::Object(
        vocab
            .words()
            .iter()
            .enumerate()
            .map(|(k, w)| ((k + 1).to_string(), Value::from(w.as_str())))
            .collect(),
    )
}

/// Reads an `ix_to_word` object (keys "1".."V" in any order).
fn vocab_from_json(v: &Value, path: &Path) -> Result<Vocab> {
    let fields = v
        .as_object()
        .ok_or_else(|| Error::format(path, "metadata vocab: not a JSON object"))?;
    let mut words = vec![None; fields.len()];
    for (k, w) in fields {
        let ix: usize = k.parse().map_err(|_| {
            Error::format(path, format!("metadata vocab: key {k:?} is not an index"))
        })?;
        let slot = ix
            .checked_sub(1)
            .and_then(|i| words.get_mut(i))
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("metadata vocab: index {ix} outside 1..={}", fields.len()),
                )
            })?;
        *slot = Some(
            w.as_str()
                .ok_or_else(|| Error::format(path, format!("metadata vocab: {k} is not a word")))?
                .to_string(),
        );
    }
    let words: Option<Vec<String>> = words.into_iter().collect();
    let words = words.ok_or_else(|| Error::format(path, "metadata vocab: an index is missing"))?;
    Vocab::new(words).map_err(|e| Error::format(path, format!("metadata vocab: {e}")))
}

/// Writes a checkpoint to `path` atomically. `pause` (a test hook) stops half way through
/// writing the temporary file for that long, after printing a line saying so on stderr.
pub fn save(path: &Path, c: &CheckpointContents<'_>, pause: Option<Duration>) -> Result<()> {
    let mut w = Writer::new();
    w.add_all("", c.params, None)?;
    c.adam.add_to(&mut w, OPTIMIZER_PREFIX)?;
    w.set_metadata("format", FORMAT);
    w.set_metadata("train_state", c.state.to_json().to_json());
    w.set_metadata("options", c.options.to_json().to_json());
    w.set_metadata("model_config", c.model.to_json().to_json());
    w.set_metadata("vocab", vocab_json(c.vocab).to_json());
    w.set_metadata("history", history::to_json(c.history).to_json());
    match pause {
        None => w.write(path),
        Some(d) => {
            let bytes = w.to_bytes()?;
            write_atomic(path, |out| {
                let half = bytes.len() / 2;
                out.write_all(&bytes[..half])
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io(path, e))?;
                eprintln!(
                    "checkpoint write paused half way ({} of {} bytes) for {:.1}s: {}",
                    half,
                    bytes.len(),
                    d.as_secs_f64(),
                    path.display()
                );
                std::thread::sleep(d);
                out.write_all(&bytes[half..])
                    .map_err(|e| Error::io(path, e))
            })
        }
    }
}

/// What a checkpoint holds besides the weights when aoanet wrote it during training.
#[derive(Clone, Debug)]
pub struct TrainMeta {
    /// Counters and generator states.
    pub state: TrainState,
    /// The run's options.
    pub options: TrainOptions,
    /// The history up to this checkpoint.
    pub history: Vec<HistoryRecord>,
}

/// An opened checkpoint: ours, or a converted reference `model.pth`.
pub struct Checkpoint {
    file: SafeTensors,
    /// The model's configuration.
    pub model: AoaConfig,
    /// The vocabulary the model's word ids refer to.
    pub vocab: Vocab,
    /// Training state, options and history (`None` for a converted reference checkpoint).
    pub train: Option<TrainMeta>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpoint({})", self.file.path().display())
    }
}

/// The reference's `opt` names that [`AoaConfig::set`] understands, as `infos['opt']` holds
/// them (everything else in `opt` is about training and ignored here).
const REFERENCE_MODEL_OPTS: [&str; 13] = [
    "rnn_size",
    "input_encoding_size",
    "att_feat_size",
    "fc_feat_size",
    "num_heads",
    "multi_head_scale",
    "refine",
    "refine_aoa",
    "use_ff",
    "decoder_type",
    "ctx_drop",
    "mean_feats",
    "dropout_aoa",
];

impl Checkpoint {
    /// Opens the checkpoint at `path`, or the last checkpoint of the run folder `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = resolve(path.as_ref(), CHECKPOINT_FILE);
        let file = SafeTensors::open(&path)?;
        let meta = |k: &str| -> Result<Option<Value>> {
            file.meta(k)
                .map(|text| {
                    json::parse(text, &format!("{} metadata {k}", path.display()))
                        .map_err(|e| Error::format(&path, e.to_string()))
                })
                .transpose()
        };
        let vocab = match meta("vocab")? {
            Some(v) => vocab_from_json(&v, &path)?,
            None => {
                return Err(Error::format(
                    &path,
                    "no vocabulary in the metadata: a converted reference checkpoint needs \
                     `pth_to_safetensors.py --infos infos_<id>.pkl`",
                ));
            }
        };
        let model = match meta("model_config")? {
            Some(c) => AoaConfig::from_json(&c).map_err(|e| Error::format(&path, e.to_string()))?,
            None => {
                // A converted reference checkpoint: train.sh's model with the options its
                // `opt` records, and the vocabulary's size.
                let mut c = AoaConfig::reference(vocab.len());
                if let Some(opt) = meta("opt")? {
                    for k in REFERENCE_MODEL_OPTS {
                        if let Some(v) = opt.get(k) {
                            c.set(k, v)
                                .map_err(|e| Error::format(&path, e.to_string()))?;
                        }
                    }
                }
                c.validate()?;
                c
            }
        };
        if model.vocab_size != vocab.len() {
            return Err(Error::format(
                &path,
                format!(
                    "the model has {} words but the vocabulary {}",
                    model.vocab_size,
                    vocab.len()
                ),
            ));
        }
        let train = match meta("train_state")? {
            None => None,
            Some(s) => {
                let parse = || -> Result<TrainMeta> {
                    Ok(TrainMeta {
                        state: TrainState::from_json(&s)?,
                        options: TrainOptions::from_json(
                            &meta("options")?
                                .ok_or_else(|| Error::invalid("no options metadata"))?,
                        )?,
                        history: match meta("history")? {
                            Some(h) => history::from_json(&h)?,
                            None => Vec::new(),
                        },
                    })
                };
                Some(parse().map_err(|e| Error::format(&path, e.to_string()))?)
            }
        };
        Ok(Checkpoint {
            file,
            model,
            vocab,
            train,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Loads the weights into `params` strictly: every missing, mis-shaped or unexpected
    /// weight is named (the optimiser's tensors are not weights).
    pub fn load_weights(&self, params: &[(String, Tensor)]) -> Result<()> {
        let names: std::collections::HashSet<&str> =
            params.iter().map(|(n, _)| n.as_str()).collect();
        let foreign: Vec<&str> = self
            .file
            .names()
            .into_iter()
            .filter(|n| !n.starts_with(OPTIMIZER_PREFIX) && !names.contains(n))
            .collect();
        if !foreign.is_empty() {
            return Err(Error::format(
                self.path(),
                format!(
                    "weights that belong to no parameter of the model: {}",
                    foreign.join(", ")
                ),
            ));
        }
        self.file.load_into("", params, Unexpected::Ignore)
    }

    /// A model with the checkpoint's configuration and weights.
    pub fn build_model(&self, dtype: DType) -> Result<AoaModel> {
        let model = AoaModel::new(self.model.clone(), dtype, 0)?;
        self.load_weights(&model.named_parameters())?;
        Ok(model)
    }

    /// The optimiser state for `params` (none for a checkpoint without one).
    pub fn adam_state(&self, params: &[(String, Tensor)]) -> Result<AdamState> {
        AdamState::read(&self.file, OPTIMIZER_PREFIX, params)
    }
}

/// Removes the temporary files a killed checkpoint write left in the run folder `dir`
/// (`.checkpoint*.tmp`, never a complete checkpoint); returns how many.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(".checkpoint") && n.ends_with(".tmp")
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// `path` itself if it is a file, else `path/default_name`.
pub fn resolve(path: &Path, default_name: &str) -> PathBuf {
    if path.is_dir() {
        path.join(default_name)
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth;
    use crate::rng::Philox;

    #[test]
    fn train_state_round_trips() {
        let s = TrainState {
            stage: Stage::Scst,
            iteration: u64::MAX - 3,
            epoch: 7,
            lr: 2e-5,
            best: Some((1.25, 3000)),
            rng: Philox::with_stream(u64::MAX, 5).state(),
            loader: LoaderState {
                split: crate::data::Split::Train,
                split_len: 10,
                seed: 3,
                epoch: 7,
                index: 4,
                iteration: 77,
                rng: Philox::new(1).state(),
            },
            plateau: Some(PlateauState {
                best: -1.25,
                num_bad_epochs: 1,
                cooldown_counter: 0,
                last_epoch: 2,
            }),
            seconds: 12.5,
        };
        assert_eq!(TrainState::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn vocabulary_metadata_is_the_reference_form() {
        let v = synth::vocabulary();
        let j = vocab_json(&v);
        assert_eq!(j.get("1").and_then(Value::as_str), Some("a"));
        assert_eq!(vocab_from_json(&j, Path::new("x")).unwrap(), v);
        let bad = json::object([("1", "a"), ("3", "b")]);
        let e = vocab_from_json(&bad, Path::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("index 3"), "{e}");
    }
}
