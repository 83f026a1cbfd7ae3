//! The reference's three training losses, each one fused op with a hand-written backward
//! (AOANET.md 2.3 and 3.2):
//!
//! - [`lm_loss`]: `LanguageModelCriterion`, the masked token-mean cross-entropy
//!   `L = −Σ_{r,t} lp[r,t,y_rt]·m_rt / Σ m_rt`;
//! - [`label_smoothing_loss`]: `LabelSmoothing(0.2)`, the masked token-mean of the KL
//!   divergence from the smoothed target `q` (`q_y = 1 − ε`, `q_k = ε/(K−1)` for every other
//!   class, index 0 included) to the model: `Σ_k q_k (log q_k − lp_k)`, the value the reference
//!   prints (cross-entropy minus the constant entropy `H(q)`);
//! - [`reward_loss`]: `RewardCriterion`, `L = −Σ_{i,t} logp_it·r_it·mask_it / Σ mask` with
//!   `mask_t = 1` for `t = 0` or `seq[t−1] > 0` ([`reward_mask`]).
//!
//! Inputs are log-probabilities `lp [R, T, K]` (any rank ≥ 2: every axis but the last counts
//! rows), targets as a host slice with one class per row, and a float mask shaped like the
//! rows. The reference's targets and mask are `labels[:, 1:]` and `masks[:, 1:]`.
//!
//! Forward passes read `lp` once and make no `[rows, K]` temporary: a row's KL is
//! `C − ε'·Σ_k lp_k − (q_y − ε')·lp_y` with `ε' = ε/(K−1)` and the constant
//! `C = Σ_k q_k log q_k = (K−1)·ε'·log ε' + q_y·log q_y` (PyTorch's `xlogy`, so `0·log 0 = 0`),
//! accumulated in `f64`. Rows with mask 0 are skipped (the reference multiplies their finite
//! loss by 0).
//!
//! Backward: `L` is linear in `lp`, so `∂L/∂lp[r,k] = −g · m_r / Σm · q_k` (for the plain
//! cross-entropy `q` is one-hot), and for the reward loss `∂L/∂logp_it = −g · r_it · mask_it /
//! Σ mask`. The gradient is the only `[rows, K]` tensor made.
//!
//! Log-probabilities on a CUDA device take the same formulas in device kernels
//! (`crate::cuda::ops::smoothed_kl_loss`, `reward_loss`); targets and masks stay host values.

use crate::tensor::{Float, Tensor, numel};
use crate::{Error, Result, with_float};

// ---------------------------------------------------------------------------------------------
// Cross-entropy and label smoothing
// ---------------------------------------------------------------------------------------------

/// The reference's `LanguageModelCriterion`: masked token-mean cross-entropy of `logprobs`
/// (`[.., K]`) against `targets` (one class per row), weighted by `mask` (shaped like the rows).
/// Returns a 0-d tensor in `logprobs`' dtype.
pub fn lm_loss(logprobs: &Tensor, targets: &[usize], mask: &Tensor) -> Result<Tensor> {
    smoothed_kl("lm_loss", logprobs, targets, mask, 0.0)
}

/// The reference's `LabelSmoothing(smoothing)`: the masked token-mean KL divergence from the
/// smoothed targets to `logprobs` (AoANet trains with `smoothing` 0.2). With `smoothing` 0 it
/// equals [`lm_loss`].
pub fn label_smoothing_loss(
    logprobs: &Tensor,
    targets: &[usize],
    mask: &Tensor,
    smoothing: f64,
) -> Result<Tensor> {
    smoothed_kl("label_smoothing", logprobs, targets, mask, smoothing)
}

/// The smoothed target distribution of one row: `q_y` at the target, `q_other` elsewhere,
/// and the constant `Σ_k q_k log q_k`.
#[derive(Clone, Copy)]
struct Smoothed {
    q_y: f64,
    q_other: f64,
    entropy_term: f64,
}

impl Smoothed {
    fn new(smoothing: f64, classes: usize) -> Smoothed {
        // As the reference computes them: confidence = 1 − ε, the rest = ε / (size − 1).
        let q_y = 1.0 - smoothing;
        let q_other = if smoothing == 0.0 {
            0.0
        } else {
            smoothing / (classes - 1) as f64
        };
        let xlogx = |x: f64| if x == 0.0 { 0.0 } else { x * x.ln() };
        Smoothed {
            q_y,
            q_other,
            entropy_term: (classes - 1) as f64 * xlogx(q_other) + xlogx(q_y),
        }
    }

    /// `Σ_k q_k (log q_k − lp_k)` of one row.
    fn row_loss<T: Float>(&self, row: &[T], y: usize) -> f64 {
        let lp_y = row[y].to_f64();
        if self.q_other == 0.0 {
            // Only the target term: no read of the other classes (and no 0·(−∞) = NaN).
            return self.entropy_term - self.q_y * lp_y;
        }
        let sum: f64 = row.iter().map(|v| v.to_f64()).sum();
        self.entropy_term - self.q_other * sum - (self.q_y - self.q_other) * lp_y
    }
}

/// The mask values (any float dtype) as `f64`, checked against the rows of `logprobs`.
fn mask_values(op: &'static str, logprobs: &Tensor, mask: &Tensor) -> Result<Vec<f64>> {
    let rows_shape = &logprobs.shape()[..logprobs.rank() - 1];
    if mask.shape() != rows_shape {
        return Err(Error::shape(
            op,
            &[logprobs.shape(), mask.shape()],
            "a mask shaped like the log-probabilities without their last axis",
        ));
    }
    let m = mask.to_vec_f64();
    if let Some(bad) = m.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(Error::invalid(format!(
            "{op}: mask value {bad} is not a finite non-negative weight"
        )));
    }
    Ok(m)
}

fn check_targets(op: &'static str, targets: &[usize], rows: usize, classes: usize) -> Result<()> {
    if targets.len() != rows {
        return Err(Error::shape(
            op,
            &[&[rows], &[targets.len()]],
            "one target per row",
        ));
    }
    if let Some(p) = targets.iter().position(|&y| y >= classes) {
        return Err(Error::invalid(format!(
            "{op}: target {} at row {p} is out of range for {classes} classes",
            targets[p]
        )));
    }
    Ok(())
}

fn mask_total(op: &'static str, mask: &[f64]) -> Result<f64> {
    let total: f64 = mask.iter().sum();
    if total > 0.0 {
        Ok(total)
    } else {
        // The reference divides 0 by 0 here; a NaN loss helps nobody.
        Err(Error::invalid(format!(
            "{op}: the mask is all zero, so the token mean is undefined"
        )))
    }
}

/// The reference's loss of the model's scores: [`label_smoothing_loss`] of
/// `log_softmax(logits)` over the last axis ([`lm_loss`]'s with `smoothing` 0), for `logits`
/// `[.., K]`. The trainer's cross-entropy stage uses this form: on a CUDA device, f32 logits
/// go through two fused kernels that never form the `[rows, K]` log-probabilities (forward:
/// log-sum-exp and KL per row; backward: `(softmax − q)·w / Σw`); elsewhere it is the
/// composed `log_softmax` then [`label_smoothing_loss`], to the bit.
pub fn label_smoothing_loss_from_logits(
    logits: &Tensor,
    targets: &[usize],
    mask: &Tensor,
    smoothing: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if logits.is_cuda() && logits.dtype() == crate::tensor::DType::F32 {
        const OP: &str = "label_smoothing_from_logits";
        let checked = Checked::new(OP, logits, targets, mask, smoothing)?;
        return crate::cuda::ops::smoothed_kl_loss_from_logits(
            OP,
            logits,
            targets,
            &checked.mask,
            smoothing,
            checked.total,
        );
    }
    let op = if smoothing > 0.0 {
        "label_smoothing"
    } else {
        "lm_loss"
    };
    smoothed_kl(op, &logits.log_softmax()?, targets, mask, smoothing)
}

/// The checked inputs of a smoothed loss over `x [.., classes]`.
struct Checked {
    classes: usize,
    rows: usize,
    /// The mask values.
    mask: Vec<f64>,
    /// Their sum (> 0).
    total: f64,
}

impl Checked {
    fn new(
        op: &'static str,
        x: &Tensor,
        targets: &[usize],
        mask: &Tensor,
        smoothing: f64,
    ) -> Result<Checked> {
        if x.rank() < 2 {
            return Err(Error::shape(
                op,
                &[x.shape()],
                "scores [.., classes] of rank ≥ 2",
            ));
        }
        let classes = x.shape()[x.rank() - 1];
        let rows = numel(&x.shape()[..x.rank() - 1]);
        if !(0.0..1.0).contains(&smoothing) || (smoothing > 0.0 && classes < 2) {
            return Err(Error::invalid(format!(
                "{op}: smoothing {smoothing} must be in [0, 1) (and needs at least 2 classes)"
            )));
        }
        check_targets(op, targets, rows, classes)?;
        let m = mask_values(op, x, mask)?;
        let total = mask_total(op, &m)?;
        Ok(Checked {
            classes,
            rows,
            mask: m,
            total,
        })
    }
}

fn smoothed_kl(
    op: &'static str,
    logprobs: &Tensor,
    targets: &[usize],
    mask: &Tensor,
    smoothing: f64,
) -> Result<Tensor> {
    let Checked {
        classes,
        rows,
        mask: m,
        total,
    } = Checked::new(op, logprobs, targets, mask, smoothing)?;
    let q = Smoothed::new(smoothing, classes);
    #[cfg(feature = "cuda")]
    if logprobs.is_cuda() {
        let q = crate::cuda::ops::SmoothedTargets {
            q_y: q.q_y,
            q_other: q.q_other,
            entropy_term: q.entropy_term,
        };
        return crate::cuda::ops::smoothed_kl_loss(op, logprobs, targets, m, classes, q, total);
    }

    let out = with_float!(logprobs.dtype(), op, T => {
        let loss = logprobs.with_slice::<T, _>(op, |lp| {
            let mut acc = 0.0f64;
            for ((row, &y), &w) in lp.chunks_exact(classes).zip(targets).zip(&m) {
                if w != 0.0 {
                    acc += w * q.row_loss(row, y);
                }
            }
            acc / total
        })?;
        Tensor::from_vec(vec![T::from_f64(loss)], &[])
    })?;

    let (targets, shape, dtype) = (
        targets.to_vec(),
        logprobs.shape().to_vec(),
        logprobs.dtype(),
    );
    Ok(out.record(op, &[logprobs], move |g| {
        let scale = -g.item()? / total;
        let grad = with_float!(dtype, op, T => {
            let mut gx = vec![T::ZERO; rows * classes];
            for ((row, &y), &w) in gx.chunks_exact_mut(classes).zip(&targets).zip(&m) {
                if w == 0.0 {
                    continue;
                }
                if q.q_other != 0.0 {
                    row.fill(T::from_f64(scale * w * q.q_other));
                }
                row[y] = T::from_f64(scale * w * q.q_y);
            }
            Tensor::from_vec(gx, &shape)
        })?;
        Ok(vec![Some(grad)])
    }))
}

// ---------------------------------------------------------------------------------------------
// Self-critical reward
// ---------------------------------------------------------------------------------------------

/// The reference's `RewardCriterion` mask of sampled sequences `seq` (`[rows, steps]`, row-major,
/// 0 = EOS/padding): 1 at step 0 and wherever the previous token is not 0, so each row counts
/// its tokens up to and including the first EOS.
pub fn reward_mask(seq: &[usize], steps: usize) -> Result<Vec<f64>> {
    if steps == 0 || !seq.len().is_multiple_of(steps) {
        return Err(Error::invalid(format!(
            "reward_mask: {} tokens do not make rows of {steps} steps",
            seq.len()
        )));
    }
    Ok(seq
        .chunks_exact(steps)
        .flat_map(|row| (0..steps).map(move |t| if t == 0 || row[t - 1] > 0 { 1.0 } else { 0.0 }))
        .collect())
}

/// The reference's `RewardCriterion`: `−Σ logp·r·mask / Σ mask` over the log-probabilities of
/// the sampled tokens `sample_logprobs [rows, steps]`, the sampled sequences `seq` (same shape,
/// row-major) and the rewards, either one per row (broadcast over the steps, as the reference
/// repeats them) or one per token. Returns a 0-d tensor; gradients flow to `sample_logprobs`
/// only.
pub fn reward_loss(sample_logprobs: &Tensor, seq: &[usize], reward: &[f64]) -> Result<Tensor> {
    const OP: &str = "reward_loss";
    let &[rows, steps] = sample_logprobs.shape() else {
        return Err(Error::shape(
            OP,
            &[sample_logprobs.shape()],
            "log-probabilities [rows, steps]",
        ));
    };
    if seq.len() != rows * steps {
        return Err(Error::shape(
            OP,
            &[sample_logprobs.shape(), &[seq.len()]],
            "one sampled token per log-probability",
        ));
    }
    let per_row = match reward.len() {
        n if n == rows * steps => false,
        n if n == rows => true,
        _ => {
            return Err(Error::shape(
                OP,
                &[sample_logprobs.shape(), &[reward.len()]],
                "one reward per row or per token",
            ));
        }
    };
    if let Some(bad) = reward.iter().find(|r| !r.is_finite()) {
        return Err(Error::NonFinite(format!("{OP}: reward {bad}")));
    }
    let mask = reward_mask(seq, steps)?;
    // Rows always count step 0, so the total is at least `rows` and positive when rows > 0.
    let total = mask_total(OP, &mask)?;
    // −r·mask per token: the loss is Σ logp·coef / Σ mask.
    let coef: Vec<f64> = mask
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            -(if per_row {
                reward[i / steps]
            } else {
                reward[i]
            }) * m
        })
        .collect();
    #[cfg(feature = "cuda")]
    if sample_logprobs.is_cuda() {
        return crate::cuda::ops::reward_loss(sample_logprobs, coef, total);
    }
    let dtype = sample_logprobs.dtype();
    let out = with_float!(dtype, OP, T => {
        let loss = sample_logprobs.with_slice::<T, _>(OP, |lp| {
            lp.iter()
                .zip(&coef)
                .filter(|(_, c)| **c != 0.0)
                .map(|(&l, &c)| l.to_f64() * c)
                .sum::<f64>()
                / total
        })?;
        Tensor::from_vec(vec![T::from_f64(loss)], &[])
    })?;
    Ok(out.record(OP, &[sample_logprobs], move |g| {
        let scale = g.item()? / total;
        let grad = with_float!(dtype, OP, T => {
            Tensor::from_vec(coef.iter().map(|&c| T::from_f64(scale * c)).collect::<Vec<T>>(), &[rows, steps])
        })?;
        Ok(vec![Some(grad)])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::gradcheck::check_op;
    use crate::rng::Philox;
    use crate::tensor::DType;

    /// The reference's formula element by element, as PyTorch evaluates it:
    /// `Σ_r m_r Σ_k (xlogy(q_k, q_k) − q_k·lp_k) / Σ m`.
    fn reference_kl(lp: &[f64], k: usize, targets: &[usize], mask: &[f64], eps: f64) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for ((row, &y), &m) in lp.chunks(k).zip(targets).zip(mask) {
            let mut row_loss = 0.0;
            for (c, &l) in row.iter().enumerate() {
                let q = if c == y {
                    1.0 - eps
                } else {
                    eps / (k - 1) as f64
                };
                let xlogy = if q == 0.0 { 0.0 } else { q * q.ln() };
                row_loss += xlogy - q * l;
            }
            num += row_loss * m;
            den += m;
        }
        num / den
    }

    /// Log-probabilities [2, 3, 7], targets including 0, and a mask with a zero and a
    /// fractional weight.
    fn inputs() -> (Tensor, Vec<usize>, Tensor) {
        let logits = Tensor::randn(&[2, 3, 7], DType::F64, &mut Philox::new(17));
        let lp = logits.log_softmax().unwrap();
        let targets = vec![0, 3, 6, 1, 0, 2];
        let mask = Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0, 0.5, 1.0], &[2, 3]).unwrap();
        (lp, targets, mask)
    }

    #[test]
    fn values_equal_the_element_wise_reference() {
        let (lp, targets, mask) = inputs();
        let (v, m) = (lp.to_vec_f64(), mask.to_vec_f64());
        for eps in [0.0, 0.2, 0.5] {
            let got = label_smoothing_loss(&lp, &targets, &mask, eps)
                .unwrap()
                .item()
                .unwrap();
            let want = reference_kl(&v, 7, &targets, &m, eps);
            assert!((got - want).abs() < 1e-14, "eps {eps}: {got} vs {want}");
        }
        let ce = lm_loss(&lp, &targets, &mask).unwrap().item().unwrap();
        let by_hand: f64 = -[(0, 0), (1, 3), (3, 1), (4, 0), (5, 2)]
            .iter()
            .map(|&(r, y)| v[r * 7 + y] * m[r])
            .sum::<f64>()
            / 4.5;
        assert!((ce - by_hand).abs() < 1e-15, "{ce} vs {by_hand}");
        // KL = CE(q, p) − H(q): with ε = 0.2 over K = 7 the constant is Σ q log q.
        let h = 0.8f64 * 0.8f64.ln() + 6.0 * (0.2f64 / 6.0) * (0.2f64 / 6.0).ln();
        let ce_smoothed = label_smoothing_loss(&lp, &targets, &mask, 0.2)
            .unwrap()
            .item()
            .unwrap()
            - h;
        assert!(
            ce_smoothed > ce * 0.8,
            "smoothed CE {ce_smoothed} vs CE {ce}"
        );
    }

    #[test]
    fn masked_rows_are_never_read() {
        // −∞ in a masked row (and in non-target classes with no smoothing) stays out of the loss.
        let mut v = vec![-1.0f64; 2 * 4];
        v[4..].iter_mut().for_each(|x| *x = f64::NEG_INFINITY);
        v[1] = f64::NEG_INFINITY;
        let lp = Tensor::from_vec(v, &[2, 4]).unwrap();
        let mask = Tensor::from_vec(vec![1.0, 0.0], &[2]).unwrap();
        assert_eq!(lm_loss(&lp, &[2, 0], &mask).unwrap().item().unwrap(), 1.0);
        let lp = lp.requiring_grad();
        let l = lm_loss(&lp, &[2, 0], &mask).unwrap();
        l.backward().unwrap();
        let g = lp.grad().unwrap().to_vec_f64();
        assert_eq!(g, vec![0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn gradients() {
        let (lp, targets, mask) = inputs();
        let m = mask.clone();
        let t = targets.clone();
        check_op(
            "label_smoothing",
            move |x| label_smoothing_loss(&x[0], &t, &m, 0.2),
            &[lp.clone()],
        );
        // Through log_softmax, as the model uses it, and with a non-contiguous input.
        let logits = Tensor::randn(&[3, 2, 5], DType::F64, &mut Philox::new(3));
        let t2 = vec![4, 0, 1, 1, 2, 3];
        let m2 = Tensor::from_vec(vec![1.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[2, 3]).unwrap();
        check_op(
            "label_smoothing",
            move |x| label_smoothing_loss(&x[0].transpose(0, 1)?.log_softmax()?, &t2, &m2, 0.2),
            &[logits],
        );
        let (m, t) = (mask.clone(), targets.clone());
        check_op("lm_loss", move |x| lm_loss(&x[0], &t, &m), &[lp]);
        let seq = vec![3, 1, 0, 0, 2, 0, 5, 4, 7];
        check_op(
            "reward_loss",
            move |x| reward_loss(&x[0], &seq, &[0.5, -1.25, 2.0]),
            &[Tensor::randn(&[3, 3], DType::F64, &mut Philox::new(8))],
        );
    }

    #[test]
    fn reward_loss_masks_after_the_first_eos() {
        // Row 0 ends at step 1 (EOS counted), row 1 runs to the end.
        let seq = [4, 0, 0, 0, 2, 3, 1, 5];
        assert_eq!(
            reward_mask(&seq, 4).unwrap(),
            vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        );
        let lp = Tensor::from_vec(
            vec![-1.0f64, -2.0, -30.0, -40.0, -0.5, -0.25, -1.0, -2.0],
            &[2, 4],
        )
        .unwrap();
        let per_row = reward_loss(&lp, &seq, &[2.0, -1.0])
            .unwrap()
            .item()
            .unwrap();
        // Rewards 2 and −1; row 0 counts steps 0 and 1, row 1 all four.
        let (row0, row1) = (-1.0 - 2.0, -0.5 - 0.25 - 1.0 - 2.0);
        let want = -(row0 * 2.0 - row1) / 6.0;
        assert!((per_row - want).abs() < 1e-15, "{per_row} vs {want}");
        let per_token =
            reward_loss(&lp, &seq, &[2.0, 2.0, 9.0, 9.0, -1.0, -1.0, -1.0, -1.0]).unwrap();
        assert_eq!(per_token.item().unwrap(), per_row);
        assert!(reward_loss(&lp, &seq, &[1.0; 3]).is_err());
        assert!(reward_loss(&lp, &seq[..7], &[1.0; 2]).is_err());
        assert!(reward_loss(&lp, &seq, &[f64::NAN, 1.0]).is_err());
        assert!(reward_mask(&seq, 3).is_err());
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let (lp, targets, mask) = inputs();
        let e = lm_loss(&lp, &[0, 1, 7, 0, 0, 0], &mask)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target 7 at row 2") && e.contains("7 classes"),
            "{e}"
        );
        assert!(lm_loss(&lp, &targets[..5], &mask).is_err());
        let e = lm_loss(&lp, &targets, &Tensor::ones(&[3, 2], DType::F64))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[3, 2]") && e.contains("[2, 3, 7]"), "{e}");
        let e = lm_loss(&lp, &targets, &Tensor::zeros(&[2, 3], DType::F64))
            .unwrap_err()
            .to_string();
        assert!(e.contains("all zero"), "{e}");
        assert!(label_smoothing_loss(&lp, &targets, &mask, 1.0).is_err());
        assert!(label_smoothing_loss(&lp, &targets, &mask.mul_scalar(-1.0).unwrap(), 0.2).is_err());
        // An f32 mask works with f64 log-probabilities; an f32 loss comes from f32 inputs.
        let m32 = mask.to_dtype(DType::F32).unwrap();
        let a = lm_loss(&lp, &targets, &m32).unwrap();
        assert_eq!(a.dtype(), DType::F64);
        let b = lm_loss(&lp.to_dtype(DType::F32).unwrap(), &targets, &mask).unwrap();
        assert_eq!(b.dtype(), DType::F32);
        assert!((a.item().unwrap() - b.item().unwrap()).abs() < 1e-6);
    }

    #[test]
    fn loss_from_logits_is_the_composed_loss_to_the_bit() {
        let mut g = crate::rng::Philox::new(12);
        let x = Tensor::randn(&[2, 3, 9], crate::tensor::DType::F32, &mut g).requiring_grad();
        let mask = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 1.0, 0.5, 1.0], &[2, 3]).unwrap();
        let targets = [0, 3, 8, 1, 0, 2];
        for eps in [0.0, 0.2] {
            let run = |fused: bool| {
                x.zero_grad();
                let l = if fused {
                    label_smoothing_loss_from_logits(&x, &targets, &mask, eps).unwrap()
                } else {
                    label_smoothing_loss(&x.log_softmax().unwrap(), &targets, &mask, eps).unwrap()
                };
                l.mul_scalar(0.75).unwrap().backward().unwrap();
                (l.to_vec_f64(), x.grad().unwrap().to_vec_f64())
            };
            assert_eq!(run(true), run(false), "smoothing {eps}");
        }
        let e = label_smoothing_loss_from_logits(&x, &[0, 9, 0, 0, 0, 0], &mask, 0.2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target 9"), "{e}");
        let zeros = Tensor::zeros(&[2, 3], crate::tensor::DType::F32);
        assert!(label_smoothing_loss_from_logits(&x, &targets, &zeros, 0.2).is_err());
    }
}
