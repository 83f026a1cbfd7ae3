//! safetensors files: every dtype round-trips, every damaged file is a named error (truncated
//! anywhere, corrupt header, overlapping or gapped offsets, wrong sizes), the strict loader
//! names every problem at once and loads nothing partially, and the reference fixtures load.

use aoanet::io::{FileDtype, IntTensor, SafeTensors, Unexpected, Writer, load_named, save_named};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small file with every kind of entry: f32, f64, f16, bf16, an empty tensor, a scalar,
/// and integer tensors of several widths.
fn mixed_writer() -> (Writer, Vec<(String, Tensor)>) {
    let mut rng = Philox::new(5);
    let floats = vec![
        (
            "w32".to_string(),
            Tensor::randn(&[3, 4], DType::F32, &mut rng),
        ),
        ("w64".to_string(), Tensor::randn(&[5], DType::F64, &mut rng)),
        (
            "h16".to_string(),
            Tensor::randn(&[2, 2], DType::F32, &mut rng)
                .to_dtype(DType::F16)
                .unwrap(),
        ),
        (
            "b16".to_string(),
            Tensor::randn(&[3], DType::F32, &mut rng)
                .to_dtype(DType::BF16)
                .unwrap(),
        ),
        ("empty".to_string(), Tensor::zeros(&[0, 3], DType::F32)),
        ("scalar".to_string(), Tensor::scalar(-2.5, DType::F64)),
    ];
    let mut w = Writer::new();
    w.add_all("", &floats, None).unwrap();
    let ints: [(&str, FileDtype, Vec<i64>); 6] = [
        ("i64", FileDtype::I64, vec![i64::MIN, -1, 0, i64::MAX]),
        ("i32", FileDtype::I32, vec![i32::MIN.into(), 5]),
        ("u8", FileDtype::U8, vec![0, 255, 7]),
        ("i16", FileDtype::I16, vec![-300, 300]),
        ("bool", FileDtype::Bool, vec![1, 0, 1]),
        ("u64", FileDtype::U64, vec![0, i64::MAX]),
    ];
    for (name, dt, v) in ints {
        let t = IntTensor::new(&[v.len()], v)
            .unwrap()
            .with_dtype(dt)
            .unwrap();
        w.add_int(name, t).unwrap();
    }
    w.set_metadata("epoch", "3")
        .set_metadata("note", "ünïcode \"quoted\"");
    (w, floats)
}

#[test]
fn every_dtype_round_trips_bit_exactly_through_a_file() {
    let dir = scratch("roundtrip");
    let path = dir.join("all.safetensors");
    let (w, floats) = mixed_writer();
    w.write(&path).unwrap();
    let st = SafeTensors::open(&path).unwrap();
    assert_eq!(st.len(), 12);
    assert_eq!(st.meta("epoch"), Some("3"));
    assert_eq!(st.meta("note"), Some("ünïcode \"quoted\""));
    for (name, t) in &floats {
        let back = st.tensor(name).unwrap();
        assert_eq!(back.dtype(), t.dtype(), "{name}");
        assert_eq!(back.shape(), t.shape(), "{name}");
        let (a, b) = (back.to_vec_f64(), t.to_vec_f64());
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}"
        );
    }
    let i = st.int_tensor("i64").unwrap();
    assert_eq!(i.data, vec![i64::MIN, -1, 0, i64::MAX]);
    assert_eq!(i.dtype, FileDtype::I64);
    assert_eq!(st.int_tensor("i32").unwrap().data, vec![-2147483648, 5]);
    assert_eq!(st.int_tensor("u8").unwrap().data, vec![0, 255, 7]);
    assert_eq!(st.int_tensor("i16").unwrap().data, vec![-300, 300]);
    assert_eq!(st.int_tensor("bool").unwrap().data, vec![1, 0, 1]);
    assert_eq!(st.int_tensor("u64").unwrap().data, vec![0, i64::MAX]);
    assert_eq!(st.int_tensor("u8").unwrap().dtype, FileDtype::U8);
    assert_eq!(st.info("u8").unwrap().data_offsets.len(), 3);
    // Writing what was read gives the same bytes (deterministic, nothing lost).
    let mut w2 = Writer::new();
    for name in st.names() {
        match st.info(name).unwrap().dtype.float() {
            Some(_) => w2.add(name, &st.tensor(name).unwrap()).unwrap(),
            None => w2.add_int(name, st.int_tensor(name).unwrap()).unwrap(),
        };
    }
    for (k, v) in st.metadata() {
        w2.set_metadata(k.clone(), v.clone());
    }
    assert_eq!(w2.to_bytes().unwrap(), std::fs::read(&path).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn conversions_on_read_and_write_round_to_nearest() {
    let x = Tensor::from_vec(vec![1.0f64 / 3.0, 1e-10, -65504.0, 2.0], &[4]).unwrap();
    let mut w = Writer::new();
    w.add_as("h", &x, DType::F16).unwrap();
    w.add_as("b", &x, DType::BF16).unwrap();
    w.add_as("f", &x, DType::F32).unwrap();
    w.add("d", &x).unwrap();
    let st = SafeTensors::from_bytes(w.to_bytes().unwrap(), "conv").unwrap();
    assert_eq!(st.info("h").unwrap().dtype, FileDtype::F16);
    let h = st.tensor_as("h", DType::F32).unwrap().to_vec_f32();
    let want: Vec<f32> = x
        .to_vec_f64()
        .iter()
        .map(|&v| half::f16::from_f64(v).to_f32())
        .collect();
    assert_eq!(h, want);
    let b = st.tensor_as("b", DType::F64).unwrap().to_vec_f64();
    let want: Vec<f64> = x
        .to_vec_f64()
        .iter()
        .map(|&v| half::bf16::from_f64(v).to_f64())
        .collect();
    assert_eq!(b, want);
    let f = st.tensor("f").unwrap();
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(
        f.to_vec_f32(),
        x.to_vec_f64().iter().map(|&v| v as f32).collect::<Vec<_>>()
    );
    // f64 → f16 on read: one rounding from the stored value.
    let d16 = st.tensor_as("d", DType::F16).unwrap();
    assert_eq!(d16.dtype(), DType::F16);
    assert_eq!(
        d16.to_vec_f64(),
        x.to_vec_f64()
            .iter()
            .map(|&v| half::f16::from_f64(v).to_f64())
            .collect::<Vec<_>>()
    );
    // Reading with the wrong accessor is a named error.
    let e = st.int_tensor("d").unwrap_err().to_string();
    assert!(e.contains("\"d\"") && e.contains("F64"), "{e}");
    let e = st.tensor("nope").unwrap_err().to_string();
    assert!(e.contains("conv") && e.contains("nope"), "{e}");
}

/// Writes `bytes` as a file and opens it, returning the error text.
fn open_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let e = SafeTensors::open(&p).unwrap_err().to_string();
    assert!(e.contains(name), "error does not name the file: {e}");
    e
}

#[test]
fn a_file_truncated_anywhere_is_a_named_truncation_error() {
    let dir = scratch("trunc");
    let (w, _) = mixed_writer();
    let bytes = w.to_bytes().unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Every cut inside the length field and the header, and a spread of cuts in the data.
    let data_cuts = (header_end..bytes.len())
        .step_by(7)
        .chain([bytes.len() - 1]);
    for cut in (0..header_end).chain(data_cuts) {
        // In memory (hundreds of cuts), and through a real file for a spread of them.
        let e = SafeTensors::from_bytes(bytes[..cut].to_vec(), "cut.safetensors")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cut.safetensors: "), "{e}");
        if cut % 50 == 0 {
            let from_file = open_err(&dir, "cut.safetensors", &bytes[..cut]);
            assert!(from_file.ends_with(&e), "{from_file} vs {e}");
        }
        assert!(
            e.contains("truncated: expected") && e.contains(&format!("found {cut}")),
            "cut at {cut}: {e}"
        );
    }
    // The data cuts say how long the file should be.
    let e = open_err(&dir, "cut.safetensors", &bytes[..bytes.len() - 1]);
    assert!(
        e.contains(&format!(
            "truncated: expected {} bytes, found {}",
            bytes.len(),
            bytes.len() - 1
        )),
        "{e}"
    );
    // The whole file opens.
    std::fs::write(dir.join("ok.safetensors"), &bytes).unwrap();
    SafeTensors::open(dir.join("ok.safetensors")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file from a hand-written header and `data_len` zero bytes of data.
fn raw_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

#[test]
fn damaged_headers_are_named_errors() {
    let dir = scratch("damaged");
    let t = |offs: &str| format!(r#""dtype":"F32","shape":[2],"data_offsets":{offs}"#);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "json",
            raw_file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]"#, 8),
            "invalid JSON",
        ),
        (
            "notobj",
            raw_file("[1, 2, 3]", 0),
            "does not start with '{'",
        ),
        (
            "overlap",
            raw_file(
                &format!("{{\"a\":{{{}}},\"b\":{{{}}}}}", t("[0,8]"), t("[4,12]")),
                12,
            ),
            "overlap",
        ),
        (
            "gap",
            raw_file(
                &format!("{{\"a\":{{{}}},\"b\":{{{}}}}}", t("[0,8]"), t("[12,20]")),
                20,
            ),
            "belong to no tensor",
        ),
        (
            "trailing",
            raw_file(&format!("{{\"a\":{{{}}}}}", t("[0,8]")), 9),
            "1 bytes after the last tensor",
        ),
        (
            "size",
            raw_file(&format!("{{\"a\":{{{}}}}}", t("[0,12]")), 12),
            "needs 8 bytes but its data_offsets [0, 12] span 12",
        ),
        (
            "reversed",
            raw_file(&format!("{{\"a\":{{{}}}}}", t("[8,0]")), 8),
            "begin ≤ end",
        ),
        (
            "dtype",
            raw_file(
                r#"{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}"#,
                8,
            ),
            "unknown dtype \"F17\"",
        ),
        (
            "shape",
            raw_file(
                r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
                8,
            ),
            "non-negative integers",
        ),
        (
            "dup",
            raw_file(
                &format!("{{\"a\":{{{}}},\"a\":{{{}}}}}", t("[0,8]"), t("[8,16]")),
                16,
            ),
            "names \"a\" twice",
        ),
        (
            "meta",
            raw_file(r#"{"__metadata__":{"k":3}}"#, 0),
            "not a string",
        ),
        ("huge", u64::MAX.to_le_bytes().to_vec(), "100 MiB"),
        (
            "utf8",
            {
                let mut v = raw_file("{\"a\":1}", 0);
                v[9] = 0xff;
                v
            },
            "not UTF-8",
        ),
    ];
    for (name, bytes, want) in cases {
        let e = open_err(&dir, &format!("{name}.safetensors"), &bytes);
        assert!(e.contains(want), "{name}: {e}");
    }
    // A header padded with spaces, an empty file with only metadata, and F8 data open; reading
    // F8 is a named error.
    let st = SafeTensors::from_bytes(
        raw_file(r#"{"__metadata__":{"k":"v"}}    "#, 0),
        "meta-only",
    )
    .unwrap();
    assert!(st.is_empty() && st.meta("k") == Some("v"));
    let st = SafeTensors::from_bytes(
        raw_file(
            r#"{"f8":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]}}"#,
            3,
        ),
        "f8",
    )
    .unwrap();
    assert!(st.tensor("f8").unwrap_err().to_string().contains("F8_E4M3"));
    assert!(st.int_tensor("f8").is_err());
    // Opening a missing file names it.
    let e = SafeTensors::open(dir.join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn params() -> Vec<(String, Tensor)> {
    let mut rng = Philox::new(9);
    vec![
        (
            "enc.weight".into(),
            Tensor::randn(&[4, 3], DType::F32, &mut rng).requiring_grad(),
        ),
        (
            "enc.bias".into(),
            Tensor::randn(&[4], DType::F32, &mut rng).requiring_grad(),
        ),
        (
            "logit.weight".into(),
            Tensor::randn(&[5, 4], DType::F64, &mut rng).requiring_grad(),
        ),
    ]
}

#[test]
fn checkpoints_load_by_name_in_any_stored_dtype() {
    let dir = scratch("load");
    let src = params();
    for stored in [None, Some(DType::F64), Some(DType::F16), Some(DType::BF16)] {
        let path = dir.join("ckpt.safetensors");
        save_named(&path, &src, stored, &[("iteration", "42")]).unwrap();
        let dst: Vec<(String, Tensor)> = params()
            .into_iter()
            .map(|(n, t)| (n, t.zeros_like().requiring_grad()))
            .collect();
        let st = load_named(&path, &dst).unwrap();
        assert_eq!(st.meta("iteration"), Some("42"));
        for ((name, a), (_, b)) in src.iter().zip(&dst) {
            assert_eq!(
                b.dtype(),
                a.dtype(),
                "{name}: the parameter keeps its dtype"
            );
            let want: Vec<f64> = match stored {
                Some(DType::F16) => a
                    .to_vec_f64()
                    .iter()
                    .map(|&v| half::f16::from_f64(v).to_f64())
                    .collect(),
                Some(DType::BF16) => a
                    .to_vec_f64()
                    .iter()
                    .map(|&v| half::bf16::from_f64(v).to_f64())
                    .collect(),
                _ => a.to_vec_f64(),
            };
            let want: Vec<f64> = if a.dtype() == DType::F32 {
                want.iter().map(|&v| f64::from(v as f32)).collect()
            } else {
                want
            };
            assert_eq!(b.to_vec_f64(), want, "{name} stored as {stored:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_mismatched_checkpoint_names_every_problem_and_loads_nothing() {
    let dir = scratch("strict");
    let path = dir.join("bad.safetensors");
    let mut rng = Philox::new(3);
    let mut w = Writer::new();
    // enc.weight has the right shape, enc.bias the wrong one, logit.weight is absent, and
    // there are two foreign tensors, one of them integer.
    w.add("enc.weight", &Tensor::randn(&[4, 3], DType::F32, &mut rng))
        .unwrap();
    w.add("enc.bias", &Tensor::randn(&[5], DType::F32, &mut rng))
        .unwrap();
    w.add("extra.thing", &Tensor::randn(&[2], DType::F32, &mut rng))
        .unwrap();
    w.add_int("logit.bias", IntTensor::new(&[1], vec![3]).unwrap())
        .unwrap();
    w.write(&path).unwrap();

    let dst = params();
    let before: Vec<Vec<f64>> = dst.iter().map(|(_, t)| t.to_vec_f64()).collect();
    let e = load_named(&path, &dst).unwrap_err().to_string();
    for want in [
        "bad.safetensors",
        "1 missing",
        "2 unexpected",
        "1 with the wrong shape",
        "logit.weight [5, 4]",
        "extra.thing [2]",
        "logit.bias [1]",
        "enc.bias is [5] in the file, the model expects [4]",
        "nothing was loaded",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    // enc.weight matched, but nothing was written: all or nothing.
    let after: Vec<Vec<f64>> = dst.iter().map(|(_, t)| t.to_vec_f64()).collect();
    assert_eq!(before, after);

    // An integer tensor where a parameter is expected is named too.
    let mut w = Writer::new();
    w.add_int("p", IntTensor::new(&[2], vec![1, 2]).unwrap())
        .unwrap();
    let st = SafeTensors::from_bytes(w.to_bytes().unwrap(), "ints").unwrap();
    let p = vec![("p".to_string(), Tensor::zeros(&[2], DType::F32))];
    let e = st
        .load_into("", &p, Unexpected::Error)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not floating point: p (I64)"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prefixed_loading_ignores_or_reports_other_tensors() {
    let src = params();
    let mut w = Writer::new();
    w.add_all("param.", &src, None).unwrap();
    w.add_all("trained.", &src, None).unwrap();
    w.add("trained.greedy.logprobs", &Tensor::zeros(&[2], DType::F64))
        .unwrap();
    let st = SafeTensors::from_bytes(w.to_bytes().unwrap(), "prefixed").unwrap();
    let dst: Vec<(String, Tensor)> = src
        .iter()
        .map(|(n, t)| (n.clone(), t.zeros_like()))
        .collect();
    st.load_into("param.", &dst, Unexpected::Error).unwrap();
    assert_eq!(dst[2].1.to_vec_f64(), src[2].1.to_vec_f64());
    let e = st
        .load_into("trained.", &dst, Unexpected::Error)
        .unwrap_err()
        .to_string();
    assert!(e.contains("greedy.logprobs [2]"), "{e}");
    st.load_into("trained.", &dst, Unexpected::Ignore).unwrap();
    let dup = vec![dst[0].clone(), dst[0].clone()];
    assert!(st.load_into("param.", &dup, Unexpected::Ignore).is_err());
}

#[test]
fn overwriting_a_checkpoint_replaces_it_whole_and_leaves_no_temporary() {
    let dir = scratch("keep");
    let path = dir.join("model.safetensors");
    save_named(&path, &params(), None, &[("v", "1")]).unwrap();
    // Keep the old file open (mapped) while it is replaced: it still reads the old content.
    let old = SafeTensors::open(&path).unwrap();
    let changed: Vec<(String, Tensor)> = params()
        .into_iter()
        .map(|(n, t)| (n, t.mul_scalar(2.0).unwrap()))
        .collect();
    save_named(&path, &changed, None, &[("v", "2")]).unwrap();
    assert_eq!(old.meta("v"), Some("1"));
    assert_eq!(
        old.tensor("enc.bias").unwrap().to_vec_f64(),
        params()[1].1.to_vec_f64()
    );
    let new = SafeTensors::open(&path).unwrap();
    assert_eq!(new.meta("v"), Some("2"));
    assert_eq!(
        new.tensor("enc.bias").unwrap().to_vec_f64(),
        changed[1].1.to_vec_f64()
    );
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary left behind");
    // A target folder that does not exist is an error naming it.
    let e = save_named(dir.join("gone/model.safetensors"), &params(), None, &[]).unwrap_err();
    assert!(e.to_string().contains("gone"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The reference fixtures' folder: `AOANET_PARITY_DIR` if set, else `shared/fixtures/parity`
/// in the nearest folder above the crate that has one.
fn fixture_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("AOANET_PARITY_DIR") {
        return Some(PathBuf::from(d));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    if local.is_dir() {
        return Some(local);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures/parity"))
        .find(|d| d.is_dir())
}

#[test]
fn the_reference_fixtures_load() {
    let Some(dir) = fixture_dir() else {
        eprintln!(
            "skipped: no parity fixtures (set AOANET_PARITY_DIR or add shared/fixtures/parity)"
        );
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        eprintln!("skipped: no *.safetensors in {}", dir.display());
        return;
    }
    for path in files {
        let st = SafeTensors::open(&path).unwrap();
        let json = aoanet::json::read_file(path.with_extension("json")).unwrap();
        let count = json.get("num_tensors").and_then(|v| v.as_u64());
        if let Some(n) = count {
            assert_eq!(st.len() as u64, n, "{}", path.display());
        }
        let (mut floats, mut ints) = (0, 0);
        for name in st.names() {
            let info = st.info(name).unwrap();
            if info.dtype.float().is_some() {
                let t = st.tensor(name).unwrap();
                assert_eq!(t.dtype(), DType::F64, "{name}");
                assert!(t.to_vec_f64().iter().all(|v| v.is_finite()), "{name}");
                floats += 1;
            } else {
                let t = st.int_tensor(name).unwrap();
                assert_eq!(t.dtype, FileDtype::I64, "{name}");
                t.to_usize().unwrap();
                ints += 1;
            }
        }
        // Token ids are integers; the labels hold BOS 0 in column 0.
        let labels = st.int_tensor("in.labels").unwrap();
        assert_eq!(labels.shape.len(), 2);
        assert!(labels.data.iter().step_by(labels.shape[1]).all(|&x| x == 0));
        eprintln!(
            "{}: {floats} float and {ints} integer tensors",
            path.file_name().unwrap().to_string_lossy()
        );
    }
}
