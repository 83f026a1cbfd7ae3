//! From training results to what [`crate::report`] draws: the history in the report's record
//! type, and report cards for decoded images (drawing, words with attention, references,
//! per-image scores).

use super::evaluate::SplitEval;
use super::history::HistoryRecord;
use crate::data::Dataset;
use crate::data::synth::scene::{HEIGHT, Scene, WIDTH};
use crate::data::synth::svg::scene_svg;
use crate::metrics::KEYS;
use crate::report::{self, ImageDrawing, MetricsTable, ReportImage, boxes_from_flat};
use std::collections::BTreeMap;

/// `r` as the report's record, under the stage label `stage` (its own series in the curves).
pub fn to_report_record(r: &HistoryRecord, stage: &str) -> report::HistoryRecord {
    report::HistoryRecord {
        iteration: r.iteration,
        epoch: r.epoch,
        stage: stage.to_string(),
        loss: r.loss,
        reward: r.reward,
        lr: r.lr,
        ss_prob: r.ss_prob,
        val: r.val.as_ref().map(|v| v.iter().cloned().collect()),
    }
}

/// A whole history as the report's records, each under its own stage's name.
pub fn to_report_history(records: &[HistoryRecord]) -> Vec<report::HistoryRecord> {
    records
        .iter()
        .map(|r| to_report_record(r, r.stage.name()))
        .collect()
}

/// The curves of `records` (see [`report::curves_svg`]).
pub fn curves_svg(records: &[HistoryRecord]) -> String {
    report::curves_svg(&to_report_history(records))
}

/// A metrics table row: the toolkit keys that were computed.
pub fn metrics_row(label: &str, metrics: &[(String, f64)]) -> (String, BTreeMap<String, f64>) {
    (
        label.to_string(),
        metrics
            .iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .cloned()
            .collect(),
    )
}

/// A table of corpus scores.
pub fn metrics_table(title: &str, rows: &[(&str, &[(String, f64)])]) -> MetricsTable {
    MetricsTable {
        title: title.to_string(),
        rows: rows.iter().map(|(l, m)| metrics_row(l, m)).collect(),
    }
}

/// Report cards for the first `count` images of `eval` (decoded with attention), labelled
/// `stage`. Synthetic images are drawn from `scenes` (indexed by caption position); otherwise
/// the region boxes are outlined on a blank canvas. Images without boxes or attention get
/// none.
pub fn image_cards(
    data: &Dataset,
    eval: &SplitEval,
    count: usize,
    stage: Option<&str>,
    scenes: Option<&[Scene]>,
    vocab: &crate::data::Vocab,
) -> Vec<ReportImage> {
    (0..eval.image_ids.len().min(count))
        .map(|i| {
            let id = eval.image_ids[i];
            let pos = eval.positions[i];
            let regions = data.features.get(id);
            let boxes = regions
                .and_then(|r| r.boxes)
                .map(boxes_from_flat)
                .unwrap_or_default();
            let n = regions.map_or(0, |r| r.count);
            let drawing = match scenes.and_then(|s| s.get(pos)) {
                Some(scene) => ImageDrawing::Svg {
                    markup: scene_svg(scene, &format!("synthetic image {id}")),
                    width: f64::from(WIDTH),
                    height: f64::from(HEIGHT),
                },
                None => ImageDrawing::around(&boxes),
            };
            let caption = &eval.captions[i];
            let words: Vec<String> = caption
                .ids
                .iter()
                .map(|&w| vocab.word(w as u32).unwrap_or("<?>").to_string())
                .collect();
            let attention = match (&caption.attention, boxes.is_empty()) {
                (Some(att), false) => att
                    .iter()
                    .map(|a| a[..n.min(a.len())].iter().map(|&x| f64::from(x)).collect())
                    .collect(),
                _ => Vec::new(),
            };
            let img = data.captions.image(pos);
            ReportImage {
                image_id: id,
                stage: stage.map(String::from),
                drawing,
                boxes,
                words,
                attention,
                references: (0..img.len()).map(|j| img.raw(j).to_string()).collect(),
                scores: KEYS
                    .iter()
                    .filter_map(|k| eval.evaluation.image(i, k).map(|v| (k.to_string(), v)))
                    .collect(),
            }
        })
        .collect()
}
