//! The AoA refiner (encoder), `AoA_Refiner_Core` (AoAModel.py:99-125, AOANET.md 1.5): six
//! pre-norm residual layers of multi-head self-attention with the AoA gate, then a final
//! LayerNorm.
//!
//! ```text
//! layer(x) = x + dropout_0.1(MHA_AoA(LN(x)))             (+ x + dropout_0.1(FF(LN'(x))) if use_ff)
//! refine(x) = LN_final(layer_6(...layer_1(x)))
//! ```

use super::AoaConfig;
use crate::Result;
use crate::nn::{
    AttentionMask, Ctx, Dropout, DropoutOrder, FeedForward, LayerNorm, Module, MultiHeadAoa,
    MultiHeadAoaConfig, join,
};
use crate::rng::Philox;
use crate::tensor::{DType, Tensor};

/// One refiner layer: self-attention (± AoA) and an optional feed-forward sublayer, each
/// wrapped in a pre-norm residual connection.
pub struct RefinerLayer {
    /// Multi-head self-attention with the AoA gate (or an output Linear when `refine_aoa` is off).
    pub self_attn: MultiHeadAoa,
    /// The feed-forward sublayer (`use_ff`).
    pub feed_forward: Option<FeedForward>,
    /// The sublayer norms: `sublayer.0.norm` and, with the feed-forward, `sublayer.1.norm`.
    pub norms: Vec<LayerNorm>,
    dropout: Dropout,
}

impl RefinerLayer {
    fn new(cfg: &AoaConfig, dtype: DType, rng: &mut Philox) -> Result<Self> {
        let attn = MultiHeadAoaConfig {
            heads: cfg.num_heads,
            d_model: cfg.rnn_size,
            scale: cfg.multi_head_scale,
            project_k_v: true,
            use_output_layer: true,
            do_aoa: cfg.refine_aoa,
            norm_q: false,
            dropout: cfg.attention_dropout,
            dropout_aoa: cfg.dropout_aoa,
            dropout_order: DropoutOrder::HeadMajor,
        };
        let mut self_attn = MultiHeadAoa::new(attn, dtype, rng)?;
        // The reference builds its projections with `clones(Linear, 3)`, deep copies of one
        // layer: Q, K and V start from the same weights.
        for i in 1..self_attn.linears.len() {
            self_attn.linears[i] = self_attn.linears[0].deep_clone()?;
        }
        let feed_forward = if cfg.use_ff {
            Some(FeedForward::new(
                cfg.rnn_size,
                cfg.d_ff,
                cfg.attention_dropout,
                dtype,
                rng,
            )?)
        } else {
            None
        };
        let n_sub = 1 + usize::from(cfg.use_ff);
        Ok(RefinerLayer {
            self_attn,
            feed_forward,
            norms: (0..n_sub)
                .map(|_| LayerNorm::new(cfg.rnn_size, dtype))
                .collect(),
            dropout: Dropout::new(cfg.attention_dropout)?,
        })
    }

    /// A copy with its own parameter tensors holding the same values.
    fn deep_clone(&self) -> Result<Self> {
        Ok(RefinerLayer {
            self_attn: self.self_attn.deep_clone()?,
            feed_forward: match &self.feed_forward {
                Some(f) => Some(f.deep_clone()?),
                None => None,
            },
            norms: self
                .norms
                .iter()
                .map(|n| n.deep_clone())
                .collect::<Result<_>>()?,
            dropout: self.dropout,
        })
    }

    /// Applies the layer to `x [B, N, D]`.
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&AttentionMask>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let q = self.norms[0].forward(x)?;
        let attended = self.self_attn.forward(&q, &q, &q, mask, ctx)?.out;
        // The residual additions each take one op with their dropout (the same values).
        let mut x = self.dropout.forward_added_to(x, &attended, ctx)?;
        if let Some(ff) = &self.feed_forward {
            let h = ff.forward(&self.norms[1].forward(&x)?, ctx)?;
            x = self.dropout.forward_added_to(&x, &h, ctx)?;
        }
        Ok(x)
    }
}

impl Module for RefinerLayer {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        self.self_attn.visit(&join(prefix, "self_attn."), f);
        if let Some(ff) = &self.feed_forward {
            ff.visit(&join(prefix, "feed_forward."), f);
        }
        for (i, n) in self.norms.iter().enumerate() {
            n.visit(&join(prefix, &format!("sublayer.{i}.norm.")), f);
        }
    }
}

/// The refiner: `refiner_layers` layers and a final LayerNorm.
pub struct Refiner {
    /// The layers, in order.
    pub layers: Vec<RefinerLayer>,
    /// The final norm.
    pub norm: LayerNorm,
}

impl Refiner {
    /// A refiner as the reference builds it: one layer initialised, then deep-copied
    /// (`clones(layer, 6)`), so all layers start equal and train apart.
    pub fn new(cfg: &AoaConfig, dtype: DType, rng: &mut Philox) -> Result<Self> {
        let first = RefinerLayer::new(cfg, dtype, rng)?;
        let mut layers = Vec::with_capacity(cfg.refiner_layers);
        for _ in 1..cfg.refiner_layers {
            layers.push(first.deep_clone()?);
        }
        layers.insert(0, first);
        Ok(Refiner {
            layers,
            norm: LayerNorm::new(cfg.rnn_size, dtype),
        })
    }

    /// Refines `x [B, N, D]`; `trace` receives each layer's output (`refiner_layer{i}`).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&AttentionMask>,
        ctx: &mut Ctx,
        mut trace: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, mask, ctx)?;
            if let Some(t) = trace.as_deref_mut() {
                t.push((format!("refiner_layer{i}"), x.clone()));
            }
        }
        self.norm.forward(&x)
    }
}

impl Module for Refiner {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.visit(&join(prefix, &format!("layers.{i}.")), f);
        }
        self.norm.visit(&join(prefix, "norm."), f);
    }
}
