//! The tensor ops' device paths: each function takes `Tensor`s on a CUDA device, launches the
//! kernels of [`crate::cuda::kernels`], and returns new `Tensor`s on the same device. The ops in
//! `src/ops` call these when their inputs are on a CUDA device and keep their autograd logic
//! (the `record` closures) shared between devices; a backward closure calls back in here
//! through the same ops.
//!
//! | file | what it serves |
//! | --- | --- |
//! | this one | storage access, device copies, casts, `full`, `update_`, in-place accumulation |
//! | `elementwise` | unary and broadcasting binary ops, masks, `where` |
//! | `reduce` | sums, means, max with argmax, `sum_to`, `argmax_last`, `sample_rows` (and `_over`), `topk_rows`, `all_finite`, `all_finite_many`, `item_and_all_finite_many` |
//! | `shape` | `concat`, the adjoint of `narrow` |
//! | `matmul` | batched products of strided views, `weight_product` (+ bias epilogue) |
//! | `softmax`, `layer_norm`, `glu`, `index`, `dropout`, `lstm` | the op of that name |
//! | `attention` | fused multi-head attention (its own autograd op; `nn::MultiHeadAoa` calls it) |
//! | `loss`, `adam` | `train::label_smoothing_loss`/`lm_loss` and Adam's fused step |
//!
//! Conventions: inputs may be any strided view; kernels that need dense operands get them
//! through `with_dense` (the storage range when already contiguous, else a device copy).
//! Outputs are fresh dense tensors. Everything is queued on the device's one stream, so no
//! synchronisation is needed between launches; host reads (`to_vec`, `item`) synchronise.

mod adam;
mod attention;
mod elementwise;
mod glu;
mod index;
mod layer_norm;
mod loss;
mod lstm;
mod matmul;
mod reduce;
mod shape;
mod softmax;

pub use adam::AdamHyper;
pub(crate) use adam::{AdamItem, adam_update, adam_update_many};
pub(crate) use attention::{FusedAttention, fused_attention, upload_bytes};
pub(crate) use elementwise::{binary, unary};
pub(crate) use glu::{glu, glu_backward};
pub(crate) use index::{gather_last, index_add, index_select, scatter_last};
pub(crate) use layer_norm::{layer_norm, layer_norm_backward};
pub use loss::SmoothedTargets;
pub(crate) use loss::{reward_loss, smoothed_kl_loss, smoothed_kl_loss_from_logits};
pub(crate) use lstm::{lstm_cell, lstm_cell_backward};
pub(crate) use matmul::{StridedMat, matmul, weight_product};
pub use matmul::{matmul_precision, set_matmul_precision};
pub(crate) use reduce::{
    MaxIndex, all_finite, all_finite_many, argmax_last, item_and_all_finite_many, max_axis,
    sample_rows, sample_rows_over, scatter_axis, sum_all, sum_axis, sum_to, topk_rows,
};
pub(crate) use shape::{concat, pad_into, split};
pub(crate) use softmax::{softmax, softmax_backward};
pub(crate) mod decode;
pub(crate) mod dropout;

use std::sync::Arc;

use super::kernels::elementwise::{self as ew, Bcast};
use super::{CudaBuffer, CudaDevice, CudaFloat, CudaStorage, CudaView, CudaViewMut};
use crate::tensor::{DType, Device, Float, Layout, Storage, Tensor, coalesce, numel};
use crate::{Error, Result};

// The kernels compute in f32 and f64 like the CPU: ops dispatch on dtype with the crate's
// `with_float!`.
pub(crate) use crate::with_float as with_cuda_float;

// ---------------------------------------------------------------------------------------------
// Storage access
// ---------------------------------------------------------------------------------------------

fn not_on_cuda(op: &'static str, t: &Tensor) -> Error {
    Error::Mismatch {
        op,
        detail: format!("tensor on {}, expected a CUDA device", t.device()),
    }
}

/// The device holding `t`.
pub(crate) fn device_of(t: &Tensor) -> Result<Arc<CudaDevice>> {
    match t.device() {
        Device::Cuda(i) => CudaDevice::get(i),
        Device::Cpu => Err(not_on_cuda("cuda", t)),
    }
}

/// `t` when its elements are one dense range of its storage, else a dense copy (for ops
/// that hand many operands to one kernel by address).
pub(crate) fn dense(t: &Tensor) -> Result<Tensor> {
    match t.layout().contiguous_range() {
        Some(_) => Ok(t.clone()),
        None => dense_copy(t),
    }
}

/// Read locks on the storages of several tensors, one per storage (tensors may share one, and
/// a thread must not take a second read lock it already holds), so that one kernel can be
/// given all their addresses: concatenation, sums of many gradient pieces, the multi-tensor
/// NaN check and Adam.
pub(crate) struct ReadLocks<'a> {
    guards: Vec<std::sync::RwLockReadGuard<'a, Storage>>,
    slot: std::collections::HashMap<usize, usize>,
}

impl<'a> ReadLocks<'a> {
    /// Locks the storages of `tensors`.
    pub(crate) fn new(tensors: impl IntoIterator<Item = &'a Tensor>) -> Self {
        let mut locks = ReadLocks {
            guards: Vec::new(),
            slot: std::collections::HashMap::new(),
        };
        for t in tensors {
            let key = t.storage_key().0;
            if !locks.slot.contains_key(&key) {
                locks.slot.insert(key, locks.guards.len());
                locks.guards.push(t.storage_read());
            }
        }
        locks
    }

    /// The elements of `t` (dense, and among the locked tensors) as a typed device view.
    pub(crate) fn view<T: CudaFloat>(
        &self,
        t: &Tensor,
        op: &'static str,
    ) -> Result<CudaView<'_, T>> {
        let range = t
            .layout()
            .contiguous_range()
            .ok_or_else(|| Error::invalid(format!("cuda {op}: an operand is not dense")))?;
        let guard = self
            .slot
            .get(&t.storage_key().0)
            .map(|&i| &self.guards[i])
            .ok_or_else(|| Error::invalid(format!("cuda {op}: an operand was not locked")))?;
        let Storage::Cuda(c) = &**guard else {
            return Err(not_on_cuda(op, t));
        };
        T::buffer(c)
            .ok_or_else(|| Error::Mismatch {
                op,
                detail: format!("tensor is {}, kernel wants {}", c.dtype(), T::DTYPE),
            })?
            .slice(range)
    }
}

/// Runs `f` on `t`'s typed device buffer (the whole storage: `t`'s layout applies).
pub(crate) fn with_buffer<T: CudaFloat, R>(
    t: &Tensor,
    op: &'static str,
    f: impl FnOnce(&CudaBuffer<T>) -> Result<R>,
) -> Result<R> {
    let s = t.storage_read();
    let Storage::Cuda(c) = &*s else {
        return Err(not_on_cuda(op, t));
    };
    let b = T::buffer(c).ok_or_else(|| Error::Mismatch {
        op,
        detail: format!("tensor is {}, kernel wants {}", c.dtype(), T::DTYPE),
    })?;
    f(b)
}

/// Runs `f` on `t`'s typed device buffer, writable (in-place updates; bumps the version).
pub(crate) fn with_buffer_mut<T: CudaFloat, R>(
    t: &Tensor,
    op: &'static str,
    f: impl FnOnce(&mut CudaBuffer<T>) -> Result<R>,
) -> Result<R> {
    let mut s = t.storage_write();
    let Storage::Cuda(c) = &mut *s else {
        return Err(not_on_cuda(op, t));
    };
    let dtype = c.dtype();
    let b = T::buffer_mut(c).ok_or_else(|| Error::Mismatch {
        op,
        detail: format!("tensor is {dtype}, kernel wants {}", T::DTYPE),
    })?;
    f(b)
}

/// Runs `f` on `t`'s elements as a dense row-major device view of exactly `numel` elements:
/// the storage range when `t` is contiguous, else a dense copy made first.
pub(crate) fn with_dense<T: CudaFloat, R>(
    t: &Tensor,
    op: &'static str,
    f: impl FnOnce(CudaView<'_, T>) -> Result<R>,
) -> Result<R> {
    if let Some(r) = t.layout().contiguous_range() {
        return with_buffer(t, op, |b: &CudaBuffer<T>| f(b.slice(r)?));
    }
    let d = dense_copy(t)?;
    let r = d.layout().contiguous_range().expect("a dense copy");
    with_buffer(&d, op, |b: &CudaBuffer<T>| f(b.slice(r)?))
}

/// A new dense tensor of `shape` on `dev`, its elements written by `f` (which must write all
/// of them: the memory starts unspecified).
pub(crate) fn output<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    shape: &[usize],
    f: impl FnOnce(CudaViewMut<'_, T>) -> Result<()>,
) -> Result<Tensor> {
    let mut buf = dev.alloc::<T>(numel(shape))?;
    f(buf.view_mut())?;
    Tensor::from_storage(Storage::Cuda(T::wrap(buf)), shape)
}

/// Zeros of `shape` on `dev`.
pub(crate) fn zeros<T: CudaFloat>(dev: &Arc<CudaDevice>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_storage(Storage::Cuda(T::wrap(dev.zeros(numel(shape))?)), shape)
}

/// Host indices as the `int` ids the kernels take, on `dev`. Indices must fit in `i32`.
pub(crate) fn upload_ids(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    ids: &[usize],
) -> Result<CudaBuffer<i32>> {
    let v: Vec<i32> = ids
        .iter()
        .map(|&i| {
            i32::try_from(i)
                .map_err(|_| Error::invalid(format!("cuda {op}: index {i} exceeds i32::MAX")))
        })
        .collect::<Result<_>>()?;
    dev.htod(&v)
}

/// Indices in a device's memory for a kernel: the buffer of indices picked on that device
/// ([`crate::tensor::Ids`] drawn there), or an upload of the host's.
pub(crate) enum IdsOnDevice<'a> {
    /// Picked on the device: read where they are.
    Drawn(&'a CudaBuffer<i32>),
    /// Uploaded from the host for this call.
    Uploaded(CudaBuffer<i32>),
}

impl IdsOnDevice<'_> {
    /// The indices as a kernel argument.
    pub(crate) fn view(&self) -> CudaView<'_, i32> {
        match self {
            IdsOnDevice::Drawn(b) => b.view(),
            IdsOnDevice::Uploaded(b) => b.view(),
        }
    }
}

/// `ids` on `dev` (see [`IdsOnDevice`]); host indices must fit an `i32`.
pub(crate) fn ids_on<'a>(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    ids: &'a crate::tensor::Ids,
) -> Result<IdsOnDevice<'a>> {
    match ids.device_buffer() {
        Some(b) if b.device().ordinal() == dev.ordinal() => Ok(IdsOnDevice::Drawn(b)),
        _ => upload_ids(dev, op, ids.host()?).map(IdsOnDevice::Uploaded),
    }
}

/// The kernels' strided-index map for `shape` read through two strided layouts (dimensions
/// that are dense in both merged first, so most maps have one or two dimensions).
pub(crate) fn bcast(
    op: &'static str,
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
) -> Result<Bcast> {
    let (cshape, cstrides) = coalesce(shape, &[sa, sb]);
    if cshape.len() > ew::BCAST_DIMS {
        return Err(Error::invalid(format!(
            "cuda {op}: {} strided dimensions after merging (at most {})",
            cshape.len(),
            ew::BCAST_DIMS
        )));
    }
    let as_i64 = |v: &[usize]| -> Vec<i64> { v.iter().map(|&x| x as i64).collect() };
    Bcast::new(&cshape, &as_i64(&cstrides[0]), &as_i64(&cstrides[1]))
}

// ---------------------------------------------------------------------------------------------
// Copies between layouts and devices
// ---------------------------------------------------------------------------------------------

/// A dense row-major copy of `t` on its device (no graph).
pub(crate) fn dense_copy(t: &Tensor) -> Result<Tensor> {
    let dev = device_of(t)?;
    if t.dtype() == DType::BF16 {
        // No strided bf16 kernel: through the host (bf16 tensors are storage, rarely strided).
        let host = t.copy_out(DType::BF16)?;
        return Tensor::from_storage(
            Storage::Cuda(CudaStorage::from_host(&dev, &host)?),
            t.shape(),
        );
    }
    with_cuda_float!(t.dtype(), "contiguous", T => {
        let l = t.layout();
        let bc = bcast("contiguous", t.shape(), l.strides(), &crate::tensor::contiguous_strides(t.shape()))?;
        with_buffer::<T, _>(t, "contiguous", |src| {
            output::<T>(&dev, t.shape(), |dst| {
                ew::copy_strided(&dev, dst, src.slice(l.offset()..)?, bc)
            })
        })
    })
}

/// Writes `src` (any layout, `dst`'s shape and dtype, same device) into the strided window
/// `dst_layout` of `dst`'s buffer, in place.
pub(crate) fn copy_into<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    dst: &mut CudaBuffer<T>,
    dst_layout: &Layout,
    src: &Tensor,
) -> Result<()> {
    let l = src.layout();
    let bc = bcast("copy", src.shape(), l.strides(), dst_layout.strides())?;
    with_buffer::<T, _>(src, "copy", |s| {
        ew::copy_strided(
            dev,
            dst.slice_mut(dst_layout.offset()..)?,
            s.slice(l.offset()..)?,
            bc,
        )
    })
}

/// `t`'s elements in row-major order as a host buffer of `dtype` (`Tensor::copy_out`).
pub(crate) fn copy_out(t: &Tensor, dtype: DType) -> Result<Storage> {
    let host = if let Some(r) = t.layout().contiguous_range() {
        let s = t.storage_read();
        let Storage::Cuda(c) = &*s else {
            return Err(not_on_cuda("copy_out", t));
        };
        c.read_range(r)?
    } else if t.dtype().is_compute() {
        let d = dense_copy(t)?;
        return copy_out(&d, dtype);
    } else {
        let s = t.storage_read();
        return Ok(s.gather_convert(t.layout().positions(), dtype));
    };
    if host.dtype() == dtype {
        return Ok(host);
    }
    let n = host.len();
    Ok(host.gather_convert(0..n, dtype))
}

/// A copy of the (CPU or other-device) tensor `t` on CUDA device `ordinal` (no graph).
pub(crate) fn upload(t: &Tensor, ordinal: usize) -> Result<Tensor> {
    let dev = CudaDevice::get(ordinal)?;
    let host = t.copy_out(t.dtype())?;
    Tensor::from_storage(
        Storage::Cuda(CudaStorage::from_host(&dev, &host)?),
        t.shape(),
    )
}

/// A whole device storage copied to the host (`Tensor::move_to_device_`).
pub(crate) fn storage_to_host(s: &Storage) -> Result<Storage> {
    match s {
        Storage::Cuda(c) => c.to_host(),
        _ => Err(Error::invalid(
            "move_to_device_: the storage is not on a CUDA device",
        )),
    }
}

/// A whole storage copied to CUDA device `ordinal` (`Tensor::move_to_device_`).
pub(crate) fn storage_to_device(s: &Storage, ordinal: usize) -> Result<Storage> {
    let dev = CudaDevice::get(ordinal)?;
    Ok(Storage::Cuda(CudaStorage::from_host(&dev, s)?))
}

/// `t` converted to `dtype` on its device (no graph).
pub(crate) fn cast(t: &Tensor, dtype: DType) -> Result<Tensor> {
    let dev = device_of(t)?;
    match (t.dtype(), dtype) {
        (a, b) if a == b => dense_copy(t),
        (DType::F32, DType::F64) => with_dense::<f32, _>(t, "to_dtype", |x| {
            output::<f64>(&dev, t.shape(), |o| ew::cast_to_f64(&dev, o, x))
        }),
        (DType::F64, DType::F32) => with_dense::<f64, _>(t, "to_dtype", |x| {
            output::<f32>(&dev, t.shape(), |o| ew::cast_to_f32(&dev, o, x))
        }),
        (DType::F32, DType::BF16) => with_dense::<f32, _>(t, "to_dtype", |x| {
            let mut buf = dev.alloc::<half::bf16>(t.numel())?;
            ew::cast_to_bf16(&dev, buf.view_mut(), x)?;
            Tensor::from_storage(Storage::Cuda(CudaStorage::BF16(buf)), t.shape())
        }),
        (DType::BF16, DType::F32) => {
            let d = if t.is_contiguous() {
                t.clone()
            } else {
                dense_copy(t)?
            };
            let r = d.layout().contiguous_range().expect("dense");
            let s = d.storage_read();
            let Storage::Cuda(CudaStorage::BF16(b)) = &*s else {
                return Err(not_on_cuda("to_dtype", t));
            };
            output::<f32>(&dev, t.shape(), |o| {
                ew::cast_from_bf16(&dev, o, b.slice(r)?)
            })
        }
        (DType::F64, DType::BF16) => cast(&cast(t, DType::F32)?, DType::BF16),
        (DType::BF16, DType::F64) => cast(&cast(t, DType::F32)?, DType::F64),
        (from, to) => Err(Error::Mismatch {
            op: "to_dtype",
            detail: format!("{from} to {to} on a CUDA device (f16 has no device storage)"),
        }),
    }
}

/// A tensor of `shape` filled with `value` on CUDA device `ordinal`.
pub(crate) fn full(ordinal: usize, shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
    let dev = CudaDevice::get(ordinal)?;
    match dtype {
        DType::F32 => output::<f32>(&dev, shape, |o| ew::fill(&dev, o, value as f32)),
        DType::F64 => output::<f64>(&dev, shape, |o| ew::fill(&dev, o, value)),
        _ => upload(&Tensor::full(shape, value, dtype), ordinal),
    }
}

/// `Tensor::update_` of a contiguous CUDA tensor from `values` on any device.
pub(crate) fn update(dst: &Tensor, values: &Tensor) -> Result<()> {
    let dev = device_of(dst)?;
    // A dense copy of the values on dst's device and in its dtype, in a storage of its own
    // (so the write lock below never meets a read of the same storage).
    let src = crate::autograd::no_grad(|| -> Result<Tensor> {
        let v = values.to_dtype(dst.dtype())?.to_device(dst.device())?;
        if v.same_storage(dst) || !v.is_contiguous() {
            v.deep_copy()
        } else {
            Ok(v)
        }
    })?;
    let range = dst.layout().contiguous_range().ok_or_else(|| {
        Error::invalid("update_: only contiguous tensors can be updated in place")
    })?;
    let bytes = range.len() * dst.dtype().size();
    let src_ptr = {
        let s = src.storage_read();
        let Storage::Cuda(c) = &*s else {
            return Err(not_on_cuda("update_", &src));
        };
        device_ptr(c) + (src.layout().offset() * dst.dtype().size()) as u64
    };
    let mut d = dst.storage_write();
    let Storage::Cuda(c) = &mut *d else {
        return Err(not_on_cuda("update_", dst));
    };
    let dst_ptr = device_ptr(c) + (range.start * dst.dtype().size()) as u64;
    dev.copy_dtod(src_ptr, dst_ptr, bytes)?;
    // `src` stays alive until here; the copy is ordered before any later use of its memory.
    drop(src);
    Ok(())
}

fn device_ptr(c: &CudaStorage) -> u64 {
    match c {
        CudaStorage::F32(b) => b.device_ptr(),
        CudaStorage::F64(b) => b.device_ptr(),
        CudaStorage::BF16(b) => b.device_ptr(),
    }
}

/// `Tensor::with_data_mut` on a CUDA tensor: the contiguous elements copied to the host,
/// given to `f`, and copied back.
pub(crate) fn with_host_data_mut<T: Float, R>(
    t: &Tensor,
    f: impl FnOnce(&mut [T]) -> R,
) -> Result<R> {
    let range = t
        .layout()
        .contiguous_range()
        .ok_or_else(|| Error::invalid("with_data_mut: tensor is not contiguous"))?;
    let mut s = t.storage_write();
    let Storage::Cuda(c) = &mut *s else {
        return Err(not_on_cuda("with_data_mut", t));
    };
    let mut host = c.read_range(range.clone())?;
    let data = T::slice_mut(&mut host).ok_or_else(|| Error::Mismatch {
        op: "with_data_mut",
        detail: format!("tensor is {}, asked for {}", c.dtype(), T::DTYPE),
    })?;
    let r = f(data);
    match (c, &host) {
        (CudaStorage::F32(b), Storage::F32(v)) => b.write_at(range.start, v)?,
        (CudaStorage::F64(b), Storage::F64(v)) => b.write_at(range.start, v)?,
        (CudaStorage::BF16(b), Storage::BF16(v)) => b.write_at(range.start, v)?,
        _ => unreachable!("read_range keeps the dtype"),
    }
    Ok(r)
}

/// `prev += g` in place on the device (`prev` dense, exclusively owned, same shape and dtype).
pub(crate) fn accumulate_(prev: &Tensor, g: &Tensor) -> Result<()> {
    let dev = device_of(prev)?;
    let range = prev
        .layout()
        .contiguous_range()
        .expect("checked by the caller");
    with_cuda_float!(prev.dtype(), "accumulate", T => {
        with_dense::<T, _>(g, "accumulate", |gv| {
            with_buffer_mut::<T, _>(prev, "accumulate", |p| {
                ew::axpy(&dev, p.slice_mut(range)?, gv, T::ONE)
            })
        })
    })
}

/// `first + rest[0] + rest[1] + …` in that order (the bits of adding them one by one) with one
/// launch per 16 pieces: written into `first` when `in_place` (the caller owns it exclusively
/// and it is dense), else into a new tensor. All on one device, of one dtype and shape.
pub(crate) fn sum_many(first: Tensor, rest: &[Tensor], in_place: bool) -> Result<Tensor> {
    let dev = device_of(&first)?;
    let rest: Vec<Tensor> = rest.iter().map(dense).collect::<Result<_>>()?;
    let in_place = in_place && first.layout().contiguous_range() == Some(0..first.numel());
    let first = if in_place { first } else { dense(&first)? };
    with_cuda_float!(first.dtype(), "sum_many", T => {
        // `first` is written under its own write lock when summing in place (then nothing
        // else shares its storage).
        let locks = ReadLocks::new(&rest);
        let views = rest
            .iter()
            .map(|t| locks.view::<T>(t, "sum_many"))
            .collect::<Result<Vec<_>>>()?;
        if in_place {
            with_buffer_mut::<T, _>(&first, "sum_many", |b| {
                ew::sum_many(&dev, b.slice_mut(0..first.numel())?, None, &views)
            })?;
            Ok(first)
        } else {
            let out = with_dense::<T, _>(&first, "sum_many", |f| {
                output::<T>(&dev, first.shape(), |o| ew::sum_many(&dev, o, Some(f), &views))
            })?;
            Ok(out)
        }
    })
}

/// Adds every piece's `values [ids.len(), row...]` into rows `ids` of `out` in place, piece
/// after piece (`out` dense and exclusively owned; ids checked by the caller; all on `out`'s
/// device and of its dtype; ids read to the host by the caller), in one launch: the same bits
/// as adding them row by row.
pub(crate) fn scatter_add_rows_many_(
    out: &Tensor,
    pieces: &[(crate::tensor::Ids, Tensor)],
) -> Result<()> {
    use super::kernels::embedding::{RowsPiece, scatter_rows};
    let dev = device_of(out)?;
    let rows = out.shape()[0];
    let row = numel(&out.shape()[1..]);
    let range = out
        .layout()
        .contiguous_range()
        .expect("checked by the caller");
    let values: Vec<Tensor> = pieces
        .iter()
        .map(|(_, v)| dense(v))
        .collect::<Result<_>>()?;
    with_cuda_float!(out.dtype(), "scatter_add_rows", T => {
        let locks = ReadLocks::new(&values);
        let described = pieces
            .iter()
            .zip(&values)
            .map(|((ids, _), v)| {
                Ok(RowsPiece { ids: ids.host()?, values: locks.view::<T>(v, "scatter_add_rows")? })
            })
            .collect::<Result<Vec<_>>>()?;
        with_buffer_mut::<T, _>(out, "scatter_add_rows", |o| {
            scatter_rows(&dev, o.slice_mut(range)?, rows, row, &described)
        })
    })
}
