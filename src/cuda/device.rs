//! [`CudaDevice`]: one per GPU ordinal, created lazily and kept for the process: its context,
//! its one stream, the kernel modules compiled for its architecture, and its memory pool.

use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cudarc::driver::sys::{CUfunction_attribute, CUstream};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, result, sys};
use cudarc::nvrtc::Ptx;

use super::args::LaunchCfg;
use super::buffer::{CudaBuffer, DeviceType};
use super::nvrtc;
use super::pool::{Block, Pool, PoolStats, RawAlloc};
use super::staging::{STAGED_MIN_BYTES, SmallStaging, Staging};
use crate::{Error, Result};

fn cuda_err(what: impl std::fmt::Display, e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("{what}: {e:?}"))
}

/// Runs a driver probe, turning a panic of the dynamic loader (a library without a symbol
/// cudarc expects, e.g. a driver older than CUDA 13) into an error: detection never panics.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(Error::Cuda(format!(
            "{what}: the CUDA driver library is missing a required symbol (driver too old for \
             CUDA 13?)"
        ))),
    }
}

/// Why no CUDA device can be used, or `None` when at least one can.
fn probe() -> std::result::Result<usize, String> {
    // SAFETY: only dlopens libcuda by its candidate names; calls nothing in it.
    if !unsafe { sys::is_culib_present() } {
        return Err("no CUDA driver library (libcuda.so) found".into());
    }
    guarded("cuInit", || {
        result::init().map_err(|e| cuda_err("cuInit", e))?;
        let n = CudaContext::device_count().map_err(|e| cuda_err("cuDeviceGetCount", e))?;
        Ok(n.max(0) as usize)
    })
    .map_err(|e| e.to_string())
}

static PROBE: OnceLock<std::result::Result<usize, String>> = OnceLock::new();

thread_local! {
    /// Launches and waits this thread made, on any device: what a test counts of its own
    /// work while other tests of the same process use the device too.
    static THREAD_COUNTS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// `mutex` locked, or an error naming `what` when a panic poisoned it.
fn locked<'a, T>(mutex: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>> {
    mutex
        .lock()
        .map_err(|_| Error::Cuda(format!("{what} poisoned")))
}

fn count_on_this_thread(launches: u64, waits: u64) {
    THREAD_COUNTS.with(|c| {
        let (l, w) = c.get();
        c.set((l + launches, w + waits));
    });
}

/// Kernels this thread has launched so far, on any device ([`CudaDevice::launches`] counts
/// every thread's).
pub fn launches_on_this_thread() -> u64 {
    THREAD_COUNTS.with(|c| c.get().0)
}

/// Times this thread has waited for a device so far ([`CudaDevice::waits`] counts every
/// thread's).
pub fn waits_on_this_thread() -> u64 {
    THREAD_COUNTS.with(|c| c.get().1)
}

/// Number of usable CUDA devices; 0 without a driver or GPU. Never panics.
pub fn device_count() -> usize {
    *PROBE.get_or_init(probe).as_ref().unwrap_or(&0)
}

/// Why there is no GPU (for test skip messages), or `None` when there is one.
pub fn unavailable_reason() -> Option<String> {
    match PROBE.get_or_init(probe) {
        Ok(0) => Some("the CUDA driver reports no device".into()),
        Ok(_) => None,
        Err(e) => Some(e.clone()),
    }
}

/// Whether at least one CUDA device is usable. Never panics.
pub fn available() -> bool {
    device_count() > 0
}

/// Whether large uploads go through the page-locked staging buffer (`src/cuda/staging.rs`);
/// `AOANET_CUDA_STAGING=0` (read once) sends them from pageable memory instead.
fn staged_uploads() -> bool {
    static STAGED: OnceLock<bool> = OnceLock::new();
    *STAGED.get_or_init(|| std::env::var("AOANET_CUDA_STAGING").map_or(true, |v| v.trim() != "0"))
}

/// Whether small uploads go through the ring of page-locked memory (`src/cuda/staging.rs`):
/// on unless `AOANET_CUDA_STAGE_SMALL=0`; [`set_small_upload_staging`] switches it at run time
/// (the model bench times both ways in one run).
static SMALL_STAGED: OnceLock<std::sync::atomic::AtomicBool> = OnceLock::new();

fn small_staged() -> &'static std::sync::atomic::AtomicBool {
    SMALL_STAGED.get_or_init(|| {
        std::sync::atomic::AtomicBool::new(
            std::env::var("AOANET_CUDA_STAGE_SMALL").map_or(true, |v| v.trim() != "0"),
        )
    })
}

/// Sends uploads under 256 KiB (token ids, kernels' address tables, masks, the loss's
/// targets) through a ring of page-locked memory (`true`, the default) or straight from
/// pageable memory (`false`), which CUDA allows to wait for the stream's queued work.
/// Process-wide.
pub fn set_small_upload_staging(on: bool) {
    small_staged().store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether device buffers are allocated at their exact size and freed at once
/// (`AOANET_CUDA_POOL=exact`, read once; see `src/cuda/pool.rs`): the checking mode that
/// `cuda-emu/test` uses.
fn exact_pool() -> bool {
    static EXACT: OnceLock<bool> = OnceLock::new();
    *EXACT.get_or_init(|| std::env::var("AOANET_CUDA_POOL").is_ok_and(|v| v.trim() == "exact"))
}

/// Whether host-to-device copies wait for the device (`AOANET_CUDA_SYNC_HTOD`, read once).
fn sync_uploads() -> bool {
    static SYNC: OnceLock<bool> = OnceLock::new();
    *SYNC.get_or_init(|| std::env::var_os("AOANET_CUDA_SYNC_HTOD").is_some())
}

/// `cuMemAlloc`/`cuMemFree` for the pool.
struct DriverAlloc {
    ctx: Arc<CudaContext>,
}

impl RawAlloc for DriverAlloc {
    fn alloc(&mut self, bytes: usize) -> Result<u64> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("bind context", e))?;
        // SAFETY: plain device allocation in the bound context.
        unsafe { result::malloc_sync(bytes) }
            .map_err(|e| cuda_err(format!("cuMemAlloc of {bytes} bytes"), e))
    }

    fn free(&mut self, ptr: u64) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `ptr` came from `alloc` above and the pool frees it once. Errors here can
            // only come from a context already broken by an earlier fault; nothing to do.
            let _ = unsafe { result::free_sync(ptr) };
        }
    }
}

// SAFETY: the context handle is used only while bound to the calling thread, and the pool is
// behind a Mutex.
unsafe impl Send for DriverAlloc {}

/// One GPU: context, stream, compiled kernel modules and memory pool.
pub struct CudaDevice {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    cc: (i32, i32),
    arch: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// Loaded functions by kernel name: the function, the dynamic shared memory it was opted
    /// into, and how many times it was launched.
    functions: Mutex<HashMap<&'static str, (CudaFunction, u32, u64)>>,
    pool: Mutex<Pool<DriverAlloc>>,
    staging: Mutex<Staging>,
    small_staging: Mutex<SmallStaging>,
    readback: Mutex<super::readback::Slots>,
    /// Per-launch timing events ([`CudaDevice::time_kernels`]), and whether it is on.
    clock: Mutex<super::clock::KernelClock>,
    pub(super) timing: std::sync::atomic::AtomicBool,
    launches: std::sync::atomic::AtomicU64,
    /// Times the host waited for the device to drain its queue (`synchronize`, and every
    /// copy to the host, which synchronises; not the later reads, `read_later`, which wait
    /// only for the work queued before them).
    waits: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cuda:{} ({}, compute capability {}.{})",
            self.ordinal, self.name, self.cc.0, self.cc.1
        )
    }
}

/// CUBIN images compiled in this process, by (architecture, family): devices of one compute
/// capability share them.
static CUBINS: OnceLock<Mutex<CubinCache>> = OnceLock::new();
type CubinCache = HashMap<(String, &'static str), Arc<Vec<u8>>>;
static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();

impl CudaDevice {
    /// The device `ordinal`, created on first use. Fails with a clear error when there is no
    /// driver or no such GPU.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let devices = DEVICES.get_or_init(Default::default);
        let mut map = locked(devices, "device table")?;
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        if let Some(why) = unavailable_reason() {
            return Err(Error::Cuda(format!("cannot open cuda:{ordinal}: {why}")));
        }
        let count = device_count();
        if ordinal >= count {
            return Err(Error::Cuda(format!(
                "cannot open cuda:{ordinal}: only {count} CUDA device(s)"
            )));
        }
        let dev = Arc::new(guarded("open device", || Self::open(ordinal))?);
        map.insert(ordinal, dev.clone());
        Ok(dev)
    }

    fn open(ordinal: usize) -> Result<CudaDevice> {
        let at = |what: &str| format!("cuda:{ordinal}: {what}");
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err(at("create context"), e))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_err(at("create stream"), e))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| cuda_err(at("compute capability"), e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        if cc.0 < 8 {
            return Err(Error::Cuda(format!(
                "cuda:{ordinal} ({name}) has compute capability {}.{}; the kernels need 8.0 \
                 or newer (bf16 conversions, mma.sync)",
                cc.0, cc.1
            )));
        }
        Ok(CudaDevice {
            ordinal,
            arch: format!("sm_{}{}", cc.0, cc.1),
            pool: Mutex::new(if exact_pool() {
                Pool::exact(DriverAlloc { ctx: ctx.clone() })
            } else {
                Pool::new(DriverAlloc { ctx: ctx.clone() })
            }),
            staging: Mutex::new(Staging::new()),
            small_staging: Mutex::new(SmallStaging::new()),
            readback: Mutex::new(super::readback::Slots::new()),
            clock: Mutex::new(super::clock::KernelClock::new()),
            timing: std::sync::atomic::AtomicBool::new(false),
            launches: std::sync::atomic::AtomicU64::new(0),
            waits: std::sync::atomic::AtomicU64::new(0),
            ctx,
            stream,
            name,
            cc,
            modules: Mutex::default(),
            functions: Mutex::default(),
        })
    }

    /// The ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The GPU's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// The NVRTC architecture the kernels are compiled for, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Number of streaming multiprocessors.
    pub fn multiprocessors(&self) -> Result<u32> {
        self.ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map(|v| v as u32)
            .map_err(|e| cuda_err("multiprocessor count", e))
    }

    /// The cudarc context (for benches that call cuBLAS).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The device's one stream: every kernel and copy of aoanet runs on it, in order.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(crate) fn cu_stream(&self) -> CUstream {
        self.stream.cu_stream()
    }

    /// The page-locked slots of later reads ([`CudaDevice::read_later`]).
    pub(crate) fn lock_readback(&self) -> Result<MutexGuard<'_, super::readback::Slots>> {
        locked(&self.readback, "later-read slots")
    }

    /// The per-launch timing events ([`CudaDevice::time_kernels`]).
    pub(crate) fn lock_clock(&self) -> Result<MutexGuard<'_, super::clock::KernelClock>> {
        locked(&self.clock, "kernel clock")
    }

    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("bind context", e))
    }

    /// Waits for all queued work; reports any asynchronous kernel fault.
    pub fn synchronize(&self) -> Result<()> {
        self.waits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        count_on_this_thread(0, 1);
        self.stream
            .synchronize()
            .map_err(|e| cuda_err(format!("cuda:{} synchronize", self.ordinal), e))
    }

    // ---------------------------------------------------------------------------- memory

    fn lock_pool(&self) -> Result<std::sync::MutexGuard<'_, Pool<DriverAlloc>>> {
        locked(&self.pool, "memory pool")
    }

    /// `len` elements of uninitialised device memory from the pool.
    pub fn alloc<T: DeviceType>(self: &Arc<Self>, len: usize) -> Result<CudaBuffer<T>> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            Error::invalid(format!("device allocation of {len} elements overflows"))
        })?;
        let block = self.lock_pool()?.alloc(bytes)?;
        Ok(CudaBuffer::from_block(self.clone(), block, len))
    }

    /// `len` zeroed elements.
    pub fn zeros<T: DeviceType>(self: &Arc<Self>, len: usize) -> Result<CudaBuffer<T>> {
        let buf = self.alloc::<T>(len)?;
        self.bind()?;
        // SAFETY: the block holds at least len * size_of::<T>() bytes, and the memset is
        // queued on the device's stream.
        unsafe {
            result::memset_d8_async(
                buf.device_ptr(),
                0,
                len * std::mem::size_of::<T>(),
                self.cu_stream(),
            )
        }
        .map_err(|e| cuda_err("memset", e))?;
        Ok(buf)
    }

    /// A device copy of `src`.
    pub fn htod<T: DeviceType>(self: &Arc<Self>, src: &[T]) -> Result<CudaBuffer<T>> {
        let mut buf = self.alloc::<T>(src.len())?;
        buf.copy_from_host(src)?;
        Ok(buf)
    }

    pub(crate) fn release_block(&self, block: Block) {
        if let Ok(mut p) = self.pool.lock() {
            p.free(block);
        }
    }

    pub(crate) fn copy_htod<T: DeviceType>(&self, src: &[T], dst: u64) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        let bytes: &[u8] = bytemuck::cast_slice(src);
        if bytes.len() >= STAGED_MIN_BYTES && staged_uploads() && !sync_uploads() {
            let mut staging = locked(&self.staging, "staging buffer")?;
            // SAFETY: dst points to at least `bytes.len()` bytes (callers pass a buffer of
            // src.len() elements), allocated from the pool, whose blocks are reused in stream
            // order; the context is bound and the stream is this device's.
            return unsafe { staging.upload(bytes, dst, self.cu_stream()) };
        }
        if bytes.len() < STAGED_MIN_BYTES
            && small_staged().load(std::sync::atomic::Ordering::Relaxed)
            && !sync_uploads()
        {
            let mut ring = locked(&self.small_staging, "small-upload ring")?;
            // SAFETY: as for the staged upload above.
            return unsafe { ring.upload(bytes, dst, self.cu_stream()) };
        }
        // SAFETY: dst points to at least size_of_val(src) bytes (callers pass a buffer of
        // src.len() elements). `src` is pageable memory (nothing of ours is page-locked), and
        // for a pageable source the driver copies it into a staging buffer before the call
        // returns (CUDA "API synchronization behavior", asynchronous memcpy): `src` may go away
        // as soon as this returns; the transfer itself is ordered on the device's stream before
        // every later kernel.
        unsafe { result::memcpy_htod_async(dst, src, self.cu_stream()) }
            .map_err(|e| cuda_err("copy host to device", e))?;
        // No synchronisation: uploads (token ids every decoder step) must not drain the queue.
        // AOANET_CUDA_SYNC_HTOD=1 restores it, to rule the copies out when hunting a race.
        if sync_uploads() {
            self.synchronize()?;
        }
        Ok(())
    }

    pub(crate) fn copy_dtoh<T: DeviceType>(&self, src: u64, dst: &mut [T]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: src holds at least size_of_val(dst) bytes; we synchronise before returning,
        // so `dst` is written before the caller reads it.
        unsafe { result::memcpy_dtoh_async(dst, src, self.cu_stream()) }
            .map_err(|e| cuda_err("copy device to host", e))?;
        self.synchronize()
    }

    pub(crate) fn copy_dtod(&self, src: u64, dst: u64, bytes: usize) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both ranges hold `bytes` bytes (callers pass equal-length buffers); the copy
        // is ordered on the device's stream.
        unsafe { result::memcpy_dtod_async(dst, src, bytes, self.cu_stream()) }
            .map_err(|e| cuda_err("copy device to device", e))
    }

    /// Pool counters (live, reserved and peak bytes).
    pub fn memory_stats(&self) -> PoolStats {
        self.pool.lock().map(|p| p.stats()).unwrap_or_default()
    }

    /// Resets the peak counters to the current values.
    pub fn reset_peak_memory(&self) {
        if let Ok(mut p) = self.pool.lock() {
            p.reset_peaks();
        }
    }

    /// Waits for the device, then returns every cached block to the driver.
    pub fn empty_cache(&self) -> Result<()> {
        self.synchronize()?;
        self.lock_pool()?.release_cached();
        Ok(())
    }

    // ---------------------------------------------------------------------------- kernels

    fn module(&self, family: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = locked(&self.modules, "module table")?;
        if let Some(m) = modules.get(family) {
            return Ok(m.clone());
        }
        let cubin = {
            let cache = CUBINS.get_or_init(Default::default);
            let key = (self.arch.clone(), family);
            let cached = cache.lock().ok().and_then(|c| c.get(&key).cloned());
            match cached {
                Some(c) => c,
                None => {
                    let c = Arc::new(nvrtc::compile_cached(nvrtc::source(family)?, &self.arch)?);
                    if let Ok(mut cache) = cache.lock() {
                        cache.insert(key, c.clone());
                    }
                    c
                }
            }
        };
        let module = self
            .ctx
            .load_module(Ptx::from_binary(cubin.as_ref().clone()))
            .map_err(|e| cuda_err(format!("load kernels/{family}.cu for {}", self.arch), e))?;
        modules.insert(family, module.clone());
        Ok(module)
    }

    /// Compiles and loads every kernel family now (instead of at first launch), e.g. so that
    /// benches keep NVRTC time out of their numbers.
    pub fn load_all(&self) -> Result<()> {
        for s in nvrtc::SOURCES {
            self.module(s.name)?;
        }
        Ok(())
    }

    /// Launches `kernel` of `family` with raw parameter pointers (used by the generated
    /// wrappers, see `kernels!`).
    ///
    /// # Safety
    /// `params` must point to values matching the kernel's parameters in number, order and
    /// layout, and the kernel must stay inside the memory those values describe.
    pub unsafe fn launch_raw(
        &self,
        family: &'static str,
        kernel: &'static str,
        cfg: LaunchCfg,
        params: &mut [*mut c_void],
    ) -> Result<()> {
        let (g, b) = (cfg.grid, cfg.block);
        let threads = u64::from(b.0) * u64::from(b.1) * u64::from(b.2);
        if threads == 0 || threads > 1024 || g.0 == 0 || g.1 == 0 || g.2 == 0 {
            return Err(Error::Cuda(format!(
                "{kernel}: invalid launch grid {g:?} block {b:?}"
            )));
        }
        if g.1 > 65535 || g.2 > 65535 || g.0 > i32::MAX as u32 {
            return Err(Error::Cuda(format!(
                "{kernel}: grid {g:?} exceeds the device limits"
            )));
        }
        let func = {
            let mut fns = locked(&self.functions, "function table")?;
            if !fns.contains_key(kernel) {
                let m = self.module(family)?;
                let f = m.load_function(kernel).map_err(|e| {
                    cuda_err(
                        format!("kernel {kernel} not found in kernels/{family}.cu"),
                        e,
                    )
                })?;
                fns.insert(kernel, (f, 48 * 1024, 0));
            }
            let entry = fns.get_mut(kernel).expect("inserted above");
            // More than 48 KiB of dynamic shared memory must be opted into per function.
            if cfg.smem > entry.1 {
                entry
                    .0
                    .set_attribute(
                        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        cfg.smem as i32,
                    )
                    .map_err(|e| {
                        cuda_err(format!("{kernel}: {} bytes of shared memory", cfg.smem), e)
                    })?;
                entry.1 = cfg.smem;
            }
            entry.2 += 1;
            entry.0.clone()
        };
        self.bind()?;
        // Timed: the clock stays locked from the event before the launch to the one after.
        let mut timed = if self.timing_kernels() {
            let mut clock = self.lock_clock()?;
            let start = clock.start(self.cu_stream())?;
            Some((clock, start))
        } else {
            None
        };
        // SAFETY: valid function of a loaded module; the caller vouches for `params`.
        let launched = unsafe {
            result::launch_kernel(func.cu_function(), g, b, cfg.smem, self.cu_stream(), params)
        };
        if let Some((clock, start)) = timed.as_mut() {
            match launched {
                Ok(()) => clock.finish(*start, self.cu_stream(), kernel, g, b)?,
                Err(_) => clock.abandon(*start),
            }
        }
        drop(timed);
        launched.map_err(|e| cuda_err(format!("launch {kernel} grid {g:?} block {b:?}"), e))?;
        self.launches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        count_on_this_thread(1, 0);
        Ok(())
    }

    /// How many times the host has waited for this device's queue to drain so far
    /// ([`CudaDevice::synchronize`], reads of device memory): a training step is built to
    /// wait once (`tests/cuda_train.rs` counts).
    pub fn waits(&self) -> u64 {
        self.waits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Kernels launched on this device so far (launch overhead: the bench reports launches
    /// per training step and per decoding call).
    pub fn launches(&self) -> u64 {
        self.launches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Launches so far per kernel, most launched first (which kernels make up a step's
    /// launch count: the bench prints them).
    pub fn launch_counts(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(&'static str, u64)> = self
            .functions
            .lock()
            .map(|f| f.iter().map(|(&k, e)| (k, e.2)).collect())
            .unwrap_or_default();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        counts
    }

    /// Times `f` on the device's stream with CUDA events: milliseconds between an event
    /// recorded before and one recorded after the work `f` queues.
    pub fn time_ms(&self, f: impl FnOnce() -> Result<()>) -> Result<f32> {
        let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self
            .ctx
            .new_event(flags)
            .map_err(|e| cuda_err("create event", e))?;
        let stop = self
            .ctx
            .new_event(flags)
            .map_err(|e| cuda_err("create event", e))?;
        start
            .record(&self.stream)
            .map_err(|e| cuda_err("record event", e))?;
        f()?;
        stop.record(&self.stream)
            .map_err(|e| cuda_err("record event", e))?;
        stop.synchronize()
            .map_err(|e| cuda_err("event synchronize", e))?;
        start
            .elapsed_ms(&stop)
            .map_err(|e| cuda_err("event elapsed", e))
    }
}
