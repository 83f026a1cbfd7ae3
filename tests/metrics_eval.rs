//! End to end from raw captions: the evaluator (tokenizer + BLEU/ROUGE-L/CIDEr-D) on the COCO
//! results + annotations pair and on the combined form equals pycocoevalcap 1.2, tokenized text
//! included; bad input files give errors naming the file and the problem.

mod metrics_support;

use aoanet::metrics::input::load;
use aoanet::metrics::{Evaluator, KEYS};
use metrics_support::*;
use std::path::{Path, PathBuf};

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("aoanet-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(results: &Path, annotations: Option<&Path>, per_image: &str, dataset: &str) {
    let (set, _) = load(results, annotations).unwrap();
    let e = Evaluator::offline().evaluate(&set).unwrap();
    let reference = reference_dataset(dataset);
    let scores = reference.get("scores").unwrap();
    let rows = read_json(per_image);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), e.keys.len());
    let mut worst = Worst::default();
    for key in KEYS {
        if key == "METEOR" || key == "SPICE" {
            assert_eq!(e.get(key), None);
            continue;
        }
        worst.check(
            || format!("corpus {key}"),
            e.get(key).unwrap(),
            num(scores, key),
        );
    }
    let mut tokens_differ = 0;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(e.keys[i].to_json(), *row.get("key").unwrap(), "image order");
        if e.tokenized_candidates[i] != text(row, "candidate")
            || e.tokenized_references[i] != strings(row, "references")
        {
            tokens_differ += 1;
            println!("tokenized text differs for image {}", e.keys[i]);
        }
        for key in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"] {
            worst.check(
                || format!("{} {key}", e.keys[i]),
                e.image(i, key).unwrap(),
                num(row, key),
            );
        }
    }
    println!(
        "{dataset}: {} of {} scores not bit-equal, worst |diff| {:e}; {tokens_differ} images tokenized differently",
        worst.unequal, worst.total, worst.max_abs
    );
    assert_eq!(tokens_differ, 0);
    assert!(worst.max_abs <= 1e-12, "{:?}", worst.first);
}

#[test]
fn fakecap_from_raw_coco_files_equals_the_toolkit() {
    let tmp = TempDir::new("eval-fakecap");
    let ann = tmp.write(
        "annotations.json",
        &read_text("captions_val2014_fakecap_subset_annotations.json.gz"),
    );
    check(
        &fixture("captions_val2014_fakecap_results.json"),
        Some(&ann),
        "per_image/fakecap.per_image.json.gz",
        "coco_val2014_fakecap",
    );
}

#[test]
fn edge_cases_from_the_combined_form_equal_the_toolkit() {
    check(
        &fixture("edge_cases.json"),
        None,
        "per_image/edge_cases.per_image.json.gz",
        "edge_cases_synthetic",
    );
}

/// Error for `load(results, annotations)` as text; it must name `file` and contain `problem`.
fn load_error(results: &Path, annotations: Option<&Path>, file: &Path, problem: &str) {
    let e = match load(results, annotations) {
        Ok(_) => panic!("{} loaded", results.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&file.display().to_string()) && e.contains(problem),
        "{e:?} should name {} and say {problem:?}",
        file.display()
    );
}

#[test]
fn bad_input_files_are_errors_naming_the_file() {
    let tmp = TempDir::new("eval-bad");
    let ann = tmp.write(
        "ann.json",
        r#"{"images": [{"id": 1}, {"id": 2}], "annotations": [{"image_id": 1, "caption": "a cat"}]}"#,
    );
    let missing = tmp.0.join("missing.json");
    load_error(&missing, Some(&ann), &missing, "No such file");
    let truncated = tmp.write("trunc.json", r#"[{"image_id": 1, "caption": "a c"#);
    load_error(&truncated, Some(&ann), &truncated, "");
    let not_array = tmp.write("obj.json", r#"{"image_id": 1}"#);
    load_error(&not_array, Some(&ann), &not_array, "expected a JSON array");
    let no_caption = tmp.write("nocap.json", r#"[{"image_id": 1}]"#);
    load_error(
        &no_caption,
        Some(&ann),
        &no_caption,
        "result 0: no \"caption\"",
    );
    let twice = tmp.write(
        "twice.json",
        r#"[{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"}]"#,
    );
    load_error(&twice, Some(&ann), &twice, "more than one result");
    let unknown = tmp.write("unknown.json", r#"[{"image_id": 7, "caption": "x"}]"#);
    load_error(&unknown, Some(&ann), &ann, "not in");
    let no_refs = tmp.write("norefs.json", r#"[{"image_id": 2, "caption": "x"}]"#);
    load_error(
        &no_refs,
        Some(&ann),
        &ann,
        "image 2 has a result but no reference",
    );
    let good = tmp.write("good.json", r#"[{"image_id": 1, "caption": "A cat."}]"#);
    load_error(&good, None, &good, "--references");
    let bad_ann = tmp.write("badann.json", r#"{"images": []}"#);
    load_error(&good, Some(&bad_ann), &bad_ann, "no \"annotations\" array");
    let combined = tmp.write(
        "combined.json",
        r#"[{"image_name": "x", "captions": ["a"], "prediction": 3}]"#,
    );
    load_error(
        &combined,
        None,
        &combined,
        "entry 0: caption is not a string",
    );
    load_error(
        &fixture("edge_cases.json"),
        Some(&ann),
        &fixture("edge_cases.json"),
        "no references file",
    );
    let (set, info) = load(&good, Some(&ann)).unwrap();
    assert_eq!((set.len(), info.images_without_result), (1, 1));
}
