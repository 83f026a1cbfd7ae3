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

/// Runs `f(first_row, rows_chunk)` over `out` split into row-aligned chunks, on several
/// threads when there is enough work (the vocabulary-wide rows of the output layer).
pub(crate) fn par_rows<T: Send>(out: &mut [T], len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let rows = out.len() / len.max(1);
    let min_rows = ((1 << 16) / len.max(1)).max(1);
    let parts = crate::cpu::parallel::chunk_count(rows, min_rows, crate::cpu::num_threads());
    if parts <= 1 {
        f(0, out);
        return;
    }
    std::thread::scope(|s| {
        let mut rest = out;
        let mut first = 0;
        let f = &f;
        for i in 0..parts {
            let r = crate::cpu::parallel::chunk_range(rows, parts, i);
            let (chunk, tail) = rest.split_at_mut(r.len() * len);
            rest = tail;
            if i + 1 == parts {
                f(first, chunk);
            } else {
                s.spawn(move || f(first, chunk));
            }
            first += r.len();
        }
    });
}

/// Row-wise softmax (`log = false`) or log-softmax (`log = true`) of a dense buffer.
pub(crate) fn softmax_rows<T: Float>(x: &[T], len: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    par_rows(&mut out, len, |first, chunk| {
        let mut scratch = vec![T::ZERO; if log { len } else { 0 }];
        for (r, dst) in chunk.chunks_exact_mut(len).enumerate() {
            let src = &x[(first + r) * len..(first + r + 1) * len];
            let max = T::max_of(src);
            if log {
                for (d, &v) in scratch.iter_mut().zip(src) {
                    *d = v - max;
                }
                dst.copy_from_slice(&scratch);
                T::exp_in_place(&mut scratch);
                let lse = T::sum_of(&scratch).ln();
                for d in dst.iter_mut() {
                    *d -= lse;
                }
            } else {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v - max;
                }
                T::exp_in_place(dst);
                let inv = T::ONE / T::sum_of(dst);
                for d in dst.iter_mut() {
                    *d *= inv;
                }
            }
        }
    });
    out
}

/// `∂x` of softmax (`log = false`: `y ⊙ (g − g·y)`) or log-softmax (`log = true`:
/// `g − eʸ Σg`) from the saved output `y` and the output gradient `g`.
fn softmax_backward_rows<T: Float>(g: &[T], y: &[T], len: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::ZERO; g.len()];
    par_rows(&mut out, len, |first, chunk| {
        for (r, o) in chunk.chunks_exact_mut(len).enumerate() {
            let gr = &g[(first + r) * len..(first + r + 1) * len];
            let yr = &y[(first + r) * len..(first + r + 1) * len];
            if log {
                let sum = T::sum_of(gr);
                o.copy_from_slice(yr);
                T::exp_in_place(o);
                for (o, &gi) in o.iter_mut().zip(gr) {
                    *o = gi - *o * sum;
                }
            } else {
                let dot = T::dot_of(gr, yr);
                for ((o, &gi), &yi) in o.iter_mut().zip(gr).zip(yr) {
                    *o = yi * (gi - dot);
                }
            }
        }
    });
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
                let v = g.with_slice::<T, _>("softmax", |gv| y.with_slice::<T, _>("softmax", |yv| softmax_backward_rows(gv, yv, len, false)))??;
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
                let v = g.with_slice::<T, _>("log_softmax", |gv| y.with_slice::<T, _>("log_softmax", |yv| softmax_backward_rows(gv, yv, len, true)))??;
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
