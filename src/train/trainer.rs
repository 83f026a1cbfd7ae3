//! The training loop of `train.py`, both stages: batches, forward, loss, backward, the clamped
//! Adam step, the schedules, validation and best-model tracking, and checkpoints that let a run
//! continue exactly (AOANET.md 2 and 3).
//!
//! One iteration:
//!
//! ```text
//! XE:    lr = 2e-4·0.8^⌊epoch/3⌋, ss = min(0.05·⌊epoch/5⌋, 0.5)
//!        encode each image once, expand to its 5 caption rows (--encode-per-caption: encode
//!        the replicated rows, the reference's semantics), teacher forcing with scheduled
//!        sampling, label-smoothed loss (from the logits: fused with log_softmax on a GPU)
//! SCST:  5 samples per image (dropout on) with differentiable log-probabilities; the greedy
//!        baseline (dropout off, no graph) or the mean of the other samples; reward CIDEr-D
//!        on token ids with the training frequencies (scored on a second thread while the
//!        greedy decode runs); RewardCriterion
//! both:  backward, then one non-finite check of the loss and every gradient (for XE on a
//!        GPU the step's only wait; SCST also reads each decoding step's words), Adam with
//!        the ±0.1 clamp, zero the gradients;
//!        iteration += 1, epoch += 1 if the batch took the split's last image
//! ```
//!
//! Every `val_every` iterations the val split is decoded and scored (the best model by val
//! CIDEr-D is kept, SCST's plateau schedule is stepped), every `save_every` iterations (default:
//! with validation) a checkpoint is written, and one more at the end and on a stop request.
//! The loop ends once `max_epochs` epochs or `max_iters` iterations are done.
//!
//! Exactness: every random draw comes from the training Philox stream (saved), the loader's
//! position is saved, validation draws nothing; so on the CPU a run of N iterations and a run
//! stopped after k and resumed give bit-identical weights.

use super::batch::BatchTensors;
use super::checkpoint::{
    self, BEST_FILE, CHECKPOINT_FILE, Checkpoint, CheckpointContents, TrainState,
};
use super::decoding::{greedy_rows, sample_rows};
use super::evaluate::{EvalOptions, SplitEval, evaluate_split, write_text};
use super::history::{self, HistoryRecord};
use super::loss::{label_smoothing_loss_from_logits, reward_loss};
use super::options::{Baseline, Stage, TrainOptions};
use super::rewards::{RewardScorer, advantages};
use super::schedule::ReduceLrOnPlateau;
use super::scoring::Scoring;
use super::{Adam, zero_grad};
use crate::autograd::no_grad;
use crate::data::{Batch, Dataset, Loader, LoaderConfig, Mode, Split, Vocab};
use crate::json::{self, Value};
use crate::metrics::DocumentFrequencies;
use crate::model::{AoaConfig, AoaModel, Encoded};
use crate::nn::{Ctx, Module};
use crate::rng::Philox;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// File names in a run folder besides the checkpoints.
pub mod files {
    /// The history, one JSON record a line.
    pub const HISTORY: &str = "history.jsonl";
    /// The options and model configuration of the run (for people; the checkpoint has them).
    pub const OPTIONS: &str = "options.json";
    /// The vocabulary.
    pub const VOCAB: &str = "vocab.txt";
    /// The last validation's captions, COCO results format.
    pub const VAL_CAPTIONS: &str = "val-captions.json";
    /// The last validation's scores (corpus and per image).
    pub const VAL_SCORES: &str = "val-scores.json";
    /// Training loss and validation scores over iterations (rewritten with each checkpoint).
    pub const CURVES: &str = "curves.svg";
}

/// Test hooks: failures injected on purpose.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Make the loss (or the first parameter's gradient) NaN at this iteration (1-based).
    pub nan_at: Option<(u64, NanTarget)>,
    /// Pause half way through writing each checkpoint for this long.
    pub checkpoint_pause: Option<Duration>,
}

/// Where [`Hooks::nan_at`] puts the NaN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanTarget {
    /// The loss value.
    Loss,
    /// A gradient.
    Gradient,
}

/// What a trainer needs besides data, options and model.
pub struct TrainEnv {
    /// The metrics computed at validation.
    pub scoring: Scoring,
    /// The SCST reward's document frequencies (`train-df.bin`); `None`: counted from the
    /// data's train captions.
    pub df: Option<DocumentFrequencies>,
    /// Injected failures (tests).
    pub hooks: Hooks,
    /// The parameters' dtype.
    pub dtype: DType,
    /// Where the model, its optimiser state and each batch live (checked by the caller, e.g.
    /// with [`Device::check_available`]). Checkpoints hold host copies either way.
    pub device: Device,
}

impl TrainEnv {
    /// BLEU, ROUGE-L and CIDEr-D, frequencies from the captions, f32, no hooks.
    pub fn offline() -> TrainEnv {
        TrainEnv {
            scoring: Scoring::offline(),
            df: None,
            hooks: Hooks::default(),
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// How [`Trainer::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The epoch or iteration limit was reached.
    Finished,
    /// A stop was requested; the checkpoint was saved.
    Stopped,
}

/// A training step's numbers, for the progress line.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Iterations done.
    pub iteration: u64,
    /// Epochs done.
    pub epoch: u64,
    /// The step's loss.
    pub loss: f64,
    /// SCST: the step's mean CIDEr-D of the samples.
    pub reward: Option<f64>,
    /// SCST: the step's mean sample − baseline.
    pub advantage: Option<f64>,
    /// The learning rate used.
    pub lr: f64,
    /// The scheduled-sampling probability used (XE).
    pub ss_prob: f64,
    /// Training images per second over recent steps.
    pub images_per_s: f64,
    /// Estimated seconds to the end (steps only, validation not included).
    pub eta_seconds: Option<f64>,
}

impl Progress {
    /// The progress line: iteration, epoch, loss, reward, lr, images/s, ETA.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} iter {:>6}  epoch {:>3}  loss {:>8.4}",
            self.stage.name(),
            self.iteration,
            self.epoch,
            self.loss
        );
        if let Some(r) = self.reward {
            s.push_str(&format!("  reward {r:>7.4}"));
        }
        if let Some(a) = self.advantage {
            s.push_str(&format!(" (vs baseline {a:>+7.4})"));
        }
        s.push_str(&format!(
            "  lr {:.2e}  {:>6.1} img/s",
            self.lr, self.images_per_s
        ));
        if self.ss_prob > 0.0 {
            s.push_str(&format!("  ss {:.2}", self.ss_prob));
        }
        if let Some(eta) = self.eta_seconds {
            s.push_str(&format!("  ETA {}", format_duration(eta)));
        }
        s
    }
}

/// `1h02m`, `3m05s`, `42s`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A validation's outcome.
#[derive(Clone, Debug)]
pub struct ValidationReport {
    /// Iterations done.
    pub iteration: u64,
    /// Epochs done.
    pub epoch: u64,
    /// The corpus scores under the toolkit's keys (and `loss` in XE).
    pub metrics: Vec<(String, f64)>,
    /// Val CIDEr-D.
    pub cider: f64,
    /// Whether it beat the best so far (then `checkpoint-best` was written).
    pub improved: bool,
    /// The learning rate after the plateau schedule saw it.
    pub lr: f64,
    /// Images decoded.
    pub images: usize,
    /// Seconds it took.
    pub seconds: f64,
}

/// What the trainer reports as it goes.
pub enum Event<'a> {
    /// Something to tell the user.
    Note(&'a str),
    /// A step was done.
    Step(&'a Progress),
    /// A validation was done.
    Validation(&'a ValidationReport),
    /// A checkpoint was written.
    Checkpoint {
        /// The file.
        path: &'a Path,
        /// Iterations done.
        iteration: u64,
    },
}

/// Wall-clock seconds per phase of the training steps so far (for benches and reports).
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseTimes {
    /// Waiting for the loader and making tensors.
    pub data: f64,
    /// Forward: encode, teacher forcing or sampling, the greedy baseline, the loss.
    pub forward: f64,
    /// Backward and the non-finite check.
    pub backward: f64,
    /// The Adam step and zeroing the gradients.
    pub optimizer: f64,
    /// SCST rewards on the main thread: waiting for the scoring thread, scoring the baseline.
    pub reward: f64,
    /// SCST reward scoring work wherever it ran (overlapped with the greedy decode when on).
    pub reward_work: f64,
    /// Steps timed.
    pub steps: u64,
    /// Images trained on.
    pub images: u64,
}

impl PhaseTimes {
    /// Total step time.
    pub fn total(&self) -> f64 {
        self.data + self.forward + self.backward + self.optimizer + self.reward
    }

    /// One line: seconds per step and each phase's share.
    pub fn summary(&self) -> String {
        let steps = self.steps.max(1) as f64;
        let total = self.total().max(1e-12);
        let mut s = format!(
            "{:.1} ms/step, {:.1} images/s:",
            1e3 * self.total() / steps,
            self.images as f64 / total
        );
        for (name, t) in [
            ("data", self.data),
            ("forward", self.forward),
            ("backward", self.backward),
            ("optimizer", self.optimizer),
            ("reward", self.reward),
        ] {
            s.push_str(&format!(" {name} {:.1}%", 100.0 * t / total));
        }
        if self.reward_work > 0.0 {
            s.push_str(&format!(
                " (reward scoring {:.2} ms/step)",
                1e3 * self.reward_work / steps
            ));
        }
        s
    }
}

/// The step's result.
#[derive(Clone, Copy, Debug)]
pub struct StepStats {
    /// The loss value.
    pub loss: f64,
    /// SCST: the mean CIDEr-D of the samples.
    pub reward: Option<f64>,
    /// SCST: the mean of sample − baseline (the reference's `avg_reward`).
    pub advantage: Option<f64>,
    /// Images in the batch.
    pub images: usize,
    /// Seconds the step took.
    pub seconds: f64,
}

/// Recent steps' throughput and the history window.
#[derive(Default)]
struct Window {
    loss: f64,
    reward: f64,
    advantage: f64,
    steps: u64,
    images: u64,
    seconds: f64,
    recent: std::collections::VecDeque<(usize, f64)>,
}

/// A training run over a dataset, writing into its run folder.
pub struct Trainer {
    model: AoaModel,
    params: Vec<(String, Tensor)>,
    adam: Adam,
    opts: TrainOptions,
    data: Arc<Dataset>,
    loader: Loader,
    rng: Philox,
    state: TrainState,
    plateau: Option<ReduceLrOnPlateau>,
    reward: Option<RewardScorer>,
    env: TrainEnv,
    out: PathBuf,
    history: Vec<HistoryRecord>,
    window: Window,
    phases: PhaseTimes,
    last_checkpoint: Option<u64>,
    seconds_before: f64,
    started: Instant,
}

fn loader_config(opts: &TrainOptions, seq_length: usize) -> LoaderConfig {
    LoaderConfig {
        split: Split::Train,
        batch_size: opts.batch_size,
        seq_per_img: opts.seq_per_img,
        seq_length,
        seed: opts.seed,
        mode: Mode::Train,
        shuffle_first_epoch: opts.shuffle_first_epoch,
        prefetch: 2,
    }
}

/// The training generator's stream of a seed (apart from the model's and the loader's).
const TRAIN_STREAM: u64 = 0x0074_7261_696e;

/// Checks that the model fits the data: same vocabulary size, same feature width.
fn check_fit(model: &AoaConfig, data: &Dataset, what: &str) -> Result<()> {
    if model.vocab_size != data.vocab.len() {
        return Err(Error::invalid(format!(
            "{what}: vocab_size ({} vs the data's {}): the model and the data folder have \
             different vocabularies",
            model.vocab_size,
            data.vocab.len()
        )));
    }
    if model.att_feat_size != data.features.dim() {
        return Err(Error::invalid(format!(
            "{what}: att_feat_size ({} vs the data's {}): the model expects features of another \
             width",
            model.att_feat_size,
            data.features.dim()
        )));
    }
    Ok(())
}

fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    if out.join(CHECKPOINT_FILE).exists() {
        return Err(Error::invalid(format!(
            "{} already holds a run: continue it with --resume {0}, or choose another --out",
            out.display()
        )));
    }
    Ok(())
}

impl Trainer {
    /// A new run of `model` with `opts` from freshly initialised weights.
    pub fn fresh(
        data: Arc<Dataset>,
        out: impl AsRef<Path>,
        model: AoaConfig,
        opts: TrainOptions,
        env: TrainEnv,
    ) -> Result<Trainer> {
        opts.validate()?;
        model.validate()?;
        check_fit(&model, &data, "the model does not fit the data")?;
        let out = out.as_ref().to_path_buf();
        prepare_out(&out)?;
        let m = AoaModel::new(model, env.dtype, opts.seed)?;
        let adam = Adam::new(opts.adam(opts.learning_rate))?;
        let loader = Loader::new(data.clone(), loader_config(&opts, m.config().seq_length))?;
        let rng = Philox::with_stream(opts.seed, TRAIN_STREAM);
        let state = TrainState {
            stage: opts.stage,
            iteration: 0,
            epoch: 0,
            lr: opts.learning_rate,
            best: None,
            rng: rng.state(),
            loader: loader.state().clone(),
            plateau: None,
            seconds: 0.0,
        };
        Self::assemble(
            m,
            adam,
            opts,
            data,
            loader,
            rng,
            state,
            Vec::new(),
            env,
            out,
        )
    }

    /// Continues the run in `out` exactly where its last checkpoint stopped. `model_set` and
    /// `train_set` override options by name; an option that changes the model's shape is an
    /// error naming it.
    pub fn resume(
        data: Arc<Dataset>,
        out: impl AsRef<Path>,
        model_set: &[(String, Value)],
        train_set: &[(String, Value)],
        env: TrainEnv,
    ) -> Result<Trainer> {
        let out = out.as_ref().to_path_buf();
        let path = out.join(CHECKPOINT_FILE);
        if !path.exists() {
            return Err(Error::invalid(format!(
                "{} has no {CHECKPOINT_FILE}: nothing to resume (start a run with --out {0})",
                out.display()
            )));
        }
        let ckpt = Checkpoint::open(&path)?;
        checkpoint::remove_stale_temporaries(&out);
        let meta = ckpt.train.clone().ok_or_else(|| {
            Error::format(
                &path,
                "no training state: not a checkpoint written by training",
            )
        })?;
        let config = with_model_options(&ckpt.model, model_set, &path)?;
        let mut opts = meta.options.clone();
        for (k, v) in train_set {
            opts.set(k, v)?;
        }
        if opts.stage != meta.state.stage {
            return Err(Error::invalid(format!(
                "cannot resume {}: it is a {} run; a new stage starts with --from",
                out.display(),
                meta.state.stage.name()
            )));
        }
        opts.validate()?;
        check_fit(&config, &data, &format!("cannot resume {}", out.display()))?;
        let model = AoaModel::new(config, env.dtype, opts.seed)?;
        let params = model.named_parameters();
        ckpt.load_weights(&params)?;
        let mut adam = Adam::new(opts.adam(meta.state.lr))?;
        adam.load_state(ckpt.adam_state(&params)?)?;
        let loader = Loader::resume(
            data.clone(),
            loader_config(&opts, model.config().seq_length),
            meta.state.loader.clone(),
        )
        .map_err(|e| Error::invalid(format!("cannot resume {}: {e}", out.display())))?;
        let rng = Philox::from_state(meta.state.rng);
        let mut t = Self::assemble(
            model,
            adam,
            opts,
            data,
            loader,
            rng,
            meta.state,
            meta.history,
            env,
            out,
        )?;
        t.last_checkpoint = Some(t.state.iteration);
        Ok(t)
    }

    /// Starts a new stage (SCST after XE, as the reference's `--start_from`) in `out` from the
    /// checkpoint `from`: its weights, Adam moments, iteration and epoch counts, loader and
    /// generator position and best score, with the new stage's `opts` (the learning rate
    /// reset to `opts.learning_rate`). A converted reference checkpoint (weights only) starts
    /// with fresh counters and optimiser.
    pub fn from_checkpoint(
        data: Arc<Dataset>,
        out: impl AsRef<Path>,
        from: &Path,
        model_set: &[(String, Value)],
        mut opts: TrainOptions,
        env: TrainEnv,
    ) -> Result<Trainer> {
        let out = out.as_ref().to_path_buf();
        let ckpt = Checkpoint::open(from)?;
        if ckpt.path().parent() == Some(out.as_path()) {
            return Err(Error::invalid(format!(
                "--out {} is the folder of the checkpoint it starts from: give the new stage \
                 its own folder",
                out.display()
            )));
        }
        prepare_out(&out)?;
        let config = with_model_options(&ckpt.model, model_set, ckpt.path())?;
        check_fit(
            &config,
            &data,
            &format!("cannot start from {}", ckpt.path().display()),
        )?;
        if let Some(meta) = &ckpt.train {
            // The loader's position belongs to its seed.
            opts.seed = meta.options.seed;
        }
        opts.validate()?;
        let model = AoaModel::new(config, env.dtype, opts.seed)?;
        let params = model.named_parameters();
        ckpt.load_weights(&params)?;
        let mut adam = Adam::new(opts.adam(opts.learning_rate))?;
        let lcfg = loader_config(&opts, model.config().seq_length);
        let (loader, rng, iteration, epoch, best) = match &ckpt.train {
            Some(meta) => {
                adam.load_state(ckpt.adam_state(&params)?)?;
                (
                    Loader::resume(data.clone(), lcfg, meta.state.loader.clone())?,
                    Philox::from_state(meta.state.rng),
                    meta.state.iteration,
                    meta.state.epoch,
                    meta.state.best,
                )
            }
            None => (
                Loader::new(data.clone(), lcfg)?,
                Philox::with_stream(opts.seed, TRAIN_STREAM),
                0,
                0,
                None,
            ),
        };
        let state = TrainState {
            stage: opts.stage,
            iteration,
            epoch,
            lr: opts.learning_rate,
            best,
            rng: rng.state(),
            loader: loader.state().clone(),
            plateau: None,
            seconds: 0.0,
        };
        Self::assemble(
            model,
            adam,
            opts,
            data,
            loader,
            rng,
            state,
            Vec::new(),
            env,
            out,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        model: AoaModel,
        adam: Adam,
        opts: TrainOptions,
        data: Arc<Dataset>,
        loader: Loader,
        rng: Philox,
        state: TrainState,
        history: Vec<HistoryRecord>,
        env: TrainEnv,
        out: PathBuf,
    ) -> Result<Trainer> {
        // Weights load on the host; the model goes to its device here, and Adam's moments
        // follow their parameters there at the first step.
        model.to_device_(env.device)?;
        let plateau = if opts.reduce_on_plateau {
            Some(match state.plateau {
                Some(s) => ReduceLrOnPlateau::with_state(opts.plateau(), s)?,
                None => ReduceLrOnPlateau::new(opts.plateau())?,
            })
        } else {
            None
        };
        let reward = match (opts.stage, &env.df) {
            (Stage::Xe, _) => None,
            (Stage::Scst, Some(df)) => Some(RewardScorer::new(df.clone())?),
            (Stage::Scst, None) => Some(RewardScorer::from_captions(&data.captions)?),
        };
        let params = model.named_parameters();
        let t = Trainer {
            seconds_before: state.seconds,
            model,
            params,
            adam,
            opts,
            data,
            loader,
            rng,
            state,
            plateau,
            reward,
            env,
            out,
            history,
            window: Window::default(),
            phases: PhaseTimes::default(),
            last_checkpoint: None,
            started: Instant::now(),
        };
        t.write_run_files()?;
        Ok(t)
    }

    /// `options.json`, `vocab.txt` and `history.jsonl` (the checkpoint's history, on resume).
    fn write_run_files(&self) -> Result<()> {
        let options = json::object([
            ("options", self.opts.to_json()),
            ("model", self.model.config().to_json()),
        ]);
        write_text(
            &self.out.join(files::OPTIONS),
            &(options.to_json_pretty() + "\n"),
        )?;
        write_text(&self.out.join(files::VOCAB), &self.data.vocab.to_text())?;
        write_text(
            &self.out.join(files::HISTORY),
            &history::to_jsonl(&self.history),
        )
    }

    /// The model.
    pub fn model(&self) -> &AoaModel {
        &self.model
    }

    /// The options.
    pub fn options(&self) -> &TrainOptions {
        &self.opts
    }

    /// Counters and generator states as of the last step.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The history so far.
    pub fn history(&self) -> &[HistoryRecord] {
        &self.history
    }

    /// The run folder.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// The data's vocabulary (the model's words).
    pub fn vocab(&self) -> &Vocab {
        &self.data.vocab
    }

    /// Seconds per phase of the steps so far.
    pub fn phases(&self) -> PhaseTimes {
        self.phases
    }

    /// Resets [`Trainer::phases`] (benches time steps after a warm-up).
    pub fn reset_phases(&mut self) {
        self.phases = PhaseTimes::default();
    }

    /// The scoring set of validation.
    pub fn scoring(&self) -> &Scoring {
        &self.env.scoring
    }

    /// The last checkpoint's path.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.out.join(CHECKPOINT_FILE)
    }

    /// The best checkpoint's path.
    pub fn best_path(&self) -> PathBuf {
        self.out.join(BEST_FILE)
    }

    /// Whether the epoch or iteration limit is reached.
    pub fn finished(&self) -> bool {
        self.opts.max_epochs.is_some_and(|m| self.state.epoch >= m)
            || self
                .opts
                .max_iters
                .is_some_and(|m| self.state.iteration >= m)
    }

    fn lr(&self) -> f64 {
        if self.opts.reduce_on_plateau {
            self.state.lr
        } else {
            self.opts.step_decay().lr(self.state.epoch)
        }
    }

    fn ss_prob(&self) -> f64 {
        match self.opts.stage {
            Stage::Xe => self.opts.scheduled_sampling().prob(self.state.epoch),
            Stage::Scst => 0.0,
        }
    }

    /// Estimated iterations left.
    fn remaining_iterations(&self) -> Option<u64> {
        let by_iters = self
            .opts
            .max_iters
            .map(|m| m.saturating_sub(self.state.iteration));
        let by_epochs = self.opts.max_epochs.map(|m| {
            let n = self.data.split_len(Split::Train) as u64;
            let l = self.loader.state();
            let done = l.epoch * n + l.index as u64;
            (m * n)
                .saturating_sub(done)
                .div_ceil(self.opts.batch_size as u64)
        });
        match (by_iters, by_epochs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decodes and scores a few val images with every requested metric (and the validation
    /// settings), so a missing prerequisite fails now rather than after an epoch.
    pub fn preflight(&self) -> Result<SplitEval> {
        let n = self.opts.preflight_images.max(1);
        let mut eo = self.eval_options();
        eo.max_images = Some(n);
        evaluate_split(
            &self.model,
            &self.data.vocab,
            &self.data,
            Split::Val,
            &eo,
            &self.env.scoring,
        )
        .map_err(|e| Error::invalid(format!("pre-flight check on {n} val images failed: {e}")))
    }

    fn eval_options(&self) -> EvalOptions {
        EvalOptions {
            beam_size: self.opts.val_beam_size,
            max_length: self.model.config().max_length,
            batch_size: self.opts.val_batch_size,
            max_images: self.opts.val_images,
            with_attention: false,
            loss_smoothing: (self.opts.stage == Stage::Xe).then_some(self.opts.label_smoothing),
            seq_per_img: self.opts.seq_per_img,
        }
    }

    /// Trains until the limits or until `stop` is set (checked after every step; the
    /// checkpoint is then saved). `on` sees every step, validation, checkpoint and note.
    pub fn run(&mut self, stop: &AtomicBool, on: &mut dyn FnMut(Event)) -> Result<Outcome> {
        self.started = Instant::now();
        self.seconds_before = self.state.seconds;
        if self.finished() {
            on(Event::Note(&format!(
                "nothing to do: the run already reached its limit (iteration {}, epoch {})",
                self.state.iteration, self.state.epoch
            )));
            return Ok(Outcome::Finished);
        }
        loop {
            let lr = self.lr();
            let ss = self.ss_prob();
            let s = self.step().map_err(|e| self.stopped_by(e))?;
            self.report_step(&s, lr, ss, on);
            let it = self.state.iteration;
            if it.is_multiple_of(self.opts.val_every) {
                self.validate(on)?;
            }
            if it.is_multiple_of(self.opts.checkpoint_every()) {
                self.save(on)?;
            }
            if stop.load(Ordering::SeqCst) {
                if self.last_checkpoint != Some(it) {
                    self.save(on)?;
                }
                return Ok(Outcome::Stopped);
            }
            if self.finished() {
                break;
            }
        }
        // The reference forgets this one.
        if self.last_checkpoint != Some(self.state.iteration) {
            self.save(on)?;
        }
        Ok(Outcome::Finished)
    }

    /// Adds where the last good checkpoint is to a non-finite error.
    fn stopped_by(&self, e: Error) -> Error {
        match e {
            Error::NonFinite(msg) => {
                let keep = match self.last_checkpoint {
                    Some(it) => format!(
                        "the last good checkpoint is {} (iteration {it})",
                        self.checkpoint_path().display()
                    ),
                    None => "no checkpoint was written yet".to_string(),
                };
                Error::NonFinite(format!("{msg}; training stopped without saving; {keep}"))
            }
            e => e,
        }
    }

    fn report_step(&mut self, s: &StepStats, lr: f64, ss: f64, on: &mut dyn FnMut(Event)) {
        let w = &mut self.window;
        w.loss += s.loss;
        w.reward += s.reward.unwrap_or(0.0);
        w.advantage += s.advantage.unwrap_or(0.0);
        w.steps += 1;
        w.images += s.images as u64;
        w.seconds += s.seconds;
        w.recent.push_back((s.images, s.seconds));
        if w.recent.len() > 20 {
            w.recent.pop_front();
        }
        let (imgs, secs) = w
            .recent
            .iter()
            .fold((0usize, 0.0f64), |(a, b), &(i, t)| (a + i, b + t));
        let per_iter = secs / w.recent.len() as f64;
        let progress = Progress {
            stage: self.opts.stage,
            iteration: self.state.iteration,
            epoch: self.state.epoch,
            loss: s.loss,
            reward: s.reward,
            advantage: s.advantage,
            lr,
            ss_prob: ss,
            images_per_s: if secs > 0.0 { imgs as f64 / secs } else { 0.0 },
            eta_seconds: self.remaining_iterations().map(|n| n as f64 * per_iter),
        };
        on(Event::Step(&progress));
        if self
            .state
            .iteration
            .is_multiple_of(self.opts.losses_log_every)
        {
            let w = std::mem::take(&mut self.window);
            let n = w.steps.max(1) as f64;
            let mut r = self.new_record();
            r.loss = Some(w.loss / n);
            if self.opts.stage == Stage::Scst {
                r.reward = Some(w.reward / n);
                r.advantage = Some(w.advantage / n);
            } else {
                r.ss_prob = Some(ss);
            }
            r.lr = Some(lr);
            r.images_per_s = (w.seconds > 0.0).then(|| w.images as f64 / w.seconds);
            self.window.recent = w.recent;
            self.record(r);
        }
    }

    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }

    fn new_record(&self) -> HistoryRecord {
        HistoryRecord::new(
            self.state.iteration,
            self.state.epoch,
            self.opts.stage,
            self.seconds(),
        )
    }

    fn record(&mut self, r: HistoryRecord) {
        // Best effort: history.jsonl is for people; the checkpoint holds the real history.
        let path = self.out.join(files::HISTORY);
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) {
            let _ = writeln!(f, "{}", r.to_json().to_json());
        }
        self.history.push(r);
    }

    /// One training iteration (see the module docs).
    pub fn step(&mut self) -> Result<StepStats> {
        let t0 = Instant::now();
        let batch = self
            .loader
            .next_batch()?
            .ok_or_else(|| Error::invalid("the training loader ended"))?;
        let t = BatchTensors::new(&batch, self.env.dtype, self.env.device)?;
        self.phases.data += t0.elapsed().as_secs_f64();
        let lr = self.lr();
        self.adam.set_lr(lr)?;
        let number = self.state.iteration + 1;
        let hook = self.env.hooks.nan_at.filter(|(at, _)| *at == number);

        let (loss, reward, advantage) = match self.opts.stage {
            Stage::Xe => (self.xe_loss(&batch, &t)?, None, None),
            Stage::Scst => {
                let (l, r, a) = self.scst_loss(&batch, &t)?;
                (l, Some(r), Some(a))
            }
        };
        let t1 = Instant::now();
        // Backward before the loss is read: on a GPU, reading it waits for the forward pass
        // to finish, and the host would stop queueing the backward's kernels meanwhile. The
        // loss and the gradients' finiteness are then read together: one wait per step.
        loss.backward()?;
        if hook.is_some_and(|(_, w)| w == NanTarget::Gradient)
            && let Some((_, p)) = self.params.first()
            && let Some(g) = p.grad()
        {
            p.set_grad(Some(g.mul_scalar(f64::NAN)?));
        }
        let grads: Vec<Tensor> = self.params.iter().filter_map(|(_, p)| p.grad()).collect();
        let (mut value, grads_finite) =
            loss.item_and_all_finite(&grads.iter().collect::<Vec<_>>())?;
        if hook.is_some_and(|(_, w)| w == NanTarget::Loss) {
            value = f64::NAN;
        }
        if !value.is_finite() {
            zero_grad(&self.params);
            return Err(Error::NonFinite(format!(
                "the loss is {value} at iteration {number} (epoch {})",
                self.state.epoch
            )));
        }
        // One check over all gradients above; only when it fails are they checked one by
        // one, to name the parameter.
        if !grads_finite {
            for (name, p) in &self.params {
                if let Some(g) = p.grad()
                    && !g.all_finite()?
                {
                    zero_grad(&self.params);
                    return Err(Error::NonFinite(format!(
                        "the gradient of {name} at iteration {number} (epoch {})",
                        self.state.epoch
                    )));
                }
            }
        }
        let t2 = Instant::now();
        self.phases.backward += (t2 - t1).as_secs_f64();
        self.adam.step(&self.params)?;
        zero_grad(&self.params);
        self.phases.optimizer += t2.elapsed().as_secs_f64();
        self.state.iteration += 1;
        if batch.wrapped {
            self.state.epoch += 1;
        }
        self.phases.steps += 1;
        self.phases.images += batch.images() as u64;
        Ok(StepStats {
            loss: value,
            reward,
            advantage,
            images: batch.images(),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Encodes the batch in training mode into `rows_per_image` rows per image: once per
    /// image and expanded, or (`encode_per_caption`) on replicated rows.
    fn encode_rows(&mut self, t: &BatchTensors, rows_per_image: usize) -> Result<Encoded> {
        let mut ctx = Ctx::train(&mut self.rng);
        if self.opts.encode_per_caption {
            let (f, m) = t.replicated(rows_per_image)?;
            self.model.encode(&f, m.as_ref(), None, &mut ctx, None)
        } else {
            self.model
                .encode(&t.att_feats, t.att_masks.as_ref(), None, &mut ctx, None)?
                .expand(rows_per_image)
        }
    }

    fn xe_loss(&mut self, batch: &Batch, t: &BatchTensors) -> Result<Tensor> {
        let t0 = Instant::now();
        let ss = self.ss_prob();
        let enc = self.encode_rows(t, batch.seq_per_img)?;
        let mut ctx = Ctx::train(&mut self.rng);
        let logits = self
            .model
            .forward_xe_logits(&enc, &t.labels, t.width, ss, &mut ctx)?;
        // `lm_loss` when the smoothing is 0; fused with the log_softmax on a GPU.
        let loss = label_smoothing_loss_from_logits(
            &logits,
            &t.targets,
            &t.mask,
            self.opts.label_smoothing,
        )?;
        self.phases.forward += t0.elapsed().as_secs_f64();
        Ok(loss)
    }

    fn scst_loss(&mut self, batch: &Batch, t: &BatchTensors) -> Result<(Tensor, f64, f64)> {
        let t0 = Instant::now();
        let n = self.opts.train_sample_n;
        let max_length = self.model.config().max_length;
        let seq_length = batch.seq_length;
        let enc = self.encode_rows(t, n)?;
        let (seq, logprobs) = {
            let mut ctx = Ctx::train(&mut self.rng);
            sample_rows(&self.model, &enc, max_length, &mut ctx)?
        };
        drop(enc);
        let sampled = Instant::now();
        self.phases.forward += (sampled - t0).as_secs_f64();

        let scorer = self.reward.as_ref().expect("SCST has a reward scorer");
        let model = &self.model;
        let greedy = |t: &BatchTensors| -> Result<Vec<usize>> {
            let mut rng = Philox::new(0);
            no_grad(|| {
                let enc = model.encode(
                    &t.att_feats,
                    t.att_masks.as_ref(),
                    None,
                    &mut Ctx::eval(&mut rng),
                    None,
                )?;
                greedy_rows(model, &enc, max_length)
            })
        };
        let score_samples = || {
            let w = Instant::now();
            let refs: Vec<_> = batch
                .gts
                .iter()
                .map(|g| scorer.prepare(g, seq_length))
                .collect();
            let scores = scorer.score_rows(&seq, max_length, n, &refs);
            (refs, scores, w.elapsed().as_secs_f64())
        };
        let want_greedy = self.opts.baseline == Baseline::Greedy;
        let (refs, scores, work, greedy_seq, greedy_secs, wait_secs) =
            if want_greedy && self.opts.overlap_rewards {
                std::thread::scope(|s| {
                    let h = s.spawn(score_samples);
                    let g0 = Instant::now();
                    let g = greedy(t);
                    let g_secs = g0.elapsed().as_secs_f64();
                    let w0 = Instant::now();
                    let (refs, scores, work) = h.join().expect("the reward thread panicked");
                    (
                        refs,
                        scores,
                        work,
                        Some(g),
                        g_secs,
                        w0.elapsed().as_secs_f64(),
                    )
                })
            } else {
                let (refs, scores, work) = score_samples();
                let g0 = Instant::now();
                let g = want_greedy.then(|| greedy(t));
                (refs, scores, work, g, g0.elapsed().as_secs_f64(), work)
            };
        let scores = scores?;
        let r0 = Instant::now();
        let greedy_scores = match greedy_seq {
            Some(g) => Some(scorer.score_rows(&g?, max_length, 1, &refs)?),
            None => None,
        };
        let adv = advantages(&scores, n, self.opts.baseline, greedy_scores.as_deref())?;
        let baseline_secs = r0.elapsed().as_secs_f64();
        let loss = reward_loss(&logprobs, &seq, &adv)?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        self.phases.forward += greedy_secs;
        self.phases.reward += wait_secs + baseline_secs;
        self.phases.reward_work += work + baseline_secs;
        Ok((loss, mean(&scores), mean(&adv)))
    }

    /// Decodes and scores the val split now: history record, best checkpoint, plateau step.
    pub fn validate(&mut self, on: &mut dyn FnMut(Event)) -> Result<ValidationReport> {
        let t0 = Instant::now();
        let r = evaluate_split(
            &self.model,
            &self.data.vocab,
            &self.data,
            Split::Val,
            &self.eval_options(),
            &self.env.scoring,
        )?;
        r.write_results(&self.out.join(files::VAL_CAPTIONS))?;
        write_text(
            &self.out.join(files::VAL_SCORES),
            &(r.evaluation.to_json().to_json_pretty() + "\n"),
        )?;
        let cider = r
            .evaluation
            .get("CIDEr")
            .ok_or_else(|| Error::invalid("validation computed no CIDEr-D"))?;
        let metrics = r.metrics();
        let mut rec = self.new_record();
        rec.val = Some(
            metrics
                .iter()
                .filter(|(k, _)| k != "loss")
                .cloned()
                .collect(),
        );
        rec.val_loss = r.loss;
        rec.lr = Some(self.lr());
        self.record(rec);
        if let Some(p) = self.plateau.as_mut() {
            self.state.lr = p.step(-cider, self.state.lr);
        }
        let improved = self.state.best.is_none_or(|(b, _)| cider > b);
        if improved {
            self.state.best = Some((cider, self.state.iteration));
            let path = self.best_path();
            self.write_checkpoint(&path)?;
        }
        let report = ValidationReport {
            iteration: self.state.iteration,
            epoch: self.state.epoch,
            metrics,
            cider,
            improved,
            lr: self.lr(),
            images: r.image_ids.len(),
            seconds: t0.elapsed().as_secs_f64(),
        };
        on(Event::Validation(&report));
        Ok(report)
    }

    fn sync_state(&mut self) {
        self.state.rng = self.rng.state();
        self.state.loader = self.loader.state().clone();
        self.state.plateau = self.plateau.as_ref().map(|p| p.state());
        self.state.seconds = self.seconds();
    }

    fn write_checkpoint(&mut self, path: &Path) -> Result<()> {
        self.sync_state();
        let adam = self.adam.state();
        checkpoint::save(
            path,
            &CheckpointContents {
                params: &self.params,
                adam: &adam,
                state: &self.state,
                options: &self.opts,
                model: self.model.config(),
                vocab: &self.data.vocab,
                history: &self.history,
            },
            self.env.hooks.checkpoint_pause,
        )
    }

    /// Writes the last checkpoint now (and `curves.svg`).
    pub fn save(&mut self, on: &mut dyn FnMut(Event)) -> Result<()> {
        let path = self.checkpoint_path();
        self.write_checkpoint(&path)?;
        write_text(
            &self.out.join(files::CURVES),
            &super::report_data::curves_svg(&self.history),
        )?;
        self.last_checkpoint = Some(self.state.iteration);
        on(Event::Checkpoint {
            path: &path,
            iteration: self.state.iteration,
        });
        Ok(())
    }
}

/// `base` with the model options `set` applied; an option that changes a parameter's shape is
/// an error naming it.
fn with_model_options(base: &AoaConfig, set: &[(String, Value)], path: &Path) -> Result<AoaConfig> {
    let mut c = base.clone();
    for (k, v) in set {
        c.set(k, v)?;
    }
    c.validate()?;
    let diff = base.shape_differences(&c);
    if !diff.is_empty() {
        return Err(Error::invalid(format!(
            "{} was trained with a different model shape: {} (checkpoint vs requested); these \
             options cannot change for an existing checkpoint: drop them, or train a new model \
             in another folder",
            path.display(),
            diff.join(", ")
        )));
    }
    Ok(c)
}
