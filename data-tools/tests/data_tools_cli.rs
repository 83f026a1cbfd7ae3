//! `aoanet-data` end to end: labels (Karpathy and official COCO), bu-features and
//! npz-features round trips, bad input named by file and line, no partial output, synth and
//! inspect.

use aoanet::data::{Captions, Dataset, Dtype, FeatureStore, Split, Vocab};
use aoanet::metrics::df::DocumentFrequencies;
use aoanet::rng::Philox;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aoanet-data"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{args:?} failed:\n{out}\n{err}");
    out.into_owned()
}

/// Runs a command that must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ------------------------------------------------------------------------------------------
// labels
// ------------------------------------------------------------------------------------------

#[test]
fn labels_from_karpathy_json() {
    let dir = scratch("karpathy");
    let json = r#"{"dataset": "coco", "images": [
      {"split": "train", "cocoid": 10, "imgid": 0, "filepath": "train2014", "filename": "a.jpg",
       "sentences": [{"tokens": ["a", "dog", "runs"], "raw": "A dog runs."},
                     {"tokens": ["a", "dog", "sits"], "raw": "A dog sits. "}]},
      {"split": "restval", "cocoid": 20, "imgid": 1,
       "sentences": [{"tokens": ["the", "cat", "runs"], "raw": "The cat runs"}]},
      {"split": "val", "cocoid": 30, "imgid": 2,
       "sentences": [{"tokens": ["a", "cat"], "raw": "a cat"}]},
      {"split": "test", "imgid": 3, "filename": "40.jpg",
       "sentences": [{"tokens": ["runs", "a", "zebra"], "raw": "Runs a zebra!"}]}]}"#;
    let input = dir.join("dataset_coco.json");
    std::fs::write(&input, json).unwrap();
    let out = dir.join("data");
    let report = ok(&["labels", s(&input), "--out", s(&out), "--threshold", "1"]);
    assert!(
        report.contains("4 images (train 2, val 1, test 1), 5 captions"),
        "{report}"
    );
    let vocab = Vocab::read(out.join("vocab.txt")).unwrap();
    // Counts: a 4, dog 2, runs 3, cat 2, the 1, sits 1, zebra 1; > 1 kept in first-seen order.
    assert_eq!(vocab.words(), ["a", "dog", "runs", "cat", "UNK"]);
    let c = Captions::read(out.join("captions.bin")).unwrap();
    assert_eq!(c.vocab_size(), 5);
    let ids: Vec<(u64, Split)> = c.iter().map(|i| (i.id, i.split)).collect();
    assert_eq!(
        ids,
        [
            (10, Split::Train),
            (20, Split::Train),
            (30, Split::Val),
            (40, Split::Test)
        ]
    );
    assert_eq!(c.image(0).tokens(1), [1, 2, 5]);
    assert_eq!(
        c.image(0).raw(1),
        "A dog sits. ",
        "raw references are kept untouched"
    );
    assert_eq!(c.image(1).tokens(0), [5, 4, 3]);
    // Reusing the vocabulary (as a reference cocotalk.json) keeps its indices.
    let talk = dir.join("cocotalk.json");
    std::fs::write(
        &talk,
        r#"{"ix_to_word": {"1": "zebra", "2": "a", "3": "UNK"}, "images": []}"#,
    )
    .unwrap();
    let out2 = dir.join("data2");
    ok(&["labels", s(&input), "--out", s(&out2), "--vocab", s(&talk)]);
    let c = Captions::read(out2.join("captions.bin")).unwrap();
    assert_eq!(c.image(3).tokens(0), [3, 2, 1]);
    // Document frequencies of the train split (train + restval: images 10 and 20), as
    // prepro_ngrams.py: full captions + EOS 0, one count per image.
    let r = ok(&["ngrams", "--data", s(&out)]);
    assert!(r.contains("2 train images (3 captions)"), "{r}");
    let df = DocumentFrequencies::read(out.join("train-df.bin")).unwrap();
    assert_eq!(df.num_images(), 2);
    assert_eq!(
        df.get(&[1]),
        1,
        "`a` is in image 10 only (twice, counted once)"
    );
    assert_eq!(df.get(&[3]), 2, "`runs` is in both");
    assert_eq!(df.get(&[3, 0]), 2, "EOS ends every reference");
    assert_eq!(df.get(&[5, 4, 3, 0]), 1, "the UNK cat runs <eos>");
    assert_eq!(df.get(&[4]), 1, "`cat` of the val image is not counted");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn coco_file(images: &[u64], anns: &[(u64, &str)]) -> String {
    let imgs: Vec<String> = images
        .iter()
        .map(|id| format!(r#"{{"id": {id}, "file_name": "COCO_{id}.jpg", "width": 640}}"#))
        .collect();
    let anns: Vec<String> = anns
        .iter()
        .enumerate()
        .map(|(k, (id, cap))| format!(r#"{{"image_id": {id}, "id": {k}, "caption": "{cap}"}}"#))
        .collect();
    format!(
        r#"{{"info": {{}}, "images": [{}], "annotations": [{}]}}"#,
        imgs.join(","),
        anns.join(",")
    )
}

#[test]
fn labels_from_official_coco_with_a_seeded_split() {
    let dir = scratch("coco");
    let train = dir.join("captions_train2014.json");
    let val = dir.join("captions_val2014.json");
    std::fs::write(
        &train,
        coco_file(
            &[5, 3, 9],
            &[
                (3, "A man's T-shirt."),
                (5, "A DOG, running!"),
                (3, "a man in a shirt"),
                (9, "a dog"),
                (5, " . "),
                (5, "the dog runs"),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        &val,
        coco_file(
            &[7, 1],
            &[(1, "a cat"), (7, "a man and a dog"), (1, "the cat")],
        ),
    )
    .unwrap();
    let out = dir.join("data");
    let args = |out: &Path, seed: &str| {
        vec![
            "labels".to_string(),
            s(&train).into(),
            s(&val).into(),
            "--out".into(),
            s(out).into(),
            "--threshold".into(),
            "0".into(),
            "--val".into(),
            "2".into(),
            "--test".into(),
            "1".into(),
            "--split-seed".into(),
            seed.into(),
        ]
    };
    let a: Vec<String> = args(&out, "5");
    let report = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        report.contains("5 images (train 2, val 2, test 1), 8 captions"),
        "{report}"
    );
    assert!(report.contains("1 empty captions dropped"), "{report}");
    let c = Captions::read(out.join("captions.bin")).unwrap();
    let v = Vocab::read(out.join("vocab.txt")).unwrap();
    // Images in file order; captions in annotation order; Karpathy tokenisation.
    assert_eq!(c.iter().map(|i| i.id).collect::<Vec<_>>(), [5, 3, 9, 7, 1]);
    assert_eq!(v.decode(c.image(1).tokens(0)), "a mans tshirt");
    assert_eq!(c.image(1).raw(0), "A man's T-shirt.");
    assert_eq!(v.decode(c.image(0).tokens(0)), "a dog running");
    assert_eq!(c.image(0).len(), 2);
    // The same seed gives the same bytes; the split depends on the seed.
    let again = dir.join("again");
    let a: Vec<String> = args(&again, "5");
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        std::fs::read(out.join("captions.bin")).unwrap(),
        std::fs::read(again.join("captions.bin")).unwrap()
    );
    let splits = |c: &Captions| c.iter().map(|i| i.split).collect::<Vec<_>>();
    let differs = (6..30).any(|seed| {
        let o = dir.join(format!("s{seed}"));
        let a: Vec<String> = args(&o, &seed.to_string());
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        splits(&Captions::read(o.join("captions.bin")).unwrap()) != splits(&c)
    });
    assert!(differs);
    // An annotation for an image that is not listed is named.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, coco_file(&[1], &[(2, "a dog")])).unwrap();
    let e = fails(&[
        "labels",
        s(&bad),
        "--out",
        s(&dir.join("x")),
        "--val",
        "0",
        "--test",
        "0",
    ]);
    assert!(
        e.contains("bad.json") && e.contains("image 2, which is not listed"),
        "{e}"
    );
    assert!(!dir.join("x").join("captions.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------------------------------------
// bu-features
// ------------------------------------------------------------------------------------------

const DIM: usize = 16;

struct TsvImage {
    id: u64,
    boxes: Vec<f32>,
    feats: Vec<f32>,
}

/// `n` images with 10-100 boxes of `DIM` values (adaptive, like the real files), seeded.
fn tsv_images(n: usize, first_id: u64) -> Vec<TsvImage> {
    let mut rng = Philox::new(first_id);
    (0..n)
        .map(|k| {
            let b = 10 + rng.below(91) as usize;
            let mut feats = vec![0.0f32; b * DIM];
            rng.fill_uniform_f32(&mut feats);
            // ReLU-like values of varied magnitude, some exact zeros.
            for v in feats.iter_mut() {
                *v = if *v < 0.2 { 0.0 } else { (*v - 0.2) * 30.0 };
            }
            let boxes: Vec<f32> = (0..b * 4).map(|_| rng.below(600) as f32).collect();
            TsvImage {
                id: first_id + 7 * k as u64,
                boxes,
                feats,
            }
        })
        .collect()
}

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

fn tsv_line(img: &TsvImage) -> String {
    format!(
        "{}\t640\t480\t{}\t{}\t{}\n",
        img.id,
        img.boxes.len() / 4,
        b64(&img.boxes),
        b64(&img.feats)
    )
}

fn write_tsv(path: &Path, imgs: &[TsvImage]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (k, img) in imgs.iter().enumerate() {
        let mut line = tsv_line(img);
        if k == 3 {
            // The test2014 files' missing base64 padding must be accepted.
            line = line.replace('=', "");
        }
        f.write_all(line.as_bytes()).unwrap();
    }
}

#[test]
fn bu_features_round_trip_f32_exact_and_f16_rounded() {
    let dir = scratch("bu");
    let (a, b) = (tsv_images(180, 1000), tsv_images(120, 5_000_000));
    write_tsv(&dir.join("part0.tsv"), &a);
    write_tsv(&dir.join("part1.tsv"), &b);
    let (p0, p1) = (dir.join("part0.tsv"), dir.join("part1.tsv"));
    for dtype in ["f32", "f16"] {
        let out = dir.join(dtype);
        let report = ok(&[
            "bu-features",
            s(&p0),
            s(&p1),
            "--out",
            s(&out),
            "--dim",
            "16",
            "--dtype",
            dtype,
            "--threads",
            "3",
        ]);
        assert!(report.contains("300 images"), "{report}");
        let store = FeatureStore::open(out.join("feats.bin")).unwrap();
        assert_eq!(store.len(), 300);
        assert_eq!(store.dtype(), Dtype::parse(dtype).unwrap());
        let all: Vec<&TsvImage> = a.iter().chain(&b).collect();
        assert_eq!(
            store.image_ids().collect::<Vec<_>>(),
            all.iter().map(|i| i.id).collect::<Vec<_>>(),
            "input order is kept"
        );
        for img in all {
            let r = store.get(img.id).unwrap();
            assert_eq!(r.boxes.unwrap(), &img.boxes[..]);
            let got = r.feats.to_f32_vec();
            for (x, y) in got.iter().zip(&img.feats) {
                if dtype == "f32" {
                    assert_eq!(x.to_bits(), y.to_bits());
                } else {
                    assert!((x - y).abs() <= y.abs() * 2f32.powi(-11) + 2f32.powi(-25));
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bu_features_bad_rows_are_named_and_leave_nothing_behind() {
    let dir = scratch("bu-bad");
    let imgs = tsv_images(6, 1);
    let good: Vec<String> = imgs.iter().map(tsv_line).collect();
    let out = dir.join("out");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad base64",
            // The first 'A' is inside a base64 field (the numeric fields have none).
            good[2].replacen('A', "*", 1),
            "line 3: image 15: bad base64",
        ),
        (
            "wrong sizes",
            {
                let n = imgs[2].boxes.len() / 4;
                good[2].replacen(&format!("\t{n}\t"), &format!("\t{}\t", n + 1), 1)
            },
            "line 3: image 15: size mismatch",
        ),
        (
            "field count",
            good[2].replacen("\t640", "", 1),
            "line 3: 5 tab-separated fields, expected 6",
        ),
        (
            "duplicate id",
            good[0].clone(),
            "line 3: duplicate image id 1 (first at",
        ),
    ];
    for (what, bad_line, expect) in &cases {
        let tsv = dir.join("in.tsv");
        let mut lines = good.clone();
        lines[2] = bad_line.clone();
        std::fs::write(&tsv, lines.concat()).unwrap();
        let e = fails(&["bu-features", s(&tsv), "--out", s(&out), "--dim", "16"]);
        assert!(e.contains("in.tsv: ") && e.contains(expect), "{what}: {e}");
        assert!(files(&out).is_empty(), "{what}: left {:?}", files(&out));
        // Skipping instead: the other rows are written, the bad one reported.
        let report = run(&[
            "bu-features",
            s(&tsv),
            "--out",
            s(&out),
            "--dim",
            "16",
            "--skip-bad-rows",
        ]);
        let err = String::from_utf8_lossy(&report.stderr);
        assert!(report.status.success(), "{what}: {err}");
        assert!(
            err.contains("skipped") && err.contains(expect),
            "{what}: {err}"
        );
        let store = FeatureStore::open(out.join("feats.bin")).unwrap();
        assert_eq!(store.len(), 5, "{what}");
        std::fs::remove_file(out.join("feats.bin")).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------------------------------------
// npz-features
// ------------------------------------------------------------------------------------------

/// A tiny `.npy` writer: version 1.0, little-endian f32 or f64, C order.
fn npy(shape: &[usize], values: &[f32], f64s: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let descr = if f64s { "<f8" } else { "<f4" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in values {
        if f64s {
            out.extend_from_slice(&f64::from(v).to_le_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// An `.npz` as `np.savez_compressed` writes it: a zip of deflated `.npy` members.
fn npz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    buf.into_inner()
}

#[test]
fn npz_features_round_trip_and_bad_files() {
    let dir = scratch("npz");
    let (att, boxdir) = (dir.join("cocobu_att"), dir.join("cocobu_box"));
    std::fs::create_dir_all(&att).unwrap();
    std::fs::create_dir_all(&boxdir).unwrap();
    let imgs = tsv_images(25, 300);
    for (k, img) in imgs.iter().enumerate() {
        let n = img.boxes.len() / 4;
        let feat = npy(&[n, DIM], &img.feats, false);
        if k % 5 == 4 {
            // The loader also reads plain .npy features.
            std::fs::write(att.join(format!("{}.npy", img.id)), feat).unwrap();
        } else {
            let z = npz(&[("feat.npy", feat)]);
            std::fs::write(att.join(format!("{}.npz", img.id)), z).unwrap();
        }
        std::fs::write(
            boxdir.join(format!("{}.npy", img.id)),
            npy(&[n, 4], &img.boxes, k % 2 == 0),
        )
        .unwrap();
    }
    let out = dir.join("data");
    let args = [
        "npz-features",
        "--att",
        s(&att),
        "--box",
        s(&boxdir),
        "--out",
        s(&out),
    ];
    let report = ok(&[&args[..], &["--dim", "16", "--threads", "2"]].concat());
    assert!(report.contains("25 images"), "{report}");
    let store = FeatureStore::open(out.join("feats.bin")).unwrap();
    let mut ids: Vec<u64> = imgs.iter().map(|i| i.id).collect();
    ids.sort();
    assert_eq!(store.image_ids().collect::<Vec<_>>(), ids, "sorted by id");
    for img in &imgs {
        let r = store.get(img.id).unwrap();
        assert_eq!(r.feats.to_f32_vec(), img.feats);
        assert_eq!(r.boxes.unwrap(), &img.boxes[..]);
    }
    // A damaged file is named, and no store is left behind.
    std::fs::remove_file(out.join("feats.bin")).unwrap();
    let victim = att.join(format!("{}.npz", imgs[1].id));
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&[&args[..], &["--dim", "16"]].concat());
    assert!(e.contains(&format!("{}.npz", imgs[1].id)), "{e}");
    assert!(files(&out).is_empty(), "{:?}", files(&out));
    // A member other than `feat` is named too.
    std::fs::write(
        &victim,
        npz(&[("x.npy", npy(&[1, DIM], &[0.0; DIM], false))]),
    )
    .unwrap();
    let e = fails(&[&args[..], &["--dim", "16"]].concat());
    assert!(e.contains("no `feat` array (members: x.npy)"), "{e}");
    // A dim that does not divide the values.
    std::fs::write(
        &victim,
        npz(&[("feat.npy", npy(&[1, 5], &[0.0; 5], false))]),
    )
    .unwrap();
    let e = fails(&[&args[..], &["--dim", "16"]].concat());
    assert!(e.contains("not a whole number of 16-value regions"), "{e}");
    assert!(files(&out).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------------------------------------
// synth, inspect, a folder that does not agree
// ------------------------------------------------------------------------------------------

#[test]
fn synth_then_inspect_and_damage() {
    let dir = scratch("synth");
    let out = dir.join("data");
    ok(&[
        "synth",
        "--out",
        s(&out),
        "--train",
        "30",
        "--val",
        "5",
        "--test",
        "5",
        "--dim",
        "8",
    ]);
    let d = Dataset::open(&out).unwrap();
    assert_eq!(d.captions.len(), 40);
    let r = ok(&["inspect", s(&out.join("feats.bin"))]);
    assert!(
        r.contains("feature store") && r.contains("40 images") && r.contains("dim 8"),
        "{r}"
    );
    let r = ok(&["inspect", s(&out.join("captions.bin"))]);
    assert!(
        r.contains("captions") && r.contains("train 30, val 5, test 5"),
        "{r}"
    );
    let r = ok(&["inspect", s(&out.join("vocab.txt"))]);
    assert!(r.contains("vocabulary: 46 words"), "{r}");
    let r = ok(&["inspect", s(&out.join("train-df.bin"))]);
    assert!(
        r.contains("document frequencies") && r.contains("over 30 images"),
        "{r}"
    );
    let df = DocumentFrequencies::read(out.join("train-df.bin")).unwrap();
    assert_eq!(
        df,
        aoanet::data::ngrams::document_frequencies(&d.captions, Split::Train, 2)
    );
    let r = ok(&["inspect", s(&out)]);
    assert!(r.contains("a consistent data folder"), "{r}");
    // Damage: a truncated store and a flipped captions byte are named.
    let feats = std::fs::read(out.join("feats.bin")).unwrap();
    let cut = dir.join("cut.bin");
    std::fs::write(&cut, &feats[..feats.len() - 10]).unwrap();
    let e = fails(&["inspect", s(&cut)]);
    assert!(
        e.contains("cut.bin") && e.contains("truncated: expected"),
        "{e}"
    );
    let mut caps = std::fs::read(out.join("captions.bin")).unwrap();
    let k = caps.len() - 3;
    caps[k] ^= 0x20;
    let bad = dir.join("bad-captions.bin");
    std::fs::write(&bad, &caps).unwrap();
    let e = fails(&["inspect", s(&bad)]);
    assert!(
        e.contains("bad-captions.bin") && e.contains("checksum mismatch"),
        "{e}"
    );
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, [0u8, 1, 2, 3, 200, 201]).unwrap();
    let e = fails(&["inspect", s(&junk)]);
    assert!(e.contains("unknown kind of file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn captions_for_images_missing_from_the_store_are_named() {
    let dir = scratch("missing");
    let imgs = tsv_images(3, 10); // ids 10, 17, 24
    let tsv = dir.join("feats.tsv");
    write_tsv(&tsv, &imgs[..2]);
    let coco = dir.join("captions.json");
    std::fs::write(
        &coco,
        coco_file(
            &[10, 17, 24],
            &[(10, "a dog"), (17, "a cat"), (24, "a cow")],
        ),
    )
    .unwrap();
    let out = dir.join("data");
    ok(&[
        "labels",
        s(&coco),
        "--out",
        s(&out),
        "--val",
        "1",
        "--test",
        "0",
        "--threshold",
        "0",
    ]);
    ok(&["bu-features", s(&tsv), "--out", s(&out), "--dim", "16"]);
    let e = fails(&["inspect", s(&out)]);
    assert!(
        e.contains("captions.bin") && e.contains("image 24") && e.contains("no features"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
