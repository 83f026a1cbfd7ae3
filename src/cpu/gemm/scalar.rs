//! The element types the GEMM multiplies: f32 (the working type) and f64 (gradient checks).

use std::fmt::Debug;
use std::ops::{Add, Mul};

use super::config::GemmPath;
use super::kernel::Kernel;
use super::kernel_portable;
#[cfg(target_arch = "x86_64")]
use super::{kernel_avx2, kernel_avx512};

mod sealed {
    /// Closes [`GemmScalar`](super::GemmScalar) to the types this module implements.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A scalar type the GEMM can multiply: implemented for `f32` (AVX-512, AVX2 and portable
/// kernels) and `f64` (the same three paths, half the lanes). Sealed.
pub trait GemmScalar:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + 'static
    + Debug
    + PartialEq
    + bytemuck::Pod
    + Add<Output = Self>
    + Mul<Output = Self>
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Converts from f64 (rounding for f32).
    fn from_f64(x: f64) -> Self;
    /// Converts to f64 (exact).
    fn to_f64(self) -> f64;
    /// The micro-kernel of `path` for this type. The caller checks that the CPU supports
    /// `path` before running the kernel.
    #[doc(hidden)]
    fn kernel(path: GemmPath) -> Kernel<Self>;
}

impl GemmScalar for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn kernel(path: GemmPath) -> Kernel<f32> {
        match path {
            #[cfg(target_arch = "x86_64")]
            GemmPath::Avx512 => kernel_avx512::kernel_f32(),
            #[cfg(target_arch = "x86_64")]
            GemmPath::Avx2 => kernel_avx2::kernel_f32(),
            _ => kernel_portable::kernel::<f32>(),
        }
    }
}

impl GemmScalar for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn kernel(path: GemmPath) -> Kernel<f64> {
        match path {
            #[cfg(target_arch = "x86_64")]
            GemmPath::Avx512 => kernel_avx512::kernel_f64(),
            #[cfg(target_arch = "x86_64")]
            GemmPath::Avx2 => kernel_avx2::kernel_f64(),
            _ => kernel_portable::kernel::<f64>(),
        }
    }
}
