//! Reductions: sum, mean and max over one axis or over everything; argmax; and `sum_to`, the
//! adjoint of broadcasting.
//!
//! Backward:
//! - sum over an axis: the gradient is broadcast back along the axis;
//! - mean: the same divided by the axis length;
//! - max: the gradient goes to the first position holding the maximum (as PyTorch's
//!   `max(dim)`), zero elsewhere;
//! - sum_to (summing broadcast dimensions away): the gradient is broadcast back.
//!
//! On a CUDA device: `reduce.cu` (a block per row for the last axis, a thread per output
//! otherwise); max saves its argmax on the device for the backward's scatter.

#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Layout, Tensor, numel, on_cuda, resolve_axis};
use crate::{Error, Result, with_float};

/// Where `max_axis` found each maximum, kept for its backward.
enum ArgMax {
    /// On the host: one index per output element.
    Host(Vec<usize>),
    /// On the device (feature `cuda`).
    #[cfg(feature = "cuda")]
    Device(gpu::MaxIndex),
}

/// Splits a contiguous `shape` around `axis` into (outer, axis length, inner).
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if keepdim {
        s[axis] = 1;
    } else {
        s.remove(axis);
    }
    s
}

fn sum_axis_kernel<T: Float>(x: &[T], outer: usize, len: usize, inner: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; outer * inner];
    for o in 0..outer {
        let dst = &mut out[o * inner..(o + 1) * inner];
        for a in 0..len {
            let src = &x[(o * len + a) * inner..(o * len + a + 1) * inner];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
    out
}

/// Max over the axis and the index of its first occurrence.
fn max_axis_kernel<T: Float>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
) -> (Vec<T>, Vec<usize>) {
    let mut vals = vec![T::ZERO; outer * inner];
    let mut idx = vec![0usize; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut best = x[o * len * inner + i];
            let mut at = 0;
            for a in 1..len {
                let v = x[(o * len + a) * inner + i];
                // NaN wins, so a NaN anywhere is visible in the result.
                if v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    at = a;
                }
            }
            vals[o * inner + i] = best;
            idx[o * inner + i] = at;
        }
    }
    (vals, idx)
}

impl Tensor {
    /// Sum over `axis` (negative counts from the end); `keepdim` keeps it with size 1.
    pub fn sum_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let ax = resolve_axis("sum_axis", self.shape(), axis)?;
        let (outer, len, inner) = split_at_axis(self.shape(), ax);
        let out_shape = reduced_shape(self.shape(), ax, keepdim);
        let out = if self.is_cuda() {
            on_cuda!(gpu::sum_axis(self, [outer, len, inner], &out_shape))?
        } else {
            with_float!(self.dtype(), "sum_axis", T => {
                let v = self.with_slice::<T, _>("sum_axis", |x| sum_axis_kernel(x, outer, len, inner))?;
                Tensor::from_vec(v, &out_shape)
            })?
        };
        let (in_shape, keep_shape) = (self.shape().to_vec(), reduced_shape(self.shape(), ax, true));
        Ok(out.record("sum_axis", &[self], move |g| {
            Ok(vec![Some(
                g.reshape(&keep_shape)?
                    .broadcast_to(&in_shape)?
                    .contiguous()?,
            )])
        }))
    }

    /// Mean over `axis`.
    pub fn mean_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let n = self.dim(axis)?;
        self.sum_axis(axis, keepdim)?.mul_scalar(1.0 / n as f64)
    }

    /// Maximum over `axis` (the gradient goes to the first maximal element).
    pub fn max_axis(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let ax = resolve_axis("max_axis", self.shape(), axis)?;
        let (outer, len, inner) = split_at_axis(self.shape(), ax);
        if len == 0 {
            return Err(Error::shape(
                "max_axis",
                &[self.shape()],
                "a non-empty axis",
            ));
        }
        let out_shape = reduced_shape(self.shape(), ax, keepdim);
        let (out, idx) = if self.is_cuda() {
            on_cuda!(
                gpu::max_axis(self, [outer, len, inner], &out_shape)
                    .map(|(v, i)| (v, ArgMax::Device(i)))
            )?
        } else {
            with_float!(self.dtype(), "max_axis", T => {
                let (v, i) = self.with_slice::<T, _>("max_axis", |x| max_axis_kernel(x, outer, len, inner))?;
                Ok((Tensor::from_vec(v, &out_shape)?, ArgMax::Host(i)))
            })?
        };
        let in_shape = self.shape().to_vec();
        Ok(out.record("max_axis", &[self], move |g| {
            // One variant without the `cuda` feature.
            #[allow(clippy::infallible_destructuring_match)]
            let idx = match idx {
                ArgMax::Host(i) => i,
                #[cfg(feature = "cuda")]
                ArgMax::Device(at) => return Ok(vec![Some(gpu::scatter_axis(g, &at, &in_shape)?)]),
            };
            // Scatter each output gradient to its argmax position.
            let gx = with_float!(g.dtype(), "max_axis", T => {
                let mut gx = vec![T::ZERO; outer * len * inner];
                g.with_slice::<T, _>("max_axis", |gv| {
                    for o in 0..outer {
                        for i in 0..inner {
                            let k = o * inner + i;
                            gx[(o * len + idx[k]) * inner + i] = gv[k];
                        }
                    }
                })?;
                Tensor::from_vec(gx, &in_shape)
            })?;
            Ok(vec![Some(gx)])
        }))
    }

    /// Sum of all elements (a 0-dimensional tensor).
    pub fn sum_all(&self) -> Result<Tensor> {
        let out = if self.is_cuda() {
            on_cuda!(gpu::sum_all(self))?
        } else {
            with_float!(self.dtype(), "sum_all", T => {
                let s = self.with_slice::<T, _>("sum_all", pairwise_sum)?;
                Tensor::from_vec(vec![s], &[])
            })?
        };
        let shape = self.shape().to_vec();
        Ok(out.record("sum_all", &[self], move |g| {
            Ok(vec![Some(g.broadcast_to(&shape)?.contiguous()?)])
        }))
    }

    /// Mean of all elements.
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.numel();
        if n == 0 {
            return Err(Error::shape(
                "mean_all",
                &[self.shape()],
                "a non-empty tensor",
            ));
        }
        self.sum_all()?.mul_scalar(1.0 / n as f64)
    }

    /// Maximum of all elements.
    pub fn max_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])?.max_axis(0, false)
    }

    /// Index of the first maximum along the last axis, per row (no gradient): greedy decoding.
    pub fn argmax_last(&self) -> Result<Vec<usize>> {
        let len = self.dim(-1)?;
        let outer = self.numel() / len.max(1);
        if self.is_cuda() {
            return on_cuda!(gpu::argmax_last(self, outer, len));
        }
        with_float!(self.dtype(), "argmax_last", T => {
            self.with_slice::<T, _>("argmax_last", |x| max_axis_kernel(x, outer, len, 1).1)
        })
    }

    /// Sums away the dimensions along which `shape` was broadcast to this tensor's shape:
    /// the adjoint of [`Tensor::broadcast_to`].
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        // Validate: `shape` must broadcast to ours.
        let target = Layout::contiguous(shape)
            .broadcast_to(self.shape())
            .map_err(|_| {
                Error::shape(
                    "sum_to",
                    &[self.shape(), shape],
                    "a shape that broadcasts to the first",
                )
            })?;
        let out = if self.is_cuda() {
            on_cuda!(gpu::sum_to(self, shape))?
        } else {
            with_float!(self.dtype(), "sum_to", T => {
            let mut acc = vec![T::ZERO; numel(shape)];
            self.with_slice::<T, _>("sum_to", |g| {
                let mut gi = 0;
                super::for_each_run(self.shape(), &[target.strides()], &[0], |p, len, s| {
                    let src = &g[gi..gi + len];
                    if s[0] == 0 {
                        acc[p[0]] += src.iter().copied().sum::<T>();
                    } else {
                        for (k, &v) in src.iter().enumerate() {
                            acc[p[0] + k * s[0]] += v;
                        }
                    }
                    gi += len;
                });
            })?;
            Tensor::from_vec(acc, shape)
            })?
        };
        let big = self.shape().to_vec();
        Ok(out.record("sum_to", &[self], move |g| {
            Ok(vec![Some(g.broadcast_to(&big)?.contiguous()?)])
        }))
    }
}

/// Sum with pairwise (cascade) blocking: error grows like log n instead of n.
fn pairwise_sum<T: Float>(x: &[T]) -> T {
    if x.len() <= 64 {
        return x.iter().copied().sum();
    }
    let mid = x.len() / 2;
    pairwise_sum(&x[..mid]) + pairwise_sum(&x[mid..])
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;
    use crate::tensor::Tensor;

    #[test]
    fn values() {
        let x = Tensor::from_vec(vec![1.0f64, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]).unwrap();
        assert_eq!(
            x.sum_axis(0, false).unwrap().to_vec_f64(),
            vec![5.0, 7.0, 9.0]
        );
        assert_eq!(x.sum_axis(-1, true).unwrap().shape(), &[2, 1]);
        assert_eq!(x.max_axis(1, false).unwrap().to_vec_f64(), vec![5.0, 6.0]);
        assert_eq!(x.argmax_last().unwrap(), vec![1, 2]);
        assert_eq!(x.mean_all().unwrap().item().unwrap(), 3.5);
        assert_eq!(x.sum_to(&[3]).unwrap().to_vec_f64(), vec![5.0, 7.0, 9.0]);
        assert_eq!(x.sum_to(&[2, 1]).unwrap().to_vec_f64(), vec![9.0, 12.0]);
        assert!(x.sum_to(&[4]).is_err());
        assert!(x.sum_axis(2, false).is_err());
    }

    #[test]
    fn gradients() {
        for shape in [vec![7], vec![3, 33], vec![2, 5, 7]] {
            let x = rand(&shape, 21);
            for axis in 0..shape.len() as isize {
                check_op("sum_axis", |t| t[0].sum_axis(axis, false), &[x.clone()]);
                check_op("sum_axis", |t| t[0].mean_axis(axis, true), &[x.clone()]);
                check_op("max_axis", |t| t[0].max_axis(axis, axis == 0), &[x.clone()]);
            }
            check_op("sum_all", |t| t[0].sum_all(), &[x.clone()]);
            check_op("max_axis", |t| t[0].max_all(), &[x.clone()]);
        }
        check_op("sum_to", |t| t[0].sum_to(&[5, 1]), &[rand(&[3, 5, 7], 22)]);
    }
}
