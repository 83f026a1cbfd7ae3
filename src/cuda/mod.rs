//! The CUDA backend: device detection, memory, NVRTC-compiled kernels and their launches.
//!
//! Read it in this order:
//!
//! | module | what it defines |
//! | --- | --- |
//! | [`device`](CudaDevice) | [`available`], [`CudaDevice::get`]: context, the one stream, module cache, pool |
//! | [`pool`] | the caching allocator (size classes, peak bytes), tested on the CPU |
//! | `clock` | per-launch GPU times ([`CudaDevice::time_kernels`], [`KernelTime`]): a profile without Nsight |
//! | `staging` | page-locked staging of uploads: one buffer for large ones, a byte ring for the others (asynchronous DMA, event-guarded reuse) |
//! | [`buffer`] | [`CudaBuffer`] (owned, pooled) and [`CudaView`]/[`CudaViewMut`] (kernel arguments) |
//! | [`nvrtc`] | `kernels/*.cu` embedded with `include_str!`, compiled to CUBIN per architecture |
//! | [`args`] | [`KernelArg`]: Rust argument types that name their C types, the `kernels!` macro |
//! | [`kernels`] | one module per `kernels/<family>.cu`: raw launch wrappers and checked entry points |
//! | [`storage`](CudaStorage) | [`CudaStorage`], a tensor's device buffer; [`CudaFloat`] (f32, f64) |
//! | [`ops`] | the tensor ops' device paths: `Tensor` in, kernels launched, `Tensor` out |
//!
//! Everything up to [`kernels`] knows nothing of `Tensor`: it works on typed device buffers.
//! A tensor's storage holds a [`CudaStorage`] ([`crate::tensor::Storage::Cuda`]) and each op in
//! `src/ops` sends tensors on a CUDA device to its counterpart in [`ops`].
//!
//! Detection never panics: [`available`] first checks that `libcuda` can be loaded
//! (`is_culib_present`), then asks the driver for its device count; [`CudaDevice::get`]
//! returns `Error::Cuda` with the reason when there is no driver or GPU.
//!
//! # When the host waits for the GPU
//! Everything is queued on one stream; the host waits only where it reads a result: a
//! tensor copied to the host (`to_vec_*`, `item`), `Tensor::all_finite_many`, and a copy
//! from pageable memory that the driver chooses to stage (which may wait for the queue: so
//! uploads go through page-locked memory, `staging`). A training step is built to wait once,
//! after its backward pass, when the trainer reads the loss and the gradients' NaN check:
//! the losses' backwards read their upstream gradient on the device, masks stay on the host,
//! and nothing in the forward or backward reads a device value (scheduled sampling's drawn
//! words stay on the device; the embedding's backward reads them all at once). Decoding keeps
//! its words on the device and reads whether every row has finished a step late, through
//! page-locked memory with an event after the copy (`CudaDevice::read_later`: a wait for that
//! step only), and the captions once at the end.
//!
//! # Dropout masks (shared with the CPU)
//! A dropout call owns a Philox stream `(seed, stream)` and a base word offset `off`
//! (see [`crate::rng`]). Element `i` (row-major index in the tensor being dropped) uses word
//! `off + i`, i.e. lane `(off + i) % 4` of counter block `(off + i) / 4`. With
//! `u = (word >> 8) · 2⁻²⁴` ([`crate::rng::u32_to_unit_f32`]), the element is **kept iff
//! `u >= p`** and kept elements are multiplied by `1 / (1 - p)`. The CPU dropout must use the
//! same rule to produce the same mask; `tests/cuda_dropout.rs` checks the GPU against
//! `Philox::word_at` word for word.

pub mod args;
pub mod buffer;
mod clock;
mod device;
pub mod kernels;
pub mod nvrtc;
pub mod ops;
pub mod pool;
mod readback;
mod staging;
mod storage;

pub use args::{KernelArg, KernelSig, LaunchCfg};
pub use buffer::{CudaBuffer, CudaView, CudaViewMut, DeviceType};
pub use clock::KernelTime;
pub use device::{
    CudaDevice, available, device_count, launches_on_this_thread, set_small_upload_staging,
    unavailable_reason, waits_on_this_thread,
};
pub use pool::PoolStats;
pub use readback::LaterRead;
pub use storage::{CudaFloat, CudaStorage};

/// The CPU-side dropout keep rule, identical to `dropout_keep` in `kernels/common.cuh`.
#[inline]
pub fn dropout_keep(word: u32, p: f32) -> bool {
    crate::rng::u32_to_unit_f32(word) >= p
}

/// The C signature of every kernel that has a launch wrapper, family by family.
pub fn signatures() -> Vec<KernelSig> {
    kernels::SIGNATURES
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect()
}
