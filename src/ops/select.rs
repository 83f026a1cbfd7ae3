//! Choosing between values by a mask: `masked_fill` (attention masking with −1e9) and `where_`.
//! Masks are tensors of 0 and 1 (any dtype), broadcast against the data.
//!
//! Backward: `masked_fill`: `∂x = g ⊙ (1 − mask)` (filled positions get nothing);
//! `where_(c, a, b)`: `∂a = g ⊙ c`, `∂b = g ⊙ (1 − c)`, each summed to its input's shape.
//! On a CUDA device each is one `binary` kernel (`B_FILL_WHERE`, `B_KEEP_WHERE`,
//! `B_ZERO_WHERE`); the mask must be on the same device.

use super::map2;
#[cfg(feature = "cuda")]
use crate::cuda::{kernels::elementwise::Binary, ops as gpu};
use crate::tensor::{Float, Tensor, on_cuda};
use crate::{Result, with_float};

impl Tensor {
    /// `value` where `mask` is non-zero, this tensor's element elsewhere (mask broadcasts to
    /// this tensor's shape, may have any dtype and must be on this tensor's device; it gets no
    /// gradient).
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        let m = mask
            .detach()
            .to_dtype(self.dtype())?
            .broadcast_to(self.shape())?;
        let out = if self.is_cuda() {
            on_cuda!(gpu::binary(
                "masked_fill",
                self,
                &m,
                Binary::FillWhere(value)
            ))?
        } else {
            with_float!(self.dtype(), "masked_fill", T => {
                let v = T::from_f64(value);
                map2::<T>("masked_fill", self, &m, move |x, k| if k != T::ZERO { v } else { x })
            })?
        };
        Ok(out.record("masked_fill", &[self], move |g| {
            let gx = if g.is_cuda() {
                on_cuda!(gpu::binary("masked_fill", g, &m, Binary::ZeroWhere))?
            } else {
                with_float!(g.dtype(), "masked_fill", T => {
                    map2::<T>("masked_fill", g, &m, |g, k| if k != T::ZERO { T::ZERO } else { g })
                })?
            };
            Ok(vec![Some(gx)])
        }))
    }

    /// `a` where `cond` is non-zero, `b` elsewhere, all broadcast together (`cond` gets no
    /// gradient).
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let shape = crate::tensor::broadcast_shapes("where", a.shape(), b.shape())?;
        let shape = crate::tensor::broadcast_shapes("where", &shape, cond.shape())?;
        let c = cond.detach().to_dtype(a.dtype())?.broadcast_to(&shape)?;
        let (ab, bb) = (
            a.broadcast_to(&shape)?.detach(),
            b.broadcast_to(&shape)?.detach(),
        );
        let out = if a.is_cuda() {
            let picked_a = on_cuda!(gpu::binary("where", &ab, &c, Binary::KeepWhere))?;
            let picked_b: Tensor = on_cuda!(gpu::binary("where", &bb, &c, Binary::ZeroWhere))?;
            picked_b.add(&picked_a)?
        } else {
            let picked_a = with_float!(a.dtype(), "where", T => {
                map2::<T>("where", &c, &ab, |k, x| if k != T::ZERO { x } else { T::ZERO })
            })?;
            with_float!(a.dtype(), "where", T => {
                map2::<T>("where", &c, &bb, |k, y| if k != T::ZERO { T::ZERO } else { y })
            })?
            .add(&picked_a)?
        };
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        Ok(out.detach().record("where", &[a, b], move |g| {
            let (ga, gb) = if g.is_cuda() {
                (
                    on_cuda!(gpu::binary("where", g, &c, Binary::KeepWhere))?,
                    on_cuda!(gpu::binary("where", g, &c, Binary::ZeroWhere))?,
                )
            } else {
                with_float!(g.dtype(), "where", T => {
                    let ga = map2::<T>("where", g, &c, |g, k| if k != T::ZERO { g } else { T::ZERO })?;
                    let gb = map2::<T>("where", g, &c, |g, k| if k != T::ZERO { T::ZERO } else { g })?;
                    Ok((ga, gb))
                })?
            };
            Ok(vec![Some(ga.sum_to(&sa)?), Some(gb.sum_to(&sb)?)])
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
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let m = Tensor::from_vec(vec![0.0f64, 1.0], &[2]).unwrap();
        assert_eq!(
            x.masked_fill(&m, -1e9).unwrap().to_vec_f64(),
            vec![1.0, -1e9, 3.0, -1e9]
        );
        let y = Tensor::from_vec(vec![9.0f64], &[1]).unwrap();
        assert_eq!(
            Tensor::where_(&m, &x, &y).unwrap().to_vec_f64(),
            vec![9.0, 2.0, 9.0, 4.0]
        );
    }

    #[test]
    fn gradients() {
        let mask = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[7]).unwrap();
        check_op(
            "masked_fill",
            |t| t[0].masked_fill(&mask, -3.0),
            &[rand(&[3, 7], 81)],
        );
        let cond = Tensor::from_vec(vec![1.0f64, 0.0, 1.0], &[3, 1]).unwrap();
        check_op(
            "where",
            |t| Tensor::where_(&cond, &t[0], &t[1]),
            &[rand(&[3, 5], 82), rand(&[5], 83)],
        );
    }
}
