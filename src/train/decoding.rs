//! The decoding that training and evaluation need, over [`crate::model::decode()`]: captions
//! for a batch of images (greedy or beam search), the greedy self-critical baseline, and the
//! self-critical sampler (one caption per row with differentiable log-probabilities).

use crate::Result;
use crate::autograd::no_grad;
use crate::model::decode::{self, DecodeOptions, SampleMethod};
use crate::model::{AoaModel, Encoded};
use crate::nn::Ctx;
use crate::rng::Philox;
use crate::tensor::Tensor;

pub use crate::model::decode::Caption;

/// Captions for the images `att_feats [B, N, F]` (masks `[B, N]` or `None`): greedy for
/// `beam_size` 1, beam search otherwise (the reference's evaluation options otherwise).
/// Evaluation mode, no graph.
pub fn decode_images(
    model: &AoaModel,
    att_feats: &Tensor,
    att_masks: Option<&Tensor>,
    beam_size: usize,
    max_length: usize,
    with_attention: bool,
) -> Result<Vec<Caption>> {
    let opts = DecodeOptions::beam(beam_size, max_length);
    decode::decode(
        model,
        att_feats,
        att_masks,
        &opts,
        with_attention,
        &mut Philox::new(0),
    )
}

/// Greedy words of every row of `enc` (`[R × max_length]`, 0 from a row's EOS on), in
/// evaluation mode without a graph: the self-critical baseline. `enc` must have been encoded
/// in evaluation mode too.
pub fn greedy_rows(model: &AoaModel, enc: &Encoded, max_length: usize) -> Result<Vec<usize>> {
    let mut rng = Philox::new(0);
    no_grad(|| {
        let s = decode::sample(
            model,
            enc,
            &DecodeOptions::greedy(max_length),
            &mut Ctx::eval(&mut rng),
            false,
        )?;
        Ok(s.seq)
    })
}

/// Self-critical samples: one caption per row of `enc`, each word drawn from the model's
/// distribution (temperature 1) with `ctx`'s mode and randomness. Returns the words
/// `[R × max_length]` (0 from a row's EOS on) and the log-probability of each drawn word
/// `[R, max_length]`, differentiable when gradients are on.
pub fn sample_rows(
    model: &AoaModel,
    enc: &Encoded,
    max_length: usize,
    ctx: &mut Ctx,
) -> Result<(Vec<usize>, Tensor)> {
    let opts = DecodeOptions {
        sample_method: SampleMethod::Sample,
        ..DecodeOptions::greedy(max_length)
    };
    let s = decode::sample(model, enc, &opts, ctx, false)?;
    Ok((s.seq, s.logprobs))
}
