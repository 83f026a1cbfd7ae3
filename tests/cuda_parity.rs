//! Parity with the authors' PyTorch AoANet ON A CUDA DEVICE: the checks of `tests/parity.rs`
//! (every tensor of every fixture: forward intermediates, teacher-forced steps, losses, every
//! parameter gradient, the reward criterion, three Adam steps in f64, greedy and beam decoding)
//! with the model's parameters and inputs moved to the GPU, in f64 and f32, against the same
//! reference tensors and tolerances (`tests/parity_support`: f64 1e-9 absolute; f32
//! 1e-5 + 1e-4·|ref|). Skips with a printed reason without a GPU.
#![cfg(feature = "cuda")]

mod cuda_util;
#[allow(dead_code)]
mod parity_support;

use aoanet::tensor::DType;
use parity_support::checks::{decodes, forward_outputs, training_outputs};
use parity_support::fixtures;

#[test]
fn forward_matches_reference_on_cuda() {
    let Some(dev) = cuda_util::cuda("forward_matches_reference_on_cuda") else {
        return;
    };
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            forward_outputs(&fx, dtype, dev);
        }
        println!("{}: forward on {dev} ok", fx.name);
    }
}

#[test]
fn training_matches_reference_on_cuda() {
    let Some(dev) = cuda_util::cuda("training_matches_reference_on_cuda") else {
        return;
    };
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            training_outputs(&fx, dtype, dev);
        }
        println!("{}: gradients and Adam on {dev} ok", fx.name);
    }
}

#[test]
fn decoding_matches_reference_on_cuda() {
    let Some(dev) = cuda_util::cuda("decoding_matches_reference_on_cuda") else {
        return;
    };
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            decodes(&fx, dtype, "param.", dev);
            decodes(&fx, dtype, "trained.", dev);
        }
        println!("{}: decoding on {dev} ok", fx.name);
    }
}
