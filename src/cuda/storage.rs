//! [`CudaStorage`]: the device variant of a tensor's storage ([`crate::tensor::Storage::Cuda`]),
//! and [`CudaFloat`], the two compute types (`f32`, `f64`) that the tensor ops' kernels exist
//! in.

use std::sync::Arc;

use super::args::KernelArg;
use super::buffer::{CudaBuffer, DeviceType};
use super::device::CudaDevice;
use crate::tensor::{DType, Float};
use crate::{Error, Result};

/// A tensor's elements in device memory: one typed buffer. `f32` and `f64` compute; `bf16` is
/// storage only (mixed precision converts it on the device), as on the host.
#[derive(Debug)]
pub enum CudaStorage {
    /// `f32` elements.
    F32(CudaBuffer<f32>),
    /// `f64` elements.
    F64(CudaBuffer<f64>),
    /// `bf16` elements (storage only).
    BF16(CudaBuffer<half::bf16>),
}

impl CudaStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CudaStorage::F32(_) => DType::F32,
            CudaStorage::F64(_) => DType::F64,
            CudaStorage::BF16(_) => DType::BF16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            CudaStorage::F32(b) => b.len(),
            CudaStorage::F64(b) => b.len(),
            CudaStorage::BF16(b) => b.len(),
        }
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device holding the buffer.
    pub fn device(&self) -> &Arc<CudaDevice> {
        match self {
            CudaStorage::F32(b) => b.device(),
            CudaStorage::F64(b) => b.device(),
            CudaStorage::BF16(b) => b.device(),
        }
    }

    /// `len` zeroed elements of `dtype` on `dev` (`f16` has no device storage).
    pub fn zeros(dev: &Arc<CudaDevice>, dtype: DType, len: usize) -> Result<CudaStorage> {
        Ok(match dtype {
            DType::F32 => CudaStorage::F32(dev.zeros(len)?),
            DType::F64 => CudaStorage::F64(dev.zeros(len)?),
            DType::BF16 => CudaStorage::BF16(dev.zeros(len)?),
            DType::F16 => return Err(no_f16()),
        })
    }

    /// A device copy of the host storage `s` (`f16` has no device storage).
    pub fn from_host(dev: &Arc<CudaDevice>, s: &crate::tensor::Storage) -> Result<CudaStorage> {
        use crate::tensor::Storage;
        Ok(match s {
            Storage::F32(v) => CudaStorage::F32(dev.htod(v)?),
            Storage::F64(v) => CudaStorage::F64(dev.htod(v)?),
            Storage::BF16(v) => CudaStorage::BF16(dev.htod(v)?),
            Storage::F16(_) => return Err(no_f16()),
            Storage::Cuda(c) => c.try_clone_to(dev)?,
        })
    }

    /// Copies the whole buffer back to a host storage of the same dtype (waits for the device).
    pub fn to_host(&self) -> Result<crate::tensor::Storage> {
        use crate::tensor::Storage;
        Ok(match self {
            CudaStorage::F32(b) => Storage::F32(b.to_host()?),
            CudaStorage::F64(b) => Storage::F64(b.to_host()?),
            CudaStorage::BF16(b) => Storage::BF16(b.to_host()?),
        })
    }

    /// Element `i` converted to `f64` (one element copied to the host).
    pub fn get_f64(&self, i: usize) -> Result<f64> {
        Ok(match self {
            CudaStorage::F32(b) => f64::from(b.read_range(i..i + 1)?[0]),
            CudaStorage::F64(b) => b.read_range(i..i + 1)?[0],
            CudaStorage::BF16(b) => b.read_range(i..i + 1)?[0].to_f64(),
        })
    }

    /// Elements `range` copied to a host storage of the same dtype.
    pub fn read_range(&self, range: std::ops::Range<usize>) -> Result<crate::tensor::Storage> {
        use crate::tensor::Storage;
        Ok(match self {
            CudaStorage::F32(b) => Storage::F32(b.read_range(range)?),
            CudaStorage::F64(b) => Storage::F64(b.read_range(range)?),
            CudaStorage::BF16(b) => Storage::BF16(b.read_range(range)?),
        })
    }

    /// A copy on `dev` (the same device: a device-side copy; another: through the host).
    pub fn try_clone_to(&self, dev: &Arc<CudaDevice>) -> Result<CudaStorage> {
        if self.device().ordinal() == dev.ordinal() {
            return Ok(match self {
                CudaStorage::F32(b) => CudaStorage::F32(b.try_clone()?),
                CudaStorage::F64(b) => CudaStorage::F64(b.try_clone()?),
                CudaStorage::BF16(b) => CudaStorage::BF16(b.try_clone()?),
            });
        }
        CudaStorage::from_host(dev, &self.to_host()?)
    }
}

fn no_f16() -> Error {
    Error::Cuda("f16 tensors have no device storage: convert to f32 or bf16 first".into())
}

/// A compute type with kernels on the device: `f32` or `f64`. Generic tensor-op glue
/// (`crate::cuda::ops`) is written once over `T: CudaFloat`; the launch wrappers of
/// [`float_kernels!`](crate::cuda::kernels) pick the `_f32` or `_f64` kernel by it.
pub trait CudaFloat: Float + DeviceType + KernelArg<Repr = Self> {
    /// Whether this is `f64` (kernels named `*_f64`), else `f32` (`*_f32`).
    const IS_F64: bool;
    /// The typed buffer inside `s`, if `s` holds this type.
    fn buffer(s: &CudaStorage) -> Option<&CudaBuffer<Self>>;
    /// The typed buffer inside `s`, mutably, if `s` holds this type.
    fn buffer_mut(s: &mut CudaStorage) -> Option<&mut CudaBuffer<Self>>;
    /// Wraps a buffer as storage.
    fn wrap(b: CudaBuffer<Self>) -> CudaStorage;
}

impl CudaFloat for f32 {
    const IS_F64: bool = false;
    fn buffer(s: &CudaStorage) -> Option<&CudaBuffer<f32>> {
        match s {
            CudaStorage::F32(b) => Some(b),
            _ => None,
        }
    }
    fn buffer_mut(s: &mut CudaStorage) -> Option<&mut CudaBuffer<f32>> {
        match s {
            CudaStorage::F32(b) => Some(b),
            _ => None,
        }
    }
    fn wrap(b: CudaBuffer<f32>) -> CudaStorage {
        CudaStorage::F32(b)
    }
}

impl CudaFloat for f64 {
    const IS_F64: bool = true;
    fn buffer(s: &CudaStorage) -> Option<&CudaBuffer<f64>> {
        match s {
            CudaStorage::F64(b) => Some(b),
            _ => None,
        }
    }
    fn buffer_mut(s: &mut CudaStorage) -> Option<&mut CudaBuffer<f64>> {
        match s {
            CudaStorage::F64(b) => Some(b),
            _ => None,
        }
    }
    fn wrap(b: CudaBuffer<f64>) -> CudaStorage {
        CudaStorage::F64(b)
    }
}
