//! Small reads the host collects later: a device-to-host copy queued on the stream into
//! page-locked memory, with an event recorded after it.
//!
//! A plain read (`CudaBuffer::to_host`) waits for everything queued before it returns, so a
//! loop that reads a value after each step lets the GPU run dry while the host queues the next
//! step. The decoding loop instead queues step `t + 1` and only then waits for the read of step
//! `t` ([`LaterRead::wait`]): the event covers the work queued before the copy, not the step
//! queued after it, so the GPU keeps working while the host decides whether to go on.
//!
//! The page-locked memory is one page per device cut into [`SLOTS`] slots of [`SLOT_BYTES`],
//! each with its own event; a read takes a free slot and gives it back when collected or
//! dropped (after its copy has landed). Larger reads, or more than [`SLOTS`] in flight, are
//! read at once instead (a plain wait).

use std::sync::Arc;

use cudarc::driver::result;
use cudarc::driver::sys::{CUevent, CUevent_flags};

use super::{CudaDevice, CudaView, DeviceType};
use crate::{Error, Result};

/// Bytes one later read may hold.
pub(crate) const SLOT_BYTES: usize = 64;
/// Later reads that may be in flight at once on one device.
pub(crate) const SLOTS: usize = 64;

fn err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("later read: {what}: {e:?}"))
}

/// One device's page of slots (allocated on first use).
pub(crate) struct Slots {
    page: *mut u8,
    events: Vec<CUevent>,
    free: Vec<usize>,
}

// SAFETY: the page and the events are plain driver handles, used only under the device's
// Mutex with the device's context bound to the calling thread.
unsafe impl Send for Slots {}

impl Slots {
    /// No page yet.
    pub(crate) const fn new() -> Slots {
        Slots {
            page: std::ptr::null_mut(),
            events: Vec::new(),
            free: Vec::new(),
        }
    }

    /// A free slot, allocating the page and the events on first use; `None` when every slot
    /// is in flight. The caller binds the device's context first.
    fn take(&mut self) -> Result<Option<usize>> {
        if self.page.is_null() {
            // SAFETY: the context is bound (the caller's contract); plain page-locked memory.
            let page = unsafe { result::malloc_host(SLOTS * SLOT_BYTES, 0) }
                .map_err(|e| err("page-lock the slots", e))?;
            self.page = page.cast::<u8>();
            for _ in 0..SLOTS {
                let e = result::event::create(CUevent_flags::CU_EVENT_DISABLE_TIMING)
                    .map_err(|e| err("create event", e))?;
                self.events.push(e);
            }
            self.free = (0..SLOTS).rev().collect();
        }
        Ok(self.free.pop())
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // Every LaterRead holds the device, so none is in flight when its slots go. Errors
        // here have nowhere to go; the process is tearing the device down.
        for e in self.events.drain(..) {
            // SAFETY: a live event; nothing waits on it any more.
            let _ = unsafe { result::event::destroy(e) };
        }
        if !self.page.is_null() {
            // SAFETY: `page` came from `malloc_host` and no copy writes it any more.
            let _ = unsafe { result::free_host(self.page.cast::<std::ffi::c_void>()) };
        }
    }
}

/// Values on their way to the host (see the module documentation).
pub struct LaterRead<T: DeviceType> {
    state: State<T>,
}

enum State<T: DeviceType> {
    /// Queued into `slot` of `dev`'s page: `len` elements.
    Queued {
        dev: Arc<CudaDevice>,
        slot: usize,
        len: usize,
    },
    /// Read at once (too large, or no slot free).
    Ready(Vec<T>),
    /// Collected or given back.
    Done,
}

impl CudaDevice {
    /// Queues a copy of `src` to the host, to be collected with [`LaterRead::wait`], which
    /// waits only for the work queued before this call. Reads of more than 64 bytes, or with
    /// 64 reads already in flight, happen at once (one wait, as `to_host`).
    pub fn read_later<T: DeviceType>(
        self: &Arc<Self>,
        src: CudaView<'_, T>,
    ) -> Result<LaterRead<T>> {
        let bytes = std::mem::size_of::<T>() * src.len();
        let ready = |dev: &Arc<CudaDevice>| -> Result<LaterRead<T>> {
            let mut out = vec![T::zeroed(); src.len()];
            dev.copy_dtoh(src.device_ptr(), &mut out)?;
            Ok(LaterRead {
                state: State::Ready(out),
            })
        };
        if bytes > SLOT_BYTES {
            return ready(self);
        }
        self.bind()?;
        let mut slots = self.lock_readback()?;
        let Some(slot) = slots.take()? else {
            drop(slots);
            return ready(self);
        };
        // SAFETY: the slot holds SLOT_BYTES ≥ `bytes` bytes of page-locked memory that no
        // copy writes (it was free); `src` holds `bytes` bytes of device memory, read in
        // stream order; the event recorded next marks when the copy has landed.
        unsafe {
            let dst = std::slice::from_raw_parts_mut(slots.page.add(slot * SLOT_BYTES), bytes);
            result::memcpy_dtoh_async(dst, src.device_ptr(), self.cu_stream())
                .map_err(|e| err("copy", e))?;
            result::event::record(slots.events[slot], self.cu_stream())
                .map_err(|e| err("record event", e))?;
        }
        Ok(LaterRead {
            state: State::Queued {
                dev: self.clone(),
                slot,
                len: src.len(),
            },
        })
    }
}

impl<T: DeviceType> LaterRead<T> {
    /// The values, once the copy has landed (waiting for it and the work queued before it).
    pub fn wait(mut self) -> Result<Vec<T>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Ready(v) => Ok(v),
            State::Done => Err(Error::invalid("later read collected twice")),
            State::Queued { dev, slot, len } => collect(&dev, slot, len),
        }
    }
}

/// Waits for slot `slot`'s event, copies its `len` values out and frees the slot.
fn collect<T: DeviceType>(dev: &CudaDevice, slot: usize, len: usize) -> Result<Vec<T>> {
    dev.bind()?;
    let mut slots = dev.lock_readback()?;
    // SAFETY: a live event of this context, recorded after the slot's copy.
    let landed = unsafe { result::event::synchronize(slots.events[slot]) }
        .map_err(|e| err(&format!("cuda:{} wait for the copy", dev.ordinal()), e));
    let values = landed.map(|()| {
        let mut out = vec![T::zeroed(); len];
        // SAFETY: the copy into the slot has landed (event above) and nothing else writes
        // it while it is taken; `len` elements fit (checked when queued); bytes to bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                slots.page.add(slot * SLOT_BYTES),
                out.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<T>() * len,
            );
        }
        out
    });
    // After a failed wait the context is broken and no copy will land in the slot.
    slots.free.push(slot);
    values
}

/// Returns the slot of a read dropped uncollected to the free list, once its copy can no
/// longer write it.
fn give_back(dev: &CudaDevice, slot: usize) {
    if let Ok(mut slots) = dev.lock_readback() {
        if dev.bind().is_ok() {
            // SAFETY: a live event; after it the DMA no longer writes the slot.
            let _ = unsafe { result::event::synchronize(slots.events[slot]) };
        }
        slots.free.push(slot);
    }
}

impl<T: DeviceType> Drop for LaterRead<T> {
    fn drop(&mut self) {
        if let State::Queued { dev, slot, .. } = std::mem::replace(&mut self.state, State::Done) {
            give_back(&dev, slot);
        }
    }
}
