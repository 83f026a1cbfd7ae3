//! The non-beam decoding path (`model::decode::sample`): greedy decoding against a row-by-row
//! reference, the length cap, the constraints, the sampling methods, and the self-critical
//! sampler's gradient.

mod decode_support;

use aoanet::autograd::no_grad;
use aoanet::model::{AoaModel, DecodeOptions, Encoded, SampleMethod, Samples, decode, sample};
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use decode_support::{VOCAB, encode, inputs, model};

fn greedy(m: &AoaModel, enc: &Encoded, opts: &DecodeOptions) -> Samples {
    no_grad(|| sample(m, enc, opts, &mut Ctx::eval(&mut Philox::new(0)), false)).unwrap()
}

/// One row decoded alone, the plain way: always `max_length` steps, argmax of each step,
/// finished rows fed 0, the argmax's log-probability recorded at every step.
fn row_reference(m: &AoaModel, enc: &Encoded, len: usize) -> (Vec<usize>, Vec<f64>) {
    let mut rng = Philox::new(0);
    let mut state = m.init_state(1);
    let (mut it, mut finished) = (0usize, false);
    let (mut words, mut lps) = (Vec::new(), Vec::new());
    for _ in 0..len {
        let out = no_grad(|| m.step(&[it], enc, &state, &mut Ctx::eval(&mut rng))).unwrap();
        state = out.state;
        let lp = out.logprobs.to_vec_f64();
        let mut best = 0;
        for (k, &v) in lp.iter().enumerate() {
            if v > lp[best] {
                best = k;
            }
        }
        lps.push(lp[best]);
        finished |= best == 0;
        it = if finished { 0 } else { best };
        words.push(it);
    }
    (words, lps)
}

#[test]
fn greedy_matches_a_row_by_row_reference() {
    let len = 20;
    let m = model(DType::F64, 1, 2.0, 1.0);
    let enc = encode(&m, 6, 2);
    let g = greedy(&m, &enc, &DecodeOptions::greedy(len));
    let lp = g.logprobs.to_vec_f64();
    assert_eq!(g.logprobs.shape(), [6, len]);
    // The batch stops once every row has emitted EOS (or at max_length).
    let ends: Vec<usize> = (0..6)
        .map(|r| g.row(r).iter().position(|&w| w == 0).map_or(len, |p| p + 1))
        .collect();
    let stop = *ends.iter().max().unwrap();
    assert!(
        ends.iter().any(|&e| e < stop),
        "the test needs rows of different lengths: {ends:?}"
    );
    for r in 0..6 {
        let (words, lps) = row_reference(&m, &enc.select_rows(&[r]).unwrap(), len);
        assert_eq!(g.row(r), &words[..], "row {r}");
        for t in 0..len {
            let got = lp[r * len + t];
            if t < stop {
                // Finished rows keep recording their argmax's log-probability until the stop.
                assert!(
                    (got - lps[t]).abs() < 1e-12,
                    "row {r} t {t}: {got} vs {}",
                    lps[t]
                );
            } else {
                assert_eq!(got, 0.0, "row {r} t {t}: after the loop stopped");
            }
        }
    }
}

#[test]
fn max_length_caps_the_caption() {
    // EOS made impossible in practice: every row runs to the cap.
    let m = model(DType::F32, 3, 2.0, -50.0);
    let enc = encode(&m, 4, 5);
    for len in [1, 5, 20] {
        let g = greedy(&m, &enc, &DecodeOptions::greedy(len));
        assert_eq!(g.seq.len(), 4 * len);
        assert!(g.seq.iter().all(|&w| w > 0), "len {len}: {:?}", g.seq);
        assert_eq!(g.logprobs.shape(), [4, len]);
        assert!(
            g.logprobs
                .to_vec_f64()
                .iter()
                .all(|&v| v < 0.0 && v.is_finite())
        );
    }
}

fn has_repeat(seq: &[usize]) -> bool {
    seq.windows(2).any(|w| w[0] == w[1] && w[0] != 0)
}

#[test]
fn decoding_constraint_forbids_repeating_the_previous_word() {
    let len = 20;
    let m = model(DType::F64, 1, 2.0, -1.0);
    let enc = encode(&m, 6, 2);
    let free = greedy(&m, &enc, &DecodeOptions::greedy(len));
    assert!(
        (0..6).any(|r| has_repeat(free.row(r))),
        "the model must repeat words"
    );
    let opts = DecodeOptions {
        decoding_constraint: true,
        ..DecodeOptions::greedy(len)
    };
    let c = greedy(&m, &enc, &opts);
    for r in 0..6 {
        assert!(!has_repeat(c.row(r)), "row {r}: {:?}", c.row(r));
    }
    assert!(c.logprobs.to_vec_f64().iter().all(|v| v.is_finite()));
}

/// The word before each caption's EOS (none for captions without one or empty ones).
fn last_words(s: &Samples) -> Vec<usize> {
    (0..s.rows)
        .filter_map(|r| {
            let row = s.row(r);
            match row.iter().position(|&w| w == 0) {
                Some(p) if p > 0 => Some(row[p - 1]),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn remove_bad_endings_forbids_eos_after_them() {
    let len = 20;
    let m = model(DType::F64, 1, 2.0, 1.0);
    let enc = encode(&m, 6, 2);
    let free = greedy(&m, &enc, &DecodeOptions::greedy(len));
    let bad = last_words(&free);
    assert!(
        !bad.is_empty(),
        "the test needs captions that end after a word"
    );
    let opts = DecodeOptions {
        remove_bad_endings: true,
        bad_endings: bad.clone(),
        ..DecodeOptions::greedy(len)
    };
    let c = greedy(&m, &enc, &opts);
    for w in last_words(&c) {
        assert!(!bad.contains(&w), "a caption ends with bad word {w}");
    }
    assert_ne!(c.seq, free.seq);
}

#[test]
fn block_trigrams_penalises_repeated_trigrams() {
    let len = 20;
    let m = model(DType::F64, 1, 2.0, -1.0);
    let enc = encode(&m, 6, 2);
    let repeats = |s: &Samples| -> usize {
        (0..s.rows)
            .map(|r| {
                let row = s.row(r);
                let tri: Vec<&[usize]> = row.windows(3).filter(|w| w[2] != 0).collect();
                (0..tri.len())
                    .filter(|&i| tri[..i].contains(&tri[i]))
                    .count()
            })
            .sum()
    };
    let free = greedy(&m, &enc, &DecodeOptions::greedy(len));
    let opts = DecodeOptions {
        block_trigrams: true,
        ..DecodeOptions::greedy(len)
    };
    let blocked = greedy(&m, &enc, &opts);
    assert!(
        repeats(&blocked) < repeats(&free),
        "{} repeated trigrams with blocking, {} without",
        repeats(&blocked),
        repeats(&free)
    );
}

#[test]
fn top1_and_a_tiny_nucleus_are_greedy() {
    let len = 12;
    let m = model(DType::F64, 1, 2.0, 1.0);
    let enc = encode(&m, 6, 2);
    let g = greedy(&m, &enc, &DecodeOptions::greedy(len));
    let mut rng = Philox::new(9);
    let top1 = DecodeOptions {
        sample_method: SampleMethod::TopK(1),
        ..DecodeOptions::greedy(len)
    };
    let s = no_grad(|| sample(&m, &enc, &top1, &mut Ctx::eval(&mut rng), false)).unwrap();
    assert_eq!(s.seq, g.seq);
    assert_eq!(s.logprobs.to_vec_f64(), g.logprobs.to_vec_f64());
    let nucleus = DecodeOptions {
        sample_method: SampleMethod::TopP(1e-9),
        ..DecodeOptions::greedy(len)
    };
    let s = no_grad(|| sample(&m, &enc, &nucleus, &mut Ctx::eval(&mut rng), false)).unwrap();
    assert_eq!(s.seq, g.seq);
    // The renormalised probability of the only word kept is 1 (recorded until the stop).
    let stop = (0..6)
        .map(|r| g.row(r).iter().position(|&w| w == 0).map_or(len, |p| p + 1))
        .max()
        .unwrap();
    for (i, v) in s.logprobs.to_vec_f64().into_iter().enumerate() {
        if i % len < stop {
            assert!(v.abs() < 1e-12, "{i}: {v}");
        }
    }
}

#[test]
fn sampling_draws_from_the_distribution_and_is_seeded() {
    let m = model(DType::F64, 1, 1.0, 0.0);
    let enc1 = encode(&m, 1, 2);
    // The first word's distribution from one step.
    let first = no_grad(|| {
        m.step(
            &[0],
            &enc1,
            &m.init_state(1),
            &mut Ctx::eval(&mut Philox::new(0)),
        )
    })
    .unwrap();
    let p: Vec<f64> = first
        .logprobs
        .to_vec_f64()
        .iter()
        .map(|l| l.exp())
        .collect();
    let n = 4000;
    let enc = enc1.expand(n).unwrap();
    let opts = DecodeOptions {
        sample_method: SampleMethod::Sample,
        ..DecodeOptions::greedy(1)
    };
    let draw = |seed| {
        no_grad(|| {
            sample(
                &m,
                &enc,
                &opts,
                &mut Ctx::eval(&mut Philox::new(seed)),
                false,
            )
        })
        .unwrap()
    };
    let s = draw(5);
    let mut counts = [0usize; VOCAB + 1];
    for &w in &s.seq {
        counts[w] += 1;
    }
    // EOS draws are recorded as 0 as well: they are still draws of class 0.
    for (k, (&c, &pk)) in counts.iter().zip(&p).enumerate() {
        let f = c as f64 / n as f64;
        let sd = (pk * (1.0 - pk) / n as f64).sqrt();
        assert!(
            (f - pk).abs() < 5.0 * sd + 1e-3,
            "class {k}: frequency {f}, probability {pk}"
        );
    }
    // The recorded value is the drawn word's log-probability.
    let lp = s.logprobs.to_vec_f64();
    let lp0 = first.logprobs.to_vec_f64();
    let raw_first: Vec<usize> = s.seq.clone();
    for (r, &w) in raw_first.iter().enumerate() {
        assert!((lp[r] - lp0[w]).abs() < 1e-12);
    }
    assert_eq!(draw(5).seq, s.seq, "same seed, same draws");
    assert_ne!(draw(6).seq, s.seq, "another seed, other draws");
}

/// The self-critical objective's shape: `Σ logprob · mask` over the sampled words.
fn scst_loss(
    m: &AoaModel,
    feats: &Tensor,
    masks: &Tensor,
    seed: u64,
    opts: &DecodeOptions,
) -> (Tensor, Vec<usize>) {
    let mut rng = Philox::new(seed);
    let mut ctx = Ctx::train(&mut rng);
    let enc = m
        .encode(feats, Some(masks), None, &mut ctx, None)
        .unwrap()
        .expand(3)
        .unwrap();
    let s = sample(m, &enc, opts, &mut ctx, false).unwrap();
    // Mask: the words up to and including the first EOS (the reference's RewardCriterion).
    let len = s.max_length;
    let mask: Vec<f64> = (0..s.rows)
        .flat_map(|r| {
            let row = s.row(r).to_vec();
            (0..len).map(move |t| if t == 0 || row[t - 1] > 0 { 1.0 } else { 0.0 })
        })
        .collect();
    let mask = Tensor::from_vec(mask, &[s.rows, len]).unwrap();
    let loss = s.logprobs.mul(&mask).unwrap().sum_all().unwrap();
    (loss, s.seq)
}

#[test]
fn scst_sampler_is_differentiable() {
    let m = model(DType::F64, 1, 2.0, 1.0);
    let (feats, masks) = inputs(2, DType::F64, 4);
    let opts = DecodeOptions {
        sample_method: SampleMethod::Sample,
        ..DecodeOptions::greedy(8)
    };
    let (loss, seq) = scst_loss(&m, &feats, &masks, 7, &opts);
    assert!(loss.requires_grad());
    loss.backward().unwrap();
    // Gradients reach the decoder, the embedding, and through the shared encoding the
    // encoder.
    for name in [
        "logit.weight",
        "embed.0.weight",
        "core.att_lstm.weight_ih",
        "att_embed.0.weight",
        "ctx2att.weight",
    ] {
        let (_, p) = m
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        let g = p.grad().unwrap_or_else(|| panic!("{name}: no gradient"));
        assert!(
            g.to_vec_f64().iter().any(|&v| v != 0.0),
            "{name}: zero gradient"
        );
    }
    // The gradient is the derivative of the loss with the draws and dropout masks fixed
    // (same seed): central differences on a few output biases.
    let bias = m.logit.bias.clone();
    let grad = bias.grad().unwrap().to_vec_f64();
    let h = 1e-6;
    for k in [0, 3, VOCAB] {
        let at = |delta: f64| {
            let mut b = bias.to_vec_f64();
            b[k] += delta;
            bias.update_(&Tensor::from_vec(b, &[VOCAB + 1]).unwrap())
                .unwrap();
            let (l, s) = no_grad(|| scst_loss(&m, &feats, &masks, 7, &opts));
            let mut b = bias.to_vec_f64();
            b[k] -= delta;
            bias.update_(&Tensor::from_vec(b, &[VOCAB + 1]).unwrap())
                .unwrap();
            assert_eq!(s, seq, "a perturbation of {delta} changed the draws");
            l.item().unwrap()
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (numeric - grad[k]).abs() <= 1e-6 * (1.0 + grad[k].abs()),
            "bias {k}: autograd {}, numeric {numeric}",
            grad[k]
        );
    }
}

#[test]
fn decode_returns_words_before_eos_with_attention() {
    let m = model(DType::F32, 1, 2.0, 1.0);
    let (feats, masks) = inputs(5, DType::F32, 2);
    let opts = DecodeOptions::greedy(20);
    let caps = decode(&m, &feats, Some(&masks), &opts, true, &mut Philox::new(0)).unwrap();
    let enc = encode(&m, 5, 2);
    let g = greedy(&m, &enc, &opts);
    let mv = masks.to_vec_f64();
    for (r, c) in caps.iter().enumerate() {
        let n = g.row(r).iter().position(|&w| w == 0).unwrap_or(20);
        assert_eq!(c.ids, &g.row(r)[..n]);
        assert_eq!(c.logprobs.len(), n);
        let att = c.attention.as_ref().unwrap();
        assert_eq!(att.len(), n);
        for a in att {
            // One weight per region of the clipped batch (the longest image has 6), summing
            // to 1, none on padding.
            assert_eq!(a.len(), 6);
            assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            for (j, &w) in a.iter().enumerate() {
                if mv[r * 6 + j] == 0.0 {
                    assert_eq!(w, 0.0, "attention on a padded region");
                }
            }
        }
    }
}
