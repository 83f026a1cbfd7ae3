//! One image with attention over its regions, as inline SVG.
//!
//! The picture is defined once per card (`<defs>`, id `c{card}-pic`) and reused with `<use>`
//! by the large view and by every word's thumbnail. Attention is a "spotlight": a dark veil
//! over the picture with each region cut out in proportion to its weight (relative to the
//! word's largest), through an SVG mask per word, so the regions a word looked at stay bright
//! and the rest dims; overlapping regions add up as they would in an attention map. The
//! word's top region gets an orange outline.

use super::markup::{Markup, num, px};
use super::{BoxXyxy, ImageDrawing, ReportImage};
use crate::{Error, Result};

/// Regions weighing less than this share of the word's largest weight are not cut out (they
/// would not show, and skipping them keeps the file small).
const VISIBLE: f64 = 0.02;

/// Opacity of the veil over regions that got no attention.
const VEIL: f64 = 0.62;

/// A card's attention, checked and cleaned.
pub(super) struct Prepared {
    /// Per word, the weights with non-finite or negative values set to 0.
    pub rows: Vec<Vec<f64>>,
    /// The mean over words (the large view before a word is hovered).
    pub mean: Vec<f64>,
    /// Problems worth showing on the card (not worth failing the report for).
    pub warnings: Vec<String>,
}

impl Prepared {
    /// The top region of `row` and its weight, if any weight is positive.
    pub fn top(row: &[f64]) -> Option<(usize, f64)> {
        row.iter()
            .copied()
            .enumerate()
            .filter(|&(_, a)| a > 0.0)
            .fold(None, |best: Option<(usize, f64)>, (r, a)| match best {
                Some((_, b)) if b >= a => best,
                _ => Some((r, a)),
            })
    }
}

/// Checks the shapes of `img`'s attention against its words and boxes (an error names the
/// image); non-finite values become warnings.
pub(super) fn prepare(img: &ReportImage) -> Result<Prepared> {
    let id = img.image_id;
    let (w, h) = img.drawing.size();
    if !(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0) {
        return Err(Error::invalid(format!(
            "report: image {id}: drawing size {w} x {h} is not a positive size"
        )));
    }
    for (r, b) in img.boxes.iter().enumerate() {
        if !b.iter().all(|x| x.is_finite()) {
            return Err(Error::invalid(format!(
                "report: image {id}: box {r} {b:?} is not finite"
            )));
        }
    }
    if !img.attention.is_empty() && img.attention.len() != img.words.len() {
        return Err(Error::invalid(format!(
            "report: image {id}: {} attention rows for {} words (need one row per word, or none)",
            img.attention.len(),
            img.words.len()
        )));
    }
    let mut warnings = Vec::new();
    let mut bad = 0usize;
    let mut rows = Vec::with_capacity(img.attention.len());
    for (k, row) in img.attention.iter().enumerate() {
        if row.len() != img.boxes.len() {
            return Err(Error::invalid(format!(
                "report: image {id}: attention of word {k} ({:?}) has {} weights for {} boxes",
                img.words[k],
                row.len(),
                img.boxes.len()
            )));
        }
        rows.push(
            row.iter()
                .map(|&a| {
                    if a.is_finite() && a >= 0.0 {
                        a
                    } else {
                        bad += 1;
                        0.0
                    }
                })
                .collect::<Vec<f64>>(),
        );
    }
    if bad > 0 {
        warnings.push(format!(
            "{bad} attention weights were negative or not finite; drawn as 0"
        ));
    }
    let mut mean = vec![0.0; img.boxes.len()];
    for row in &rows {
        for (m, a) in mean.iter_mut().zip(row) {
            *m += a / rows.len() as f64;
        }
    }
    Ok(Prepared {
        rows,
        mean,
        warnings,
    })
}

fn rect_attrs(b: &BoxXyxy) -> [(&'static str, String); 4] {
    [
        ("x", px(b[0])),
        ("y", px(b[1])),
        ("width", px((b[2] - b[0]).max(0.0))),
        ("height", px((b[3] - b[1]).max(0.0))),
    ]
}

fn leaf_rect(m: &mut Markup, b: &BoxXyxy, extra: &[(&str, &str)]) {
    let r = rect_attrs(b);
    let mut attrs: Vec<(&str, &str)> = r.iter().map(|(k, v)| (*k, v.as_str())).collect();
    attrs.extend_from_slice(extra);
    m.leaf("rect", &attrs);
}

/// The mask that cuts `row` out of the veil: white (veil shown) everywhere, black (veil gone)
/// over each region in proportion to its weight.
fn mask(m: &mut Markup, id: &str, row: &[f64], boxes: &[BoxXyxy], (w, h): (f64, f64)) {
    m.open(
        "mask",
        &[
            ("id", id),
            ("maskUnits", "userSpaceOnUse"),
            ("x", "0"),
            ("y", "0"),
            ("width", &px(w)),
            ("height", &px(h)),
        ],
    );
    m.leaf(
        "rect",
        &[("width", &px(w)), ("height", &px(h)), ("fill", "#fff")],
    );
    let top = row.iter().copied().fold(0.0f64, f64::max);
    if top > 0.0 {
        for (b, &a) in boxes.iter().zip(row) {
            let rel = a / top;
            if rel >= VISIBLE {
                leaf_rect(m, b, &[("fill", "#000"), ("fill-opacity", &num(rel, 3))]);
            }
        }
    }
    m.close();
}

/// The picture itself, inside `<defs>`.
fn picture(m: &mut Markup, id: &str, img: &ReportImage) {
    let (w, h) = img.drawing.size();
    m.open("g", &[("id", id)]);
    match &img.drawing {
        ImageDrawing::Svg { markup, .. } => {
            // Pin the nested document to the frame whatever size it declares.
            m.open(
                "svg",
                &[
                    ("width", &px(w)),
                    ("height", &px(h)),
                    ("viewBox", &format!("0 0 {} {}", px(w), px(h))),
                ],
            );
            m.raw(markup.trim());
            m.close();
        }
        ImageDrawing::Boxes { .. } => {
            m.leaf(
                "rect",
                &[
                    ("width", &px(w)),
                    ("height", &px(h)),
                    ("fill", "#f3f3f3"),
                    ("stroke", "#999"),
                ],
            );
            for b in &img.boxes {
                leaf_rect(
                    m,
                    b,
                    &[
                        ("fill", "none"),
                        ("stroke", "#777"),
                        ("stroke-width", "1"),
                        ("vector-effect", "non-scaling-stroke"),
                    ],
                );
            }
        }
    }
    m.close();
}

fn svg_open(m: &mut Markup, (w, h): (f64, f64), display_w: f64, class: &str) {
    let display_h = display_w * h / w;
    m.open(
        "svg",
        &[
            ("xmlns", "http://www.w3.org/2000/svg"),
            ("class", class),
            ("width", &px(display_w)),
            ("height", &px(display_h)),
            ("viewBox", &format!("0 0 {} {}", px(w), px(h))),
        ],
    );
}

fn veil(m: &mut Markup, (w, h): (f64, f64), mask_id: &str, class: &str) {
    m.leaf(
        "rect",
        &[
            ("class", class),
            ("width", &px(w)),
            ("height", &px(h)),
            ("fill", "#000"),
            ("fill-opacity", &num(VEIL, 2)),
            ("mask", &format!("url(#{mask_id})")),
        ],
    );
}

fn outline(m: &mut Markup, b: &BoxXyxy, class: &str) {
    leaf_rect(
        m,
        b,
        &[
            ("class", class),
            ("fill", "none"),
            ("stroke", "#ff8c00"),
            ("stroke-width", "3"),
            ("vector-effect", "non-scaling-stroke"),
        ],
    );
}

/// The large view of card `card`: defines the picture and every mask, shows the mean
/// attention, and (with the page's CSS) word `w`'s attention while `.h{w}` is hovered.
pub(super) fn large_view(m: &mut Markup, card: usize, img: &ReportImage, p: &Prepared, width: f64) {
    let size = img.drawing.size();
    let pic = format!("c{card}-pic");
    svg_open(m, size, width, "large");
    m.text("title", &[], &format!("image {}", img.image_id));
    m.open("defs", &[]);
    picture(m, &pic, img);
    if !p.rows.is_empty() {
        mask(m, &format!("c{card}-mall"), &p.mean, &img.boxes, size);
        for (k, row) in p.rows.iter().enumerate() {
            mask(m, &format!("c{card}-m{k}"), row, &img.boxes, size);
        }
    }
    m.close();
    m.leaf("use", &[("href", &format!("#{pic}"))]);
    if !p.rows.is_empty() {
        veil(m, size, &format!("c{card}-mall"), "va");
        for k in 0..p.rows.len() {
            veil(m, size, &format!("c{card}-m{k}"), &format!("v v{k}"));
            if let Some((r, _)) = Prepared::top(&p.rows[k]) {
                outline(m, &img.boxes[r], &format!("v v{k}"));
            }
        }
    }
    m.close();
}

/// The thumbnail of word `k` of card `card` (after its [`large_view`], which defines what
/// this reuses).
pub(super) fn thumbnail(
    m: &mut Markup,
    card: usize,
    img: &ReportImage,
    p: &Prepared,
    k: usize,
    width: f64,
) {
    let size = img.drawing.size();
    svg_open(m, size, width, "thumb-view");
    m.leaf("use", &[("href", &format!("#c{card}-pic"))]);
    veil(m, size, &format!("c{card}-m{k}"), "vt");
    if let Some((r, _)) = Prepared::top(&p.rows[k]) {
        outline(m, &img.boxes[r], "vt");
    }
    m.close();
}
