//! Reading caption files for evaluation: a COCO results file (`[{image_id, caption}]`) with a
//! COCO annotations file, or one file of `[{image_name or image_id, captions, prediction}]`.
//!
//! The COCO pair is read as `pycocotools` + `COCOEvalCap` read it with
//! `params['image_id'] = cocoRes.getImgIds()`: the images that have a result, in the order of
//! the annotation file's `images` list, each with its annotations in file order. As there, a
//! result for an image the annotations do not know is an error, and so is an image with two
//! results (the toolkit's scorers assert exactly one candidate). Every problem names the file.

use super::eval::{EvalSet, ImageKey};
use crate::json::{self, Value};
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What [`load`] found besides the evaluation set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadInfo {
    /// Annotated images without a result (not scored, as in the toolkit).
    pub images_without_result: usize,
    /// Whether the input was the combined form.
    pub combined: bool,
}

/// Reads `results` and, for a COCO results file, `annotations`; the form is detected from the
/// first entry (`prediction` + `captions` means the combined form).
pub fn load(results: &Path, annotations: Option<&Path>) -> Result<(EvalSet, LoadInfo)> {
    let value = json::read_file(results)?;
    let entries = value.as_array().ok_or_else(|| {
        Error::format(
            results,
            "expected a JSON array of results ([{image_id, caption}] or [{image_name, captions, prediction}])",
        )
    })?;
    let combined = entries
        .first()
        .is_some_and(|e| e.get("prediction").is_some() || e.get("captions").is_some());
    if combined {
        if let Some(a) = annotations {
            return Err(Error::invalid(format!(
                "{} holds captions and predictions together ([{{image_name, captions, prediction}}]); \
                 it needs no references file, but {} was given",
                results.display(),
                a.display()
            )));
        }
        let set = combined_form(results, entries)?;
        Ok((
            set,
            LoadInfo {
                images_without_result: 0,
                combined: true,
            },
        ))
    } else {
        let annotations = annotations.ok_or_else(|| {
            Error::invalid(format!(
                "{} is a COCO results file ([{{image_id, caption}}]); give its references with \
                 --references ANNOTATIONS.json",
                results.display()
            ))
        })?;
        coco_form(results, entries, annotations)
    }
}

fn key_of(v: &Value) -> Option<ImageKey> {
    match v {
        Value::Number(_) => v.as_i64().map(ImageKey::Id),
        Value::String(s) => Some(ImageKey::Name(s.clone())),
        _ => None,
    }
}

fn caption_of(v: &Value, path: &Path, what: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::format(path, format!("{what}: caption is not a string")))
}

fn coco_form(
    results_path: &Path,
    results: &[Value],
    annotations_path: &Path,
) -> Result<(EvalSet, LoadInfo)> {
    let mut result_of: HashMap<ImageKey, String> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        let what = format!("result {i}");
        let key = r.get("image_id").and_then(key_of).ok_or_else(|| {
            Error::format(
                results_path,
                format!("{what}: no integer or string \"image_id\""),
            )
        })?;
        let caption = r
            .get("caption")
            .ok_or_else(|| Error::format(results_path, format!("{what}: no \"caption\"")))
            .and_then(|c| caption_of(c, results_path, &what))?;
        if result_of.insert(key.clone(), caption).is_some() {
            return Err(Error::format(
                results_path,
                format!(
                    "image {key} has more than one result; the toolkit scores exactly one caption per image"
                ),
            ));
        }
    }

    let ann = json::read_file(annotations_path)?;
    let bad = |p: String| Error::format(annotations_path, p);
    let anns = ann
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"annotations\" array (expected a COCO captions file)".into()))?;
    let mut refs_of: HashMap<ImageKey, Vec<String>> = HashMap::new();
    let mut first_seen: Vec<ImageKey> = Vec::new();
    for (i, a) in anns.iter().enumerate() {
        let what = format!("annotation {i}");
        let key = a
            .get("image_id")
            .and_then(key_of)
            .ok_or_else(|| bad(format!("{what}: no integer or string \"image_id\"")))?;
        let caption = a
            .get("caption")
            .ok_or_else(|| bad(format!("{what}: no \"caption\"")))
            .and_then(|c| caption_of(c, annotations_path, &what))?;
        let list = refs_of.entry(key.clone()).or_default();
        if list.is_empty() {
            first_seen.push(key);
        }
        list.push(caption);
    }
    // Image order: the "images" list (as pycocotools indexes it), else first appearance.
    let order: Vec<ImageKey> = match ann.get("images") {
        Some(images) => {
            let images = images
                .as_array()
                .ok_or_else(|| bad("\"images\" is not an array".into()))?;
            let mut seen = HashSet::new();
            let mut order = Vec::with_capacity(images.len());
            for (i, img) in images.iter().enumerate() {
                let key = img
                    .get("id")
                    .and_then(key_of)
                    .ok_or_else(|| bad(format!("image {i}: no integer or string \"id\"")))?;
                if seen.insert(key.clone()) {
                    order.push(key);
                }
            }
            order
        }
        None => first_seen,
    };
    let known: HashSet<&ImageKey> = order.iter().collect();
    let mut unknown: Vec<&ImageKey> = result_of.keys().filter(|k| !known.contains(k)).collect();
    if !unknown.is_empty() {
        unknown.sort();
        let shown: Vec<String> = unknown.iter().take(5).map(|k| k.to_string()).collect();
        return Err(Error::invalid(format!(
            "{}: {} result image(s) are not in {} (e.g. {}); results must correspond to the references",
            results_path.display(),
            unknown.len(),
            annotations_path.display(),
            shown.join(", ")
        )));
    }
    let mut set = EvalSet::default();
    let mut without = 0;
    for key in order {
        let Some(caption) = result_of.remove(&key) else {
            without += 1;
            continue;
        };
        let refs = refs_of.remove(&key).unwrap_or_default();
        if refs.is_empty() {
            return Err(bad(format!(
                "image {key} has a result but no reference caption"
            )));
        }
        set.keys.push(key);
        set.candidates.push(caption);
        set.references.push(refs);
    }
    if set.is_empty() {
        return Err(Error::format(results_path, "no result to evaluate"));
    }
    Ok((
        set,
        LoadInfo {
            images_without_result: without,
            combined: false,
        },
    ))
}

fn combined_form(path: &Path, entries: &[Value]) -> Result<EvalSet> {
    let mut set = EvalSet::default();
    let mut seen = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let what = format!("entry {i}");
        let key = e
            .get("image_id")
            .and_then(key_of)
            .or_else(|| e.get("image_name").and_then(key_of))
            .ok_or_else(|| {
                Error::format(path, format!("{what}: no \"image_name\" or \"image_id\""))
            })?;
        if !seen.insert(key.clone()) {
            return Err(Error::format(
                path,
                format!("{what}: image {key} appears more than once"),
            ));
        }
        let prediction = e
            .get("prediction")
            .ok_or_else(|| Error::format(path, format!("{what}: no \"prediction\"")))
            .and_then(|c| caption_of(c, path, &what))?;
        let captions = e
            .get("captions")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::format(path, format!("{what}: no \"captions\" array")))?;
        let refs = captions
            .iter()
            .map(|c| caption_of(c, path, &what))
            .collect::<Result<Vec<_>>>()?;
        if refs.is_empty() {
            return Err(Error::format(
                path,
                format!("{what}: image {key} has no reference caption"),
            ));
        }
        set.keys.push(key);
        set.candidates.push(prediction);
        set.references.push(refs);
    }
    if set.is_empty() {
        return Err(Error::format(path, "no entry to evaluate"));
    }
    Ok(set)
}
