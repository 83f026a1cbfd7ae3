//! The batch loader: images × `seq_per_img` captions, laid out as the reference's
//! `dataloader.py` lays them out (AOANET.md 2.1), read ahead on a background thread.
//!
//! * Order. Training runs endlessly over the split: the first epoch in file order (as the
//!   reference; [`LoaderConfig::shuffle_first_epoch`] changes that), every later epoch a fresh
//!   Philox shuffle. A batch may straddle two epochs; the one that takes the split's last image
//!   is flagged [`Batch::wrapped`]. Evaluation ([`Mode::Eval`]) makes one pass in file order,
//!   with a smaller last batch.
//! * Captions. An image with at least `seq_per_img` captions gives a random contiguous window
//!   of them; one with fewer gives `seq_per_img` draws with replacement.
//! * Randomness. The loader uses streams of its own seed: stream 0 for caption choices (its
//!   position is part of [`LoaderState`]) and stream `1 + epoch` for the shuffle of each
//!   epoch, so a saved position restores exactly, and reading ahead on another thread changes
//!   nothing: batches are made one after the other by one producer, whichever thread runs it.
//!
//! A [`Batch`] is plain data (`Vec<f32>`, `Vec<u32>`): the training code turns it into tensors.

use super::captions::Split;
use super::dataset::Dataset;
use crate::json::{self, Value};
use crate::rng::{Philox, PhiloxState};
use crate::{Error, Result};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

/// Training or evaluation order; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Endless, shuffled each epoch, batches straddle epochs.
    Train,
    /// One pass in file order; the last batch may be smaller; then the loader is exhausted.
    Eval,
}

/// What the loader makes.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// The split to read.
    pub split: Split,
    /// Images per batch (the reference: 10).
    pub batch_size: usize,
    /// Caption rows per image (the reference: 5).
    pub seq_per_img: usize,
    /// Tokens kept per caption (the reference: 16); labels have `seq_length + 2` columns.
    pub seq_length: usize,
    /// The loader's own seed (see the module docs for the streams it uses).
    pub seed: u64,
    /// Training or evaluation order.
    pub mode: Mode,
    /// Shuffle the first epoch too (the reference reads it in file order).
    pub shuffle_first_epoch: bool,
    /// Batches made ahead on a background thread; 0 makes them on the caller's thread.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    /// The reference's training loader: train split, 10 images × 5 captions, 16 tokens.
    fn default() -> Self {
        LoaderConfig {
            split: Split::Train,
            batch_size: 10,
            seq_per_img: 5,
            seq_length: 16,
            seed: 0,
            mode: Mode::Train,
            shuffle_first_epoch: false,
            prefetch: 2,
        }
    }
}

/// One batch, in the reference's layout. With `B` images, `S = seq_per_img`, `N` the largest
/// region count in the batch and `T = seq_length + 2`:
///
/// * caption row `i * S + j` belongs to image `i` (its `j`-th chosen caption);
/// * features are given once per image (the model repeats the encoded features `S` times, as
///   upstream self-critical.pytorch does; AOANET.md 1.12).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Image ids, `[B]`.
    pub image_ids: Vec<u64>,
    /// Positions of the images in the dataset's captions (for raw references), `[B]`.
    pub positions: Vec<usize>,
    /// `S`.
    pub seq_per_img: usize,
    /// Values per region.
    pub dim: usize,
    /// `N`: the largest region count in the batch.
    pub max_regions: usize,
    /// Each image's region count, `[B]`.
    pub region_counts: Vec<usize>,
    /// Region features `[B, N, dim]`, zero beyond each image's region count.
    pub att_feats: Vec<f32>,
    /// `[B, N]`, 1.0 for real regions and 0.0 for padding; `None` when every image has `N`
    /// regions (the reference then passes no mask).
    pub att_masks: Option<Vec<f32>>,
    /// `seq_length`.
    pub seq_length: usize,
    /// `[B·S, T]`: column 0 is BOS (0), then the caption's first `seq_length` tokens, then
    /// zeros (EOS and padding).
    pub labels: Vec<u32>,
    /// `[B·S, T]`: 1.0 on the first `tokens + 2` columns. Shifted by one (`masks[:, 1:]`) it
    /// covers every word target and one EOS target.
    pub masks: Vec<f32>,
    /// For each image, all of its captions truncated to `seq_length` (the SCST references).
    pub gts: Vec<Vec<Vec<u32>>>,
    /// Whether this batch took the split's last image (the epoch ended inside it).
    pub wrapped: bool,
    /// The epoch of the batch's first image (0-based).
    pub epoch: u64,
    /// The batch number since the start of loading (0-based).
    pub iteration: u64,
}

impl Batch {
    /// `B`: images in the batch.
    pub fn images(&self) -> usize {
        self.image_ids.len()
    }

    /// `B·S`: caption rows.
    pub fn rows(&self) -> usize {
        self.image_ids.len() * self.seq_per_img
    }

    /// `T = seq_length + 2`: label columns.
    pub fn label_width(&self) -> usize {
        self.seq_length + 2
    }
}

/// Where a loader stands: everything needed to continue exactly (save it in a checkpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderState {
    /// The split read.
    pub split: Split,
    /// Its image count (a restored state must match the dataset).
    pub split_len: usize,
    /// The loader's seed.
    pub seed: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Next image index within the epoch's order.
    pub index: usize,
    /// Batches made so far.
    pub iteration: u64,
    /// The caption-choice generator.
    pub rng: PhiloxState,
}

impl LoaderState {
    /// As JSON; 64-bit seeds and offsets are decimal strings (JSON numbers are f64).
    pub fn to_json(&self) -> Value {
        json::object([
            ("split", Value::from(self.split.name())),
            ("split_len", Value::from(self.split_len)),
            ("seed", Value::from(self.seed.to_string())),
            ("epoch", Value::from(self.epoch as usize)),
            ("index", Value::from(self.index)),
            ("iteration", Value::from(self.iteration as usize)),
            (
                "rng",
                json::object([
                    ("seed", self.rng.seed.to_string()),
                    ("stream", self.rng.stream.to_string()),
                    ("offset", self.rng.offset.to_string()),
                ]),
            ),
        ])
    }

    /// Reads what [`LoaderState::to_json`] wrote.
    pub fn from_json(v: &Value) -> Result<LoaderState> {
        let bad = |what: &str| Error::invalid(format!("loader state: missing or bad `{what}`"));
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
        let big = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad(k))
        };
        let split = v
            .get("split")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("split"))?;
        let rng = v.get("rng").ok_or_else(|| bad("rng"))?;
        Ok(LoaderState {
            split: Split::parse(split)?,
            split_len: num(v, "split_len")? as usize,
            seed: big(v, "seed")?,
            epoch: num(v, "epoch")?,
            index: num(v, "index")? as usize,
            iteration: num(v, "iteration")?,
            rng: PhiloxState {
                seed: big(rng, "seed")?,
                stream: big(rng, "stream")?,
                offset: big(rng, "offset")?,
            },
        })
    }
}

/// Makes batches one after another; the whole of the loader's logic.
struct Maker {
    data: Arc<Dataset>,
    cfg: LoaderConfig,
    /// The split's images (positions in the captions), file order.
    split: Vec<usize>,
    /// This epoch's order of `split`.
    order: Vec<usize>,
    state: LoaderState,
    rng: Philox,
}

impl Maker {
    fn new(data: Arc<Dataset>, cfg: LoaderConfig, state: Option<LoaderState>) -> Result<Maker> {
        if cfg.batch_size == 0 || cfg.seq_per_img == 0 {
            return Err(Error::invalid(
                "loader: batch_size and seq_per_img must be at least 1",
            ));
        }
        let split = data.captions.split_positions(cfg.split);
        if split.is_empty() {
            return Err(Error::invalid(format!(
                "loader: the {} split has no images",
                cfg.split.name()
            )));
        }
        let state = match state {
            None => LoaderState {
                split: cfg.split,
                split_len: split.len(),
                seed: cfg.seed,
                epoch: 0,
                index: 0,
                iteration: 0,
                rng: Philox::with_stream(cfg.seed, 0).state(),
            },
            Some(s) => {
                if s.split != cfg.split || s.split_len != split.len() || s.seed != cfg.seed {
                    return Err(Error::invalid(format!(
                        "loader state is for the {} split of {} images with seed {}, but the \
                         loader reads the {} split of {} images with seed {}",
                        s.split.name(),
                        s.split_len,
                        s.seed,
                        cfg.split.name(),
                        split.len(),
                        cfg.seed
                    )));
                }
                if s.index > split.len() {
                    return Err(Error::invalid(format!(
                        "loader state index {} is beyond the split's {} images",
                        s.index,
                        split.len()
                    )));
                }
                s
            }
        };
        let mut m = Maker {
            rng: Philox::from_state(state.rng),
            order: Vec::new(),
            data,
            cfg,
            split,
            state,
        };
        m.order = m.order_for(m.state.epoch);
        Ok(m)
    }

    fn order_for(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.split.clone();
        let shuffle = self.cfg.mode == Mode::Train && (epoch > 0 || self.cfg.shuffle_first_epoch);
        if shuffle {
            Philox::with_stream(self.cfg.seed, 1 + epoch).shuffle(&mut order);
        }
        order
    }

    fn make(&mut self) -> Result<Option<Batch>> {
        let n = self.split.len();
        let eval = self.cfg.mode == Mode::Eval;
        if eval && self.state.index >= n {
            return Ok(None);
        }
        let b = if eval {
            self.cfg.batch_size.min(n - self.state.index)
        } else {
            self.cfg.batch_size
        };
        let epoch = self.state.epoch;
        let mut positions = Vec::with_capacity(b);
        let mut wrapped = false;
        for _ in 0..b {
            positions.push(self.order[self.state.index]);
            self.state.index += 1;
            if self.state.index == n {
                wrapped = true;
                if !eval {
                    self.state.epoch += 1;
                    self.state.index = 0;
                    self.order = self.order_for(self.state.epoch);
                }
            }
        }
        let batch = self.assemble(positions, wrapped, epoch)?;
        self.state.iteration += 1;
        self.state.rng = self.rng.state();
        Ok(Some(batch))
    }

    fn assemble(&mut self, positions: Vec<usize>, wrapped: bool, epoch: u64) -> Result<Batch> {
        let data = &*self.data;
        let (spi, len) = (self.cfg.seq_per_img, self.cfg.seq_length);
        let width = len + 2;
        let b = positions.len();
        let mut image_ids = Vec::with_capacity(b);
        let mut stored = Vec::with_capacity(b);
        for &p in &positions {
            let id = data.captions.image(p).id;
            let s = data.features.position(id).ok_or_else(|| {
                Error::invalid(format!(
                    "image {id} has captions but no features in {}",
                    data.features.path().display()
                ))
            })?;
            // Start every image's read before copying any, so cold reads overlap.
            data.features.will_need(s);
            image_ids.push(id);
            stored.push(s);
        }
        let regions: Vec<_> = stored.iter().map(|&s| data.features.at(s)).collect();
        let dim = data.features.dim();
        let max_regions = regions.iter().map(|r| r.count).max().unwrap_or(0);
        let mut att_feats = vec![0.0f32; b * max_regions * dim];
        let mut att_masks = vec![0.0f32; b * max_regions];
        for (i, r) in regions.iter().enumerate() {
            let at = i * max_regions * dim;
            r.feats.copy_to_f32(&mut att_feats[at..at + r.count * dim]);
            att_masks[i * max_regions..i * max_regions + r.count].fill(1.0);
        }
        let att_masks = regions
            .iter()
            .any(|r| r.count != max_regions)
            .then_some(att_masks);

        let mut labels = vec![0u32; b * spi * width];
        let mut masks = vec![0.0f32; b * spi * width];
        let mut gts = Vec::with_capacity(b);
        for (i, &p) in positions.iter().enumerate() {
            let img = data.captions.image(p);
            let ncap = img.len();
            // The reference's get_captions: a contiguous window, or draws with replacement.
            let chosen: Vec<usize> = if ncap < spi {
                (0..spi)
                    .map(|_| self.rng.below(ncap as u32) as usize)
                    .collect()
            } else {
                let start = self.rng.below((ncap - spi + 1) as u32) as usize;
                (start..start + spi).collect()
            };
            for (j, &c) in chosen.iter().enumerate() {
                let row = (i * spi + j) * width;
                let toks = img.tokens(c);
                let nnz = toks.len().min(len);
                labels[row + 1..row + 1 + nnz].copy_from_slice(&toks[..nnz]);
                masks[row..row + nnz + 2].fill(1.0);
            }
            gts.push(
                (0..ncap)
                    .map(|c| {
                        let t = img.tokens(c);
                        t[..t.len().min(len)].to_vec()
                    })
                    .collect(),
            );
        }
        Ok(Batch {
            image_ids,
            positions,
            seq_per_img: spi,
            dim,
            max_regions,
            region_counts: regions.iter().map(|r| r.count).collect(),
            att_feats,
            att_masks,
            seq_length: len,
            labels,
            masks,
            gts,
            wrapped,
            epoch,
            iteration: self.state.iteration,
        })
    }
}

type Produced = (Result<Option<Batch>>, LoaderState);

enum Source {
    Inline(Box<Maker>),
    Thread {
        rx: Option<Receiver<Produced>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// Batches over one split of a [`Dataset`]; see the module docs.
pub struct Loader {
    source: Source,
    state: LoaderState,
    done: bool,
}

impl Loader {
    /// A loader at the start of `cfg.split`.
    pub fn new(data: Arc<Dataset>, cfg: LoaderConfig) -> Result<Loader> {
        Self::start(data, cfg, None)
    }

    /// A loader continuing exactly from `state` (from [`Loader::state`] of an earlier loader
    /// with the same dataset and configuration).
    pub fn resume(data: Arc<Dataset>, cfg: LoaderConfig, state: LoaderState) -> Result<Loader> {
        Self::start(data, cfg, Some(state))
    }

    fn start(data: Arc<Dataset>, cfg: LoaderConfig, state: Option<LoaderState>) -> Result<Loader> {
        data.features.advise_random();
        let prefetch = cfg.prefetch;
        let maker = Maker::new(data, cfg, state)?;
        let state = maker.state.clone();
        let source = if prefetch == 0 {
            Source::Inline(Box::new(maker))
        } else {
            let (tx, rx) = sync_channel::<Produced>(prefetch);
            let mut maker = maker;
            let handle = std::thread::Builder::new()
                .name("aoanet-loader".into())
                .spawn(move || {
                    loop {
                        let r = maker.make();
                        let stop = !matches!(r, Ok(Some(_)));
                        // A send fails when the loader was dropped: stop quietly.
                        if tx.send((r, maker.state.clone())).is_err() || stop {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::invalid(format!("loader: cannot start its thread: {e}")))?;
            Source::Thread {
                rx: Some(rx),
                handle: Some(handle),
            }
        };
        Ok(Loader {
            source,
            state,
            done: false,
        })
    }

    /// The next batch; `None` once an evaluation pass is over (training never ends).
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        if self.done {
            return Ok(None);
        }
        let (r, state) = match &mut self.source {
            Source::Inline(m) => {
                let r = m.make();
                (r, m.state.clone())
            }
            Source::Thread { rx, .. } => match rx.as_ref().expect("receiver").recv() {
                Ok(p) => p,
                Err(_) => {
                    self.done = true;
                    return Err(Error::invalid("loader: its thread stopped unexpectedly"));
                }
            },
        };
        match &r {
            Ok(Some(_)) => self.state = state,
            _ => self.done = true,
        }
        r
    }

    /// The position after the last batch returned: what a checkpoint saves.
    pub fn state(&self) -> &LoaderState {
        &self.state
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Source::Thread { rx, handle } = &mut self.source {
            // Dropping the receiver makes the producer's next send fail, so it exits.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
