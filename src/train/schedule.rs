//! Learning-rate and scheduled-sampling schedules of the reference (AOANET.md 2.4 and 3.1):
//!
//! - [`StepDecay`]: at the start of each epoch, `lr = base · rate^⌊(epoch − start)/every⌋` once
//!   `epoch > start` (`train.py:128-136`; AoANet: 2e-4, 0.8 every 3 epochs from epoch 0);
//! - [`ScheduledSampling`]: `p = min(increase · ⌊(epoch − start)/every⌋, max)` once
//!   `epoch > start`, else 0 (`train.py:137-141`; AoANet: 0.05 every 5 epochs, at most 0.5);
//! - [`ReduceLrOnPlateau`]: PyTorch's `ReduceLROnPlateau` with its exact semantics, used by
//!   the SCST stage on `−CIDEr` (mode min, factor 0.5, patience 3, threshold 1e-4 relative).
//!
//! Powers are taken with `powf`, i.e. C's `pow`, as Python's `**` on floats is.

use crate::json::{self, Value};
use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Step decay
// ---------------------------------------------------------------------------------------------

/// The XE stage's step decay of the learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepDecay {
    /// `learning_rate`.
    pub base_lr: f64,
    /// `learning_rate_decay_start`: decay from the epoch after this one; `None` (the
    /// reference's −1) never decays.
    pub start: Option<u64>,
    /// `learning_rate_decay_every` (epochs, ≥ 1).
    pub every: u64,
    /// `learning_rate_decay_rate`.
    pub rate: f64,
}

impl Default for StepDecay {
    /// AoANet's XE stage: 2e-4, ×0.8 every 3 epochs, from epoch 0.
    fn default() -> Self {
        StepDecay {
            base_lr: 2e-4,
            start: Some(0),
            every: 3,
            rate: 0.8,
        }
    }
}

impl StepDecay {
    /// The learning rate of `epoch` (0-based, as the reference counts).
    pub fn lr(&self, epoch: u64) -> f64 {
        match self.start {
            Some(start) if epoch > start => {
                let frac = (epoch - start) / self.every.max(1);
                self.base_lr * self.rate.powf(frac as f64)
            }
            _ => self.base_lr,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduled sampling
// ---------------------------------------------------------------------------------------------

/// The probability of feeding a sampled token instead of the ground truth in teacher forcing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduledSampling {
    /// `scheduled_sampling_start`; `None` (the reference's −1) keeps the probability at 0.
    pub start: Option<u64>,
    /// `scheduled_sampling_increase_every` (epochs, ≥ 1).
    pub increase_every: u64,
    /// `scheduled_sampling_increase_prob`.
    pub increase_prob: f64,
    /// `scheduled_sampling_max_prob`.
    pub max_prob: f64,
}

impl Default for ScheduledSampling {
    /// AoANet's XE stage: +0.05 every 5 epochs from epoch 0, at most 0.5.
    fn default() -> Self {
        ScheduledSampling {
            start: Some(0),
            increase_every: 5,
            increase_prob: 0.05,
            max_prob: 0.5,
        }
    }
}

impl ScheduledSampling {
    /// The probability for `epoch` (0-based).
    pub fn prob(&self, epoch: u64) -> f64 {
        match self.start {
            Some(start) if epoch > start => {
                let frac = (epoch - start) / self.increase_every.max(1);
                (self.increase_prob * frac as f64).min(self.max_prob)
            }
            // The reference only assigns ss_prob inside its `if`; the model starts at 0.
            _ => 0.0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ReduceLROnPlateau
// ---------------------------------------------------------------------------------------------

/// Whether lower or higher metrics are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (AoANet steps it with −CIDEr).
    Min,
    /// Higher is better.
    Max,
}

/// How the threshold for "better" is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Relative to the best value: `a < best·(1 − threshold)` in mode min.
    Rel,
    /// Absolute: `a < best − threshold` in mode min.
    Abs,
}

/// The settings of [`ReduceLrOnPlateau`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlateauConfig {
    /// Lower or higher is better.
    pub mode: PlateauMode,
    /// The factor the learning rate is multiplied by (< 1).
    pub factor: f64,
    /// Bad steps tolerated; the rate drops on the `patience + 1`-th in a row.
    pub patience: u64,
    /// The margin a metric must beat the best by.
    pub threshold: f64,
    /// How `threshold` applies.
    pub threshold_mode: ThresholdMode,
    /// Steps after a reduction during which bad steps are not counted.
    pub cooldown: u64,
    /// The learning rate never drops below this.
    pub min_lr: f64,
    /// Reductions smaller than this are not applied.
    pub eps: f64,
}

impl Default for PlateauConfig {
    /// AoANet's SCST stage: mode min, factor 0.5, patience 3, threshold 1e-4 relative,
    /// cooldown 0, min_lr 0 (eps 1e-8, PyTorch's default).
    fn default() -> Self {
        PlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.5,
            patience: 3,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// The mutable part of [`ReduceLrOnPlateau`], for checkpoints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlateauState {
    /// The best metric so far (+∞ in mode min, −∞ in mode max before the first step).
    pub best: f64,
    /// Bad steps in a row.
    pub num_bad_epochs: u64,
    /// Steps of cooldown left.
    pub cooldown_counter: u64,
    /// Steps taken.
    pub last_epoch: u64,
}

impl PlateauState {
    /// As JSON (a non-finite `best`, i.e. no step yet, is written as `null`).
    pub fn to_json(&self) -> Value {
        json::object([
            (
                "best",
                if self.best.is_finite() {
                    Value::from(self.best)
                } else {
                    Value::Null
                },
            ),
            ("num_bad_epochs", Value::from(self.num_bad_epochs as usize)),
            (
                "cooldown_counter",
                Value::from(self.cooldown_counter as usize),
            ),
            ("last_epoch", Value::from(self.last_epoch as usize)),
        ])
    }

    /// Reads [`PlateauState::to_json`]'s output; `mode` gives `best` when it is `null`.
    pub fn from_json(v: &Value, mode: PlateauMode) -> Result<PlateauState> {
        let count = |k: &str| {
            v.get(k).and_then(Value::as_u64).ok_or_else(|| {
                Error::invalid(format!(
                    "ReduceLROnPlateau state: {k:?} is not a non-negative integer"
                ))
            })
        };
        let best = match v.get("best") {
            Some(Value::Null) => worst(mode),
            Some(b) => b.as_f64().ok_or_else(|| {
                Error::invalid("ReduceLROnPlateau state: \"best\" is not a number")
            })?,
            None => return Err(Error::invalid("ReduceLROnPlateau state: no \"best\"")),
        };
        Ok(PlateauState {
            best,
            num_bad_epochs: count("num_bad_epochs")?,
            cooldown_counter: count("cooldown_counter")?,
            last_epoch: count("last_epoch")?,
        })
    }
}

fn worst(mode: PlateauMode) -> f64 {
    match mode {
        PlateauMode::Min => f64::INFINITY,
        PlateauMode::Max => f64::NEG_INFINITY,
    }
}

/// PyTorch's `ReduceLROnPlateau`, detached from the optimiser: [`ReduceLrOnPlateau::step`]
/// takes the metric and the current learning rate and returns the new one.
///
/// Faithful to PyTorch's quirks too: in relative mode with a negative best (AoANet's −CIDEr),
/// `best·(1 − threshold)` lies *above* the best, so a slightly worse metric still counts as an
/// improvement; a NaN metric counts as a bad step.
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    config: PlateauConfig,
    state: PlateauState,
}

impl ReduceLrOnPlateau {
    /// A fresh scheduler.
    pub fn new(config: PlateauConfig) -> Result<ReduceLrOnPlateau> {
        if !(0.0..1.0).contains(&config.factor) || config.min_lr.is_nan() || config.min_lr < 0.0 {
            return Err(Error::invalid(format!(
                "ReduceLROnPlateau: factor {} must be in [0, 1) and min_lr {} ≥ 0",
                config.factor, config.min_lr
            )));
        }
        Ok(ReduceLrOnPlateau {
            config,
            state: PlateauState {
                best: worst(config.mode),
                num_bad_epochs: 0,
                cooldown_counter: 0,
                last_epoch: 0,
            },
        })
    }

    /// A scheduler resuming from `state`.
    pub fn with_state(config: PlateauConfig, state: PlateauState) -> Result<ReduceLrOnPlateau> {
        let mut s = ReduceLrOnPlateau::new(config)?;
        s.state = state;
        Ok(s)
    }

    /// The settings.
    pub fn config(&self) -> &PlateauConfig {
        &self.config
    }

    /// The state to save.
    pub fn state(&self) -> PlateauState {
        self.state
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        let c = &self.config;
        match (c.mode, c.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - c.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - c.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (c.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + c.threshold,
        }
    }

    /// Records one evaluation's `metric` and returns the learning rate to use from now on,
    /// given the current one `lr`.
    pub fn step(&mut self, metric: f64, lr: f64) -> f64 {
        self.state.last_epoch += 1;
        if self.is_better(metric, self.state.best) {
            self.state.best = metric;
            self.state.num_bad_epochs = 0;
        } else {
            self.state.num_bad_epochs += 1;
        }
        let s = &mut self.state;
        if s.cooldown_counter > 0 {
            s.cooldown_counter -= 1;
            // Bad steps during the cooldown are ignored.
            s.num_bad_epochs = 0;
        }
        if s.num_bad_epochs > self.config.patience {
            s.cooldown_counter = self.config.cooldown;
            s.num_bad_epochs = 0;
            let new_lr = (lr * self.config.factor).max(self.config.min_lr);
            if lr - new_lr > self.config.eps {
                return new_lr;
            }
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_decay_matches_the_reference_table() {
        let d = StepDecay::default();
        for (epoch, want) in [(0, 2e-4), (2, 2e-4), (3, 1.6e-4), (5, 1.6e-4), (6, 1.28e-4)] {
            assert!((d.lr(epoch) - want).abs() < 1e-18, "{epoch}");
        }
        // Exactly Python's 2e-4 * 0.8 ** 2 and 2e-4 * 0.8 ** 8.
        assert_eq!(d.lr(7), 2e-4 * 0.6400000000000001);
        assert_eq!(d.lr(24), 2e-4 * 0.8f64.powf(8.0));
        assert!((d.lr(24) - 3.36e-5).abs() < 1e-7);
        let off = StepDecay { start: None, ..d };
        assert_eq!(off.lr(24), 2e-4);
        // Decay starting at epoch 4: epochs ≤ 4 keep the base, 5..=6 have frac 0, 7 has frac 1.
        let late = StepDecay {
            start: Some(4),
            ..d
        };
        assert_eq!(late.lr(4), 2e-4);
        assert_eq!(late.lr(6), 2e-4);
        assert_eq!(late.lr(7), 2e-4 * 0.8);
    }

    #[test]
    fn scheduled_sampling_matches_the_reference_table() {
        let s = ScheduledSampling::default();
        let got: Vec<f64> = [0, 4, 5, 9, 10, 15, 20, 24, 200]
            .iter()
            .map(|&e| s.prob(e))
            .collect();
        assert_eq!(
            got,
            vec![0.0, 0.0, 0.05, 0.05, 0.1, 0.05 * 3.0, 0.2, 0.2, 0.5]
        );
        let off = ScheduledSampling { start: None, ..s };
        assert_eq!(off.prob(20), 0.0);
        let later = ScheduledSampling {
            start: Some(2),
            increase_every: 2,
            increase_prob: 0.25,
            max_prob: 0.3,
        };
        let got: Vec<f64> = (0..7).map(|e| later.prob(e)).collect();
        assert_eq!(got, vec![0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.3]);
    }

    /// Runs the metrics through a scheduler and returns the learning rates after each step.
    fn trace(config: PlateauConfig, metrics: &[f64]) -> Vec<f64> {
        let mut s = ReduceLrOnPlateau::new(config).unwrap();
        let mut lr = 1.0;
        metrics
            .iter()
            .map(|&m| {
                lr = s.step(m, lr);
                lr
            })
            .collect()
    }

    #[test]
    fn plateau_halves_after_patience_plus_one_bad_steps() {
        // 1 sets best; four non-improvements (within the 1e-4 relative margin) halve on the
        // fourth; the counter restarts; an improvement resets it.
        let got = trace(
            PlateauConfig::default(),
            &[
                1.0, 1.0, 0.99995, 1.2, 1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6, 0.6,
            ],
        );
        assert_eq!(
            got,
            vec![
                1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25
            ]
        );
    }

    #[test]
    fn plateau_follows_pytorch_quirks_cooldown_min_lr_and_modes() {
        // Negative metrics in rel mode: −0.99995 beats best −1 (threshold lies above it).
        let mut s = ReduceLrOnPlateau::new(PlateauConfig::default()).unwrap();
        s.step(-1.0, 1.0);
        s.step(-0.99995, 1.0);
        assert_eq!(s.state().best, -0.99995);
        assert_eq!(s.state().num_bad_epochs, 0);
        // A NaN metric is a bad step.
        s.step(f64::NAN, 1.0);
        assert_eq!(s.state().num_bad_epochs, 1);
        // Cooldown 2: after a reduction two steps are not counted.
        let c = PlateauConfig {
            patience: 0,
            cooldown: 2,
            ..Default::default()
        };
        assert_eq!(
            trace(c, &[1.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
            vec![1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
        );
        // min_lr floors the rate; a reduction below eps is not applied.
        let c = PlateauConfig {
            patience: 0,
            min_lr: 0.3,
            ..Default::default()
        };
        assert_eq!(trace(c, &[1.0, 2.0, 2.0, 2.0]), vec![1.0, 0.5, 0.3, 0.3]);
        let mut tiny = ReduceLrOnPlateau::new(PlateauConfig {
            patience: 0,
            ..Default::default()
        })
        .unwrap();
        tiny.step(1.0, 1e-8);
        assert_eq!(tiny.step(2.0, 1e-8), 1e-8);
        // Max mode with an absolute threshold.
        let c = PlateauConfig {
            mode: PlateauMode::Max,
            threshold_mode: ThresholdMode::Abs,
            threshold: 0.1,
            patience: 1,
            ..Default::default()
        };
        assert_eq!(
            trace(c, &[1.0, 1.05, 1.2, 1.25, 1.29]),
            vec![1.0, 1.0, 1.0, 1.0, 0.5]
        );
        assert!(
            ReduceLrOnPlateau::new(PlateauConfig {
                factor: 1.0,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn plateau_state_round_trips_through_json() {
        let config = PlateauConfig::default();
        let fresh = ReduceLrOnPlateau::new(config).unwrap().state();
        let text = fresh.to_json().to_json();
        assert!(text.contains("\"best\":null"), "{text}");
        let back = PlateauState::from_json(&json::parse(&text, "t").unwrap(), config.mode).unwrap();
        assert_eq!(back, fresh);
        // Resume half way and continue identically.
        let metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.97];
        let mut a = ReduceLrOnPlateau::new(config).unwrap();
        let mut lr_a = 1.0;
        for &m in &metrics[..4] {
            lr_a = a.step(m, lr_a);
        }
        let saved = json::parse(&a.state().to_json().to_json(), "saved").unwrap();
        let mut b = ReduceLrOnPlateau::with_state(
            config,
            PlateauState::from_json(&saved, config.mode).unwrap(),
        )
        .unwrap();
        let mut lr_b = lr_a;
        for &m in &metrics[4..] {
            lr_a = a.step(m, lr_a);
            lr_b = b.step(m, lr_b);
            assert_eq!(lr_a, lr_b);
        }
        assert_eq!(lr_a, 0.5);
        assert_eq!(a.state(), b.state());
        assert!(
            PlateauState::from_json(&json::parse("{\"best\":1}", "x").unwrap(), config.mode)
                .is_err()
        );
    }
}
