//! Every training option, under the reference's `opts.py` names where it has one, with the
//! defaults of AoANet's `train.sh` for each stage (AOANET.md 2 and 3.1), and the way config
//! files and flags override them ([`TrainOptions::set`]).
//!
//! | stage | defaults |
//! | --- | --- |
//! | [`Stage::Xe`] | lr 2e-4 ×0.8 every 3 epochs, scheduled sampling +0.05 every 5 epochs (max 0.5), label smoothing 0.2, 25 epochs, validation and checkpoint every 6000 iterations |
//! | [`Stage::Scst`] | lr 2e-5, no decay, no scheduled sampling, no smoothing, `ReduceLROnPlateau` on val CIDEr-D, 40 epochs (counted from the XE epoch), every 3000 iterations, 5 samples per image, greedy baseline |
//!
//! Both: 10 images × 5 captions per batch, Adam (0.9, 0.999, 1e-8), element-wise gradient clamp
//! ±0.1, greedy validation on every val image.

use super::schedule::{PlateauConfig, ScheduledSampling, StepDecay};
use super::{AdamConfig, PlateauMode, ThresholdMode};
use crate::json::{self, Value};
use crate::metrics::Metric;
use crate::{Error, Result};

/// The training stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Cross-entropy with teacher forcing (label-smoothed).
    Xe,
    /// Self-critical sequence training (CIDEr-D reward).
    Scst,
}

impl Stage {
    /// `xe` or `scst`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Xe => "xe",
            Stage::Scst => "scst",
        }
    }

    /// Parses `xe` or `scst`.
    pub fn parse(s: &str) -> Result<Stage> {
        match s {
            "xe" => Ok(Stage::Xe),
            "scst" => Ok(Stage::Scst),
            _ => Err(Error::invalid(format!(
                "unknown stage {s:?}: choose xe (cross-entropy) or scst (self-critical)"
            ))),
        }
    }
}

/// What the self-critical reward subtracts from each sample's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// The greedy caption's score, decoded with dropout off (the reference).
    Greedy,
    /// The mean score of the image's other samples ("new self-critical").
    Mean,
}

impl Baseline {
    /// `greedy` or `mean`.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Greedy => "greedy",
            Baseline::Mean => "mean",
        }
    }

    /// Parses `greedy` or `mean`.
    pub fn parse(s: &str) -> Result<Baseline> {
        match s {
            "greedy" => Ok(Baseline::Greedy),
            "mean" => Ok(Baseline::Mean),
            _ => Err(Error::invalid(format!(
                "unknown baseline {s:?}: choose greedy (the reference) or mean"
            ))),
        }
    }
}

/// The names [`TrainOptions::set`] understands (the reference's aliases included).
pub const NAMES: [&str; 39] = [
    "stage",
    "seed",
    "batch_size",
    "seq_per_img",
    "max_epochs",
    "max_iters",
    "learning_rate",
    "learning_rate_decay_start",
    "learning_rate_decay_every",
    "learning_rate_decay_rate",
    "scheduled_sampling_start",
    "scheduled_sampling_increase_every",
    "scheduled_sampling_increase_prob",
    "scheduled_sampling_max_prob",
    "optim_alpha",
    "optim_beta",
    "optim_epsilon",
    "weight_decay",
    "grad_clip",
    "label_smoothing",
    "reduce_on_plateau",
    "reduce_on_plateau_factor",
    "reduce_on_plateau_patience",
    "val_every",
    "save_checkpoint_every",
    "save_every",
    "val_images",
    "val_images_use",
    "val_beam_size",
    "beam_size",
    "val_batch_size",
    "preflight_images",
    "metrics",
    "encode_per_caption",
    "train_sample_n",
    "baseline",
    "overlap_rewards",
    "shuffle_first_epoch",
    "losses_log_every",
];

/// Every option of a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// The stage.
    pub stage: Stage,
    /// Seed of the model's initialisation, the loader and the training randomness.
    pub seed: u64,
    /// Images per batch (`batch_size`).
    pub batch_size: usize,
    /// Captions per image (`seq_per_img`), i.e. caption rows per image in XE.
    pub seq_per_img: usize,
    /// Stop once this many epochs are done (`max_epochs`; the reference's −1 is `None`).
    pub max_epochs: Option<u64>,
    /// Stop once the iteration count reaches this (no reference counterpart; `None` = no limit).
    pub max_iters: Option<u64>,
    /// Base learning rate (`learning_rate`).
    pub learning_rate: f64,
    /// `learning_rate_decay_start` (`None` = the reference's −1, no decay).
    pub learning_rate_decay_start: Option<u64>,
    /// `learning_rate_decay_every` (epochs).
    pub learning_rate_decay_every: u64,
    /// `learning_rate_decay_rate`.
    pub learning_rate_decay_rate: f64,
    /// `scheduled_sampling_start` (`None` = −1, off).
    pub scheduled_sampling_start: Option<u64>,
    /// `scheduled_sampling_increase_every` (epochs).
    pub scheduled_sampling_increase_every: u64,
    /// `scheduled_sampling_increase_prob`.
    pub scheduled_sampling_increase_prob: f64,
    /// `scheduled_sampling_max_prob`.
    pub scheduled_sampling_max_prob: f64,
    /// Adam's β₁ (`optim_alpha`).
    pub optim_alpha: f64,
    /// Adam's β₂ (`optim_beta`).
    pub optim_beta: f64,
    /// Adam's ε (`optim_epsilon`).
    pub optim_epsilon: f64,
    /// `weight_decay`.
    pub weight_decay: f64,
    /// Element-wise gradient clamp (`grad_clip`; 0 turns it off).
    pub grad_clip: f64,
    /// Label smoothing of the XE loss (`label_smoothing`).
    pub label_smoothing: f64,
    /// Halve the learning rate when val CIDEr-D stalls (`reduce_on_plateau`).
    pub reduce_on_plateau: bool,
    /// `ReduceLROnPlateau`'s factor (`reduce_on_plateau_factor`).
    pub reduce_on_plateau_factor: f64,
    /// `ReduceLROnPlateau`'s patience in evaluations (`reduce_on_plateau_patience`).
    pub reduce_on_plateau_patience: u64,
    /// Validate every this many iterations (`save_checkpoint_every`, which also saves).
    pub val_every: u64,
    /// Checkpoint every this many iterations (`None`: with each validation).
    pub save_every: Option<u64>,
    /// Val images used per validation (`val_images_use`; `None` = all).
    pub val_images: Option<usize>,
    /// Beam size of validation decoding (`beam_size`; 1 = greedy as the reference).
    pub val_beam_size: usize,
    /// Images per validation batch.
    pub val_batch_size: usize,
    /// Val images decoded and scored with every metric before the first step.
    pub preflight_images: usize,
    /// Comma-separated metrics for validation (`None`: BLEU, ROUGE-L, CIDEr-D, and METEOR
    /// when its data is installed). Naming one makes its absence an error before training.
    pub metrics: Option<String>,
    /// Run the encoder once per caption row, as the reference's replicating loader does,
    /// instead of once per image (upstream's expansion; the default).
    pub encode_per_caption: bool,
    /// SCST samples per image (the reference: `seq_per_img`, 5).
    pub train_sample_n: usize,
    /// The SCST baseline.
    pub baseline: Baseline,
    /// Score the samples' rewards on a second thread while the greedy baseline decodes.
    pub overlap_rewards: bool,
    /// Shuffle the first epoch too (the reference reads it in file order).
    pub shuffle_first_epoch: bool,
    /// Write a history record of the training loss every this many iterations
    /// (`losses_log_every`).
    pub losses_log_every: u64,
}

impl Default for TrainOptions {
    /// The XE stage of `train.sh`.
    fn default() -> Self {
        TrainOptions::xe()
    }
}

impl TrainOptions {
    /// The cross-entropy stage of `train.sh`.
    pub fn xe() -> Self {
        TrainOptions {
            stage: Stage::Xe,
            seed: 123,
            batch_size: 10,
            seq_per_img: 5,
            max_epochs: Some(25),
            max_iters: None,
            learning_rate: 2e-4,
            learning_rate_decay_start: Some(0),
            learning_rate_decay_every: 3,
            learning_rate_decay_rate: 0.8,
            scheduled_sampling_start: Some(0),
            scheduled_sampling_increase_every: 5,
            scheduled_sampling_increase_prob: 0.05,
            scheduled_sampling_max_prob: 0.5,
            optim_alpha: 0.9,
            optim_beta: 0.999,
            optim_epsilon: 1e-8,
            weight_decay: 0.0,
            grad_clip: 0.1,
            label_smoothing: 0.2,
            reduce_on_plateau: false,
            reduce_on_plateau_factor: 0.5,
            reduce_on_plateau_patience: 3,
            val_every: 6000,
            save_every: None,
            val_images: None,
            val_beam_size: 1,
            val_batch_size: 50,
            preflight_images: 5,
            metrics: None,
            encode_per_caption: false,
            train_sample_n: 5,
            baseline: Baseline::Greedy,
            overlap_rewards: true,
            shuffle_first_epoch: false,
            losses_log_every: 25,
        }
    }

    /// The self-critical stage of `train.sh` (AOANET.md 3.1).
    pub fn scst() -> Self {
        TrainOptions {
            stage: Stage::Scst,
            max_epochs: Some(40),
            learning_rate: 2e-5,
            learning_rate_decay_start: None,
            scheduled_sampling_start: None,
            label_smoothing: 0.0,
            reduce_on_plateau: true,
            val_every: 3000,
            ..TrainOptions::xe()
        }
    }

    /// The defaults of `stage`.
    pub fn for_stage(stage: Stage) -> Self {
        match stage {
            Stage::Xe => TrainOptions::xe(),
            Stage::Scst => TrainOptions::scst(),
        }
    }

    /// Checkpoints are written every this many iterations.
    pub fn checkpoint_every(&self) -> u64 {
        self.save_every.unwrap_or(self.val_every)
    }

    /// The learning-rate step decay.
    pub fn step_decay(&self) -> StepDecay {
        StepDecay {
            base_lr: self.learning_rate,
            start: self.learning_rate_decay_start,
            every: self.learning_rate_decay_every,
            rate: self.learning_rate_decay_rate,
        }
    }

    /// The scheduled-sampling schedule.
    pub fn scheduled_sampling(&self) -> ScheduledSampling {
        ScheduledSampling {
            start: self.scheduled_sampling_start,
            increase_every: self.scheduled_sampling_increase_every,
            increase_prob: self.scheduled_sampling_increase_prob,
            max_prob: self.scheduled_sampling_max_prob,
        }
    }

    /// Adam's settings at learning rate `lr`.
    pub fn adam(&self, lr: f64) -> AdamConfig {
        AdamConfig {
            lr,
            beta1: self.optim_alpha,
            beta2: self.optim_beta,
            eps: self.optim_epsilon,
            weight_decay: self.weight_decay,
            grad_clip: (self.grad_clip > 0.0).then_some(self.grad_clip),
        }
    }

    /// `ReduceLROnPlateau` as the reference configures it, stepped with −CIDEr-D.
    pub fn plateau(&self) -> PlateauConfig {
        PlateauConfig {
            mode: PlateauMode::Min,
            factor: self.reduce_on_plateau_factor,
            patience: self.reduce_on_plateau_patience,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            ..PlateauConfig::default()
        }
    }

    /// The validation metrics as asked for: `None` = the default set.
    pub fn metric_list(&self) -> Result<Option<Vec<Metric>>> {
        self.metrics.as_deref().map(Metric::parse_list).transpose()
    }

    /// Checks values that would fail later or make no sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("training option {m}")));
        for (name, v) in [
            ("batch_size", self.batch_size),
            ("seq_per_img", self.seq_per_img),
            ("val_batch_size", self.val_batch_size),
            ("val_beam_size", self.val_beam_size),
            ("train_sample_n", self.train_sample_n),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        for (name, v) in [
            ("val_every", self.val_every),
            ("learning_rate_decay_every", self.learning_rate_decay_every),
            (
                "scheduled_sampling_increase_every",
                self.scheduled_sampling_increase_every,
            ),
            ("losses_log_every", self.losses_log_every),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if self.save_every == Some(0) {
            return bad("save_every must be at least 1 (or -1: with each validation)".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad(format!(
                "learning_rate {} must be a finite number ≥ 0",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing {} must be in [0, 1)",
                self.label_smoothing
            ));
        }
        if self.stage == Stage::Scst && self.baseline == Baseline::Mean && self.train_sample_n < 2 {
            return bad("train_sample_n must be at least 2 with the mean baseline".into());
        }
        super::Adam::new(self.adam(self.learning_rate))?;
        self.metric_list()?;
        Ok(())
    }

    /// Sets one option by name from a JSON value (config files, `--set key=value`). `-1`
    /// means "none" for the options that take it, as in the reference.
    pub fn set(&mut self, key: &str, value: &Value) -> Result<()> {
        let err = |what: &str| {
            Error::invalid(format!(
                "training option {key}: {} is not {what}",
                value.to_json()
            ))
        };
        let num = || value.as_f64().ok_or_else(|| err("a number"));
        let int = || value.as_u64().ok_or_else(|| err("a whole number ≥ 0"));
        let size = || int().map(|v| v as usize);
        // -1 (or null) = none.
        let opt = || -> Result<Option<u64>> {
            match value {
                Value::Null => Ok(None),
                v if v.as_i64() == Some(-1) => Ok(None),
                v => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| err("a whole number ≥ 0 or -1")),
            }
        };
        let flag = || {
            value
                .as_bool()
                .or_else(|| value.as_u64().map(|v| v != 0))
                .ok_or_else(|| err("true/false or 1/0"))
        };
        let text = || value.as_str().ok_or_else(|| err("a string"));
        match key {
            "stage" => self.stage = Stage::parse(text()?)?,
            "seed" => {
                self.seed = match value {
                    Value::String(s) => s.parse().map_err(|_| err("a whole number"))?,
                    _ => int()?,
                }
            }
            "batch_size" => self.batch_size = size()?,
            "seq_per_img" => self.seq_per_img = size()?,
            "max_epochs" => self.max_epochs = opt()?,
            "max_iters" => self.max_iters = opt()?,
            "learning_rate" => self.learning_rate = num()?,
            "learning_rate_decay_start" => self.learning_rate_decay_start = opt()?,
            "learning_rate_decay_every" => self.learning_rate_decay_every = int()?,
            "learning_rate_decay_rate" => self.learning_rate_decay_rate = num()?,
            "scheduled_sampling_start" => self.scheduled_sampling_start = opt()?,
            "scheduled_sampling_increase_every" => self.scheduled_sampling_increase_every = int()?,
            "scheduled_sampling_increase_prob" => self.scheduled_sampling_increase_prob = num()?,
            "scheduled_sampling_max_prob" => self.scheduled_sampling_max_prob = num()?,
            "optim_alpha" => self.optim_alpha = num()?,
            "optim_beta" => self.optim_beta = num()?,
            "optim_epsilon" => self.optim_epsilon = num()?,
            "weight_decay" => self.weight_decay = num()?,
            "grad_clip" => self.grad_clip = num()?,
            "label_smoothing" => self.label_smoothing = num()?,
            "reduce_on_plateau" => self.reduce_on_plateau = flag()?,
            "reduce_on_plateau_factor" => self.reduce_on_plateau_factor = num()?,
            "reduce_on_plateau_patience" => self.reduce_on_plateau_patience = int()?,
            "val_every" | "save_checkpoint_every" => self.val_every = int()?,
            "save_every" => self.save_every = opt()?,
            "val_images" | "val_images_use" => self.val_images = opt()?.map(|v| v as usize),
            "val_beam_size" | "beam_size" => self.val_beam_size = size()?,
            "val_batch_size" => self.val_batch_size = size()?,
            "preflight_images" => self.preflight_images = size()?,
            "metrics" => {
                self.metrics = match value {
                    Value::Null => None,
                    _ => Some(text()?.to_string()),
                }
            }
            "encode_per_caption" => self.encode_per_caption = flag()?,
            "train_sample_n" => self.train_sample_n = size()?,
            "baseline" => self.baseline = Baseline::parse(text()?)?,
            "overlap_rewards" => self.overlap_rewards = flag()?,
            "shuffle_first_epoch" => self.shuffle_first_epoch = flag()?,
            "losses_log_every" => self.losses_log_every = int()?,
            _ => return Err(Error::invalid(format!("unknown training option {key}"))),
        }
        Ok(())
    }

    /// Whether `key` names a training option (so a flat config file can mix model and
    /// training options).
    pub fn is_option(key: &str) -> bool {
        NAMES.contains(&key)
    }

    /// The options as JSON, under their names (`-1` for "none", as the reference).
    pub fn to_json(&self) -> Value {
        let opt = |o: Option<u64>| o.map_or(Value::from(-1i64), |v| Value::from(v as usize));
        json::object([
            ("stage", Value::from(self.stage.name())),
            ("seed", Value::from(self.seed.to_string())),
            ("batch_size", self.batch_size.into()),
            ("seq_per_img", self.seq_per_img.into()),
            ("max_epochs", opt(self.max_epochs)),
            ("max_iters", opt(self.max_iters)),
            ("learning_rate", self.learning_rate.into()),
            (
                "learning_rate_decay_start",
                opt(self.learning_rate_decay_start),
            ),
            (
                "learning_rate_decay_every",
                (self.learning_rate_decay_every as usize).into(),
            ),
            (
                "learning_rate_decay_rate",
                self.learning_rate_decay_rate.into(),
            ),
            (
                "scheduled_sampling_start",
                opt(self.scheduled_sampling_start),
            ),
            (
                "scheduled_sampling_increase_every",
                (self.scheduled_sampling_increase_every as usize).into(),
            ),
            (
                "scheduled_sampling_increase_prob",
                self.scheduled_sampling_increase_prob.into(),
            ),
            (
                "scheduled_sampling_max_prob",
                self.scheduled_sampling_max_prob.into(),
            ),
            ("optim_alpha", self.optim_alpha.into()),
            ("optim_beta", self.optim_beta.into()),
            ("optim_epsilon", self.optim_epsilon.into()),
            ("weight_decay", self.weight_decay.into()),
            ("grad_clip", self.grad_clip.into()),
            ("label_smoothing", self.label_smoothing.into()),
            ("reduce_on_plateau", self.reduce_on_plateau.into()),
            (
                "reduce_on_plateau_factor",
                self.reduce_on_plateau_factor.into(),
            ),
            (
                "reduce_on_plateau_patience",
                (self.reduce_on_plateau_patience as usize).into(),
            ),
            ("val_every", (self.val_every as usize).into()),
            ("save_every", opt(self.save_every)),
            ("val_images", opt(self.val_images.map(|v| v as u64))),
            ("val_beam_size", self.val_beam_size.into()),
            ("val_batch_size", self.val_batch_size.into()),
            ("preflight_images", self.preflight_images.into()),
            ("metrics", Value::from(self.metrics.clone())),
            ("encode_per_caption", self.encode_per_caption.into()),
            ("train_sample_n", self.train_sample_n.into()),
            ("baseline", Value::from(self.baseline.name())),
            ("overlap_rewards", self.overlap_rewards.into()),
            ("shuffle_first_epoch", self.shuffle_first_epoch.into()),
            ("losses_log_every", (self.losses_log_every as usize).into()),
        ])
    }

    /// Reads [`TrainOptions::to_json`]'s output; missing keys keep the defaults of the stage
    /// named in it (XE if none).
    pub fn from_json(v: &Value) -> Result<Self> {
        let fields = v
            .as_object()
            .ok_or_else(|| Error::invalid("training options: expected a JSON object"))?;
        let stage = match v.get("stage") {
            Some(s) => Stage::parse(
                s.as_str()
                    .ok_or_else(|| Error::invalid("training option stage: not a string"))?,
            )?,
            None => Stage::Xe,
        };
        let mut o = TrainOptions::for_stage(stage);
        for (k, val) in fields {
            o.set(k, val)?;
        }
        o.validate()?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_for_both_stages() {
        for mut o in [TrainOptions::xe(), TrainOptions::scst()] {
            o.max_iters = Some(7);
            o.metrics = Some("bleu,cider".into());
            o.seed = u64::MAX;
            let back = TrainOptions::from_json(&o.to_json()).unwrap();
            assert_eq!(back, o);
        }
    }

    #[test]
    fn reference_names_and_minus_one() {
        let mut o = TrainOptions::xe();
        o.set("learning_rate_decay_start", &Value::from(-1i64))
            .unwrap();
        assert_eq!(o.learning_rate_decay_start, None);
        o.set("save_checkpoint_every", &Value::from(30usize))
            .unwrap();
        assert_eq!(o.val_every, 30);
        o.set("baseline", &Value::from("mean")).unwrap();
        assert_eq!(o.baseline, Baseline::Mean);
        let e = o.set("batch_size", &Value::from(-3i64)).unwrap_err();
        assert!(e.to_string().contains("batch_size"), "{e}");
        let e = o.set("rnn_size", &Value::from(3usize)).unwrap_err();
        assert!(e.to_string().contains("unknown training option rnn_size"));
        assert!(TrainOptions::is_option("max_iters"));
        // Every name is settable, and every written key is a name.
        let o = TrainOptions::xe();
        for (k, v) in o.to_json().as_object().unwrap() {
            assert!(NAMES.contains(&k.as_str()), "{k}");
            TrainOptions::xe().set(k, v).unwrap();
        }
        for k in NAMES {
            let e = TrainOptions::xe().set(k, &Value::Array(vec![]));
            assert!(!e.unwrap_err().to_string().contains("unknown"), "{k}");
        }
        assert!(TrainOptions::is_option("learning_rate"));
        assert!(!TrainOptions::is_option("rnn_size"));
    }

    #[test]
    fn stage_defaults_follow_train_sh() {
        let x = TrainOptions::xe();
        assert_eq!(x.step_decay().lr(3), 2e-4 * 0.8);
        assert_eq!(x.scheduled_sampling().prob(5), 0.05);
        let s = TrainOptions::scst();
        assert_eq!(s.step_decay().lr(30), 2e-5);
        assert_eq!(s.scheduled_sampling().prob(30), 0.0);
        assert!(s.reduce_on_plateau && s.label_smoothing == 0.0 && s.val_every == 3000);
        let mut bad = TrainOptions::xe();
        bad.batch_size = 0;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("batch_size")
        );
    }
}
