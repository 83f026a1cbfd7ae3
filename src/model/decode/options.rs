//! The decoding options: the reference's evaluation options (`opts.add_eval_options`,
//! AOANET.md 4.1-4.3) as a plain struct, and the helpers they need (length penalty, bad
//! endings).

use crate::{Error, Result};

/// How the non-beam path picks the next word (`sample_method`, `CaptionModel.sample_next_word`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SampleMethod {
    /// The most likely word (ties: the lowest id).
    Greedy,
    /// A draw from `softmax(logprobs / temperature)`.
    Sample,
    /// A draw from the `k` most likely words (`topK`, e.g. `top5`).
    TopK(usize),
    /// Nucleus sampling: a draw from the smallest set of most likely words whose
    /// probability reaches `p` (`top0.p`, e.g. `top0.9`).
    TopP(f64),
}

impl SampleMethod {
    /// Parses the reference's option string: `greedy`, `sample`, `topK` with an integer K ≥ 1,
    /// or `top0.p` with 0 < p < 1.
    pub fn parse(s: &str) -> Result<SampleMethod> {
        match s {
            "greedy" => return Ok(SampleMethod::Greedy),
            "sample" => return Ok(SampleMethod::Sample),
            _ => {}
        }
        let bad = || {
            Error::invalid(format!(
                "sample_method {s:?}: expected greedy, sample, topK (K a whole number ≥ 1) or \
                 top0.p (0 < p < 1)"
            ))
        };
        let num: f64 = s
            .strip_prefix("top")
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        // The reference: `0 < top_num < 1` is nucleus, anything else `int(top_num)` top-k.
        if num > 0.0 && num < 1.0 {
            Ok(SampleMethod::TopP(num))
        } else if num >= 1.0 && num.fract() == 0.0 && num < 1e9 {
            Ok(SampleMethod::TopK(num as usize))
        } else {
            Err(bad())
        }
    }

    /// The reference's option string.
    pub fn name(&self) -> String {
        match self {
            SampleMethod::Greedy => "greedy".into(),
            SampleMethod::Sample => "sample".into(),
            SampleMethod::TopK(k) => format!("top{k}"),
            SampleMethod::TopP(p) => format!("top{p}"),
        }
    }
}

/// Re-ranking of finished beams by length (`length_penalty`, `misc/utils.py:176-200`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LengthPenalty {
    /// `''`: the score is the summed log-probability.
    None,
    /// `wu_α`: `score / ((5 + len)^α / 6^α)` (Wu et al. 2016).
    Wu(f64),
    /// `avg_α`: `score / len` (α is ignored, as in the reference).
    Avg(f64),
}

impl LengthPenalty {
    /// Parses `''`, `wu_α` or `avg_α`.
    pub fn parse(s: &str) -> Result<LengthPenalty> {
        if s.is_empty() {
            return Ok(LengthPenalty::None);
        }
        let bad = || {
            Error::invalid(format!(
                "length_penalty {s:?}: expected '' (none), wu_α or avg_α with a number α"
            ))
        };
        let (kind, alpha) = s.split_once('_').ok_or_else(bad)?;
        let alpha: f64 = alpha.parse().map_err(|_| bad())?;
        if !alpha.is_finite() {
            return Err(bad());
        }
        match kind {
            "wu" => Ok(LengthPenalty::Wu(alpha)),
            "avg" => Ok(LengthPenalty::Avg(alpha)),
            _ => Err(bad()),
        }
    }

    /// The score of a finished beam of `len` tokens (its EOS included) with summed
    /// log-probability `logprob`, computed in f64 as the reference's Python does.
    pub fn apply(&self, len: usize, logprob: f64) -> f64 {
        match *self {
            LengthPenalty::None => logprob,
            LengthPenalty::Wu(alpha) => {
                let modifier = (5.0 + len as f64).powf(alpha) / 6f64.powf(alpha);
                logprob / modifier
            }
            LengthPenalty::Avg(_) => logprob / len as f64,
        }
    }
}

/// The words a caption should not end with (`AttModel.bad_endings`, AttModel.py:29-30).
pub const BAD_ENDINGS: [&str; 17] = [
    "a", "an", "the", "in", "for", "at", "of", "with", "before", "after", "on", "upon", "near",
    "to", "is", "are", "am",
];

/// The ids of the [`BAD_ENDINGS`] words in a vocabulary given as `(id, word)` pairs, sorted.
pub fn bad_ending_ids<'a>(vocab: impl IntoIterator<Item = (usize, &'a str)>) -> Vec<usize> {
    let mut ids: Vec<usize> = vocab
        .into_iter()
        .filter(|(_, w)| BAD_ENDINGS.contains(w))
        .map(|(id, _)| id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every decoding option; [`Default`] is the reference `_sample`'s defaults (greedy, beam 1,
/// no constraints, 20 tokens).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// How the non-beam path picks words.
    pub sample_method: SampleMethod,
    /// Divides the log-probabilities before sampling; in beam search, the temperature of the
    /// `log_softmax(logprobs / T)` the reference applies after every step.
    pub temperature: f64,
    /// Beams per image; 1 selects the non-beam path.
    pub beam_size: usize,
    /// Diverse beam search: the beams are split into this many groups (must divide
    /// `beam_size`).
    pub group_size: usize,
    /// The penalty a group pays for a word an earlier group chose at the same local time.
    pub diversity_lambda: f64,
    /// Forbid repeating the previous word.
    pub decoding_constraint: bool,
    /// Forbid EOS right after a word in `bad_endings`.
    pub remove_bad_endings: bool,
    /// The word ids [`bad_ending_ids`] finds in the vocabulary (used when
    /// `remove_bad_endings` is on).
    pub bad_endings: Vec<usize>,
    /// Penalise repeated trigrams (non-beam path only, as in the reference).
    pub block_trigrams: bool,
    /// How finished beams are ranked.
    pub length_penalty: LengthPenalty,
    /// The longest caption, in words (20).
    pub max_length: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            sample_method: SampleMethod::Greedy,
            temperature: 1.0,
            beam_size: 1,
            group_size: 1,
            diversity_lambda: 0.5,
            decoding_constraint: false,
            remove_bad_endings: false,
            bad_endings: Vec::new(),
            block_trigrams: false,
            length_penalty: LengthPenalty::None,
            max_length: 20,
        }
    }
}

impl DecodeOptions {
    /// Greedy decoding of at most `max_length` words.
    pub fn greedy(max_length: usize) -> Self {
        DecodeOptions {
            max_length,
            ..Default::default()
        }
    }

    /// Beam search with `beam_size` beams, otherwise the defaults.
    pub fn beam(beam_size: usize, max_length: usize) -> Self {
        DecodeOptions {
            beam_size,
            max_length,
            ..Default::default()
        }
    }

    /// Checks the options against a model with `classes` = V + 1 output classes.
    pub fn validate(&self, classes: usize) -> Result<()> {
        let fail = |m: String| Err(Error::invalid(format!("decoding options: {m}")));
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return fail(format!(
                "temperature {} must be a finite number > 0",
                self.temperature
            ));
        }
        if self.max_length == 0 {
            return fail("max_length must be at least 1".into());
        }
        if self.beam_size == 0 || self.beam_size > classes {
            return fail(format!(
                "beam_size {} must be between 1 and the number of classes ({classes})",
                self.beam_size
            ));
        }
        if self.group_size == 0 || !self.beam_size.is_multiple_of(self.group_size) {
            return fail(format!(
                "group_size {} must be ≥ 1 and divide beam_size {}",
                self.group_size, self.beam_size
            ));
        }
        if !self.diversity_lambda.is_finite() {
            return fail("diversity_lambda must be finite".into());
        }
        match self.sample_method {
            SampleMethod::TopK(k) if k == 0 || k > classes => {
                return fail(format!("top-k {k} must be between 1 and {classes}"));
            }
            SampleMethod::TopP(p) if !(p > 0.0 && p < 1.0) => {
                return fail(format!("top-p {p} must be in (0, 1)"));
            }
            _ => {}
        }
        if let Some(&w) = self.bad_endings.iter().find(|&&w| w >= classes) {
            return fail(format!(
                "bad-ending word id {w} is outside the vocabulary ({classes} classes)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_methods_parse_as_the_reference() {
        assert_eq!(SampleMethod::parse("greedy").unwrap(), SampleMethod::Greedy);
        assert_eq!(SampleMethod::parse("sample").unwrap(), SampleMethod::Sample);
        assert_eq!(SampleMethod::parse("top5").unwrap(), SampleMethod::TopK(5));
        assert_eq!(
            SampleMethod::parse("top0.9").unwrap(),
            SampleMethod::TopP(0.9)
        );
        for bad in ["top", "top0", "top2.5", "topx", "gumbel", "top-3"] {
            let e = SampleMethod::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        for m in [SampleMethod::TopK(7), SampleMethod::TopP(0.25)] {
            assert_eq!(SampleMethod::parse(&m.name()).unwrap(), m);
        }
    }

    #[test]
    fn length_penalties() {
        assert_eq!(LengthPenalty::parse("").unwrap(), LengthPenalty::None);
        assert_eq!(
            LengthPenalty::parse("wu_0.7").unwrap(),
            LengthPenalty::Wu(0.7)
        );
        assert_eq!(
            LengthPenalty::parse("avg_1").unwrap(),
            LengthPenalty::Avg(1.0)
        );
        assert!(LengthPenalty::parse("wu").is_err());
        assert!(LengthPenalty::parse("max_2").is_err());
        assert_eq!(LengthPenalty::None.apply(4, -2.0), -2.0);
        assert_eq!(LengthPenalty::Avg(3.0).apply(4, -2.0), -0.5);
        // Length 1 is the reference point of Wu's penalty: (5 + 1)^α / 6^α = 1.
        assert_eq!(LengthPenalty::Wu(0.7).apply(1, -2.0), -2.0);
        let w = LengthPenalty::Wu(1.0).apply(7, -2.0);
        assert!((w - (-2.0 / 2.0)).abs() < 1e-15, "{w}");
    }

    #[test]
    fn bad_endings_are_found_by_word() {
        let vocab = [(1, "a"), (2, "dog"), (3, "the"), (4, "am"), (5, "UNK")];
        assert_eq!(bad_ending_ids(vocab), vec![1, 3, 4]);
    }

    #[test]
    fn validation_names_the_problem() {
        let ok = DecodeOptions::beam(3, 20);
        ok.validate(21).unwrap();
        let e = DecodeOptions::beam(22, 20).validate(21).unwrap_err();
        assert!(e.to_string().contains("beam_size 22"), "{e}");
        let mut o = DecodeOptions::beam(3, 20);
        o.group_size = 2;
        assert!(
            o.validate(21)
                .unwrap_err()
                .to_string()
                .contains("group_size")
        );
        let o = DecodeOptions {
            temperature: 0.0,
            ..Default::default()
        };
        assert!(o.validate(21).is_err());
        let o = DecodeOptions {
            bad_endings: vec![30],
            ..Default::default()
        };
        assert!(o.validate(21).unwrap_err().to_string().contains("30"));
    }
}
