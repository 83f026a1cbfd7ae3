//! The blocked GEMM loop nest and its threading.
//!
//! Loop order (the BLIS/Goto scheme, C row-major, vectors along N):
//!
//! ```text
//! for jc in N step nc:                 B block kc × nc: packed once, shared, lives in L3
//!   for pc in K step kc:               (beta applies on the first k block only)
//!     pack B[pc, jc] → micro-panels
//!     for ic in (my rows) step mc:     A block mc × kc: packed per thread, lives in L2
//!       pack A[ic, pc] → micro-panels
//!       for jr in (my columns) step nr:      one B micro-panel (kc × nr) stays in L1 …
//!         for ir in mc step mr:              … while A micro-panels stream past it
//!           kernel → C tile mr × nr
//! ```
//!
//! Threads split either the rows (when there are at least four A micro-panels per thread:
//! the big shapes) or the B micro-panels of each block (the skinny decoder shapes, M = 50).
//! Splitting rows shares the packed B block: every thread packs a slice of its panels, and a
//! barrier before and after the compute phase orders the packing against the reads.
//! Splitting columns needs no barrier: each thread packs exactly the panels it reads.
//! Problems too small to pay for a thread spawn run on the calling thread.

use std::sync::Barrier;

use super::buffer::Scratch;
use super::config::GemmConfig;
use super::kernel::Kernel;
use super::pack::{pack_a, pack_b};
use super::packed_b::PackedB;
use super::{GemmScalar, MatRef};
use crate::cpu::parallel::chunk_range;

/// Where B comes from: a strided view packed on the fly, or panels packed ahead of time.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a, T> {
    /// Pack blocks of this view during the call.
    Strided(MatRef<'a, T>),
    /// Use these pre-packed panels (their path and `kc` override the configuration's).
    Packed(&'a PackedB<T>),
}

/// A raw C pointer that worker threads share.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the bare field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: the pointer is only dereferenced through kernels writing disjoint C tiles (rows or
// column panels owned by one thread) or disjoint packed panels, with barriers ordering the
// shared B block's writes against its reads; `T` itself is `Send + Sync`.
unsafe impl<T: Send + Sync> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for SyncPtr<T> {}

/// `(start, len)` blocks covering `0..total`, at most `max` long (rounded up to `align`),
/// balanced so that the last block is not a sliver.
pub(crate) fn blocks(
    total: usize,
    max: usize,
    align: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let count = total.div_ceil(max.max(1)).max(1);
    let size = total.div_ceil(count).next_multiple_of(align).max(align);
    (0..total)
        .step_by(size)
        .map(move |start| (start, size.min(total - start)))
}

/// How the threads share one call's work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Each thread owns a range of A micro-panels (rows); the B block is shared.
    Rows,
    /// Each thread owns a range of B micro-panels (columns) within each B block.
    Cols,
}

/// `C = alpha·A·B + beta·C` on a validated problem: `a` is `m × k`, `b` is `k × n`, and the
/// `m × n` C at `c` (row stride `rs_c`) is exclusively ours. Uses up to `cfg.threads`
/// threads.
///
/// # Safety
/// `c + i·rs_c + j` is valid for reads and writes for `i < m`, `j < n`, nothing else accesses
/// it during the call, and `rs_c ≥ n` when `m > 1`. `cfg.path` (or the packed B's path) runs
/// on this CPU. `a` and a strided `b` are validated views of the right shapes.
pub(crate) unsafe fn gemm_raw<T: GemmScalar>(
    cfg: &GemmConfig,
    alpha: T,
    a: MatRef<'_, T>,
    b: BSource<'_, T>,
    beta: T,
    c: SyncPtr<T>,
    rs_c: usize,
) {
    let (m, k) = (a.rows, a.cols);
    let n = match b {
        BSource::Strided(b) => b.cols,
        BSource::Packed(p) => p.cols(),
    };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::ZERO {
        // SAFETY: forwarded contract.
        unsafe { scale_c(c.0, rs_c, m, n, beta) };
        return;
    }
    let kernel = match b {
        BSource::Strided(_) => T::kernel(cfg.path),
        BSource::Packed(p) => T::kernel(p.path()),
    };
    let (mr, nr) = (kernel.mr, kernel.nr);

    // Blocking of K and N; a packed B fixes its own (one N block, its K blocks).
    let k_blocks: Vec<(usize, usize)> = match b {
        BSource::Strided(_) => blocks(k, cfg.kc, 1).collect(),
        BSource::Packed(p) => p.k_blocks().map(|(k0, kc, _)| (k0, kc)).collect(),
    };
    let kc_max = k_blocks.iter().map(|&(_, kc)| kc).max().unwrap_or(0);
    let n_blocks: Vec<(usize, usize)> = match b {
        BSource::Strided(_) => blocks(n, cfg.nc, nr).collect(),
        BSource::Packed(_) => vec![(0, n)],
    };
    let nc_max = n_blocks.iter().map(|&(_, nc)| nc).max().unwrap_or(0);

    // Threads: enough work per thread, and a split that gives each thread something to do.
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let mut threads = cfg.threads.min(flops / cfg.min_flops_per_thread).max(1);
    let m_panels = m.div_ceil(mr);
    let split = if m_panels >= 4 * threads {
        Split::Rows
    } else {
        threads = threads.min(nc_max.div_ceil(nr)).max(1);
        Split::Cols
    };

    // Scratch: a shared B block (strided B only) and one A block per thread.
    let mut b_scratch = match b {
        BSource::Strided(_) => Some(Scratch::take(
            kc_max * nc_max.next_multiple_of(nr) * size_of::<T>(),
        )),
        BSource::Packed(_) => None,
    };
    let b_buf_len = kc_max * nc_max.next_multiple_of(nr);
    let b_buf = SyncPtr(b_scratch.as_mut().map_or(std::ptr::null_mut(), |s| {
        s.buf().slice_mut::<T>(b_buf_len).as_mut_ptr()
    }));
    let a_block_rows = match split {
        Split::Rows => chunk_range(m_panels, threads, 0).len() * mr,
        Split::Cols => m_panels * mr,
    }
    .min(cfg.mc.next_multiple_of(mr));
    let a_len = a_block_rows * kc_max;

    let job = Job {
        kernel,
        alpha,
        beta,
        a,
        b,
        c,
        rs_c,
        m,
        k_blocks: &k_blocks,
        n_blocks: &n_blocks,
        split,
        threads,
        mc: cfg.mc,
        b_buf,
        b_buf_len,
        a_len,
        barrier: Barrier::new(threads),
    };
    if threads == 1 {
        // SAFETY: forwarded contract; one thread owns everything.
        unsafe { job.work(0) };
    } else {
        std::thread::scope(|s| {
            let job = &job;
            for t in 1..threads {
                // SAFETY: forwarded contract; `work(t)` touches only thread `t`'s tiles
                // and panels, and every shared write is ordered by the job's barrier.
                s.spawn(move || unsafe { job.work(t) });
            }
            // SAFETY: as above, for thread 0.
            unsafe { job.work(0) };
        });
    }
    drop(b_scratch);
}

/// `C = beta·C` (`beta == 0` writes zeros without reading: C may hold NaN).
///
/// # Safety
/// As [`gemm_raw`] for C.
unsafe fn scale_c<T: GemmScalar>(c: *mut T, rs_c: usize, m: usize, n: usize, beta: T) {
    for i in 0..m {
        // SAFETY: row `i` of C is valid for `n` elements and exclusively ours; rows do not
        // overlap since `rs_c ≥ n` when `m > 1`.
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * rs_c), n) };
        if beta == T::ZERO {
            row.fill(T::ZERO);
        } else if beta != T::ONE {
            row.iter_mut().for_each(|x| *x = beta * *x);
        }
    }
}

/// Everything the worker threads of one call share.
struct Job<'a, T> {
    kernel: Kernel<T>,
    alpha: T,
    beta: T,
    a: MatRef<'a, T>,
    b: BSource<'a, T>,
    c: SyncPtr<T>,
    rs_c: usize,
    m: usize,
    k_blocks: &'a [(usize, usize)],
    n_blocks: &'a [(usize, usize)],
    split: Split,
    threads: usize,
    mc: usize,
    /// The shared packed B block (null for a pre-packed B), `b_buf_len` elements.
    b_buf: SyncPtr<T>,
    b_buf_len: usize,
    /// Elements of each thread's private A block.
    a_len: usize,
    barrier: Barrier,
}

impl<T: GemmScalar> Job<'_, T> {
    /// Thread `t`'s share of the loop nest (see the module docs).
    ///
    /// # Safety
    /// The [`gemm_raw`] contract; every thread `0..threads` runs `work` exactly once,
    /// concurrently (the barriers wait for all of them).
    unsafe fn work(&self, t: usize) {
        let Kernel { mr, nr, run } = self.kernel;
        let mut a_scratch = Scratch::take(self.a_len * size_of::<T>());
        let a_buf = a_scratch.buf().slice_mut::<T>(self.a_len);
        let m_panels = self.m.div_ceil(mr);
        let my_rows = match self.split {
            Split::Rows => {
                let p = chunk_range(m_panels, self.threads, t);
                p.start * mr..(p.end * mr).min(self.m)
            }
            Split::Cols => 0..self.m,
        };
        let shared_b = matches!(self.b, BSource::Strided(_)) && self.split == Split::Rows;

        for &(jc, nc) in self.n_blocks {
            let n_panels = nc.div_ceil(nr);
            let team = chunk_range(n_panels, self.threads, t);
            let my_panels = match self.split {
                Split::Rows => 0..n_panels,
                Split::Cols => team.clone(),
            };
            for (kb, &(pc, kc)) in self.k_blocks.iter().enumerate() {
                let beta = if kb == 0 { self.beta } else { T::ONE };
                // The packed B block's micro-panels for this (jc, pc).
                let b_panels: *const T = match self.b {
                    BSource::Strided(b) => {
                        // Either split, this thread packs the panels `team` of the block;
                        // they are disjoint across threads.
                        let len = team.len() * kc * nr;
                        let first = team.start * kc * nr;
                        debug_assert!(first + len <= self.b_buf_len);
                        // SAFETY: `b_buf` holds `b_buf_len ≥ n_panels·kc·nr` elements and
                        // panels `team` are written by this thread only; readers of other
                        // threads' panels wait at the barrier below.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(self.b_buf.0.add(first), len) };
                        let cols = (team.start * nr, (team.end * nr).min(nc) - team.start * nr);
                        if !team.is_empty() {
                            pack_b(&b, (pc, kc), (jc + cols.0, cols.1), nr, dst);
                        }
                        if shared_b {
                            self.barrier.wait();
                        }
                        self.b_buf.0
                    }
                    BSource::Packed(p) => p.block_ptr(kb),
                };
                if !my_panels.is_empty() {
                    for (ic, mc) in blocks(my_rows.len(), self.mc, mr) {
                        let ic = my_rows.start + ic;
                        pack_a(&self.a, (ic, mc), (pc, kc), mr, a_buf);
                        for q in my_panels.clone() {
                            let n_here = nr.min(nc - q * nr);
                            // SAFETY: panel `q` of the block holds `kc·nr` packed elements
                            // (64-byte aligned: scratch and packed buffers are, and
                            // `kc·nr·size_of::<T>()` is a multiple of 64).
                            let bp = unsafe { b_panels.add(q * kc * nr) };
                            for (ir, m_here) in blocks(mc, mr, mr) {
                                // SAFETY: the A panel at `ir·kc` holds `kc·mr` elements of
                                // `a_buf`; the C tile (rows ic+ir.., columns jc+q·nr..) lies
                                // inside C and belongs to this thread alone (its rows under
                                // `Split::Rows`, its panels under `Split::Cols`); the kernel's
                                // path was checked by the caller.
                                unsafe {
                                    let cp = self.c.0.add((ic + ir) * self.rs_c + jc + q * nr);
                                    run(
                                        kc,
                                        a_buf.as_ptr().add(ir * kc),
                                        bp,
                                        cp,
                                        self.rs_c,
                                        m_here,
                                        n_here,
                                        self.alpha,
                                        beta,
                                    );
                                }
                            }
                        }
                    }
                }
                if shared_b {
                    // Nobody repacks the shared block until everybody is done reading it.
                    self.barrier.wait();
                }
            }
        }
    }
}
