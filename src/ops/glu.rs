//! The gated linear unit over the last axis: `glu([a ; b]) = a ⊙ σ(b)`, the first half being
//! the information and the second half the gate (PyTorch's `nn.GLU(dim=-1)`; the AoA gate).
//!
//! Backward, with `s = σ(b)`: `∂a = g ⊙ s`, `∂b = g ⊙ a ⊙ s ⊙ (1 − s)`.
//!
//! On a CUDA device: `kernels/glu.cu`, one kernel each way.

#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Tensor, on_cuda};
use crate::{Error, Result, with_float};

impl Tensor {
    /// `first_half ⊙ sigmoid(second_half)` over the last axis (which must be even).
    pub fn glu(&self) -> Result<Tensor> {
        let len = *self.shape().last().unwrap_or(&0);
        if len == 0 || !len.is_multiple_of(2) {
            return Err(Error::shape(
                "glu",
                &[self.shape()],
                "an even, non-zero last dimension",
            ));
        }
        let h = len / 2;
        let mut out_shape = self.shape().to_vec();
        *out_shape.last_mut().unwrap() = h;
        let out = if self.is_cuda() {
            on_cuda!(gpu::glu(self, h, &out_shape))?
        } else {
            with_float!(self.dtype(), "glu", T => {
            let v = self.with_slice::<T, _>("glu", |x| {
                let mut out = Vec::with_capacity(x.len() / 2);
                for row in x.chunks_exact(len) {
                    let (a, b) = row.split_at(h);
                    out.extend(a.iter().zip(b).map(|(&a, &b)| a * b.sigmoid()));
                }
                out
            })?;
            Tensor::from_vec(v, &out_shape)
            })?
        };
        let x = self.clone();
        Ok(out.record("glu", &[self], move |g| {
            if g.is_cuda() {
                return Ok(vec![Some(on_cuda!(gpu::glu_backward(g, &x, h))?)]);
            }
            let gx = with_float!(g.dtype(), "glu", T => {
                let v = x.with_slice::<T, _>("glu", |xv| {
                    g.with_slice::<T, _>("glu", |gv| {
                        let mut out = vec![T::ZERO; xv.len()];
                        for ((row, gr), o) in xv.chunks_exact(len).zip(gv.chunks_exact(h)).zip(out.chunks_exact_mut(len)) {
                            let (a, b) = row.split_at(h);
                            let (oa, ob) = o.split_at_mut(h);
                            for j in 0..h {
                                let s = b[j].sigmoid();
                                oa[j] = gr[j] * s;
                                ob[j] = gr[j] * a[j] * s * (T::ONE - s);
                            }
                        }
                        out
                    })
                })??;
                Tensor::from_vec(v, x.shape())
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
    fn values() {
        let x = Tensor::from_vec(vec![2.0f64, 3.0, 0.0, 100.0], &[1, 4]).unwrap();
        assert_eq!(x.glu().unwrap().to_vec_f64(), vec![1.0, 3.0]);
        assert!(rand(&[2, 3], 1).glu().is_err());
    }

    #[test]
    fn gradients() {
        for shape in [vec![2], vec![7, 66], vec![2, 3, 14]] {
            check_op(
                "glu",
                |t| t[0].glu(),
                &[rand(&shape, 51).mul_scalar(2.0).unwrap()],
            );
        }
    }
}
