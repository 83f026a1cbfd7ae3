//! `aoanet eval-captions` end to end: the COCO pair and the combined form, `--json` with the
//! toolkit's keys, `--metrics`, METEOR requested but unavailable (an error before any work),
//! SPICE through a fake `java` on `PATH`, and bad input files.

mod metrics_support;

use aoanet::json::{self, Value};
use metrics_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn aoanet(args: &[&str], path_env: Option<&str>) -> Output {
    aoanet_meteor(args, path_env, false)
}

/// Runs `eval-captions`; without `meteor`, METEOR's data is hidden (no variable, no default
/// file), whatever this machine has installed.
fn aoanet_meteor(args: &[&str], path_env: Option<&str>, meteor: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aoanet"));
    c.arg("eval-captions").args(args);
    if let Some(p) = path_env {
        c.env("PATH", p);
    }
    if !meteor {
        let nowhere = std::env::temp_dir().join("aoanet-cli-no-meteor-data-here");
        c.env("AOANET_METEOR_DATA", "")
            .env("XDG_DATA_HOME", &nowhere)
            .env("HOME", &nowhere);
    }
    c.output().expect("run aoanet")
}

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("aoanet-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn coco_pair_writes_the_toolkit_keys() {
    let dir = tmp("coco");
    let ann = dir.join("ann.json");
    std::fs::write(
        &ann,
        read_text("captions_val2014_fakecap_subset_annotations.json.gz"),
    )
    .unwrap();
    let out_json = dir.join("scores.json");
    let results = fixture("captions_val2014_fakecap_results.json");
    let o = aoanet(
        &[
            "--results",
            s(&results),
            "--references",
            s(&ann),
            "--json",
            s(&out_json),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("CIDEr") && stdout.contains("0.599791"),
        "{stdout}"
    );
    assert!(stderr(&o).contains("METEOR not computed"), "{}", stderr(&o));
    let j = json::read_file(&out_json).unwrap();
    let reference = reference_dataset("coco_val2014_fakecap");
    let scores = reference.get("scores").unwrap();
    for key in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"] {
        let ours = j.get(key).and_then(Value::as_f64).unwrap();
        assert!((ours - num(scores, key)).abs() <= 1e-12, "{key}: {ours}");
    }
    assert!(j.get("METEOR").unwrap().is_null() && j.get("SPICE").unwrap().is_null());
    let per = j.get("per_image").and_then(Value::as_array).unwrap();
    assert_eq!(per.len(), 1000);
    assert_eq!(per[0].get("image_id").and_then(Value::as_i64), Some(391895));

    // With METEOR's data installed (CI sets $AOANET_METEOR_DATA), the native METEOR runs
    // through the same hook and gives the toolkit's corpus score.
    if std::env::var_os("AOANET_METEOR_DATA").is_some_and(|v| !v.is_empty()) {
        let o = aoanet_meteor(
            &[
                "--results",
                s(&results),
                "--references",
                s(&ann),
                "--metrics",
                "meteor",
                "--json",
                s(&out_json),
            ],
            None,
            true,
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let j = json::read_file(&out_json).unwrap();
        let ours = j.get("METEOR").and_then(Value::as_f64).unwrap();
        let want = num(scores, "METEOR");
        assert!(
            (ours - want).abs() <= 1e-4,
            "METEOR {ours} vs the toolkit's {want}"
        );
    } else {
        eprintln!("METEOR through eval-captions not checked: $AOANET_METEOR_DATA is not set");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn combined_form_and_a_metric_subset() {
    let dir = tmp("combined");
    let out_json = dir.join("edge.json");
    let o = aoanet(
        &[
            "--results",
            s(&fixture("edge_cases.json")),
            "--metrics",
            "bleu,cider",
            "--json",
            s(&out_json),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json::read_file(&out_json).unwrap();
    let reference = reference_dataset("edge_cases_synthetic");
    let cider = j.get("CIDEr").and_then(Value::as_f64).unwrap();
    assert!((cider - num(reference.get("scores").unwrap(), "CIDEr")).abs() <= 1e-12);
    assert!(j.get("ROUGE_L").unwrap().is_null());
    let per = j.get("per_image").and_then(Value::as_array).unwrap();
    assert_eq!(
        per[0].get("image_id").and_then(Value::as_str),
        Some("edge_01_identical_to_ref")
    );
    // Not asked for: no METEOR warning either.
    assert!(!stderr(&o).contains("METEOR"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn meteor_requested_but_unavailable_fails_before_any_work() {
    let dir = tmp("meteor");
    let out_json = dir.join("never.json");
    // The results file does not even exist: the METEOR check must come first.
    let o = aoanet(
        &[
            "--results",
            s(&dir.join("missing.json")),
            "--metrics",
            "bleu,meteor",
            "--json",
            s(&out_json),
        ],
        None,
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("METEOR was requested but is unavailable"), "{e}");
    assert!(!e.contains("missing.json"), "{e}");
    assert!(!out_json.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_fail_naming_the_file_and_write_nothing() {
    let dir = tmp("bad");
    let out_json = dir.join("never.json");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "[{\"image_id\": 1, \"caption\": ").unwrap();
    for (args, needle) in [
        (vec!["--results", s(&dir.join("nope.json"))], "nope.json"),
        (
            vec!["--results", s(&bad), "--references", s(&bad)],
            "bad.json",
        ),
        (
            vec![
                "--results",
                s(&fixture("edge_cases.json")),
                "--metrics",
                "bleu,wmd",
            ],
            "wmd",
        ),
        (
            vec![
                "--results",
                s(&fixture("edge_cases.json")),
                "--metrics",
                "spice",
            ],
            "--spice-jar",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--json", s(&out_json)]);
        let o = aoanet(&a, None);
        assert!(!o.status.success(), "{a:?} succeeded");
        assert!(stderr(&o).contains(needle), "{a:?}: {}", stderr(&o));
        assert!(!out_json.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn spice_runs_through_java_on_path() {
    let dir = tmp("spice");
    let (java, jar) = fake_spice_setup(&dir);
    let bin = java.parent().unwrap();
    let out_json = dir.join("spice.json");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let o = aoanet(
        &[
            "--results",
            s(&fixture("edge_cases.json")),
            "--spice-jar",
            s(&jar),
            "--json",
            s(&out_json),
        ],
        Some(&path),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json::read_file(&out_json).unwrap();
    let per = j.get("per_image").and_then(Value::as_array).unwrap();
    assert_eq!(per[0].get("SPICE").and_then(Value::as_f64), Some(0.1));
    assert_eq!(per[2].get("SPICE").and_then(Value::as_f64), Some(0.3));
    assert!(j.get("SPICE").and_then(Value::as_f64).is_some());

    // No java on PATH: a clear message naming what is missing, nothing written.
    std::fs::remove_file(&out_json).unwrap();
    let empty = dir.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let o = aoanet(
        &[
            "--results",
            s(&fixture("edge_cases.json")),
            "--spice-jar",
            s(&jar),
            "--json",
            s(&out_json),
        ],
        Some(s(&empty)),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no `java` executable is on PATH"),
        "{}",
        stderr(&o)
    );
    assert!(!out_json.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
