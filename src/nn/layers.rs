//! The basic layers: `Linear`, `Embedding`, the reference `LayerNorm`, `LstmCell`, `Dropout`
//! and the position-wise feed-forward sublayer.

use super::{Ctx, Module, join};
use crate::ops::LstmCellOutput;
use crate::rng::Philox;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// PyTorch's default init for `Linear` and `LSTMCell`: U(−1/√fan_in, 1/√fan_in).
fn uniform_fan_in(shape: &[usize], fan_in: usize, dtype: DType, rng: &mut Philox) -> Tensor {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::uniform(shape, -bound, bound, dtype, rng).requiring_grad()
}

/// A new leaf parameter holding a copy of `t`'s values.
pub(crate) fn param_copy(t: &Tensor) -> Result<Tensor> {
    Ok(t.deep_copy()?.requiring_grad())
}

/// `y = x Wᵀ + b` with `W [out, in]` (PyTorch's layout).
pub struct Linear {
    /// `[out, in]`
    pub weight: Tensor,
    /// `[out]`
    pub bias: Tensor,
}

impl Linear {
    /// A layer with PyTorch's default init (kaiming-uniform with a = √5, i.e. U(±1/√in)).
    pub fn new(input: usize, output: usize, dtype: DType, rng: &mut Philox) -> Self {
        Linear {
            weight: uniform_fan_in(&[output, input], input, dtype, rng),
            bias: uniform_fan_in(&[output], input, dtype, rng),
        }
    }

    /// A copy with its own parameters holding the same values (PyTorch's `deepcopy`).
    pub fn deep_clone(&self) -> Result<Self> {
        Ok(Linear {
            weight: param_copy(&self.weight)?,
            bias: param_copy(&self.bias)?,
        })
    }

    /// Input features.
    pub fn input_size(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output features.
    pub fn output_size(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Applies the layer to `x [..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, Some(&self.bias))
    }
}

impl Module for Linear {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        f(join(prefix, "weight"), &self.weight);
        f(join(prefix, "bias"), &self.bias);
    }
}

/// A lookup table `[vocab, dim]`, initialised N(0, 1) as PyTorch does.
pub struct Embedding {
    /// `[vocab, dim]`
    pub weight: Tensor,
}

impl Embedding {
    /// A table of `vocab` rows of `dim`.
    pub fn new(vocab: usize, dim: usize, dtype: DType, rng: &mut Philox) -> Self {
        Embedding {
            weight: Tensor::randn(&[vocab, dim], dtype, rng).requiring_grad(),
        }
    }

    /// The rows for `ids`: `[ids.len(), dim]`.
    pub fn forward(&self, ids: &[usize]) -> Result<Tensor> {
        self.weight.embedding(ids)
    }
}

impl Module for Embedding {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        f(join(prefix, "weight"), &self.weight);
    }
}

/// The reference LayerNorm: `a_2 ⊙ (x − μ) / (σ_unbiased + ε) + b_2`, ε = 1e-6
/// (see [`Tensor::layer_norm`]).
pub struct LayerNorm {
    /// Gain, initialised to ones.
    pub a_2: Tensor,
    /// Bias, initialised to zeros.
    pub b_2: Tensor,
    /// Added to the standard deviation.
    pub eps: f64,
}

impl LayerNorm {
    /// A norm over `size` features with the reference's ε = 1e-6.
    pub fn new(size: usize, dtype: DType) -> Self {
        LayerNorm {
            a_2: Tensor::ones(&[size], dtype).requiring_grad(),
            b_2: Tensor::zeros(&[size], dtype).requiring_grad(),
            eps: 1e-6,
        }
    }

    /// A copy with its own parameters holding the same values.
    pub fn deep_clone(&self) -> Result<Self> {
        Ok(LayerNorm {
            a_2: param_copy(&self.a_2)?,
            b_2: param_copy(&self.b_2)?,
            eps: self.eps,
        })
    }

    /// Normalises the last axis of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(&self.a_2, &self.b_2, self.eps)
    }
}

impl Module for LayerNorm {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        f(join(prefix, "a_2"), &self.a_2);
        f(join(prefix, "b_2"), &self.b_2);
    }
}

/// An LSTM cell with PyTorch's parameters and gate order (see [`Tensor::lstm_cell`]).
pub struct LstmCell {
    /// `[4H, in]`
    pub weight_ih: Tensor,
    /// `[4H, H]`
    pub weight_hh: Tensor,
    /// `[4H]`
    pub bias_ih: Tensor,
    /// `[4H]`
    pub bias_hh: Tensor,
}

impl LstmCell {
    /// A cell from `input` features to `hidden` units, all weights U(±1/√hidden).
    pub fn new(input: usize, hidden: usize, dtype: DType, rng: &mut Philox) -> Self {
        LstmCell {
            weight_ih: uniform_fan_in(&[4 * hidden, input], hidden, dtype, rng),
            weight_hh: uniform_fan_in(&[4 * hidden, hidden], hidden, dtype, rng),
            bias_ih: uniform_fan_in(&[4 * hidden], hidden, dtype, rng),
            bias_hh: uniform_fan_in(&[4 * hidden], hidden, dtype, rng),
        }
    }

    /// Hidden units.
    pub fn hidden_size(&self) -> usize {
        self.weight_hh.shape()[1]
    }

    /// One step: input `x [B, in]`, state `(h, c)` → new `(h, c)`.
    pub fn forward(&self, x: &Tensor, h: &Tensor, c: &Tensor) -> Result<LstmCellOutput> {
        x.lstm_cell(
            h,
            c,
            &self.weight_ih,
            &self.weight_hh,
            &self.bias_ih,
            &self.bias_hh,
        )
    }
}

impl Module for LstmCell {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        f(join(prefix, "weight_ih"), &self.weight_ih);
        f(join(prefix, "weight_hh"), &self.weight_hh);
        f(join(prefix, "bias_ih"), &self.bias_ih);
        f(join(prefix, "bias_hh"), &self.bias_hh);
    }
}

/// Inverted dropout with probability `p`, active in training mode only.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    /// Drop probability.
    pub p: f64,
}

impl Dropout {
    /// Dropout with probability `p` (0 is the identity).
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "dropout probability {p} must be in [0, 1)"
            )));
        }
        Ok(Dropout { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Applies dropout to `x` when `ctx` is in training mode.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        x.dropout(self.p, ctx.train, ctx.rng)
    }

    /// Draws the words a [`Dropout::forward`] of `numel` elements would use, without applying
    /// them: where they start, or `None` when this dropout does nothing (evaluation, `p = 0`).
    /// The generator advances exactly as the forward would advance it.
    pub fn reserve(&self, numel: usize, ctx: &mut Ctx) -> Option<crate::rng::PhiloxState> {
        (ctx.train && self.p > 0.0).then(|| ctx.rng.reserve(numel as u64))
    }

    /// `relu(x)` then this dropout, as one op ([`Tensor::relu_dropout`]: the same values and
    /// random words as `self.forward(&x.relu()?, ctx)`).
    pub fn forward_relu(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        x.relu_dropout(self.p, ctx.train, ctx.rng)
    }

    /// `a + dropout(x)`, as one op ([`Tensor::add_dropout`]: the same values and random words
    /// as `a.add(&self.forward(x, ctx)?)`): residual connections.
    pub fn forward_added_to(&self, a: &Tensor, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        a.add_dropout(x, self.p, ctx.train, ctx.rng)
    }
}

/// The position-wise feed-forward sublayer: `w_2(dropout(relu(w_1(x))))`.
pub struct FeedForward {
    /// `d_model → d_ff`
    pub w_1: Linear,
    /// `d_ff → d_model`
    pub w_2: Linear,
    /// Dropout between the two (0.1 in the reference).
    pub dropout: Dropout,
}

impl FeedForward {
    /// A sublayer `d_model → d_ff → d_model`.
    pub fn new(
        d_model: usize,
        d_ff: usize,
        dropout: f64,
        dtype: DType,
        rng: &mut Philox,
    ) -> Result<Self> {
        Ok(FeedForward {
            w_1: Linear::new(d_model, d_ff, dtype, rng),
            w_2: Linear::new(d_ff, d_model, dtype, rng),
            dropout: Dropout::new(dropout)?,
        })
    }

    /// A copy with its own parameters holding the same values.
    pub fn deep_clone(&self) -> Result<Self> {
        Ok(FeedForward {
            w_1: self.w_1.deep_clone()?,
            w_2: self.w_2.deep_clone()?,
            dropout: self.dropout,
        })
    }

    /// Applies the sublayer.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = self.dropout.forward_relu(&self.w_1.forward(x)?, ctx)?;
        self.w_2.forward(&h)
    }
}

impl Module for FeedForward {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        self.w_1.visit(&join(prefix, "w_1."), f);
        self.w_2.visit(&join(prefix, "w_2."), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::gradcheck::{GradcheckOptions, gradcheck};

    #[test]
    fn linear_init_bounds_and_names() {
        let mut rng = Philox::new(1);
        let l = Linear::new(16, 4, DType::F64, &mut rng);
        let bound = 0.25;
        assert!(l.weight.to_vec_f64().iter().all(|w| w.abs() <= bound));
        let names: Vec<String> = l.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["weight", "bias"]);
        let ff = FeedForward::new(4, 8, 0.1, DType::F64, &mut rng).unwrap();
        assert_eq!(ff.named_parameters()[2].0, "w_2.weight");
        assert_eq!(ff.num_parameters(), 4 * 8 + 8 + 8 * 4 + 4);
    }

    #[test]
    fn linear_gradcheck_through_parameters() {
        let mut rng = Philox::new(2);
        let l = Linear::new(5, 3, DType::F64, &mut rng);
        let x = Tensor::randn(&[2, 4, 5], DType::F64, &mut rng);
        let (w, b) = (l.weight.detach(), l.bias.detach());
        let r = gradcheck(
            |t| {
                Linear {
                    weight: t[1].clone(),
                    bias: t[2].clone(),
                }
                .forward(&t[0])
            },
            &[x, w, b],
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn feed_forward_and_lstm_gradcheck() {
        let mut rng = Philox::new(3);
        let x = Tensor::randn(&[3, 4], DType::F64, &mut rng);
        let r = gradcheck(
            |t| {
                let mut rng = Philox::new(9);
                let ff = FeedForward {
                    w_1: Linear {
                        weight: t[1].clone(),
                        bias: t[2].clone(),
                    },
                    w_2: Linear {
                        weight: t[3].clone(),
                        bias: t[4].clone(),
                    },
                    dropout: Dropout::new(0.3)?,
                };
                ff.forward(&t[0], &mut Ctx::train(&mut rng))
            },
            &[
                x.clone(),
                Tensor::randn(&[6, 4], DType::F64, &mut rng),
                Tensor::randn(&[6], DType::F64, &mut rng),
                Tensor::randn(&[4, 6], DType::F64, &mut rng),
                Tensor::randn(&[4], DType::F64, &mut rng),
            ],
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(r.passed(), "{r}");
        let cell = LstmCell::new(4, 5, DType::F64, &mut rng);
        let (h, c) = (
            Tensor::randn(&[3, 5], DType::F64, &mut rng),
            Tensor::randn(&[3, 5], DType::F64, &mut rng),
        );
        let params = vec![
            x,
            h,
            c,
            cell.weight_ih.detach(),
            cell.weight_hh.detach(),
            cell.bias_ih.detach(),
            cell.bias_hh.detach(),
        ];
        let r = gradcheck(
            |t| {
                let cell = LstmCell {
                    weight_ih: t[3].clone(),
                    weight_hh: t[4].clone(),
                    bias_ih: t[5].clone(),
                    bias_hh: t[6].clone(),
                };
                let o = cell.forward(&t[0], &t[1], &t[2])?;
                Tensor::concat(&[&o.h, &o.c], 1)
            },
            &params,
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(r.passed(), "{r}");
        assert!(Dropout::new(1.0).is_err());
    }
}
