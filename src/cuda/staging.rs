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
//! Smaller uploads (token ids at every decoder step, the address tables of the multi-tensor
//! kernels, masks, the loss's targets) go through [`SmallStaging`], an 8 MiB ring of
//! page-locked memory: CUDA documents that a copy from pageable memory "may synchronize with
//! the stream" when the driver stages it, which would make the host wait for every kernel
//! queued before each decoder step's ids. From the ring the copy is an ordinary queued DMA;
//! a range of the ring is written again only after the events of the uploads it held (one
//! ring turn earlier) have completed ([`Ring`], tested on the CPU).

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

/// Uploads smaller than [`STAGED_MIN_BYTES`] go through the ring of [`SmallStaging`].
/// Its size: at least 32 of the largest such uploads fit in it.
const RING_BYTES: usize = 8 << 20;
/// Ring allocations start at multiples of this (the DMA engine's preferred alignment).
const RING_ALIGN: usize = 256;
/// Uploads in flight at most (each holds an event until retired).
const MAX_IN_FLIGHT: usize = 1024;

/// The bookkeeping of a byte ring, without the driver: where the next upload goes, and which
/// earlier uploads must have been read by the device before it may be written. Each upload
/// carries a tag `E` (the event recorded after its copy; a number in the tests).
///
/// Uploads take consecutive aligned ranges; one that does not fit before the end starts again
/// at 0. Each range stays "in flight" until the device has read it; since the device reads
/// uploads in the order they were queued (one stream), the in-flight ranges form a queue, and
/// knowing that one has been read means every older one has too.
#[derive(Debug)]
pub(crate) struct Ring<E> {
    capacity: usize,
    head: usize,
    /// In-flight ranges with their tags, oldest first.
    in_flight: std::collections::VecDeque<(std::ops::Range<usize>, E)>,
}

/// Where an upload goes, and what must be waited for first.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Placement<E> {
    /// The bytes it takes.
    pub range: std::ops::Range<usize>,
    /// The tags of the earlier uploads retired by this placement, oldest first: up to the
    /// newest one whose range it overlaps (and the oldest ones beyond [`MAX_IN_FLIGHT`]). The
    /// caller waits for the last one's event before writing (every older one is then read
    /// too) and may reuse their events.
    pub retired: Vec<E>,
}

impl<E> Ring<E> {
    /// An empty ring of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Ring<E> {
        Ring {
            capacity,
            head: 0,
            in_flight: std::collections::VecDeque::new(),
        }
    }

    /// Places an upload of `len` bytes (`0 < len ≤ capacity`) tagged `tag`.
    pub(crate) fn place(&mut self, len: usize, tag: E) -> Placement<E> {
        assert!(
            len > 0 && len <= self.capacity,
            "ring upload of {len} bytes"
        );
        let mut start = self.head;
        if start + len > self.capacity {
            start = 0;
        }
        let range = start..start + len;
        let overlaps = |r: &std::ops::Range<usize>| r.start < range.end && range.start < r.end;
        let newest = self.in_flight.iter().rposition(|(r, _)| overlaps(r));
        // Keep at most MAX_IN_FLIGHT events alive: tiny uploads would otherwise need one per
        // 256 bytes of the ring. The oldest upload is long read by then: its wait is free.
        let excess = (self.in_flight.len() + 1).saturating_sub(MAX_IN_FLIGHT);
        let newest = newest.max(excess.checked_sub(1));
        let retired = match newest {
            Some(i) => self.in_flight.drain(..=i).map(|(_, tag)| tag).collect(),
            None => Vec::new(),
        };
        self.in_flight.push_back((range.clone(), tag));
        self.head = (range.end).div_ceil(RING_ALIGN) * RING_ALIGN;
        Placement { range, retired }
    }

    /// Takes every in-flight tag (teardown).
    fn drain(&mut self) -> impl Iterator<Item = E> + '_ {
        self.in_flight.drain(..).map(|(_, tag)| tag)
    }
}

/// A ring of page-locked memory for small host-to-device copies ([`Ring`] places them, each
/// tagged with the event recorded after its copy).
pub(crate) struct SmallStaging {
    buf: *mut u8,
    ring: Ring<CUevent>,
    /// Events of retired uploads: reused by later uploads.
    spare: Vec<CUevent>,
}

// SAFETY: as for `Staging`: driver handles used only under the device's Mutex with its
// context bound.
unsafe impl Send for SmallStaging {}

impl SmallStaging {
    /// No memory yet.
    pub(crate) fn new() -> SmallStaging {
        SmallStaging {
            buf: std::ptr::null_mut(),
            ring: Ring::new(RING_BYTES),
            spare: Vec::new(),
        }
    }

    /// Copies `src` (fewer than [`STAGED_MIN_BYTES`] bytes) into the ring, once the device has
    /// read what was there, and queues its DMA to `dst` on `stream`.
    ///
    /// # Safety
    /// As [`Staging::upload`]: `dst` holds `src.len()` bytes of device memory allocated in
    /// stream order, the device's context is bound and `stream` is its stream.
    pub(crate) unsafe fn upload(&mut self, src: &[u8], dst: u64, stream: CUstream) -> Result<()> {
        if src.is_empty() || src.len() >= STAGED_MIN_BYTES {
            return Err(err(
                "small upload",
                format!("{} bytes: not for the ring", src.len()),
            ));
        }
        if self.buf.is_null() {
            // SAFETY: the context is bound (the caller's contract); plain page-locked memory.
            let buf = unsafe { result::malloc_host(RING_BYTES, 0) }
                .map_err(|e| err("page-lock the small-upload ring", e))?;
            self.buf = buf.cast::<u8>();
        }
        let event = match self.spare.pop() {
            Some(e) => e,
            None => result::event::create(CUevent_flags::CU_EVENT_DISABLE_TIMING)
                .map_err(|e| err("create event", e))?,
        };
        let place = self.ring.place(src.len(), event);
        // Once the newest retired upload is read, so are the older ones. (An event whose copy
        // failed to queue was never recorded: waiting on it returns at once.)
        if let Some(&e) = place.retired.last() {
            // SAFETY: a live event of this context.
            unsafe { result::event::synchronize(e) }
                .map_err(|e| err("wait for an earlier copy", e))?;
        }
        self.spare.extend(place.retired);
        // SAFETY: the range lies inside `buf` and the device no longer reads it (every upload
        // that overlapped it was waited for above); page-locked memory of ours cannot overlap
        // `src`.
        let staged = unsafe {
            let at = self.buf.add(place.range.start);
            std::ptr::copy_nonoverlapping(src.as_ptr(), at, src.len());
            std::slice::from_raw_parts(at, src.len())
        };
        // SAFETY: `dst` holds `src.len()` bytes (the caller's contract); the range stays
        // allocated and unwritten until the event recorded next has completed.
        unsafe { result::memcpy_htod_async(dst, staged, stream) }.map_err(|e| err("copy", e))?;
        // SAFETY: a live event and the caller's stream.
        unsafe { result::event::record(event, stream) }.map_err(|e| err("record event", e))
    }
}

impl Drop for SmallStaging {
    fn drop(&mut self) {
        // Errors here have nowhere to go; the process is tearing the device down.
        for e in self.ring.drain() {
            // SAFETY: live events of this context; after the wait nothing reads the ring.
            unsafe {
                let _ = result::event::synchronize(e);
                let _ = result::event::destroy(e);
            }
        }
        for e in self.spare.drain(..) {
            // SAFETY: a live event nothing waits on.
            let _ = unsafe { result::event::destroy(e) };
        }
        if !self.buf.is_null() {
            // SAFETY: `buf` came from `malloc_host`; every DMA out of it has completed.
            let _ = unsafe { result::free_host(self.buf.cast::<c_void>()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_wait_only_for_what_they_overwrite() {
        // Uploads tagged a = 0, b = 1, ... as the device would be waited for.
        let (a, b, c, d, e, f) = (0u64, 1, 2, 3, 4, 5);
        let mut r = Ring::new(1024);
        // Consecutive aligned ranges, no waits while the ring fills.
        let pa = r.place(100, a);
        assert_eq!((pa.range, pa.retired), (0..100, vec![]));
        let pb = r.place(300, b);
        assert_eq!((pb.range, pb.retired), (256..556, vec![]));
        let pc = r.place(200, c);
        assert_eq!((pc.range, pc.retired), (768..968, vec![]));
        // Does not fit before the end: starts at 0 and overlaps `a` only.
        let pd = r.place(200, d);
        assert_eq!((pd.range, pd.retired), (0..200, vec![a]));
        // Overlaps `b` (256..556): wait for it; `a` is already gone.
        let pe = r.place(100, e);
        assert_eq!((pe.range, pe.retired), (256..356, vec![b]));
        // A large one overlapping `c` and the newer `d`, `e`: wait for the newest, retire all
        // three (the device reads in order).
        let pf = r.place(1000, f);
        assert_eq!((pf.range, pf.retired), (0..1000, vec![c, d, e]));
        // Only `f` is in flight now.
        assert_eq!(r.place(1024, 6).retired, vec![f]);
    }

    #[test]
    fn tiny_uploads_keep_a_bounded_number_in_flight() {
        let mut r = Ring::new(RING_BYTES);
        let mut in_flight = 0usize;
        for k in 0..3 * MAX_IN_FLIGHT {
            let p = r.place(4, k);
            in_flight = in_flight + 1 - p.retired.len();
            assert!(
                in_flight <= MAX_IN_FLIGHT,
                "{in_flight} in flight after {k} uploads"
            );
            if k >= MAX_IN_FLIGHT {
                // The oldest goes as each new one comes.
                assert_eq!(p.retired, vec![k - MAX_IN_FLIGHT]);
            }
        }
    }

    #[test]
    fn a_long_run_never_hands_out_a_range_in_flight() {
        let mut r = Ring::new(RING_BYTES);
        let mut live: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
        let mut size = 1usize;
        for k in 0..20_000 {
            // Sizes from 1 byte to just under STAGED_MIN_BYTES, pseudo-random.
            size = (size * 1_103_515_245 + 12_345) % (STAGED_MIN_BYTES - 1) + 1;
            let p = r.place(size, k);
            assert!(p.range.end <= RING_BYTES && p.range.start.is_multiple_of(RING_ALIGN));
            live.retain(|(_, tag)| !p.retired.contains(tag));
            for (range, _) in &live {
                assert!(
                    range.end <= p.range.start || p.range.end <= range.start,
                    "{:?} overlaps {range:?} still in flight",
                    p.range
                );
            }
            live.push((p.range, k));
        }
    }
}
