//! Loading the parity fixtures and comparing tensors against them.

pub mod checks;

use aoanet::json::{self, Value};
use aoanet::model::AoaConfig;
use aoanet::tensor::{DType, Tensor};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A fixture: its JSON and its tensors, tracking which tensors a test has looked at.
pub struct Fixture {
    pub name: String,
    pub json: Value,
    floats: BTreeMap<String, Tensor>,
    ints: BTreeMap<String, (Vec<usize>, Vec<i64>)>,
    used: RefCell<BTreeSet<String>>,
}

/// How close a result must be to the reference.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

impl Tolerance {
    /// f64: the same maths in the same precision; only summation order differs (≤ 1e-9).
    /// f32: 1e-5 + 1e-4·|ref| (f32 roundoff through ~20 layers of the model).
    pub fn for_dtype(dtype: DType) -> Self {
        match dtype {
            DType::F64 => Tolerance {
                atol: 1e-9,
                rtol: 0.0,
            },
            _ => Tolerance {
                atol: 1e-5,
                rtol: 1e-4,
            },
        }
    }
}

/// The fixture folders to read.
pub fn fixture_dirs() -> Vec<PathBuf> {
    if let Ok(d) = std::env::var("AOANET_PARITY_DIR") {
        return vec![PathBuf::from(d)];
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("tests/fixtures/parity"),
        root.join("../shared/fixtures/parity"),
    ]
    .into_iter()
    .filter(|d| d.is_dir())
    .collect()
}

/// Every fixture (by name; a name in several folders is read once).
pub fn fixtures() -> Vec<Fixture> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dir in fixture_dirs() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        for f in files {
            let name = f.file_stem().unwrap().to_string_lossy().to_string();
            if seen.insert(name.clone()) {
                out.push(Fixture::load(&f));
            }
        }
    }
    assert!(
        !out.is_empty(),
        "no parity fixtures found in {:?}",
        fixture_dirs()
    );
    out
}

impl Fixture {
    fn load(path: &Path) -> Fixture {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = json::parse(std::str::from_utf8(&bytes[8..8 + n]).unwrap(), "header").unwrap();
        let data = &bytes[8 + n..];
        let mut floats = BTreeMap::new();
        let mut ints = BTreeMap::new();
        for (k, v) in header.as_object().unwrap() {
            if k == "__metadata__" {
                continue;
            }
            let shape: Vec<usize> = v
                .get("shape")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let off = v.get("data_offsets").unwrap().as_array().unwrap();
            let (a, b) = (
                off[0].as_u64().unwrap() as usize,
                off[1].as_u64().unwrap() as usize,
            );
            let raw = &data[a..b];
            match v.get("dtype").unwrap().as_str().unwrap() {
                "F64" => {
                    let vals: Vec<f64> = raw
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    floats.insert(k.clone(), Tensor::from_vec(vals, &shape).unwrap());
                }
                "I64" => {
                    let vals: Vec<i64> = raw
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    ints.insert(k.clone(), (shape, vals));
                }
                other => panic!("{}: unexpected dtype {other} for {k}", path.display()),
            }
        }
        let json = json::read_file(path.with_extension("json")).unwrap();
        Fixture {
            name: path.file_stem().unwrap().to_string_lossy().to_string(),
            json,
            floats,
            ints,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// The model configuration: the fixture's sizes and `config.overrides`.
    pub fn config(&self) -> AoaConfig {
        let c = self.json.get("config").unwrap();
        let v = c.get("vocab_size").unwrap().as_u64().unwrap() as usize;
        let f = c.get("att_feat_size").unwrap().as_u64().unwrap() as usize;
        let mut cfg = AoaConfig::reference(v);
        cfg.att_feat_size = f;
        cfg.fc_feat_size = f;
        for key in [
            "rnn_size",
            "input_encoding_size",
            "num_heads",
            "refiner_layers",
            "max_length",
            "seq_length",
        ] {
            cfg.set(key, c.get(key).unwrap()).unwrap();
        }
        if let Some(o) = c.get("overrides").and_then(|o| o.as_object()) {
            for (k, val) in o {
                cfg.set(k, val).unwrap();
            }
        }
        cfg
    }

    /// Region counts per image (all N when the fixture has no masks).
    pub fn region_counts(&self) -> Vec<usize> {
        let c = self.json.get("config").unwrap();
        c.get("regions")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    }

    /// Caption rows per image.
    pub fn seq_per_img(&self) -> usize {
        self.json
            .get("config")
            .unwrap()
            .get("seq_per_img")
            .unwrap()
            .as_u64()
            .unwrap() as usize
    }

    /// `in.labels` as word ids (shape, row-major values).
    pub fn labels(&self) -> (Vec<usize>, Vec<usize>) {
        let (shape, v) = self.ints("in.labels");
        (shape, v.into_iter().map(|x| x as usize).collect())
    }

    /// A float tensor that must exist; marks it used.
    pub fn take(&self, key: &str) -> Tensor {
        self.get(key)
            .unwrap_or_else(|| panic!("{}: no tensor {key}", self.name))
    }

    /// A float tensor if present; marks it used.
    pub fn get(&self, key: &str) -> Option<Tensor> {
        let t = self.floats.get(key).cloned();
        if t.is_some() {
            self.used.borrow_mut().insert(key.to_string());
        }
        t
    }

    /// An integer tensor that must exist (shape, values); marks it used.
    pub fn ints(&self, key: &str) -> (Vec<usize>, Vec<i64>) {
        self.used.borrow_mut().insert(key.to_string());
        self.ints
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("{}: no tensor {key}", self.name))
    }

    /// Compares `got` with the fixture tensor `key` within `tol`, per element
    /// `|got − ref| ≤ atol + rtol·|ref|`; `rows` restricts a `[B, N, …]` tensor to each image's
    /// first `rows[b]` regions (padded rows are never used by the model). Prints the worst
    /// element; panics on failure.
    pub fn compare(&self, key: &str, got: &Tensor, tol: Tolerance, rows: Option<&[usize]>) -> f64 {
        let want = self.take(key);
        assert_eq!(got.shape(), want.shape(), "{}: {key}: shape", self.name);
        let (g, w) = (got.to_vec_f64(), want.to_vec_f64());
        let shape = want.shape();
        let keep = |i: usize| -> bool {
            match rows {
                None => true,
                Some(counts) => {
                    let per_image: usize = shape[1..].iter().product();
                    let per_row: usize = shape[2..].iter().product();
                    let (b, r) = (i / per_image, (i % per_image) / per_row);
                    r < counts[b]
                }
            }
        };
        let mut worst = (0.0f64, 0usize);
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            if !keep(i) {
                continue;
            }
            let excess = (a - b).abs() - (tol.atol + tol.rtol * b.abs());
            let err = (a - b).abs();
            if excess > 0.0 || !a.is_finite() {
                panic!(
                    "{}: {key}[{i}]: got {a}, reference {b} (|diff| {err:.3e} > {:.1e} + {:.1e}·|ref|)",
                    self.name, tol.atol, tol.rtol
                );
            }
            if err > worst.0 {
                worst = (err, i);
            }
        }
        println!(
            "  {}: {key}: worst |diff| {:.3e} at {}",
            self.name, worst.0, worst.1
        );
        worst.0
    }

    /// Compares a scalar from the fixture JSON (already looked up by the caller).
    pub fn compare_scalar(&self, what: &str, got: f64, want: f64, tol: Tolerance) {
        let err = (got - want).abs();
        assert!(
            err <= tol.atol + tol.rtol * want.abs(),
            "{}: {what}: got {got}, reference {want}",
            self.name
        );
        println!("  {}: {what}: |diff| {err:.3e}", self.name);
    }

    /// Every tensor name not yet looked at.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.floats
            .keys()
            .chain(self.ints.keys())
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}

// ---- Decoding helpers (decode branch) ----

impl Fixture {
    /// The vocabulary from the JSON (`vocab`: index → word), as `(id, word)` pairs.
    pub fn vocab(&self) -> Vec<(usize, String)> {
        let mut v: Vec<(usize, String)> = self
            .json
            .get("vocab")
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, w)| (k.parse().unwrap(), w.as_str().unwrap().to_string()))
            .collect();
        v.sort();
        v
    }

    /// Checks that the integer tensor `key` equals `got` exactly (shape and values); panics
    /// naming the first difference.
    pub fn compare_ints(&self, key: &str, shape: &[usize], got: &[usize]) {
        let (want_shape, want) = self.ints(key);
        assert_eq!(want_shape, shape, "{}: {key}: shape", self.name);
        if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i] as i64) {
            panic!(
                "{}: {key}[{i}]: got {}, reference {}\n  got       {got:?}\n  reference {want:?}",
                self.name, got[i], want[i]
            );
        }
        println!("  {}: {key}: identical", self.name);
    }

    /// The JSON's `trained_decodes[name]`: one word list per image.
    pub fn trained_decode(&self, name: &str) -> Vec<Vec<usize>> {
        self.json
            .get("trained_decodes")
            .and_then(|d| d.get(name))
            .unwrap_or_else(|| panic!("{}: no trained_decodes.{name}", self.name))
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect()
    }
}
