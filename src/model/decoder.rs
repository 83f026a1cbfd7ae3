//! The decoder core, `AoA_Decoder_Core` (AoAModel.py:127-185, AOANET.md 1.6): one step of
//!
//! ```text
//! (h, c)  = LSTM([x_t ; ā + drop(ctx_{t−1})], (h, c))
//! att     = MHA(LN(h) W_q, keys = P[..., D:2D], values = P[..., 0:D])   (no K/V projection)
//! ctx_t   = GLU([att ; h] W_c + b_c)              (AoA; or an LSTMCell, or Linear + ReLU)
//! out     = drop(ctx_t)
//! ```

use super::{AoaConfig, DecoderType, Encoded};
use crate::Result;
use crate::nn::{
    Ctx, Dropout, DropoutOrder, Embedding, Linear, LstmCell, Module, MultiHeadAoa,
    MultiHeadAoaConfig, join,
};
use crate::ops::LstmInput;
use crate::rng::{Philox, PhiloxState};
use crate::tensor::{DType, Device, Ids, Tensor};

/// The recurrent state between steps (the reference's `(h, c)`, each `[2, B, D]`).
#[derive(Clone, Debug)]
pub struct DecoderState {
    /// The attention LSTM's hidden state `h[0]`.
    pub h: Tensor,
    /// The attention LSTM's cell state `c[0]`.
    pub c: Tensor,
    /// The previous context vector `h[1]`.
    pub ctx: Tensor,
    /// `c[1]`: the context LSTM's cell state (decoder type LSTM); zeros otherwise.
    pub ctx_cell: Tensor,
}

impl DecoderState {
    /// The all-zero initial state of `batch` rows.
    pub fn zeros(batch: usize, width: usize, dtype: DType) -> Self {
        let z = Tensor::zeros(&[batch, width], dtype);
        DecoderState {
            h: z.clone(),
            c: z.clone(),
            ctx: z.clone(),
            ctx_cell: z,
        }
    }

    /// The all-zero initial state of `batch` rows on `device`.
    pub fn zeros_on(batch: usize, width: usize, dtype: DType, device: Device) -> Result<Self> {
        let z = Tensor::zeros_on(&[batch, width], dtype, device)?;
        Ok(DecoderState {
            h: z.clone(),
            c: z.clone(),
            ctx: z.clone(),
            ctx_cell: z,
        })
    }

    /// The state of rows `rows`, in that order (beam search reorders beams this way).
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        Ok(DecoderState {
            h: self.h.index_select(0, rows)?,
            c: self.c.index_select(0, rows)?,
            ctx: self.ctx.index_select(0, rows)?,
            ctx_cell: self.ctx_cell.index_select(0, rows)?,
        })
    }

    /// Number of rows.
    pub fn batch(&self) -> usize {
        self.h.shape()[0]
    }
}

/// How `[att ; h]` becomes the context vector.
pub enum ContextCell {
    /// `att2ctx = Sequential(Linear(2D, 2D), GLU)`.
    Aoa(Linear),
    /// `att2ctx = LSTMCell(2D, D)`.
    Lstm(LstmCell),
    /// `att2ctx = Sequential(Linear(2D, D), ReLU)`.
    Base(Linear),
}

/// The decoder core's modules.
pub struct DecoderCore {
    /// `att_lstm`: input `[x_t ; ā + ctx]`.
    pub att_lstm: LstmCell,
    /// `att2ctx`.
    pub att2ctx: ContextCell,
    /// `attention`: LN on the query, one query projection, no K/V projection, no output layer.
    pub attention: MultiHeadAoa,
    ctx_drop: Dropout,
    out_drop: Dropout,
}

/// The previous words of a decoder step, with the embedding that turns them into its input.
#[derive(Clone, Copy)]
pub struct Words<'a> {
    /// The word embedding (`embed.0`).
    pub embed: &'a Embedding,
    /// The dropout after the embedding's ReLU (`embed.2`).
    pub dropout: &'a Dropout,
    /// One word per row (0 = BOS), on the host or (drawn there) on the GPU.
    pub ids: &'a Ids,
}

/// What a decoder step does with its output dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputDropout {
    /// Drop the output at once ([`CoreOutput::output`] is what the logit layer takes).
    Apply,
    /// Draw the mask's words now, in the reference's order, but leave the output as it is:
    /// [`CoreOutput::output_draw`] says where the words are, and
    /// [`DecoderCore::drop_outputs`] applies every step's mask at once (teacher forcing, where
    /// no step reads another's output).
    Defer,
}

/// The result of one decoder step.
pub struct CoreOutput {
    /// The output fed to the logit layer, `[B, D]`: dropped out, unless the step was asked to
    /// defer that ([`OutputDropout::Defer`]).
    pub output: Tensor,
    /// Where a deferred output dropout drew its mask (`None` when applied, or in evaluation).
    pub output_draw: Option<PhiloxState>,
    /// The new state.
    pub state: DecoderState,
    /// The attention probabilities over regions, `[B, h, 1, N]`, when the context asks for
    /// attention maps ([`Ctx::attention_maps`]).
    pub attention: Option<Tensor>,
}

impl DecoderCore {
    /// A core with PyTorch-default initialised weights.
    pub fn new(cfg: &AoaConfig, dtype: DType, rng: &mut Philox) -> Result<Self> {
        let d = cfg.rnn_size;
        let att_width = d * cfg.multi_head_scale;
        let att_lstm = LstmCell::new(cfg.input_encoding_size + d, d, dtype, rng);
        let att2ctx = match cfg.decoder_type {
            DecoderType::Aoa => ContextCell::Aoa(Linear::new(att_width + d, 2 * d, dtype, rng)),
            DecoderType::Lstm => ContextCell::Lstm(LstmCell::new(att_width + d, d, dtype, rng)),
            DecoderType::Base => ContextCell::Base(Linear::new(att_width + d, d, dtype, rng)),
        };
        let attention = MultiHeadAoa::new(
            MultiHeadAoaConfig {
                heads: cfg.num_heads,
                d_model: d,
                scale: cfg.multi_head_scale,
                project_k_v: false,
                use_output_layer: false,
                do_aoa: false,
                norm_q: true,
                dropout: cfg.attention_dropout,
                dropout_aoa: cfg.dropout_aoa,
                // Captions of one image are its queries (Encoded::expand): number their
                // dropout as the reference's one row per caption.
                dropout_order: DropoutOrder::QueryMajor,
            },
            dtype,
            rng,
        )?;
        Ok(DecoderCore {
            att_lstm,
            att2ctx,
            attention,
            ctx_drop: Dropout::new(if cfg.ctx_drop { cfg.drop_prob_lm } else { 0.0 })?,
            out_drop: Dropout::new(cfg.drop_prob_lm)?,
        })
    }

    /// One step from the previous words (embedded here: `xt = drop(relu(E[it]))`), the
    /// prepared features (global feature, keys and values, mask) and the state.
    pub fn forward(
        &self,
        words: Words<'_>,
        enc: &Encoded,
        state: &DecoderState,
        ctx: &mut Ctx,
        output_dropout: OutputDropout,
    ) -> Result<CoreOutput> {
        // `[xt ; mean_feats + ctx_drop(ctx)]` as one op (one kernel on a GPU; the values and
        // random words of the embedding, its ReLU and dropout, the context's dropout and the
        // concatenation).
        let input = LstmInput {
            table: &words.embed.weight,
            ids: words.ids,
            embed_p: words.dropout.p(),
            base: &enc.mean_feats,
            x: &state.ctx,
            x_p: self.ctx_drop.p(),
        }
        .forward(ctx.train, ctx.rng)?;
        let lstm = self.att_lstm.forward(&input, &state.h, &state.c)?;
        let (rows, width) = (lstm.h.shape()[0], lstm.h.shape()[1]);
        let group = enc.group;
        if group == 0 || !rows.is_multiple_of(group) {
            return Err(crate::Error::invalid(format!(
                "decoder: {rows} rows do not form groups of {group} per image"
            )));
        }
        // An image's `group` rows are that many queries against its regions (a view).
        let query = lstm.h.reshape(&[rows / group, group, width])?;
        let att = self
            .attention
            .forward_heads(&query, &enc.kv, enc.mask.as_ref(), ctx)?;
        let att_out = att.out.reshape(&[rows, att.out.shape()[2]])?;
        // The maps per row, `[rows, h, 1, N]`, only when asked for.
        let attention = match att.weights {
            Some(w) if ctx.attention_maps => Some(crate::autograd::no_grad(|| {
                let (h, n) = (w.shape()[1], w.shape()[3]);
                w.permute(&[0, 2, 1, 3])?.reshape(&[rows, h, 1, n])
            })?),
            _ => None,
        };
        let ctx_input = Tensor::concat(&[&att_out, &lstm.h], 1)?;
        let (out, ctx_cell) = match &self.att2ctx {
            ContextCell::Aoa(l) => (l.forward(&ctx_input)?.glu()?, state.ctx_cell.clone()),
            ContextCell::Base(l) => (l.forward(&ctx_input)?.relu()?, state.ctx_cell.clone()),
            ContextCell::Lstm(cell) => {
                let o = cell.forward(&ctx_input, &state.ctx, &state.ctx_cell)?;
                (o.h, o.c)
            }
        };
        let (output, output_draw) = match output_dropout {
            OutputDropout::Apply => (self.out_drop.forward(&out, ctx)?, None),
            OutputDropout::Defer => (out.clone(), self.out_drop.reserve(out.numel(), ctx)),
        };
        Ok(CoreOutput {
            output,
            output_draw,
            state: DecoderState {
                h: lstm.h,
                c: lstm.c,
                ctx: out,
                ctx_cell,
            },
            attention,
        })
    }
}

impl DecoderCore {
    /// The output dropout of steps that deferred it ([`OutputDropout::Defer`]), applied to
    /// their outputs stacked as `[B, steps, D]`, with `draws[t]` the draw of step `t`
    /// ([`CoreOutput::output_draw`]): the values and gradient of dropping each as it was made.
    /// With no draws at all (evaluation) the outputs as they are.
    pub fn drop_outputs(&self, outputs: &Tensor, draws: &[Option<PhiloxState>]) -> Result<Tensor> {
        if draws.iter().all(Option::is_none) {
            return Ok(outputs.clone());
        }
        let draws: Vec<PhiloxState> = draws
            .iter()
            .map(|d| {
                d.ok_or_else(|| {
                    crate::Error::invalid(
                        "drop_outputs: some steps drew an output dropout and some did not",
                    )
                })
            })
            .collect::<Result<_>>()?;
        outputs.dropout_steps(self.out_drop.p(), &draws)
    }
}

impl Module for DecoderCore {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        self.att_lstm.visit(&join(prefix, "att_lstm."), f);
        match &self.att2ctx {
            ContextCell::Aoa(l) | ContextCell::Base(l) => l.visit(&join(prefix, "att2ctx.0."), f),
            ContextCell::Lstm(c) => c.visit(&join(prefix, "att2ctx."), f),
        }
        self.attention.visit(&join(prefix, "attention."), f);
    }
}
