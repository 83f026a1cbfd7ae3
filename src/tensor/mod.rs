//! `Tensor`: an n-dimensional array with a dtype, a device, and (optionally) a place in the
//! autograd graph.
//!
//! A tensor is a cheap handle (`Arc`) to an immutable record: a shared storage buffer, a
//! [`Layout`] (shape, strides, offset) into it, and the op that produced it. Views (reshape of
//! contiguous data, permute/transpose, narrow, broadcast) share the buffer; ops produce new
//! buffers. The only in-place writes are the optimiser's updates of parameters
//! ([`Tensor::update_`]), made between steps when no graph refers to them.

mod dtype;
mod shape;
mod storage;

pub use dtype::{DType, Float};
pub(crate) use shape::coalesce;
pub use shape::{Layout, broadcast_shapes, contiguous_strides, numel, resolve_axis};
pub use storage::Storage;

use crate::autograd::Node;
use crate::rng::Philox;
use crate::{Error, Result, with_float};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where a tensor's storage lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; the CPU kernels.
    Cpu,
    /// A CUDA device by ordinal (feature `cuda`).
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// A unique identity for each tensor record (views get their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        TensorId(COUNTER.fetch_add(1, Ordering::Relaxed))
    }
}

/// An n-dimensional array. Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

/// A storage buffer shared by a tensor and its views, with a version that every write bumps
/// (so caches derived from the values, like packed GEMM weights, know when they are stale).
pub(crate) struct StorageCell {
    data: RwLock<Storage>,
    version: AtomicU64,
}

impl StorageCell {
    pub(crate) fn new(storage: Storage) -> Arc<StorageCell> {
        Arc::new(StorageCell {
            data: RwLock::new(storage),
            version: AtomicU64::new(0),
        })
    }

    /// How many times the buffer has been written since it was made.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

pub(crate) struct Inner {
    pub(crate) id: TensorId,
    pub(crate) storage: Arc<StorageCell>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// Whether gradients flow to this tensor: set on leaves the user marks, and on every op
    /// result with such an input while gradients are enabled.
    pub(crate) requires_grad: bool,
    /// Whether this is a leaf that collects gradients (made by [`Tensor::requiring_grad`]).
    pub(crate) is_leaf: bool,
    /// How this tensor was computed; taken (and so freed) by the backward pass.
    pub(crate) node: Mutex<Option<Node>>,
    /// The accumulated gradient of a leaf that requires grad.
    pub(crate) grad: Mutex<Option<Tensor>>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {}{})",
            self.shape(),
            self.dtype(),
            self.device(),
            if self.requires_grad() { ", grad" } else { "" }
        )?;
        if self.numel() <= 16 && self.dtype().is_compute() && self.device() == Device::Cpu {
            write!(f, " {:?}", self.to_vec_f64())?;
        }
        Ok(())
    }
}

impl Tensor {
    // ---------------------------------------------------------------------------------------
    // Construction
    // ---------------------------------------------------------------------------------------

    /// A tensor over `storage` with `layout`; no gradient.
    pub(crate) fn from_parts(storage: Arc<StorageCell>, layout: Layout, device: Device) -> Tensor {
        let dtype = storage
            .data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .dtype();
        Tensor(Arc::new(Inner {
            id: TensorId::next(),
            storage,
            layout,
            dtype,
            device,
            requires_grad: false,
            is_leaf: false,
            node: Mutex::new(None),
            grad: Mutex::new(None),
        }))
    }

    /// A contiguous CPU tensor owning `storage`, which must hold exactly `numel(shape)` elements.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        if storage.len() != numel(shape) {
            return Err(Error::shape(
                "from_storage",
                &[shape, &[storage.len()]],
                format!("{} elements", numel(shape)),
            ));
        }
        Ok(Tensor::from_parts(
            StorageCell::new(storage),
            Layout::contiguous(shape),
            Device::Cpu,
        ))
    }

    /// A contiguous CPU tensor from a vector of `f32` or `f64`.
    pub fn from_vec<T: Float>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_storage(T::into_storage(data), shape)
    }

    /// A contiguous CPU tensor copying `data`.
    pub fn from_slice<T: Float>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A 0-dimensional tensor holding `value`.
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(&[], value, dtype)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let n = numel(shape);
        let storage = match dtype {
            DType::F32 => Storage::F32(vec![value as f32; n]),
            DType::F64 => Storage::F64(vec![value; n]),
            DType::F16 => Storage::F16(vec![half::f16::from_f64(value); n]),
            DType::BF16 => Storage::BF16(vec![half::bf16::from_f64(value); n]),
        };
        Tensor::from_storage(storage, shape).expect("length matches by construction")
    }

    /// Zeros.
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 0.0, dtype)
    }

    /// Ones.
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 1.0, dtype)
    }

    /// Zeros with this tensor's shape and dtype.
    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(self.shape(), self.dtype())
    }

    /// `0, 1, ..., n-1`.
    pub fn arange(n: usize, dtype: DType) -> Tensor {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        Tensor::from_vec(v, &[n])
            .and_then(|t| t.to_dtype(dtype))
            .expect("arange")
    }

    /// Standard normal samples (Box–Muller over the generator's stream).
    pub fn randn(shape: &[usize], dtype: DType, rng: &mut Philox) -> Tensor {
        let v: Vec<f64> = (0..numel(shape)).map(|_| rng.next_normal()).collect();
        Tensor::from_vec(v, shape)
            .and_then(|t| t.to_dtype(dtype))
            .expect("randn")
    }

    /// Uniform samples in `[lo, hi)`.
    pub fn uniform(shape: &[usize], lo: f64, hi: f64, dtype: DType, rng: &mut Philox) -> Tensor {
        let v: Vec<f64> = (0..numel(shape))
            .map(|_| lo + (hi - lo) * rng.next_f64())
            .collect();
        Tensor::from_vec(v, shape)
            .and_then(|t| t.to_dtype(dtype))
            .expect("uniform")
    }

    // ---------------------------------------------------------------------------------------
    // Accessors
    // ---------------------------------------------------------------------------------------

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// Size of dimension `axis` (negative counts from the end).
    pub fn dim(&self, axis: isize) -> Result<usize> {
        Ok(self.shape()[resolve_axis("dim", self.shape(), axis)?])
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.0.device
    }

    /// The layout (shape, strides, offset) into the storage.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// This record's identity.
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// Whether this tensor is row-major and dense.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// Whether two tensors share one storage buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    pub(crate) fn storage_read(&self) -> RwLockReadGuard<'_, Storage> {
        self.0
            .storage
            .data
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Write access to the storage; bumps its version.
    pub(crate) fn storage_write(&self) -> RwLockWriteGuard<'_, Storage> {
        let guard = self
            .0
            .storage
            .data
            .write()
            .unwrap_or_else(|e| e.into_inner());
        self.0.storage.version.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// The storage's identity and version: equal pairs mean equal contents.
    pub(crate) fn storage_key(&self) -> (usize, u64) {
        (
            Arc::as_ptr(&self.0.storage) as usize,
            self.0.storage.version(),
        )
    }

    /// A weak handle on the storage, to tell whether a cached key is still alive.
    pub(crate) fn storage_weak(&self) -> std::sync::Weak<StorageCell> {
        Arc::downgrade(&self.0.storage)
    }

    // ---------------------------------------------------------------------------------------
    // Leaves and gradients
    // ---------------------------------------------------------------------------------------

    /// A leaf sharing this tensor's storage that collects gradients (a parameter).
    pub fn requiring_grad(&self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::next(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            dtype: self.0.dtype,
            device: self.0.device,
            requires_grad: true,
            is_leaf: true,
            node: Mutex::new(None),
            grad: Mutex::new(None),
        }))
    }

    /// A new tensor with its own copy of the values (dense, no graph, no gradient).
    pub fn deep_copy(&self) -> Result<Tensor> {
        Tensor::from_storage(self.copy_out(self.dtype())?, self.shape())
    }

    /// The same values, cut from the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), self.0.layout.clone(), self.0.device)
    }

    /// The gradient accumulated in this leaf by [`Tensor::backward`] calls, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Replaces the accumulated gradient (used by gradient clipping and tests).
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
    }

    // ---------------------------------------------------------------------------------------
    // Reading values
    // ---------------------------------------------------------------------------------------

    /// The elements in row-major order, converted to `f64`.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.copy_out(DType::F64)
            .and_then(|s| match s {
                Storage::F64(v) => Ok(v),
                _ => unreachable!(),
            })
            .unwrap_or_default()
    }

    /// The elements in row-major order, converted to `f32`.
    pub fn to_vec_f32(&self) -> Vec<f32> {
        self.copy_out(DType::F32)
            .and_then(|s| match s {
                Storage::F32(v) => Ok(v),
                _ => unreachable!(),
            })
            .unwrap_or_default()
    }

    /// The elements in row-major order as `T`, which must be this tensor's dtype.
    pub fn to_vec<T: Float>(&self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(Error::Mismatch {
                op: "to_vec",
                detail: format!("tensor is {}, asked for {}", self.dtype(), T::DTYPE),
            });
        }
        let s = self.copy_out(T::DTYPE)?;
        Ok(T::slice(&s).expect("dtype checked").to_vec())
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape("item", &[self.shape()], "exactly one element"));
        }
        Ok(self.to_vec_f64()[0])
    }

    /// Copies the elements out in row-major order as a new host buffer of `dtype`.
    fn copy_out(&self, dtype: DType) -> Result<Storage> {
        self.expect_cpu("copy_out")?;
        let s = self.storage_read();
        if let Some(r) = self.layout().contiguous_range() {
            if s.dtype() == dtype {
                return Ok(match &*s {
                    Storage::F32(v) => Storage::F32(v[r].to_vec()),
                    Storage::F64(v) => Storage::F64(v[r].to_vec()),
                    Storage::F16(v) => Storage::F16(v[r].to_vec()),
                    Storage::BF16(v) => Storage::BF16(v[r].to_vec()),
                });
            }
            return Ok(s.gather_convert(r, dtype));
        }
        Ok(s.gather_convert(self.layout().positions(), dtype))
    }

    /// Errors unless the tensor is on the CPU (for ops without a CUDA path yet).
    pub(crate) fn expect_cpu(&self, op: &'static str) -> Result<()> {
        match self.device() {
            Device::Cpu => Ok(()),
            d => Err(Error::Mismatch {
                op,
                detail: format!("tensor on {d}: this op has no kernel for that device yet"),
            }),
        }
    }

    /// Runs `f` on the elements as a dense row-major slice: borrowed when contiguous,
    /// gathered into a temporary otherwise.
    pub(crate) fn with_slice<T: Float, R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&[T]) -> R,
    ) -> Result<R> {
        self.expect_cpu(op)?;
        if self.dtype() != T::DTYPE {
            return Err(Error::Mismatch {
                op,
                detail: format!("dtypes {} and {}", self.dtype(), T::DTYPE),
            });
        }
        let s = self.storage_read();
        let data = T::slice(&s).expect("dtype checked");
        match self.layout().contiguous_range() {
            Some(r) => Ok(f(&data[r])),
            None => {
                let v: Vec<T> = self.layout().positions().map(|p| data[p]).collect();
                Ok(f(&v))
            }
        }
    }

    /// Runs `f` on the whole storage slice and the layout (for kernels that walk strides).
    pub(crate) fn with_strided<T: Float, R>(
        &self,
        op: &'static str,
        f: impl FnOnce(&[T], &Layout) -> R,
    ) -> Result<R> {
        self.expect_cpu(op)?;
        if self.dtype() != T::DTYPE {
            return Err(Error::Mismatch {
                op,
                detail: format!("dtypes {} and {}", self.dtype(), T::DTYPE),
            });
        }
        let s = self.storage_read();
        Ok(f(T::slice(&s).expect("dtype checked"), self.layout()))
    }

    /// Converts to `dtype`. Between `f32` and `f64` gradients flow (cast back); converting to or
    /// from a storage-only half type cuts the graph.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = Tensor::from_storage(self.copy_out(dtype)?, self.shape())?;
        if !(dtype.is_compute() && self.dtype().is_compute()) {
            return Ok(out);
        }
        let from = self.dtype();
        Ok(out.record("to_dtype", &[self], move |g| {
            Ok(vec![Some(g.to_dtype(from)?)])
        }))
    }

    /// A dense row-major copy, or this tensor if it already is one.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous()
            && self.layout().offset() == 0
            && self.storage_read().len() == self.numel()
        {
            return Ok(self.clone());
        }
        let out = Tensor::from_storage(self.copy_out(self.dtype())?, self.shape())?;
        // Same values: the gradient passes through unchanged.
        Ok(out.record("contiguous", &[self], |g| Ok(vec![Some(g.clone())])))
    }

    /// Overwrites this tensor's elements with `values` (same shape and dtype), in place.
    /// For the optimiser and checkpoint loading: never call it while a graph still refers to
    /// this tensor's values.
    pub fn update_(&self, values: &Tensor) -> Result<()> {
        if values.shape() != self.shape() {
            return Err(Error::shape(
                "update_",
                &[self.shape(), values.shape()],
                "equal shapes",
            ));
        }
        if !self.is_contiguous() {
            return Err(Error::invalid(
                "update_: only contiguous tensors can be updated in place",
            ));
        }
        let src = values.copy_out(self.dtype())?;
        let range = self
            .layout()
            .contiguous_range()
            .expect("checked contiguous");
        let mut dst = self.storage_write();
        with_float!(self.dtype(), "update_", T => {
            let d = T::slice_mut(&mut dst).expect("dtype");
            d[range].copy_from_slice(T::slice(&src).expect("dtype"));
            Ok(())
        })
    }

    /// Runs `f` on this contiguous CPU tensor's elements, mutably and in place (for fused
    /// optimiser kernels). The same caveat as [`Tensor::update_`] applies.
    pub fn with_data_mut<T: Float, R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.expect_cpu("with_data_mut")?;
        let range = self
            .layout()
            .contiguous_range()
            .ok_or_else(|| Error::invalid("with_data_mut: tensor is not contiguous"))?;
        let mut s = self.storage_write();
        let data = T::slice_mut(&mut s).ok_or_else(|| Error::Mismatch {
            op: "with_data_mut",
            detail: format!("tensor is {}, asked for {}", self.dtype(), T::DTYPE),
        })?;
        Ok(f(&mut data[range]))
    }

    /// Runs `f` on this tensor's elements as a dense slice (borrowed when contiguous).
    pub fn with_data<T: Float, R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        self.with_slice("with_data", f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_and_readback() {
        let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert!(t.to_vec::<f64>().is_err());
        assert_eq!(
            Tensor::arange(4, DType::F64).to_vec_f64(),
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(Tensor::ones(&[2], DType::F32).to_vec_f32(), vec![1.0, 1.0]);
        assert!(Tensor::from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
        assert_eq!(Tensor::scalar(2.5, DType::F64).item().unwrap(), 2.5);
    }

    #[test]
    fn dtype_conversions_round_to_nearest() {
        let t = Tensor::from_vec(vec![1.0f64 / 3.0, 65504.0, 1e-8], &[3]).unwrap();
        let h = t.to_dtype(DType::F16).unwrap();
        assert_eq!(h.dtype(), DType::F16);
        let back = h.to_dtype(DType::F32).unwrap().to_vec_f32();
        assert_eq!(back[0], half::f16::from_f64(1.0 / 3.0).to_f32());
        assert_eq!(back[1], 65504.0);
        let b = t.to_dtype(DType::BF16).unwrap().to_vec_f64();
        assert_eq!(b[0], half::bf16::from_f64(1.0 / 3.0).to_f64());
    }

    #[test]
    fn random_creation_replays_from_seed() {
        let a = Tensor::randn(&[5], DType::F32, &mut Philox::new(1));
        let b = Tensor::randn(&[5], DType::F32, &mut Philox::new(1));
        assert_eq!(a.to_vec_f32(), b.to_vec_f32());
        let u = Tensor::uniform(&[1000], -2.0, 3.0, DType::F64, &mut Philox::new(2)).to_vec_f64();
        assert!(u.iter().all(|&x| (-2.0..3.0).contains(&x)));
    }

    #[test]
    fn update_in_place_is_seen_by_views() {
        let p = Tensor::zeros(&[2, 2], DType::F32).requiring_grad();
        let view = p.detach();
        p.update_(&Tensor::ones(&[2, 2], DType::F32)).unwrap();
        assert_eq!(view.to_vec_f32(), vec![1.0; 4]);
        assert!(p.update_(&Tensor::ones(&[4], DType::F32)).is_err());
    }
}
