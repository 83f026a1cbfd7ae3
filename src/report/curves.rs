//! `curves.svg`: the training history as stacked panels sharing one iteration axis.
//!
//! Panels, top to bottom, each only when it has data: the training loss of each stage (a
//! panel per stage, because the cross-entropy loss and the policy-gradient loss live on
//! different scales), the SCST reward, validation CIDEr-D (the score that picks `best`), the
//! other validation metrics, the scheduled-sampling probability and the learning rate. A
//! dashed line marks where a stage starts. `None` values are skipped (a validation record
//! carries no loss); a non-finite value breaks the line and puts a red triangle at the top of
//! the panel, titled with its iteration, since a diverged run is what a person most needs to
//! spot. Long series are thinned to the first, lowest, highest and last point of each pixel
//! column, which keeps spikes visible.

use super::axis::Axis;
use super::history::HistoryRecord;
use super::markup::{Markup, num, px};
use std::collections::BTreeSet;

/// Width of the whole drawing.
const WIDTH: f64 = 960.0;
/// Left margin (y tick labels).
const LEFT: f64 = 70.0;
/// Room right of the plots for the legend.
const LEGEND: f64 = 200.0;
/// Height of one panel's plot area.
const PLOT_H: f64 = 170.0;
/// Space above a plot (its title).
const TITLE_H: f64 = 30.0;
/// Space below a plot (x tick labels).
const TICKS_H: f64 = 26.0;
/// Extra space under the last panel (the x axis name).
const FOOT_H: f64 = 22.0;

/// The categorical colours (Tableau 10): distinct for the usual colour vision deficiencies in
/// the first few entries, which carry the important series.
pub(crate) const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The validation metrics in the order a reader looks for them; others follow by name.
pub(crate) const METRIC_ORDER: [&str; 8] = [
    "CIDEr", "Bleu_4", "METEOR", "ROUGE_L", "SPICE", "Bleu_1", "Bleu_2", "Bleu_3",
];

/// Metric keys in display order: [`METRIC_ORDER`] first, the rest alphabetically.
pub(crate) fn ordered_metrics<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let set: BTreeSet<&String> = keys.into_iter().collect();
    let mut out: Vec<String> = METRIC_ORDER
        .iter()
        .filter(|m| set.iter().any(|k| k.as_str() == **m))
        .map(|m| m.to_string())
        .collect();
    for k in set {
        if !METRIC_ORDER.contains(&k.as_str()) {
            out.push(k.clone());
        }
    }
    out
}

/// One line in a panel: `(iteration, value)` in iteration order; non-finite values are gaps.
struct Series {
    name: String,
    colour: &'static str,
    points: Vec<(f64, f64)>,
    /// Draw a dot at every point (sparse series such as validation scores).
    dots: bool,
}

struct Panel {
    title: String,
    series: Vec<Series>,
}

impl Panel {
    fn finite(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|p| p.1.is_finite())
    }
}

/// Builds a series from the records that have a value.
fn series(
    name: impl Into<String>,
    colour: &'static str,
    records: &[&HistoryRecord],
    value: impl Fn(&HistoryRecord) -> Option<f64>,
) -> Series {
    let points: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| value(r).map(|v| (r.iteration as f64, v)))
        .collect();
    Series {
        name: name.into(),
        colour,
        dots: points.len() <= 60,
        points,
    }
}

fn panels(records: &[&HistoryRecord], stages: &[String]) -> Vec<Panel> {
    let mut out = Vec::new();
    for (k, stage) in stages.iter().enumerate() {
        let mine: Vec<&HistoryRecord> = records
            .iter()
            .copied()
            .filter(|r| &r.stage == stage)
            .collect();
        let mut s = series("loss", PALETTE[k % PALETTE.len()], &mine, |r| r.loss);
        // Training loss is logged densely; dots would hide the line.
        s.dots = s.points.len() <= 1;
        if !s.points.is_empty() {
            out.push(Panel {
                title: format!("Training loss: {stage}"),
                series: vec![s],
            });
        }
    }
    let reward: Vec<Series> = stages
        .iter()
        .enumerate()
        .map(|(k, stage)| {
            let mut s = series(
                format!("{stage} reward"),
                PALETTE[k % PALETTE.len()],
                records,
                |r| r.reward.filter(|_| &r.stage == stage),
            );
            s.dots = s.points.len() <= 1;
            s
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if !reward.is_empty() {
        out.push(Panel {
            title: "Reward (mean CIDEr-D of the sampled captions)".into(),
            series: reward,
        });
    }
    let keys = ordered_metrics(
        records
            .iter()
            .filter_map(|r| r.val.as_ref())
            .flat_map(|v| v.keys()),
    );
    let val = |key: &str, k: usize| {
        series(key, PALETTE[k % PALETTE.len()], records, |r| {
            r.val.as_ref().and_then(|v| v.get(key).copied())
        })
    };
    if keys.iter().any(|k| k == "CIDEr") {
        out.push(Panel {
            title: "Validation CIDEr-D".into(),
            series: vec![val("CIDEr", 1)],
        });
    }
    let others: Vec<Series> = keys
        .iter()
        .filter(|k| k.as_str() != "CIDEr")
        .enumerate()
        // Palette entry 1 (red) stays CIDEr's, in every panel.
        .map(|(k, key)| val(key, if k == 0 { 0 } else { k + 1 }))
        .collect();
    if !others.is_empty() {
        out.push(Panel {
            title: "Validation metrics".into(),
            series: others,
        });
    }
    let mut ss = series("probability", PALETTE[5], records, |r| r.ss_prob);
    ss.dots = ss.points.len() <= 1;
    // A schedule that never left 0 says nothing worth a panel.
    if ss.points.iter().any(|p| p.1 != 0.0) {
        out.push(Panel {
            title: "Scheduled sampling".into(),
            series: vec![ss],
        });
    }
    let mut lr = series("learning rate", PALETTE[7], records, |r| r.lr);
    lr.dots = lr.points.len() <= 1;
    if !lr.points.is_empty() {
        out.push(Panel {
            title: "Learning rate".into(),
            series: vec![lr],
        });
    }
    out
}

/// The runs of one stage in iteration order: `(stage, first iteration)`.
fn stage_starts(records: &[&HistoryRecord]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for r in records {
        if out.last().is_none_or(|(s, _)| *s != r.stage) {
            out.push((r.stage.clone(), r.iteration as f64));
        }
    }
    out
}

/// Splits points into runs of finite values (non-finite values end a run).
fn runs(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &p in points {
        if p.1.is_finite() {
            out.last_mut().expect("never empty").push(p);
        } else if !out.last().expect("never empty").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Keeps, for each pixel column, its first, lowest, highest and last point, in order; runs
/// shorter than two points per column are returned as they are.
fn thin(run: &[(f64, f64)], columns: usize, x_of: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    if run.len() <= 2 * columns {
        return run.to_vec();
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < run.len() {
        let col = x_of(run[start].0).floor();
        let mut end = start + 1;
        while end < run.len() && x_of(run[end].0).floor() == col {
            end += 1;
        }
        let chunk = &run[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (k, p) in chunk.iter().enumerate() {
            if p.1 < chunk[lo].1 {
                lo = k;
            }
            if p.1 > chunk[hi].1 {
                hi = k;
            }
        }
        let mut keep = vec![0, lo, hi, chunk.len() - 1];
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|k| chunk[k]));
        start = end;
    }
    out
}

/// The red marker of a non-finite value: a small triangle pointing down from `(cx, top)`.
fn down_triangle(m: &mut Markup, cx: f64, top: f64) {
    let points = format!(
        "{},{} {},{} {},{}",
        px(cx - 5.0),
        px(top),
        px(cx + 5.0),
        px(top),
        px(cx),
        px(top + 9.0)
    );
    m.leaf("polygon", &[("points", &points), ("fill", "#d00")]);
}

/// Legend text: the name and the last finite value.
fn legend_text(s: &Series) -> String {
    let name: String = if s.name.chars().count() > 22 {
        s.name.chars().take(21).chain(['…']).collect()
    } else {
        s.name.clone()
    };
    match s.points.iter().rev().find(|p| p.1.is_finite()) {
        Some(&(_, v)) => format!("{name}  {}", short(v)),
        None => name,
    }
}

/// A value for the legend: 4 significant digits.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            None => s,
        }
    } else {
        let digits = (3 - v.abs().log10().floor() as i64).clamp(0, 6) as usize;
        num(v, digits)
    }
}

/// Draws the training history `records` (any order) as SVG; see the module docs. An empty
/// history, or one without a single value, gives a small drawing that says so.
pub fn curves_svg(records: &[HistoryRecord]) -> String {
    let mut sorted: Vec<&HistoryRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.iteration);
    let mut stages: Vec<String> = Vec::new();
    for r in &sorted {
        if !stages.contains(&r.stage) {
            stages.push(r.stage.clone());
        }
    }
    let panels = panels(&sorted, &stages);
    let mut m = Markup::new();
    if panels.is_empty() {
        let h = 80.0;
        m.open(
            "svg",
            &[
                ("xmlns", "http://www.w3.org/2000/svg"),
                ("width", &px(WIDTH)),
                ("height", &px(h)),
                ("viewBox", &format!("0 0 {} {}", px(WIDTH), px(h))),
                ("font-family", "sans-serif"),
            ],
        );
        m.leaf(
            "rect",
            &[("width", &px(WIDTH)), ("height", &px(h)), ("fill", "#fff")],
        );
        m.text(
            "text",
            &[
                ("x", "20"),
                ("y", "45"),
                ("font-size", "15"),
                ("fill", "#555"),
            ],
            &format!(
                "No training history to draw yet ({} records, none with a value).",
                records.len()
            ),
        );
        return m.finish() + "\n";
    }

    let x_lo = sorted.first().map_or(0.0, |r| r.iteration as f64);
    let x_hi = sorted.last().map_or(1.0, |r| r.iteration as f64);
    let xa = Axis::nice(x_lo, x_hi, 8, true);
    let plot_w = WIDTH - LEFT - LEGEND;
    let (x0, x1) = (LEFT, LEFT + plot_w);
    let x_of = |x: f64| xa.map(x, x0, x1);
    let panel_h = TITLE_H + PLOT_H + TICKS_H;
    let height = panel_h * panels.len() as f64 + FOOT_H + 8.0;
    let starts = stage_starts(&sorted);

    m.open(
        "svg",
        &[
            ("xmlns", "http://www.w3.org/2000/svg"),
            ("width", &px(WIDTH)),
            ("height", &px(height)),
            ("viewBox", &format!("0 0 {} {}", px(WIDTH), px(height))),
            ("font-family", "sans-serif"),
            ("font-size", "11"),
        ],
    );
    m.text("title", &[], "Training history");
    m.leaf(
        "rect",
        &[
            ("width", &px(WIDTH)),
            ("height", &px(height)),
            ("fill", "#fff"),
        ],
    );
    for (p, panel) in panels.iter().enumerate() {
        let top = 8.0 + p as f64 * panel_h;
        let (y0, y1) = (top + TITLE_H + PLOT_H, top + TITLE_H);
        let (lo, hi) = panel
            .finite()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
                (a.min(y), b.max(y))
            });
        let ya = Axis::nice(lo, hi, 5, false);
        let y_of = |y: f64| ya.map(y, y0, y1);
        m.open("g", &[("class", "panel")]);
        m.text(
            "text",
            &[
                ("x", &px(x0)),
                ("y", &px(top + 18.0)),
                ("font-size", "14"),
                ("font-weight", "bold"),
                ("fill", "#222"),
            ],
            &panel.title,
        );
        // Frame, grid and y ticks.
        m.leaf(
            "rect",
            &[
                ("x", &px(x0)),
                ("y", &px(y1)),
                ("width", &px(plot_w)),
                ("height", &px(PLOT_H)),
                ("fill", "#fbfbfb"),
                ("stroke", "#bbb"),
            ],
        );
        for t in ya.ticks() {
            let y = px(y_of(t));
            m.leaf(
                "line",
                &[
                    ("x1", &px(x0)),
                    ("x2", &px(x1)),
                    ("y1", &y),
                    ("y2", &y),
                    ("stroke", "#e4e4e4"),
                ],
            );
            m.text(
                "text",
                &[
                    ("x", &px(x0 - 6.0)),
                    ("y", &px(y_of(t) + 4.0)),
                    ("text-anchor", "end"),
                    ("fill", "#444"),
                ],
                &ya.label(t),
            );
        }
        for t in xa.ticks() {
            let x = px(x_of(t));
            m.leaf(
                "line",
                &[
                    ("x1", &x),
                    ("x2", &x),
                    ("y1", &px(y0)),
                    ("y2", &px(y0 + 4.0)),
                    ("stroke", "#888"),
                ],
            );
            m.text(
                "text",
                &[
                    ("x", &x),
                    ("y", &px(y0 + 16.0)),
                    ("text-anchor", "middle"),
                    ("fill", "#444"),
                ],
                &xa.label(t),
            );
        }
        // Where each stage after the first begins.
        for (stage, at) in starts.iter().skip(1) {
            let x = px(x_of(*at));
            m.leaf(
                "line",
                &[
                    ("x1", &x),
                    ("x2", &x),
                    ("y1", &px(y1)),
                    ("y2", &px(y0)),
                    ("stroke", "#555"),
                    ("stroke-dasharray", "5 4"),
                ],
            );
            m.text(
                "text",
                &[
                    ("x", &px(x_of(*at) + 4.0)),
                    ("y", &px(y1 + 12.0)),
                    ("fill", "#555"),
                ],
                &format!("{stage} starts"),
            );
        }
        for (k, s) in panel.series.iter().enumerate() {
            m.open("g", &[("class", "series")]);
            m.text("title", &[], &s.name);
            for run in runs(&s.points) {
                let run = thin(&run, plot_w as usize, x_of);
                if run.len() > 1 {
                    let pts: Vec<String> = run
                        .iter()
                        .map(|&(x, y)| format!("{},{}", px(x_of(x)), px(y_of(y))))
                        .collect();
                    m.leaf(
                        "polyline",
                        &[
                            ("points", &pts.join(" ")),
                            ("fill", "none"),
                            ("stroke", s.colour),
                            ("stroke-width", "1.6"),
                            ("stroke-linejoin", "round"),
                        ],
                    );
                }
                if s.dots || run.len() == 1 {
                    for &(x, y) in &run {
                        m.leaf(
                            "circle",
                            &[
                                ("cx", &px(x_of(x))),
                                ("cy", &px(y_of(y))),
                                ("r", "2.6"),
                                ("fill", s.colour),
                            ],
                        );
                    }
                }
            }
            for &(x, y) in s.points.iter().filter(|p| !p.1.is_finite()) {
                let cx = x_of(x);
                m.open("g", &[("class", "nonfinite")]);
                m.text(
                    "title",
                    &[],
                    &format!("{}: {} at iteration {}", s.name, y, x as u64),
                );
                down_triangle(&mut m, cx, y1 + 1.0);
                m.close();
            }
            // Legend entry.
            let ly = y1 + 8.0 + 18.0 * k as f64;
            m.leaf(
                "line",
                &[
                    ("x1", &px(x1 + 14.0)),
                    ("x2", &px(x1 + 34.0)),
                    ("y1", &px(ly)),
                    ("y2", &px(ly)),
                    ("stroke", s.colour),
                    ("stroke-width", "3"),
                ],
            );
            m.text(
                "text",
                &[
                    ("x", &px(x1 + 40.0)),
                    ("y", &px(ly + 4.0)),
                    ("font-size", "12"),
                    ("fill", "#222"),
                ],
                &legend_text(s),
            );
            m.close();
        }
        let bad = panel
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| !p.1.is_finite())
            .count();
        if bad > 0 {
            let ly = y1 + 8.0 + 18.0 * panel.series.len() as f64;
            down_triangle(&mut m, x1 + 24.0, ly - 4.0);
            m.text(
                "text",
                &[
                    ("x", &px(x1 + 40.0)),
                    ("y", &px(ly + 4.0)),
                    ("font-size", "12"),
                    ("fill", "#d00"),
                ],
                &format!("not finite ({bad})"),
            );
        }
        m.close();
    }
    m.text(
        "text",
        &[
            ("x", &px((x0 + x1) / 2.0)),
            ("y", &px(height - 8.0)),
            ("text-anchor", "middle"),
            ("font-size", "12"),
            ("fill", "#333"),
        ],
        "iteration",
    );
    m.finish() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_non_finite_values() {
        let pts = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 2.0),
            (3.0, 3.0),
            (4.0, f64::INFINITY),
        ];
        assert_eq!(
            runs(&pts),
            vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]
        );
        assert!(runs(&[(0.0, f64::NAN)]).is_empty());
    }

    #[test]
    fn thinning_keeps_extremes_and_ends() {
        // 1000 points into 10 columns; one spike must survive.
        let mut run: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 1.0)).collect();
        run[537].1 = 50.0;
        let thinned = thin(&run, 10, |x| x / 100.0);
        assert!(thinned.len() <= 40, "{}", thinned.len());
        assert!(thinned.contains(&(537.0, 50.0)));
        assert_eq!(thinned.first(), run.first());
        assert_eq!(thinned.last(), run.last());
        assert!(thinned.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn legend_values_are_short() {
        assert_eq!(short(2e-5), "2e-5");
        assert_eq!(short(1.25e-4), "1.25e-4");
        assert_eq!(short(2.19734), "2.197");
        assert_eq!(short(-0.0784321), "-0.07843");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn metrics_come_in_reading_order() {
        let keys = ["zeta", "Bleu_1", "CIDEr", "alpha", "Bleu_4"].map(String::from);
        assert_eq!(
            ordered_metrics(keys.iter()),
            ["CIDEr", "Bleu_4", "Bleu_1", "alpha", "zeta"]
        );
    }
}
