//! The decoding that training and evaluation need, behind a small interface: captions for a
//! batch of images (greedy or beam), and the self-critical sampler (`n` rows per image with
//! differentiable log-probabilities).
//!
//! TEMPORARY: greedy and sampling are a plain loop over [`AoaModel::step`] until the decoding
//! module (`model::decode`, its own work item) lands; then these functions call it and beam
//! search becomes available.

use crate::autograd::no_grad;
use crate::model::{AoaModel, Encoded, sample_from_logprobs};
use crate::nn::Ctx;
use crate::rng::Philox;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// One decoded caption.
#[derive(Clone, Debug, PartialEq)]
pub struct Caption {
    /// The words, up to (not including) the EOS.
    pub ids: Vec<usize>,
    /// When asked for: the attention over the image's regions (averaged over heads) when each
    /// word was chosen, one vector per word.
    pub attention: Option<Vec<Vec<f32>>>,
}

/// Captions for the images `att_feats [B, N, F]` (masks `[B, N]` or `None`): greedy for
/// `beam_size` 1, beam search otherwise. Evaluation mode, no graph.
pub fn decode_images(
    model: &AoaModel,
    att_feats: &Tensor,
    att_masks: Option<&Tensor>,
    beam_size: usize,
    max_length: usize,
    with_attention: bool,
) -> Result<Vec<Caption>> {
    if beam_size > 1 {
        return Err(Error::invalid(format!(
            "beam search (beam size {beam_size}) is not available in this build yet: use beam \
             size 1 (greedy)"
        )));
    }
    let mut rng = Philox::new(0);
    no_grad(|| {
        let mut ctx = Ctx::eval(&mut rng);
        let enc = model.encode(att_feats, att_masks, None, &mut ctx, None)?;
        let (seq, attention) = run(model, &enc, max_length, &mut ctx, false, with_attention)?.1;
        let rows = enc.batch();
        let n = enc.att_feats.shape()[1];
        Ok((0..rows)
            .map(|r| {
                let row = &seq[r * max_length..(r + 1) * max_length];
                let len = row.iter().position(|&w| w == 0).unwrap_or(max_length);
                Caption {
                    ids: row[..len].to_vec(),
                    attention: attention.as_ref().map(|steps| {
                        steps[..len]
                            .iter()
                            .map(|a| a[r * n..(r + 1) * n].to_vec())
                            .collect()
                    }),
                }
            })
            .collect())
    })
}

/// Greedy words of every row of `enc` (`[R × max_length]`, 0 from a row's EOS on), in
/// evaluation mode without a graph: the self-critical baseline.
pub fn greedy_rows(model: &AoaModel, enc: &Encoded, max_length: usize) -> Result<Vec<usize>> {
    let mut rng = Philox::new(0);
    no_grad(|| {
        let mut ctx = Ctx::eval(&mut rng);
        Ok(run(model, enc, max_length, &mut ctx, false, false)?.1.0)
    })
}

/// Self-critical samples: one caption per row of `enc`, each word drawn from the model's
/// distribution (temperature 1) with `ctx`'s mode and randomness. Returns the words
/// `[R × max_length]` (0 from a row's EOS on) and the log-probability of each drawn word
/// `[R, max_length]` (0 after the loop stopped), differentiable when gradients are on.
pub fn sample_rows(
    model: &AoaModel,
    enc: &Encoded,
    max_length: usize,
    ctx: &mut Ctx,
) -> Result<(Vec<usize>, Tensor)> {
    let (lp, (seq, _)) = run(model, enc, max_length, ctx, true, false)?;
    Ok((seq, lp))
}

type Words = (Vec<usize>, Option<Vec<Vec<f32>>>);

/// The reference's `_sample` loop: pick a word per row, keep feeding 0 after EOS, stop after
/// `max_length` words or when every row has finished.
fn run(
    model: &AoaModel,
    enc: &Encoded,
    max_length: usize,
    ctx: &mut Ctx,
    sample: bool,
    with_attention: bool,
) -> Result<(Tensor, Words)> {
    let rows = enc.batch();
    let classes = model.config().vocab_size + 1;
    let mut state = model.init_state(rows);
    let mut it = vec![0usize; rows];
    let mut seq = vec![0usize; rows * max_length];
    let mut unfinished = vec![true; rows];
    let mut picked: Vec<Tensor> = Vec::with_capacity(max_length);
    let mut attention = with_attention.then(Vec::new);
    for t in 0..max_length {
        let out = model.step(&it, enc, &state, ctx)?;
        state = out.state;
        if let Some(a) = attention.as_mut() {
            a.push(out.attention.to_vec_f32());
        }
        let words = if sample {
            let lp = no_grad(|| out.logprobs.detach().to_vec_f64());
            (0..rows)
                .map(|r| {
                    sample_from_logprobs(&lp[r * classes..(r + 1) * classes], ctx.rng.next_f64())
                })
                .collect()
        } else {
            out.logprobs.argmax_last()?
        };
        if sample {
            picked.push(out.logprobs.gather_last(&words)?.unsqueeze(1)?);
        }
        for r in 0..rows {
            unfinished[r] &= words[r] > 0;
            it[r] = if unfinished[r] { words[r] } else { 0 };
            seq[r * max_length + t] = it[r];
        }
        if !unfinished.iter().any(|&u| u) {
            break;
        }
    }
    let lp = if sample {
        if picked.len() < max_length {
            picked.push(Tensor::zeros(
                &[rows, max_length - picked.len()],
                model.dtype(),
            ));
        }
        let parts: Vec<&Tensor> = picked.iter().collect();
        Tensor::concat(&parts, 1)?
    } else {
        Tensor::zeros(&[0], model.dtype())
    };
    Ok((lp, (seq, attention)))
}
