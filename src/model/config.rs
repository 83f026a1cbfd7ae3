//! The model's configuration: a plain struct with the reference's defaults (AoANet's
//! `train.sh` over `opts.py`, AOANET.md 1.1), its ablation switches, and presets.

use crate::json::{self, Value};
use crate::{Error, Result};

/// What turns the attended feature into the context vector (`decoder_type`, AOANET.md 1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderType {
    /// `Linear(2D → 2D) + GLU` over `[att ; h]`: Attention on Attention (the paper's model).
    Aoa,
    /// An `LSTMCell` over `[att ; h]` whose state is `(ctx, c[1])`.
    Lstm,
    /// `Linear(2D → D) + ReLU` (the "base" ablation).
    Base,
}

impl DecoderType {
    /// The reference's option string.
    pub fn name(self) -> &'static str {
        match self {
            DecoderType::Aoa => "AoA",
            DecoderType::Lstm => "LSTM",
            DecoderType::Base => "base",
        }
    }

    /// Parses the reference's option string (`AoA`, `LSTM`, anything else is base).
    pub fn parse(s: &str) -> DecoderType {
        match s {
            "AoA" => DecoderType::Aoa,
            "LSTM" => DecoderType::Lstm,
            _ => DecoderType::Base,
        }
    }
}

/// Every size and switch of the AoA model.
#[derive(Clone, Debug, PartialEq)]
pub struct AoaConfig {
    /// Number of words V; the embedding and output layer have V + 1 rows (0 is BOS/EOS/pad).
    pub vocab_size: usize,
    /// Hidden width D (`rnn_size`).
    pub rnn_size: usize,
    /// Word embedding width (`input_encoding_size`).
    pub input_encoding_size: usize,
    /// Region feature width (2048 for bottom-up features).
    pub att_feat_size: usize,
    /// Global feature width (only used when `mean_feats` is off).
    pub fc_feat_size: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Width multiplier of the attended space (`multi_head_scale`).
    pub multi_head_scale: usize,
    /// Refine the region features with self-attention layers.
    pub refine: bool,
    /// AoA in the refiner (otherwise multi-head attention with an output Linear).
    pub refine_aoa: bool,
    /// A feed-forward sublayer in each refiner layer.
    pub use_ff: bool,
    /// Inner width of the feed-forward sublayer (fixed at 2048 in the reference).
    pub d_ff: usize,
    /// Refiner layers (6).
    pub refiner_layers: usize,
    /// The decoder's context cell.
    pub decoder_type: DecoderType,
    /// Dropout on the previous context vector in the LSTM input.
    pub ctx_drop: bool,
    /// Use the masked mean of the refined features as the global feature (else `fc_embed`).
    pub mean_feats: bool,
    /// Dropout on the AoA input.
    pub dropout_aoa: f64,
    /// Dropout of the language model (`drop_prob_lm`): embeddings, att_embed, ctx, output.
    pub drop_prob_lm: f64,
    /// Dropout on attention probabilities and refiner residual branches (0.1).
    pub attention_dropout: f64,
    /// Longest decoded caption (20).
    pub max_length: usize,
    /// Longest training caption (16).
    pub seq_length: usize,
}

impl Default for AoaConfig {
    /// AoANet as its `train.sh` trains it, with the vocabulary of threshold 5 (9487 words).
    fn default() -> Self {
        AoaConfig {
            vocab_size: 9487,
            rnn_size: 1024,
            input_encoding_size: 1024,
            att_feat_size: 2048,
            fc_feat_size: 2048,
            num_heads: 8,
            multi_head_scale: 1,
            refine: true,
            refine_aoa: true,
            use_ff: false,
            d_ff: 2048,
            refiner_layers: 6,
            decoder_type: DecoderType::Aoa,
            ctx_drop: true,
            mean_feats: true,
            dropout_aoa: 0.3,
            drop_prob_lm: 0.5,
            attention_dropout: 0.1,
            max_length: 20,
            seq_length: 16,
        }
    }
}

impl AoaConfig {
    /// The reference configuration for a vocabulary of `vocab_size` words.
    pub fn reference(vocab_size: usize) -> Self {
        AoaConfig {
            vocab_size,
            ..AoaConfig::default()
        }
    }

    /// A small model for tests and the demo: every structural switch as the reference, widths
    /// and depth reduced.
    pub fn small(vocab_size: usize, att_feat_size: usize) -> Self {
        AoaConfig {
            vocab_size,
            rnn_size: 128,
            input_encoding_size: 128,
            att_feat_size,
            fc_feat_size: att_feat_size,
            num_heads: 4,
            refiner_layers: 2,
            d_ff: 256,
            ..AoaConfig::default()
        }
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let inner = self.rnn_size * self.multi_head_scale;
        let bad = |m: String| Err(Error::invalid(format!("model configuration: {m}")));
        if self.vocab_size == 0 || self.rnn_size == 0 || self.att_feat_size == 0 {
            return bad("vocab_size, rnn_size and att_feat_size must be positive".into());
        }
        if self.num_heads == 0 || !inner.is_multiple_of(self.num_heads) {
            return bad(format!(
                "rnn_size·multi_head_scale = {inner} is not divisible by num_heads = {}",
                self.num_heads
            ));
        }
        for (name, p) in [
            ("dropout_aoa", self.dropout_aoa),
            ("drop_prob_lm", self.drop_prob_lm),
            ("attention_dropout", self.attention_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} = {p} must be in [0, 1)"));
            }
        }
        if self.max_length == 0 {
            return bad("max_length must be positive".into());
        }
        Ok(())
    }

    /// Sets one option by the reference's name (`refine`, `decoder_type`, `rnn_size`, ...) from
    /// a JSON value: how fixture overrides and config files are applied.
    pub fn set(&mut self, key: &str, value: &Value) -> Result<()> {
        let err = || {
            Error::invalid(format!(
                "model option {key}: unusable value {}",
                value.to_json()
            ))
        };
        let num = || value.as_f64().ok_or_else(err);
        let int = || value.as_u64().map(|v| v as usize).ok_or_else(err);
        let flag = || {
            value
                .as_bool()
                .or_else(|| value.as_u64().map(|v| v != 0))
                .ok_or_else(err)
        };
        match key {
            "vocab_size" => self.vocab_size = int()?,
            "rnn_size" => self.rnn_size = int()?,
            "input_encoding_size" => self.input_encoding_size = int()?,
            "att_feat_size" => self.att_feat_size = int()?,
            "fc_feat_size" => self.fc_feat_size = int()?,
            "num_heads" => self.num_heads = int()?,
            "multi_head_scale" => self.multi_head_scale = int()?,
            "refine" => self.refine = flag()?,
            "refine_aoa" => self.refine_aoa = flag()?,
            "use_ff" => self.use_ff = flag()?,
            "d_ff" => self.d_ff = int()?,
            "refiner_layers" => self.refiner_layers = int()?,
            "decoder_type" => {
                self.decoder_type = DecoderType::parse(value.as_str().ok_or_else(err)?)
            }
            "ctx_drop" => self.ctx_drop = flag()?,
            "mean_feats" => self.mean_feats = flag()?,
            "dropout_aoa" => self.dropout_aoa = num()?,
            "drop_prob_lm" => self.drop_prob_lm = num()?,
            "attention_dropout" => self.attention_dropout = num()?,
            "max_length" => self.max_length = int()?,
            "seq_length" => self.seq_length = int()?,
            _ => return Err(Error::invalid(format!("unknown model option {key}"))),
        }
        Ok(())
    }

    /// The configuration as JSON, under the reference's option names.
    pub fn to_json(&self) -> Value {
        json::object([
            ("vocab_size", Value::from(self.vocab_size)),
            ("rnn_size", self.rnn_size.into()),
            ("input_encoding_size", self.input_encoding_size.into()),
            ("att_feat_size", self.att_feat_size.into()),
            ("fc_feat_size", self.fc_feat_size.into()),
            ("num_heads", self.num_heads.into()),
            ("multi_head_scale", self.multi_head_scale.into()),
            ("refine", self.refine.into()),
            ("refine_aoa", self.refine_aoa.into()),
            ("use_ff", self.use_ff.into()),
            ("d_ff", self.d_ff.into()),
            ("refiner_layers", self.refiner_layers.into()),
            ("decoder_type", self.decoder_type.name().into()),
            ("ctx_drop", self.ctx_drop.into()),
            ("mean_feats", self.mean_feats.into()),
            ("dropout_aoa", self.dropout_aoa.into()),
            ("drop_prob_lm", self.drop_prob_lm.into()),
            ("attention_dropout", self.attention_dropout.into()),
            ("max_length", self.max_length.into()),
            ("seq_length", self.seq_length.into()),
        ])
    }

    /// Reads a configuration written by [`AoaConfig::to_json`] (missing keys keep defaults).
    pub fn from_json(v: &Value) -> Result<Self> {
        let mut c = AoaConfig::default();
        for (k, val) in v
            .as_object()
            .ok_or_else(|| Error::invalid("model configuration: expected a JSON object"))?
        {
            c.set(k, val)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// The options whose values differ between two configurations and change parameter
    /// shapes, by name: a checkpoint cannot be resumed across them.
    pub fn shape_differences(&self, other: &AoaConfig) -> Vec<String> {
        let (a, b) = (self.to_json(), other.to_json());
        let shape_keys = [
            "vocab_size",
            "rnn_size",
            "input_encoding_size",
            "att_feat_size",
            "fc_feat_size",
            "num_heads",
            "multi_head_scale",
            "refine",
            "refine_aoa",
            "use_ff",
            "d_ff",
            "refiner_layers",
            "decoder_type",
            "mean_feats",
        ];
        shape_keys
            .iter()
            .filter(|k| a.get(k) != b.get(k))
            .map(|k| {
                format!(
                    "{k} ({} vs {})",
                    a.get(k).map(|v| v.to_json()).unwrap_or_default(),
                    b.get(k).map(|v| v.to_json()).unwrap_or_default()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_overrides() {
        let c = AoaConfig::small(20, 24);
        assert_eq!(AoaConfig::from_json(&c.to_json()).unwrap(), c);
        let mut d = c.clone();
        d.set("decoder_type", &Value::from("LSTM")).unwrap();
        d.set("refine", &Value::from(0usize)).unwrap();
        assert_eq!(d.decoder_type, DecoderType::Lstm);
        assert!(!d.refine);
        assert!(d.set("nonsense", &Value::Null).is_err());
        d.rnn_size = 256;
        let diff = c.shape_differences(&d);
        assert!(
            diff.iter().any(|s| s.starts_with("rnn_size (128 vs 256)")),
            "{diff:?}"
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = AoaConfig::small(20, 24);
        c.num_heads = 3;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("num_heads = 3")
        );
    }
}
