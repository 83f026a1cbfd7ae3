//! Parity with the authors' PyTorch AoANet: every tensor of every fixture in
//! `tests/fixtures/parity` and `../shared/fixtures/parity` (or only `$AOANET_PARITY_DIR`).
//! See tests/fixtures/parity/README.md for what each tensor is.

mod parity_support;

use aoanet::tensor::{DType, Device};
use parity_support::checks::{decodes, forward_outputs, training_outputs};
use parity_support::fixtures;

const CPU: Device = Device::Cpu;

#[test]
fn forward_matches_reference() {
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            forward_outputs(&fx, dtype, CPU);
        }
        println!("{}: forward ok", fx.name);
    }
}

#[test]
fn training_matches_reference() {
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            training_outputs(&fx, dtype, CPU);
        }
        println!("{}: gradients and Adam ok", fx.name);
    }
}

/// Every tensor of every fixture is compared by the checks above, except the ones listed
/// here with the reason.
#[test]
fn every_fixture_tensor_is_compared() {
    // Deliberately not compared: the fc features are unused by AoA (mean_feats = 1).
    let skipped = ["in.fc_feats"];
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            forward_outputs(&fx, dtype, CPU);
            training_outputs(&fx, dtype, CPU);
            decodes(&fx, dtype, "param.", CPU);
            decodes(&fx, dtype, "trained.", CPU);
        }
        let missing: Vec<String> = fx
            .unused()
            .into_iter()
            .filter(|n| !skipped.contains(&n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: tensors no check compares: {missing:?}",
            fx.name
        );
    }
}

#[test]
fn decoding_matches_reference() {
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            decodes(&fx, dtype, "param.", CPU);
            decodes(&fx, dtype, "trained.", CPU);
        }
        println!("{}: decoding ok", fx.name);
    }
}
