//! Parity with the authors' PyTorch AoANet: every tensor of every fixture in
//! `tests/fixtures/parity` and `../shared/fixtures/parity` (or only `$AOANET_PARITY_DIR`).
//! See tests/fixtures/parity/README.md for what each tensor is.

mod parity_support;

use aoanet::autograd::no_grad;
use aoanet::model::AoaModel;
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use parity_support::{Fixture, Tolerance, fixtures};

/// Builds the fixture's model in `dtype` with the fixture's initial weights.
fn model(fx: &Fixture, dtype: DType, prefix: &str) -> AoaModel {
    let m = AoaModel::new(fx.config(), dtype, 0).unwrap();
    for (name, p) in m.named_parameters() {
        let key = format!("{prefix}{name}");
        let t = fx.take(&key).to_dtype(dtype).unwrap();
        p.update_(&t)
            .unwrap_or_else(|e| panic!("{}: {key}: {e}", fx.name));
    }
    m
}

fn forward_outputs(fx: &Fixture, dtype: DType) {
    let tol = Tolerance::for_dtype(dtype);
    let m = model(fx, dtype, "param.");
    let feats = fx.take("in.att_feats").to_dtype(dtype).unwrap();
    let masks = fx.get("in.att_masks").map(|t| t.to_dtype(dtype).unwrap());
    let _ = fx.get("in.fc_feats"); // unused by AoA (mean_feats = 1): deliberately skipped
    let mut rng = Philox::new(0);
    let mut trace = Vec::new();
    let enc = no_grad(|| {
        m.encode(
            &feats,
            masks.as_ref(),
            None,
            &mut Ctx::eval(&mut rng),
            Some(&mut trace),
        )
    })
    .unwrap();
    let counts = fx.region_counts();
    for (name, t) in &trace {
        let key = format!("out.{name}");
        if name == "mean_feats" {
            fx.compare(&key, t, tol, None);
        } else {
            fx.compare(&key, t, tol, Some(&counts));
        }
    }
    // Teacher-forced decoding, one encoding per image shared by its caption rows.
    let spi = fx.seq_per_img();
    let enc = enc.expand(spi).unwrap();
    let (lshape, labels) = fx.labels();
    let (rows, len) = (lshape[0], lshape[1]);
    let mut state = m.init_state(rows);
    for t in 0..3 {
        let it: Vec<usize> = (0..rows).map(|r| labels[r * len + t]).collect();
        let out = no_grad(|| m.step(&it, &enc, &state, &mut Ctx::eval(&mut rng))).unwrap();
        state = out.state;
        fx.compare(&format!("out.step{t}.h"), &state.h, tol, None);
        fx.compare(&format!("out.step{t}.c"), &state.c, tol, None);
        fx.compare(&format!("out.step{t}.ctx"), &state.ctx, tol, None);
        fx.compare(&format!("out.step{t}.logprobs"), &out.logprobs, tol, None);
    }
    let lp = no_grad(|| m.forward_xe(&enc, &labels, len, 0.0, &mut Ctx::eval(&mut rng))).unwrap();
    fx.compare("out.logprobs", &lp, tol, None);
}

#[test]
fn forward_matches_reference() {
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            forward_outputs(&fx, dtype);
        }
        println!("{}: forward ok", fx.name);
    }
    let _ = Tensor::zeros(&[1], DType::F32);
}
