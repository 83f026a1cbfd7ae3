//! Where a tensor's elements live. One enum over devices and element types: a CUDA buffer is
//! one more variant (feature `cuda`), and each op looks at the tensor's device to pick its
//! kernel, so adding a device never rewrites the ops' autograd logic.

use super::Device;
use super::dtype::DType;
use half::{bf16, f16};

/// A flat buffer of elements on one device.
#[derive(Debug)]
pub enum Storage {
    /// Host `f16` (storage only).
    F16(Vec<f16>),
    /// Host `bf16` (storage only).
    BF16(Vec<bf16>),
    /// Host `f32`.
    F32(Vec<f32>),
    /// Host `f64`.
    F64(Vec<f64>),
    /// Device memory (feature `cuda`): `f32`, `f64` or `bf16`.
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaStorage),
}

impl Storage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F16(_) => DType::F16,
            Storage::BF16(_) => DType::BF16,
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => c.dtype(),
        }
    }

    /// The device holding the elements.
    pub fn device(&self) -> Device {
        match self {
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => Device::Cuda(c.device().ordinal()),
            _ => Device::Cpu,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::F16(v) => v.len(),
            Storage::BF16(v) => v.len(),
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => c.len(),
        }
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` converted to `f64`. For device storage this copies the element to the host
    /// (slow; NaN if the device fails).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Storage::F16(v) => v[i].to_f64(),
            Storage::BF16(v) => v[i].to_f64(),
            Storage::F32(v) => f64::from(v[i]),
            Storage::F64(v) => v[i],
            #[cfg(feature = "cuda")]
            Storage::Cuda(c) => c.get_f64(i).unwrap_or(f64::NAN),
        }
    }

    /// Zeros of `dtype`, `len` elements.
    pub fn zeros(dtype: DType, len: usize) -> Storage {
        match dtype {
            DType::F16 => Storage::F16(vec![f16::ZERO; len]),
            DType::BF16 => Storage::BF16(vec![bf16::ZERO; len]),
            DType::F32 => Storage::F32(vec![0.0; len]),
            DType::F64 => Storage::F64(vec![0.0; len]),
        }
    }

    /// Elements at `positions`, converted to `dtype` (rounding to nearest for narrower types),
    /// in host memory. Device storage is copied to the host first (whole); NaN if that fails.
    pub fn gather_convert(&self, positions: impl Iterator<Item = usize>, dtype: DType) -> Storage {
        #[cfg(feature = "cuda")]
        if let Storage::Cuda(c) = self {
            return match c.to_host() {
                Ok(host) => host.gather_convert(positions, dtype),
                Err(_) => {
                    let n = positions.count();
                    Storage::F64(vec![f64::NAN; n]).gather_convert(0..n, dtype)
                }
            };
        }
        macro_rules! conv {
            ($src:expr, $to:expr) => {
                positions.map(|p| $to($src[p])).collect()
            };
        }
        match (self, dtype) {
            (Storage::F32(v), DType::F32) => Storage::F32(conv!(v, |x| x)),
            (Storage::F64(v), DType::F64) => Storage::F64(conv!(v, |x| x)),
            (Storage::F16(v), DType::F16) => Storage::F16(conv!(v, |x| x)),
            (Storage::BF16(v), DType::BF16) => Storage::BF16(conv!(v, |x| x)),
            (s, DType::F32) => Storage::F32(positions.map(|p| s.get_f64(p) as f32).collect()),
            (s, DType::F64) => Storage::F64(positions.map(|p| s.get_f64(p)).collect()),
            (s, DType::F16) => {
                Storage::F16(positions.map(|p| f16::from_f64(s.get_f64(p))).collect())
            }
            (s, DType::BF16) => {
                Storage::BF16(positions.map(|p| bf16::from_f64(s.get_f64(p))).collect())
            }
        }
    }
}
