//! Shared by the report tests: a strict little XML parser (our SVG and HTML are written to be
//! well-formed XML, so a parser that refuses anything else is the well-formedness check), and
//! a sample report built from a small synthetic world.

#![allow(dead_code)]

use aoanet::Philox;
use aoanet::data::synth::scene::{Region, Scene, Shape};
use aoanet::data::synth::{SynthConfig, World};
use aoanet::report::{
    HistoryRecord, ImageDrawing, MetricsTable, ReportData, ReportImage, boxes_from_flat, curves_svg,
};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// XML

/// A parsed node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Element(Element),
    /// Text with character references decoded.
    Text(String),
}

/// A parsed element.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every element below (and including) this one, in document order.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        for c in &self.children {
            if let Node::Element(e) = c {
                out.extend(e.descendants());
            }
        }
        out
    }

    /// Descendants named `name`.
    pub fn all(&self, name: &str) -> Vec<&Element> {
        self.descendants()
            .into_iter()
            .filter(|e| e.name == name)
            .collect()
    }

    /// Descendants whose class list holds `class`.
    pub fn with_class(&self, class: &str) -> Vec<&Element> {
        self.descendants()
            .into_iter()
            .filter(|e| {
                e.attr("class")
                    .is_some_and(|c| c.split_whitespace().any(|x| x == class))
            })
            .collect()
    }

    /// The concatenated text of this element and its descendants.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            match c {
                Node::Text(t) => s.push_str(t),
                Node::Element(e) => s.push_str(&e.text()),
            }
        }
        s
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        let ctx: String = self.rest().chars().take(60).collect();
        Err(format!("{what} at byte {}: {ctx:?}", self.i))
    }

    fn skip_ws(&mut self) {
        let n = self.rest().len() - self.rest().trim_start().len();
        self.i += n;
    }

    fn name(&mut self) -> Result<String, String> {
        let n: usize = self
            .rest()
            .chars()
            .take_while(|&c| is_name_char(c))
            .map(char::len_utf8)
            .sum();
        if n == 0 || !self.rest().starts_with(|c: char| c.is_ascii_alphabetic()) {
            return self.err("expected a name");
        }
        let name = self.rest()[..n].to_string();
        self.i += n;
        Ok(name)
    }

    fn decode(&self, raw: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(p) = rest.find('&') {
            out.push_str(&rest[..p]);
            let after = &rest[p + 1..];
            let end = after
                .find(';')
                .ok_or_else(|| format!("bare '&' in {raw:?}"))?;
            let ent = &after[..end];
            let c = match ent {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                _ if ent.starts_with("#x") => u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{ent};"))?,
                _ if ent.starts_with('#') => ent[1..]
                    .parse::<u32>()
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{ent};"))?,
                _ => return Err(format!("unknown entity &{ent}; (not XML)")),
            };
            out.push(c);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Skips comments, processing instructions and a doctype.
    fn misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if self.rest().starts_with("<!--") {
                match self.rest().find("-->") {
                    Some(e) => self.i += e + 3,
                    None => return self.err("unterminated comment"),
                }
            } else if self.rest().starts_with("<?") || self.rest().starts_with("<!DOCTYPE") {
                match self.rest().find('>') {
                    Some(e) => self.i += e + 1,
                    None => return self.err("unterminated declaration"),
                }
            } else {
                return Ok(());
            }
        }
    }

    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth > 200 {
            return self.err("nesting too deep");
        }
        if !self.rest().starts_with('<') {
            return self.err("expected '<'");
        }
        self.i += 1;
        let name = self.name()?;
        let mut attrs: Vec<(String, String)> = Vec::new();
        loop {
            let before = self.i;
            self.skip_ws();
            if self.rest().starts_with("/>") {
                self.i += 2;
                return Ok(Element {
                    name,
                    attrs,
                    children: vec![],
                });
            }
            if self.rest().starts_with('>') {
                self.i += 1;
                break;
            }
            if self.i == before {
                return self.err("expected whitespace before an attribute");
            }
            let key = self.name()?;
            if attrs.iter().any(|(k, _)| *k == key) {
                return self.err(&format!("duplicate attribute {key}"));
            }
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return self.err("expected '=' (attributes need values)");
            }
            self.i += 1;
            self.skip_ws();
            let q = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return self.err("attribute value must be quoted"),
            };
            self.i += 1;
            let end = match self.rest().find(q) {
                Some(e) => e,
                None => return self.err("unterminated attribute value"),
            };
            let raw = &self.rest()[..end];
            if raw.contains('<') {
                return self.err("'<' in an attribute value");
            }
            let value = self.decode(raw)?;
            self.i += end + 1;
            attrs.push((key, value));
        }
        let mut children = Vec::new();
        loop {
            if self.rest().starts_with("</") {
                self.i += 2;
                let close = self.name()?;
                if close != name {
                    return self.err(&format!("</{close}> closes <{name}>"));
                }
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return self.err("expected '>'");
                }
                self.i += 1;
                return Ok(Element {
                    name,
                    attrs,
                    children,
                });
            } else if self.rest().starts_with("<!--") {
                self.misc()?;
            } else if self.rest().starts_with('<') {
                children.push(Node::Element(self.element(depth + 1)?));
            } else if self.rest().is_empty() {
                return self.err(&format!("<{name}> never closed"));
            } else {
                let end = self.rest().find('<').unwrap_or(self.rest().len());
                let raw = &self.rest()[..end];
                let text = self.decode(raw)?;
                self.i += end;
                children.push(Node::Text(text));
            }
        }
    }
}

/// Parses a whole document: optional prolog/doctype/comments, exactly one root element,
/// nothing after it but whitespace and comments.
pub fn parse_xml(doc: &str) -> Result<Element, String> {
    let mut p = Parser { s: doc, i: 0 };
    p.misc()?;
    let root = p.element(0)?;
    p.misc()?;
    if !p.rest().is_empty() {
        return p.err("content after the root element");
    }
    Ok(root)
}

/// Every number in the geometric attributes of `root`'s elements parses and is finite.
pub fn assert_finite_geometry(root: &Element) {
    for e in root.descendants() {
        for (k, v) in &e.attrs {
            let numeric = matches!(
                k.as_str(),
                "x" | "y" | "x1" | "x2" | "y1" | "y2" | "cx" | "cy" | "r" | "width" | "height"
            );
            if numeric || k == "points" || k == "viewBox" {
                for part in v.split([' ', ',']).filter(|p| !p.is_empty()) {
                    let x: f64 = part
                        .parse()
                        .unwrap_or_else(|_| panic!("<{}> {k}={v:?}: not a number", e.name));
                    assert!(x.is_finite(), "<{}> {k}={v:?}", e.name);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sample data

/// A small world: 4 train, 2 val, 4 test images with 10-24 regions.
pub fn small_world() -> World {
    World::generate(&SynthConfig {
        train: 4,
        val: 2,
        test: 4,
        min_regions: 10,
        max_regions: 24,
        dim: 8,
        ..SynthConfig::default()
    })
    .unwrap()
}

fn shape_of(word: &str) -> Option<Shape> {
    let stem = word.trim_end_matches("es").trim_end_matches('s');
    Some(match stem {
        "circle" | "disk" => Shape::Circle,
        "square" | "box" => Shape::Square,
        "triangle" => Shape::Triangle,
        "star" => Shape::Star,
        "cross" => Shape::Cross,
        _ => return None,
    })
}

/// Attention as a trained model might give it: a colour or shape word looks at the objects
/// it names, other words spread out. Rows sum to 1.
pub fn plausible_attention(scene: &Scene, words: &[String], seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Philox::new(seed);
    words
        .iter()
        .map(|w| {
            let named: Vec<usize> = scene
                .regions
                .iter()
                .enumerate()
                .filter_map(|(r, reg)| match reg {
                    Region::Object(k) => {
                        let o = &scene.objects[*k];
                        (o.colour.word() == w || shape_of(w) == Some(o.shape)).then_some(r)
                    }
                    Region::Distractor(_) => None,
                })
                .collect();
            let mut row: Vec<f64> = (0..scene.regions.len())
                .map(|_| (0.8 * rng.next_normal()).exp())
                .collect();
            let spread: f64 = row.iter().sum();
            let focus = if named.is_empty() { 0.0 } else { 0.8 };
            for a in row.iter_mut() {
                *a *= (1.0 - focus) / spread;
            }
            for &r in &named {
                row[r] += focus / named.len() as f64;
            }
            row
        })
        .collect()
}

/// A history like a real run's: XE with falling loss and rising CIDEr, then SCST.
pub fn sample_history() -> Vec<HistoryRecord> {
    let mut out = Vec::new();
    let mut rng = Philox::new(7);
    for it in (0..=3000u64).step_by(25) {
        let mut r = HistoryRecord::new(it, it / 500, "xe");
        let t = it as f64 / 3000.0;
        r.loss = Some(2.2 + 2.8 * (-4.0 * t).exp() + 0.08 * rng.next_normal());
        r.lr = Some(2e-4 * 0.8f64.powi((it / 1500) as i32));
        r.ss_prob = Some((0.05 * (it / 1000) as f64).min(0.25));
        if it % 500 == 0 && it > 0 {
            let c = 1.6 * (1.0 - (-3.0 * t).exp());
            r.val = Some(BTreeMap::from([
                ("CIDEr".into(), c),
                ("Bleu_4".into(), 0.3 * c / 1.6 + 0.1),
                ("Bleu_1".into(), 0.5 + 0.2 * c / 1.6),
                ("ROUGE_L".into(), 0.45 + 0.15 * c / 1.6),
            ]));
        }
        out.push(r);
    }
    for it in (3025..=5000u64).step_by(25) {
        let mut r = HistoryRecord::new(it, 6 + (it - 3000) / 500, "scst");
        let t = (it - 3000) as f64 / 2000.0;
        r.loss = Some(-0.02 * t + 0.03 * rng.next_normal());
        r.reward = Some(1.5 + 0.35 * (1.0 - (-3.0 * t).exp()) + 0.05 * rng.next_normal());
        r.lr = Some(2e-5);
        r.ss_prob = Some(0.0);
        if it % 500 == 0 {
            let c = 1.55 + 0.3 * (1.0 - (-3.0 * t).exp());
            r.val = Some(BTreeMap::from([
                ("CIDEr".into(), c),
                ("Bleu_4".into(), 0.4 + 0.02 * t),
                ("Bleu_1".into(), 0.72),
                ("ROUGE_L".into(), 0.62),
            ]));
        }
        out.push(r);
    }
    out
}

/// The report of `world`'s test images, with `caption_of` giving each image's "generated"
/// words (the first reference by default).
pub fn sample_report(world: &World) -> ReportData {
    let d = &world.dataset;
    let mut images = Vec::new();
    for (k, pos) in d
        .captions
        .split_positions(aoanet::data::Split::Test)
        .into_iter()
        .enumerate()
    {
        let caps = d.captions.image(pos);
        let id = caps.id;
        let boxes = boxes_from_flat(d.features.get(id).unwrap().boxes.unwrap());
        let scene = world.scene(id).unwrap();
        let words: Vec<String> = caps
            .raw(0)
            .to_lowercase()
            .split_whitespace()
            .map(String::from)
            .collect();
        let attention = plausible_attention(scene, &words, id);
        let real = k % 2 == 1;
        images.push(ReportImage {
            image_id: id,
            stage: Some(if real { "xe" } else { "scst" }.into()),
            // Every other card shows the real-data layout (boxes on a blank canvas).
            drawing: if real {
                ImageDrawing::around(&boxes)
            } else {
                ImageDrawing::synthetic(world, id).unwrap()
            },
            boxes,
            words,
            attention,
            references: (0..caps.len()).map(|j| caps.raw(j).to_string()).collect(),
            scores: BTreeMap::from([
                ("CIDEr".into(), 1.0 + 0.1 * k as f64),
                ("Bleu_4".into(), 0.5),
                ("METEOR".into(), 0.31),
            ]),
        });
    }
    let m = |c: f64, b: f64| {
        BTreeMap::from([
            ("CIDEr".to_string(), c),
            ("Bleu_4".to_string(), b),
            ("Bleu_1".to_string(), b + 0.3),
            ("ROUGE_L".to_string(), b + 0.2),
            ("METEOR".to_string(), b / 2.0),
        ])
    };
    ReportData {
        title: "aoanet demo: synthetic world".into(),
        tables: vec![MetricsTable {
            title: "Test split, beam size 2".into(),
            rows: vec![
                ("xe".into(), m(1.52, 0.41)),
                ("scst".into(), m(1.81, 0.44)),
                ("control (shuffled features)".into(), m(0.31, 0.12)),
            ],
        }],
        notes: vec![
            "Sample data for the report tests: captions are the first reference, attention is made up."
                .into(),
        ],
        curves_svg: Some(curves_svg(&sample_history())),
        images,
    }
}
