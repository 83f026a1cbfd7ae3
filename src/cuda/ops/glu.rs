//! The gated linear unit on the device.

use super::{device_of, output, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::glu as k;
use crate::tensor::Tensor;

/// `glu` over a last axis of `2·half`, shaped `out_shape` (no graph).
pub(crate) fn glu(x: &Tensor, half: usize, out_shape: &[usize]) -> Result<Tensor> {
    let dev = device_of(x)?;
    let rows = x.numel() / (2 * half).max(1);
    with_cuda_float!(x.dtype(), "glu", T => {
        with_dense::<T, _>(x, "glu", |xv| output::<T>(&dev, out_shape, |o| k::forward(&dev, o, xv, rows, half)))
    })
}

/// `∂x` (shaped like `x`) from the output gradient `g`.
pub(crate) fn glu_backward(g: &Tensor, x: &Tensor, half: usize) -> Result<Tensor> {
    let dev = device_of(g)?;
    let rows = x.numel() / (2 * half).max(1);
    with_cuda_float!(g.dtype(), "glu", T => {
        with_dense::<T, _>(g, "glu", |gv| {
            with_dense::<T, _>(x, "glu", |xv| {
                output::<T>(&dev, x.shape(), |o| k::backward(&dev, o, gv, xv, rows, half))
            })
        })
    })
}
