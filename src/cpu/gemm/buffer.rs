//! 64-byte-aligned scratch memory for packed panels, recycled through a small global pool so
//! that repeated GEMM calls (the decoder's 20 steps, attention batches) neither allocate nor
//! page-fault on every call.

use std::sync::Mutex;

/// One cache line: the unit of allocation, so buffers are 64-byte aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Line([u8; 64]);

// SAFETY: `Line` is 64 plain bytes with no padding (size 64 = alignment 64); the all-zero
// pattern is valid.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above: every bit pattern is a valid `Line`, it is `Copy` and `'static`.
unsafe impl bytemuck::Pod for Line {}

/// Buffers at least this large are anonymous maps advised to use transparent huge pages:
/// packed blocks are streamed by the kernels, and with 4 KiB pages a 4 MiB B block needs
/// 1024 TLB entries (measured: about 10% of GEMM time on this machine).
const HUGE_PAGE_MIN: usize = 1 << 20;

/// An owned, zero-initialised, 64-byte-aligned buffer viewed as a slice of any `Pod` type.
pub(crate) enum AlignedBuf {
    /// Small buffers: cache lines on the heap.
    Lines(Vec<Line>),
    /// Large buffers: a page-aligned anonymous map (huge pages where the OS allows).
    Map(memmap2::MmapMut),
}

impl AlignedBuf {
    /// A zeroed buffer of at least `bytes` bytes.
    pub(crate) fn zeroed(bytes: usize) -> AlignedBuf {
        let bytes = bytes.next_multiple_of(64);
        if bytes >= HUGE_PAGE_MIN
            && let Ok(map) = memmap2::MmapMut::map_anon(bytes)
        {
            // Advice only: if the kernel refuses, 4 KiB pages still work.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            return AlignedBuf::Map(map);
        }
        AlignedBuf::Lines(vec![Line([0; 64]); bytes / 64])
    }

    /// Capacity in bytes.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            AlignedBuf::Lines(v) => v.len() * 64,
            AlignedBuf::Map(m) => m.len(),
        }
    }

    /// The first `len` elements as `T` (panics if the buffer is too small: an internal bug).
    pub(crate) fn slice<T: bytemuck::Pod>(&self, len: usize) -> &[T] {
        let bytes = len * size_of::<T>();
        match self {
            AlignedBuf::Lines(v) => &bytemuck::cast_slice(v)[..len],
            // Page-aligned, so the cast cannot fail on alignment.
            AlignedBuf::Map(m) => bytemuck::cast_slice(&m[..bytes]),
        }
    }

    /// The first `len` elements as mutable `T` (panics if the buffer is too small).
    pub(crate) fn slice_mut<T: bytemuck::Pod>(&mut self, len: usize) -> &mut [T] {
        let bytes = len * size_of::<T>();
        match self {
            AlignedBuf::Lines(v) => &mut bytemuck::cast_slice_mut(v)[..len],
            AlignedBuf::Map(m) => bytemuck::cast_slice_mut(&mut m[..bytes]),
        }
    }
}

/// Buffers returned by finished calls; at most [`POOL_MAX`] are kept.
static POOL: Mutex<Vec<AlignedBuf>> = Mutex::new(Vec::new());
/// Enough for every thread's A block and one shared B block of a few concurrent calls.
const POOL_MAX: usize = 8;

/// A pooled [`AlignedBuf`] that goes back to the pool when dropped.
pub(crate) struct Scratch {
    buf: Option<AlignedBuf>,
}

impl Scratch {
    /// A buffer of at least `bytes` bytes: the smallest pooled one that fits, else a new one.
    /// Its contents are arbitrary (but initialised) values.
    pub(crate) fn take(bytes: usize) -> Scratch {
        if bytes == 0 {
            // Nothing to hold: do not take (and later strand) a pooled buffer.
            return Scratch {
                buf: Some(AlignedBuf::Lines(Vec::new())),
            };
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.bytes() >= bytes)
            .min_by_key(|(_, b)| b.bytes())
            .map(|(i, _)| i);
        let buf = match best {
            Some(i) => pool.swap_remove(i),
            None => {
                drop(pool);
                AlignedBuf::zeroed(bytes)
            }
        };
        Scratch { buf: Some(buf) }
    }

    /// The buffer.
    pub(crate) fn buf(&mut self) -> &mut AlignedBuf {
        self.buf
            .as_mut()
            .expect("scratch buffer present until drop")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take().filter(|b| b.bytes() > 0) {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            pool.push(buf);
            if pool.len() > POOL_MAX {
                // Keep the large buffers: they are the expensive ones to fault in again.
                let smallest = (0..pool.len()).min_by_key(|&i| pool[i].bytes());
                if let Some(i) = smallest {
                    pool.swap_remove(i);
                }
            }
        }
    }
}
