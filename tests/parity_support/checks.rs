//! The parity checks, parameterised by device: `tests/parity.rs` runs them on the CPU and
//! `tests/cuda_parity.rs` on a GPU. Each compares the fixture's tensors through
//! [`Fixture::compare`], which marks them as compared.

use super::{Fixture, Tolerance};
use aoanet::autograd::no_grad;
use aoanet::model::AoaModel;
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Device, Tensor};
use aoanet::train::adam::zero_grad;
use aoanet::train::{Adam, AdamConfig, label_smoothing_loss, lm_loss, reward_loss};

/// Builds the fixture's model in `dtype` with the fixture's initial weights, on `dev`.
pub fn model(fx: &Fixture, dtype: DType, prefix: &str, dev: Device) -> AoaModel {
    let m = AoaModel::new(fx.config(), dtype, 0).unwrap();
    for (name, p) in m.named_parameters() {
        let key = format!("{prefix}{name}");
        let t = fx.take(&key).to_dtype(dtype).unwrap();
        p.update_(&t)
            .unwrap_or_else(|e| panic!("{}: {key}: {e}", fx.name));
    }
    m.to_device_(dev).unwrap();
    assert_eq!(m.device(), dev);
    m
}

/// A fixture tensor in `dtype` on `dev`.
pub fn input(fx: &Fixture, key: &str, dtype: DType, dev: Device) -> Tensor {
    fx.take(key)
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap()
}

pub fn forward_outputs(fx: &Fixture, dtype: DType, dev: Device) {
    let tol = Tolerance::for_dtype(dtype);
    let m = model(fx, dtype, "param.", dev);
    let feats = input(fx, "in.att_feats", dtype, dev);
    let masks = fx
        .get("in.att_masks")
        .map(|t| t.to_dtype(dtype).unwrap().to_device(dev).unwrap());
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
    assert_eq!(lp.device(), dev);
    fx.compare("out.logprobs", &lp, tol, None);
}

/// The label-smoothed loss (0.2) of the teacher-forced log-probabilities, from the initial
/// weights of `m`; also returns the log-probabilities.
pub fn xe_loss(fx: &Fixture, m: &AoaModel, dtype: DType) -> (Tensor, Tensor) {
    let dev = m.device();
    let feats = input(fx, "in.att_feats", dtype, dev);
    let masks = fx
        .get("in.att_masks")
        .map(|t| t.to_dtype(dtype).unwrap().to_device(dev).unwrap());
    let mut rng = Philox::new(0);
    let enc = m
        .encode(&feats, masks.as_ref(), None, &mut Ctx::eval(&mut rng), None)
        .unwrap();
    let enc = enc.expand(fx.seq_per_img()).unwrap();
    let (lshape, labels) = fx.labels();
    let (rows, len) = (lshape[0], lshape[1]);
    let lp = m
        .forward_xe(&enc, &labels, len, 0.0, &mut Ctx::eval(&mut rng))
        .unwrap();
    let targets: Vec<usize> = (0..rows)
        .flat_map(|r| labels[r * len + 1..(r + 1) * len].to_vec())
        .collect();
    let mask = fx
        .take("in.label_masks")
        .narrow(1, 1, len - 1)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let smoothing = fx
        .json
        .get("config")
        .unwrap()
        .get("label_smoothing")
        .unwrap()
        .as_f64()
        .unwrap();
    let loss = label_smoothing_loss(&lp, &targets, &mask, smoothing).unwrap();
    (loss, lp)
}

/// Losses, every parameter gradient, and three Adam steps.
pub fn training_outputs(fx: &Fixture, dtype: DType, dev: Device) {
    let tol = Tolerance::for_dtype(dtype);
    let json_num = |k: &str| fx.json.get(k).unwrap().as_f64().unwrap();
    let m = model(fx, dtype, "param.", dev);
    let (loss, lp) = xe_loss(fx, &m, dtype);
    fx.compare_scalar(
        "loss_label_smoothing",
        loss.item().unwrap(),
        json_num("loss_label_smoothing"),
        tol,
    );
    let (lshape, labels) = fx.labels();
    let (rows, len) = (lshape[0], lshape[1]);
    let targets: Vec<usize> = (0..rows)
        .flat_map(|r| labels[r * len + 1..(r + 1) * len].to_vec())
        .collect();
    let mask = fx
        .take("in.label_masks")
        .narrow(1, 1, len - 1)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let lm = no_grad(|| lm_loss(&lp, &targets, &mask)).unwrap();
    fx.compare_scalar("loss_lm", lm.item().unwrap(), json_num("loss_lm"), tol);
    loss.backward().unwrap();
    for (name, p) in m.named_parameters() {
        let g = p
            .grad()
            .unwrap_or_else(|| panic!("{}: {name} received no gradient", fx.name));
        assert_eq!(g.device(), dev, "{name}: gradient device");
        assert!(
            g.to_vec_f64().iter().any(|&v| v != 0.0),
            "{}: {name}: gradient is all zero",
            fx.name
        );
        fx.compare(&format!("grad.{name}"), &g, tol, None);
    }

    // The reference's RewardCriterion on given samples, back-propagated into the log-probs.
    let (sshape, seq) = fx.ints("rc.seq");
    let seq: Vec<usize> = seq.into_iter().map(|v| v as usize).collect();
    let steps = sshape[1];
    let lp = lp.detach().requiring_grad();
    let slp = lp
        .narrow(1, 0, steps)
        .unwrap()
        .contiguous()
        .unwrap()
        .gather_last(&seq)
        .unwrap();
    fx.compare("rc.sample_logprobs", &slp, tol, None);
    let reward = fx.take("rc.reward").to_vec_f64();
    let rl = reward_loss(&slp, &seq, &reward).unwrap();
    fx.compare_scalar(
        "loss_reward",
        rl.item().unwrap(),
        json_num("loss_reward"),
        tol,
    );
    rl.backward().unwrap();
    fx.compare("rc.grad_logprobs", &lp.grad().unwrap(), tol, None);

    // Adam: three steps at lr 1e-2 with the ±0.1 clamp, in f64 only (the fixture's own
    // precision; an f32 optimiser state drifts beyond a meaningful tolerance).
    if dtype == DType::F64 {
        let adam_cfg = fx.json.get("adam").unwrap();
        let mut opt = Adam::new(AdamConfig {
            lr: adam_cfg.get("lr").unwrap().as_f64().unwrap(),
            grad_clip: adam_cfg.get("grad_clamp").unwrap().as_f64(),
            ..AdamConfig::default()
        })
        .unwrap();
        let params = m.named_parameters();
        let losses: Vec<f64> = adam_cfg
            .get("losses")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (step, &want) in losses.iter().enumerate() {
            zero_grad(&params);
            let (loss, _) = xe_loss(fx, &m, dtype);
            fx.compare_scalar(
                &format!("adam.losses[{step}]"),
                loss.item().unwrap(),
                want,
                tol,
            );
            if step + 1 == losses.len() {
                break;
            }
            loss.backward().unwrap();
            opt.step(&params).unwrap();
        }
        for (name, p) in &params {
            fx.compare(&format!("adam.after.{name}"), p, tol, None);
        }
    }
}

/// Decodes a fixture's images with the weights under `prefix` and compares with the tensors
/// under `prefix` (`greedy`, `beam2`, `beam3`, …): sequences identical; greedy
/// log-probabilities within the forward tolerance; beam log-probabilities and scores within
/// 1e-5 relative (the reference rounds them to f32, so that is the comparison's resolution),
/// plus 1e-7 absolute in f64 (an f32 ulp near 1) or 1e-6 in f32 (the f32 model's own error on
/// log-probabilities near 0; the worst seen is 6.6e-7 on −0.2).
pub fn decodes(fx: &Fixture, dtype: DType, prefix: &str, dev: Device) {
    use aoanet::model::{DecodeOptions, LengthPenalty, bad_ending_ids, beam_search, sample};
    let tol = Tolerance::for_dtype(dtype);
    let beam_tol = Tolerance {
        atol: if dtype == DType::F64 { 1e-7 } else { 1e-6 },
        rtol: 1e-5,
    };
    let m = model(fx, dtype, prefix, dev);
    let feats = input(fx, "in.att_feats", dtype, dev);
    let masks = fx
        .get("in.att_masks")
        .map(|t| t.to_dtype(dtype).unwrap().to_device(dev).unwrap());
    let mut rng = Philox::new(0);
    let enc =
        no_grad(|| m.encode(&feats, masks.as_ref(), None, &mut Ctx::eval(&mut rng), None)).unwrap();
    let images = enc.batch();
    let len = m.config().max_length;
    let key = |name: &str| format!("{prefix}{name}").replace("param.", "");
    let trained = prefix == "trained.";

    // Greedy.
    let g = no_grad(|| {
        sample(
            &m,
            &enc,
            &DecodeOptions::greedy(len),
            &mut Ctx::eval(&mut rng),
            false,
        )
    })
    .unwrap();
    fx.compare_ints(&key("greedy.seq"), &[images, len], &g.seq);
    fx.compare(&key("greedy.logprobs"), &g.logprobs, tol, None);
    if trained {
        let want: Vec<usize> = fx.trained_decode("greedy").concat();
        assert_eq!(g.seq, want, "{}: trained_decodes.greedy", fx.name);
    }

    // Beam search: full comparisons for beam 2 and 3.
    for beam in [2, 3] {
        let r = beam_search(&m, &enc, &DecodeOptions::beam(beam, len), false).unwrap();
        let seq: Vec<usize> = r.iter().flat_map(|x| x.best().seq.clone()).collect();
        let all: Vec<usize> = r
            .iter()
            .flat_map(|x| x.beams.iter().flat_map(|b| b.seq.clone()))
            .collect();
        let lp: Vec<f64> = r
            .iter()
            .flat_map(|x| x.best().logprobs.iter().map(|&v| v as f64))
            .collect();
        let scores: Vec<f64> = r
            .iter()
            .flat_map(|x| x.beams.iter().map(|b| b.score))
            .collect();
        fx.compare_ints(&key(&format!("beam{beam}.seq")), &[images, len], &seq);
        fx.compare_ints(
            &key(&format!("beam{beam}.all_seqs")),
            &[images, beam, len],
            &all,
        );
        fx.compare(
            &key(&format!("beam{beam}.logprobs")),
            &Tensor::from_vec(lp, &[images, len]).unwrap(),
            beam_tol,
            None,
        );
        fx.compare(
            &key(&format!("beam{beam}.scores")),
            &Tensor::from_vec(scores, &[images, beam]).unwrap(),
            beam_tol,
            None,
        );
        if trained {
            let want: Vec<usize> = fx.trained_decode(&format!("beam{beam}")).concat();
            assert_eq!(seq, want, "{}: trained_decodes.beam{beam}", fx.name);
        }
    }
    if !trained {
        return;
    }

    // The options only the trained model exercises: sequences only.
    let vocab = fx.vocab();
    let bad = bad_ending_ids(vocab.iter().map(|(i, w)| (*i, w.as_str())));
    let variants = [
        (
            "beam3_wu0.7",
            DecodeOptions {
                length_penalty: LengthPenalty::Wu(0.7),
                ..DecodeOptions::beam(3, len)
            },
        ),
        (
            "beam3_avg1",
            DecodeOptions {
                length_penalty: LengthPenalty::Avg(1.0),
                ..DecodeOptions::beam(3, len)
            },
        ),
        (
            "beam2_bad_endings",
            DecodeOptions {
                remove_bad_endings: true,
                bad_endings: bad.clone(),
                ..DecodeOptions::beam(2, len)
            },
        ),
        (
            "beam2_constraint",
            DecodeOptions {
                decoding_constraint: true,
                ..DecodeOptions::beam(2, len)
            },
        ),
    ];
    for (name, opts) in variants {
        let r = beam_search(&m, &enc, &opts, false).unwrap();
        let seq: Vec<usize> = r.iter().flat_map(|x| x.best().seq.clone()).collect();
        fx.compare_ints(&format!("trained.{name}.seq"), &[images, len], &seq);
        let want: Vec<usize> = fx.trained_decode(name).concat();
        assert_eq!(seq, want, "{}: trained_decodes.{name}", fx.name);
    }
}
