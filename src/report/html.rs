//! `report.html`: one self-contained page (inline CSS and SVG, no request, no script).
//!
//! Top to bottom: the title, the summary tables (the best value of each column in bold), the
//! notes, the training curves, then one card per image: the large attention view (the mean
//! over the caption; hovering a word shows that word's), the caption as word chips, the
//! references, the image's scores, and a thumbnail per word with its top region's weight.
//! The page is also well-formed XML, which the tests check.

use super::attention::{self, Prepared};
use super::curves::ordered_metrics;
use super::markup::{Markup, num};
use super::{MetricsTable, ReportData, ReportImage};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Display width of the large view, in CSS pixels.
const LARGE_W: f64 = 440.0;
/// Display width of a word's thumbnail.
const THUMB_W: f64 = 168.0;

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0;
  background: #f2f3f5; color: #1d1f23; line-height: 1.4; }
main { max-width: 1180px; margin: 0 auto; padding: 18px 24px 40px; }
h1 { font-size: 26px; margin: 8px 0 14px; }
h2 { font-size: 19px; margin: 28px 0 10px; border-bottom: 2px solid #d5d8de; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 0 0 10px; }
h4 { font-size: 13px; margin: 12px 0 4px; color: #555; text-transform: uppercase;
  letter-spacing: .04em; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 14px; font-size: 14px; }
th, td { border: 1px solid #d5d8de; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #e9ecf1; }
td.best { font-weight: 700; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 2px 0 6px; }
p.note { margin: 4px 0; color: #333; }
.curves svg { max-width: 100%; height: auto; background: #fff; border: 1px solid #d5d8de; }
.card { background: #fff; border: 1px solid #d5d8de; border-radius: 6px; padding: 14px 16px;
  margin: 14px 0; }
.stage { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px;
  border-radius: 10px; background: #e3ecfa; color: #1f4f9a; margin-left: 8px; vertical-align: 2px; }
.row { display: flex; gap: 22px; align-items: flex-start; flex-wrap: wrap; }
.info { flex: 1; min-width: 300px; }
.large { border: 1px solid #ccc; display: block; }
.hint { font-size: 12px; color: #666; margin: 4px 0 0; }
.caption { font-size: 17px; margin: 0 0 6px; }
.big { width: 440px; flex: none; }
.w { display: inline-block; padding: 1px 5px; margin: 1px 1px; border-radius: 4px;
  background: #f4ead9; cursor: default; }
.w:hover { background: #ff8c00; color: #fff; }
ol { margin: 0; padding-left: 22px; font-size: 14px; }
.scores td, .scores th { font-size: 13px; padding: 2px 8px; }
.warn { color: #a4000f; font-size: 13px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 12px; }
figure.thumb { margin: 0; text-align: center; font-size: 13px; }
figure.thumb svg { display: block; border: 1px solid #ccc; }
figure.thumb:hover svg { outline: 2px solid #ff8c00; }
figcaption b { font-size: 14px; }
figcaption small { color: #666; }
.v { display: none; }
.card:has(.h:hover) .va { display: none; }
footer { color: #777; font-size: 12px; margin-top: 30px; }
";

/// Refuses inlined markup that could run code or load something: this crate generates it, so
/// a script, an event attribute or an outside link is a bug or foreign text in the wrong field.
/// It scans the tags (text between them cannot hold `<`: our writers escape it); it is a guard
/// against mistakes, not a sanitizer for hostile SVG.
fn check_inline(markup: &str, what: &str) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::invalid(format!(
            "report: {what} {why}; only plain SVG is inlined"
        )))
    };
    let s = markup.trim_start();
    if !s.to_ascii_lowercase().starts_with("<svg") {
        return refuse("is not an <svg> element".into());
    }
    let mut rest = s;
    while let Some(start) = rest.find('<') {
        let tag = &rest[start + 1..];
        if let Some(comment) = tag.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |e| &comment[e + 3..]);
            continue;
        }
        let name_len = tag
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(tag.len());
        let name = tag[..name_len].to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "script" | "foreignobject" | "iframe" | "object" | "embed" | "image" | "style"
        ) {
            return refuse(format!("contains a <{name}> element"));
        }
        let mut a = &tag[name_len..];
        loop {
            a = a.trim_start();
            if a.is_empty() || a.starts_with('>') {
                break;
            }
            let n = a
                .find(|c: char| c == '=' || c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(a.len());
            if n == 0 {
                // The '/' of "/>".
                a = &a[1..];
                continue;
            }
            let attr = a[..n].to_ascii_lowercase();
            if attr.starts_with("on") {
                return refuse(format!("has an event attribute {attr}"));
            }
            a = a[n..].trim_start();
            let Some(v) = a.strip_prefix('=') else {
                continue;
            };
            let v = v.trim_start();
            let (value, after) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => match v[1..].find(q) {
                    Some(e) => (&v[1..e + 1], &v[e + 2..]),
                    None => (&v[1..], ""),
                },
                _ => {
                    let e = v
                        .find(|c: char| c.is_whitespace() || c == '>')
                        .unwrap_or(v.len());
                    (&v[..e], &v[e..])
                }
            };
            let compact: String = value
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            if compact.contains("javascript:") {
                return refuse(format!("has a javascript: link in {attr}"));
            }
            let link = attr == "href" || attr.ends_with(":href") || attr == "src";
            if link && !compact.starts_with('#') {
                return refuse(format!("links outside the page ({attr}={value:?})"));
            }
            if compact.contains("url(") && !compact.contains("url(#") {
                return refuse(format!("refers outside the page ({attr}={value:?})"));
            }
            a = after;
        }
        rest = a;
    }
    Ok(())
}

/// A score cell: three decimals, or what went wrong.
fn score(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        Some(v) => format!("{v}"),
        None => "–".into(),
    }
}

fn metrics_table(m: &mut Markup, t: &MetricsTable) {
    let cols = ordered_metrics(t.rows.iter().flat_map(|(_, s)| s.keys()));
    m.open("table", &[("class", "summary")]);
    if !t.title.is_empty() {
        m.text("caption", &[], &t.title);
    }
    m.open("thead", &[]);
    m.open("tr", &[]);
    m.text("th", &[], "");
    for c in &cols {
        m.text("th", &[], c);
    }
    m.close();
    m.close();
    m.open("tbody", &[]);
    let best: Vec<Option<f64>> = cols
        .iter()
        .map(|c| {
            t.rows
                .iter()
                .filter_map(|(_, s)| s.get(c).copied())
                .filter(|v| v.is_finite())
                .reduce(f64::max)
        })
        .collect();
    for (label, scores) in &t.rows {
        m.open("tr", &[]);
        m.text("th", &[], label);
        for (c, b) in cols.iter().zip(&best) {
            let v = scores.get(c).copied();
            // Bold only when the column has something to compare.
            let is_best = t.rows.len() > 1 && v.is_some() && v == *b;
            let attrs: &[(&str, &str)] = if is_best { &[("class", "best")] } else { &[] };
            m.text("td", attrs, &score(v));
        }
        m.close();
    }
    m.close();
    m.close();
}

fn scores_table(m: &mut Markup, scores: &BTreeMap<String, f64>) {
    let cols = ordered_metrics(scores.keys());
    m.open("table", &[("class", "scores")]);
    m.open("tr", &[]);
    for c in &cols {
        m.text("th", &[], c);
    }
    m.close();
    m.open("tr", &[]);
    for c in &cols {
        m.text("td", &[], &score(scores.get(c).copied()));
    }
    m.close();
    m.close();
}

fn card(m: &mut Markup, k: usize, img: &ReportImage) -> Result<()> {
    if let super::ImageDrawing::Svg { markup, .. } = &img.drawing {
        check_inline(markup, &format!("the drawing of image {}", img.image_id))?;
    }
    let p = attention::prepare(img)?;
    m.open(
        "section",
        &[
            ("class", "card"),
            ("id", &format!("image-{}", img.image_id)),
        ],
    );
    m.open("h3", &[]);
    m.chars(&format!("Image {}", img.image_id));
    if let Some(stage) = &img.stage {
        m.text("span", &[("class", "stage")], stage);
    }
    m.close();
    m.open("div", &[("class", "row")]);
    m.open("div", &[("class", "big")]);
    attention::large_view(m, k, img, &p, LARGE_W);
    let hint = if p.rows.is_empty() {
        "No attention was recorded for this caption."
    } else {
        "Bright: where the caption looked (mean over its words). Hover a word to see its own; \
         orange: its top region."
    };
    m.text("p", &[("class", "hint")], hint);
    m.close();
    m.open("div", &[("class", "info")]);
    m.text("h4", &[], "Generated caption");
    m.open("p", &[("class", "caption")]);
    if img.words.is_empty() {
        m.text("em", &[], "(empty caption)");
    }
    for (w, word) in img.words.iter().enumerate() {
        if w > 0 {
            m.chars(" ");
        }
        m.text("span", &[("class", &format!("w h h{w}"))], word);
    }
    m.close();
    for warning in &p.warnings {
        m.text("p", &[("class", "warn")], warning);
    }
    m.text("h4", &[], "References");
    m.open("ol", &[]);
    for r in &img.references {
        m.text("li", &[], r);
    }
    m.close();
    if !img.scores.is_empty() {
        m.text("h4", &[], "Scores of this caption");
        scores_table(m, &img.scores);
    }
    m.close();
    m.close();
    if !p.rows.is_empty() {
        m.open("div", &[("class", "thumbs")]);
        for (w, word) in img.words.iter().enumerate() {
            m.open("figure", &[("class", &format!("thumb h h{w}"))]);
            attention::thumbnail(m, k, img, &p, w, THUMB_W);
            m.open("figcaption", &[]);
            m.text("b", &[], word);
            if let Some((r, a)) = Prepared::top(&p.rows[w]) {
                m.chars(" ");
                m.text("small", &[], &format!("{} on region {r}", num(a, 2)));
            }
            m.close();
            m.close();
        }
        m.close();
    }
    m.close();
    Ok(())
}

/// The CSS that shows word `w`'s attention in the large view while any `.h{w}` of the same
/// card (its chip or thumbnail) is hovered.
fn hover_css(max_words: usize) -> String {
    let mut s = String::new();
    for w in 0..max_words {
        let _ = writeln!(
            s,
            ".card:has(.h{w}:hover) .large .v{w} {{ display: inline; }}"
        );
    }
    s
}

/// The page for `data` as a string; see the module docs. Errors name the image whose
/// attention does not fit its words or boxes, or the inlined markup that is not plain SVG.
pub fn render_report(data: &ReportData) -> Result<String> {
    let max_words = data.images.iter().map(|i| i.words.len()).max().unwrap_or(0);
    let mut m = Markup::new();
    m.raw("<!DOCTYPE html>\n");
    m.open("html", &[("lang", "en")]);
    m.open("head", &[]);
    m.leaf("meta", &[("charset", "utf-8")]);
    m.leaf(
        "meta",
        &[
            ("name", "viewport"),
            ("content", "width=device-width, initial-scale=1"),
        ],
    );
    m.text("title", &[], &data.title);
    m.open("style", &[]);
    m.raw(CSS);
    m.raw(&hover_css(max_words));
    m.close();
    m.close();
    m.open("body", &[]);
    m.open("main", &[]);
    m.text("h1", &[], &data.title);
    if !data.tables.is_empty() {
        m.text("h2", &[], "Scores");
        for t in &data.tables {
            metrics_table(&mut m, t);
        }
    }
    for n in &data.notes {
        m.text("p", &[("class", "note")], n);
    }
    if let Some(svg) = &data.curves_svg {
        check_inline(svg, "the curves")?;
        m.text("h2", &[], "Training curves");
        m.open("div", &[("class", "curves"), ("id", "curves")]);
        m.raw(svg.trim());
        m.close();
    }
    if !data.images.is_empty() {
        m.text("h2", &[], "Images");
        for (k, img) in data.images.iter().enumerate() {
            card(&mut m, k, img)?;
        }
    }
    m.open("footer", &[]);
    m.chars(&format!(
        "Written by aoanet {}. Self-contained: no scripts, no external requests.",
        env!("CARGO_PKG_VERSION")
    ));
    m.close();
    let mut out = m.finish();
    out.push('\n');
    Ok(out)
}

/// Renders `data` and writes it to `path` atomically (a reader never sees half a page).
pub fn write_report(path: impl AsRef<Path>, data: &ReportData) -> Result<()> {
    let path = path.as_ref();
    let html = render_report(data)?;
    crate::io::write_atomic(path, |w| {
        w.write_all(html.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup_must_be_plain_svg() {
        for good in [
            "<svg><rect/></svg>",
            "<svg><g font-family=\"x\"/></svg>",
            // Text may say anything: only tags are code.
            "<svg><text>x onclick=1 javascript: url(http://x)</text></svg>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><use href=\"#a\"/><!-- <script> --></svg>",
            "<svg><rect mask=\"url(#m)\" x='1' y=2/></svg>",
        ] {
            assert!(check_inline(good, "x").is_ok(), "{good}");
        }
        for bad in [
            "<div/>",
            "<svg><script>x</script></svg>",
            "<svg><SCRIPT>x</SCRIPT></svg>",
            "<svg><a href=\"java script:x\"/></svg>",
            "<svg onload=\"x\"></svg>",
            "<svg><rect\nonclick = 'x'/></svg>",
            "<svg><foreignObject/></svg>",
            "<svg><use href=\"http://x/a.svg#b\"/></svg>",
            "<svg><rect fill=\"url(http://x/p)\"/></svg>",
        ] {
            assert!(check_inline(bad, "x").is_err(), "{bad}");
        }
    }
}
