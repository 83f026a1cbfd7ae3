//! The reference LayerNorm on the device (unbiased std, eps added to the std).

use super::{device_of, output, with_buffer_mut, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::layernorm as ln;
use crate::tensor::Tensor;

/// `y`, and the per-row mean and std `[rows]` that the backward needs (no graph).
pub(crate) fn layer_norm(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    n: usize,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dev = device_of(x)?;
    let rows = x.numel() / n;
    with_cuda_float!(x.dtype(), "layer_norm", T => {
        let mut mean = dev.alloc::<T>(rows)?;
        let mut std = dev.alloc::<T>(rows)?;
        let y = with_dense::<T, _>(x, "layer_norm", |xv| {
            with_dense::<T, _>(a, "layer_norm", |av| {
                with_dense::<T, _>(b, "layer_norm", |bv| {
                    output::<T>(&dev, x.shape(), |o| {
                        ln::forward(&dev, o, Some((mean.view_mut(), std.view_mut())), xv, av, bv, rows, n, eps)
                    })
                })
            })
        })?;
        let wrap = |buf| Tensor::from_storage(crate::tensor::Storage::Cuda(<T as crate::cuda::CudaFloat>::wrap(buf)), &[rows]);
        Ok((y, wrap(mean)?, wrap(std)?))
    })
}

/// `(∂x, ∂a, ∂b)` from the output gradient `g`, the input `x`, the gain `a` and the saved
/// statistics.
pub(crate) fn layer_norm_backward(
    g: &Tensor,
    x: &Tensor,
    a: &Tensor,
    mean: &Tensor,
    std: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dev = device_of(g)?;
    let n = a.numel();
    let rows = x.numel() / n;
    with_cuda_float!(g.dtype(), "layer_norm", T => {
        // Fresh parameter gradients, overwritten by the kernels (no zeroing first).
        let ga = output::<T>(&dev, &[n], |_| Ok(()))?;
        let gb = output::<T>(&dev, &[n], |_| Ok(()))?;
        let gx = with_dense::<T, _>(g, "layer_norm", |gv| {
            with_dense::<T, _>(x, "layer_norm", |xv| {
                with_dense::<T, _>(a, "layer_norm", |av| {
                    with_dense::<T, _>(mean, "layer_norm", |mv| {
                        with_dense::<T, _>(std, "layer_norm", |sv| {
                            with_buffer_mut::<T, _>(&ga, "layer_norm", |gab| {
                                with_buffer_mut::<T, _>(&gb, "layer_norm", |gbb| {
                                    output::<T>(&dev, x.shape(), |o| {
                                        ln::backward(&dev, ln::ParamGrads::Overwrite, o, gab.view_mut(), gbb.view_mut(), gv, xv, av, mv, sv, rows, n, eps)
                                    })
                                })
                            })
                        })
                    })
                })
            })
        })?;
        Ok((gx, ga, gb))
    })
}
