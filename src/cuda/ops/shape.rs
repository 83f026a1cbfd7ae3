//! Copies that move elements between layouts on the device: `concat` and `narrow`'s adjoint.

use super::{copy_into, device_of, with_cuda_float, zeros};
use crate::Result;
use crate::cuda::CudaFloat;
use crate::tensor::{Layout, Storage, Tensor, numel};

/// The inputs joined along `axis` into a new dense tensor of `shape` (validated by the
/// caller): each input is copied, through its strides, into its window of the output.
pub(crate) fn concat(tensors: &[&Tensor], axis: usize, shape: &[usize]) -> Result<Tensor> {
    let dev = device_of(tensors[0])?;
    with_cuda_float!(tensors[0].dtype(), "concat", T => {
        let mut buf = dev.alloc::<T>(numel(shape))?;
        let full = Layout::contiguous(shape);
        let mut start = 0;
        for t in tensors {
            let len = t.shape()[axis];
            copy_into::<T>(&dev, &mut buf, &full.narrow(axis, start, len)?, t)?;
            start += len;
        }
        Tensor::from_storage(Storage::Cuda(T::wrap(buf)), shape)
    })
}

/// Zeros of `shape` with `g` written at `start` along `axis` (the adjoint of `narrow`).
pub(crate) fn pad_into(g: &Tensor, shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
    let dev = device_of(g)?;
    with_cuda_float!(g.dtype(), "narrow", T => {
        let out = zeros::<T>(&dev, shape)?;
        let window = Layout::contiguous(shape).narrow(axis, start, g.shape()[axis])?;
        super::with_buffer_mut::<T, _>(&out, "narrow", |b| copy_into::<T>(&dev, b, &window, g))?;
        Ok(out)
    })
}
