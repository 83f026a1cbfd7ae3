//! The caching allocator: device memory is taken from the driver once and reused.
//!
//! `cuMemAlloc`/`cuMemFree` are slow and `cuMemFree` synchronises the device, so a freed block
//! goes back to a free list keyed by its size class and the next request of that class reuses
//! it. Reuse is safe without events because every device has exactly one stream: a kernel
//! that still reads a freed block was enqueued before whatever will write it next.
//!
//! Size classes: 512 bytes minimum; powers of two up to 1 MiB; above that, multiples of
//! 2 MiB (so a large block wastes under 2 MiB instead of up to half).
//!
//! [`Pool::exact`] is the checking mode (`AOANET_CUDA_POOL=exact`): every block is exactly
//! the requested size and goes back to the driver when freed, so a kernel that reads past a
//! buffer's end, or reads a freed buffer, touches memory outside any allocation. On a GPU that
//! is slow and may go unnoticed; under `cuda-emu` (whose allocations end at an inaccessible
//! page) it faults at the access.
//!
//! The bookkeeping is generic over [`RawAlloc`] so it is tested on the CPU with a fake driver.

use std::collections::BTreeMap;

use crate::Result;

/// What the pool needs from a driver: plain allocation and release of device bytes.
pub trait RawAlloc {
    /// Allocates `bytes` bytes, returning the device address.
    fn alloc(&mut self, bytes: usize) -> Result<u64>;
    /// Releases an address returned by `alloc`.
    fn free(&mut self, ptr: u64);
}

/// Memory counters of one device's pool, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes in live buffers (rounded to size classes).
    pub in_use: usize,
    /// Bytes held from the driver: live plus cached.
    pub reserved: usize,
    /// The most bytes ever in live buffers at once.
    pub peak_in_use: usize,
    /// The most bytes ever held from the driver at once.
    pub peak_reserved: usize,
    /// Allocation requests served.
    pub requests: u64,
    /// Requests served from the cache without calling the driver.
    pub cache_hits: u64,
}

/// The size class (bytes actually reserved) for a request of `bytes`.
pub fn size_class(bytes: usize) -> usize {
    const MIN: usize = 512;
    const MIB: usize = 1 << 20;
    if bytes <= MIN {
        MIN
    } else if bytes <= MIB {
        bytes.next_power_of_two()
    } else {
        bytes.div_ceil(2 * MIB) * (2 * MIB)
    }
}

/// A block handed out by the pool: its address and its size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Device address.
    pub ptr: u64,
    /// Size class in bytes (at least the requested size).
    pub class: usize,
}

/// Free lists by size class over a [`RawAlloc`].
#[derive(Debug)]
pub struct Pool<A: RawAlloc> {
    raw: A,
    free: BTreeMap<usize, Vec<u64>>,
    stats: PoolStats,
    /// Exact sizes, nothing cached (see the module documentation).
    exact: bool,
}

impl<A: RawAlloc> Pool<A> {
    /// An empty pool over `raw`.
    pub fn new(raw: A) -> Self {
        Pool {
            raw,
            free: BTreeMap::new(),
            stats: PoolStats::default(),
            exact: false,
        }
    }

    /// A pool that caches nothing: each block is exactly the requested size (at least one
    /// byte) and is given back to the driver when freed (see the module documentation).
    pub fn exact(raw: A) -> Self {
        Pool {
            exact: true,
            ..Pool::new(raw)
        }
    }

    /// A block of at least `bytes` bytes. On a driver failure (out of memory) the cache is
    /// released and the request tried once more.
    pub fn alloc(&mut self, bytes: usize) -> Result<Block> {
        let class = if self.exact {
            bytes.max(1)
        } else {
            size_class(bytes)
        };
        self.stats.requests += 1;
        let ptr = if let Some(ptr) = self.free.get_mut(&class).and_then(Vec::pop) {
            self.stats.cache_hits += 1;
            ptr
        } else {
            let ptr = match self.raw.alloc(class) {
                Ok(p) => p,
                Err(_) => {
                    self.release_cached();
                    self.raw.alloc(class)?
                }
            };
            self.stats.reserved += class;
            self.stats.peak_reserved = self.stats.peak_reserved.max(self.stats.reserved);
            ptr
        };
        self.stats.in_use += class;
        self.stats.peak_in_use = self.stats.peak_in_use.max(self.stats.in_use);
        Ok(Block { ptr, class })
    }

    /// Returns a block to the cache.
    pub fn free(&mut self, block: Block) {
        self.stats.in_use -= block.class;
        if self.exact {
            self.raw.free(block.ptr);
            self.stats.reserved -= block.class;
        } else {
            self.free.entry(block.class).or_default().push(block.ptr);
        }
    }

    /// Gives every cached (not live) block back to the driver.
    pub fn release_cached(&mut self) {
        for (class, ptrs) in std::mem::take(&mut self.free) {
            for p in ptrs {
                self.raw.free(p);
                self.stats.reserved -= class;
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Resets the peaks to the current values (to measure one phase).
    pub fn reset_peaks(&mut self) {
        self.stats.peak_in_use = self.stats.in_use;
        self.stats.peak_reserved = self.stats.reserved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// A fake driver: hands out increasing addresses, fails past a byte limit, and records
    /// live allocations so double frees and leaks are caught.
    #[derive(Default)]
    struct Fake {
        next: u64,
        live: BTreeMap<u64, usize>,
        limit: usize,
    }

    impl RawAlloc for Fake {
        fn alloc(&mut self, bytes: usize) -> Result<u64> {
            let used: usize = self.live.values().sum();
            if used + bytes > self.limit {
                return Err(Error::Cuda("out of memory".into()));
            }
            self.next += 1 << 40;
            self.live.insert(self.next, bytes);
            Ok(self.next)
        }
        fn free(&mut self, ptr: u64) {
            assert!(self.live.remove(&ptr).is_some(), "double free of {ptr:#x}");
        }
    }

    fn pool(limit: usize) -> Pool<Fake> {
        Pool::new(Fake {
            limit,
            ..Fake::default()
        })
    }

    #[test]
    fn size_classes() {
        assert_eq!(size_class(0), 512);
        assert_eq!(size_class(513), 1024);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((1 << 20) + 1), 2 << 20);
        assert_eq!(size_class((5 << 20) + 7), 6 << 20);
        for b in [1usize, 100, 4097, 3 << 20, 123_456_789] {
            assert!(size_class(b) >= b);
        }
    }

    #[test]
    fn the_exact_pool_allocates_exact_sizes_and_caches_nothing() {
        let mut p = Pool::exact(Fake {
            limit: usize::MAX,
            ..Fake::default()
        });
        let a = p.alloc(1000).unwrap();
        let b = p.alloc(0).unwrap();
        assert_eq!((a.class, b.class), (1000, 1));
        assert_eq!(p.raw.live.get(&a.ptr), Some(&1000));
        p.free(a);
        assert!(!p.raw.live.contains_key(&a.ptr), "freed at once");
        let c = p.alloc(1000).unwrap();
        assert_ne!(c.ptr, a.ptr, "nothing reused");
        p.free(b);
        p.free(c);
        let s = p.stats();
        assert_eq!((s.in_use, s.reserved, s.cache_hits), (0, 0, 0));
        assert_eq!((s.peak_in_use, s.requests), (1001, 3));
        assert!(p.raw.live.is_empty());
    }

    #[test]
    fn freed_blocks_are_reused_by_class() {
        let mut p = pool(usize::MAX);
        let a = p.alloc(1000).unwrap();
        let b = p.alloc(3000).unwrap();
        p.free(a);
        let c = p.alloc(900).unwrap(); // same class (1024) as a
        assert_eq!(c.ptr, a.ptr);
        let d = p.alloc(2000).unwrap(); // class 2048: a new block
        assert_ne!(d.ptr, b.ptr);
        let s = p.stats();
        assert_eq!((s.requests, s.cache_hits), (4, 1));
        assert_eq!(s.in_use, 1024 + 4096 + 2048);
        assert_eq!(s.reserved, s.in_use);
    }

    #[test]
    fn peaks_and_release() {
        let mut p = pool(usize::MAX);
        let a = p.alloc(4 << 20).unwrap();
        let b = p.alloc(4 << 20).unwrap();
        p.free(a);
        p.free(b);
        let s = p.stats();
        assert_eq!(s.in_use, 0);
        assert_eq!(s.peak_in_use, 8 << 20);
        assert_eq!(s.reserved, 8 << 20);
        p.release_cached();
        assert_eq!(p.stats().reserved, 0);
        assert!(p.raw.live.is_empty());
        p.reset_peaks();
        assert_eq!(p.stats().peak_reserved, 0);
    }

    #[test]
    fn out_of_memory_releases_the_cache_and_retries() {
        let mut p = pool(4 << 20);
        let a = p.alloc(2 << 20).unwrap();
        p.free(a); // cached, still reserved
        // 4 MiB does not fit next to the cached 2 MiB: the cache must be released first.
        let b = p.alloc(4 << 20).unwrap();
        assert_eq!(p.stats().reserved, 4 << 20);
        p.free(b);
        // Larger than the device: a clear error, and the pool stays consistent.
        assert!(p.alloc(8 << 20).is_err());
        assert_eq!(p.stats().in_use, 0);
    }
}
