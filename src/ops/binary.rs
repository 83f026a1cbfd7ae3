//! add, sub, mul, div with NumPy broadcasting.
//!
//! Backward: with `z = a ∘ b` broadcast to the output shape, each input's gradient is the
//! elementwise gradient summed over the dimensions along which that input was broadcast
//! ([`Tensor::sum_to`]):
//! - add: `ga = g`, `gb = g`
//! - sub: `ga = g`, `gb = −g`
//! - mul: `ga = g·b`, `gb = g·a`
//! - div: `ga = g / b`, `gb = −g·a / b² = −g·z / b`
//!
//! On a CUDA device the forward is one broadcasting kernel reading both operands through
//! their strides; the backward is the same ops.

use super::map2;
#[cfg(feature = "cuda")]
use crate::cuda::{kernels::elementwise::Binary, ops as gpu};
use crate::tensor::{Tensor, on_cuda};
use crate::{Result, with_float};

impl Tensor {
    /// `self + rhs`, broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::binary("add", self, rhs, Binary::Add))?
        } else {
            with_float!(self.dtype(), "add", T => map2::<T>("add", self, rhs, |x, y| x + y))?
        };
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(out.record("add", &[self, rhs], move |g| {
            Ok(vec![Some(g.sum_to(&sa)?), Some(g.sum_to(&sb)?)])
        }))
    }

    /// `self - rhs`, broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::binary("sub", self, rhs, Binary::Sub))?
        } else {
            with_float!(self.dtype(), "sub", T => map2::<T>("sub", self, rhs, |x, y| x - y))?
        };
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        Ok(out.record("sub", &[self, rhs], move |g| {
            Ok(vec![Some(g.sum_to(&sa)?), Some(g.neg()?.sum_to(&sb)?)])
        }))
    }

    /// `self * rhs` elementwise, broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::binary("mul", self, rhs, Binary::Mul))?
        } else {
            with_float!(self.dtype(), "mul", T => map2::<T>("mul", self, rhs, |x, y| x * y))?
        };
        let (a, b) = (self.clone(), rhs.clone());
        Ok(out.record("mul", &[self, rhs], move |g| {
            let ga = if a.requires_grad() {
                Some(g.mul(&b)?.sum_to(a.shape())?)
            } else {
                None
            };
            let gb = if b.requires_grad() {
                Some(g.mul(&a)?.sum_to(b.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// `self / rhs` elementwise, broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::binary("div", self, rhs, Binary::Div))?
        } else {
            with_float!(self.dtype(), "div", T => map2::<T>("div", self, rhs, |x, y| x / y))?
        };
        let (a, b, z) = (self.clone(), rhs.clone(), out.clone());
        Ok(out.record("div", &[self, rhs], move |g| {
            let ga = if a.requires_grad() {
                Some(g.div(&b)?.sum_to(a.shape())?)
            } else {
                None
            };
            let gb = if b.requires_grad() {
                Some(g.mul(&z)?.div(&b)?.neg()?.sum_to(b.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::{rand, rand_in};
    use crate::tensor::Tensor;

    #[test]
    fn values_broadcast() {
        let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let b = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3]).unwrap();
        assert_eq!(
            a.add(&b).unwrap().to_vec_f32(),
            vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
        );
        let c = Tensor::from_vec(vec![2.0f32, 4.0], &[2, 1]).unwrap();
        assert_eq!(
            a.div(&c).unwrap().to_vec_f32(),
            vec![0.5, 1.0, 1.5, 1.0, 1.25, 1.5]
        );
        // A transposed (strided) operand.
        let t = a.transpose(0, 1).unwrap();
        let d = Tensor::from_vec(vec![1.0f32, 1.0], &[2]).unwrap();
        assert_eq!(
            t.sub(&d).unwrap().to_vec_f32(),
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
    }

    #[test]
    fn shape_errors_name_both_shapes() {
        let e = rand(&[2, 3], 1)
            .mul(&rand(&[4], 2))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mul") && e.contains("[2, 3]") && e.contains("[4]"),
            "{e}"
        );
        let f = rand(&[2], 1).add(&rand(&[2], 1).to_dtype(crate::tensor::DType::F32).unwrap());
        assert!(f.unwrap_err().to_string().contains("dtypes"));
    }

    #[test]
    fn gradients() {
        // Odd sizes and every broadcasting pattern: same shape, row vector, column, scalar-like.
        for (sa, sb) in [
            (vec![7, 33], vec![7, 33]),
            (vec![3, 1, 7], vec![5, 1]),
            (vec![1], vec![4, 7]),
            (vec![2, 3, 4], vec![4]),
        ] {
            let (a, b) = (rand(&sa, 1), rand(&sb, 2));
            check_op("add", |x| x[0].add(&x[1]), &[a.clone(), b.clone()]);
            check_op("sub", |x| x[0].sub(&x[1]), &[a.clone(), b.clone()]);
            check_op("mul", |x| x[0].mul(&x[1]), &[a.clone(), b.clone()]);
            let b_pos = rand_in(&sb, 0.5, 2.0, 3);
            check_op("div", |x| x[0].div(&x[1]), &[a, b_pos]);
        }
    }
}
