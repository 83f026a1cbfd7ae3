//! The reference LayerNorm (AoANet's `TransformerModel.LayerNorm`, AOANET.md 1.8), which is
//! not `nn.LayerNorm`: `y = a ⊙ (x − μ) / (σ + ε) + b` with the **unbiased** standard deviation
//! `σ = √(Σ(x − μ)² / (n − 1))` and `ε` **added to σ** (1e-6 in AoANet).
//!
//! Backward, per row, with `d = x − μ`, `r = 1 / (σ + ε)`, `x̂ = d·r`, `h = g ⊙ a`:
//! ```text
//! ∂x̂_i/∂x_k = r(δ_ik − 1/n) − r² d_i ∂σ/∂x_k,   ∂σ/∂x_k = d_k / ((n − 1) σ)
//! ∂x_k = r (h_k − mean(h)) − r² d_k (Σ_i h_i d_i) / ((n − 1) σ)
//! ∂a = Σ_rows g ⊙ x̂,   ∂b = Σ_rows g
//! ```
//! A constant row has `σ = 0` and `d = 0`; the second term is then 0 (its limit), where
//! PyTorch's formula would give 0/0. AoANet feeds exact-zero padded regions to the first
//! refiner LayerNorm, so this matters: a NaN there would poison the whole batch.
//!
//! On a CUDA device: `kernels/layernorm.cu` (the same formulas, the same zero-std rule); the
//! forward saves each row's mean and std on the device for the backward.

#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Tensor};
use crate::{Error, Result, with_float};

/// Per-row statistics saved by the forward pass.
struct RowStats<T> {
    mean: Vec<T>,
    std: Vec<T>,
}

fn forward_rows<T: Float>(x: &[T], a: &[T], b: &[T], n: usize, eps: T) -> (Vec<T>, RowStats<T>) {
    let rows = x.len() / n;
    let mut out = vec![T::ZERO; x.len()];
    let mut stats = RowStats {
        mean: Vec::with_capacity(rows),
        std: Vec::with_capacity(rows),
    };
    let inv_n = T::ONE / T::from_f64(n as f64);
    let inv_nm1 = T::ONE / T::from_f64((n - 1) as f64);
    for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = src.iter().copied().sum::<T>() * inv_n;
        let var = src.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() * inv_nm1;
        let std = var.sqrt();
        let r = T::ONE / (std + eps);
        for j in 0..n {
            dst[j] = a[j] * ((src[j] - mean) * r) + b[j];
        }
        stats.mean.push(mean);
        stats.std.push(std);
    }
    (out, stats)
}

impl Tensor {
    /// The reference LayerNorm over the last axis with gain `a` and bias `b` (both `[n]`).
    pub fn layer_norm(&self, a: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        let n = *self.shape().last().unwrap_or(&0);
        if n < 2 || a.shape() != [n] || b.shape() != [n] {
            return Err(Error::shape(
                "layer_norm",
                &[self.shape(), a.shape(), b.shape()],
                "x [..., n] with n ≥ 2 and gain, bias [n]",
            ));
        }
        super::same_kind("layer_norm", self, a)?;
        super::same_kind("layer_norm", self, b)?;
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            let (out, mean, std) = gpu::layer_norm(self, a, b, n, eps)?;
            let (x, a_saved) = (self.clone(), a.clone());
            return Ok(out.record("layer_norm", &[self, a, b], move |g| {
                let (gx, ga, gb) = gpu::layer_norm_backward(g, &x, &a_saved, &mean, &std, eps)?;
                Ok(vec![Some(gx), Some(ga), Some(gb)])
            }));
        }
        let (out, mean, std) = with_float!(self.dtype(), "layer_norm", T => {
            let (v, s) = self.with_slice::<T, _>("layer_norm", |x| {
                a.with_slice::<T, _>("layer_norm", |av| {
                    b.with_slice::<T, _>("layer_norm", |bv| forward_rows(x, av, bv, n, T::from_f64(eps)))
                })
            })???;
            let mean: Vec<f64> = s.mean.iter().map(|m| m.to_f64()).collect();
            let std: Vec<f64> = s.std.iter().map(|m| m.to_f64()).collect();
            Ok((Tensor::from_vec(v, self.shape())?, mean, std))
        })?;
        let (x, a_saved) = (self.clone(), a.clone());
        Ok(out.record("layer_norm", &[self, a, b], move |g| {
            with_float!(g.dtype(), "layer_norm", T => {
                let mut gx = vec![T::ZERO; x.numel()];
                let mut ga = vec![T::ZERO; n];
                let mut gb = vec![T::ZERO; n];
                let inv_n = T::ONE / T::from_f64(n as f64);
                let inv_nm1 = T::ONE / T::from_f64((n - 1) as f64);
                let eps = T::from_f64(eps);
                x.with_slice::<T, _>("layer_norm", |xv| {
                    g.with_slice::<T, _>("layer_norm", |gv| {
                        a_saved.with_slice::<T, _>("layer_norm", |av| {
                            let mut h = vec![T::ZERO; n];
                            for (row, ((xr, gr), gxr)) in xv.chunks_exact(n).zip(gv.chunks_exact(n)).zip(gx.chunks_exact_mut(n)).enumerate() {
                                let (mean, std) = (T::from_f64(mean[row]), T::from_f64(std[row]));
                                let r = T::ONE / (std + eps);
                                let mut h_mean = T::ZERO;
                                let mut h_dot_d = T::ZERO;
                                for j in 0..n {
                                    let d = xr[j] - mean;
                                    h[j] = gr[j] * av[j];
                                    h_mean += h[j];
                                    h_dot_d += h[j] * d;
                                    ga[j] += gr[j] * d * r;
                                    gb[j] += gr[j];
                                }
                                h_mean *= inv_n;
                                let coef = if std > T::ZERO { r * r * h_dot_d * inv_nm1 / std } else { T::ZERO };
                                for j in 0..n {
                                    gxr[j] = r * (h[j] - h_mean) - coef * (xr[j] - mean);
                                }
                            }
                        })
                    })
                })???;
                Ok(vec![
                    Some(Tensor::from_vec(gx, x.shape())?),
                    Some(Tensor::from_vec(ga, &[n])?),
                    Some(Tensor::from_vec(gb, &[n])?),
                ])
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;
    use crate::tensor::{DType, Tensor};

    #[test]
    fn matches_the_reference_formula() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 4.0], &[1, 3]).unwrap();
        let (a, b) = (
            Tensor::ones(&[3], DType::F64),
            Tensor::zeros(&[3], DType::F64),
        );
        let y = x.layer_norm(&a, &b, 1e-6).unwrap().to_vec_f64();
        let mean = 7.0 / 3.0;
        let std =
            (((1.0f64 - mean).powi(2) + (2.0 - mean).powi(2) + (4.0 - mean).powi(2)) / 2.0).sqrt();
        assert!((y[0] - (1.0 - mean) / (std + 1e-6)).abs() < 1e-15);
    }

    #[test]
    fn constant_rows_give_finite_gradients() {
        let x = Tensor::zeros(&[2, 4], DType::F64).requiring_grad();
        let a = rand(&[4], 1).requiring_grad();
        let b = rand(&[4], 2).requiring_grad();
        let y = x.layer_norm(&a, &b, 1e-6).unwrap();
        assert_eq!(y.to_vec_f64()[..4], b.to_vec_f64()[..]);
        y.mul(&rand(&[2, 4], 3))
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(x.grad().unwrap().all_finite().unwrap());
    }

    #[test]
    fn gradients() {
        // n = 2 is degenerate (x̂ = ±1/√2 whatever x is, gradients ~ε): start at 3.
        for shape in [vec![3], vec![7, 33], vec![2, 3, 5]] {
            let n = *shape.last().unwrap();
            check_op(
                "layer_norm",
                |t| t[0].layer_norm(&t[1], &t[2], 1e-6),
                &[rand(&shape, 61), rand(&[n], 62), rand(&[n], 63)],
            );
        }
        assert!(
            rand(&[3, 1], 1)
                .layer_norm(&rand(&[1], 2), &rand(&[1], 3), 1e-6)
                .is_err()
        );
    }
}
