//! Per-launch GPU times, for a profile where no profiler is installed.
//!
//! The GPU machines this project is lent have no Nsight tools, and a step's wall time alone
//! does not say which kernels it goes to. With the clock on ([`CudaDevice::time_kernels`]),
//! every launch is bracketed by two timing events on the stream; [`CudaDevice::kernel_times`]
//! waits for the queue, reads each pair's elapsed time and returns one record per launch, in
//! launch order. The events cost the GPU a few microseconds per launch, so a timed step runs
//! slower than an untimed one: the records say where the kernels' time goes, the untimed wall
//! time says how long a step takes. Off (the default), a launch pays one relaxed atomic load.

use std::sync::atomic::Ordering;

use cudarc::driver::result;
use cudarc::driver::sys::{CUevent, CUevent_flags, CUstream};

use super::CudaDevice;
use crate::{Error, Result};

fn err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("kernel clock: {what}: {e:?}"))
}

/// One timed launch.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's name (`gemm_bf16_large_ff`, `layernorm_fwd_f32`, ...).
    pub kernel: &'static str,
    /// The launch grid (x, y, z): tells one product's shape from another's.
    pub grid: (u32, u32, u32),
    /// The launch block (x, y, z).
    pub block: (u32, u32, u32),
    /// GPU time between the events before and after the launch, in milliseconds.
    pub ms: f64,
}

/// Launches bracketed by events, not yet read.
struct Pending {
    kernel: &'static str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    start: CUevent,
    end: CUevent,
}

/// A device's timing events: the ones in flight and the spare ones (events are reused; the
/// driver's event creation is not free).
pub(crate) struct KernelClock {
    pending: Vec<Pending>,
    spare: Vec<CUevent>,
}

// SAFETY: the events are plain driver handles, used only under the device's Mutex with the
// device's context bound to the calling thread.
unsafe impl Send for KernelClock {}

impl KernelClock {
    /// No events yet.
    pub(crate) const fn new() -> KernelClock {
        KernelClock {
            pending: Vec::new(),
            spare: Vec::new(),
        }
    }

    fn event(&mut self) -> Result<CUevent> {
        match self.spare.pop() {
            Some(e) => Ok(e),
            None => result::event::create(CUevent_flags::CU_EVENT_DEFAULT)
                .map_err(|e| err("create event", e)),
        }
    }

    /// Records the event before a launch on `stream` (the context is bound).
    pub(crate) fn start(&mut self, stream: CUstream) -> Result<CUevent> {
        let e = self.event()?;
        // SAFETY: a live event of the bound context; `stream` is the device's stream.
        unsafe { result::event::record(e, stream) }.map_err(|e| err("record event", e))?;
        Ok(e)
    }

    /// Records the event after the launch of `kernel` that `start` opened.
    pub(crate) fn finish(
        &mut self,
        start: CUevent,
        stream: CUstream,
        kernel: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
    ) -> Result<()> {
        let end = self.event()?;
        // SAFETY: as in `start`.
        unsafe { result::event::record(end, stream) }.map_err(|e| err("record event", e))?;
        self.pending.push(Pending {
            kernel,
            grid,
            block,
            start,
            end,
        });
        Ok(())
    }

    /// Gives back an event whose launch failed.
    pub(crate) fn abandon(&mut self, start: CUevent) {
        self.spare.push(start);
    }

    /// The pending launches' times (the caller has waited for the queue); their events
    /// become spare.
    fn drain(&mut self) -> Result<Vec<KernelTime>> {
        let mut times = Vec::with_capacity(self.pending.len());
        for p in std::mem::take(&mut self.pending) {
            // SAFETY: two live events of this context, both recorded and (after the
            // caller's synchronise) completed.
            let ms = unsafe { result::event::elapsed(p.start, p.end) };
            self.spare.extend([p.start, p.end]);
            times.push(KernelTime {
                kernel: p.kernel,
                grid: p.grid,
                block: p.block,
                ms: f64::from(ms.map_err(|e| err("elapsed time", e))?),
            });
        }
        Ok(times)
    }
}

impl Drop for KernelClock {
    fn drop(&mut self) {
        let pending = self.pending.drain(..).flat_map(|p| [p.start, p.end]);
        for e in pending.chain(self.spare.drain(..)).collect::<Vec<_>>() {
            // SAFETY: a live event; the device is going away and nothing waits on it.
            let _ = unsafe { result::event::destroy(e) };
        }
    }
}

impl CudaDevice {
    /// Turns per-launch GPU timing on or off (see the `clock` module: it slows the GPU a
    /// little per launch, so time a step untimed for its wall time). Turning it off keeps the
    /// launches timed so far for [`CudaDevice::kernel_times`].
    pub fn time_kernels(&self, on: bool) {
        self.timing.store(on, Ordering::Relaxed);
    }

    /// Whether launches are being timed ([`CudaDevice::time_kernels`]).
    pub(crate) fn timing_kernels(&self) -> bool {
        self.timing.load(Ordering::Relaxed)
    }

    /// The GPU time of every launch timed since the last call, in launch order: waits for the
    /// queue (one wait), then reads each launch's events.
    pub fn kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.synchronize()?;
        self.bind()?;
        self.lock_clock()?.drain()
    }
}
