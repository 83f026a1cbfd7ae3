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

/// Decodes a fixture's images with the weights under `prefix` and compares with the tensors
/// under `prefix` (`greedy`, `beam2`, `beam3`, …): sequences identical; greedy
/// log-probabilities within the forward tolerance; beam log-probabilities and scores within
/// 1e-5 relative (the reference rounds them to f32, so that is the comparison's resolution),
/// plus 1e-7 absolute in f64 (an f32 ulp near 1) or 1e-6 in f32 (the f32 model's own error on
/// log-probabilities near 0; the worst seen is 6.6e-7 on −0.2).
fn decodes(fx: &Fixture, dtype: DType, prefix: &str) {
    use aoanet::model::{DecodeOptions, LengthPenalty, bad_ending_ids, beam_search, sample};
    let tol = Tolerance::for_dtype(dtype);
    let beam_tol = Tolerance {
        atol: if dtype == DType::F64 { 1e-7 } else { 1e-6 },
        rtol: 1e-5,
    };
    let m = model(fx, dtype, prefix);
    let feats = fx.take("in.att_feats").to_dtype(dtype).unwrap();
    let masks = fx.get("in.att_masks").map(|t| t.to_dtype(dtype).unwrap());
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

#[test]
fn decoding_matches_reference() {
    for fx in fixtures() {
        for dtype in [DType::F64, DType::F32] {
            decodes(&fx, dtype, "param.");
            decodes(&fx, dtype, "trained.");
        }
        println!("{}: decoding ok", fx.name);
    }
}
