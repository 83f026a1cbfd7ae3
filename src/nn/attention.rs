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
//!
//! Two paths compute the same thing. On a CUDA device, in f32, with `d_k` a multiple of 32 up
//! to 128 (the reference's 128 included), the probabilities and `P V` are one fused kernel
//! each way (`cuda::ops::fused_attention`): keys and values stay packed `[B, N, h·d_k]` as
//! the projections write them ([`KeyValues::Packed`]) and no `[B, h, Nq, N]` tensor is
//! stored. Elsewhere (the CPU, f64, other head sizes, or with [`set_fused_attention`]`(false)`)
//! the ops above are composed on keys and values split into heads once
//! ([`KeyValues::Split`]). Both draw the same dropout mask from the same Philox words.

#[cfg(feature = "cuda")]
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Ctx, Dropout, LayerNorm, Linear, Module, join};
use crate::rng::Philox;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

/// Whether attention may use the fused CUDA kernels: on unless `AOANET_FUSED_ATTENTION=0`
/// was set when it was first asked, or [`set_fused_attention`] turned it off.
fn fused_switch() -> &'static AtomicBool {
    static SWITCH: OnceLock<AtomicBool> = OnceLock::new();
    SWITCH.get_or_init(|| {
        AtomicBool::new(std::env::var("AOANET_FUSED_ATTENTION").map_or(true, |v| v.trim() != "0"))
    })
}

/// Turns the fused CUDA attention kernels on or off for the whole process (benches and tests
/// of the unfused composition; results agree to rounding).
pub fn set_fused_attention(on: bool) {
    fused_switch().store(on, Ordering::Relaxed);
}

/// Whether attention on a CUDA device may run the fused kernels (see [`set_fused_attention`]).
pub fn fused_attention_enabled() -> bool {
    fused_switch().load(Ordering::Relaxed)
}

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
    /// How the dropout on the probabilities numbers its random words.
    pub dropout_order: DropoutOrder,
}

/// How the dropout on the attention probabilities `[B, h, Nq, N]` assigns the Philox words
/// (element `i` of the numbering takes word `base + i`, as every dropout here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DropoutOrder {
    /// Row-major over `[B, h, Nq, N]`, the probabilities' own layout (the refiner).
    #[default]
    HeadMajor,
    /// Row-major over the `[B, Nq, h, N]` permutation: each query numbered as a batch row of
    /// one query. The decoder takes the captions of an image as that image's queries against
    /// its shared regions; numbered this way they draw the masks the reference's layout (one
    /// row, one query and a copy of the regions per caption) draws. Equal to `HeadMajor` when
    /// `Nq = 1`.
    QueryMajor,
}

/// Which keys each row may attend to, prepared once per batch.
#[derive(Clone, Debug)]
pub struct AttentionMask {
    /// `[B, 1, 1, N]`: 1 where the key is padding (to be filled with −1e9), else 0.
    padding: Tensor,
    /// `[B, N]`: 1 for a real region.
    valid: Tensor,
    /// The fused kernels' byte mask on the host and on `valid`'s device, made on first use
    /// (one read of `valid` to the host; rows picked from it after that need none).
    #[cfg(feature = "cuda")]
    key_bytes: Arc<OnceLock<KeyBytes>>,
}

/// The key mask as bytes (1 = attend), on the host and on the device.
#[cfg(feature = "cuda")]
#[derive(Debug)]
struct KeyBytes {
    host: Vec<u8>,
    device: Arc<crate::cuda::CudaBuffer<u8>>,
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
        Ok(AttentionMask::new(padding, valid))
    }

    /// From a `[B, N]` mask held on the host, for attention on `device`: the mask is uploaded,
    /// and the fused kernels' byte mask is made from the host values (a mask read back from a
    /// GPU waits for every kernel queued before it).
    pub fn from_host_valid(valid: &Tensor, device: Device) -> Result<Self> {
        if valid.device() != Device::Cpu {
            return Err(Error::invalid(format!(
                "AttentionMask::from_host_valid: the mask is on {}, not the host",
                valid.device()
            )));
        }
        let mask = AttentionMask::from_valid(&valid.to_device(device)?)?;
        #[cfg(feature = "cuda")]
        if device != Device::Cpu {
            let host: Vec<u8> = valid
                .to_vec_f64()
                .iter()
                .map(|&x| u8::from(x != 0.0))
                .collect();
            let device = crate::cuda::ops::upload_bytes(&mask.valid, &host)?;
            let _ = mask.key_bytes.set(KeyBytes { host, device });
        }
        Ok(mask)
    }

    fn new(padding: Tensor, valid: Tensor) -> Self {
        AttentionMask {
            padding,
            valid,
            #[cfg(feature = "cuda")]
            key_bytes: Arc::default(),
        }
    }

    /// The `[B, N]` byte mask of the fused kernels, on `valid`'s device.
    #[cfg(feature = "cuda")]
    fn key_bytes(&self) -> Result<Arc<crate::cuda::CudaBuffer<u8>>> {
        if let Some(b) = self.key_bytes.get() {
            return Ok(b.device.clone());
        }
        let host: Vec<u8> = self
            .valid
            .to_vec_f64()
            .iter()
            .map(|&x| u8::from(x != 0.0))
            .collect();
        let device = crate::cuda::ops::upload_bytes(&self.valid, &host)?;
        Ok(self
            .key_bytes
            .get_or_init(|| KeyBytes { host, device })
            .device
            .clone())
    }

    /// When this mask's bytes exist: the rows `rows` of them, for the mask of those rows.
    #[cfg(feature = "cuda")]
    fn index_key_bytes(&self, rows: &[usize], child: &AttentionMask) -> Result<()> {
        let Some(parent) = self.key_bytes.get() else {
            return Ok(());
        };
        let n = self.valid.shape()[1];
        let host: Vec<u8> = rows
            .iter()
            .flat_map(|&r| parent.host[r * n..(r + 1) * n].iter().copied())
            .collect();
        let device = crate::cuda::ops::upload_bytes(&child.valid, &host)?;
        let _ = child.key_bytes.set(KeyBytes { host, device });
        Ok(())
    }

    /// The `[B, N]` mask of real keys.
    pub fn valid(&self) -> &Tensor {
        &self.valid
    }

    /// The mask with rows picked by `rows` (expanding images to caption rows or beams).
    pub fn index_rows(&self, rows: &[usize]) -> Result<Self> {
        let child = AttentionMask::new(
            self.padding.index_select(0, rows)?,
            self.valid.index_select(0, rows)?,
        );
        #[cfg(feature = "cuda")]
        self.index_key_bytes(rows, &child)?;
        Ok(child)
    }
}

/// Keys and values prepared for attention, in the form the chosen path reads (see the module
/// documentation): made once per batch, read by every decoder step.
#[derive(Clone, Debug)]
pub enum KeyValues {
    /// Split into heads `[B, h, N, d_k]`, dense: the composed path.
    Split {
        /// Keys.
        keys: Tensor,
        /// Values.
        values: Tensor,
    },
    /// Heads packed in the last axis `[B, N, h·d_k]`, dense: the fused kernels.
    Packed {
        /// Keys.
        keys: Tensor,
        /// Values.
        values: Tensor,
    },
}

impl KeyValues {
    /// The rows `rows` of the batch, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        Ok(match self {
            KeyValues::Split { keys, values } => KeyValues::Split {
                keys: keys.index_select(0, rows)?,
                values: values.index_select(0, rows)?,
            },
            KeyValues::Packed { keys, values } => KeyValues::Packed {
                keys: keys.index_select(0, rows)?,
                values: values.index_select(0, rows)?,
            },
        })
    }

    /// The keys, in either form.
    pub fn keys(&self) -> &Tensor {
        match self {
            KeyValues::Split { keys, .. } | KeyValues::Packed { keys, .. } => keys,
        }
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
    /// The attention probabilities `[B, h, Nq, N]` (after masking, before dropout): always
    /// on the composed path; on the fused path only when the context asks for attention maps.
    pub weights: Option<Tensor>,
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

    /// A layer whose parameters are `params`, in [`Module::visit`] order, used as they are
    /// (not copied) so that gradients reach them: gradient checks, and one layer built on two
    /// devices. Fails unless the count and every shape match the configuration.
    pub fn from_parameters(cfg: MultiHeadAoaConfig, params: &[Tensor]) -> Result<Self> {
        let dtype = params.first().map_or(DType::F32, Tensor::dtype);
        let mut layer = MultiHeadAoa::new(cfg, dtype, &mut Philox::new(0))?;
        let mut slots: Vec<&mut Tensor> = Vec::new();
        if let Some(n) = &mut layer.norm {
            slots.extend([&mut n.a_2, &mut n.b_2]);
        }
        for l in layer
            .linears
            .iter_mut()
            .chain(layer.output_layer.as_mut())
            .chain(layer.aoa_layer.as_mut())
        {
            slots.extend([&mut l.weight, &mut l.bias]);
        }
        if slots.len() != params.len() {
            return Err(Error::invalid(format!(
                "attention: {} parameters given, the configuration has {}",
                params.len(),
                slots.len()
            )));
        }
        for (slot, p) in slots.into_iter().zip(params) {
            if slot.shape() != p.shape() {
                return Err(Error::shape(
                    "attention parameters",
                    &[p.shape()],
                    format!("{:?}", slot.shape()),
                ));
            }
            *slot = p.clone();
        }
        Ok(layer)
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

    /// The head size `d_k`.
    fn head_size(&self) -> usize {
        self.cfg.d_model * self.cfg.scale / self.cfg.heads
    }

    /// Whether attention over operands like `t` (dtype, device) runs the fused kernels.
    pub fn fuses(&self, t: &Tensor) -> bool {
        let dk = self.head_size();
        cfg!(feature = "cuda")
            && t.is_cuda()
            && t.dtype() == DType::F32
            && dk.is_multiple_of(32)
            && dk <= 128
            && fused_attention_enabled()
    }

    /// Splits `[B, N, h·d_k]` into heads `[B, h, N, d_k]` (a dense copy, so that callers
    /// attending many times, like the decoder, pay for the transpose once).
    pub fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let dk = self.head_size();
        if x.rank() != 3 || x.shape()[2] != self.cfg.heads * dk {
            return Err(Error::shape(
                "split_heads",
                &[x.shape()],
                format!("[B, N, {}]", self.cfg.heads * dk),
            ));
        }
        let (b, n) = (x.shape()[0], x.shape()[1]);
        x.reshape(&[b, n, self.cfg.heads, dk])?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Projected keys and values `[B, N, h·d_k]` in the form this layer's path reads: packed
    /// (dense) for the fused kernels, else split into heads.
    pub fn prepare(&self, keys: &Tensor, values: &Tensor) -> Result<KeyValues> {
        if keys.rank() != 3 || keys.shape() != values.shape() {
            return Err(Error::shape(
                "attention keys and values",
                &[keys.shape(), values.shape()],
                "keys and values of one shape [B, N, h·d_k]",
            ));
        }
        if self.fuses(keys) {
            let width = self.cfg.heads * self.head_size();
            if keys.shape()[2] != width {
                return Err(Error::shape(
                    "attention keys and values",
                    &[keys.shape()],
                    format!("[B, N, {width}]"),
                ));
            }
            return Ok(KeyValues::Packed {
                keys: keys.contiguous()?,
                values: values.contiguous()?,
            });
        }
        Ok(KeyValues::Split {
            keys: self.split_heads(keys)?,
            values: self.split_heads(values)?,
        })
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
        let kv = if self.cfg.project_k_v {
            self.prepare(
                &self.linears[1].forward(key)?,
                &self.linears[2].forward(value)?,
            )?
        } else {
            self.prepare(key, value)?
        };
        self.forward_heads(query, &kv, mask, ctx)
    }

    /// Attends from `query` to keys and values already projected and prepared
    /// ([`MultiHeadAoa::prepare`]).
    pub fn forward_heads(
        &self,
        query: &Tensor,
        kv: &KeyValues,
        mask: Option<&AttentionMask>,
        ctx: &mut Ctx,
    ) -> Result<AttentionOutput> {
        let single = query.rank() == 2;
        let query = if single {
            query.unsqueeze(1)?
        } else {
            query.clone()
        };
        let (heads, dk) = (self.cfg.heads, self.head_size());
        let inner = heads * dk;
        let keys = kv.keys();
        let kv_ok = match kv {
            KeyValues::Split { keys, values } => {
                keys.rank() == 4
                    && keys.shape()[1] == heads
                    && keys.shape()[3] == dk
                    && values.shape() == keys.shape()
            }
            KeyValues::Packed { keys, values } => {
                keys.rank() == 3 && keys.shape()[2] == inner && values.shape() == keys.shape()
            }
        };
        if query.rank() != 3 || !kv_ok || keys.shape()[0] != query.shape()[0] {
            return Err(Error::shape(
                "attention",
                &[query.shape(), keys.shape()],
                format!(
                    "query [B, Nq, D] or [B, D]; keys and values [B, {heads}, N, {dk}] (split) \
                     or [B, N, {inner}] (packed)"
                ),
            ));
        }
        let (b, nq) = (query.shape()[0], query.shape()[1]);
        let q = match &self.norm {
            Some(norm) => norm.forward(&query)?,
            None => query,
        };
        let qp = self.linears[0].forward(&q)?;
        let (mut x, weights) = match kv {
            KeyValues::Packed { keys, values } if self.fuses(&qp) => {
                let x = self.fused(&qp, keys, values, mask, ctx)?;
                let weights = if ctx.attention_maps {
                    let kh = self.split_heads(keys)?;
                    Some(crate::autograd::no_grad(|| {
                        self.probabilities(&qp, &kh, mask, b, nq)
                    })?)
                } else {
                    None
                };
                (x, weights)
            }
            _ => {
                let (kh, vh) = match kv {
                    KeyValues::Split { keys, values } => (keys.clone(), values.clone()),
                    KeyValues::Packed { keys, values } => {
                        (self.split_heads(keys)?, self.split_heads(values)?)
                    }
                };
                let weights = self.probabilities(&qp, &kh, mask, b, nq)?;
                let p = if self.cfg.dropout_order == DropoutOrder::QueryMajor && nq > 1 {
                    let by_query = weights.permute(&[0, 2, 1, 3])?;
                    self.dropout
                        .forward(&by_query, ctx)?
                        .permute(&[0, 2, 1, 3])?
                } else {
                    self.dropout.forward(&weights, ctx)?
                };
                let x = p.matmul(&vh)?.transpose(1, 2)?.reshape(&[b, nq, inner])?;
                (x, Some(weights))
            }
        };
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

    /// `softmax(mask(Q_h K_hᵀ / √d_k))` `[B, h, Nq, N]` from the projected queries
    /// `[B, Nq, h·d_k]` and keys split into heads.
    fn probabilities(
        &self,
        qp: &Tensor,
        kh: &Tensor,
        mask: Option<&AttentionMask>,
        b: usize,
        nq: usize,
    ) -> Result<Tensor> {
        let dk = self.head_size();
        let qh = qp.reshape(&[b, nq, self.cfg.heads, dk])?.transpose(1, 2)?;
        let mut scores = qh
            .matmul(&kh.transpose(-1, -2)?)?
            .mul_scalar(1.0 / (dk as f64).sqrt())?;
        if let Some(m) = mask {
            scores = scores.masked_fill(&m.padding, -1e9)?;
        }
        scores.softmax()
    }

    /// The fused kernels' `concat_h(dropout(P_h) V_h)` `[B, Nq, h·d_k]`, drawing the dropout
    /// mask from the words the composed path would use.
    #[cfg(feature = "cuda")]
    fn fused(
        &self,
        qp: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        mask: Option<&AttentionMask>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (b, nq, nk) = (qp.shape()[0], qp.shape()[1], keys.shape()[1]);
        let p = self.dropout.p();
        let dropout = (ctx.train && p > 0.0).then(|| {
            // The composed path's dropout over [B, h, Nq, N] advances the stream this far.
            let state = ctx.rng.reserve((b * self.cfg.heads * nq * nk) as u64);
            (p as f32, state)
        });
        let spec = crate::cuda::ops::FusedAttention {
            heads: self.cfg.heads,
            mask: mask.map(AttentionMask::key_bytes).transpose()?,
            dropout,
            dropout_query_major: self.cfg.dropout_order == DropoutOrder::QueryMajor,
        };
        crate::cuda::ops::fused_attention(qp, keys, values, spec)
    }

    /// Without the CUDA backend nothing fuses ([`MultiHeadAoa::fuses`] is false).
    #[cfg(not(feature = "cuda"))]
    fn fused(
        &self,
        _qp: &Tensor,
        _keys: &Tensor,
        _values: &Tensor,
        _mask: Option<&AttentionMask>,
        _ctx: &mut Ctx,
    ) -> Result<Tensor> {
        Err(Error::invalid("fused attention needs the cuda feature"))
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
            dropout_order: DropoutOrder::HeadMajor,
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
                        let layer =
                            MultiHeadAoa::from_parameters(config(pkv, aoa, nq, out), &t[1..])?;
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

    /// Query-major dropout numbering: `G` queries of a batch row against its keys draw the
    /// masks of `G` rows with one query each and a copy of the keys (the decoder's captions
    /// sharing their image's regions); head-major numbering does not. Gradient-checked.
    #[test]
    fn query_major_dropout_numbers_each_query_as_its_own_row() {
        let mut rng = Philox::new(9);
        let cfg = |order| MultiHeadAoaConfig {
            dropout: 0.5,
            dropout_order: order,
            ..config(false, false, true, false)
        };
        let layer = MultiHeadAoa::new(cfg(DropoutOrder::QueryMajor), DType::F64, &mut rng).unwrap();
        let params: Vec<Tensor> = layer
            .named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let (b, g, n) = (2, 3, 5);
        let q = Tensor::randn(&[b, g, 4], DType::F64, &mut rng);
        let p = Tensor::randn(&[b, n, 8], DType::F64, &mut rng);
        let valid = Tensor::from_vec(
            vec![1.0f64, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            &[b, n],
        )
        .unwrap();
        let rows: Vec<usize> = (0..b * g).map(|r| r / g).collect();
        let run = |order, grouped: bool| {
            let layer = MultiHeadAoa::from_parameters(cfg(order), &params).unwrap();
            let (query, p, valid) = if grouped {
                (q.clone(), p.clone(), valid.clone())
            } else {
                (
                    q.reshape(&[b * g, 4]).unwrap(),
                    p.index_select(0, &rows).unwrap(),
                    valid.index_select(0, &rows).unwrap(),
                )
            };
            let kv = layer
                .prepare(&p.narrow(2, 4, 4).unwrap(), &p.narrow(2, 0, 4).unwrap())
                .unwrap();
            let mask = AttentionMask::from_valid(&valid).unwrap();
            let mut rng = Philox::new(11);
            let out = layer
                .forward_heads(&query, &kv, Some(&mask), &mut Ctx::train(&mut rng))
                .unwrap()
                .out;
            (out.reshape(&[b * g, 4]).unwrap().to_vec_f64(), rng.state())
        };
        let (copied, after) = run(DropoutOrder::HeadMajor, false);
        let (grouped, grouped_after) = run(DropoutOrder::QueryMajor, true);
        assert_eq!(grouped_after, after, "words drawn");
        for (x, y) in grouped.iter().zip(&copied) {
            assert!((x - y).abs() <= 1e-13, "{grouped:?}\n{copied:?}");
        }
        let (head_major, _) = run(DropoutOrder::HeadMajor, true);
        assert!(
            head_major
                .iter()
                .zip(&copied)
                .any(|(x, y)| (x - y).abs() > 1e-6)
        );

        let mask = AttentionMask::from_valid(&valid).unwrap();
        let mut inputs = vec![q.clone(), p.clone()];
        inputs.extend(params.iter().map(Tensor::detach));
        let r = gradcheck(
            |t| {
                let layer = MultiHeadAoa::from_parameters(cfg(DropoutOrder::QueryMajor), &t[2..])?;
                let kv = layer.prepare(&t[1].narrow(2, 4, 4)?, &t[1].narrow(2, 0, 4)?)?;
                let mut rng = Philox::new(11);
                layer
                    .forward_heads(&t[0], &kv, Some(&mask), &mut Ctx::train(&mut rng))
                    .map(|o| o.out)
            },
            &inputs,
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(r.passed(), "{r}");
    }

    /// Keys and values packed `[B, N, h·d_k]` (what the fused path reads) give the composed
    /// path's result and gradients on a device without the kernels: they are split on the fly.
    #[test]
    fn packed_keys_and_values_compose_like_split_ones() {
        let mut rng = Philox::new(6);
        let layer =
            MultiHeadAoa::new(config(false, false, true, false), DType::F64, &mut rng).unwrap();
        assert!(!layer.fuses(&Tensor::zeros(&[1], DType::F32)));
        let q = Tensor::randn(&[2, 4], DType::F64, &mut rng);
        let p = Tensor::randn(&[2, 3, 8], DType::F64, &mut rng);
        let mask = AttentionMask::from_valid(
            &Tensor::from_vec(vec![1.0f64, 1.0, 0.0, 1.0, 1.0, 1.0], &[2, 3]).unwrap(),
        )
        .unwrap();
        let (k, v) = (p.narrow(2, 4, 4).unwrap(), p.narrow(2, 0, 4).unwrap());
        let split = layer.prepare(&k, &v).unwrap();
        assert!(matches!(split, KeyValues::Split { .. }));
        let packed = KeyValues::Packed {
            keys: k.contiguous().unwrap(),
            values: v.contiguous().unwrap(),
        };
        let run = |kv: &KeyValues| {
            let mut rng = Philox::new(3);
            layer
                .forward_heads(&q, kv, Some(&mask), &mut Ctx::train(&mut rng))
                .unwrap()
        };
        let (a, b) = (run(&split), run(&packed));
        assert_eq!(a.out.to_vec_f64(), b.out.to_vec_f64());
        assert_eq!(
            a.weights.unwrap().to_vec_f64(),
            b.weights.unwrap().to_vec_f64()
        );
        let r = gradcheck(
            |t| {
                let kv = KeyValues::Packed {
                    keys: t[1].clone(),
                    values: t[2].clone(),
                };
                let mut rng = Philox::new(3);
                layer
                    .forward_heads(&t[0], &kv, Some(&mask), &mut Ctx::train(&mut rng))
                    .map(|o| o.out)
            },
            &[q.clone(), k.contiguous().unwrap(), v.contiguous().unwrap()],
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(r.passed(), "{r}");
        let bad = KeyValues::Packed {
            keys: Tensor::zeros(&[2, 3, 5], DType::F64),
            values: Tensor::zeros(&[2, 3, 5], DType::F64),
        };
        let mut rng = Philox::new(3);
        assert!(
            layer
                .forward_heads(&q, &bad, None, &mut Ctx::eval(&mut rng))
                .is_err()
        );
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
        let w = o
            .weights
            .expect("the composed path returns weights")
            .to_vec_f64();
        assert!(
            w.chunks(3)
                .all(|row| row[1] == 0.0 && (row[0] + row[2] - 1.0).abs() < 1e-12)
        );
        let params: Vec<Tensor> = layer
            .named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let cfg = config(true, true, false, false);
        assert!(MultiHeadAoa::from_parameters(cfg.clone(), &params[1..]).is_err());
        let mut wrong = params.clone();
        wrong[0] = Tensor::zeros(&[3, 4], DType::F64);
        assert!(MultiHeadAoa::from_parameters(cfg.clone(), &wrong).is_err());
        let same = MultiHeadAoa::from_parameters(cfg, &params).unwrap();
        assert!(same.linears[0].weight.same_storage(&params[0]));
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
