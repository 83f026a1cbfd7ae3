//! Elementwise ops of one tensor. Each backward is one fused elementwise pass over the output
//! gradient and what the forward saved:
//! - neg: `−g`;  add_scalar: `g`;  mul_scalar(c): `c·g`
//! - exp: `g·y` (y = eˣ saved);  log: `g / x`;  sqrt: `g / (2y)`
//! - pow_scalar(p): `g·p·x^(p−1)`
//! - relu: `g·[x > 0]`;  sigmoid: `g·y(1−y)`;  tanh: `g·(1−y²)`
//! - clamp(lo, hi): `g·[lo ≤ x ≤ hi]` (PyTorch passes the gradient at the bounds too)
//!
//! On a CUDA device each forward is one `unary` kernel and each backward one `binary` kernel
//! with the same formula (`kernels/elementwise.cu`).

use super::{map1, map2};
#[cfg(feature = "cuda")]
use crate::cuda::{
    kernels::elementwise::{Binary, Unary},
    ops as gpu,
};
use crate::tensor::{Float, Tensor, on_cuda};
use crate::{Error, Result, with_float};

impl Tensor {
    /// `−x`.
    pub fn neg(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Neg))?
        } else {
            with_float!(self.dtype(), "neg", T => map1::<T>("neg", self, |x| -x))?
        };
        Ok(out.record("neg", &[self], |g| Ok(vec![Some(g.neg()?)])))
    }

    /// `x + c`.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Shift(c)))?
        } else {
            with_float!(self.dtype(), "add_scalar", T => {
                let c = T::from_f64(c);
                map1::<T>("add_scalar", self, move |x| x + c)
            })?
        };
        Ok(out.record("add_scalar", &[self], |g| Ok(vec![Some(g.clone())])))
    }

    /// `c·x`.
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Scale(c)))?
        } else {
            with_float!(self.dtype(), "mul_scalar", T => {
                let c = T::from_f64(c);
                map1::<T>("mul_scalar", self, move |x| x * c)
            })?
        };
        Ok(out.record("mul_scalar", &[self], move |g| {
            Ok(vec![Some(g.mul_scalar(c)?)])
        }))
    }

    /// `eˣ`.
    pub fn exp(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Exp))?
        } else {
            with_float!(self.dtype(), "exp", T => map1::<T>("exp", self, |x| x.exp()))?
        };
        let y = out.clone();
        Ok(out.record("exp", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("exp", g, &y, Binary::Mul))?
            } else {
                with_float!(g.dtype(), "exp", T => map2::<T>("exp", g, &y, |g, y| g * y))?
            })])
        }))
    }

    /// `ln x`.
    pub fn log(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Log))?
        } else {
            with_float!(self.dtype(), "log", T => map1::<T>("log", self, |x| x.ln()))?
        };
        let x = self.clone();
        Ok(out.record("log", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("log", g, &x, Binary::Div))?
            } else {
                with_float!(g.dtype(), "log", T => map2::<T>("log", g, &x, |g, x| g / x))?
            })])
        }))
    }

    /// `√x`.
    pub fn sqrt(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Sqrt))?
        } else {
            with_float!(self.dtype(), "sqrt", T => map1::<T>("sqrt", self, |x| x.sqrt()))?
        };
        let y = out.clone();
        Ok(out.record("sqrt", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("sqrt", g, &y, Binary::ScaledDiv(0.5)))?
            } else {
                with_float!(g.dtype(), "sqrt", T => {
                    let half = T::from_f64(0.5);
                    map2::<T>("sqrt", g, &y, move |g, y| g * half / y)
                })?
            })])
        }))
    }

    /// `x^p` for a constant exponent.
    pub fn pow_scalar(&self, p: f64) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Pow(p)))?
        } else {
            with_float!(self.dtype(), "pow_scalar", T => {
                let p = T::from_f64(p);
                map1::<T>("pow_scalar", self, move |x| x.powf(p))
            })?
        };
        let x = self.clone();
        Ok(out.record("pow_scalar", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("pow_scalar", g, &x, Binary::PowBwd(p)))?
            } else {
                with_float!(g.dtype(), "pow_scalar", T => {
                    let (p, pm1) = (T::from_f64(p), T::from_f64(p - 1.0));
                    map2::<T>("pow_scalar", g, &x, move |g, x| g * p * x.powf(pm1))
                })?
            })])
        }))
    }

    /// `max(x, 0)`.
    pub fn relu(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Relu))?
        } else {
            with_float!(self.dtype(), "relu", T => map1::<T>("relu", self, |x| if x > T::ZERO { x } else { T::ZERO }))?
        };
        let y = out.clone();
        Ok(out.record("relu", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("relu", g, &y, Binary::ReluBwd))?
            } else {
                with_float!(g.dtype(), "relu", T => {
                    map2::<T>("relu", g, &y, |g, y| if y > T::ZERO { g } else { T::ZERO })
                })?
            })])
        }))
    }

    /// `1 / (1 + e^−x)`.
    pub fn sigmoid(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Sigmoid))?
        } else {
            with_float!(self.dtype(), "sigmoid", T => map1::<T>("sigmoid", self, |x| x.sigmoid()))?
        };
        let y = out.clone();
        Ok(out.record("sigmoid", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("sigmoid", g, &y, Binary::SigmoidBwd))?
            } else {
                with_float!(g.dtype(), "sigmoid", T => {
                    map2::<T>("sigmoid", g, &y, |g, y| g * y * (T::ONE - y))
                })?
            })])
        }))
    }

    /// `tanh x`.
    pub fn tanh(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Tanh))?
        } else {
            with_float!(self.dtype(), "tanh", T => map1::<T>("tanh", self, |x| x.tanh()))?
        };
        let y = out.clone();
        Ok(out.record("tanh", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("tanh", g, &y, Binary::TanhBwd))?
            } else {
                with_float!(g.dtype(), "tanh", T => {
                    map2::<T>("tanh", g, &y, |g, y| g * (T::ONE - y * y))
                })?
            })])
        }))
    }

    /// `min(max(x, lo), hi)`.
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        if lo > hi || lo.is_nan() || hi.is_nan() {
            return Err(Error::invalid(format!("clamp: bounds {lo} > {hi}")));
        }
        let out = if self.is_cuda() {
            on_cuda!(gpu::unary(self, Unary::Clamp(lo, hi)))?
        } else {
            with_float!(self.dtype(), "clamp", T => {
                let (lo, hi) = (T::from_f64(lo), T::from_f64(hi));
                map1::<T>("clamp", self, move |x| x.max(lo).min(hi))
            })?
        };
        let x = self.clone();
        Ok(out.record("clamp", &[self], move |g| {
            Ok(vec![Some(if g.is_cuda() {
                on_cuda!(gpu::binary("clamp", g, &x, Binary::ClampBwd(lo, hi)))?
            } else {
                with_float!(g.dtype(), "clamp", T => {
                    let (lo, hi) = (T::from_f64(lo), T::from_f64(hi));
                    map2::<T>("clamp", g, &x, move |g, x| if x >= lo && x <= hi { g } else { T::ZERO })
                })?
            })])
        }))
    }

    /// Whether every element is finite (neither NaN nor infinite).
    pub fn all_finite(&self) -> Result<bool> {
        if self.is_cuda() {
            return on_cuda!(gpu::all_finite(self));
        }
        with_float!(self.dtype(), "all_finite", T => self.with_slice::<T, _>("all_finite", |d| d.iter().all(|x| x.is_finite())))
    }

    /// Whether every element of every tensor is finite. On a GPU (all of `tensors` on the
    /// same device) this waits for the device once, not once per tensor: the trainer checks
    /// every gradient each step.
    pub fn all_finite_many(tensors: &[&Tensor]) -> Result<bool> {
        if tensors.first().is_some_and(|t| t.is_cuda()) {
            return on_cuda!(gpu::all_finite_many(tensors));
        }
        for t in tensors {
            if !t.all_finite()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// This one-element tensor's value ([`Tensor::item`]) and whether every element of
    /// `tensors` is finite ([`Tensor::all_finite_many`]), read together: on a GPU one copy to
    /// the host for both (a training step's loss and its gradients' check: one wait).
    pub fn item_and_all_finite(&self, tensors: &[&Tensor]) -> Result<(f64, bool)> {
        if self.is_cuda()
            && matches!(
                self.dtype(),
                crate::tensor::DType::F32 | crate::tensor::DType::F64
            )
        {
            return on_cuda!(gpu::item_and_all_finite_many(self, tensors));
        }
        Ok((self.item()?, Tensor::all_finite_many(tensors)?))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::{rand, rand_in};
    use crate::tensor::Tensor;

    #[test]
    fn all_finite_many_finds_any_bad_element() {
        let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
        let b = Tensor::from_vec(vec![3.0f64; 5], &[5]).unwrap();
        assert!(Tensor::all_finite_many(&[&a, &b]).unwrap());
        assert!(Tensor::all_finite_many(&[]).unwrap());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let c = Tensor::from_vec(vec![0.0, bad], &[2]).unwrap();
            assert!(!Tensor::all_finite_many(&[&a, &c, &b]).unwrap(), "{bad}");
        }
    }

    #[test]
    fn item_and_all_finite_reads_both() {
        let loss = Tensor::from_vec(vec![2.5f32], &[]).unwrap();
        let good = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).unwrap();
        let bad = Tensor::from_vec(vec![1.0f32, f32::NAN], &[2]).unwrap();
        assert_eq!(loss.item_and_all_finite(&[&good]).unwrap(), (2.5, true));
        assert_eq!(
            loss.item_and_all_finite(&[&good, &bad]).unwrap(),
            (2.5, false)
        );
        assert_eq!(loss.item_and_all_finite(&[]).unwrap(), (2.5, true));
        assert!(good.item_and_all_finite(&[]).is_err(), "not one element");
    }

    #[test]
    fn values() {
        let x = Tensor::from_vec(vec![-1.0f64, 0.0, 2.0], &[3]).unwrap();
        assert_eq!(x.relu().unwrap().to_vec_f64(), vec![0.0, 0.0, 2.0]);
        assert_eq!(
            x.clamp(-0.5, 1.0).unwrap().to_vec_f64(),
            vec![-0.5, 0.0, 1.0]
        );
        assert_eq!(x.sigmoid().unwrap().to_vec_f64()[1], 0.5);
        assert!((x.sigmoid().unwrap().to_vec_f64()[0] - 1.0 / (1.0 + 1f64.exp())).abs() < 1e-15);
        let big = Tensor::from_vec(vec![-1000.0f32, 1000.0], &[2])
            .unwrap()
            .sigmoid()
            .unwrap();
        assert_eq!(big.to_vec_f32(), vec![0.0, 1.0]);
        assert!(x.clamp(1.0, -1.0).is_err());
        assert!(!x.log().unwrap().all_finite().unwrap());
    }

    #[test]
    fn gradients() {
        for shape in [vec![1], vec![7], vec![3, 33]] {
            let x = rand(&shape, 11);
            let pos = rand_in(&shape, 0.2, 3.0, 12);
            check_op("neg", |t| t[0].neg(), &[x.clone()]);
            check_op("add_scalar", |t| t[0].add_scalar(0.7), &[x.clone()]);
            check_op("mul_scalar", |t| t[0].mul_scalar(-1.3), &[x.clone()]);
            check_op("exp", |t| t[0].exp(), &[x.clone()]);
            check_op("log", |t| t[0].log(), &[pos.clone()]);
            check_op("sqrt", |t| t[0].sqrt(), &[pos.clone()]);
            check_op("pow_scalar", |t| t[0].pow_scalar(2.5), &[pos.clone()]);
            check_op("relu", |t| t[0].relu(), &[x.clone()]);
            check_op(
                "sigmoid",
                |t| t[0].sigmoid(),
                &[x.clone().mul_scalar(3.0).unwrap()],
            );
            check_op("tanh", |t| t[0].tanh(), &[x.clone()]);
        }
        // Enough elements that some lie inside the bounds.
        check_op("clamp", |t| t[0].clamp(-0.5, 0.4), &[rand(&[3, 33], 13)]);
    }
}
