//! The report files: `history.jsonl` round-trips (NaN included) and names bad lines;
//! `curves.svg` and `report.html` are well-formed, deterministic, escape what users wrote,
//! survive empty, single-point and non-finite input, and the attention overlay lines up with
//! the drawn regions.

mod report_support;

use aoanet::data::synth::scene::Region;
use aoanet::report::{
    HistoryRecord, ImageDrawing, ReportData, ReportImage, boxes_from_flat, curves_svg,
    parse_history, read_history, render_report, write_history, write_report,
};
use report_support::{
    Element, assert_finite_geometry, parse_xml, sample_history, sample_report, small_world,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

const HOSTILE: &str = r#"<script>alert("x")</script> & 'co' <b>"#;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn svg_root(svg: &str) -> Element {
    let root = parse_xml(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"));
    assert_eq!(root.name, "svg");
    assert_finite_geometry(&root);
    root
}

// --- history.jsonl -------------------------------------------------------------------------

#[test]
fn history_round_trips_through_json_lines_with_non_finite_values() {
    let mut a = HistoryRecord::new(120, 2, "xe");
    a.loss = Some(f64::NAN);
    a.lr = Some(1.6e-4);
    a.ss_prob = Some(0.05);
    let mut b = HistoryRecord::new(3000, 6, "scst");
    b.loss = Some(-0.0125);
    b.reward = Some(f64::INFINITY);
    b.val = Some(BTreeMap::from([
        ("CIDEr".into(), 1.234_567_890_123),
        ("Bleu_4".into(), f64::NEG_INFINITY),
    ]));
    let c = HistoryRecord::new(0, 0, HOSTILE);
    let records = vec![a, b, c];
    let text: String = records.iter().map(HistoryRecord::to_json_line).collect();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines().next().unwrap().contains(r#""loss":"NaN""#),
        "{text}"
    );
    assert!(
        !text.contains("reward\":null"),
        "absent fields are left out: {text}"
    );

    let back = parse_history(&text, "mem").unwrap();
    // NaN != NaN, so compare the serialised form and the NaN itself.
    assert!(back[0].loss.unwrap().is_nan());
    assert_eq!(back[0].ss_prob, Some(0.05));
    assert_eq!(back[1].reward, Some(f64::INFINITY));
    assert_eq!(back[1].val.as_ref().unwrap()["CIDEr"], 1.234_567_890_123);
    assert_eq!(back[2], records[2]);
    let again: String = back.iter().map(HistoryRecord::to_json_line).collect();
    assert_eq!(again, text);

    let dir = scratch("history");
    let path = dir.join("history.jsonl");
    write_history(&path, &records).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert_eq!(read_history(&path).unwrap().len(), 3);
    // Nulls, unknown fields and blank lines are accepted.
    let loose =
        "\n{\"iteration\":5,\"epoch\":0,\"stage\":\"xe\",\"loss\":null,\"val\":null,\"new\":1}\n\n";
    let r = parse_history(loose, "mem").unwrap();
    assert_eq!(r, vec![HistoryRecord::new(5, 0, "xe")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_history_lines_are_named() {
    let good = HistoryRecord::new(1, 0, "xe").to_json_line();
    for (bad, needle) in [
        ("{\"iteration\":2,\"epoch\":0}", "stage"),
        (
            "{\"iteration\":-2,\"epoch\":0,\"stage\":\"xe\"}",
            "iteration",
        ),
        (
            "{\"iteration\":2,\"epoch\":0,\"stage\":\"xe\",\"loss\":\"low\"}",
            "loss",
        ),
        (
            "{\"iteration\":2,\"epoch\":0,\"stage\":\"xe\",\"val\":[1]}",
            "val",
        ),
        (
            "{\"iteration\":2,\"epoch\":0,\"stage\":\"xe\",\"val\":{\"CIDEr\":true}}",
            "CIDEr",
        ),
        ("{\"iteration\":2,", "line 2"),
        ("[1,2]", "object"),
    ] {
        let text = format!("{good}{bad}\n");
        let e = parse_history(&text, "run/history.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("run/history.jsonl"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains(needle), "{bad}: {e}");
    }
    let missing = read_history("/nonexistent/history.jsonl")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/history.jsonl"), "{missing}");
}

// --- curves.svg ----------------------------------------------------------------------------

#[test]
fn curves_of_a_real_looking_run_have_every_panel_and_are_deterministic() {
    let h = sample_history();
    let svg = curves_svg(&h);
    assert_eq!(svg, curves_svg(&h), "same history, same bytes");
    let root = svg_root(&svg);
    let titles: Vec<String> = root
        .with_class("panel")
        .iter()
        .map(|p| p.all("text")[0].text())
        .collect();
    assert_eq!(
        titles,
        [
            "Training loss: xe",
            "Training loss: scst",
            "Reward (mean CIDEr-D of the sampled captions)",
            "Validation CIDEr-D",
            "Validation metrics",
            "Scheduled sampling",
            "Learning rate",
        ]
    );
    assert!(svg.contains("scst starts"));
    // Validation scores are sparse: dots at each of the 10 validations.
    let cider = root.with_class("panel")[3].all("circle").len();
    assert_eq!(cider, h.iter().filter(|r| r.val.is_some()).count());
    // Shuffled input draws the same picture.
    let mut rev = h.clone();
    rev.reverse();
    assert_eq!(curves_svg(&rev), svg);
}

#[test]
fn curves_handle_empty_single_point_and_non_finite_input() {
    for empty in [vec![], vec![HistoryRecord::new(0, 0, "xe"); 3]] {
        let svg = curves_svg(&empty);
        let root = svg_root(&svg);
        assert!(root.text().contains("No training history"), "{svg}");
    }

    let mut one = HistoryRecord::new(7, 0, "xe");
    one.loss = Some(3.5);
    let svg = curves_svg(&[one]);
    let root = svg_root(&svg);
    assert_eq!(
        root.all("circle").len(),
        1,
        "a single point is a dot: {svg}"
    );
    assert!(root.all("polyline").is_empty());

    let mut h = Vec::new();
    for i in 0..20u64 {
        let mut r = HistoryRecord::new(i * 10, 0, "xe");
        r.loss = Some(match i {
            5 => f64::NAN,
            12 => f64::INFINITY,
            _ => 5.0 - i as f64 * 0.1,
        });
        h.push(r);
    }
    let svg = curves_svg(&h);
    let root = svg_root(&svg);
    let marks = root.with_class("nonfinite");
    assert_eq!(marks.len(), 2);
    assert_eq!(marks[0].all("title")[0].text(), "loss: NaN at iteration 50");
    assert_eq!(
        marks[1].all("title")[0].text(),
        "loss: inf at iteration 120"
    );
    // The line breaks at each: three runs of 5, 6 and 7 points.
    let lens: Vec<usize> = root
        .all("polyline")
        .iter()
        .map(|p| p.attr("points").unwrap().split(' ').count())
        .collect();
    assert_eq!(lens, [5, 6, 7]);

    // All values non-finite: nothing to scale by, still a valid drawing with the markers.
    let mut nan = HistoryRecord::new(3, 0, "xe");
    nan.loss = Some(f64::NAN);
    let root = svg_root(&curves_svg(&[nan]));
    assert_eq!(root.with_class("nonfinite").len(), 1);
}

#[test]
fn curves_escape_labels_and_thin_long_series() {
    let mut h = Vec::new();
    for i in 0..100_000u64 {
        let mut r = HistoryRecord::new(i, i / 10_000, HOSTILE);
        r.loss = Some(if i == 54_321 {
            40.0
        } else {
            2.0 + (i % 7) as f64 * 0.01
        });
        if i % 10_000 == 0 {
            r.val = Some(BTreeMap::from([(HOSTILE.to_string(), 0.5)]));
        }
        h.push(r);
    }
    let svg = curves_svg(&h);
    assert!(
        svg.len() < 200_000,
        "100k points thinned to {} bytes",
        svg.len()
    );
    assert!(!svg.contains("<script"));
    let root = svg_root(&svg);
    assert!(
        root.all("text")
            .iter()
            .any(|t| t.text() == format!("Training loss: {HOSTILE}")),
        "the stage label round-trips as text"
    );
    // The spike survives the thinning: the highest y tick reaches 40.
    let polyline = &root.all("polyline")[0];
    let ys: Vec<f64> = polyline
        .attr("points")
        .unwrap()
        .split(' ')
        .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let top = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let bottom = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(bottom - top > 100.0, "spike visible: {top}..{bottom}");
}

// --- report.html ---------------------------------------------------------------------------

#[test]
fn the_report_is_well_formed_escaped_and_deterministic() {
    let world = small_world();
    let mut data = sample_report(&world);
    data.title = format!("run {HOSTILE}");
    data.notes.push(HOSTILE.into());
    data.images[0].words[1] = HOSTILE.into();
    data.images[0].references.push(HOSTILE.into());
    data.images[1].stage = Some(HOSTILE.into());
    data.tables[0]
        .rows
        .push((HOSTILE.into(), BTreeMap::from([(HOSTILE.into(), 1.0)])));
    let html = render_report(&data).unwrap();
    assert_eq!(html, render_report(&data).unwrap());
    assert!(html.starts_with("<!DOCTYPE html>"));
    let root = parse_xml(&html).unwrap_or_else(|e| panic!("not well-formed: {e}"));
    assert_eq!(root.name, "html");
    assert_finite_geometry(&root);
    assert!(root.all("script").is_empty(), "no script element at all");
    assert!(!html.contains("<script"));
    // No external requests: the only URLs are the SVG namespace name.
    assert_eq!(
        html.matches("http").count(),
        html.matches("\"http://www.w3.org/2000/svg\"").count()
    );
    for e in root.descendants() {
        for (k, v) in &e.attrs {
            if k == "href" {
                assert!(v.starts_with('#'), "only in-page references: {k}={v}");
            }
            assert!(k != "src", "nothing loaded: <{} src>", e.name);
        }
    }
    // Every user text comes back exactly.
    assert_eq!(root.all("title")[0].text(), data.title);
    assert_eq!(root.all("h1")[0].text(), data.title);
    let card = &root.with_class("card")[0];
    let chips: Vec<String> = card
        .all("span")
        .iter()
        .filter(|s| s.attr("class").is_some_and(|c| c.starts_with("w ")))
        .map(|s| s.text())
        .collect();
    assert_eq!(chips, data.images[0].words);
    let refs: Vec<String> = card.all("li").iter().map(|l| l.text()).collect();
    assert_eq!(refs, data.images[0].references);
    assert_eq!(root.with_class("stage")[1].text(), HOSTILE);
    assert!(root.with_class("note").iter().any(|n| n.text() == HOSTILE));
    let summary = &root.with_class("summary")[0];
    assert!(summary.all("th").iter().any(|t| t.text() == HOSTILE));
    // The best CIDEr is bold, and it is scst's.
    let best: Vec<String> = summary
        .with_class("best")
        .iter()
        .map(|t| t.text())
        .collect();
    assert!(best.contains(&"1.810".to_string()), "{best:?}");
    // One card per image, one thumbnail per word; the curves are inlined.
    assert_eq!(root.with_class("card").len(), data.images.len());
    assert_eq!(card.with_class("thumb").len(), data.images[0].words.len());
    assert!(root.with_class("curves")[0].all("svg").len() == 1);
}

#[test]
fn attention_overlays_line_up_with_the_drawn_regions() {
    let world = small_world();
    let d = &world.dataset;
    let id = d.captions.image(d.captions.len() - 1).id;
    let scene = world.scene(id).unwrap();
    let boxes = boxes_from_flat(d.features.get(id).unwrap().boxes.unwrap());
    // The feature boxes are the drawing's: region r of an object is that object's box.
    for (r, reg) in scene.regions.iter().enumerate() {
        let want = match reg {
            Region::Object(k) => scene.objects[*k].bbox,
            Region::Distractor(k) => scene.distractors[*k].bbox,
        };
        assert_eq!(boxes[r], want.map(f64::from), "region {r}");
    }
    let object = scene
        .regions
        .iter()
        .position(|r| matches!(r, Region::Object(_)))
        .unwrap();
    let n = boxes.len();
    let one_hot: Vec<f64> = (0..n).map(|r| f64::from(u8::from(r == object))).collect();
    let spread = vec![1.0 / n as f64; n];
    let img = ReportImage {
        image_id: id,
        stage: None,
        drawing: ImageDrawing::synthetic(&world, id).unwrap(),
        boxes: boxes.clone(),
        words: vec!["a".into(), "thing".into()],
        attention: vec![one_hot, spread],
        references: vec![],
        scores: BTreeMap::new(),
    };
    let data = ReportData {
        images: vec![img],
        ..ReportData::default()
    };
    let root = parse_xml(&render_report(&data).unwrap()).unwrap();
    let masks = root.all("mask");
    let mask = |id: &str| *masks.iter().find(|m| m.attr("id") == Some(id)).unwrap();
    // Word 0 cuts out exactly the object's box, fully.
    let cut: Vec<&Element> = mask("c0-m0").all("rect")[1..].to_vec();
    assert_eq!(cut.len(), 1);
    let b = boxes[object];
    let attr = |e: &Element, k: &str| e.attr(k).unwrap().parse::<f64>().unwrap();
    for (k, want) in [
        ("x", b[0]),
        ("y", b[1]),
        ("width", b[2] - b[0]),
        ("height", b[3] - b[1]),
    ] {
        assert!((attr(cut[0], k) - want).abs() < 0.01, "{k}");
    }
    assert_eq!(cut[0].attr("fill-opacity"), Some("1"));
    // Word 1 cuts out every region equally.
    assert_eq!(mask("c0-m1").all("rect").len(), n + 1);
    // The drawing sits in the same frame as the boxes.
    let large = &root.with_class("large")[0];
    assert_eq!(large.attr("viewBox"), Some("0 0 640 480"));
    let pic = large.all("svg")[0];
    assert_eq!(pic.attr("viewBox"), Some("0 0 640 480"));
    // The thumbnails reuse the picture and their word's mask, and outline the top region.
    let thumb = &root.with_class("thumb-view")[0];
    assert_eq!(thumb.all("use")[0].attr("href"), Some("#c0-pic"));
    assert_eq!(thumb.with_class("vt")[0].attr("mask"), Some("url(#c0-m0)"));
    assert!((attr(thumb.with_class("vt")[1], "x") - b[0]).abs() < 0.01);
    assert!(thumb.text().is_empty());
    let caption = root.all("figcaption")[0].text();
    assert!(
        caption.contains(&format!("1 on region {object}")),
        "{caption}"
    );
}

#[test]
fn real_data_draws_boxes_on_a_blank_canvas() {
    let boxes = vec![[10.0, 20.0, 200.0, 150.0], [300.0, 40.0, 420.0, 300.0]];
    let drawing = ImageDrawing::around(&boxes);
    assert_eq!(drawing.size(), (420.0, 300.0));
    let img = ReportImage {
        image_id: 42,
        stage: Some("scst".into()),
        drawing,
        boxes,
        words: vec!["a".into(), "dog".into()],
        attention: vec![vec![0.5, 0.5], vec![0.1, 0.9]],
        references: vec!["A dog.".into()],
        scores: BTreeMap::from([("CIDEr".into(), 0.7)]),
    };
    let data = ReportData {
        images: vec![img],
        ..ReportData::default()
    };
    let root = parse_xml(&render_report(&data).unwrap()).unwrap();
    let pic = root
        .all("g")
        .into_iter()
        .find(|g| g.attr("id") == Some("c0-pic"))
        .unwrap();
    // The canvas and one outline per box.
    assert_eq!(pic.all("rect").len(), 3);
    let caption = root.all("figcaption")[1].text();
    assert!(caption.contains("0.9 on region 1"), "{caption}");
}

#[test]
fn bad_report_input_is_a_clear_error() {
    let world = small_world();
    let base = sample_report(&world);
    let id = base.images[0].image_id;

    let mut d = base.clone();
    d.images[0].attention.pop();
    let e = render_report(&d).unwrap_err().to_string();
    assert!(
        e.contains(&format!("image {id}")) && e.contains("attention rows"),
        "{e}"
    );

    let mut d = base.clone();
    d.images[0].attention[2].push(0.1);
    let e = render_report(&d).unwrap_err().to_string();
    assert!(e.contains("word 2") && e.contains("boxes"), "{e}");

    let mut d = base.clone();
    d.images[0].drawing = ImageDrawing::Svg {
        markup: "<svg><script>alert(1)</script></svg>".into(),
        width: 10.0,
        height: 10.0,
    };
    let e = render_report(&d).unwrap_err().to_string();
    assert!(e.contains("<script"), "{e}");

    let mut d = base.clone();
    d.curves_svg = Some("<div>not svg</div>".into());
    assert!(render_report(&d).is_err());

    let mut d = base.clone();
    d.images[0].boxes[0][1] = f64::NAN;
    let e = render_report(&d).unwrap_err().to_string();
    assert!(e.contains("box 0"), "{e}");

    // Non-finite attention is drawn as 0 with a warning, not a failure.
    let mut d = base.clone();
    d.images[0].attention[0][0] = f64::NAN;
    d.images[0].attention[1][0] = -1.0;
    let root = parse_xml(&render_report(&d).unwrap()).unwrap();
    let warn = root.with_class("warn")[0].text();
    assert!(warn.contains("2 attention weights"), "{warn}");

    // No attention at all is fine: no thumbnails, a hint instead.
    let mut d = base;
    d.images[0].attention.clear();
    let root = parse_xml(&render_report(&d).unwrap()).unwrap();
    assert!(root.with_class("card")[0].with_class("thumb").is_empty());
}

#[test]
fn write_report_is_atomic_and_names_the_file_on_error() {
    let world = small_world();
    let data = sample_report(&world);
    let dir = scratch("write");
    let path = dir.join("report.html");
    write_report(&path, &data).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        render_report(&data).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");

    // A failing render leaves the old file in place.
    let mut bad = data.clone();
    bad.images[0].attention.pop();
    assert!(write_report(&path, &bad).is_err());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        render_report(&data).unwrap()
    );

    let missing = dir.join("no/such/dir/report.html");
    let e = write_report(&missing, &data).unwrap_err().to_string();
    assert!(e.contains("no/such/dir"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
