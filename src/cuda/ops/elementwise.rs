//! Unary and broadcasting binary ops on the device (`Tensor::add`, `exp`, `masked_fill`, ...,
//! and the elementwise backward formulas of `src/ops/unary.rs`).

use super::{bcast, device_of, output, with_buffer, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::elementwise::{self as ew, Binary, Unary};
use crate::tensor::{Tensor, broadcast_shapes};

/// `op(x)` elementwise into a new dense tensor.
pub(crate) fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    let dev = device_of(x)?;
    with_cuda_float!(x.dtype(), "unary", T => {
        with_dense::<T, _>(x, "unary", |xv| {
            output::<T>(&dev, x.shape(), |o| ew::unary(&dev, o, xv, op))
        })
    })
}

/// `op(a, b)` with NumPy broadcasting, reading both operands through their strides (no
/// copies), into a new dense tensor. `a` and `b` must share dtype and device (the ops check).
pub(crate) fn binary(name: &'static str, a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
    crate::ops::same_kind(name, a, b)?;
    let dev = device_of(a)?;
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    let la = a.layout().broadcast_to(&shape)?;
    let lb = b.layout().broadcast_to(&shape)?;
    let bc = bcast(name, &shape, la.strides(), lb.strides())?;
    with_cuda_float!(a.dtype(), name, T => {
        with_buffer::<T, _>(a, name, |ab| {
            with_buffer::<T, _>(b, name, |bb| {
                output::<T>(&dev, &shape, |o| {
                    ew::binary(&dev, o, ab.slice(la.offset()..)?, bb.slice(lb.offset()..)?, op, bc)
                })
            })
        })
    })
}
