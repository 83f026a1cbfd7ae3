//! Reductions on the device: `sum_axis`, `max_axis` (with the argmax its backward needs),
//! `sum_all`, `sum_to`, `argmax_last`, `all_finite`.

use super::{ReadLocks, dense, device_of, output, with_cuda_float, with_dense};
use crate::autograd::no_grad;
use crate::cuda::kernels::reduce::{self as red, Reduce};
use crate::cuda::{CudaBuffer, CudaDevice};
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

/// The sum over the middle axis of `x` viewed as `dims = [outer, len, inner]`, shaped
/// `out_shape` (no graph).
pub(crate) fn sum_axis(x: &Tensor, dims: [usize; 3], out_shape: &[usize]) -> Result<Tensor> {
    let dev = device_of(x)?;
    let [outer, len, inner] = dims;
    with_cuda_float!(x.dtype(), "sum_axis", T => {
        with_dense::<T, _>(x, "sum_axis", |xv| {
            output::<T>(&dev, out_shape, |o| {
                if inner == 1 {
                    // A block per row of `len` contiguous elements.
                    red::rows(&dev, o, xv, outer, len, Reduce::Sum, false)
                } else if outer == 1 && len > red::SUM_COLS_MIN_CHUNK {
                    // Column sums over many rows (bias gradients): chunks of rows in parallel,
                    // where one thread per column would walk every row.
                    red::sum_cols(&dev, o, xv, len, inner, false)
                } else {
                    red::axis(&dev, o, xv, dims, Reduce::Sum)
                }
            })
        })
    })
}

/// The argmax positions saved by [`max_axis`] for its backward ([`scatter_axis`]).
pub(crate) struct MaxIndex {
    idx: CudaBuffer<i32>,
    dims: [usize; 3],
}

impl std::fmt::Debug for MaxIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaxIndex({:?})", self.dims)
    }
}

/// The maximum over the middle axis of `x` viewed as `dims`, shaped `out_shape`, and where it
/// is (the first maximum; a NaN wins, as on the CPU).
pub(crate) fn max_axis(
    x: &Tensor,
    dims: [usize; 3],
    out_shape: &[usize],
) -> Result<(Tensor, MaxIndex)> {
    let dev = device_of(x)?;
    let [outer, _, inner] = dims;
    let mut idx = dev.alloc::<i32>(outer * inner)?;
    let vals = with_cuda_float!(x.dtype(), "max_axis", T => {
        with_dense::<T, _>(x, "max_axis", |xv| {
            output::<T>(&dev, out_shape, |o| red::max_axis(&dev, o, idx.view_mut(), xv, dims))
        })
    })?;
    Ok((vals, MaxIndex { idx, dims }))
}

/// `max_axis`'s backward: `g` (shaped like its output) placed at the saved argmax positions of
/// a zero tensor of `in_shape`.
pub(crate) fn scatter_axis(g: &Tensor, at: &MaxIndex, in_shape: &[usize]) -> Result<Tensor> {
    let dev = device_of(g)?;
    with_cuda_float!(g.dtype(), "max_axis", T => {
        with_dense::<T, _>(g, "max_axis", |gv| {
            output::<T>(&dev, in_shape, |o| red::scatter_axis(&dev, o, gv, at.idx.view(), at.dims))
        })
    })
}

/// The sum of all elements as a 0-d tensor (no graph).
pub(crate) fn sum_all(x: &Tensor) -> Result<Tensor> {
    let dev = device_of(x)?;
    with_cuda_float!(x.dtype(), "sum_all", T => {
        with_dense::<T, _>(x, "sum_all", |xv| output::<T>(&dev, &[], |o| red::sum_all(&dev, o, xv)))
    })
}

/// The adjoint of broadcasting: `g` summed over the dimensions along which `shape` was
/// broadcast to `g`'s shape (validated by the caller), as a sequence of axis sums (no graph).
pub(crate) fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    no_grad(|| {
        let (n, r) = (g.rank(), shape.len());
        let mut t = g.clone();
        // Leading dimensions that `shape` lacks: fold them into one and sum it away.
        if n > r {
            let lead: usize = g.shape()[..n - r].iter().product();
            let mut folded = vec![lead];
            folded.extend_from_slice(&g.shape()[n - r..]);
            t = t.reshape(&folded)?.sum_axis(0, false)?;
        }
        for (i, &s) in shape.iter().enumerate() {
            if s == 1 && t.shape()[i] != 1 {
                t = t.sum_axis(i as isize, true)?;
            }
        }
        if t.shape() != shape {
            return Err(Error::shape(
                "sum_to",
                &[g.shape(), shape],
                "a shape that broadcasts to the first",
            ));
        }
        Ok(t)
    })
}

/// Index of the first maximum along the last axis, per row (the first NaN if a row has one).
pub(crate) fn argmax_last(x: &Tensor, rows: usize, len: usize) -> Result<Vec<usize>> {
    if len == 0 {
        return Ok(vec![0; rows]);
    }
    Ok(argmax_rows(x, rows, len)?
        .to_host()?
        .into_iter()
        .map(|i| i.max(0) as usize)
        .collect())
}

/// [`argmax_last`] left on the device (`len ≥ 1`): the decoding loop's greedy words.
pub(crate) fn argmax_rows(x: &Tensor, rows: usize, len: usize) -> Result<CudaBuffer<i32>> {
    let dev = device_of(x)?;
    let mut idx = dev.alloc::<i32>(rows)?;
    with_cuda_float!(x.dtype(), "argmax_last", T => {
        with_dense::<T, _>(x, "argmax_last", |xv| {
            let mut val = dev.alloc::<T>(rows)?;
            red::argmax(&dev, idx.view_mut(), val.view_mut(), xv, rows, len)
        })
    })?;
    Ok(idx)
}

/// One word per row of the f32 log-probabilities `lp [rows, classes]`, drawn on the device with
/// the host's uniform numbers (`kernels/sample.cu`); only the ids come back.
pub(crate) fn sample_rows(lp: &Tensor, uniforms: &[f64]) -> Result<Vec<usize>> {
    let dev = device_of(lp)?;
    let words = dev.alloc::<i32>(uniforms.len())?;
    Ok(draw_rows(lp, uniforms, words)?
        .to_host()?
        .into_iter()
        .map(|w| w.max(0) as usize)
        .collect())
}

/// [`sample_rows`] where a negative uniform number keeps the row's word of `keep`, the words
/// left in device memory (scheduled sampling: no wait).
pub(crate) fn sample_rows_over(
    lp: &Tensor,
    uniforms: &[f64],
    keep: &[usize],
) -> Result<CudaBuffer<i32>> {
    let dev = device_of(lp)?;
    let words = super::upload_ids(&dev, "sample_rows", keep)?;
    draw_rows(lp, uniforms, words)
}

/// Draws into `words` the rows of `lp` with non-negative numbers.
pub(super) fn draw_rows(
    lp: &Tensor,
    uniforms: &[f64],
    mut words: CudaBuffer<i32>,
) -> Result<CudaBuffer<i32>> {
    let dev = device_of(lp)?;
    let classes = lp.shape().last().copied().unwrap_or(0);
    let u = dev.htod(uniforms)?;
    with_dense::<f32, _>(lp, "sample_rows", |lv| {
        crate::cuda::kernels::sample::sample_rows(
            &dev,
            words.view_mut(),
            lv,
            u.view(),
            uniforms.len(),
            classes,
        )
    })?;
    Ok(words)
}

/// The `k` largest entries of every row of the f32 `x [.., cols]` (value descending, index
/// ascending; −∞ and index −1 past a row's non-NaN entries), computed on the device: only
/// `[rows, k]` values and indices come back.
pub(crate) fn topk_rows(x: &Tensor, k: usize) -> Result<(Vec<f32>, Vec<i32>)> {
    let dev = device_of(x)?;
    let cols = x.shape().last().copied().unwrap_or(0);
    let rows = x.numel().checked_div(cols).unwrap_or(0);
    let mut values = dev.alloc::<f32>(rows * k)?;
    let mut indices = dev.alloc::<i32>(rows * k)?;
    with_dense::<f32, _>(x, "topk_rows", |xv| {
        crate::cuda::kernels::sample::topk_rows(
            &dev,
            values.view_mut(),
            indices.view_mut(),
            xv,
            rows,
            cols,
            k,
        )
    })?;
    Ok((values.to_host()?, indices.to_host()?))
}

/// Whether every element of every tensor (all on one CUDA device) is finite: one counter on
/// the device, one launch per dtype, one read-back.
pub(crate) fn all_finite_many(xs: &[&Tensor]) -> Result<bool> {
    let Some(first) = xs.first() else {
        return Ok(true);
    };
    let count = count_nonfinite_many(&device_of(first)?, xs, 1)?;
    Ok(count.to_host()?[0] == 0)
}

/// The value of the one-element f32 or f64 `scalar` and whether every element of `xs` is
/// finite, read together: the count of non-finite elements and the scalar's bytes are put
/// side by side on the device and copied back at once, so a training step reads its loss and
/// checks its gradients with one wait.
pub(crate) fn item_and_all_finite_many(scalar: &Tensor, xs: &[&Tensor]) -> Result<(f64, bool)> {
    if scalar.numel() != 1 {
        return Err(Error::shape(
            "item_and_all_finite",
            &[scalar.shape()],
            "exactly one element",
        ));
    }
    let dev: Arc<CudaDevice> = device_of(scalar)?;
    if let Some(x) = xs.iter().find(|x| x.device() != scalar.device()) {
        return Err(Error::Mismatch {
            op: "item_and_all_finite",
            detail: format!(
                "a scalar on {} and a tensor on {}",
                scalar.device(),
                x.device()
            ),
        });
    }
    // Words: [count, unused, the scalar's 4 or 8 bytes from word 2] (8-byte aligned for f64).
    let packed = count_nonfinite_many(&dev, xs, 4)?;
    let scalar = dense(scalar)?;
    let bytes = scalar.dtype().size();
    with_cuda_float!(scalar.dtype(), "item_and_all_finite", T => {
        let locks = ReadLocks::new([&scalar]);
        let view = locks.view::<T>(&scalar, "item_and_all_finite")?;
        dev.copy_dtod(view.device_ptr(), packed.device_ptr() + 8, bytes)
    })?;
    let words = packed.to_host()?;
    let value = match scalar.dtype() {
        DType::F32 => f64::from(f32::from_bits(words[2])),
        _ => f64::from_bits(u64::from(words[2]) | u64::from(words[3]) << 32),
    };
    Ok((value, words[0] == 0))
}

/// A zeroed `u32` buffer of `len` words whose first counts the non-finite elements of `xs`
/// (f32 or f64, dense copies of strided ones), one launch per dtype; nothing is read back.
fn count_nonfinite_many(
    dev: &Arc<CudaDevice>,
    xs: &[&Tensor],
    len: usize,
) -> Result<CudaBuffer<u32>> {
    for x in xs {
        if x.device() != xs[0].device() {
            return Err(Error::Mismatch {
                op: "all_finite_many",
                detail: format!("tensors on {} and {}", xs[0].device(), x.device()),
            });
        }
        if !matches!(x.dtype(), DType::F32 | DType::F64) {
            return Err(Error::Mismatch {
                op: "all_finite_many",
                detail: format!("a {} tensor (f32 or f64 only)", x.dtype()),
            });
        }
    }
    let operands: Vec<Tensor> = xs.iter().map(|x| dense(x)).collect::<Result<_>>()?;
    let mut count = dev.zeros::<u32>(len)?;
    for dtype in [DType::F32, DType::F64] {
        let of_dtype: Vec<&Tensor> = operands.iter().filter(|t| t.dtype() == dtype).collect();
        if of_dtype.is_empty() {
            continue;
        }
        with_cuda_float!(dtype, "all_finite_many", T => {
            let locks = ReadLocks::new(of_dtype.iter().copied());
            let views = of_dtype
                .iter()
                .map(|t| locks.view::<T>(t, "all_finite_many"))
                .collect::<Result<Vec<_>>>()?;
            red::add_nonfinite_many(dev, count.slice_mut(..1)?, &views)
        })?;
    }
    Ok(count)
}

pub(crate) fn all_finite(x: &Tensor) -> Result<bool> {
    let dev: Arc<CudaDevice> = device_of(x)?;
    with_cuda_float!(x.dtype(), "all_finite", T => {
        with_dense::<T, _>(x, "all_finite", |xv| Ok(red::count_nonfinite(&dev, xv)? == 0))
    })
}
