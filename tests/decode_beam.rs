//! Beam search (`model::decode::beam_search`): beam 1 is greedy, the batched search equals the
//! per-image one, the early stop changes nothing, diverse groups, scores and penalties.

mod decode_support;

use aoanet::autograd::no_grad;
use aoanet::model::{
    AoaModel, BeamResult, DecodeOptions, Encoded, LengthPenalty, beam_search, decode, sample,
};
use aoanet::nn::Ctx;
use aoanet::rng::Philox;
use aoanet::tensor::DType;
use decode_support::{VOCAB, bias_logit, encode, inputs, model};

fn beams(m: &AoaModel, enc: &Encoded, opts: &DecodeOptions) -> Vec<BeamResult> {
    beam_search(m, enc, opts, false).unwrap()
}

fn greedy_rows(m: &AoaModel, enc: &Encoded, len: usize) -> Vec<Vec<usize>> {
    let g = no_grad(|| {
        sample(
            m,
            enc,
            &DecodeOptions::greedy(len),
            &mut Ctx::eval(&mut Philox::new(0)),
            false,
        )
    })
    .unwrap();
    (0..g.rows).map(|r| g.row(r).to_vec()).collect()
}

#[test]
fn beam_of_one_is_greedy_unless_greedy_picks_unk() {
    let (mut full, mut ends) = (false, false);
    for (dtype, scale, eos) in [
        (DType::F64, 2.0, 1.0),
        (DType::F64, 3.0, -1.0),
        (DType::F32, 2.0, 1.0),
    ] {
        // UNK made unlikely, so that greedy never picks it either.
        let m = model(dtype, 1, scale, eos);
        bias_logit(&m, VOCAB, -50.0);
        let enc = encode(&m, 6, 2);
        let g = greedy_rows(&m, &enc, 20);
        assert!(g.iter().flatten().all(|&w| w != VOCAB), "greedy picked UNK");
        full |= g.iter().any(|r| r[19] != 0);
        ends |= g.iter().any(|r| r[19] == 0);
        let b = beams(&m, &enc, &DecodeOptions::beam(1, 20));
        for (r, res) in b.iter().enumerate() {
            assert_eq!(res.beams.len(), 1);
            assert_eq!(res.best().seq, g[r], "{dtype} row {r}");
        }
    }
    assert!(
        full && ends,
        "captions that end and captions that run to the cap"
    );
    // Beam search always suppresses UNK (−1000 on the last class); greedy does not.
    let m = model(DType::F64, 1, 2.0, 1.0);
    bias_logit(&m, VOCAB, 50.0);
    let enc = encode(&m, 3, 2);
    let g = greedy_rows(&m, &enc, 20);
    assert!(g.iter().all(|row| row[0] == VOCAB));
    for res in beams(&m, &enc, &DecodeOptions::beam(1, 20)) {
        assert!(!res.best().seq.contains(&VOCAB), "{:?}", res.best().seq);
        // Its words are the ones a beam would pick with UNK removed: log-probabilities of
        // real words are still high (≈ −50 with the bias, not −1000).
        assert!(res.best().logprobs[0] > -100.0);
    }
}

#[test]
fn batched_search_equals_the_per_image_search() {
    let m = model(DType::F64, 1, 2.0, 1.0);
    let enc = encode(&m, 6, 2);
    let variants = [
        DecodeOptions::beam(3, 20),
        DecodeOptions {
            length_penalty: LengthPenalty::Wu(0.7),
            ..DecodeOptions::beam(2, 20)
        },
        DecodeOptions {
            group_size: 2,
            diversity_lambda: 0.5,
            ..DecodeOptions::beam(4, 20)
        },
        DecodeOptions {
            decoding_constraint: true,
            temperature: 0.7,
            ..DecodeOptions::beam(3, 12)
        },
    ];
    for opts in &variants {
        let batched = beam_search(&m, &enc, opts, true).unwrap();
        for (i, res) in batched.iter().enumerate() {
            let alone = beam_search(&m, &enc.select_rows(&[i]).unwrap(), opts, true).unwrap();
            assert_eq!(&alone[0], res, "image {i} with {opts:?}");
        }
    }
    // The images must disagree for this to mean anything.
    let b = beams(&m, &enc, &variants[0]);
    assert!(b.iter().any(|r| r.best().seq != b[0].best().seq));
}

#[test]
fn early_stop_changes_nothing() {
    // `wu_0` scores exactly like no penalty (÷ 1), but turns the early stop off.
    for (scale, eos) in [(2.0, 1.0), (3.0, 2.0), (2.0, 3.0)] {
        let m = model(DType::F64, 1, scale, eos);
        let enc = encode(&m, 6, 2);
        for beam in [1, 2, 3, 5] {
            let fast = beams(&m, &enc, &DecodeOptions::beam(beam, 20));
            let full = beams(
                &m,
                &enc,
                &DecodeOptions {
                    length_penalty: LengthPenalty::Wu(0.0),
                    ..DecodeOptions::beam(beam, 20)
                },
            );
            assert_eq!(fast, full, "scale {scale} eos {eos} beam {beam}");
        }
    }
}

#[test]
fn diverse_groups_start_with_different_words() {
    let m = model(DType::F64, 1, 2.0, -1.0);
    let enc = encode(&m, 4, 2);
    let first_words = |lambda: f64| -> Vec<Vec<usize>> {
        let opts = DecodeOptions {
            group_size: 3,
            diversity_lambda: lambda,
            ..DecodeOptions::beam(3, 20)
        };
        beams(&m, &enc, &opts)
            .iter()
            .map(|r| {
                assert_eq!(r.beams.len(), 3);
                r.beams.iter().map(|b| b.seq[0]).collect()
            })
            .collect()
    };
    // Without the penalty, three groups of one beam are three identical searches.
    for w in first_words(0.0) {
        assert!(w.iter().all(|&x| x == w[0]), "{w:?}");
    }
    for w in first_words(100.0) {
        assert!(w[0] != w[1] && w[0] != w[2] && w[1] != w[2], "{w:?}");
    }
}

#[test]
fn scores_are_the_f32_sums_and_penalties_apply() {
    let m = model(DType::F64, 1, 2.0, 1.0);
    let enc = encode(&m, 6, 2);
    let len_of = |seq: &[usize]| {
        seq.iter()
            .position(|&w| w == 0)
            .map_or(seq.len(), |p| p + 1)
    };
    for penalty in [
        LengthPenalty::None,
        LengthPenalty::Avg(1.0),
        LengthPenalty::Wu(0.7),
    ] {
        let opts = DecodeOptions {
            length_penalty: penalty,
            ..DecodeOptions::beam(3, 20)
        };
        for r in beams(&m, &enc, &opts) {
            assert_eq!(r.beams.len(), 3);
            for w in r.beams.windows(2) {
                assert!(w[0].score >= w[1].score, "beams sorted by score");
            }
            for b in &r.beams {
                let n = len_of(&b.seq);
                // The running sum adds each step's f32 log-probability in f32.
                let sum = b.logprobs[..n].iter().fold(0f32, |s, &v| s + v);
                assert_eq!(b.score, penalty.apply(n, sum as f64), "{penalty:?} {b:?}");
                assert!(b.seq[n..].iter().all(|&w| w == 0));
                assert!(b.logprobs[n..].iter().all(|&v| v == 0.0));
            }
        }
    }
}

#[test]
fn beam_attention_and_decode() {
    let m = model(DType::F32, 1, 2.0, 1.0);
    let (feats, masks) = inputs(5, DType::F32, 2);
    let opts = DecodeOptions::beam(3, 20);
    let caps = decode(&m, &feats, Some(&masks), &opts, true, &mut Philox::new(0)).unwrap();
    let enc = encode(&m, 5, 2);
    let res = beam_search(&m, &enc, &opts, true).unwrap();
    let mv = masks.to_vec_f64();
    for (r, (c, b)) in caps.iter().zip(&res).enumerate() {
        let best = b.best();
        let n = best.seq.iter().position(|&w| w == 0).unwrap_or(20);
        assert_eq!(c.ids, &best.seq[..n]);
        let att = best.attention.as_ref().unwrap();
        assert_eq!(
            att.len(),
            best.seq.iter().position(|&w| w == 0).map_or(20, |p| p + 1)
        );
        for a in att {
            assert_eq!(a.len(), 6);
            assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            for (j, &w) in a.iter().enumerate() {
                if mv[r * 6 + j] == 0.0 {
                    assert_eq!(w, 0.0);
                }
            }
        }
        assert_eq!(c.attention.as_ref().unwrap()[..], att[..n]);
    }
    // Different images attend differently.
    assert_ne!(
        res[0].best().attention.as_ref().unwrap()[0],
        res[4].best().attention.as_ref().unwrap()[0]
    );
}

#[test]
fn bad_options_are_refused() {
    let m = model(DType::F32, 1, 1.0, 0.0);
    let enc = encode(&m, 1, 2);
    let e = beam_search(&m, &enc, &DecodeOptions::beam(VOCAB + 2, 20), false).unwrap_err();
    assert!(e.to_string().contains("beam_size"), "{e}");
    let o = DecodeOptions {
        group_size: 2,
        ..DecodeOptions::beam(3, 20)
    };
    assert!(beam_search(&m, &enc, &o, false).is_err());
}
