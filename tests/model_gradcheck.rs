//! Gradient checks of whole modules against central differences in f64: the refiner under
//! each of its switches, the decoder step for each decoder type, and the full model's
//! training losses with dropout active and masked regions.

use aoanet::autograd::gradcheck::{GradcheckOptions, gradcheck_params};
use aoanet::model::{AoaConfig, AoaModel, DecoderType};
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use aoanet::train::{label_smoothing_loss, reward_loss};

fn tiny(f: impl FnOnce(&mut AoaConfig)) -> AoaConfig {
    let mut c = AoaConfig::small(7, 6);
    c.rnn_size = 8;
    c.input_encoding_size = 8;
    c.num_heads = 2;
    c.refiner_layers = 2;
    c.d_ff = 12;
    f(&mut c);
    c
}

/// Two images: 3 and 2 real regions of 3.
fn inputs() -> (Tensor, Tensor) {
    let mut rng = Philox::new(5);
    let feats = Tensor::randn(&[2, 3, 6], DType::F64, &mut rng);
    let mask = Tensor::from_vec(vec![1.0f64, 1.0, 1.0, 1.0, 1.0, 0.0], &[2, 3]).unwrap();
    let feats = feats.mul(&mask.unsqueeze(2).unwrap()).unwrap();
    (feats, mask)
}

fn projection(shape: &[usize]) -> Tensor {
    Tensor::uniform(shape, -1.0, 1.0, DType::F64, &mut Philox::new(99))
}

fn opts() -> GradcheckOptions {
    // 25 coordinates per parameter keeps the suite fast; every parameter tensor is sampled.
    GradcheckOptions {
        max_coords: 25,
        ..GradcheckOptions::default()
    }
}

fn params_with(m: &AoaModel, prefixes: &[&str]) -> Vec<(String, Tensor)> {
    m.named_parameters()
        .into_iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)))
        .collect()
}

fn assert_passed(
    what: &str,
    params: &[(String, Tensor)],
    r: &aoanet::autograd::gradcheck::GradcheckReport,
) {
    for ((name, _), rep) in params.iter().zip(&r.inputs) {
        assert!(rep.max_error <= r.tolerance, "{what}: {name}: {rep:?}");
    }
    println!(
        "{what}: {} parameters, max error {:.2e}",
        params.len(),
        r.max_error()
    );
}

#[test]
fn refiner_every_switch() {
    let (feats, mask) = inputs();
    for (refine_aoa, use_ff) in [(true, false), (false, false), (true, true), (false, true)] {
        let m = AoaModel::new(
            tiny(|c| {
                c.refine_aoa = refine_aoa;
                c.use_ff = use_ff;
            }),
            DType::F64,
            1,
        )
        .unwrap();
        let params = params_with(&m, &["refiner.", "att_embed."]);
        let r = projection(&[2, 3, 8]);
        let loss = || {
            let mut rng = Philox::new(3);
            let enc = m.encode(&feats, Some(&mask), None, &mut Ctx::train(&mut rng), None)?;
            enc.att_feats.mul(&r)?.sum_all()
        };
        let rep = gradcheck_params(loss, &params, &opts()).unwrap();
        assert_passed(
            &format!("refiner refine_aoa={refine_aoa} use_ff={use_ff}"),
            &params,
            &rep,
        );
    }
}

#[test]
fn decoder_step_every_type() {
    let (feats, mask) = inputs();
    for (dt, ctx_drop) in [
        (DecoderType::Aoa, true),
        (DecoderType::Lstm, false),
        (DecoderType::Base, true),
    ] {
        let m = AoaModel::new(
            tiny(|c| {
                c.decoder_type = dt;
                c.ctx_drop = ctx_drop;
            }),
            DType::F64,
            2,
        )
        .unwrap();
        let params = params_with(&m, &["core.", "logit.", "embed.", "ctx2att."]);
        let r = projection(&[2, 8]);
        let loss = || {
            let mut rng = Philox::new(4);
            let enc = m.encode(&feats, Some(&mask), None, &mut Ctx::train(&mut rng), None)?;
            let s0 = m.init_state(2);
            let o1 = m.step(&[0, 0], &enc, &s0, &mut Ctx::train(&mut rng))?;
            let o2 = m.step(&[3, 5], &enc, &o1.state, &mut Ctx::train(&mut rng))?;
            o2.logprobs
                .mul(&r)?
                .sum_all()?
                .add(&o2.state.ctx.sum_all()?)
        };
        let rep = gradcheck_params(loss, &params, &opts()).unwrap();
        assert_passed(
            &format!("decoder {dt:?} ctx_drop={ctx_drop}"),
            &params,
            &rep,
        );
    }
}

#[test]
fn full_model_losses() {
    let (feats, mask) = inputs();
    for mean_feats in [true, false] {
        let m = AoaModel::new(tiny(|c| c.mean_feats = mean_feats), DType::F64, 3).unwrap();
        let params = m.named_parameters();
        let fc = Tensor::randn(&[2, 6], DType::F64, &mut Philox::new(8));
        // Rows: image 0 × 2 captions, image 1 × 2 captions; BOS, words, EOS, padding.
        let labels = [
            0, 1, 2, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 5, 6, 2, 1, 0, 0, 3, 3, 0, 0, 0,
        ];
        let len = 6;
        let targets: Vec<usize> = (0..4)
            .flat_map(|r| labels[r * len + 1..(r + 1) * len].to_vec())
            .collect();
        let mask_t = Tensor::from_vec(
            vec![
                1.0f64, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
                1.0, 1.0, 0.0, 0.0,
            ],
            &[4, 5],
        )
        .unwrap();
        let loss = || {
            let mut rng = Philox::new(6);
            let enc = m
                .encode(
                    &feats,
                    Some(&mask),
                    Some(&fc),
                    &mut Ctx::train(&mut rng),
                    None,
                )?
                .expand(2)?;
            let lp = m.forward_xe(&enc, &labels, len, 0.0, &mut Ctx::train(&mut rng))?;
            let xe = label_smoothing_loss(&lp, &targets, &mask_t, 0.2)?;
            // The self-critical loss on fixed samples, through the same log-probabilities.
            let seq = [2, 3, 0, 0, 0, 1, 0, 0, 0, 0, 5, 5, 2, 0, 0, 4, 4, 4, 4, 4];
            let slp = lp.gather_last(&seq)?;
            xe.add(&reward_loss(&slp, &seq, &[0.5, -1.0, 0.25, 2.0])?)
        };
        let rep = gradcheck_params(loss, &params, &opts()).unwrap();
        assert_passed(
            &format!("full model mean_feats={mean_feats}"),
            &params,
            &rep,
        );
    }
}
