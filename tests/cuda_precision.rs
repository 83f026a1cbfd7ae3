//! The model's tensor-core precisions on a CUDA device: one XE forward and backward (dropout
//! off) of a small model with f32 products, then with TF32 and with bf16 products
//! (`set_matmul_precision`), compared with the f32 run: the loss within 2e-3 (TF32) and 2e-2
//! (bf16) relative, every gradient within 2e-2 / 1e-1 of its norm. On a GPU the runs must also
//! differ from f32, which shows the tensor-core path was taken.
//!
//! Its own test binary: the precision is process-wide, so no other test may run beside it.
//! Tolerances: TF32 rounds each operand to 11 significant bits (relative 2^-11 ≈ 5e-4 per
//! product), bf16 to 8 (2^-8 ≈ 4e-3); over the model's ~20 products and the backward, errors
//! grow to a few times that, and the gradient tolerance is on the norm of the difference.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::Philox;
use aoanet::cuda::kernels::gemm::Precision;
use aoanet::cuda::ops::set_matmul_precision;
use aoanet::model::{AoaConfig, AoaModel};
use aoanet::nn::{Ctx, Module};
use aoanet::tensor::{DType, Device, Tensor};
use aoanet::train::label_smoothing_loss;
use cuda_util::{cuda, randt};

const IMAGES: usize = 3;
const REGIONS: usize = 7;
const SPI: usize = 2;
const LEN: usize = 8;

fn config() -> AoaConfig {
    let mut c = AoaConfig::reference(37);
    c.rnn_size = 64;
    c.input_encoding_size = 64;
    c.att_feat_size = 32;
    c.num_heads = 4;
    c.refiner_layers = 2;
    c.max_length = LEN;
    c.seq_length = LEN;
    c
}

/// The loss and every parameter's gradient of one XE pass with dropout off.
fn xe(m: &AoaModel, dev: Device) -> (f64, Vec<(String, Vec<f64>)>) {
    let feats = randt(&[IMAGES, REGIONS, 32], -1.0, 1.0, 3)
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let mut g = Philox::new(4);
    let rows = IMAGES * SPI;
    let mut labels = vec![0usize; rows * LEN];
    for r in 0..rows {
        for t in 1..LEN - 1 {
            labels[r * LEN + t] = 1 + g.below(37) as usize;
        }
    }
    let targets: Vec<usize> = (0..rows)
        .flat_map(|r| labels[r * LEN + 1..(r + 1) * LEN].to_vec())
        .collect();
    let mask = Tensor::ones(&[rows, LEN - 1], DType::F32)
        .to_device(dev)
        .unwrap();
    let mut rng = Philox::new(5);
    let mut ctx = Ctx::eval(&mut rng);
    let enc = m
        .encode(&feats, None, None, &mut ctx, None)
        .unwrap()
        .expand(SPI)
        .unwrap();
    let lp = m.forward_xe(&enc, &labels, LEN, 0.0, &mut ctx).unwrap();
    let loss = label_smoothing_loss(&lp, &targets, &mask, 0.2).unwrap();
    let params = m.named_parameters();
    aoanet::train::adam::zero_grad(&params);
    loss.backward().unwrap();
    let grads = params
        .iter()
        .filter_map(|(n, p)| p.grad().map(|g| (n.clone(), g.to_vec_f64())))
        .collect();
    (loss.item().unwrap(), grads)
}

#[test]
fn gemm_tf32_large_and_gemm_bf16_large_carry_the_model_close_to_f32() {
    let Some(dev) = cuda("gemm_tf32_large_and_gemm_bf16_large_carry_the_model_close_to_f32") else {
        return;
    };
    let m = AoaModel::new(config(), DType::F32, 21).unwrap();
    m.to_device_(dev).unwrap();
    set_matmul_precision(Precision::F32);
    let (l32, g32) = xe(&m, dev);
    for (p, loss_tol, grad_tol) in [(Precision::Tf32, 2e-3, 2e-2), (Precision::Bf16, 2e-2, 1e-1)] {
        set_matmul_precision(p);
        let (l, g) = xe(&m, dev);
        set_matmul_precision(Precision::F32);
        eprintln!("{p:?}: loss {l} vs f32 {l32}");
        assert!(
            (l - l32).abs() <= loss_tol * l32.abs(),
            "{p:?}: loss {l} vs {l32}"
        );
        let mut any_differs = false;
        // Some gradients are zero in exact arithmetic (a key projection's bias: it adds the
        // same score to every region, which the softmax cancels) and hold only rounding
        // noise, which coarser products enlarge: compare those against a floor relative to
        // the largest gradient instead of their own norm.
        let floor = g32
            .iter()
            .map(|(_, b)| b.iter().map(|y| y * y).sum::<f64>().sqrt())
            .fold(0.0, f64::max)
            * 1e-4;
        for ((name, a), (_, b)) in g.iter().zip(&g32) {
            let diff: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
            any_differs |= diff > 0.0;
            assert!(
                diff <= grad_tol * norm.max(floor),
                "{p:?}: gradient of {name} off by {diff:.3e} (norm {norm:.3e})"
            );
        }
        if dev != Device::Cpu {
            assert!(any_differs && l != l32, "{p:?}: identical to f32");
        }
    }
    if matches!(dev, Device::Cuda(_)) {
        bf16_linear_is_one_launch(dev);
    }
}

/// A linear layer with bf16 products is one kernel launch once its weight's bf16 copy exists:
/// the kernel rounds the f32 input as it loads it (before `gemm_bf16*_fb`, a cast of the
/// input came first). Called from the test above: the precision is process-wide.
fn bf16_linear_is_one_launch(dev: Device) {
    let f32t = |shape: &[usize], seed| {
        randt(shape, -1.0, 1.0, seed)
            .to_dtype(DType::F32)
            .unwrap()
            .to_device(dev)
            .unwrap()
    };
    let (x, w, b) = (f32t(&[50, 64], 31), f32t(&[96, 64], 32), f32t(&[96], 33));
    set_matmul_precision(Precision::Bf16);
    let first = x.linear(&w, Some(&b)).unwrap(); // makes the weight's bf16 copy
    let before = aoanet::cuda::launches_on_this_thread();
    let again = x.linear(&w, Some(&b)).unwrap();
    let launches = aoanet::cuda::launches_on_this_thread() - before;
    set_matmul_precision(Precision::F32);
    assert_eq!(launches, 1, "a bf16 linear layer took {launches} launches");
    assert_eq!(first.to_vec_f32(), again.to_vec_f32());
    let want = x.linear(&w, Some(&b)).unwrap().to_vec_f32();
    for (i, (g, f)) in again.to_vec_f32().iter().zip(&want).enumerate() {
        // 64 products of bf16-rounded terms (relative 2^-8 each) of size ≤ 1.
        assert!(
            (g - f).abs() <= 0.1,
            "bf16 linear element {i}: {g} vs f32 {f}"
        );
    }
}
