//! Typed device memory: [`CudaBuffer`] owns a pooled block; [`CudaView`] / [`CudaViewMut`]
//! borrow a range of one for a kernel launch.

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytemuck::Pod;

use super::device::CudaDevice;
use super::pool::Block;
use crate::{Error, Result};

/// An element type that kernels read and write, with its C names (see `kernels/common.cuh`).
pub trait DeviceType: Pod + Send + Sync + 'static {
    /// The C name, e.g. `"float"`.
    const C_NAME: &'static str;
    /// `const T*` as kernels spell it.
    const C_CONST_PTR: &'static str;
    /// `T*` as kernels spell it.
    const C_MUT_PTR: &'static str;
}

macro_rules! device_type {
    ($t:ty, $c:literal) => {
        impl DeviceType for $t {
            const C_NAME: &'static str = $c;
            const C_CONST_PTR: &'static str = concat!("const ", $c, "*");
            const C_MUT_PTR: &'static str = concat!($c, "*");
        }
    };
}

device_type!(f32, "float");
device_type!(f64, "double");
device_type!(i32, "int");
device_type!(u32, "u32");
device_type!(i64, "i64");
device_type!(u64, "u64");
device_type!(u8, "u8");
device_type!(half::bf16, "bf16");
device_type!(half::f16, "f16");

/// `len` elements of `T` in device memory taken from the device's pool; the memory goes back
/// to the pool when the buffer is dropped. Contents start unspecified unless created by
/// [`CudaDevice::zeros`] or a copy.
pub struct CudaBuffer<T: DeviceType> {
    dev: Arc<CudaDevice>,
    block: Block,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: DeviceType> std::fmt::Debug for CudaBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaBuffer<{}>[{}] on cuda:{}",
            T::C_NAME,
            self.len,
            self.dev.ordinal()
        )
    }
}

impl<T: DeviceType> Drop for CudaBuffer<T> {
    fn drop(&mut self) {
        self.dev.release_block(self.block);
    }
}

fn range(bounds: impl RangeBounds<usize>, len: usize) -> Result<(usize, usize)> {
    let start = match bounds.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match bounds.end_bound() {
        Bound::Included(&e) => e + 1,
        Bound::Excluded(&e) => e,
        Bound::Unbounded => len,
    };
    if start > end || end > len {
        return Err(Error::invalid(format!(
            "device slice {start}..{end} out of range for length {len}"
        )));
    }
    Ok((start, end))
}

impl<T: DeviceType> CudaBuffer<T> {
    /// Wraps a pool block of at least `len * size_of::<T>()` bytes.
    pub(crate) fn from_block(dev: Arc<CudaDevice>, block: Block, len: usize) -> Self {
        debug_assert!(block.class >= len * std::mem::size_of::<T>());
        CudaBuffer {
            dev,
            block,
            len,
            _t: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device holding the memory.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// The device address of element 0.
    pub fn device_ptr(&self) -> u64 {
        self.block.ptr
    }

    /// The whole buffer, read-only, for a kernel argument.
    pub fn view(&self) -> CudaView<'_, T> {
        CudaView {
            ptr: self.block.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }

    /// The whole buffer, writable, for a kernel argument.
    pub fn view_mut(&mut self) -> CudaViewMut<'_, T> {
        CudaViewMut {
            ptr: self.block.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }

    /// Elements `bounds`, read-only.
    pub fn slice(&self, bounds: impl RangeBounds<usize>) -> Result<CudaView<'_, T>> {
        self.view().slice(bounds)
    }

    /// Elements `bounds`, writable.
    pub fn slice_mut(&mut self, bounds: impl RangeBounds<usize>) -> Result<CudaViewMut<'_, T>> {
        let (s, e) = range(bounds, self.len)?;
        Ok(CudaViewMut {
            ptr: self.block.ptr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            _t: PhantomData,
        })
    }

    /// Copies the buffer to a new host vector (waits for the device's queued work).
    pub fn to_host(&self) -> Result<Vec<T>> {
        let mut out = vec![T::zeroed(); self.len];
        self.dev.copy_dtoh(self.block.ptr, &mut out)?;
        Ok(out)
    }

    /// Copies elements `bounds` to a new host vector (waits for the device's queued work).
    pub fn read_range(&self, bounds: impl RangeBounds<usize>) -> Result<Vec<T>> {
        let (s, e) = range(bounds, self.len)?;
        let mut out = vec![T::zeroed(); e - s];
        self.dev.copy_dtoh(
            self.block.ptr + (s * std::mem::size_of::<T>()) as u64,
            &mut out,
        )?;
        Ok(out)
    }

    /// Overwrites elements `start..start + src.len()` with `src` (waits for the copy).
    pub fn write_at(&mut self, start: usize, src: &[T]) -> Result<()> {
        let (s, _) = range(start..start + src.len(), self.len)?;
        self.dev
            .copy_htod(src, self.block.ptr + (s * std::mem::size_of::<T>()) as u64)
    }

    /// Overwrites the buffer with `src`, which must have the buffer's length.
    pub fn copy_from_host(&mut self, src: &[T]) -> Result<()> {
        if src.len() != self.len {
            return Err(Error::invalid(format!(
                "copy_from_host: {} host elements into a device buffer of {}",
                src.len(),
                self.len
            )));
        }
        self.dev.copy_htod(src, self.block.ptr)
    }

    /// A device-side copy in a new buffer.
    pub fn try_clone(&self) -> Result<CudaBuffer<T>> {
        let mut out = self.dev.alloc::<T>(self.len)?;
        self.dev.copy_dtod(
            self.block.ptr,
            out.view_mut().device_ptr(),
            self.len * std::mem::size_of::<T>(),
        )?;
        Ok(out)
    }
}

/// A read-only borrowed range of device elements: a `const T*` kernel argument.
#[derive(Clone, Copy, Debug)]
pub struct CudaView<'a, T> {
    ptr: u64,
    len: usize,
    _t: PhantomData<&'a T>,
}

impl<'a, T> CudaView<'a, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of the first element.
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// A sub-range.
    pub fn slice(&self, bounds: impl RangeBounds<usize>) -> Result<CudaView<'a, T>> {
        let (s, e) = range(bounds, self.len)?;
        Ok(CudaView {
            ptr: self.ptr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            _t: PhantomData,
        })
    }

    /// The same elements seen as `U`.
    ///
    /// # Safety
    /// `U` must have the size of `T` and every bit pattern of the elements must be a valid `U`
    /// (used to pass a generic `CudaView<T>` with `T = f32` where `f32` is named).
    pub unsafe fn cast<U>(self) -> CudaView<'a, U> {
        debug_assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<U>());
        CudaView {
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }
}

/// A writable borrowed range of device elements: a `T*` kernel argument.
#[derive(Debug)]
pub struct CudaViewMut<'a, T> {
    ptr: u64,
    len: usize,
    _t: PhantomData<&'a mut T>,
}

impl<'a, T> CudaViewMut<'a, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of the first element.
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// Reborrows as read-only.
    pub fn as_view(&self) -> CudaView<'_, T> {
        CudaView {
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }

    /// Reborrows, so a view can be passed to a launch and used again afterwards.
    pub fn reborrow(&mut self) -> CudaViewMut<'_, T> {
        CudaViewMut {
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }

    /// A sub-range.
    pub fn slice_mut(self, bounds: impl RangeBounds<usize>) -> Result<CudaViewMut<'a, T>> {
        let (s, e) = range(bounds, self.len)?;
        Ok(CudaViewMut {
            ptr: self.ptr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            _t: PhantomData,
        })
    }

    /// Two writable views of the same range, for one kernel that writes two interleaved
    /// outputs into one buffer (e.g. the LSTM cell's `h` and `c` as the two halves of each
    /// row of `[B, 2H]`).
    ///
    /// # Safety
    /// The kernel must write disjoint elements through the two views.
    pub unsafe fn alias(self) -> (CudaViewMut<'a, T>, CudaViewMut<'a, T>) {
        let twin = CudaViewMut {
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        };
        (self, twin)
    }

    /// The same elements seen as `U`.
    ///
    /// # Safety
    /// As [`CudaView::cast`].
    pub unsafe fn cast<U>(self) -> CudaViewMut<'a, U> {
        debug_assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<U>());
        CudaViewMut {
            ptr: self.ptr,
            len: self.len,
            _t: PhantomData,
        }
    }
}
