//! Page-locked staging for large host-to-device copies.
//!
//! From pageable memory the driver stages a copy through small page-locked buffers of its own
//! and the calling thread waits while the transfer goes; from page-locked memory the DMA runs
//! asynchronously on the stream, behind the kernels already queued. Uploads of at least
//! [`STAGED_MIN_BYTES`] (a training batch's features: 10 images × 36 regions × 2048 floats,
//! 2.9 MB) go through one page-locked buffer per device: the host copies into it and returns
//! while the DMA runs.
//!
//! Safety of reuse: an event is recorded on the stream after each DMA out of the buffer, and
//! the next upload (or growing or freeing the buffer) first waits for that event, so the
//! buffer is never written while the device may still read it.
//!
//! Small uploads (token ids at every decoder step, the address tables of the multi-tensor
//! kernels, key masks) go through [`SmallStaging`], a ring of page-locked slots: CUDA documents
//! that a copy from pageable memory "may synchronize with the stream" when the driver stages
//! it, which would make the host wait for every kernel queued before each decoder step's
//! ids. From a slot the copy is an ordinary queued DMA; a slot is written again only after
//! the event of its previous DMA (one ring turn earlier) has completed.

use std::ffi::c_void;

use cudarc::driver::result;
use cudarc::driver::sys::{CUevent, CUevent_flags, CUstream};

use crate::{Error, Result};

/// Uploads of at least this many bytes are staged (smaller ones, like the token ids of every
/// decoder step, cost more in the extra host copy than they gain).
pub(crate) const STAGED_MIN_BYTES: usize = 256 * 1024;

fn err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("staged upload: {what}: {e:?}"))
}

/// One device's page-locked staging buffer and the event that marks its last DMA.
pub(crate) struct Staging {
    buf: *mut u8,
    capacity: usize,
    /// Recorded after the last DMA out of `buf`; `None` until the first upload.
    event: Option<CUevent>,
}

// SAFETY: the buffer and the event are plain driver handles, used only under the device's
// Mutex and with the device's context bound to the calling thread.
unsafe impl Send for Staging {}

impl Staging {
    /// No buffer yet (allocated on the first staged upload).
    pub(crate) const fn new() -> Staging {
        Staging {
            buf: std::ptr::null_mut(),
            capacity: 0,
            event: None,
        }
    }

    /// Waits until the device has read the buffer's last contents.
    fn wait_idle(&self) -> Result<()> {
        if let Some(e) = self.event {
            // SAFETY: a live event of this context (created in `upload`).
            unsafe { result::event::synchronize(e) }
                .map_err(|e| err("wait for the last copy", e))?;
        }
        Ok(())
    }

    /// Copies `src` into the buffer and queues its DMA to `dst` on `stream`. The caller binds
    /// the device's context first.
    ///
    /// # Safety
    /// `dst` must point to at least `src.len()` bytes of device memory that stay allocated
    /// until the copy has run (the pool's blocks are freed in stream order, so a buffer that
    /// is later freed and reused is written only after this copy), and `stream` must be the
    /// stream of the context bound to this thread.
    pub(crate) unsafe fn upload(&mut self, src: &[u8], dst: u64, stream: CUstream) -> Result<()> {
        self.wait_idle()?;
        if self.capacity < src.len() {
            self.release()?;
            let capacity = src.len().next_power_of_two();
            // SAFETY: the context is bound (the caller's contract); flags 0 = portable off,
            // plain page-locked memory.
            let buf = unsafe { result::malloc_host(capacity, 0) }
                .map_err(|e| err(&format!("page-lock {capacity} bytes"), e))?;
            self.buf = buf.cast::<u8>();
            self.capacity = capacity;
        }
        if self.event.is_none() {
            let e = result::event::create(CUevent_flags::CU_EVENT_DISABLE_TIMING)
                .map_err(|e| err("create event", e))?;
            self.event = Some(e);
        }
        // SAFETY: `buf` holds `capacity ≥ src.len()` bytes and the device no longer reads it
        // (waited above); the regions cannot overlap (one is page-locked memory of ours).
        let staged = unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.buf, src.len());
            std::slice::from_raw_parts(self.buf, src.len())
        };
        // SAFETY: `dst` holds `src.len()` bytes (the caller's contract); `staged` stays
        // allocated and unwritten until the event recorded next has completed.
        unsafe { result::memcpy_htod_async(dst, staged, stream) }.map_err(|e| err("copy", e))?;
        let event = self.event.expect("created above");
        // SAFETY: a live event and the caller's stream.
        unsafe { result::event::record(event, stream) }.map_err(|e| err("record event", e))
    }

    /// Frees the buffer once the device is done with it.
    fn release(&mut self) -> Result<()> {
        self.wait_idle()?;
        if !self.buf.is_null() {
            // SAFETY: `buf` came from `malloc_host` and no copy reads it any more.
            unsafe { result::free_host(self.buf.cast::<c_void>()) }
                .map_err(|e| err("free page-locked memory", e))?;
            self.buf = std::ptr::null_mut();
            self.capacity = 0;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Errors here have nowhere to go; the process is tearing the device down.
        let _ = self.release();
        if let Some(e) = self.event.take() {
            // SAFETY: a live event; nothing waits on it any more.
            let _ = unsafe { result::event::destroy(e) };
        }
    }
}

/// Uploads of at most this many bytes go through the ring of [`SmallStaging`].
pub(crate) const SMALL_SLOT_BYTES: usize = 64 * 1024;
/// Slots in the ring (4 MiB of page-locked memory in all, allocated on the first small upload).
const SMALL_SLOTS: usize = 64;

/// A ring of page-locked slots for small host-to-device copies, each with the event of its
/// last DMA.
pub(crate) struct SmallStaging {
    buf: *mut u8,
    events: [Option<CUevent>; SMALL_SLOTS],
    next: usize,
}

// SAFETY: as for `Staging`: driver handles used only under the device's Mutex with its
// context bound.
unsafe impl Send for SmallStaging {}

impl SmallStaging {
    /// No memory yet.
    pub(crate) const fn new() -> SmallStaging {
        SmallStaging {
            buf: std::ptr::null_mut(),
            events: [None; SMALL_SLOTS],
            next: 0,
        }
    }

    /// Copies `src` (at most [`SMALL_SLOT_BYTES`]) into the next slot, once the device has
    /// read that slot's previous contents, and queues its DMA to `dst` on `stream`.
    ///
    /// # Safety
    /// As [`Staging::upload`]: `dst` holds `src.len()` bytes of device memory allocated in
    /// stream order, the device's context is bound and `stream` is its stream.
    pub(crate) unsafe fn upload(&mut self, src: &[u8], dst: u64, stream: CUstream) -> Result<()> {
        if src.len() > SMALL_SLOT_BYTES {
            return Err(err(
                "small upload",
                format!("{} bytes exceed a slot's {SMALL_SLOT_BYTES}", src.len()),
            ));
        }
        if self.buf.is_null() {
            // SAFETY: the context is bound (the caller's contract); plain page-locked memory.
            let buf = unsafe { result::malloc_host(SMALL_SLOTS * SMALL_SLOT_BYTES, 0) }
                .map_err(|e| err("page-lock the small-upload ring", e))?;
            self.buf = buf.cast::<u8>();
        }
        let slot = self.next;
        self.next = (slot + 1) % SMALL_SLOTS;
        let event = match self.events[slot] {
            Some(e) => {
                // SAFETY: a live event of this context, recorded after the slot's last DMA.
                unsafe { result::event::synchronize(e) }
                    .map_err(|e| err("wait for a slot's last copy", e))?;
                e
            }
            None => {
                let e = result::event::create(CUevent_flags::CU_EVENT_DISABLE_TIMING)
                    .map_err(|e| err("create event", e))?;
                self.events[slot] = Some(e);
                e
            }
        };
        // SAFETY: the slot lies inside `buf` and the device no longer reads it (waited above);
        // page-locked memory of ours cannot overlap `src`.
        let staged = unsafe {
            let at = self.buf.add(slot * SMALL_SLOT_BYTES);
            std::ptr::copy_nonoverlapping(src.as_ptr(), at, src.len());
            std::slice::from_raw_parts(at, src.len())
        };
        // SAFETY: `dst` holds `src.len()` bytes (the caller's contract); the slot stays
        // allocated and unwritten until the event recorded next has completed.
        unsafe { result::memcpy_htod_async(dst, staged, stream) }.map_err(|e| err("copy", e))?;
        // SAFETY: a live event and the caller's stream.
        unsafe { result::event::record(event, stream) }.map_err(|e| err("record event", e))
    }
}

impl Drop for SmallStaging {
    fn drop(&mut self) {
        // Errors here have nowhere to go; the process is tearing the device down.
        for e in self.events.iter_mut().filter_map(Option::take) {
            // SAFETY: live events of this context; after the wait nothing reads their slots.
            unsafe {
                let _ = result::event::synchronize(e);
                let _ = result::event::destroy(e);
            }
        }
        if !self.buf.is_null() {
            // SAFETY: `buf` came from `malloc_host`; every DMA out of it has completed.
            let _ = unsafe { result::free_host(self.buf.cast::<c_void>()) };
        }
    }
}
