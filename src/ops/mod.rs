//! Every differentiable op: its forward kernel, its backward (derived in a comment beside the
//! code), and its tests, together in one file per family.
//!
//! Each op's backward is a closure recorded with `Tensor::record`; it runs under `no_grad`
//! and builds its result from other ops or from fused kernels. Every op is gradient-checked in
//! `f64` against central differences (see [`crate::autograd::gradcheck`]), including a test
//! that the checker fails when that op's backward is scaled by 1.001.
//!
//! | file | ops |
//! | --- | --- |
//! | `binary` | add, sub, mul, div with broadcasting |
//! | `unary` | neg, exp, log, sqrt, pow, relu, sigmoid, tanh, scalar add/mul, clamp |
//! | `reduce` | sum/mean/max over an axis and over all, argmax |
//! | `shape` | reshape, permute/transpose, narrow, broadcast, concat, split/chunk, squeeze |
//! | `matmul` | batched matmul with broadcasting and free transposes |
//! | `linear` | `x Wᵀ + b` with a deferred weight gradient |
//! | `softmax` | softmax and log_softmax over the last axis |
//! | `layer_norm` | the reference LayerNorm (unbiased std, eps added to the std) |
//! | `glu` | gated linear unit over the last axis |
//! | `index` | embedding, index_select, gather along the last axis |
//! | `select` | masked_fill, where |
//! | `dropout` | inverted dropout from the Philox stream |
//! | `lstm` | the LSTM cell with a hand-written backward |
//! | `lstm_input` | the decoder's LSTM input of a step (embedding, ReLU, dropouts, concat) as one op |

mod binary;
mod dropout;
mod glu;
mod index;
mod layer_norm;
mod linear;
mod lstm;
mod lstm_input;
mod matmul;
mod reduce;
mod select;
mod shape;
mod softmax;
mod unary;
mod weights;

pub use dropout::dropout_keeps;
pub use lstm::LstmCellOutput;
pub use lstm_input::LstmInput;
pub use matmul::reference_matmul;
pub(crate) use shape::pad_into;

use crate::tensor::{Float, Tensor, coalesce};
use crate::{Error, Result};

/// Checks that two tensors can be combined by `op`: same dtype, same device.
pub(crate) fn same_kind(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::Mismatch {
            op,
            detail: format!(
                "dtypes {} and {} (convert one with to_dtype)",
                a.dtype(),
                b.dtype()
            ),
        });
    }
    if a.device() != b.device() {
        return Err(Error::Mismatch {
            op,
            detail: format!("devices {} and {}", a.device(), b.device()),
        });
    }
    Ok(())
}

/// Calls `f(positions, len, inner_strides)` for every innermost run of elements of `shape`
/// as seen through each of the `layouts` (given as strides and offsets): `positions[k]` is
/// operand k's storage position at the run's start. Dimensions are coalesced first, so dense
/// operands give one long run.
pub(crate) fn for_each_run(
    shape: &[usize],
    strides: &[&[usize]],
    offsets: &[usize],
    mut f: impl FnMut(&[usize], usize, &[usize]),
) {
    if shape.iter().product::<usize>() == 0 {
        return;
    }
    let (cshape, cstrides) = coalesce(shape, strides);
    let rank = cshape.len();
    let inner = cshape[rank - 1];
    let inner_strides: Vec<usize> = cstrides.iter().map(|s| s[rank - 1]).collect();
    let mut index = vec![0usize; rank - 1];
    let mut pos: Vec<usize> = offsets.to_vec();
    loop {
        f(&pos, inner, &inner_strides);
        // Odometer over the outer dimensions.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            for (p, s) in pos.iter_mut().zip(&cstrides) {
                *p += s[d];
            }
            if index[d] < cshape[d] {
                break;
            }
            for (p, s) in pos.iter_mut().zip(&cstrides) {
                *p -= s[d] * index[d];
            }
            index[d] = 0;
        }
    }
}

/// Elementwise `f(a, b)` with broadcasting, into a new contiguous tensor. Not differentiable
/// by itself: ops wrap it and record their own backward.
pub(crate) fn map2<T: Float>(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(T, T) -> T,
) -> Result<Tensor> {
    same_kind(op, a, b)?;
    let shape = crate::tensor::broadcast_shapes(op, a.shape(), b.shape())?;
    let la = a.layout().broadcast_to(&shape)?;
    let lb = b.layout().broadcast_to(&shape)?;
    let n: usize = shape.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(n);
    a.with_strided::<T, _>(op, |da, _| {
        b.with_strided::<T, _>(op, |db, _| {
            for_each_run(
                &shape,
                &[la.strides(), lb.strides()],
                &[la.offset(), lb.offset()],
                |p, len, s| {
                    let (pa, pb) = (p[0], p[1]);
                    match (s[0], s[1]) {
                        (1, 1) => out.extend(
                            da[pa..pa + len]
                                .iter()
                                .zip(&db[pb..pb + len])
                                .map(|(&x, &y)| f(x, y)),
                        ),
                        (1, 0) => {
                            let y = db[pb];
                            out.extend(da[pa..pa + len].iter().map(|&x| f(x, y)))
                        }
                        (0, 1) => {
                            let x = da[pa];
                            out.extend(db[pb..pb + len].iter().map(|&y| f(x, y)))
                        }
                        (sa, sb) => {
                            out.extend((0..len).map(|k| f(da[pa + k * sa], db[pb + k * sb])))
                        }
                    }
                },
            )
        })
    })??;
    Tensor::from_vec(out, &shape)
}

/// Elementwise `f(x)` into a new contiguous tensor (not differentiable by itself).
pub(crate) fn map1<T: Float>(op: &'static str, x: &Tensor, f: impl Fn(T) -> T) -> Result<Tensor> {
    let out = x.with_slice::<T, _>(op, |d| d.iter().map(|&v| f(v)).collect::<Vec<T>>())?;
    Tensor::from_vec(out, x.shape())
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::rng::Philox;
    use crate::tensor::{DType, Tensor};

    /// A random f64 tensor with entries in [-1, 1), fixed by `seed`.
    pub fn rand(shape: &[usize], seed: u64) -> Tensor {
        Tensor::uniform(shape, -1.0, 1.0, DType::F64, &mut Philox::new(seed))
    }

    /// A random f64 tensor with entries in [lo, hi).
    pub fn rand_in(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
        Tensor::uniform(shape, lo, hi, DType::F64, &mut Philox::new(seed))
    }
}
