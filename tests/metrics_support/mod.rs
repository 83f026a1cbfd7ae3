//! Shared helpers of the metric tests: fixture paths, gzip and JSON reading.
#![allow(dead_code)]

use aoanet::json::{self, Value};
use std::io::Read;
use std::path::PathBuf;

/// `tests/fixtures/metrics/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name)
}

/// A fixture's text; `.gz` files are decompressed.
pub fn read_text(name: &str) -> String {
    let path = fixture(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if name.ends_with(".gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s
    } else {
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// A fixture parsed as JSON.
pub fn read_json(name: &str) -> Value {
    json::parse(&read_text(name), name).unwrap_or_else(|e| panic!("{e}"))
}

/// A field as f64.
pub fn num(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number {key}"))
}

/// A field as str.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {key}"))
}

/// A field as an array of strings.
pub fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array {key}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// `reference_scores.json` → `datasets` → `name`.
pub fn reference_dataset(name: &str) -> Value {
    read_json("reference_scores.json")
        .get("datasets")
        .and_then(|d| d.get(name))
        .unwrap_or_else(|| panic!("no dataset {name}"))
        .clone()
}

/// Tracks the worst absolute difference of a family of values against the reference.
#[derive(Default)]
pub struct Worst {
    pub max_abs: f64,
    pub unequal: usize,
    pub total: usize,
    pub first: Option<String>,
}

impl Worst {
    pub fn check(&mut self, what: impl FnOnce() -> String, ours: f64, reference: f64) {
        self.total += 1;
        assert!(!ours.is_nan(), "NaN for {}", what());
        let d = (ours - reference).abs();
        if ours.to_bits() != reference.to_bits() {
            self.unequal += 1;
            if self.first.is_none() {
                self.first = Some(format!(
                    "{}: ours {ours:e}, reference {reference:e}",
                    what()
                ));
            }
        }
        self.max_abs = self.max_abs.max(d);
    }
}
