//! `Tensor`: an n-dimensional array with a dtype, a device, and (optionally) a place in the
//! autograd graph.
//!
//! A tensor is a cheap handle (`Arc`) to an immutable record: a shared storage buffer, a
//! [`Layout`] (shape, strides, offset) into it, and the op that produced it. Views (reshape of
//! contiguous data, permute/transpose, narrow, broadcast) share the buffer; ops produce new
//! buffers. The only in-place writes are the optimiser's updates of parameters
//! ([`Tensor::update_`]), made between steps when no graph refers to them, and moving a
//! parameter's storage to another device ([`Tensor::move_to_device_`]).
//!
//! The device is the storage's: a CPU tensor's elements are host vectors, a CUDA tensor's a
//! device buffer (`Storage::Cuda`, feature `cuda`). Every op looks at its inputs' device and
//! runs the CPU kernel or its CUDA counterpart in `crate::cuda::ops`; [`Tensor::to_device`]
//! copies between devices (differentiably), and creation functions have `_on(device)` forms.

mod dtype;
mod ids;
mod shape;
mod storage;

pub use dtype::{DType, Float};
pub use ids::Ids;
pub(crate) use shape::coalesce;
pub use shape::{Layout, broadcast_shapes, contiguous_strides, numel, resolve_axis};
pub use storage::Storage;

use crate::autograd::Node;
use crate::rng::Philox;
use crate::{Error, Result, with_float};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Runs `$e` (a call into `crate::cuda`) when built with the `cuda` feature; otherwise errors.
/// Without the feature no tensor can be on a CUDA device, so the error marks a bug or a
/// `Device::Cuda` asked for explicitly.
macro_rules! on_cuda {
    ($e:expr) => {{
        #[cfg(feature = "cuda")]
        {
            $e
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err($crate::tensor::no_cuda_feature())
        }
    }};
}
pub(crate) use on_cuda;

/// The error for a CUDA device in a build without the `cuda` feature.
#[cfg_attr(feature = "cuda", allow(dead_code))]
pub(crate) fn no_cuda_feature() -> Error {
    Error::Cuda("aoanet was built without the `cuda` feature".into())
}

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

impl std::str::FromStr for Device {
    type Err = Error;

    /// `cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Device> {
        let bad = || {
            Error::invalid(format!(
                "unknown device {s:?}: expected cpu, cuda or cuda:N"
            ))
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse().map(Device::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl Device {
    /// The first GPU when this build has the `cuda` feature and a driver reports one, else
    /// the CPU. Never panics.
    pub fn auto() -> Device {
        #[cfg(feature = "cuda")]
        if crate::cuda::available() {
            return Device::Cuda(0);
        }
        Device::Cpu
    }

    /// `self` if work can run there now, else an error saying why (no `cuda` feature in this
    /// build, no driver or GPU, an ordinal past the device count).
    pub fn check_available(self) -> Result<Device> {
        match self {
            Device::Cpu => Ok(self),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(no_cuda_feature()),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                if let Some(why) = crate::cuda::unavailable_reason() {
                    return Err(Error::Cuda(format!("{self} is not available: {why}")));
                }
                let count = crate::cuda::device_count();
                if i >= count {
                    return Err(Error::Cuda(format!(
                        "{self} is not available: the driver reports {count} device(s)"
                    )));
                }
                Ok(self)
            }
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
    /// The storage's device (see [`encode_device`]), kept beside it so that
    /// [`Tensor::device`] takes no lock; changed only by [`Tensor::move_to_device_`].
    device: AtomicUsize,
}

/// A device as one word: 0 for the CPU, `i + 1` for CUDA device `i`.
fn encode_device(d: Device) -> usize {
    match d {
        Device::Cpu => 0,
        Device::Cuda(i) => i + 1,
    }
}

impl StorageCell {
    pub(crate) fn new(storage: Storage) -> Arc<StorageCell> {
        Arc::new(StorageCell {
            device: AtomicUsize::new(encode_device(storage.device())),
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
    pub(crate) fn from_parts(storage: Arc<StorageCell>, layout: Layout) -> Tensor {
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
            requires_grad: false,
            is_leaf: false,
            node: Mutex::new(None),
            grad: Mutex::new(None),
        }))
    }

    /// A contiguous tensor owning `storage` (on the storage's device), which must hold exactly
    /// `numel(shape)` elements.
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

    /// A tensor of `shape` filled with `value` on `device`.
    pub fn full_on(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Tensor::full(shape, value, dtype)),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => crate::cuda::ops::full(i, shape, value, dtype),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(no_cuda_feature()),
        }
    }

    /// Zeros on `device`.
    pub fn zeros_on(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full_on(shape, 0.0, dtype, device)
    }

    /// Ones on `device`.
    pub fn ones_on(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Tensor::full_on(shape, 1.0, dtype, device)
    }

    /// Zeros with this tensor's shape, dtype and device.
    ///
    /// # Panics
    /// If device memory cannot be allocated (use [`Tensor::try_zeros_like`] to handle that).
    pub fn zeros_like(&self) -> Tensor {
        self.try_zeros_like()
            .unwrap_or_else(|e| panic!("zeros_like on {}: {e}", self.device()))
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn try_zeros_like(&self) -> Result<Tensor> {
        Tensor::zeros_on(self.shape(), self.dtype(), self.device())
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

    /// The device holding the elements.
    pub fn device(&self) -> Device {
        match self.0.storage.device.load(Ordering::Acquire) {
            0 => Device::Cpu,
            i => Device::Cuda(i - 1),
        }
    }

    /// Whether the elements live on a CUDA device.
    pub fn is_cuda(&self) -> bool {
        self.0.storage.device.load(Ordering::Acquire) != 0
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
            requires_grad: true,
            is_leaf: true,
            node: Mutex::new(None),
            grad: Mutex::new(None),
        }))
    }

    /// A new tensor with its own copy of the values on the same device (dense, no graph, no
    /// gradient).
    pub fn deep_copy(&self) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::ops::dense_copy(self);
        }
        Tensor::from_storage(self.copy_out(self.dtype())?, self.shape())
    }

    /// The same values, cut from the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), self.0.layout.clone())
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

    /// Copies the elements out in row-major order as a new host buffer of `dtype` (from any
    /// device).
    pub(crate) fn copy_out(&self, dtype: DType) -> Result<Storage> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::ops::copy_out(self, dtype);
        }
        let s = self.storage_read();
        if let Some(r) = self.layout().contiguous_range() {
            if s.dtype() == dtype {
                return Ok(match &*s {
                    Storage::F32(v) => Storage::F32(v[r].to_vec()),
                    Storage::F64(v) => Storage::F64(v[r].to_vec()),
                    Storage::F16(v) => Storage::F16(v[r].to_vec()),
                    Storage::BF16(v) => Storage::BF16(v[r].to_vec()),
                    #[cfg(feature = "cuda")]
                    Storage::Cuda(c) => c.read_range(r)?,
                });
            }
            return Ok(s.gather_convert(r, dtype));
        }
        Ok(s.gather_convert(self.layout().positions(), dtype))
    }

    /// Errors unless the tensor is on the CPU (the host accessors below, used by the CPU
    /// kernels).
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

    /// Converts to `dtype` on the same device. Between `f32` and `f64` gradients flow (cast
    /// back); converting to or from a storage-only half type cuts the graph.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = if self.is_cuda() {
            on_cuda!(crate::cuda::ops::cast(self, dtype))?
        } else {
            Tensor::from_storage(self.copy_out(dtype)?, self.shape())?
        };
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
        let out = if self.is_cuda() {
            on_cuda!(crate::cuda::ops::dense_copy(self))?
        } else {
            Tensor::from_storage(self.copy_out(self.dtype())?, self.shape())?
        };
        // Same values: the gradient passes through unchanged.
        Ok(out.record("contiguous", &[self], |g| Ok(vec![Some(g.clone())])))
    }

    /// The same values on `device` (a copy; this tensor itself if it is there already).
    /// Differentiable: the gradient is copied back to this tensor's device.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        let from = self.device();
        if device == from {
            return Ok(self.clone());
        }
        let out = match device {
            Device::Cpu => Tensor::from_storage(self.copy_out(self.dtype())?, self.shape())?,
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => crate::cuda::ops::upload(self, i)?,
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => return Err(no_cuda_feature()),
        };
        Ok(out.record("to_device", &[self], move |g| {
            Ok(vec![Some(g.to_device(from)?)])
        }))
    }

    /// Moves this tensor's whole storage — shared with every view of it and every leaf made
    /// from it — to `device`, in place (PyTorch's `module.to(device)` for parameters). Layouts
    /// are unchanged, so every view stays valid. Like [`Tensor::update_`], never call it while
    /// a graph still refers to these values.
    pub fn move_to_device_(&self, device: Device) -> Result<()> {
        if device == self.device() {
            return Ok(());
        }
        let mut guard = self.storage_write();
        let moved = match device {
            Device::Cpu => on_cuda!(crate::cuda::ops::storage_to_host(&guard))?,
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => crate::cuda::ops::storage_to_device(&guard, i)?,
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => return Err(no_cuda_feature()),
        };
        *guard = moved;
        self.0
            .storage
            .device
            .store(encode_device(device), Ordering::Release);
        Ok(())
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
        if self.is_cuda() {
            return on_cuda!(crate::cuda::ops::update(self, values));
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

    /// Runs `f` on this contiguous tensor's elements, mutably and in place (for fused
    /// optimiser kernels and checkpoint loading). The same caveat as [`Tensor::update_`]
    /// applies. On a CUDA device the elements are copied to the host, given to `f`, and copied
    /// back (slow: the ops never use this path).
    pub fn with_data_mut<T: Float, R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        if self.is_cuda() {
            return on_cuda!(crate::cuda::ops::with_host_data_mut(self, f));
        }
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

    /// Runs `f` on this tensor's elements as a dense slice (borrowed when contiguous; on a
    /// CUDA device, a host copy).
    pub fn with_data<T: Float, R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        if self.is_cuda() {
            let v = self.to_vec::<T>()?;
            return Ok(f(&v));
        }
        self.with_slice("with_data", f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_report_why_they_are_unusable() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        for bad in ["", "tpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            let e = bad.parse::<Device>().unwrap_err().to_string();
            assert!(e.contains("expected cpu, cuda or cuda:N"), "{bad}: {e}");
        }
        assert_eq!(Device::Cpu.check_available().unwrap(), Device::Cpu);
        // No machine has 1000 GPUs; without the feature or a driver the reason is given.
        let e = Device::Cuda(1000)
            .check_available()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cuda") || e.contains("CUDA"), "{e}");
        // `auto` never picks an unusable device.
        assert!(Device::auto().check_available().is_ok());
    }

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
