//! Integer indexing on the device: `index_select` and its adjoint, `gather_last` and its
//! adjoint. Indices come from the host (token ids, beam parents) and are uploaded per call,
//! the ops checking their range on the host first, or (`gather_last`) were picked on the
//! device ([`Ids`]: the decoding loop's words) and are read where they are.

use super::{device_of, output, upload_ids, with_buffer_mut, with_cuda_float, with_dense, zeros};
use crate::Result;
use crate::cuda::kernels::embedding as k;
use crate::tensor::{Ids, Tensor};

/// `x` viewed as `dims = [outer, len, inner]`, the slices `ids` of the middle axis, shaped
/// `out_shape` (no graph).
pub(crate) fn index_select(
    x: &Tensor,
    dims: [usize; 3],
    ids: &[usize],
    out_shape: &[usize],
) -> Result<Tensor> {
    let dev = device_of(x)?;
    let ids_d = upload_ids(&dev, "index_select", ids)?;
    with_cuda_float!(x.dtype(), "index_select", T => {
        with_dense::<T, _>(x, "index_select", |xv| {
            output::<T>(&dev, out_shape, |o| {
                if dims[0] == 1 && dims[2] > 0 {
                    // Rows of a table (the embedding): one thread per output element.
                    k::forward(&dev, o, xv, ids_d.view(), dims[1], dims[2])
                } else {
                    k::index_select(&dev, o, xv, ids_d.view(), dims)
                }
            })
        })
    })
}

/// `index_select`'s adjoint: zeros of `in_shape` (viewed as `dims`) with the slices of `g`
/// added at `ids` (repeats add up, in order).
pub(crate) fn index_add(
    g: &Tensor,
    dims: [usize; 3],
    ids: &[usize],
    in_shape: &[usize],
) -> Result<Tensor> {
    let dev = device_of(g)?;
    let ids_d = upload_ids(&dev, "index_add", ids)?;
    with_cuda_float!(g.dtype(), "index_select", T => {
        let out = zeros::<T>(&dev, in_shape)?;
        with_dense::<T, _>(g, "index_select", |gv| {
            with_buffer_mut::<T, _>(&out, "index_select", |o| {
                k::index_add(&dev, o.view_mut(), gv, ids_d.view(), dims)
            })
        })?;
        Ok(out)
    })
}

/// `out[r] = x[r, ids[r]]` for `x` with rows of `cols`, shaped `out_shape` (no graph).
pub(crate) fn gather_last(
    x: &Tensor,
    ids: &Ids,
    cols: usize,
    out_shape: &[usize],
) -> Result<Tensor> {
    let dev = device_of(x)?;
    let ids_d = super::ids_on(&dev, "gather_last", ids)?;
    with_cuda_float!(x.dtype(), "gather_last", T => {
        with_dense::<T, _>(x, "gather_last", |xv| {
            output::<T>(&dev, out_shape, |o| k::gather_last(&dev, o, xv, ids_d.view(), cols))
        })
    })
}

/// `gather_last`'s adjoint: `g[r]` at `[r, ids[r]]` of a zero tensor of `in_shape`.
pub(crate) fn scatter_last(
    g: &Tensor,
    ids: &Ids,
    cols: usize,
    in_shape: &[usize],
) -> Result<Tensor> {
    let dev = device_of(g)?;
    let ids_d = super::ids_on(&dev, "gather_last", ids)?;
    with_cuda_float!(g.dtype(), "gather_last", T => {
        with_dense::<T, _>(g, "gather_last", |gv| {
            output::<T>(&dev, in_shape, |o| k::scatter_last(&dev, o, gv, ids_d.view(), cols))
        })
    })
}
