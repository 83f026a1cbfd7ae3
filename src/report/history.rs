//! `history.jsonl`: one JSON object per line, one line per logged training step or validation.
//!
//! A line looks like
//! `{"iteration":3000,"epoch":5,"stage":"xe","loss":2.81,"lr":0.000128,"val":{"CIDEr":0.91}}`.
//! Fields that are `None` are left out (a reader also accepts `null`). JSON has no NaN or
//! infinity, and a diverged loss is exactly what a person wants to see, so non-finite numbers
//! are written as the strings `"NaN"`, `"Infinity"` and `"-Infinity"` and read back as such.
//! Unknown fields are ignored on reading, so a newer trainer's extra fields do not break an
//! older reader.

use crate::json::{self, Value};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// One point of the training history: what the trainer logged at one iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRecord {
    /// Global iteration (optimizer steps since the start of the run, over all stages).
    pub iteration: u64,
    /// Epoch the iteration belongs to (0-based).
    pub epoch: u64,
    /// Training stage: `"xe"` (cross-entropy) or `"scst"` (self-critical); another label
    /// (say `"control"`) is kept and drawn as a series of its own.
    pub stage: String,
    /// Training loss at this iteration (or averaged since the last record).
    pub loss: Option<f64>,
    /// SCST: mean reward (CIDEr-D) of the sampled captions, before the baseline is subtracted.
    pub reward: Option<f64>,
    /// Learning rate in effect.
    pub lr: Option<f64>,
    /// Scheduled-sampling probability in effect (cross-entropy stage; the reference keeps it
    /// in its histories as `ss_prob_history`).
    pub ss_prob: Option<f64>,
    /// Validation scores under the toolkit's keys (`"CIDEr"`, `"Bleu_4"`, ...), on the
    /// iterations where validation ran.
    pub val: Option<BTreeMap<String, f64>>,
}

impl HistoryRecord {
    /// A record with only the position filled in.
    pub fn new(iteration: u64, epoch: u64, stage: impl Into<String>) -> Self {
        HistoryRecord {
            iteration,
            epoch,
            stage: stage.into(),
            loss: None,
            reward: None,
            lr: None,
            ss_prob: None,
            val: None,
        }
    }

    /// The record as a JSON object (see the module docs for absent and non-finite values).
    pub fn to_json(&self) -> Value {
        let mut fields: Vec<(String, Value)> = vec![
            ("iteration".into(), Value::Number(self.iteration as f64)),
            ("epoch".into(), Value::Number(self.epoch as f64)),
            ("stage".into(), Value::String(self.stage.clone())),
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
            let scores = val.iter().map(|(k, &x)| (k.clone(), number(x))).collect();
            fields.push(("val".into(), Value::Object(scores)));
        }
        Value::Object(fields)
    }

    /// The record as one line of `history.jsonl`, newline included.
    pub fn to_json_line(&self) -> String {
        let mut s = self.to_json().to_json();
        s.push('\n');
        s
    }

    /// Reads a record from its JSON object; `what` names the source in errors (file and line).
    pub fn from_json(v: &Value, what: &str) -> Result<Self> {
        let bad = |problem: String| Error::format(what, problem);
        if v.as_object().is_none() {
            return Err(bad("a history record must be a JSON object".into()));
        }
        let count = |key: &str| -> Result<u64> {
            v.get(key).and_then(Value::as_u64).ok_or_else(|| {
                bad(format!(
                    "\"{key}\" must be a non-negative integer, found {}",
                    v.get(key).map_or("nothing".into(), Value::to_json)
                ))
            })
        };
        let stage = v
            .get("stage")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"stage\" must be a string such as \"xe\" or \"scst\"".into()))?;
        let optional = |key: &str| -> Result<Option<f64>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => read_number(x).map(Some).ok_or_else(|| {
                    bad(format!("\"{key}\" must be a number, found {}", x.to_json()))
                }),
            }
        };
        let val = match v.get("val") {
            None | Some(Value::Null) => None,
            Some(Value::Object(fields)) => {
                let mut scores = BTreeMap::new();
                for (k, x) in fields {
                    let x = read_number(x).ok_or_else(|| {
                        bad(format!(
                            "\"val\".\"{k}\" must be a number, found {}",
                            x.to_json()
                        ))
                    })?;
                    scores.insert(k.clone(), x);
                }
                Some(scores)
            }
            Some(x) => {
                return Err(bad(format!(
                    "\"val\" must be an object of metric scores, found {}",
                    x.to_json()
                )));
            }
        };
        Ok(HistoryRecord {
            iteration: count("iteration")?,
            epoch: count("epoch")?,
            stage: stage.to_string(),
            loss: optional("loss")?,
            reward: optional("reward")?,
            lr: optional("lr")?,
            ss_prob: optional("ss_prob")?,
            val,
        })
    }
}

/// A finite number as a JSON number, the others as `"NaN"`, `"Infinity"`, `"-Infinity"` (JSON
/// has none of them); the training history writes its numbers the same way.
pub(crate) fn number(x: f64) -> Value {
    if x.is_nan() {
        Value::String("NaN".into())
    } else if x == f64::INFINITY {
        Value::String("Infinity".into())
    } else if x == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        Value::Number(x)
    }
}

/// Reads [`number`]'s output.
pub(crate) fn read_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(x) => Some(*x),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Parses the text of a `history.jsonl`; blank lines are skipped, and an error names `what`
/// and the line number.
pub fn parse_history(text: &str, what: &str) -> Result<Vec<HistoryRecord>> {
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let here = format!("{what}, line {}", k + 1);
        let v = json::parse(line, &here)?;
        out.push(HistoryRecord::from_json(&v, &here)?);
    }
    Ok(out)
}

/// Reads `history.jsonl` at `path`.
pub fn read_history(path: impl AsRef<Path>) -> Result<Vec<HistoryRecord>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_history(&text, &path.display().to_string())
}

/// Writes all of `records` to `path` as JSON lines, atomically (the whole history is small,
/// and rewriting it from the checkpoint's copy keeps it consistent with a resumed run).
pub fn write_history(path: impl AsRef<Path>, records: &[HistoryRecord]) -> Result<()> {
    let path = path.as_ref();
    crate::io::write_atomic(path, |w| {
        for r in records {
            w.write_all(r.to_json_line().as_bytes())
                .map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    })
}
