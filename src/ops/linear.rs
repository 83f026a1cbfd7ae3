//! The affine layer `y = x Wᵀ + b` as one op (PyTorch's `F.linear`), with `W [out, in]`.
//!
//! Forward: one GEMM reading `W` through a transposed view (no copy of the weight; skinny
//! products reuse a packed copy, see `weights.rs`), then the bias added in place. Inputs of
//! any rank fold into `[rows, in]`.
//!
//! Backward, with `G = ∂y` folded to `[rows, out]`:
//! - `∂x = G W`, also through `weights.rs` (the same bits as a matmul);
//! - `∂W = Gᵀ x`, returned deferred ([`Grad::Outer`]): a weight used at every decoder step
//!   then gets one GEMM over all steps instead of one per step;
//! - `∂b = Σ_rows G`.
//!
//! On a CUDA device the forward is one GEMM kernel with the bias in its epilogue; the
//! backward is the same ops (the deferred weight gradient becomes one GEMM on the device).

use super::weights::weight_product;
use crate::autograd::{Grad, no_grad};
#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Tensor, on_cuda};
use crate::{Error, Result, with_float};

/// Adds `bias` to every row of `out` (a dense `[rows, out]` buffer), in place.
fn add_bias<T: Float>(out: &mut [T], bias: &[T]) {
    for row in out.chunks_exact_mut(bias.len()) {
        for (o, &b) in row.iter_mut().zip(bias) {
            *o += b;
        }
    }
}

impl Tensor {
    /// `self Wᵀ + b` over the last axis: `self [..., in]`, `weight [out, in]`, `bias [out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let input = *self.shape().last().unwrap_or(&0);
        let output = weight.shape().first().copied().unwrap_or(0);
        let bias_ok = bias.is_none_or(|b| b.shape() == [output]);
        if self.rank() == 0 || weight.rank() != 2 || weight.shape()[1] != input || !bias_ok {
            let b_shape = bias.map(|b| b.shape().to_vec()).unwrap_or_default();
            return Err(Error::shape(
                "linear",
                &[self.shape(), weight.shape(), &b_shape],
                "x [..., in], weight [out, in], bias [out]",
            ));
        }
        super::same_kind("linear", self, weight)?;
        if let Some(b) = bias {
            super::same_kind("linear", self, b)?;
        }
        let rows = self.numel() / input.max(1);
        let mut out_shape = self.shape().to_vec();
        *out_shape.last_mut().unwrap() = output;
        let x2 = no_grad(|| self.reshape(&[rows, input]))?;
        let y = if self.is_cuda() {
            // One GEMM with the bias added in its epilogue.
            on_cuda!(gpu::weight_product(&x2, weight, true, bias))?
        } else {
            let y = weight_product(&x2, weight, true)?;
            if let Some(b) = bias {
                with_float!(self.dtype(), "linear", T => {
                    b.with_slice::<T, _>("linear", |bv| y.with_data_mut::<T, _>(|yv| add_bias(yv, bv)))??;
                    Ok(())
                })?;
            }
            y
        };
        let out = y.reshape(&out_shape)?;
        let (w, in_shape) = (weight.clone(), self.shape().to_vec());
        let (needs_x, needs_w, has_bias) =
            (self.requires_grad(), weight.requires_grad(), bias.is_some());
        let mut inputs = vec![self, weight];
        if let Some(b) = bias {
            inputs.push(b);
        }
        Ok(out.record_grads("linear", &inputs, move |g| {
            let g2 = g.reshape(&[rows, output])?;
            // `G W` through the weight's cached form: on the CPU its packing for skinny
            // products, on a GPU with bf16 products its bf16 copy (a plain matmul would pack
            // or round W again at each of the decoder's steps).
            let gx = if needs_x {
                Some(Grad::Dense(
                    weight_product(&g2, &w, false)?.reshape(&in_shape)?,
                ))
            } else {
                None
            };
            let gw = needs_w.then(|| Grad::Outer {
                g: g2.clone(),
                x: x2,
            });
            let mut grads = vec![gx, gw];
            if has_bias {
                grads.push(Some(Grad::SumRows { g: g2.clone() }));
            }
            Ok(grads)
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;

    #[test]
    fn equals_matmul_plus_bias() {
        let (x, w, b) = (rand(&[2, 3, 7], 1), rand(&[5, 7], 2), rand(&[5], 3));
        let y = x.linear(&w, Some(&b)).unwrap();
        let want = x
            .matmul(&w.transpose(0, 1).unwrap())
            .unwrap()
            .add(&b)
            .unwrap();
        for (a, c) in y.to_vec_f64().iter().zip(want.to_vec_f64()) {
            assert!((a - c).abs() < 1e-14);
        }
        assert_eq!(x.linear(&w, None).unwrap().shape(), &[2, 3, 5]);
        let e = x.linear(&rand(&[5, 6], 4), None).unwrap_err().to_string();
        assert!(e.contains("[2, 3, 7]") && e.contains("[5, 6]"), "{e}");
    }

    #[test]
    fn gradients() {
        check_op(
            "linear",
            |t| t[0].linear(&t[1], Some(&t[2])),
            &[rand(&[3, 33], 5), rand(&[7, 33], 6), rand(&[7], 7)],
        );
        check_op(
            "linear",
            |t| t[0].linear(&t[1], None),
            &[rand(&[2, 3, 5], 8), rand(&[1, 5], 9)],
        );
        // The weight used twice (as in a recurrent step): its deferred pieces are summed.
        check_op(
            "linear",
            |t| {
                let h = t[0].linear(&t[1], Some(&t[2]))?.tanh()?;
                h.linear(&t[1], Some(&t[2]))
            },
            &[rand(&[4, 6], 10), rand(&[6, 6], 11), rand(&[6], 12)],
        );
    }
}
