//! Inverted dropout on the device, with the CPU's masks: element `i` uses word `base + i` of
//! the generator's stream (see `src/ops/dropout.rs`); the mask is regenerated for the
//! backward from the same `(seed, stream, offset)`, never stored.

use super::{device_of, output, with_cuda_float, with_dense};
use crate::Result;
use crate::cuda::CudaFloat;
use crate::cuda::kernels::dropout as k;
use crate::rng::PhiloxState;
use crate::tensor::{Storage, Tensor};

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

/// `x [outer, steps, width]` with step `t`'s slice dropped by the words of `draws[t]` (no
/// graph; see [`Tensor::dropout_steps`]): one launch when the draws are of one stream and
/// equally spaced by at least a slice, else one [`apply`] per step and a concatenation.
pub(crate) fn apply_steps(x: &Tensor, p: f64, draws: &[PhiloxState]) -> Result<Tensor> {
    let dev = device_of(x)?;
    let shape = [x.shape()[0], x.shape()[1], x.shape()[2]];
    let slice = (shape[0] * shape[2]) as u64;
    if let Some(stride) = equal_spacing(draws, slice) {
        return with_cuda_float!(x.dtype(), "dropout_steps", T => {
            with_dense::<T, _>(x, "dropout_steps", |xv| {
                output::<T>(&dev, x.shape(), |o| {
                    k::dropout_steps(&dev, o, xv, shape, p, draws[0], stride)
                })
            })
        });
    }
    crate::autograd::no_grad(|| {
        let parts = draws
            .iter()
            .enumerate()
            .map(|(t, &d)| apply(&x.narrow(1, t, 1)?.contiguous()?, p, d))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::concat(&refs, 1)
    })
}

/// The words between consecutive draws when `draws` (at least one) are of one stream, equally
/// spaced and at least `slice` words apart: what one `dropout_steps` launch needs.
fn equal_spacing(draws: &[PhiloxState], slice: u64) -> Option<u64> {
    let first = draws.first()?;
    if draws.len() == 1 {
        return Some(slice);
    }
    let stride = draws[1].offset.checked_sub(first.offset)?;
    let regular = draws.iter().enumerate().all(|(t, d)| {
        d.seed == first.seed
            && d.stream == first.stream
            && Some(d.offset)
                == (t as u64)
                    .checked_mul(stride)
                    .and_then(|s| s.checked_add(first.offset))
    });
    (regular && stride >= slice).then_some(stride)
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

/// The decoder's LSTM input of one step in one launch (no graph; see
/// [`crate::ops::LstmInput`]): `[relu_dropout(table[ids]) ; base + dropout(x)]`.
pub(crate) fn lstm_input(
    table: &Tensor,
    ids: &crate::tensor::Ids,
    base: &Tensor,
    x: &Tensor,
    dims: k::LstmInputDims,
    drops: [k::HalfDropout; 2],
) -> Result<Tensor> {
    let dev = device_of(table)?;
    // Words drawn on this device are read where they are; others are uploaded.
    let ids_d = super::ids_on(&dev, "lstm_input", ids)?;
    let shape = [dims.rows, dims.embed + dims.width];
    with_cuda_float!(table.dtype(), "lstm_input", T => {
        with_dense::<T, _>(table, "lstm_input", |tv| {
            with_dense::<T, _>(base, "lstm_input", |bv| {
                with_dense::<T, _>(x, "lstm_input", |xv| {
                    output::<T>(&dev, &shape, |o| {
                        k::lstm_input(&dev, o, tv, ids_d.view(), bv, xv, dims, drops)
                    })
                })
            })
        })
    })
}

/// The three gradients of [`lstm_input`] from `g` and its output `y`, in one launch: the
/// embedding half's `[rows, E]` (to add into the table's rows), `base`'s and `x`'s
/// `[rows, D]`.
pub(crate) fn lstm_input_backward(
    g: &Tensor,
    y: &Tensor,
    dims: k::LstmInputDims,
    drops: [k::HalfDropout; 2],
) -> Result<[Tensor; 3]> {
    let dev = device_of(g)?;
    let (rows, e, d) = (dims.rows, dims.embed, dims.width);
    with_cuda_float!(g.dtype(), "lstm_input backward", T => {
        with_dense::<T, _>(g, "lstm_input backward", |gv| {
            with_dense::<T, _>(y, "lstm_input backward", |yv| {
                let mut g_emb = dev.alloc::<T>(rows * e)?;
                let mut g_base = dev.alloc::<T>(rows * d)?;
                let mut g_x = dev.alloc::<T>(rows * d)?;
                k::lstm_input_backward(
                    &dev,
                    g_emb.view_mut(),
                    g_base.view_mut(),
                    g_x.view_mut(),
                    gv,
                    yv,
                    dims,
                    drops,
                )?;
                let wrap = |b, shape: &[usize]| Tensor::from_storage(Storage::Cuda(T::wrap(b)), shape);
                Ok([wrap(g_emb, &[rows, e])?, wrap(g_base, &[rows, d])?, wrap(g_x, &[rows, d])?])
            })
        })
    })
}
