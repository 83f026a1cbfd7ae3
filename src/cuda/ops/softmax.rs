//! Softmax and log-softmax over the last axis on the device.

use super::{device_of, output, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::softmax as sm;
use crate::tensor::Tensor;

/// Row-wise softmax (`log = false`) or log-softmax over rows of `len` (no graph).
pub(crate) fn softmax(x: &Tensor, len: usize, log: bool) -> Result<Tensor> {
    let dev = device_of(x)?;
    let rows = x.numel() / len.max(1);
    with_cuda_float!(x.dtype(), "softmax", T => {
        with_dense::<T, _>(x, "softmax", |xv| {
            output::<T>(&dev, x.shape(), |o| sm::forward(&dev, o, xv, rows, len, log))
        })
    })
}

/// `∂x` from the saved output `y` and the output gradient `g`.
pub(crate) fn softmax_backward(g: &Tensor, y: &Tensor, len: usize, log: bool) -> Result<Tensor> {
    let dev = device_of(g)?;
    let rows = g.numel() / len.max(1);
    with_cuda_float!(g.dtype(), "softmax", T => {
        with_dense::<T, _>(g, "softmax", |gv| {
            with_dense::<T, _>(y, "softmax", |yv| {
                output::<T>(&dev, g.shape(), |o| sm::backward(&dev, o, yv, gv, rows, len, log))
            })
        })
    })
}
