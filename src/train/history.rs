//! The training history: one record per logged training window and per validation, kept in
//! the checkpoint (so a resumed run continues it exactly) and written to `history.jsonl`, one
//! JSON object a line, for people and for `curves.svg`.
//!
//! A line is `{"iteration", "epoch", "stage", "loss", "reward", "lr", "ss_prob", "val": {...}}`
//! (the report's layout: absent values left out, non-finite numbers as the strings `"NaN"`,
//! `"Infinity"`, `"-Infinity"`), plus what only training knows: `seconds` (training time of
//! the stage so far), `images_per_s`, `advantage` (SCST: the mean of sample − baseline, the
//! reference's `avg_reward`) and `val_loss` (XE). A training record averages the iterations
//! since the previous one; `reward` is the mean CIDEr-D of the sampled captions before the
//! baseline is subtracted.

use super::options::Stage;
use crate::json::{self, Value};
use crate::report::history::{number, read_number};
use crate::{Error, Result};
use std::path::Path;

/// One line of the history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRecord {
    /// Iterations done (over all stages).
    pub iteration: u64,
    /// Epochs done.
    pub epoch: u64,
    /// The stage that wrote it.
    pub stage: Stage,
    /// Training time of the stage so far, in seconds.
    pub seconds: f64,
    /// Training loss, averaged since the previous training record.
    pub loss: Option<f64>,
    /// SCST: the mean CIDEr-D of the samples.
    pub reward: Option<f64>,
    /// SCST: the mean of sample − baseline.
    pub advantage: Option<f64>,
    /// The learning rate.
    pub lr: Option<f64>,
    /// The scheduled-sampling probability (XE).
    pub ss_prob: Option<f64>,
    /// Training images per second since the previous training record.
    pub images_per_s: Option<f64>,
    /// Validation scores under the toolkit's keys, on validation records.
    pub val: Option<Vec<(String, f64)>>,
    /// XE validation loss (label-smoothed, as the reference prints it).
    pub val_loss: Option<f64>,
}

impl HistoryRecord {
    /// A record with only the position filled in.
    pub fn new(iteration: u64, epoch: u64, stage: Stage, seconds: f64) -> Self {
        HistoryRecord {
            iteration,
            epoch,
            stage,
            seconds,
            loss: None,
            reward: None,
            advantage: None,
            lr: None,
            ss_prob: None,
            images_per_s: None,
            val: None,
            val_loss: None,
        }
    }

    /// Whether this is a validation record.
    pub fn is_val(&self) -> bool {
        self.val.is_some()
    }

    /// The validation score under `key`.
    pub fn val_score(&self, key: &str) -> Option<f64> {
        self.val
            .as_ref()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// As one JSON object (see the module docs).
    pub fn to_json(&self) -> Value {
        let mut fields: Vec<(String, Value)> = vec![
            ("iteration".into(), Value::from(self.iteration as f64)),
            ("epoch".into(), Value::from(self.epoch as f64)),
            ("stage".into(), Value::from(self.stage.name())),
        ];
        for (key, x) in [
            ("loss", self.loss),
            ("reward", self.reward),
            ("lr", self.lr),
            ("ss_prob", self.ss_prob),
        ] {
            if let Some(x) = x {
                fields.push((key.into(), number(x)));
            }
        }
        if let Some(val) = &self.val {
            let scores = val.iter().map(|(k, x)| (k.clone(), number(*x))).collect();
            fields.push(("val".into(), Value::Object(scores)));
        }
        fields.push(("seconds".into(), number(self.seconds)));
        for (key, x) in [
            ("advantage", self.advantage),
            ("images_per_s", self.images_per_s),
            ("val_loss", self.val_loss),
        ] {
            if let Some(x) = x {
                fields.push((key.into(), number(x)));
            }
        }
        Value::Object(fields)
    }

    /// Reads [`HistoryRecord::to_json`]'s output.
    pub fn from_json(v: &Value) -> Result<HistoryRecord> {
        let bad = |what: &str| Error::invalid(format!("history record: missing or bad {what}"));
        if v.as_object().is_none() {
            return Err(bad("object"));
        }
        let count = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
        let optional = |k: &str| -> Result<Option<f64>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => read_number(x).map(Some).ok_or_else(|| bad(k)),
            }
        };
        let val = match v.get("val") {
            None | Some(Value::Null) => None,
            Some(Value::Object(fields)) => Some(
                fields
                    .iter()
                    .map(|(k, x)| Ok((k.clone(), read_number(x).ok_or_else(|| bad(k))?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => return Err(bad("val")),
        };
        Ok(HistoryRecord {
            iteration: count("iteration")?,
            epoch: count("epoch")?,
            stage: Stage::parse(
                v.get("stage")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("stage"))?,
            )?,
            seconds: optional("seconds")?.unwrap_or(0.0),
            loss: optional("loss")?,
            reward: optional("reward")?,
            advantage: optional("advantage")?,
            lr: optional("lr")?,
            ss_prob: optional("ss_prob")?,
            images_per_s: optional("images_per_s")?,
            val,
            val_loss: optional("val_loss")?,
        })
    }
}

/// A whole history as a JSON array (for checkpoint metadata).
pub fn to_json(records: &[HistoryRecord]) -> Value {
    Value::Array(records.iter().map(HistoryRecord::to_json).collect())
}

/// Reads [`to_json`]'s output.
pub fn from_json(v: &Value) -> Result<Vec<HistoryRecord>> {
    v.as_array()
        .ok_or_else(|| Error::invalid("history: expected a JSON array"))?
        .iter()
        .map(HistoryRecord::from_json)
        .collect()
}

/// The records as JSON Lines text.
pub fn to_jsonl(records: &[HistoryRecord]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&r.to_json().to_json());
        out.push('\n');
    }
    out
}

/// Reads a `history.jsonl` file.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<HistoryRecord>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let what = format!("{} line {}", path.display(), i + 1);
            HistoryRecord::from_json(&json::parse(line, &what)?)
                .map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_jsonl() {
        let mut train = HistoryRecord::new(25, 0, Stage::Scst, 1.5);
        train.loss = Some(3.25);
        train.reward = Some(f64::NAN);
        train.advantage = Some(-0.5);
        train.lr = Some(2e-5);
        let mut val = HistoryRecord::new(3000, 2, Stage::Xe, 99.0);
        val.val = Some(vec![("CIDEr".into(), 1.1), ("Bleu_4".into(), 0.3)]);
        val.val_loss = Some(2.5);
        let recs = vec![train, val];
        let dir = std::env::temp_dir().join(format!("aoanet-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("history.jsonl");
        std::fs::write(&p, to_jsonl(&recs)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"reward\":\"NaN\""), "{text}");
        assert!(text.contains("\"val\":{\"CIDEr\":1.1"), "{text}");
        let back = read_jsonl(&p).unwrap();
        assert!(back[0].reward.unwrap().is_nan());
        assert_eq!(back[0].advantage, Some(-0.5));
        assert_eq!(back[1], recs[1]);
        assert_eq!(back[1].val_score("CIDEr"), Some(1.1));
        assert_eq!(from_json(&to_json(&recs)).unwrap()[1], recs[1]);
        std::fs::write(&p, "{\"stage\": \"xe\"}\n").unwrap();
        let e = read_jsonl(&p).unwrap_err().to_string();
        assert!(e.contains("history.jsonl") && e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
