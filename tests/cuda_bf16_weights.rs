//! bf16 products with cached weight copies (`set_matmul_precision(Precision::Bf16)`): a linear
//! layer's forward (`x Wᵀ + b`) and its input gradient (`g W`) on a CUDA device against a host
//! reference that rounds `x`, `W` and `g` to bf16 and sums in f64; then an in-place update of
//! `W` (as Adam does) must reach the next product (the cached copy is keyed by the storage's
//! version), in both orientations.
//!
//! Its own test binary: the precision is process-wide. Tolerance: f32 accumulation of up to
//! 300 exact bf16 products, `1e-5 + 1e-5·|ref|`. In the CPU dry run (no bf16 products there)
//! the reference does not round.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::Philox;
use aoanet::cuda::kernels::gemm::Precision;
use aoanet::cuda::ops::set_matmul_precision;
use aoanet::tensor::{DType, Device, Tensor};
use cuda_util::{assert_tensors_close, cuda};

/// Rounds to bf16 (round to nearest even) when `on`.
fn r16(x: f32, on: bool) -> f64 {
    if on {
        f64::from(half::bf16::from_f32(x).to_f32())
    } else {
        f64::from(x)
    }
}

/// `a [m, k] · b` with `b` given as `[n, k]` (`bt`) or `[k, n]`, operands rounded, in f64.
fn reference(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bt: bool,
    round: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|p| {
                    let bv = if bt { b[j * k + p] } else { b[p * n + j] };
                    r16(a[i * k + p], round) * r16(bv, round)
                })
                .sum();
        }
    }
    out
}

#[test]
fn bf16_linear_matches_a_bf16_reference_across_weight_updates() {
    let Some(dev) = cuda("bf16_linear_matches_a_bf16_reference_across_weight_updates") else {
        return;
    };
    let round = dev != Device::Cpu;
    let (m, k, n) = (7, 300, 130);
    let mut rng = Philox::new(17);
    let x = Tensor::uniform(&[m, k], -1.0, 1.0, DType::F32, &mut rng);
    let w = Tensor::uniform(&[n, k], -1.0, 1.0, DType::F32, &mut rng);
    let b = Tensor::uniform(&[n], -1.0, 1.0, DType::F32, &mut rng);
    let g = Tensor::uniform(&[m, n], -1.0, 1.0, DType::F32, &mut rng);
    let xd = x.to_device(dev).unwrap().requiring_grad();
    let wd = w.to_device(dev).unwrap().requiring_grad();
    let bd = b.to_device(dev).unwrap();
    let gd = g.to_device(dev).unwrap();
    set_matmul_precision(Precision::Bf16);
    for round_trip in 0..3 {
        let wv = wd.to_vec_f32();
        // Forward: x Wᵀ + b.
        let y = xd.linear(&wd, Some(&bd)).unwrap();
        let mut want = reference(&x.to_vec_f32(), &wv, m, k, n, true, round);
        let bv = b.to_vec_f32();
        for (i, v) in want.iter_mut().enumerate() {
            *v += f64::from(bv[i % n]);
        }
        let want = Tensor::from_vec(want, &[m, n]).unwrap();
        assert_tensors_close(&format!("forward {round_trip}"), &y, &want, 1e-5, 1e-5);
        // Input gradient: g W.
        y.mul(&gd).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = xd.grad().unwrap();
        let want = reference(&g.to_vec_f32(), &wv, m, n, k, false, round);
        let want = Tensor::from_vec(want, &[m, k]).unwrap();
        assert_tensors_close(
            &format!("input gradient {round_trip}"),
            &gx,
            &want,
            1e-5,
            1e-5,
        );
        xd.zero_grad();
        wd.zero_grad();
        // An optimiser-like in-place update: the next products must see it.
        wd.update_(&wd.mul_scalar(-0.5).unwrap().add_scalar(0.01).unwrap())
            .unwrap();
    }
    set_matmul_precision(Precision::F32);
}
