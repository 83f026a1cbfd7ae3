//! The training history: one record per logged training window and per validation, kept in
//! the checkpoint (so a resumed run continues it exactly) and written to `history.jsonl`, one
//! JSON object a line, for people and for `curves.svg`.
//!
//! A record is `{"stage", "kind", "iteration", "epoch", "seconds", <values>...}`: `kind` is
//! `train` (values `loss`, `lr`, `ss_prob`, `images_per_s`, and `reward` in SCST: the mean over
//! the window) or `val` (the toolkit's metric keys such as `CIDEr` and `Bleu_4`, and `loss` in
//! XE). `seconds` is the run's training time when the record was made.

use super::options::Stage;
use crate::json::{self, Value};
use crate::{Error, Result};
use std::path::Path;

/// What a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Training loss (and reward) over the last window of iterations.
    Train,
    /// A validation.
    Val,
}

impl RecordKind {
    /// `train` or `val`.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Train => "train",
            RecordKind::Val => "val",
        }
    }
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRecord {
    /// The stage that wrote it.
    pub stage: Stage,
    /// Training window or validation.
    pub kind: RecordKind,
    /// Iterations done when it was written.
    pub iteration: u64,
    /// Epochs done when it was written.
    pub epoch: u64,
    /// Training time of the run so far, in seconds.
    pub seconds: f64,
    /// The values, by name (see the module docs).
    pub values: Vec<(String, f64)>,
}

impl HistoryRecord {
    /// The value named `key`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// As one JSON object (non-finite values as `null`).
    pub fn to_json(&self) -> Value {
        let mut fields = vec![
            ("stage".to_string(), Value::from(self.stage.name())),
            ("kind".to_string(), Value::from(self.kind.name())),
            (
                "iteration".to_string(),
                Value::from(self.iteration as usize),
            ),
            ("epoch".to_string(), Value::from(self.epoch as usize)),
            ("seconds".to_string(), Value::from(self.seconds)),
        ];
        fields.extend(self.values.iter().map(|(k, v)| {
            (
                k.clone(),
                if v.is_finite() {
                    Value::from(*v)
                } else {
                    Value::Null
                },
            )
        }));
        Value::Object(fields)
    }

    /// Reads [`HistoryRecord::to_json`]'s output.
    pub fn from_json(v: &Value) -> Result<HistoryRecord> {
        let bad = |what: &str| Error::invalid(format!("history record: missing or bad {what}"));
        let stage = Stage::parse(
            v.get("stage")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("stage"))?,
        )?;
        let kind = match v.get("kind").and_then(Value::as_str) {
            Some("train") => RecordKind::Train,
            Some("val") => RecordKind::Val,
            _ => return Err(bad("kind")),
        };
        let count = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
        let mut values = Vec::new();
        for (k, val) in v.as_object().ok_or_else(|| bad("object"))? {
            if matches!(
                k.as_str(),
                "stage" | "kind" | "iteration" | "epoch" | "seconds"
            ) {
                continue;
            }
            let x = match val {
                Value::Null => f64::NAN,
                other => other.as_f64().ok_or_else(|| bad(k))?,
            };
            values.push((k.clone(), x));
        }
        Ok(HistoryRecord {
            stage,
            kind,
            iteration: count("iteration")?,
            epoch: count("epoch")?,
            seconds: v
                .get("seconds")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("seconds"))?,
            values,
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
        let recs = vec![
            HistoryRecord {
                stage: Stage::Xe,
                kind: RecordKind::Train,
                iteration: 25,
                epoch: 0,
                seconds: 1.5,
                values: vec![("loss".into(), 3.25), ("lr".into(), 2e-4)],
            },
            HistoryRecord {
                stage: Stage::Scst,
                kind: RecordKind::Val,
                iteration: 3000,
                epoch: 2,
                seconds: 99.0,
                values: vec![("CIDEr".into(), 1.1), ("METEOR".into(), f64::NAN)],
            },
        ];
        let dir = std::env::temp_dir().join(format!("aoanet-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("history.jsonl");
        std::fs::write(&p, to_jsonl(&recs)).unwrap();
        let back = read_jsonl(&p).unwrap();
        assert_eq!(back[0], recs[0]);
        assert_eq!(back[1].get("CIDEr"), Some(1.1));
        assert!(back[1].get("METEOR").unwrap().is_nan());
        assert_eq!(from_json(&to_json(&recs)).unwrap()[0], recs[0]);
        std::fs::write(&p, "{\"stage\": \"xe\"}\n").unwrap();
        let e = read_jsonl(&p).unwrap_err().to_string();
        assert!(e.contains("history.jsonl") && e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
