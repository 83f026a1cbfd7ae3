//! A small random model and inputs for the decoding tests.

#![allow(dead_code)]

use aoanet::model::{AoaConfig, AoaModel, Encoded};
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};

/// Words in the test vocabulary (classes = VOCAB + 1; the last word plays UNK).
pub const VOCAB: usize = 14;

/// A small model with random weights from `seed`, every weight matrix (not the LayerNorm
/// gains) scaled by `scale` — larger weights make the random model's captions depend more on
/// the image and its own words — and `eos_bias` added to EOS's logit (captions end sooner or
/// never).
pub fn model(dtype: DType, seed: u64, scale: f64, eos_bias: f64) -> AoaModel {
    let mut c = AoaConfig::small(VOCAB, 16);
    c.rnn_size = 32;
    c.input_encoding_size = 32;
    c.refiner_layers = 1;
    let m = AoaModel::new(c, dtype, seed).unwrap();
    for (name, p) in m.named_parameters() {
        if name.ends_with("weight") && !name.contains("norm") {
            p.update_(&p.mul_scalar(scale).unwrap()).unwrap();
        }
    }
    bias_logit(&m, 0, eos_bias);
    m
}

/// Adds `delta` to the output bias of class `class` (0 = EOS, `VOCAB` = UNK).
pub fn bias_logit(m: &AoaModel, class: usize, delta: f64) {
    let mut b = m.logit.bias.to_vec_f64();
    b[class] += delta;
    let t = Tensor::from_vec(b, &[VOCAB + 1])
        .unwrap()
        .to_dtype(m.dtype())
        .unwrap();
    m.logit.bias.update_(&t).unwrap();
}

/// Random features for `images` images of up to 6 regions, with masks giving each image a
/// different region count (1..=6).
pub fn inputs(images: usize, dtype: DType, seed: u64) -> (Tensor, Tensor) {
    let n = 6;
    let mut rng = Philox::new(seed);
    let feats = Tensor::randn(&[images, n, 16], dtype, &mut rng);
    let mask: Vec<f64> = (0..images)
        .flat_map(|i| {
            let count = 1 + (i * 5 + 3) % n;
            (0..n).map(move |r| if r < count { 1.0 } else { 0.0 })
        })
        .collect();
    let masks = Tensor::from_vec(mask, &[images, n])
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    (feats, masks)
}

/// The encoding of `inputs(images, …)` in evaluation mode, without a graph.
pub fn encode(m: &AoaModel, images: usize, seed: u64) -> Encoded {
    let (feats, masks) = inputs(images, m.dtype(), seed);
    let mut rng = Philox::new(0);
    aoanet::autograd::no_grad(|| {
        m.encode(&feats, Some(&masks), None, &mut Ctx::eval(&mut rng), None)
    })
    .unwrap()
}
