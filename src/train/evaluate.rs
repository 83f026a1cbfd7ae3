//! Decoding a split and scoring it, as the reference's `eval_split` with `language_eval`:
//! captions decoded greedily (or with beam search), scored against the raw references with the
//! toolkit's metrics (CIDEr-D with the evaluated set's own frequencies), written as a COCO
//! results file. Also the XE stage's validation loss (label-smoothed, as `train.py` prints).

use super::batch::BatchTensors;
use super::decoding::{Caption, decode_images};
use super::loss::label_smoothing_loss_from_logits;
use super::scoring::Scoring;
use crate::autograd::no_grad;
use crate::data::{Dataset, Loader, LoaderConfig, Mode, Split, Vocab};
use crate::io::write_atomic;
use crate::json::{self, Value};
use crate::metrics::{EvalSet, Evaluation, ImageKey};
use crate::model::AoaModel;
use crate::nn::Ctx;
use crate::rng::Philox;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// How to decode and what to compute.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// 1 = greedy; more = beam search.
    pub beam_size: usize,
    /// Longest caption, in words.
    pub max_length: usize,
    /// Images decoded at once.
    pub batch_size: usize,
    /// Only the first this many images of the split (`None` = all).
    pub max_images: Option<usize>,
    /// Keep each word's attention over the regions.
    pub with_attention: bool,
    /// Also compute the teacher-forced loss with this label smoothing (the data's vocabulary
    /// must be the model's).
    pub loss_smoothing: Option<f64>,
    /// Caption rows per image for the loss (the reference: 5).
    pub seq_per_img: usize,
}

impl EvalOptions {
    /// Greedy decoding of every image, as validation during training.
    pub fn greedy(max_length: usize) -> Self {
        EvalOptions {
            beam_size: 1,
            max_length,
            batch_size: 50,
            max_images: None,
            with_attention: false,
            loss_smoothing: None,
            seq_per_img: 5,
        }
    }
}

/// A decoded and scored split.
pub struct SplitEval {
    /// The images, in split order.
    pub image_ids: Vec<u64>,
    /// Their positions in the dataset's captions.
    pub positions: Vec<usize>,
    /// Each image's decoded caption.
    pub captions: Vec<Caption>,
    /// The captions as text.
    pub texts: Vec<String>,
    /// The scores (corpus and per image).
    pub evaluation: Evaluation,
    /// The mean validation loss over batches, if asked for.
    pub loss: Option<f64>,
}

impl SplitEval {
    /// The captions in the COCO results format: `[{"image_id": id, "caption": text}]`.
    pub fn results_json(&self) -> Value {
        Value::Array(
            self.image_ids
                .iter()
                .zip(&self.texts)
                .map(|(&id, c)| {
                    json::object([
                        ("image_id", Value::from(id as usize)),
                        ("caption", Value::from(c.as_str())),
                    ])
                })
                .collect(),
        )
    }

    /// Writes [`SplitEval::results_json`] to `path` atomically.
    pub fn write_results(&self, path: &Path) -> Result<()> {
        let mut text = self.results_json().to_json_pretty();
        text.push('\n');
        write_text(path, &text)
    }

    /// The corpus scores under the toolkit's keys (only those computed), plus `loss` if any.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = crate::metrics::KEYS
            .iter()
            .filter_map(|k| self.evaluation.get(k).map(|v| (k.to_string(), v)))
            .collect();
        if let Some(l) = self.loss {
            out.push(("loss".into(), l));
        }
        out
    }
}

/// Writes `text` to `path` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |w| {
        w.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
    })
}

/// Decodes `split` of `data` with `model` (whose words are `vocab`) and scores it with
/// `scoring`.
pub fn evaluate_split(
    model: &AoaModel,
    vocab: &Vocab,
    data: &Arc<Dataset>,
    split: Split,
    opts: &EvalOptions,
    scoring: &Scoring,
) -> Result<SplitEval> {
    let total = data.split_len(split);
    let wanted = opts.max_images.map_or(total, |m| m.min(total));
    if wanted == 0 {
        return Err(Error::invalid(format!(
            "the {} split has no images to evaluate",
            split.name()
        )));
    }
    if opts.loss_smoothing.is_some() && data.vocab != *vocab {
        return Err(Error::invalid(
            "the validation loss needs the data's vocabulary to be the model's",
        ));
    }
    let mut loader = Loader::new(
        data.clone(),
        LoaderConfig {
            split,
            batch_size: opts.batch_size.min(wanted),
            seq_per_img: opts.seq_per_img,
            seq_length: model.config().seq_length,
            mode: Mode::Eval,
            prefetch: 1,
            ..LoaderConfig::default()
        },
    )?;
    let mut image_ids = Vec::with_capacity(wanted);
    let mut positions = Vec::with_capacity(wanted);
    let mut captions = Vec::with_capacity(wanted);
    let mut texts = Vec::with_capacity(wanted);
    let (mut loss_sum, mut loss_batches) = (0.0, 0usize);
    while image_ids.len() < wanted {
        let Some(batch) = loader.next_batch()? else {
            break;
        };
        let t = BatchTensors::new(&batch, model.dtype(), model.device())?;
        let caps = decode_images(
            model,
            &t.att_feats,
            t.att_masks.as_ref(),
            opts.beam_size,
            opts.max_length,
            opts.with_attention,
        )?;
        if let Some(smoothing) = opts.loss_smoothing {
            loss_sum += validation_loss(model, &batch, &t, smoothing)?;
            loss_batches += 1;
        }
        let keep = (wanted - image_ids.len()).min(batch.images());
        for (i, c) in caps.into_iter().enumerate().take(keep) {
            let ids: Vec<u32> = c.ids.iter().map(|&w| w as u32).collect();
            texts.push(vocab.decode(&ids));
            captions.push(c);
            image_ids.push(batch.image_ids[i]);
            positions.push(batch.positions[i]);
        }
    }
    let set = EvalSet {
        keys: image_ids
            .iter()
            .map(|&id| ImageKey::Id(id as i64))
            .collect(),
        candidates: texts.clone(),
        references: positions
            .iter()
            .map(|&p| {
                let img = data.captions.image(p);
                (0..img.len()).map(|j| img.raw(j).to_string()).collect()
            })
            .collect(),
    };
    Ok(SplitEval {
        evaluation: scoring.evaluator().evaluate(&set)?,
        loss: (loss_batches > 0).then(|| loss_sum / loss_batches as f64),
        image_ids,
        positions,
        captions,
        texts,
    })
}

/// The teacher-forced loss of one batch in evaluation mode (the reference's val loss).
fn validation_loss(
    model: &AoaModel,
    batch: &crate::data::Batch,
    t: &BatchTensors,
    smoothing: f64,
) -> Result<f64> {
    let mut rng = Philox::new(0);
    no_grad(|| {
        let mut ctx = Ctx::eval(&mut rng);
        let enc = model
            .encode(&t.att_feats, t.att_masks.as_ref(), None, &mut ctx, None)?
            .expand(batch.seq_per_img)?;
        // As the trainer computes it (fused with the log_softmax on a GPU).
        let logits = model.forward_xe_logits(&enc, &t.labels, t.width, 0.0, &mut ctx)?;
        label_smoothing_loss_from_logits(&logits, &t.targets, &t.mask, smoothing)?.item()
    })
}
