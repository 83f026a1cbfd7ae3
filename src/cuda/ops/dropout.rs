//! Inverted dropout on the device, with the CPU's masks: element `i` uses word `base + i` of
//! the generator's stream (see `src/ops/dropout.rs`); the mask is regenerated for the
//! backward from the same `(seed, stream, offset)`, never stored.

use super::{device_of, output, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::kernels::dropout as k;
use crate::rng::PhiloxState;
use crate::tensor::Tensor;

/// `x` with each element kept (and scaled by `1/(1−p)`) or zeroed by the words of `state`'s
/// stream from `state.offset` on (no graph; the caller advances the generator).
pub(crate) fn apply(x: &Tensor, p: f64, state: PhiloxState) -> Result<Tensor> {
    let dev = device_of(x)?;
    with_cuda_float!(x.dtype(), "dropout", T => {
        with_dense::<T, _>(x, "dropout", |xv| {
            output::<T>(&dev, x.shape(), |o| k::dropout(&dev, o, xv, p, state))
        })
    })
}

/// [`apply`] to `relu(x)`, in one pass (no graph).
pub(crate) fn apply_relu(x: &Tensor, p: f64, state: PhiloxState) -> Result<Tensor> {
    let dev = device_of(x)?;
    with_cuda_float!(x.dtype(), "relu_dropout", T => {
        with_dense::<T, _>(x, "relu_dropout", |xv| {
            output::<T>(&dev, x.shape(), |o| k::relu_dropout(&dev, o, xv, p, state))
        })
    })
}

/// `a + apply(x)` in one pass (no graph); `a` and `x` have one shape.
pub(crate) fn apply_add(a: &Tensor, x: &Tensor, p: f64, state: PhiloxState) -> Result<Tensor> {
    let dev = device_of(x)?;
    with_cuda_float!(x.dtype(), "add_dropout", T => {
        with_dense::<T, _>(a, "add_dropout", |av| {
            with_dense::<T, _>(x, "add_dropout", |xv| {
                output::<T>(&dev, x.shape(), |o| k::add_dropout(&dev, o, av, xv, p, state))
            })
        })
    })
}

/// The backward of [`apply_relu`] from its output `y`: `g · scale` where `y > 0`, else 0.
pub(crate) fn relu_backward(g: &Tensor, y: &Tensor, scale: f64) -> Result<Tensor> {
    super::binary(
        "relu_dropout",
        g,
        y,
        crate::cuda::kernels::elementwise::Binary::ReluScaleBwd(scale),
    )
}
