//! Ops that move elements without computing: views that share storage (reshape of dense data,
//! permute, narrow, broadcast) and copies (concat).
//!
//! Backward:
//! - reshape: reshape the gradient back;
//! - permute: permute the gradient by the inverse permutation;
//! - narrow: the gradient placed into zeros of the input's shape;
//! - broadcast_to: the gradient summed back to the input's shape;
//! - concat: each input receives its slice of the gradient.
//!
//! Views work on any device (only the layout changes). On a CUDA device the copies (concat,
//! narrow's adjoint, `contiguous`) are strided-copy kernels.

use crate::autograd::Grad;
#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Layout, Tensor, numel, on_cuda, resolve_axis};
use crate::{Error, Result, with_float};

impl Tensor {
    fn view(&self, layout: Layout) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), layout)
    }

    /// The same elements with a new shape (one dimension may be `usize::MAX`, inferred is not
    /// supported: give every size). A view when the data is dense, a copy otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.shape(), shape],
                "the same number of elements",
            ));
        }
        let src = if self.is_contiguous() {
            self.clone()
        } else {
            self.contiguous()?
        };
        let out = src.view(Layout::new(
            shape.to_vec(),
            crate::tensor::contiguous_strides(shape),
            src.layout().offset(),
        ));
        let orig = self.shape().to_vec();
        Ok(out.record("reshape", &[&src], move |g| {
            Ok(vec![Some(g.reshape(&orig)?)])
        }))
    }

    /// A view with dimensions reordered: result dimension `i` is input dimension `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let out = self.view(self.layout().permute(perm)?);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(out.record("permute", &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// A view with dimensions `a` and `b` swapped.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (
            resolve_axis("transpose", self.shape(), a)?,
            resolve_axis("transpose", self.shape(), b)?,
        );
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// A view of `len` elements from `start` along `axis`.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let ax = resolve_axis("narrow", self.shape(), axis)?;
        let out = self.view(self.layout().narrow(ax, start, len)?);
        let shape = self.shape().to_vec();
        Ok(out.record_grads("narrow", &[self], move |g| {
            Ok(vec![Some(Grad::Window {
                g: g.clone(),
                axis: ax,
                start,
                shape: shape.clone(),
            })])
        }))
    }

    /// A view repeating size-1 (or missing leading) dimensions up to `shape` (stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let out = self.view(self.layout().broadcast_to(shape)?);
        let orig = self.shape().to_vec();
        Ok(out.record("broadcast_to", &[self], move |g| {
            Ok(vec![Some(g.sum_to(&orig)?)])
        }))
    }

    /// Inserts a size-1 dimension at `axis` (0..=rank).
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.rank() {
            return Err(Error::shape(
                "unsqueeze",
                &[self.shape()],
                format!("axis {axis} ≤ rank"),
            ));
        }
        let mut s = self.shape().to_vec();
        s.insert(axis, 1);
        self.reshape(&s)
    }

    /// Removes the size-1 dimension at `axis`.
    pub fn squeeze(&self, axis: isize) -> Result<Tensor> {
        let ax = resolve_axis("squeeze", self.shape(), axis)?;
        if self.shape()[ax] != 1 {
            return Err(Error::shape(
                "squeeze",
                &[self.shape()],
                format!("size 1 at axis {ax}"),
            ));
        }
        let mut s = self.shape().to_vec();
        s.remove(ax);
        self.reshape(&s)
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let first = *tensors
            .first()
            .ok_or_else(|| Error::invalid("concat: no tensors given"))?;
        let ax = resolve_axis("concat", first.shape(), axis)?;
        for t in &tensors[1..] {
            super::same_kind("concat", first, t)?;
            let ok = t.rank() == first.rank()
                && (0..first.rank()).all(|d| d == ax || t.shape()[d] == first.shape()[d]);
            if !ok {
                return Err(Error::shape(
                    "concat",
                    &[first.shape(), t.shape()],
                    format!("equal sizes except along axis {ax}"),
                ));
            }
        }
        let mut shape = first.shape().to_vec();
        shape[ax] = tensors.iter().map(|t| t.shape()[ax]).sum();
        let outer = numel(&shape[..ax]);
        let out = if first.is_cuda() {
            on_cuda!(gpu::concat(tensors, ax, &shape))?
        } else {
            with_float!(first.dtype(), "concat", T => {
            let mut out: Vec<T> = Vec::with_capacity(numel(&shape));
            // Each input contributes a contiguous block of (its axis length × inner) per
            // outer index; gather the inputs dense once, then interleave the blocks.
            let dense: Vec<Vec<T>> = tensors
                .iter()
                .map(|t| t.with_slice::<T, _>("concat", |d| d.to_vec()))
                .collect::<Result<_>>()?;
            let blocks: Vec<usize> = tensors.iter().map(|t| numel(&t.shape()[ax..])).collect();
            for o in 0..outer {
                for (d, &b) in dense.iter().zip(&blocks) {
                    out.extend_from_slice(&d[o * b..(o + 1) * b]);
                }
            }
            Tensor::from_vec(out, &shape)
            })?
        };
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[ax]).collect();
        Ok(out.record("concat", tensors, move |g| {
            if g.is_cuda() {
                // One launch for every input's gradient (dense copies, as below).
                let pieces: Vec<Tensor> = on_cuda!(gpu::split(g, ax, &sizes))?;
                return Ok(pieces.into_iter().map(Some).collect());
            }
            let mut start = 0;
            let mut grads = Vec::with_capacity(sizes.len());
            for &n in &sizes {
                grads.push(Some(g.narrow(ax as isize, start, n)?.contiguous()?));
                start += n;
            }
            Ok(grads)
        }))
    }

    /// Views of consecutive pieces of the given sizes along `axis`.
    pub fn split(&self, sizes: &[usize], axis: isize) -> Result<Vec<Tensor>> {
        let ax = resolve_axis("split", self.shape(), axis)?;
        if sizes.iter().sum::<usize>() != self.shape()[ax] {
            return Err(Error::shape(
                "split",
                &[self.shape(), sizes],
                format!("sizes summing to axis {ax}"),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let piece = self.narrow(ax as isize, start, n);
                start += n;
                piece
            })
            .collect()
    }

    /// `n` equal views along `axis` (the axis must divide evenly).
    pub fn chunk(&self, n: usize, axis: isize) -> Result<Vec<Tensor>> {
        let len = self.dim(axis)?;
        if n == 0 || len % n != 0 {
            return Err(Error::shape(
                "chunk",
                &[self.shape()],
                format!("axis divisible into {n} chunks"),
            ));
        }
        self.split(&vec![len / n; n], axis)
    }
}

/// Zeros of `shape` with `g` written at `start` along `axis` (the adjoint of narrow).
pub(crate) fn pad_into(g: &Tensor, shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
    if g.is_cuda() {
        return on_cuda!(gpu::pad_into(g, shape, axis, start));
    }
    with_float!(g.dtype(), "narrow", T => {
        let mut out = vec![T::ZERO; numel(shape)];
        let window = Layout::contiguous(shape).narrow(axis, start, g.shape()[axis])?;
        g.with_slice::<T, _>("narrow", |gv| {
            for (p, &v) in window.positions().zip(gv) {
                out[p] = v;
            }
        })?;
        Tensor::from_vec(out, shape)
    })
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;
    use crate::tensor::Tensor;

    #[test]
    fn views_share_storage() {
        let x = rand(&[2, 3, 4], 1);
        let t = x.permute(&[2, 0, 1]).unwrap();
        assert!(t.same_storage(&x));
        assert_eq!(t.shape(), &[4, 2, 3]);
        let n = x.narrow(2, 1, 2).unwrap();
        assert!(n.same_storage(&x));
        let v = x.to_vec_f64();
        assert_eq!(n.to_vec_f64()[0], v[1]);
        assert_eq!(t.to_vec_f64()[1], v[4]); // t[0,0,1] = x[0,1,0]
        // Reshape of a non-contiguous view copies.
        let r = t.reshape(&[8, 3]).unwrap();
        assert!(!r.same_storage(&x));
        assert_eq!(r.to_vec_f64(), t.to_vec_f64());
    }

    #[test]
    fn concat_split_round_trip() {
        let a = rand(&[2, 3], 1);
        let b = rand(&[2, 5], 2);
        let c = Tensor::concat(&[&a, &b], 1).unwrap();
        assert_eq!(c.shape(), &[2, 8]);
        let parts = c.split(&[3, 5], 1).unwrap();
        assert_eq!(parts[0].to_vec_f64(), a.to_vec_f64());
        assert_eq!(parts[1].to_vec_f64(), b.to_vec_f64());
        assert!(Tensor::concat(&[&a, &rand(&[3, 3], 3)], 1).is_err());
        assert!(c.chunk(3, 1).is_err());
        assert_eq!(c.chunk(2, 1).unwrap()[1].shape(), &[2, 4]);
    }

    #[test]
    fn errors_name_shapes() {
        let e = rand(&[2, 3], 1).reshape(&[4, 2]).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[4, 2]"), "{e}");
        assert!(rand(&[2, 3], 1).narrow(1, 2, 2).is_err());
        assert!(rand(&[2, 3], 1).broadcast_to(&[3, 3]).is_err());
    }

    #[test]
    fn gradients() {
        let x = rand(&[3, 5, 7], 31);
        check_op("reshape", |t| t[0].reshape(&[15, 7]), &[x.clone()]);
        check_op(
            "permute",
            |t| t[0].permute(&[2, 0, 1])?.contiguous(),
            &[x.clone()],
        );
        check_op("narrow", |t| t[0].narrow(1, 1, 3), &[x.clone()]);
        check_op(
            "broadcast_to",
            |t| t[0].broadcast_to(&[4, 3, 5, 7]),
            &[x.clone()],
        );
        check_op(
            "broadcast_to",
            |t| t[0].broadcast_to(&[2, 3, 1, 7]),
            &[rand(&[3, 1, 7], 32)],
        );
        check_op(
            "concat",
            |t| Tensor::concat(&[&t[0], &t[1]], 1),
            &[x.clone(), rand(&[3, 1, 7], 33)],
        );
        check_op("narrow", |t| Ok(t[0].chunk(5, 1)?[3].clone()), &[x.clone()]);
    }
}
