//! Decoding: greedy and sampled captions, self-critical sampling, and beam search, with the
//! reference's semantics (AOANET.md 4.1-4.2).
//!
//! - [`options`]: [`DecodeOptions`], the reference's evaluation options;
//! - [`sample`](mod@sample): the non-beam path (`_sample`), batched over rows; with gradients
//!   on it is the self-critical sampler (differentiable log-probabilities);
//! - [`beam`]: beam search (`beam_search`), batched over images;
//! - [`decode`]: features in, captions out (what the `caption` command uses).

pub mod beam;
pub mod options;
pub mod sample;

pub use beam::{Beam, BeamResult, beam_search};
pub use options::{BAD_ENDINGS, DecodeOptions, LengthPenalty, SampleMethod, bad_ending_ids};
#[cfg(feature = "cuda")]
pub use sample::set_device_loop;
pub use sample::{Samples, sample};

use crate::Result;
use crate::autograd::no_grad;
use crate::model::AoaModel;
use crate::nn::Ctx;
use crate::rng::Philox;
use crate::tensor::Tensor;

/// One decoded caption.
#[derive(Clone, Debug, PartialEq)]
pub struct Caption {
    /// The words, up to (not including) the EOS.
    pub ids: Vec<usize>,
    /// The log-probability of each word, as the decoder recorded it.
    pub logprobs: Vec<f64>,
    /// When asked for: the attention over the image's regions (averaged over heads) when each
    /// word was chosen, one `[N]` vector per word (N = the batch's region count after
    /// clipping to the longest image).
    pub attention: Option<Vec<Vec<f32>>>,
}

/// Captions for a batch of images: `att_feats [B, N, F]` with `att_masks [B, N]` (1 for a real
/// region; `None` when all images have N regions). Evaluation mode, no graph; `beam_size` > 1
/// selects beam search, otherwise `sample_method` (sampling draws from `rng`), as the
/// reference's `_sample` does.
pub fn decode(
    model: &AoaModel,
    att_feats: &Tensor,
    att_masks: Option<&Tensor>,
    opts: &DecodeOptions,
    with_attention: bool,
    rng: &mut Philox,
) -> Result<Vec<Caption>> {
    opts.validate(model.config().vocab_size + 1)?;
    no_grad(|| {
        let mut ctx = Ctx::eval(rng);
        let enc = model.encode(att_feats, att_masks, None, &mut ctx, None)?;
        if opts.beam_size > 1 {
            let results = beam_search(model, &enc, opts, with_attention)?;
            return Ok(results
                .iter()
                .map(|r| {
                    let best = r.best();
                    let n = words_before_eos(&best.seq);
                    Caption {
                        ids: best.seq[..n].to_vec(),
                        logprobs: best.logprobs[..n].iter().map(|&v| v as f64).collect(),
                        attention: best.attention.as_ref().map(|a| a[..n].to_vec()),
                    }
                })
                .collect());
        }
        let s = sample(model, &enc, opts, &mut ctx, with_attention)?;
        let lp = s.logprobs.to_vec_f64();
        let n_regions = enc.att_feats.shape()[1];
        Ok((0..s.rows)
            .map(|r| {
                let row = s.row(r);
                let n = words_before_eos(row);
                let lps = &lp[r * s.max_length..];
                Caption {
                    ids: row[..n].to_vec(),
                    logprobs: lps[..n].to_vec(),
                    attention: s.attention.as_ref().map(|steps| {
                        steps[..n]
                            .iter()
                            .map(|a| a[r * n_regions..(r + 1) * n_regions].to_vec())
                            .collect()
                    }),
                }
            })
            .collect())
    })
}

/// The number of words before the first 0 (EOS / padding).
fn words_before_eos(seq: &[usize]) -> usize {
    seq.iter().position(|&w| w == 0).unwrap_or(seq.len())
}
