//! SPICE 1.0 as an optional external step (METRICS.md §7): it needs the Stanford CoreNLP 3.6.0
//! parser, which cannot be reproduced in Rust, so this writes the toolkit's input file, runs
//! `java -jar -Xmx8G spice-1.0.jar IN -out OUT -subset -silent` as `spice.py` does (without its
//! `-cache`, whose LMDB binding fails on recent Java), and reads `scores.All.f` per image.
//!
//! Prerequisites, checked up front with a message naming what is missing: a `java` on `PATH`,
//! the SPICE jar, and `lib/stanford-corenlp-3.6.0.jar` plus `lib/stanford-corenlp-3.6.0-models.jar`
//! beside it (from `stanford-corenlp-full-2015-12-09.zip`, which `get_stanford_models.py`
//! downloads). On Java ≥ 15, SPICE's pretty-printing also needs a JavaScript engine (METRICS.md
//! §7.4).
//!
//! The corpus value is `np.mean` of the per-image values in sorted image-id order, as the
//! toolkit computes it. Per-image values go to their own images; the toolkit assigns them in
//! sorted order to its unsorted keys, which misplaces them unless the ids were already sorted.

use super::eval::{ExternalMetric, ImageKey};
use super::numeric::np_mean;
use crate::json::{self, Value};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CoreNLP jars SPICE loads from `lib/` beside its own jar.
pub const CORENLP_JARS: [&str; 2] = [
    "stanford-corenlp-3.6.0.jar",
    "stanford-corenlp-3.6.0-models.jar",
];

/// Runs the SPICE jar.
#[derive(Clone, Debug)]
pub struct Spice {
    java: PathBuf,
    jar: PathBuf,
}

/// The first executable `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

impl Spice {
    /// SPICE with the `java` found on `PATH`; an error names whichever prerequisite is missing.
    pub fn new(jar: impl AsRef<Path>) -> Result<Self> {
        let java = find_on_path("java").ok_or_else(|| {
            Error::invalid(
                "SPICE needs Java, but no `java` executable is on PATH (install a JRE, e.g. \
                 openjdk-17-jre-headless, or leave out --spice-jar)",
            )
        })?;
        Self::with_java(jar, java)
    }

    /// SPICE run by the given `java` executable.
    pub fn with_java(jar: impl AsRef<Path>, java: impl Into<PathBuf>) -> Result<Self> {
        let jar = jar.as_ref().to_path_buf();
        if !jar.is_file() {
            return Err(Error::invalid(format!(
                "SPICE jar {} not found (it is spice/spice-1.0.jar in the pycocoevalcap package)",
                jar.display()
            )));
        }
        let lib = jar.parent().unwrap_or(Path::new(".")).join("lib");
        let missing: Vec<String> = CORENLP_JARS
            .iter()
            .map(|j| lib.join(j))
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "SPICE needs the Stanford CoreNLP 3.6.0 jars, missing: {} (extract them from \
                 stanford-corenlp-full-2015-12-09.zip into {})",
                missing.join(", "),
                lib.display()
            )));
        }
        Ok(Spice {
            java: java.into(),
            jar,
        })
    }
}

/// A fresh, empty temporary folder.
fn temp_dir() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("aoanet-spice-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// Replaces the bare `NaN` / `Infinity` / `-Infinity` that Java's JSON writer emits for
/// undefined subset scores with `null`, outside string literals, so the file parses.
fn nan_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let word = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|w| rest.starts_with(w));
            if let Some(w) = word {
                out.push_str("null");
                rest = &rest[w.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

impl ExternalMetric for Spice {
    fn key(&self) -> &'static str {
        "SPICE"
    }

    fn score(
        &self,
        keys: &[ImageKey],
        candidates: &[String],
        references: &[Vec<String>],
    ) -> Result<(f64, Vec<f64>)> {
        let dir = temp_dir()?;
        let result = self.run(&dir, candidates, references);
        let _ = std::fs::remove_dir_all(&dir);
        let per = result?;
        // np.mean over the images in sorted id order, as spice.py computes it.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        let sorted: Vec<f64> = order.iter().map(|&i| per[i]).collect();
        Ok((np_mean(&sorted), per))
    }
}

impl Spice {
    fn run(
        &self,
        dir: &Path,
        candidates: &[String],
        references: &[Vec<String>],
    ) -> Result<Vec<f64>> {
        let input = dir.join("spice_input.json");
        let output = dir.join("spice_output.json");
        // One image a line; image_id is the evaluation index, mapped back below.
        let lines: Vec<String> = candidates
            .iter()
            .zip(references)
            .enumerate()
            .map(|(i, (c, r))| {
                json::object([
                    ("image_id", Value::from(i)),
                    ("test", Value::from(c.as_str())),
                    ("refs", Value::from(r.clone())),
                ])
                .to_json()
            })
            .collect();
        let text = format!("[\n{}\n]\n", lines.join(",\n"));
        std::fs::write(&input, text).map_err(|e| Error::io(&input, e))?;
        let run = Command::new(&self.java)
            .arg("-jar")
            .arg("-Xmx8G")
            .arg(&self.jar)
            .arg(&input)
            .arg("-out")
            .arg(&output)
            .args(["-subset", "-silent"])
            .current_dir(self.jar.parent().unwrap_or(Path::new(".")))
            .output()
            .map_err(|e| Error::io(&self.java, e))?;
        if !run.status.success() {
            let stderr = String::from_utf8_lossy(&run.stderr);
            let tail: String = stderr
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::invalid(format!(
                "SPICE ({} -jar {}) failed with {}:\n{tail}",
                self.java.display(),
                self.jar.display(),
                run.status
            )));
        }
        let raw = std::fs::read_to_string(&output).map_err(|e| Error::io(&output, e))?;
        let parsed = json::parse(&nan_to_null(&raw), &output.display().to_string())?;
        let bad = |p: String| Error::format(&output, p);
        let items = parsed
            .as_array()
            .ok_or_else(|| bad("expected a JSON array of per-image scores".into()))?;
        let mut per = vec![None; candidates.len()];
        for (j, item) in items.iter().enumerate() {
            let i = item
                .get("image_id")
                .and_then(Value::as_u64)
                .map(|i| i as usize)
                .filter(|&i| i < per.len())
                .ok_or_else(|| bad(format!("entry {j}: image_id is not one we sent")))?;
            let f = item
                .get("scores")
                .and_then(|s| s.get("All"))
                .and_then(|a| a.get("f"))
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(format!("entry {j}: no number scores.All.f")))?;
            per[i] = Some(f);
        }
        per.into_iter()
            .enumerate()
            .map(|(i, f)| f.ok_or_else(|| bad(format!("no score for image index {i}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_outside_strings_becomes_null() {
        assert_eq!(
            nan_to_null(r#"{"f":NaN,"s":"NaN \"x\" Infinity","g":-Infinity}"#),
            r#"{"f":null,"s":"NaN \"x\" Infinity","g":null}"#
        );
    }

    #[test]
    fn missing_prerequisites_are_named() {
        let e = Spice::with_java("/nonexistent/spice-1.0.jar", "java")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/spice-1.0.jar"), "{e}");
        let dir = temp_dir().unwrap();
        let jar = dir.join("spice-1.0.jar");
        std::fs::write(&jar, b"").unwrap();
        let e = Spice::with_java(&jar, "java").unwrap_err().to_string();
        assert!(e.contains("stanford-corenlp-3.6.0-models.jar"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
