//! `AoaModel`: the reference's `AoAModel` (AoAModel.py:187-225 over AttModel.py): feature
//! preparation (clip, `att_embed`, refiner, mean feature, `ctx2att`), the per-step decoder API,
//! and teacher-forced training with scheduled sampling.

use super::AoaConfig;
use super::categorical::Rows;
use super::decoder::{CoreOutput, DecoderCore, DecoderState, OutputDropout, Words};
use super::refiner::Refiner;
use crate::nn::{AttentionMask, Ctx, Dropout, Embedding, KeyValues, Linear, Module, join};
use crate::rng::Philox;
use crate::tensor::{DType, Device, Ids, Tensor};
use crate::{Error, Result};

/// The AoA captioning model.
pub struct AoaModel {
    config: AoaConfig,
    dtype: DType,
    /// `embed.0`: word embeddings `[V+1, E]` (followed by ReLU and dropout).
    pub embed: Embedding,
    /// `att_embed.0`: region features → D (followed by ReLU and dropout).
    pub att_embed: Linear,
    /// `fc_embed.0`: the global feature → D, only when `mean_feats` is off.
    pub fc_embed: Option<Linear>,
    /// `logit`: D → V+1.
    pub logit: Linear,
    /// `ctx2att`: refined features → `[values ; keys]` (2·scale·D).
    pub ctx2att: Linear,
    /// The refiner, when `refine` is on.
    pub refiner: Option<Refiner>,
    /// The decoder core.
    pub core: DecoderCore,
    drop_lm: Dropout,
}

/// The prepared features of a batch: computed once, then used by every decoding step.
///
/// After [`Encoded::expand`] each image serves `group` consecutive decoder rows (its
/// captions) without copying its regions: the region tensors, keys, values and mask keep one
/// row per image, and the decoder's attention takes an image's `group` rows as that many
/// queries against its keys. The reference copies the regions per caption instead; the
/// results are the same, with a fifth of the memory traffic for keys, values and their
/// gradients at five captions per image.
#[derive(Clone)]
pub struct Encoded {
    /// The global feature ā, one row per decoder row: `[B, D]`.
    pub mean_feats: Tensor,
    /// The refined region features `[B / group, N, D]` (after clipping to the longest image).
    pub att_feats: Tensor,
    /// `ctx2att` of the refined features `[B / group, N, 2·scale·D]`: values, then keys.
    pub p_att_feats: Tensor,
    /// The keys (second half of `p_att_feats`) and values (first half), prepared for the
    /// decoder's attention ([`crate::nn::MultiHeadAoa::prepare`]), one row per image.
    pub kv: KeyValues,
    /// Which regions are real, when the images have different region counts (one row per
    /// image).
    pub mask: Option<AttentionMask>,
    /// Consecutive decoder rows per row of the region tensors (1 until [`Encoded::expand`]).
    pub group: usize,
}

impl Encoded {
    /// Number of decoder rows.
    pub fn batch(&self) -> usize {
        self.mean_feats.shape()[0]
    }

    /// The decoder rows `rows`, in that order (each with its own copy of its image's regions:
    /// the result has `group` 1).
    pub fn select_rows(&self, rows: &[usize]) -> Result<Encoded> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.batch()) {
            return Err(Error::invalid(format!(
                "Encoded::select_rows: row {bad} of {}",
                self.batch()
            )));
        }
        let images: Vec<usize> = rows.iter().map(|&r| r / self.group).collect();
        self.pick(rows, &images, 1)
    }

    /// The decoder rows of the images `images` (positions among this encoding's region rows),
    /// in that order, each image with all its `group` rows, still sharing one copy of the
    /// image's regions (`group` unchanged). Beam search drops finished images this way.
    pub fn select_images(&self, images: &[usize]) -> Result<Encoded> {
        let count = self.att_feats.shape()[0];
        if let Some(&bad) = images.iter().find(|&&i| i >= count) {
            return Err(Error::invalid(format!(
                "Encoded::select_images: image {bad} of {count}"
            )));
        }
        let rows: Vec<usize> = images
            .iter()
            .flat_map(|&i| i * self.group..(i + 1) * self.group)
            .collect();
        self.pick(&rows, images, self.group)
    }

    /// The decoder rows `rows` with the region rows `images`, `group` decoder rows to each.
    fn pick(&self, rows: &[usize], images: &[usize], group: usize) -> Result<Encoded> {
        Ok(Encoded {
            mean_feats: self.mean_feats.index_select(0, rows)?,
            att_feats: self.att_feats.index_select(0, images)?,
            p_att_feats: self.p_att_feats.index_select(0, images)?,
            kv: self.kv.select_rows(images)?,
            mask: self
                .mask
                .as_ref()
                .map(|m| m.index_rows(images))
                .transpose()?,
            group,
        })
    }

    /// Each decoder row repeated `n` times consecutively (row `i` → rows `i·n .. i·n + n`):
    /// one encoding per image shared by its captions, as upstream self-critical.pytorch does.
    /// Only the per-row global feature is copied; the regions are shared (`group` grows `n`
    /// times).
    pub fn expand(&self, n: usize) -> Result<Encoded> {
        if n == 0 {
            return Err(Error::invalid("Encoded::expand: zero rows per image"));
        }
        if n == 1 {
            return Ok(self.clone());
        }
        let rows: Vec<usize> = (0..self.batch())
            .flat_map(|i| std::iter::repeat_n(i, n))
            .collect();
        Ok(Encoded {
            mean_feats: self.mean_feats.index_select(0, &rows)?,
            group: self.group * n,
            ..self.clone()
        })
    }
}

/// The result of one decoding step.
pub struct StepOutput {
    /// `log_softmax` of the logits, `[B, V+1]`.
    pub logprobs: Tensor,
    /// The state for the next step.
    pub state: DecoderState,
    /// Attention over regions, averaged over heads, `[B, N]`: when the context asked for
    /// attention maps ([`Ctx::attention_maps`]).
    pub attention: Option<Tensor>,
}

impl AoaModel {
    /// A model with PyTorch-default initialisation drawn from `seed`.
    pub fn new(config: AoaConfig, dtype: DType, seed: u64) -> Result<Self> {
        config.validate()?;
        let rng = &mut Philox::with_stream(seed, 0x1917);
        let c = &config;
        let embed = Embedding::new(c.vocab_size + 1, c.input_encoding_size, dtype, rng);
        let fc_embed = (!c.mean_feats).then(|| Linear::new(c.fc_feat_size, c.rnn_size, dtype, rng));
        let att_embed = Linear::new(c.att_feat_size, c.rnn_size, dtype, rng);
        let logit = Linear::new(c.rnn_size, c.vocab_size + 1, dtype, rng);
        let ctx2att = Linear::new(c.rnn_size, 2 * c.multi_head_scale * c.rnn_size, dtype, rng);
        let refiner = if c.refine {
            Some(Refiner::new(c, dtype, rng)?)
        } else {
            None
        };
        let core = DecoderCore::new(c, dtype, rng)?;
        Ok(AoaModel {
            drop_lm: Dropout::new(c.drop_prob_lm)?,
            config,
            dtype,
            embed,
            att_embed,
            fc_embed,
            logit,
            ctx2att,
            refiner,
            core,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AoaConfig {
        &self.config
    }

    /// The compute dtype of the parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Prepares a batch's features: `att_feats [B, N, F]` with `att_masks [B, N]` (1 for a
    /// real region; `None` when every image has all N regions), and `fc_feats [B, F]` (only
    /// needed when `mean_feats` is off). `trace` receives the intermediates under the parity
    /// fixtures' names.
    ///
    /// `att_masks` may be on the host while the features are on a GPU (the trainer's batches
    /// are): the region counts and the attention kernels' byte mask then come from the host
    /// copy, and nothing waits for the GPU (a mask on the GPU is read back once).
    pub fn encode(
        &self,
        att_feats: &Tensor,
        att_masks: Option<&Tensor>,
        fc_feats: Option<&Tensor>,
        ctx: &mut Ctx,
        mut trace: Option<&mut Vec<(String, Tensor)>>,
    ) -> Result<Encoded> {
        let c = &self.config;
        if att_feats.rank() != 3 || att_feats.shape()[2] != c.att_feat_size {
            return Err(Error::shape(
                "encode",
                &[att_feats.shape()],
                format!("att_feats [B, N, {}]", c.att_feat_size),
            ));
        }
        let (b, n) = (att_feats.shape()[0], att_feats.shape()[1]);
        // clip_att: drop the columns no image uses.
        let (feats, masks) = match att_masks {
            Some(m) => {
                if m.shape() != [b, n] {
                    return Err(Error::shape(
                        "encode",
                        &[att_feats.shape(), m.shape()],
                        "att_masks [B, N]",
                    ));
                }
                let counts = m.sum_axis(1, false)?.to_vec_f64();
                let max_len = counts.iter().fold(0.0f64, |a, &v| a.max(v)).round() as usize;
                if max_len == 0 {
                    return Err(Error::invalid(
                        "encode: an all-zero att_masks (no image has a region)",
                    ));
                }
                if counts.contains(&0.0) {
                    return Err(Error::invalid(
                        "encode: an image with no regions (an att_masks row is all zero)",
                    ));
                }
                let m = m.narrow(1, 0, max_len)?.detach();
                (att_feats.narrow(1, 0, max_len)?, Some(m))
            }
            None => (att_feats.clone(), None),
        };
        // The attention's mask, and the mask on the features' device for the products below.
        let device = att_feats.device();
        let (mask, masks) = match masks {
            Some(m) if m.device() == Device::Cpu && device != Device::Cpu => {
                let mask = AttentionMask::from_host_valid(&m, device)?;
                let on_device = mask.valid().clone();
                (Some(mask), Some(on_device))
            }
            Some(m) => (Some(AttentionMask::from_valid(&m)?), Some(m)),
            None => (None, None),
        };
        // att_embed = Linear → ReLU → Dropout, padded rows exactly zero (pack_wrapper).
        let mut a = self
            .drop_lm
            .forward_relu(&self.att_embed.forward(&feats)?, ctx)?;
        if let Some(m) = &masks {
            a = a.mul(&m.unsqueeze(2)?)?;
        }
        if let Some(t) = trace.as_deref_mut() {
            t.push(("att_embed".into(), a.clone()));
        }
        let refined = match &self.refiner {
            Some(r) => r.forward(&a, mask.as_ref(), ctx, trace.as_deref_mut())?,
            None => a,
        };
        let mean_feats = if c.mean_feats {
            match &masks {
                None => refined.mean_axis(1, false)?,
                Some(m) => refined
                    .mul(&m.unsqueeze(2)?)?
                    .sum_axis(1, false)?
                    .div(&m.sum_axis(1, true)?)?,
            }
        } else {
            let fc = fc_feats.ok_or_else(|| {
                Error::invalid("encode: mean_feats is off, so fc_feats are required")
            })?;
            self.drop_lm.forward_relu(
                &self
                    .fc_embed
                    .as_ref()
                    .expect("fc_embed exists without mean_feats")
                    .forward(fc)?,
                ctx,
            )?
        };
        let p = self.ctx2att.forward(&refined)?;
        let width = c.multi_head_scale * c.rnn_size;
        let kv = self
            .core
            .attention
            .prepare(&p.narrow(2, width, width)?, &p.narrow(2, 0, width)?)?;
        if let Some(t) = trace {
            t.push(("refined".into(), refined.clone()));
            t.push(("mean_feats".into(), mean_feats.clone()));
            t.push(("p_att_feats".into(), p.clone()));
        }
        Ok(Encoded {
            mean_feats,
            att_feats: refined,
            p_att_feats: p,
            kv,
            mask,
            group: 1,
        })
    }

    /// The device holding the parameters (where inputs must be, and results are).
    pub fn device(&self) -> Device {
        self.logit.weight.device()
    }

    /// Moves every parameter to `device`, in place ([`Module::to_device_`]).
    pub fn to_device_(&self, device: Device) -> Result<()> {
        Module::to_device_(self, device)
    }

    /// The all-zero initial decoder state for `batch` rows, on the parameters' device.
    ///
    /// # Panics
    /// If the state cannot be allocated on a GPU ([`AoaModel::try_init_state`] returns that as
    /// an error).
    pub fn init_state(&self, batch: usize) -> DecoderState {
        self.try_init_state(batch)
            .unwrap_or_else(|e| panic!("init_state: {e}"))
    }

    /// The all-zero initial decoder state for `batch` rows, on the parameters' device.
    pub fn try_init_state(&self, batch: usize) -> Result<DecoderState> {
        DecoderState::zeros_on(batch, self.config.rnn_size, self.dtype, self.device())
    }

    /// One decoding step: previous words `it` (0 = BOS), the prepared features and the state.
    pub fn step(
        &self,
        it: &[usize],
        enc: &Encoded,
        state: &DecoderState,
        ctx: &mut Ctx,
    ) -> Result<StepOutput> {
        self.step_ids(&Ids::from(it), enc, state, ctx)
    }

    /// [`AoaModel::step`] with the previous words where they are (on a GPU, words the
    /// decoding loop picked there).
    pub fn step_ids(
        &self,
        it: &Ids,
        enc: &Encoded,
        state: &DecoderState,
        ctx: &mut Ctx,
    ) -> Result<StepOutput> {
        let out = self.step_core(it, enc, state, ctx, OutputDropout::Apply)?;
        let logprobs = self.logprobs(&out.output)?;
        let attention = match &out.attention {
            Some(a) => Some(crate::autograd::no_grad(|| {
                a.squeeze(2)?.mean_axis(1, false)
            })?),
            None => None,
        };
        Ok(StepOutput {
            logprobs,
            state: out.state,
            attention,
        })
    }

    /// The decoder core's part of a step (embedding, LSTM, attention, context), without the
    /// output layer: teacher forcing applies the logit layer (and may apply the output
    /// dropout, [`OutputDropout::Defer`]) to all steps at once.
    pub fn step_core(
        &self,
        it: &Ids,
        enc: &Encoded,
        state: &DecoderState,
        ctx: &mut Ctx,
        output_dropout: OutputDropout,
    ) -> Result<CoreOutput> {
        if it.len() != enc.batch() || state.batch() != enc.batch() {
            return Err(Error::shape(
                "step",
                &[&[it.len()], &[enc.batch()], &[state.batch()]],
                "one word and one state per encoded row",
            ));
        }
        let words = Words {
            embed: &self.embed,
            dropout: &self.drop_lm,
            ids: it,
        };
        self.core.forward(words, enc, state, ctx, output_dropout)
    }

    /// `log_softmax(logit(output))` for decoder outputs `[..., D]`.
    pub fn logprobs(&self, output: &Tensor) -> Result<Tensor> {
        self.logit.forward(output)?.log_softmax()
    }

    /// Teacher-forced log-probabilities `[R, L−1, V+1]` for the label rows `labels [R, L]`
    /// (BOS 0, words, EOS 0, padding 0; row-major), with scheduled sampling: from step 1 on,
    /// each row's input is, with probability `ss_prob`, a word sampled from the model's own
    /// previous distribution instead of the label. Stops early, as the reference does, once
    /// every row's input is padding; the remaining steps are zeros (always masked out).
    ///
    /// The output layer runs once over all steps (`[R·T, D] · [D, V+1]`): the same values as
    /// per step, one large GEMM instead of T skinny ones, and one weight gradient.
    pub fn forward_xe(
        &self,
        enc: &Encoded,
        labels: &[usize],
        len: usize,
        ss_prob: f64,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        self.teacher_forced_scores(enc, labels, len, ss_prob, ctx, true)
    }

    /// [`AoaModel::forward_xe`] without the final `log_softmax`: the logits `[R, L−1, V+1]`
    /// (steps after an early stop are zeros), for
    /// [`crate::train::label_smoothing_loss_from_logits`], which fuses the `log_softmax` into
    /// the loss on a GPU.
    pub fn forward_xe_logits(
        &self,
        enc: &Encoded,
        labels: &[usize],
        len: usize,
        ss_prob: f64,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        self.teacher_forced_scores(enc, labels, len, ss_prob, ctx, false)
    }

    /// The logits of teacher forcing, or (`log_softmax`) their log-probabilities, padded with
    /// zeros to `len − 1` steps.
    fn teacher_forced_scores(
        &self,
        enc: &Encoded,
        labels: &[usize],
        len: usize,
        ss_prob: f64,
        ctx: &mut Ctx,
        log_softmax: bool,
    ) -> Result<Tensor> {
        let outputs = self.teacher_forced(enc, labels, len, ss_prob, ctx)?;
        let logits = self.logit.forward(&outputs)?;
        let scores = if log_softmax {
            logits.log_softmax()?
        } else {
            logits
        };
        self.pad_steps(scores, len)
    }

    /// `x [R, steps, V+1]` followed by zeros up to `len − 1` steps.
    fn pad_steps(&self, x: Tensor, len: usize) -> Result<Tensor> {
        let (rows, steps, classes) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        if steps == len - 1 {
            return Ok(x);
        }
        let pad = Tensor::zeros_on(&[rows, len - 1 - steps, classes], self.dtype, x.device())?;
        Tensor::concat(&[&x, &pad], 1)
    }

    /// The decoder's outputs `[R, steps, D]` of teacher forcing (with scheduled sampling):
    /// fewer than `len − 1` steps after an early stop.
    fn teacher_forced(
        &self,
        enc: &Encoded,
        labels: &[usize],
        len: usize,
        ss_prob: f64,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let rows = enc.batch();
        if len < 2 || labels.len() != rows * len {
            return Err(Error::shape(
                "forward_xe",
                &[&[labels.len()], &[rows, len]],
                "labels [R, L] with L ≥ 2, one row per encoded row",
            ));
        }
        let classes = self.config.vocab_size + 1;
        if let Some(&bad) = labels.iter().find(|&&w| w >= classes) {
            return Err(Error::invalid(format!(
                "forward_xe: word id {bad} is outside the vocabulary (V + 1 = {classes})"
            )));
        }
        let mut state = self.try_init_state(rows)?;
        let mut outputs: Vec<Tensor> = Vec::with_capacity(len - 1);
        // Without scheduled sampling no step reads an earlier step's output, so the output
        // dropout is drawn at each step (the same words, in the same order) and applied once
        // to all steps: one launch each way on a GPU instead of one per step. With scheduled
        // sampling each step is dropped as it is made: the next step samples from it, and the
        // sampling draws between the steps' dropout words leave them unequally spaced, which
        // the one-launch form does not take.
        let sampling = ss_prob > 0.0 && ctx.train;
        let output_dropout = if sampling {
            OutputDropout::Apply
        } else {
            OutputDropout::Defer
        };
        let mut draws = Vec::with_capacity(len - 1);
        for i in 0..len - 1 {
            let column: Vec<usize> = (0..rows).map(|r| labels[r * len + i]).collect();
            if i >= 1 && column.iter().all(|&w| w == 0) {
                break;
            }
            let it = if i >= 1 && ss_prob > 0.0 && ctx.train {
                // The previous step's distribution, as data only (the sample is detached).
                let mut prev = Rows::new(&crate::autograd::no_grad(|| {
                    self.logprobs(outputs.last().expect("step i-1 exists"))
                })?)?;
                // Per row: whether to sample, then (if so) the draw, as the CPU always drew.
                // On a GPU the words stay there: the next step reads them without a wait.
                let rng = &mut *ctx.rng;
                prev.draw_or_keep(&column, |_| {
                    (rng.next_f64() < ss_prob).then(|| rng.next_f64())
                })?
            } else {
                Ids::from(column)
            };
            let out = self.step_core(&it, enc, &state, ctx, output_dropout)?;
            outputs.push(out.output.unsqueeze(1)?);
            draws.push(out.output_draw);
            state = out.state;
        }
        let parts: Vec<&Tensor> = outputs.iter().collect();
        let stacked = Tensor::concat(&parts, 1)?;
        self.core.drop_outputs(&stacked, &draws)
    }

    /// Total number of parameters.
    pub fn num_parameters(&self) -> usize {
        Module::num_parameters(self)
    }
}

impl Module for AoaModel {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(String, &Tensor)) {
        self.embed.visit(&join(prefix, "embed.0."), f);
        if let Some(fc) = &self.fc_embed {
            fc.visit(&join(prefix, "fc_embed.0."), f);
        }
        self.att_embed.visit(&join(prefix, "att_embed.0."), f);
        self.logit.visit(&join(prefix, "logit."), f);
        self.ctx2att.visit(&join(prefix, "ctx2att."), f);
        if let Some(r) = &self.refiner {
            r.visit(&join(prefix, "refiner."), f);
        }
        self.core.visit(&join(prefix, "core."), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 11 words, 6-d features, width 16, 2 heads, one refiner layer.
    fn tiny_config() -> AoaConfig {
        let mut c = AoaConfig::small(11, 6);
        c.rnn_size = 16;
        c.input_encoding_size = 16;
        c.num_heads = 2;
        c.refiner_layers = 1;
        c
    }

    /// Captions sharing their image's regions (`expand`, `group` > 1) give what one copy of
    /// the regions per caption gives (`select_rows`, `group` 1): log-probabilities, gradients
    /// down to the refiner, and the per-row attention maps; in eval mode and in training mode,
    /// where the decoder's query-major dropout numbering ([`crate::nn::DropoutOrder`]) draws
    /// each caption the mask its own copy of the regions would get.
    #[test]
    fn shared_regions_equal_copied_regions() {
        let c = tiny_config();
        let mut rng = Philox::new(2);
        let feats = Tensor::randn(&[2, 4, 6], DType::F64, &mut rng);
        let masks =
            Tensor::from_vec(vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0], &[2, 4]).unwrap();
        let (n, len) = (3, 5);
        let labels: Vec<usize> = (0..2 * n * len)
            .map(|i| if i % len == 0 { 0 } else { 1 + i % 10 })
            .collect();
        assert!(c.attention_dropout > 0.0 && c.drop_prob_lm > 0.0);
        let m = AoaModel::new(c, DType::F64, 7).unwrap();
        let run = |shared: bool, train: bool| {
            let params = m.named_parameters();
            for (_, p) in &params {
                p.zero_grad();
            }
            let mut rng = Philox::new(3);
            let mut ctx = if train {
                Ctx::train(&mut rng)
            } else {
                Ctx::eval(&mut rng)
            };
            let enc = m
                .encode(&feats, Some(&masks), None, &mut ctx, None)
                .unwrap();
            let enc = if shared {
                enc.expand(n).unwrap()
            } else {
                let rows: Vec<usize> = (0..2 * n).map(|r| r / n).collect();
                enc.select_rows(&rows).unwrap()
            };
            assert_eq!(enc.group, if shared { n } else { 1 });
            let lp = m.forward_xe(&enc, &labels, len, 0.0, &mut ctx).unwrap();
            lp.sum_all().unwrap().backward().unwrap();
            let grads: Vec<Vec<f64>> = params
                .iter()
                .map(|(_, p)| p.grad().map_or(Vec::new(), |g| g.to_vec_f64()))
                .collect();
            let mut ctx = Ctx::eval(&mut rng).with_attention_maps(true);
            let state = m.try_init_state(2 * n).unwrap();
            let step = crate::autograd::no_grad(|| m.step(&vec![3; 2 * n], &enc, &state, &mut ctx))
                .unwrap();
            (lp.to_vec_f64(), grads, step.attention.unwrap().to_vec_f64())
        };
        let close = |x: &[f64], y: &[f64]| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| (p - q).abs() <= 1e-12 * (1.0 + q.abs()))
        };
        let eval = run(true, false);
        for train in [false, true] {
            let (a, b) = (run(true, train), run(false, train));
            assert!(close(&a.0, &b.0), "log-probabilities (train {train})");
            for (i, (x, y)) in a.1.iter().zip(&b.1).enumerate() {
                assert!(close(x, y), "gradient of parameter {i} (train {train})");
            }
            assert!(close(&a.2, &b.2), "attention maps (train {train})");
            assert_eq!(a.2.len(), 2 * n * 4);
            // Dropout was active in training mode: it changed the result.
            assert_eq!(close(&a.0, &eval.0), !train);
        }
    }

    /// Dropping images from an expanded encoding keeps their rows sharing regions, and a step
    /// over them gives what a step over copied regions gives.
    #[test]
    fn selected_images_keep_sharing_their_regions() {
        let c = tiny_config();
        let mut rng = Philox::new(4);
        let feats = Tensor::randn(&[3, 4, 6], DType::F64, &mut rng);
        let masks = Tensor::from_vec(
            vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
            &[3, 4],
        )
        .unwrap();
        let m = AoaModel::new(c, DType::F64, 9).unwrap();
        let mut ctx = Ctx::eval(&mut rng);
        let enc = m
            .encode(&feats, Some(&masks), None, &mut ctx, None)
            .unwrap()
            .expand(2)
            .unwrap();
        let picked = enc.select_images(&[2, 0]).unwrap();
        assert_eq!((picked.group, picked.batch()), (2, 4));
        let copied = enc.select_rows(&[4, 5, 0, 1]).unwrap();
        assert_eq!(copied.group, 1);
        let words = [3, 5, 7, 1];
        let state = m.try_init_state(4).unwrap();
        let step = |e: &Encoded| {
            let mut rng = Philox::new(5);
            let mut ctx = Ctx::eval(&mut rng);
            crate::autograd::no_grad(|| m.step(&words, e, &state, &mut ctx))
                .unwrap()
                .logprobs
                .to_vec_f64()
        };
        let (a, b) = (step(&picked), step(&copied));
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + y.abs())),
            "shared and copied regions disagree"
        );
        assert!(enc.select_images(&[3]).is_err());
    }

    /// Teacher forcing draws the output dropout at every step and applies it once to all
    /// steps ([`OutputDropout::Defer`]): the log-probabilities, every gradient and the
    /// generator's state after are those of dropping each step's output as it is made. With
    /// scheduled sampling (which drops each step as it is made) the same comparison pins
    /// the sampling's order down against an explicit loop: the draw from the previous
    /// step's dropped output, then the step.
    #[test]
    fn deferred_output_dropout_equals_dropping_each_step() {
        for ss_prob in [0.0, 0.9] {
            deferred_output_dropout_equals_dropping_each_step_at(ss_prob);
        }
    }

    fn deferred_output_dropout_equals_dropping_each_step_at(ss_prob: f64) {
        let c = tiny_config();
        let mut rng = Philox::new(12);
        let (rows, len) = (8, 6);
        let feats = Tensor::randn(&[rows, 4, 6], DType::F64, &mut rng);
        let labels: Vec<usize> = (0..rows * len)
            .map(|i| if i % len == 0 { 0 } else { 1 + (i * 7) % 10 })
            .collect();
        let m = AoaModel::new(c, DType::F64, 13).unwrap();
        let params = m.named_parameters();
        let run = |deferred: bool| {
            for (_, p) in &params {
                p.zero_grad();
            }
            let mut rng = Philox::new(14);
            let mut ctx = Ctx::train(&mut rng);
            let enc = m.encode(&feats, None, None, &mut ctx, None).unwrap();
            let lp = if deferred {
                m.forward_xe(&enc, &labels, len, ss_prob, &mut ctx).unwrap()
            } else {
                // Each step's output dropped as it is made, then the logit layer over all;
                // scheduled sampling draws from the previous dropped output.
                let mut state = m.try_init_state(rows).unwrap();
                let mut outs: Vec<Tensor> = Vec::new();
                for i in 0..len - 1 {
                    let column: Vec<usize> = (0..rows).map(|r| labels[r * len + i]).collect();
                    let it = if i >= 1 && ss_prob > 0.0 {
                        let prev = crate::autograd::no_grad(|| m.logprobs(outs.last().unwrap()));
                        let rng = &mut *ctx.rng;
                        Rows::new(&prev.unwrap())
                            .unwrap()
                            .draw_or_keep(&column, |_| {
                                (rng.next_f64() < ss_prob).then(|| rng.next_f64())
                            })
                            .unwrap()
                    } else {
                        Ids::from(column)
                    };
                    let out = m
                        .step_core(&it, &enc, &state, &mut ctx, OutputDropout::Apply)
                        .unwrap();
                    assert!(out.output_draw.is_none());
                    outs.push(out.output.unsqueeze(1).unwrap());
                    state = out.state;
                }
                let refs: Vec<&Tensor> = outs.iter().collect();
                m.logprobs(&Tensor::concat(&refs, 1).unwrap()).unwrap()
            };
            let weights = Tensor::randn(lp.shape(), DType::F64, &mut Philox::new(15));
            lp.mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let grads: Vec<Vec<f64>> = params
                .iter()
                .map(|(_, p)| p.grad().map_or(Vec::new(), |g| g.to_vec_f64()))
                .collect();
            let after = ctx.rng.state();
            (lp.to_vec_f64(), grads, after)
        };
        let (deferred, each) = (run(true), run(false));
        assert_eq!(deferred.0, each.0, "ss {ss_prob}: log-probabilities");
        assert_eq!(deferred.1, each.1, "ss {ss_prob}: gradients");
        assert_eq!(
            deferred.2, each.2,
            "ss {ss_prob}: generator state after the pass"
        );
        assert!(deferred.1.iter().any(|g| g.iter().any(|&v| v != 0.0)));
    }

    #[test]
    fn reference_parameter_counts() {
        // AOANET.md 1.11: 85,562,640 parameters for V = 9487 and 87,369,858 for V = 10369.
        // Build in f32 without allocating twice: count from the configuration's modules.
        for (v, want) in [(9487, 85_562_640), (10369, 87_369_858)] {
            let m = AoaModel::new(AoaConfig::reference(v), DType::F32, 0).unwrap();
            assert_eq!(m.num_parameters(), want, "V = {v}");
        }
    }
}
