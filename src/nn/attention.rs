//! Multi-head scaled dot-product attention with the optional Attention-on-Attention gate: the
//! reference's `MultiHeadedDotAttention` (AoAModel.py:16-97), shared by the refiner and the
//! decoder.
//!
//! ```text
//! q   = norm(query)                          (LayerNorm if norm_q, else identity)
//! Q   = q W_0ᵀ + b_0;  K = key W_1ᵀ + b_1;  V = value W_2ᵀ + b_2   (K, V unprojected if !project_k_v)
//! P_h = dropout_0.1(softmax(Q_h K_hᵀ / √d_k, keys with mask 0 set to −1e9))
//! x   = concat_h(P_h V_h)
//! x   = GLU(aoa_layer(dropout_aoa([x ; q])))   if do_aoa
//! x   = output_layer(x)                         if use_output_layer and not do_aoa
//! ```
//! `d_k = d_model·scale / heads`. A 2-D query `[B, D]` is one query per row (the decoder).

use super::{Ctx, Dropout, LayerNorm, Linear, Module, join};
use crate::rng::Philox;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// The switches of [`MultiHeadAoa`], named as the reference's constructor arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadAoaConfig {
    /// Number of heads `h`.
    pub heads: usize,
    /// Model width `D`.
    pub d_model: usize,
    /// Width multiplier of the attended space (`multi_head_scale`).
    pub scale: usize,
    /// Project keys and values (the refiner) or take them pre-projected (the decoder).
    pub project_k_v: bool,
    /// The output Linear (deleted when `do_aoa`).
    pub use_output_layer: bool,
    /// The AoA gate: Linear((1+scale)·D → 2D) + GLU over `[attended ; query]`.
    pub do_aoa: bool,
    /// LayerNorm on the query first.
    pub norm_q: bool,
    /// Dropout on the attention probabilities (0.1 in the reference).
    pub dropout: f64,
    /// Dropout on the AoA input (`dropout_aoa`, 0.3).
    pub dropout_aoa: f64,
}

/// Which keys each row may attend to, prepared once per batch.
#[derive(Clone, Debug)]
pub struct AttentionMask {
    /// `[B, 1, 1, N]`: 1 where the key is padding (to be filled with −1e9), else 0.
    padding: Tensor,
    /// `[B, N]`: 1 for a real region.
    valid: Tensor,
}

impl AttentionMask {
    /// From a `[B, N]` mask with 1 for real keys and 0 for padding.
    pub fn from_valid(valid: &Tensor) -> Result<Self> {
        if valid.rank() != 2 {
            return Err(Error::shape("AttentionMask", &[valid.shape()], "[B, N]"));
        }
        let valid = valid.detach();
        let (b, n) = (valid.shape()[0], valid.shape()[1]);
        let padding = valid.neg()?.add_scalar(1.0)?.reshape(&[b, 1, 1, n])?;
        Ok(AttentionMask { padding, valid })
    }

    /// The `[B, N]` mask of real keys.
    pub fn valid(&self) -> &Tensor {
        &self.valid
    }

    /// The mask with rows picked by `rows` (expanding images to caption rows or beams).
    pub fn index_rows(&self, rows: &[usize]) -> Result<Self> {
        Ok(AttentionMask {
            padding: self.padding.index_select(0, rows)?,
            valid: self.valid.index_select(0, rows)?,
        })
    }
}

/// Multi-head attention with the optional AoA gate (see the module documentation).
pub struct MultiHeadAoa {
    cfg: MultiHeadAoaConfig,
    /// The query LayerNorm (`norm_q`).
    pub norm: Option<LayerNorm>,
    /// Query projection, then key and value projections when `project_k_v`.
    pub linears: Vec<Linear>,
    /// The output Linear, when used.
    pub output_layer: Option<Linear>,
    /// The AoA Linear (its GLU has no parameters).
    pub aoa_layer: Option<Linear>,
    dropout: Dropout,
    dropout_aoa: Dropout,
}

/// The result of an attention call.
pub struct AttentionOutput {
    /// `[B, Nq, D]` (or `[B, D]` for a 2-D query).
    pub out: Tensor,
    /// The attention probabilities `[B, h, Nq, N]` (after masking, before dropout).
    pub weights: Tensor,
}

impl MultiHeadAoa {
    /// A layer with PyTorch-default initialised weights.
    pub fn new(cfg: MultiHeadAoaConfig, dtype: DType, rng: &mut Philox) -> Result<Self> {
        let inner = cfg.d_model * cfg.scale;
        if cfg.heads == 0 || !inner.is_multiple_of(cfg.heads) {
            return Err(Error::invalid(format!(
                "attention: d_model·scale = {inner} must be divisible by num_heads = {}",
                cfg.heads
            )));
        }
        let n_lin = if cfg.project_k_v { 3 } else { 1 };
        let linears = (0..n_lin)
            .map(|_| Linear::new(cfg.d_model, inner, dtype, rng))
            .collect();
        let aoa_layer = cfg
            .do_aoa
            .then(|| Linear::new((1 + cfg.scale) * cfg.d_model, 2 * cfg.d_model, dtype, rng));
        let output_layer = (cfg.use_output_layer && !cfg.do_aoa)
            .then(|| Linear::new(inner, cfg.d_model, dtype, rng));
        Ok(MultiHeadAoa {
            norm: cfg.norm_q.then(|| LayerNorm::new(cfg.d_model, dtype)),
            linears,
            output_layer,
            aoa_layer,
            dropout: Dropout::new(cfg.dropout)?,
            dropout_aoa: Dropout::new(cfg.dropout_aoa)?,
            cfg,
        })
    }

    /// A copy with its own parameters holding the same values (PyTorch's `deepcopy`).
    pub fn deep_clone(&self) -> Result<Self> {
        let copy = |l: &Option<Linear>| l.as_ref().map(Linear::deep_clone).transpose();
        Ok(MultiHeadAoa {
            cfg: self.cfg.clone(),
            norm: self.norm.as_ref().map(LayerNorm::deep_clone).transpose()?,
            linears: self
                .linears
                .iter()
                .map(Linear::deep_clone)
                .collect::<Result<_>>()?,
            output_layer: copy(&self.output_layer)?,
            aoa_layer: copy(&self.aoa_layer)?,
            dropout: self.dropout,
            dropout_aoa: self.dropout_aoa,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MultiHeadAoaConfig {
        &self.cfg
    }

    /// Splits `[B, N, h·d_k]` into heads `[B, h, N, d_k]` (a dense copy, so that callers
    /// attending many times, like the decoder, pay for the transpose once).
    pub fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n) = (x.shape()[0], x.shape()[1]);
        let dk = self.cfg.d_model * self.cfg.scale / self.cfg.heads;
        if x.rank() != 3 || x.shape()[2] != self.cfg.heads * dk {
            return Err(Error::shape(
                "split_heads",
                &[x.shape()],
                format!("[B, N, {}]", self.cfg.heads * dk),
            ));
        }
        x.reshape(&[b, n, self.cfg.heads, dk])?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attends from `query` to `key`/`value` (`[B, N, ·]`), masking padded keys.
    pub fn forward(
        &self,
        query: &Tensor,
        value: &Tensor,
        key: &Tensor,
        mask: Option<&AttentionMask>,
        ctx: &mut Ctx,
    ) -> Result<AttentionOutput> {
        if key.rank() != 3 || value.rank() != 3 || key.shape()[..2] != value.shape()[..2] {
            return Err(Error::shape(
                "attention",
                &[query.shape(), value.shape(), key.shape()],
                "query [B, Nq, D] or [B, D], value and key [B, N, ·]",
            ));
        }
        let (kh, vh) = if self.cfg.project_k_v {
            (
                self.split_heads(&self.linears[1].forward(key)?)?,
                self.split_heads(&self.linears[2].forward(value)?)?,
            )
        } else {
            (self.split_heads(key)?, self.split_heads(value)?)
        };
        self.forward_heads(query, &kh, &vh, mask, ctx)
    }

    /// Attends from `query` to keys and values already projected and split into heads
    /// (`[B, h, N, d_k]`, from [`MultiHeadAoa::split_heads`]).
    pub fn forward_heads(
        &self,
        query: &Tensor,
        kh: &Tensor,
        vh: &Tensor,
        mask: Option<&AttentionMask>,
        ctx: &mut Ctx,
    ) -> Result<AttentionOutput> {
        let single = query.rank() == 2;
        let query = if single {
            query.unsqueeze(1)?
        } else {
            query.clone()
        };
        if query.rank() != 3
            || kh.rank() != 4
            || kh.shape() != vh.shape()
            || kh.shape()[0] != query.shape()[0]
        {
            return Err(Error::shape(
                "attention",
                &[query.shape(), kh.shape(), vh.shape()],
                "query [B, Nq, D] or [B, D], key and value heads [B, h, N, d_k]",
            ));
        }
        let (b, nq) = (query.shape()[0], query.shape()[1]);
        let q = match &self.norm {
            Some(norm) => norm.forward(&query)?,
            None => query,
        };
        let qh = self.linears[0].forward(&q)?;
        let dk = kh.shape()[3];
        let qh = qh.reshape(&[b, nq, self.cfg.heads, dk])?.transpose(1, 2)?;
        let mut scores = qh
            .matmul(&kh.transpose(-1, -2)?)?
            .mul_scalar(1.0 / (dk as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.masked_fill(&m.padding, -1e9)?;
        }
        let weights = scores.softmax()?;
        let p = self.dropout.forward(&weights, ctx)?;
        let inner = self.cfg.heads * dk;
        let mut x = p.matmul(vh)?.transpose(1, 2)?.reshape(&[b, nq, inner])?;
        if let Some(aoa) = &self.aoa_layer {
            let z = self
                .dropout_aoa
                .forward(&Tensor::concat(&[&x, &q], -1)?, ctx)?;
            x = aoa.forward(&z)?.glu()?;
        }
        if let Some(out) = &self.output_layer {
            x = out.forward(&x)?;
        }
        if single {
            x = x.squeeze(1)?;
        }
        Ok(AttentionOutput { out: x, weights })
    }
}

impl Module for MultiHeadAoa {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        if let Some(n) = &self.norm {
            n.visit(&join(prefix, "norm."), f);
        }
        for (i, l) in self.linears.iter().enumerate() {
            l.visit(&join(prefix, &format!("linears.{i}.")), f);
        }
        if let Some(o) = &self.output_layer {
            o.visit(&join(prefix, "output_layer."), f);
        }
        if let Some(a) = &self.aoa_layer {
            a.visit(&join(prefix, "aoa_layer.0."), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::gradcheck::{GradcheckOptions, gradcheck};

    fn config(
        project_k_v: bool,
        do_aoa: bool,
        norm_q: bool,
        use_output_layer: bool,
    ) -> MultiHeadAoaConfig {
        MultiHeadAoaConfig {
            heads: 2,
            d_model: 4,
            scale: 1,
            project_k_v,
            use_output_layer,
            do_aoa,
            norm_q,
            dropout: 0.1,
            dropout_aoa: 0.3,
        }
    }

    /// Every switch combination, gradient-checked with dropout active, with a key mask.
    #[test]
    fn gradcheck_every_switch() {
        let mut rng = Philox::new(4);
        let mask = AttentionMask::from_valid(
            &Tensor::from_vec(vec![1.0f64, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0], &[2, 4]).unwrap(),
        )
        .unwrap();
        for (pkv, aoa, nq, out) in [
            (true, true, false, false),
            (true, false, false, true),
            (false, false, true, false),
            (false, true, true, false),
            (true, false, true, false),
        ] {
            let layer = MultiHeadAoa::new(config(pkv, aoa, nq, out), DType::F64, &mut rng).unwrap();
            let params = layer.named_parameters();
            let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
            let x = Tensor::randn(&[2, 4, 4], DType::F64, &mut rng);
            let mut inputs = vec![x];
            inputs.extend(params.iter().map(|(_, t)| t.detach()));
            for single in [false, true] {
                let r = gradcheck(
                    |t| {
                        let mut layer = MultiHeadAoa::new(
                            config(pkv, aoa, nq, out),
                            DType::F64,
                            &mut Philox::new(0),
                        )?;
                        let mut k = 1;
                        let mut take = || {
                            k += 1;
                            t[k - 1].clone()
                        };
                        if let Some(n) = &mut layer.norm {
                            n.a_2 = take();
                            n.b_2 = take();
                        }
                        for l in &mut layer.linears {
                            l.weight = take();
                            l.bias = take();
                        }
                        if let Some(o) = &mut layer.output_layer {
                            o.weight = take();
                            o.bias = take();
                        }
                        if let Some(a) = &mut layer.aoa_layer {
                            a.weight = take();
                            a.bias = take();
                        }
                        let q = if single {
                            t[0].narrow(1, 0, 1)?.squeeze(1)?
                        } else {
                            t[0].clone()
                        };
                        let mut rng = Philox::new(11);
                        layer
                            .forward(&q, &t[0], &t[0], Some(&mask), &mut Ctx::train(&mut rng))
                            .map(|o| o.out)
                    },
                    &inputs,
                    &GradcheckOptions::default(),
                )
                .unwrap();
                assert!(
                    r.passed(),
                    "switches {pkv} {aoa} {nq} {out} ({names:?}):\n{r}"
                );
            }
        }
    }

    #[test]
    fn masked_keys_get_zero_weight_and_names_match_the_reference() {
        let mut rng = Philox::new(5);
        let layer =
            MultiHeadAoa::new(config(true, true, false, false), DType::F64, &mut rng).unwrap();
        let names: Vec<String> = layer
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "linears.0.weight",
                "linears.0.bias",
                "linears.1.weight",
                "linears.1.bias",
                "linears.2.weight",
                "linears.2.bias",
                "aoa_layer.0.weight",
                "aoa_layer.0.bias"
            ]
        );
        let mask =
            AttentionMask::from_valid(&Tensor::from_vec(vec![1.0f64, 0.0, 1.0], &[1, 3]).unwrap())
                .unwrap();
        let x = Tensor::randn(&[1, 3, 4], DType::F64, &mut rng);
        let o = layer
            .forward(&x, &x, &x, Some(&mask), &mut Ctx::eval(&mut rng))
            .unwrap();
        let w = o.weights.to_vec_f64();
        assert!(
            w.chunks(3)
                .all(|row| row[1] == 0.0 && (row[0] + row[2] - 1.0).abs() < 1e-12)
        );
        assert!(
            MultiHeadAoa::new(
                MultiHeadAoaConfig {
                    heads: 3,
                    ..config(true, true, false, false)
                },
                DType::F64,
                &mut rng
            )
            .is_err()
        );
    }
}
