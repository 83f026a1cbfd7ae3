//! Perplexity of decoded or reference captions from the model's per-token log-probabilities.
//!
//! Perplexity is `exp(−Σ log p / N)` over the scored tokens. Which tokens count is the caller's
//! choice; the convention of the XE and SCST losses (AOANET.md §2.3, §3.2) is every token up to
//! and including the first EOS, which [`scored_len`] gives.

/// Number of tokens up to and including the first EOS (0), or all if there is none: the mask of
/// the reference's `RewardCriterion` / `LanguageModelCriterion`.
pub fn scored_len(seq: &[u32]) -> usize {
    seq.iter()
        .position(|&t| t == 0)
        .map_or(seq.len(), |i| i + 1)
}

/// Accumulates natural-log probabilities of tokens over captions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Perplexity {
    /// Σ log p over the tokens added.
    pub sum_logprob: f64,
    /// Tokens added.
    pub tokens: u64,
}

impl Perplexity {
    /// Nothing added yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the log-probabilities of one caption's scored tokens.
    pub fn add(&mut self, logprobs: &[f32]) {
        self.sum_logprob += logprobs.iter().map(|&x| f64::from(x)).sum::<f64>();
        self.tokens += logprobs.len() as u64;
    }

    /// Adds a caption scored elsewhere: the sum of its log-probabilities over `tokens` tokens.
    pub fn add_sum(&mut self, sum_logprob: f64, tokens: u64) {
        self.sum_logprob += sum_logprob;
        self.tokens += tokens;
    }

    /// Mean negative log-likelihood per token (nats); NaN before any token.
    pub fn mean_nll(&self) -> f64 {
        -self.sum_logprob / self.tokens as f64
    }

    /// `exp(mean_nll)`; NaN before any token.
    pub fn value(&self) -> f64 {
        self.mean_nll().exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_model_has_the_vocabulary_size_as_perplexity() {
        let mut p = Perplexity::new();
        let lp = (1.0f32 / 8.0).ln();
        p.add(&[lp, lp, lp]);
        p.add_sum(f64::from(lp), 1);
        assert!((p.value() - 8.0).abs() < 1e-5, "{}", p.value());
        assert!(Perplexity::new().value().is_nan());
        assert_eq!(scored_len(&[4, 5, 0, 0]), 3);
        assert_eq!(scored_len(&[4, 5]), 2);
    }
}
