//! Inverted dropout driven by the Philox stream.
//!
//! Convention (shared with the CUDA kernel, so both devices draw identical masks): element `i`
//! of the tensor, in row-major order, uses word `base + i` of the generator's stream, where
//! `base` is the generator's offset when the call starts; it is kept when
//! `u32_to_unit_f32(word) ≥ p` and then scaled by `1 / (1 − p)`. The call advances the stream
//! by the element count. In eval mode, or with `p = 0`, the op is the identity and draws
//! nothing.
//!
//! Backward: `∂x = g ⊙ mask` with the same scaled mask.
//!
//! On a CUDA device one kernel draws the words and applies the mask (`kernels/dropout.cu`,
//! the same rule and scale, so the same values as here); the backward redraws the mask from
//! the saved generator state instead of storing it.

use crate::rng::{Philox, PhiloxState, u32_to_unit_f32};
use crate::tensor::{Float, Tensor};
use crate::{Error, Result, with_float};

/// Whether an element whose random word is `word` survives dropout with probability `p`.
#[inline]
pub fn dropout_keeps(word: u32, p: f32) -> bool {
    u32_to_unit_f32(word) >= p
}

/// The scaled keep-mask (`1/(1−p)` or 0) of `n` elements, drawn from `rng`.
fn mask<T: Float>(n: usize, p: f64, rng: &mut Philox) -> Vec<T> {
    let scale = if p < 1.0 {
        T::from_f64(1.0 / (1.0 - p))
    } else {
        T::ZERO
    };
    let pf = p as f32;
    let mut out = Vec::with_capacity(n);
    let mut words = vec![0u32; 4096.min(n)];
    let mut left = n;
    while left > 0 {
        let w = &mut words[..4096.min(left)];
        rng.fill_u32(w);
        out.extend(
            w.iter()
                .map(|&x| if dropout_keeps(x, pf) { scale } else { T::ZERO }),
        );
        left -= w.len();
    }
    out
}

impl Tensor {
    /// Inverted dropout with drop probability `p` in training mode; the identity otherwise.
    pub fn dropout(&self, p: f64, train: bool, rng: &mut Philox) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "dropout: probability {p} outside [0, 1]"
            )));
        }
        if !train || p == 0.0 {
            return Ok(self.clone());
        }
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            // The same words as `mask` draws: element i uses word base + i; the mask is
            // regenerated from the saved state for the backward.
            let state = rng.reserve(self.numel() as u64);
            let out = crate::cuda::ops::dropout::apply(self, p, state)?;
            return Ok(out.record("dropout", &[self], move |g| {
                Ok(vec![Some(crate::cuda::ops::dropout::apply(g, p, state)?)])
            }));
        }
        let m = with_float!(self.dtype(), "dropout", T => Tensor::from_vec(mask::<T>(self.numel(), p, rng), self.shape()))?;
        let out = crate::autograd::no_grad(|| self.mul(&m))?;
        Ok(out.record("dropout", &[self], move |g| Ok(vec![Some(g.mul(&m)?)])))
    }
}

impl Tensor {
    /// `relu(x)` followed by [`Tensor::dropout`], as one op: the same values and the same
    /// random words as `x.relu()?.dropout(p, train, rng)`, with one graph node and (on a GPU)
    /// one kernel instead of two. Backward: `∂x = ∂y · 1/(1 − p)` where the output is positive,
    /// else 0 (ReLU's and dropout's backward in one).
    pub fn relu_dropout(&self, p: f64, train: bool, rng: &mut Philox) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "relu_dropout: probability {p} outside [0, 1]"
            )));
        }
        if !train || p == 0.0 {
            return self.relu();
        }
        if p >= 1.0 {
            return self.relu()?.dropout(p, train, rng);
        }
        let scale = 1.0 / (1.0 - p);
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            let state = rng.reserve(self.numel() as u64);
            let out = crate::cuda::ops::dropout::apply_relu(self, p, state)?;
            let y = out.clone();
            return Ok(out.record("relu_dropout", &[self], move |g| {
                Ok(vec![Some(crate::cuda::ops::dropout::relu_backward(
                    g, &y, scale,
                )?)])
            }));
        }
        let m = with_float!(self.dtype(), "relu_dropout", T => Tensor::from_vec(mask::<T>(self.numel(), p, rng), self.shape()))?;
        let out = crate::autograd::no_grad(|| self.relu()?.mul(&m))?;
        let y = out.clone();
        Ok(out.record("relu_dropout", &[self], move |g| {
            let gx = with_float!(g.dtype(), "relu_dropout", T => {
                let s = T::from_f64(scale);
                super::map2::<T>("relu_dropout", g, &y, |g, y| if y > T::ZERO { g * s } else { T::ZERO })
            })?;
            Ok(vec![Some(gx)])
        }))
    }
}

impl Tensor {
    /// `self + x.dropout(p, train, rng)` as one op: the same values and random words as the
    /// two ops, with one graph node and (on a GPU) one kernel instead of two. Backward: `∂self
    /// = g` (no work), `∂x` = dropout's backward. Shapes that differ (broadcasting) take the
    /// two ops.
    pub fn add_dropout(&self, x: &Tensor, p: f64, train: bool, rng: &mut Philox) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "add_dropout: probability {p} outside [0, 1]"
            )));
        }
        if !train || p == 0.0 {
            return self.add(x);
        }
        if self.shape() != x.shape() || p >= 1.0 {
            return self.add(&x.dropout(p, train, rng)?);
        }
        super::same_kind("add_dropout", self, x)?;
        #[cfg(feature = "cuda")]
        if x.is_cuda() {
            let state = rng.reserve(x.numel() as u64);
            let out = crate::cuda::ops::dropout::apply_add(self, x, p, state)?;
            return Ok(out.record("add_dropout", &[self, x], move |g| {
                Ok(vec![
                    Some(g.clone()),
                    Some(crate::cuda::ops::dropout::apply(g, p, state)?),
                ])
            }));
        }
        let m = with_float!(x.dtype(), "add_dropout", T => Tensor::from_vec(mask::<T>(x.numel(), p, rng), x.shape()))?;
        let out = crate::autograd::no_grad(|| self.add(&x.mul(&m)?))?;
        Ok(out.record("add_dropout", &[self, x], move |g| {
            Ok(vec![Some(g.clone()), Some(g.mul(&m)?)])
        }))
    }
}

impl Tensor {
    /// Dropout of `self [outer, steps, width]` where each step drew its own mask earlier:
    /// slice `[:, t, :]` takes the mask a [`Tensor::dropout`] of an `[outer, width]` tensor
    /// would have drawn from `draws[t]` (what [`Philox::reserve`]`(outer · width)` returned at
    /// that step). The decoder's output dropout is drawn at every step of teacher forcing, in
    /// the reference's order, and applied here once to all steps' outputs: the values, masks
    /// and gradient of dropping each step's output as it is made. With `p = 0` the identity.
    /// Backward: `∂x = g ⊙ mask`. On a GPU one kernel each way, when the draws are of one
    /// stream and equally spaced (as a decoder's steps draw); otherwise one per step.
    pub fn dropout_steps(&self, p: f64, draws: &[PhiloxState]) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "dropout_steps: probability {p} outside [0, 1]"
            )));
        }
        let shape = self.shape().to_vec();
        if shape.len() != 3 || shape[1] != draws.len() {
            return Err(Error::shape(
                "dropout_steps",
                &[&shape, &[draws.len()]],
                "x [outer, steps, width] with one draw per step",
            ));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        let draws = draws.to_vec();
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            let out = crate::cuda::ops::dropout::apply_steps(self, p, &draws)?;
            return Ok(out.record("dropout_steps", &[self], move |g| {
                Ok(vec![Some(crate::cuda::ops::dropout::apply_steps(
                    g, p, &draws,
                )?)])
            }));
        }
        let (outer, steps, width) = (shape[0], shape[1], shape[2]);
        let m = with_float!(self.dtype(), "dropout_steps", T => {
            let per_step: Vec<Vec<T>> = draws
                .iter()
                .map(|&d| mask::<T>(outer * width, p, &mut Philox::from_state(d)))
                .collect();
            let mut all = Vec::with_capacity(outer * steps * width);
            for o in 0..outer {
                for step in &per_step {
                    all.extend_from_slice(&step[o * width..(o + 1) * width]);
                }
            }
            Tensor::from_vec(all, &shape)
        })?;
        let out = crate::autograd::no_grad(|| self.mul(&m))?;
        Ok(out.record("dropout_steps", &[self], move |g| {
            Ok(vec![Some(g.mul(&m)?)])
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;
    use crate::tensor::DType;

    #[test]
    fn rate_scale_and_replay() {
        let x = Tensor::ones(&[100_000], DType::F32);
        let mut rng = Philox::new(5);
        let before = rng.state();
        let y = x.dropout(0.3, true, &mut rng).unwrap().to_vec_f32();
        assert_eq!(rng.state().offset - before.offset, 100_000);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / 1e5;
        assert!((kept - 0.7).abs() < 0.01, "{kept}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
        // The mask is a function of (seed, stream, offset) alone.
        let mut again = Philox::from_state(before);
        assert_eq!(x.dropout(0.3, true, &mut again).unwrap().to_vec_f32(), y);
        // Element i uses word base + i.
        let w = Philox::from_state(before).word_at(before.offset + 17);
        assert_eq!(y[17] != 0.0, dropout_keeps(w, 0.3));
    }

    /// Steps that drew their masks one after another, with other draws between, dropped at
    /// once: each slice takes the values of a dropout of that slice from its own draw.
    #[test]
    fn dropout_steps_equals_one_dropout_per_step() {
        let (outer, steps, width) = (3, 4, 10);
        let x = rand(&[outer, steps, width], 21);
        let mut rng = Philox::new(8);
        let draws: Vec<PhiloxState> = (0..steps)
            .map(|t| {
                rng.reserve(5 + t as u64); // other draws between, unequally spaced
                rng.reserve((outer * width) as u64)
            })
            .collect();
        let y = x.dropout_steps(0.4, &draws).unwrap();
        assert_eq!(y.shape(), &[outer, steps, width]);
        for (t, &d) in draws.iter().enumerate() {
            let slice = x.narrow(1, t, 1).unwrap().contiguous().unwrap();
            let want = slice
                .dropout(0.4, true, &mut Philox::from_state(d))
                .unwrap();
            let got = y.narrow(1, t, 1).unwrap().contiguous().unwrap();
            assert_eq!(got.to_vec_f64(), want.to_vec_f64(), "step {t}");
        }
        let zeros = y.to_vec_f64().iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0 && zeros < outer * steps * width);
        assert_eq!(
            x.dropout_steps(0.0, &draws).unwrap().to_vec_f64(),
            x.to_vec_f64()
        );
        assert!(
            x.dropout_steps(0.4, &draws[..3]).is_err(),
            "one draw per step"
        );
        assert!(x.dropout_steps(1.2, &draws).is_err());
        check_op(
            "dropout_steps",
            |t| t[0].dropout_steps(0.4, &draws),
            &[rand(&[outer, steps, width], 22)],
        );
    }

    #[test]
    fn eval_mode_is_identity_and_draws_nothing() {
        let x = rand(&[5], 1);
        let mut rng = Philox::new(1);
        assert_eq!(
            x.dropout(0.5, false, &mut rng).unwrap().to_vec_f64(),
            x.to_vec_f64()
        );
        assert_eq!(rng.state().offset, 0);
        assert!(x.dropout(1.5, true, &mut rng).is_err());
    }

    #[test]
    fn gradients() {
        // A fresh generator per evaluation keeps the mask fixed across the finite differences.
        check_op(
            "dropout",
            |t| t[0].dropout(0.4, true, &mut Philox::new(3)),
            &[rand(&[7, 33], 91)],
        );
        check_op(
            "relu_dropout",
            |t| t[0].relu_dropout(0.4, true, &mut Philox::new(3)),
            &[rand(&[7, 33], 92)],
        );
        check_op(
            "add_dropout",
            |t| t[0].add_dropout(&t[1], 0.4, true, &mut Philox::new(3)),
            &[rand(&[7, 33], 93), rand(&[7, 33], 94)],
        );
    }

    /// The fused op is an addition of a dropout: the same values bit for bit, the same words
    /// drawn, the same gradients (both inputs); the addition alone in eval mode; a broadcast
    /// addend and p = 1 take the two ops.
    #[test]
    fn add_dropout_is_an_addition_of_dropout() {
        for dtype in [DType::F32, DType::F64] {
            let a = rand(&[9, 130], 95)
                .to_dtype(dtype)
                .unwrap()
                .requiring_grad();
            let x = rand(&[9, 130], 96)
                .to_dtype(dtype)
                .unwrap()
                .requiring_grad();
            let g = rand(&[9, 130], 97).to_dtype(dtype).unwrap();
            let run = |fused: bool, p: f64, train: bool| {
                a.zero_grad();
                x.zero_grad();
                let mut rng = Philox::new(8);
                let y = if fused {
                    a.add_dropout(&x, p, train, &mut rng).unwrap()
                } else {
                    a.add(&x.dropout(p, train, &mut rng).unwrap()).unwrap()
                };
                y.backward_with(g.clone()).unwrap();
                (
                    y.to_vec_f64(),
                    a.grad().unwrap().to_vec_f64(),
                    x.grad().unwrap().to_vec_f64(),
                    rng.state(),
                )
            };
            for (p, train) in [(0.3, true), (0.3, false), (1.0, true)] {
                assert_eq!(
                    run(true, p, train),
                    run(false, p, train),
                    "{dtype} p {p} train {train}"
                );
            }
        }
        let (a, x) = (rand(&[1, 5], 98), rand(&[4, 5], 99));
        let mut rng = Philox::new(2);
        assert_eq!(
            a.add_dropout(&x, 0.5, true, &mut rng).unwrap().shape(),
            &[4, 5]
        );
        assert!(a.add_dropout(&x, 1.5, true, &mut rng).is_err());
    }

    /// The fused op is ReLU then dropout: the same values bit for bit, the same words drawn,
    /// the same gradient; ReLU alone in eval mode or at p = 0; p = 1 drops everything.
    #[test]
    fn relu_dropout_is_relu_then_dropout() {
        for dtype in [DType::F32, DType::F64] {
            let x = rand(&[9, 130], 93)
                .to_dtype(dtype)
                .unwrap()
                .requiring_grad();
            let g = rand(&[9, 130], 94).to_dtype(dtype).unwrap();
            let run = |fused: bool| {
                x.zero_grad();
                let mut rng = Philox::new(8);
                let y = if fused {
                    x.relu_dropout(0.3, true, &mut rng).unwrap()
                } else {
                    x.relu().unwrap().dropout(0.3, true, &mut rng).unwrap()
                };
                y.backward_with(g.clone()).unwrap();
                (y.to_vec_f64(), x.grad().unwrap().to_vec_f64(), rng.state())
            };
            let (a, b) = (run(true), run(false));
            assert_eq!(a.0, b.0, "{dtype} values");
            assert_eq!(a.1, b.1, "{dtype} gradients");
            assert_eq!(a.2, b.2, "{dtype} words drawn");
            assert!(a.0.contains(&0.0) && a.0.iter().any(|&v| v > 0.0));
        }
        let x = rand(&[40], 95);
        let relu = x.relu().unwrap().to_vec_f64();
        let mut rng = Philox::new(1);
        for (p, train) in [(0.3, false), (0.0, true)] {
            assert_eq!(
                x.relu_dropout(p, train, &mut rng).unwrap().to_vec_f64(),
                relu
            );
        }
        assert_eq!(rng.state().offset, 0);
        let all = x.relu_dropout(1.0, true, &mut rng).unwrap().to_vec_f64();
        assert!(all.iter().all(|&v| v == 0.0));
        assert!(x.relu_dropout(1.5, true, &mut rng).is_err());
    }
}
