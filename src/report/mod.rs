//! What a person looks at after a run: `history.jsonl`, `curves.svg` and `report.html`.
//!
//! The trainer fills in the plain-data types below and calls [`curves_svg`] and
//! [`write_report`]; nothing here knows tensors or the model. Every file is written by hand
//! (no dependency), atomically, and is self-contained: `report.html` inlines its CSS and SVG,
//! makes no request and needs no script (hovering a word uses CSS `:has()`). Every text a user
//! can influence is escaped, so captions such as `<script>` or `&` are shown, not run.
//!
//! | file | what it defines |
//! | --- | --- |
//! | [`history`] | [`HistoryRecord`] and `history.jsonl` (read, write, one JSON object a line) |
//! | `curves` | [`curves_svg`]: loss, reward, validation metrics and learning rate panels |
//! | `html` | [`render_report`] / [`write_report`]: summary tables, curves, one card per image |
//! | `attention` | one image with a word's attention over its regions, as SVG |
//! | `axis` | nice tick steps and labels |
//! | [`markup`] | escaping and a small element writer that keeps tags balanced |

mod attention;
mod axis;
mod curves;
pub mod history;
mod html;
pub mod markup;

pub use curves::curves_svg;
pub use history::{HistoryRecord, parse_history, read_history, write_history};
pub use html::{render_report, write_report};

use crate::data::synth::World;
use crate::data::synth::scene::{HEIGHT, WIDTH};
use std::collections::BTreeMap;

/// A box `[x1, y1, x2, y2]` in the drawing's pixel frame (bottom-up features' convention).
pub type BoxXyxy = [f64; 4];

/// What the image of a report card shows under the attention overlay.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageDrawing {
    /// A standalone SVG document of `width × height` pixels, such as
    /// [`World::svg`](crate::data::synth::World::svg); it is inlined as is, so it must come
    /// from this crate, not from a user (it is checked for `<script` and event attributes,
    /// and refused if it has any).
    Svg {
        /// The `<svg …>…</svg>` markup.
        markup: String,
        /// Its width in pixels: the frame of the region boxes.
        width: f64,
        /// Its height in pixels.
        height: f64,
    },
    /// Real data, where the picture itself is not at hand: a blank canvas of the image's size
    /// on which every region box is outlined.
    Boxes {
        /// Image width in pixels.
        width: f64,
        /// Image height in pixels.
        height: f64,
    },
}

impl ImageDrawing {
    /// The synthetic image `image_id` of `world` (its boxes are the feature store's).
    pub fn synthetic(world: &World, image_id: u64) -> Option<ImageDrawing> {
        world.svg(image_id).map(|markup| ImageDrawing::Svg {
            markup,
            width: f64::from(WIDTH),
            height: f64::from(HEIGHT),
        })
    }

    /// A blank canvas just large enough for `boxes`, for real data whose image size is not
    /// known (at least 1 × 1).
    pub fn around(boxes: &[BoxXyxy]) -> ImageDrawing {
        let (w, h) = boxes.iter().fold((1.0f64, 1.0f64), |(w, h), b| {
            (w.max(finite_or_zero(b[2])), h.max(finite_or_zero(b[3])))
        });
        ImageDrawing::Boxes {
            width: w.ceil(),
            height: h.ceil(),
        }
    }

    /// `(width, height)` of the frame.
    pub fn size(&self) -> (f64, f64) {
        match self {
            ImageDrawing::Svg { width, height, .. } | ImageDrawing::Boxes { width, height } => {
                (*width, *height)
            }
        }
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// Region boxes from a feature store's flat `[count × 4]` array
/// ([`Regions::boxes`](crate::data::features::Regions)).
pub fn boxes_from_flat(flat: &[f32]) -> Vec<BoxXyxy> {
    flat.chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]].map(f64::from))
        .collect()
}

/// One test image in the report: its drawing, the generated caption with each word's
/// attention, the references and its own scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportImage {
    /// The dataset's image id.
    pub image_id: u64,
    /// Which model produced the caption (`"xe"`, `"scst"`, ...), if the report mixes them.
    pub stage: Option<String>,
    /// The picture (or blank canvas) in the frame of `boxes`.
    pub drawing: ImageDrawing,
    /// The region boxes, in feature order (the order of each attention row).
    pub boxes: Vec<BoxXyxy>,
    /// The generated caption, one entry per word (no BOS/EOS).
    pub words: Vec<String>,
    /// `attention[w][r]`: the weight word `w` gave region `r` (averaged over heads; a row
    /// usually sums to 1). Empty when the decoder did not record attention; otherwise one row
    /// per word and one column per box.
    pub attention: Vec<Vec<f64>>,
    /// The reference captions, as in the annotations.
    pub references: Vec<String>,
    /// Per-image scores of the caption under the toolkit's keys (`"CIDEr"`, `"Bleu_4"`, ...).
    pub scores: BTreeMap<String, f64>,
}

/// A table of corpus scores: one row per model or stage.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MetricsTable {
    /// What the table shows, e.g. `"Test split, beam size 2"`.
    pub title: String,
    /// `(label, scores)` per row, e.g. `("xe", {"CIDEr": 1.12, ...})`, in display order.
    pub rows: Vec<(String, BTreeMap<String, f64>)>,
}

/// Everything `report.html` shows.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ReportData {
    /// Page heading and `<title>`.
    pub title: String,
    /// Summary tables, first at the top of the page.
    pub tables: Vec<MetricsTable>,
    /// Free-text lines under the tables (settings, timings, warnings), each a paragraph.
    pub notes: Vec<String>,
    /// [`curves_svg`] output to inline (markup from this crate only, like
    /// [`ImageDrawing::Svg`]).
    pub curves_svg: Option<String>,
    /// One card per image.
    pub images: Vec<ReportImage>,
}
