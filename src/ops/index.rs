//! Integer indexing: `index_select` along an axis (and `embedding`, its row case) and
//! `gather_last`, which picks one element per row (the target log-probabilities).
//!
//! Indices are host slices: token ids and beam parents come from the host anyway.
//!
//! Backward:
//! - index_select: scatter-add of the gradient rows back to the selected positions (an index
//!   chosen twice receives the sum);
//! - gather_last: the gradient placed at the chosen element of each row, zero elsewhere.
//!
//! On a CUDA device the indices are uploaded per call and `kernels/embedding.cu` gathers and
//! scatter-adds (deterministically, in index order).

use crate::autograd::Grad;
#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Ids, Tensor, numel, on_cuda, resolve_axis};
use crate::{Error, Result, with_float};

fn check_indices(op: &'static str, ids: &[usize], len: usize) -> Result<()> {
    match ids.iter().position(|&i| i >= len) {
        Some(p) => Err(Error::invalid(format!(
            "{op}: index {} at position {p} is out of range for an axis of length {len}",
            ids[p]
        ))),
        None => Ok(()),
    }
}

impl Tensor {
    /// The slices at `ids` along `axis`, in order (repeats allowed).
    pub fn index_select(&self, axis: isize, ids: &[usize]) -> Result<Tensor> {
        let ax = resolve_axis("index_select", self.shape(), axis)?;
        let (outer, len, inner) = (
            numel(&self.shape()[..ax]),
            self.shape()[ax],
            numel(&self.shape()[ax + 1..]),
        );
        check_indices("index_select", ids, len)?;
        let mut shape = self.shape().to_vec();
        shape[ax] = ids.len();
        let out = if self.is_cuda() {
            on_cuda!(gpu::index_select(self, [outer, len, inner], ids, &shape))?
        } else {
            with_float!(self.dtype(), "index_select", T => {
            let v = self.with_slice::<T, _>("index_select", |x| {
                let mut out = Vec::with_capacity(outer * ids.len() * inner);
                for o in 0..outer {
                    for &i in ids {
                        out.extend_from_slice(&x[(o * len + i) * inner..(o * len + i + 1) * inner]);
                    }
                }
                out
            })?;
            Tensor::from_vec(v, &shape)
            })?
        };
        let (ids, in_shape) = (ids.to_vec(), self.shape().to_vec());
        Ok(out.record_grads("index_select", &[self], move |g| {
            if ax == 0 {
                // Rows of the table: deferred, so an embedding used at every step is
                // scattered once (its rows may repeat; they add up).
                return Ok(vec![Some(Grad::Rows {
                    ids: ids.clone().into(),
                    values: g.clone(),
                    shape: in_shape,
                })]);
            }
            if g.is_cuda() {
                let gx = on_cuda!(gpu::index_add(g, [outer, len, inner], &ids, &in_shape))?;
                return Ok(vec![Some(Grad::Dense(gx))]);
            }
            let gx = with_float!(g.dtype(), "index_select", T => {
                let mut gx = vec![T::ZERO; outer * len * inner];
                g.with_slice::<T, _>("index_select", |gv| {
                    for o in 0..outer {
                        for (k, &i) in ids.iter().enumerate() {
                            let src = &gv[(o * ids.len() + k) * inner..][..inner];
                            let dst = &mut gx[(o * len + i) * inner..][..inner];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d += s;
                            }
                        }
                    }
                })?;
                Tensor::from_vec(gx, &in_shape)
            })?;
            Ok(vec![Some(Grad::Dense(gx))])
        }))
    }

    /// Rows of this `[vocab, dim]` table for each id: `[ids.len(), dim]`.
    pub fn embedding(&self, ids: &[usize]) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(Error::shape(
                "embedding",
                &[self.shape()],
                "a [vocab, dim] table",
            ));
        }
        self.index_select(0, ids)
    }

    /// For each row of the last axis, the element at that row's index: `[..., C] → [...]`.
    pub fn gather_last(&self, ids: &[usize]) -> Result<Tensor> {
        self.gather_last_ids(&Ids::from(ids))
    }

    /// [`Tensor::gather_last`] with indices that may be in device memory (words picked on
    /// the GPU, read there by the kernels: no wait). Host indices are range-checked; device
    /// indices come from the device's own argmax or sampling kernels, in range by
    /// construction.
    pub fn gather_last_ids(&self, ids: &Ids) -> Result<Tensor> {
        let c = *self
            .shape()
            .last()
            .ok_or_else(|| Error::shape("gather_last", &[self.shape()], "rank ≥ 1"))?;
        let rows = self.numel() / c.max(1);
        if ids.len() != rows {
            return Err(Error::shape(
                "gather_last",
                &[self.shape(), &[ids.len()]],
                "one index per row",
            ));
        }
        let known = ids.host_if_known();
        if let Some(host) = known {
            check_indices("gather_last", host, c)?;
        }
        let shape = self.shape()[..self.rank() - 1].to_vec();
        let out = if self.is_cuda() {
            on_cuda!(gpu::gather_last(self, ids, c, &shape))?
        } else {
            let ids = ids.host()?;
            if known.is_none() {
                check_indices("gather_last", ids, c)?;
            }
            with_float!(self.dtype(), "gather_last", T => {
                let v = self.with_slice::<T, _>("gather_last", |x| {
                    ids.iter().enumerate().map(|(r, &i)| x[r * c + i]).collect::<Vec<T>>()
                })?;
                Tensor::from_vec(v, &shape)
            })?
        };
        let (ids, in_shape) = (ids.clone(), self.shape().to_vec());
        Ok(out.record("gather_last", &[self], move |g| {
            if g.is_cuda() {
                return Ok(vec![Some(on_cuda!(gpu::scatter_last(
                    g, &ids, c, &in_shape
                ))?)]);
            }
            let ids = ids.host()?;
            let gx = with_float!(g.dtype(), "gather_last", T => {
                let mut gx = vec![T::ZERO; rows * c];
                g.with_slice::<T, _>("gather_last", |gv| {
                    for (r, &i) in ids.iter().enumerate() {
                        gx[r * c + i] = gv[r];
                    }
                })?;
                Tensor::from_vec(gx, &in_shape)
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
        let w = Tensor::from_vec(vec![0.0f64, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2]).unwrap();
        assert_eq!(
            w.embedding(&[2, 0, 2]).unwrap().to_vec_f64(),
            vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]
        );
        assert_eq!(
            w.index_select(1, &[1]).unwrap().to_vec_f64(),
            vec![1.0, 11.0, 21.0]
        );
        assert_eq!(
            w.gather_last(&[1, 0, 1]).unwrap().to_vec_f64(),
            vec![1.0, 10.0, 21.0]
        );
        let e = w.embedding(&[3]).unwrap_err().to_string();
        assert!(e.contains("index 3") && e.contains("length 3"), "{e}");
        assert!(w.gather_last(&[0]).is_err());
    }

    #[test]
    fn gradients() {
        // Repeated ids exercise the scatter-add.
        check_op(
            "index_select",
            |t| t[0].embedding(&[4, 0, 4, 6, 1]),
            &[rand(&[7, 33], 71)],
        );
        check_op(
            "index_select",
            |t| t[0].index_select(1, &[2, 2, 0]),
            &[rand(&[2, 3, 5], 72)],
        );
        check_op(
            "gather_last",
            |t| t[0].gather_last(&[3, 0, 6]),
            &[rand(&[3, 7], 73)],
        );
    }
}
