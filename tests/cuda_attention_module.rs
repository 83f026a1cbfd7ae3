//! `nn::MultiHeadAoa` on a CUDA device in f32 with head sizes the fused kernels take (32 and
//! the reference's 128), against the same layer on the CPU, where the attention is composed
//! from matmul, masked_fill, softmax and dropout: outputs, and through a random projection
//! every input's and parameter's gradient (`cuda_util::op_matches_cpu`).
//!
//! Cases: the refiner's self-attention (K/V projections, AoA gate, Nq = N) and the decoder's
//! (LayerNorm on one query per row, keys and values the two halves of one `[B, N, 2D]`
//! tensor, no projection), each with padded keys and with dropout on (the probabilities'
//! dropout must draw the words the composed path draws); and the attention maps the fused
//! path computes beside the kernels when asked.
//!
//! Tolerances: f32 `2e-5 + 1e-4·|ref|` on outputs (sums of up to 128-term dot products on
//! both devices, in different orders), four times that on gradients.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::Philox;
use aoanet::nn::{AttentionMask, Ctx, DropoutOrder, Module, MultiHeadAoa, MultiHeadAoaConfig};
use aoanet::tensor::{DType, Device, Tensor};
use cuda_util::{Tol, assert_tensors_close, cuda, op_matches_cpu, randt};

fn layer_config(heads: usize, d_model: usize, refiner: bool) -> MultiHeadAoaConfig {
    MultiHeadAoaConfig {
        heads,
        d_model,
        scale: 1,
        project_k_v: refiner,
        use_output_layer: false,
        do_aoa: refiner,
        norm_q: !refiner,
        dropout: 0.1,
        dropout_aoa: 0.3,
        dropout_order: DropoutOrder::HeadMajor,
    }
}

/// `[B, N]` validity with different lengths per row (one row keeps a single key).
fn valid(b: usize, n: usize) -> Tensor {
    let v: Vec<f64> = (0..b)
        .flat_map(|r| (0..n).map(move |k| if k < n - (r * 3) % n { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(v, &[b, n]).unwrap()
}

/// A layer whose parameters are `params` (in visiting order), on their device.
fn layer_with(cfg: &MultiHeadAoaConfig, params: &[Tensor]) -> MultiHeadAoa {
    MultiHeadAoa::from_parameters(cfg.clone(), params).unwrap()
}

/// The layer's initial parameters as f64 CPU tensors, perturbed so LayerNorm's gain and bias
/// are not 1 and 0.
fn initial_params(cfg: &MultiHeadAoaConfig) -> Vec<Tensor> {
    let layer = MultiHeadAoa::new(cfg.clone(), DType::F64, &mut Philox::new(3)).unwrap();
    layer
        .named_parameters()
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            t.add(&randt(t.shape(), -0.1, 0.1, 50 + i as u64))
                .unwrap()
                .detach()
        })
        .collect()
}

fn refiner_case(test: &str, heads: usize, d_model: usize, b: usize, n: usize) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let cfg = layer_config(heads, d_model, true);
    let mut inputs = vec![randt(&[b, n, d_model], -1.0, 1.0, 1)];
    inputs.extend(initial_params(&cfg));
    let mask = valid(b, n);
    op_matches_cpu(test, dev, DType::F32, &inputs, Tol::SUMS, |t, d| {
        let layer = layer_with(&cfg, &t[1..]);
        let m = AttentionMask::from_valid(&mask.to_dtype(DType::F32)?.to_device(d)?)?;
        let mut rng = Philox::new(7);
        let out = layer.forward(&t[0], &t[0], &t[0], Some(&m), &mut Ctx::train(&mut rng))?;
        // The stream must have advanced past both dropouts on either path.
        assert_eq!(
            rng.state(),
            expected_state(&cfg, b, n, n),
            "{test}: Philox state"
        );
        Ok(out.out)
    });
}

/// The decoder's attention over `b` images of `n` regions: one query row per image
/// (`group` 1, a `[B, D]` query) or `group` caption rows per image sharing its regions (a
/// `[B, group, D]` query, dropout numbered query-major as the decoder does).
fn decoder_case(test: &str, heads: usize, d_model: usize, b: usize, n: usize, group: usize) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let cfg = MultiHeadAoaConfig {
        dropout_order: DropoutOrder::QueryMajor,
        ..layer_config(heads, d_model, false)
    };
    let query: &[usize] = if group == 1 {
        &[b, d_model]
    } else {
        &[b, group, d_model]
    };
    // Inputs: the queries and p_att_feats [B, N, 2D] (values, then keys).
    let mut inputs = vec![
        randt(query, -1.0, 1.0, 2),
        randt(&[b, n, 2 * d_model], -1.0, 1.0, 3),
    ];
    inputs.extend(initial_params(&cfg));
    let mask = valid(b, n);
    op_matches_cpu(test, dev, DType::F32, &inputs, Tol::SUMS, |t, d| {
        let layer = layer_with(&cfg, &t[2..]);
        let m = AttentionMask::from_valid(&mask.to_dtype(DType::F32)?.to_device(d)?)?;
        let p = &t[1];
        let kv = layer.prepare(&p.narrow(2, d_model, d_model)?, &p.narrow(2, 0, d_model)?)?;
        let mut rng = Philox::new(8);
        let mut ctx = Ctx::train(&mut rng);
        // Two steps against the same keys, as the decoder attends: gradients accumulate.
        let a = layer.forward_heads(&t[0], &kv, Some(&m), &mut ctx)?;
        let q2 = t[0].mul_scalar(0.5)?;
        let b2 = layer.forward_heads(&q2, &kv, Some(&m), &mut ctx)?;
        a.out.add(&b2.out)
    });
}

/// The Philox state after one forward of `cfg` in training mode from a fresh stream: the
/// probabilities' dropout draws `B·h·Nq·N` words, the AoA input's `B·Nq·2D`.
fn expected_state(
    cfg: &MultiHeadAoaConfig,
    b: usize,
    nq: usize,
    n: usize,
) -> aoanet::rng::PhiloxState {
    let mut s = Philox::new(7).state();
    s.offset += (b * cfg.heads * nq * n) as u64;
    if cfg.do_aoa {
        s.offset += (b * nq * 2 * cfg.d_model) as u64;
    }
    s
}

#[test]
fn refiner_attention_with_head_size_32_matches_the_cpu() {
    refiner_case(
        "refiner_attention_with_head_size_32_matches_the_cpu",
        2,
        64,
        3,
        11,
    );
}

#[test]
fn refiner_attention_at_the_reference_head_size_matches_the_cpu() {
    refiner_case(
        "refiner_attention_at_the_reference_head_size_matches_the_cpu",
        8,
        1024,
        2,
        36,
    );
}

#[test]
fn decoder_attention_with_head_size_32_matches_the_cpu() {
    decoder_case(
        "decoder_attention_with_head_size_32_matches_the_cpu",
        2,
        64,
        5,
        9,
        1,
    );
}

#[test]
fn decoder_attention_at_the_reference_head_size_matches_the_cpu() {
    decoder_case(
        "decoder_attention_at_the_reference_head_size_matches_the_cpu",
        8,
        1024,
        4,
        36,
        1,
    );
}

#[test]
fn decoder_attention_with_captions_sharing_regions_matches_the_cpu() {
    decoder_case(
        "decoder_attention_with_captions_sharing_regions_matches_the_cpu",
        2,
        64,
        3,
        9,
        5,
    );
}

#[test]
fn decoder_attention_with_captions_sharing_regions_at_the_reference_head_size_matches_the_cpu() {
    decoder_case(
        "decoder_attention_with_captions_sharing_regions_at_the_reference_head_size_matches_the_cpu",
        8,
        1024,
        2,
        36,
        5,
    );
}

/// With attention maps asked for, the fused path returns the probabilities the composed path
/// computes; without, it returns none (the kernels never form them).
#[test]
fn fused_attention_returns_maps_only_when_asked() {
    let test = "fused_attention_returns_maps_only_when_asked";
    let Some(dev) = cuda(test) else {
        return;
    };
    let (heads, d, b, n) = (4, 128, 3, 10);
    let cfg = layer_config(heads, d, false);
    let params = initial_params(&cfg);
    let q = randt(&[b, d], -1.0, 1.0, 4);
    let p = randt(&[b, n, 2 * d], -1.0, 1.0, 5);
    let mask = valid(b, n);
    let run = |device: Device, maps: bool| {
        let to = |t: &Tensor| t.to_dtype(DType::F32).unwrap().to_device(device).unwrap();
        let ps: Vec<Tensor> = params.iter().map(to).collect();
        let layer = layer_with(&cfg, &ps);
        let m = AttentionMask::from_valid(&to(&mask)).unwrap();
        let pd = to(&p);
        let kv = layer
            .prepare(&pd.narrow(2, d, d).unwrap(), &pd.narrow(2, 0, d).unwrap())
            .unwrap();
        let mut rng = Philox::new(1);
        let ctx = Ctx::eval(&mut rng).with_attention_maps(maps);
        let mut ctx = ctx;
        let fuses = layer.fuses(&pd);
        let out = layer
            .forward_heads(&to(&q), &kv, Some(&m), &mut ctx)
            .unwrap();
        (out, fuses)
    };
    let (want, _) = run(Device::Cpu, true);
    let (got, fuses) = run(dev, true);
    let (without, _) = run(dev, false);
    let (w, g) = (want.weights.unwrap(), got.weights.unwrap());
    assert_eq!(g.shape(), [b, heads, 1, n]);
    assert_tensors_close(&format!("{test}: maps"), &g, &w, 1e-6, 1e-5);
    assert_tensors_close(&format!("{test}: out"), &got.out, &want.out, 2e-5, 1e-4);
    if fuses {
        assert!(
            without.weights.is_none(),
            "the fused path formed maps unasked"
        );
    }
    assert_tensors_close(
        &format!("{test}: out without maps"),
        &without.out,
        &got.out,
        0.0,
        0.0,
    );
}
