//! The losses against the authors' PyTorch code, from the parity fixtures' own tensors:
//! `loss_label_smoothing` and `loss_lm` from `out.logprobs`, `in.labels` and `in.label_masks`;
//! `loss_reward` and the gradient `rc.grad_logprobs` from the `rc.*` tensors.
//!
//! Tolerance 1e-12 in f64: the fixtures are f64 and each loss is a sum of a few hundred terms
//! of size ≤ 10, so summation order alone moves it by ~1e-14; 1e-12 leaves room for that while
//! any difference in formula (a missed class, the constant, the mask) is ≥ 1e-3.

use aoanet::io::SafeTensors;
use aoanet::json::Value;
use aoanet::tensor::{DType, Tensor};
use aoanet::train::{label_smoothing_loss, lm_loss, reward_loss};
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-12;

/// The fixture folder: `AOANET_PARITY_DIR` if set, else `tests/fixtures/parity`, else
/// `shared/fixtures/parity` in the nearest folder above the crate that has one.
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

/// Every fixture (safetensors + JSON), or a printed reason for skipping.
fn fixtures() -> Vec<(String, SafeTensors, Value)> {
    let Some(dir) = fixture_dir() else {
        eprintln!(
            "skipped: no parity fixtures (set AOANET_PARITY_DIR or add shared/fixtures/parity)"
        );
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        eprintln!("skipped: no *.safetensors in {}", dir.display());
    }
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let st = SafeTensors::open(&p).unwrap();
            let json = aoanet::json::read_file(p.with_extension("json")).unwrap();
            (name, st, json)
        })
        .collect()
}

/// Targets `labels[:, 1:]` and mask `masks[:, 1:]` for `steps` steps.
fn shifted(st: &SafeTensors, steps: usize) -> (Vec<usize>, Tensor) {
    let labels = st.int_tensor("in.labels").unwrap();
    let masks = st.tensor("in.label_masks").unwrap();
    let (rows, cols) = (labels.shape[0], labels.shape[1]);
    assert_eq!(cols, steps + 1, "labels hold BOS plus one column per step");
    let ids = labels.to_usize().unwrap();
    let targets: Vec<usize> = (0..rows)
        .flat_map(|r| ids[r * cols + 1..(r + 1) * cols].to_vec())
        .collect();
    let mask = masks.narrow(1, 1, steps).unwrap().contiguous().unwrap();
    (targets, mask)
}

fn expect(json: &Value, key: &str) -> f64 {
    json.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("fixture JSON has no {key}"))
}

#[test]
fn label_smoothing_and_cross_entropy_equal_the_reference() {
    for (name, st, json) in fixtures() {
        let lp = st.tensor("out.logprobs").unwrap();
        let (targets, mask) = shifted(&st, lp.shape()[1]);
        let smoothing = json
            .get("config")
            .and_then(|c| c.get("label_smoothing"))
            .and_then(Value::as_f64)
            .unwrap();
        let ls = label_smoothing_loss(&lp, &targets, &mask, smoothing)
            .unwrap()
            .item()
            .unwrap();
        let lm = lm_loss(&lp, &targets, &mask).unwrap().item().unwrap();
        let (want_ls, want_lm) = (
            expect(&json, "loss_label_smoothing"),
            expect(&json, "loss_lm"),
        );
        eprintln!(
            "{name}: label smoothing {ls:.17} (error {:.1e}), lm {lm:.17} (error {:.1e})",
            (ls - want_ls).abs(),
            (lm - want_lm).abs()
        );
        assert!((ls - want_ls).abs() <= TOL, "{name}: {ls} vs {want_ls}");
        assert!((lm - want_lm).abs() <= TOL, "{name}: {lm} vs {want_lm}");
        // The first Adam loss of the trace is the same label-smoothed value.
        let first = json
            .get("adam")
            .and_then(|a| a.get("losses"))
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(Value::as_f64)
            .unwrap();
        assert!((ls - first).abs() <= TOL, "{name}: {ls} vs {first}");
        // In f32 the same to f32 accuracy.
        let ls32 = label_smoothing_loss(
            &lp.to_dtype(DType::F32).unwrap(),
            &targets,
            &mask,
            smoothing,
        )
        .unwrap()
        .item()
        .unwrap();
        assert!((ls32 - want_ls).abs() <= 1e-5 + 1e-4 * want_ls.abs());
    }
}

#[test]
fn reward_criterion_and_its_gradient_equal_the_reference() {
    for (name, st, json) in fixtures() {
        let seq_t = st.int_tensor("rc.seq").unwrap();
        let (rows, steps) = (seq_t.shape[0], seq_t.shape[1]);
        let seq = seq_t.to_usize().unwrap();
        let reward = st.tensor("rc.reward").unwrap().to_vec_f64();
        let want_slp = st.tensor("rc.sample_logprobs").unwrap().to_vec_f64();
        let want_grad = st.tensor("rc.grad_logprobs").unwrap();

        // The reference gathers the sampled tokens' log-probabilities from `out.logprobs`'
        // first `steps` steps and back-propagates the criterion into all of it.
        let lp = st.tensor("out.logprobs").unwrap().requiring_grad();
        let slp = lp
            .narrow(1, 0, steps)
            .unwrap()
            .contiguous()
            .unwrap()
            .gather_last(&seq)
            .unwrap();
        assert_eq!(slp.shape(), &[rows, steps]);
        assert_eq!(
            slp.to_vec_f64(),
            want_slp,
            "{name}: sample log-probabilities"
        );

        let loss = reward_loss(&slp, &seq, &reward).unwrap();
        let got = loss.item().unwrap();
        let want = expect(&json, "loss_reward");
        assert!((got - want).abs() <= TOL, "{name}: {got} vs {want}");
        loss.backward().unwrap();
        let grad = lp.grad().unwrap();
        assert_eq!(grad.shape(), want_grad.shape());
        let worst = grad
            .to_vec_f64()
            .iter()
            .zip(want_grad.to_vec_f64())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        eprintln!(
            "{name}: reward loss {got:.17} (error {:.1e}), gradient max error {worst:.1e}",
            (got - want).abs()
        );
        assert!(worst <= TOL, "{name}: gradient off by {worst}");

        // One reward per row (how the training loop has them) gives the same loss.
        let per_row: Vec<f64> = reward.chunks(steps).map(|r| r[0]).collect();
        assert!(reward.chunks(steps).all(|r| r.iter().all(|&x| x == r[0])));
        let again = reward_loss(&slp.detach(), &seq, &per_row)
            .unwrap()
            .item()
            .unwrap();
        assert_eq!(again, got);
    }
}
