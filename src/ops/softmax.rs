//! Softmax and log-softmax over the last axis, one row at a time with the max subtracted.
//!
//! Backward, per row, with `y` the saved output and `g` the output gradient:
//! - softmax: `∂x = y ⊙ (g − Σⱼ gⱼ yⱼ)`;
//! - log_softmax: `∂x = g − softmax(x) · Σⱼ gⱼ = g − eʸ · Σⱼ gⱼ`.

use crate::tensor::{Float, Tensor};
use crate::{Error, Result, with_float};

fn rows_of(t: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    let len = *t
        .shape()
        .last()
        .ok_or_else(|| Error::shape(op, &[t.shape()], "at least one dimension"))?;
    Ok((t.numel() / len.max(1), len))
}

/// Row-wise softmax (`log = false`) or log-softmax (`log = true`) of a dense buffer.
pub(crate) fn softmax_rows<T: Float>(x: &[T], len: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    for (src, dst) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)) {
        let max = src.iter().copied().fold(src[0], |m, v| m.max(v));
        let mut sum = T::ZERO;
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s - max).exp();
            sum += *d;
        }
        if log {
            let lse = sum.ln();
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s - max - lse;
            }
        } else {
            let inv = T::ONE / sum;
            for d in dst.iter_mut() {
                *d *= inv;
            }
        }
    }
    out
}

impl Tensor {
    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Tensor> {
        let (_, len) = rows_of(self, "softmax")?;
        let out = with_float!(self.dtype(), "softmax", T => {
            let v = self.with_slice::<T, _>("softmax", |x| softmax_rows(x, len, false))?;
            Tensor::from_vec(v, self.shape())
        })?;
        let y = out.clone();
        Ok(out.record("softmax", &[self], move |g| {
            let gx = with_float!(g.dtype(), "softmax", T => {
                let v = g.with_slice::<T, _>("softmax", |gv| {
                    y.with_slice::<T, _>("softmax", |yv| {
                        let mut out = vec![T::ZERO; gv.len()];
                        for ((gr, yr), o) in gv.chunks_exact(len).zip(yv.chunks_exact(len)).zip(out.chunks_exact_mut(len)) {
                            let dot: T = gr.iter().zip(yr).map(|(&a, &b)| a * b).sum();
                            for ((o, &gi), &yi) in o.iter_mut().zip(gr).zip(yr) {
                                *o = yi * (gi - dot);
                            }
                        }
                        out
                    })
                })??;
                Tensor::from_vec(v, g.shape())
            })?;
            Ok(vec![Some(gx)])
        }))
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let (_, len) = rows_of(self, "log_softmax")?;
        let out = with_float!(self.dtype(), "log_softmax", T => {
            let v = self.with_slice::<T, _>("log_softmax", |x| softmax_rows(x, len, true))?;
            Tensor::from_vec(v, self.shape())
        })?;
        let y = out.clone();
        Ok(out.record("log_softmax", &[self], move |g| {
            let gx = with_float!(g.dtype(), "log_softmax", T => {
                let v = g.with_slice::<T, _>("log_softmax", |gv| {
                    y.with_slice::<T, _>("log_softmax", |yv| {
                        let mut out = vec![T::ZERO; gv.len()];
                        for ((gr, yr), o) in gv.chunks_exact(len).zip(yv.chunks_exact(len)).zip(out.chunks_exact_mut(len)) {
                            let sum: T = gr.iter().copied().sum();
                            for ((o, &gi), &yi) in o.iter_mut().zip(gr).zip(yr) {
                                *o = gi - yi.exp() * sum;
                            }
                        }
                        out
                    })
                })??;
                Tensor::from_vec(v, g.shape())
            })?;
            Ok(vec![Some(gx)])
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;
    use crate::tensor::Tensor;

    #[test]
    fn values_are_stable_and_normalised() {
        let x = Tensor::from_vec(vec![1000.0f32, 1001.0, -1e9, 0.0], &[1, 4]).unwrap();
        let s = x.softmax().unwrap().to_vec_f32();
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(s[2], 0.0); // a −1e9 mask gives exactly zero weight
        let l = x.log_softmax().unwrap().to_vec_f32();
        assert!((l[1] - (-(1.0f32 + (-1.0f32).exp()).ln())).abs() < 1e-6);
        assert!(l.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn gradients() {
        // A one-element softmax is constant (zero gradient): rows of at least 2.
        for shape in [vec![2], vec![7], vec![3, 33], vec![2, 3, 5]] {
            let x = rand(&shape, 41).mul_scalar(3.0).unwrap();
            check_op("softmax", |t| t[0].softmax(), &[x.clone()]);
            check_op("log_softmax", |t| t[0].log_softmax(), &[x.clone()]);
        }
    }
}
