//! Element types. `f32` is the working type, `f64` serves gradient checks and parity tests;
//! `f16` and `bf16` are storage formats for loading and saving (convert before computing).

use super::storage::Storage;
use std::fmt;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE half precision (storage only).
    F16,
    /// bfloat16 (storage only).
    BF16,
    /// Single precision: the working type.
    F32,
    /// Double precision: gradient checks and reference parity.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// The safetensors name of the type (`F32`, `BF16`, ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }

    /// Whether ops compute in this type (as opposed to storage-only half types).
    pub fn is_compute(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
        })
    }
}

/// A compute element type (`f32` or `f64`): the arithmetic the CPU kernels are generic over.
pub trait Float:
    Copy
    + Default
    + PartialOrd
    + PartialEq
    + Send
    + Sync
    + fmt::Debug
    + fmt::Display
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::iter::Sum
    + 'static
{
    /// The matching [`DType`].
    const DTYPE: DType;
    /// 0
    const ZERO: Self;
    /// 1
    const ONE: Self;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// e^x
    fn exp(self) -> Self;
    /// ln x
    fn ln(self) -> Self;
    /// √x
    fn sqrt(self) -> Self;
    /// tanh x
    fn tanh(self) -> Self;
    /// x^p
    fn powf(self, p: Self) -> Self;
    /// |x|
    fn abs(self) -> Self;
    /// Whether x is neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Whether x is NaN.
    fn is_nan(self) -> bool;
    /// The larger of two values (NaN-propagating is not required).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values.
    fn min(self, other: Self) -> Self;
    /// The slice of this type inside `s`, if `s` holds this type on the CPU.
    fn slice(s: &Storage) -> Option<&[Self]>;
    /// The mutable slice of this type inside `s`, if `s` holds this type on the CPU.
    fn slice_mut(s: &mut Storage) -> Option<&mut [Self]>;
    /// Wraps a vector as CPU storage.
    fn into_storage(v: Vec<Self>) -> Storage;
    /// `x ← eˣ` over a slice (vectorised for `f32`, see [`crate::cpu::vmath`]).
    fn exp_in_place(xs: &mut [Self]) {
        for x in xs {
            *x = x.exp();
        }
    }
    /// The largest element of a slice (−∞ when empty).
    fn max_of(xs: &[Self]) -> Self {
        xs.iter()
            .copied()
            .fold(Self::from_f64(f64::NEG_INFINITY), |m, v| {
                if v > m || v.is_nan() { v } else { m }
            })
    }
    /// The sum of a slice.
    fn sum_of(xs: &[Self]) -> Self {
        xs.iter().copied().sum()
    }
    /// `Σ aᵢ bᵢ`.
    fn dot_of(a: &[Self], b: &[Self]) -> Self {
        a.iter().zip(b).map(|(&x, &y)| x * y).sum()
    }
    /// 1 / (1 + e^-x), computed without overflow for large |x|.
    fn sigmoid(self) -> Self {
        if self >= Self::ZERO {
            Self::ONE / (Self::ONE + (-self).exp())
        } else {
            let e = self.exp();
            e / (Self::ONE + e)
        }
    }
}

macro_rules! impl_float {
    ($t:ty, $dt:expr, $variant:ident, vectorised) => {
        impl_float!($t, $dt, $variant, {
            fn exp_in_place(xs: &mut [Self]) {
                crate::cpu::vmath::exp_in_place(xs)
            }
            fn max_of(xs: &[Self]) -> Self {
                crate::cpu::vmath::max(xs)
            }
            fn sum_of(xs: &[Self]) -> Self {
                crate::cpu::vmath::sum(xs)
            }
            fn dot_of(a: &[Self], b: &[Self]) -> Self {
                crate::cpu::vmath::dot(a, b)
            }
        });
    };
    ($t:ty, $dt:expr, $variant:ident, scalar) => {
        impl_float!($t, $dt, $variant, {});
    };
    ($t:ty, $dt:expr, $variant:ident, { $($extra:item)* }) => {
        impl Float for $t {
            $($extra)*
            const DTYPE: DType = $dt;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            fn slice(s: &Storage) -> Option<&[Self]> {
                match s {
                    Storage::$variant(v) => Some(v),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
            fn slice_mut(s: &mut Storage) -> Option<&mut [Self]> {
                match s {
                    Storage::$variant(v) => Some(v),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
            fn into_storage(v: Vec<Self>) -> Storage {
                Storage::$variant(v)
            }
        }
    };
}

impl_float!(f32, DType::F32, F32, vectorised);
impl_float!(f64, DType::F64, F64, scalar);

/// Runs `$body` with the type alias `$T` bound to the Rust type of a compute dtype, or returns
/// an [`Error::Mismatch`](crate::Error::Mismatch) for the half types.
#[macro_export]
#[doc(hidden)]
macro_rules! with_float {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::tensor::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::tensor::DType::F64 => {
                type $T = f64;
                $body
            }
            other => Err($crate::Error::Mismatch {
                op: $op,
                detail: format!("dtype {other} is storage-only; convert to f32 first"),
            }),
        }
    };
}
