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
//!       for jr in nc step nr:          one B micro-panel (kc × nr) …
//!         for ir in mc step mr:        … meets every A micro-panel of the block
//!           kernel → C tile mr × nr    (and prefetches the next B micro-panel)
//! ```
//!
//! Threads split the work one of two ways ([`Split`]):
//! * **Rows** (at least four A micro-panels per thread: the big shapes): each thread owns a
//!   range of rows; the packed B block is shared, every thread packs a slice of its panels,
//!   and barriers before and after the compute phase order the packing against the reads.
//! * **Columns** (the skinny shapes: the decoder's M = 50): each thread owns a range of B
//!   micro-panels over all of N and packs each one just before using it, into a small
//!   private buffer that stays in cache; no barriers. A pre-packed B is read in place.
//!
//! Problems too small to pay for a thread spawn run on the calling thread, and products of at
//! most four rows with a row-major B skip packing altogether (`skinny.rs`).

use std::sync::Barrier;

use super::buffer::Scratch;
use super::config::GemmConfig;
use super::kernel::Kernel;
use super::pack::{pack_a, pack_b};
use super::packed_b::PackedB;
use super::skinny::{SKINNY_ROWS, skinny};
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
    /// Each thread owns a range of B micro-panels (columns), packed one at a time.
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
    if let BSource::Strided(bv) = b
        && bv.col_stride == 1
        && m <= SKINNY_ROWS
    {
        // SAFETY: forwarded contract.
        unsafe { skinny(cfg, alpha, &a, &bv, beta, c, rs_c) };
        return;
    }
    let kernel = match b {
        BSource::Strided(_) => T::kernel(cfg.path),
        BSource::Packed(p) => T::kernel(p.path()),
    };
    let (mr, nr) = (kernel.mr, kernel.nr);

    // Threads: enough work per thread, and a split that gives each thread something to do.
    let flops = 2usize.saturating_mul(m).saturating_mul(n).saturating_mul(k);
    let mut threads = cfg.threads.min(flops / cfg.min_flops_per_thread).max(1);
    // One thread packs B panels just in time unless A needs several blocks (which would
    // repack them); several threads split rows when each gets at least four row panels.
    let split = if (threads == 1 && m > cfg.mc) || (threads > 1 && m.div_ceil(mr) >= 4 * threads) {
        Split::Rows
    } else {
        threads = threads.min(n.div_ceil(nr)).max(1);
        Split::Cols
    };

    // Blocking of K and N; a packed B fixes its own (its K blocks, all of N at once), and so
    // does the column split, which packs one micro-panel at a time.
    let k_blocks: Vec<(usize, usize)> = match b {
        BSource::Strided(_) => blocks(k, cfg.kc, 1).collect(),
        BSource::Packed(p) => p.k_blocks().map(|(k0, kc, _)| (k0, kc)).collect(),
    };
    let kc_max = k_blocks.iter().map(|&(_, kc)| kc).max().unwrap_or(0);
    let n_blocks: Vec<(usize, usize)> = match (b, split) {
        (BSource::Strided(_), Split::Rows) => blocks(n, cfg.nc, nr).collect(),
        _ => vec![(0, n)],
    };
    let nc_max = n_blocks.iter().map(|&(_, nc)| nc).max().unwrap_or(0);

    // The shared B block of the row split (strided B only).
    let b_len = match (b, split) {
        (BSource::Strided(_), Split::Rows) => kc_max * nc_max.next_multiple_of(nr),
        _ => 0,
    };
    let mut b_scratch = Scratch::take(b_len * size_of::<T>());
    let b_buf = SyncPtr(b_scratch.buf().slice_mut::<T>(b_len).as_mut_ptr());
    let a_rows = match split {
        Split::Rows => chunk_range(m.div_ceil(mr), threads, 0).len() * mr,
        Split::Cols => m.next_multiple_of(mr),
    }
    .min(cfg.mc.next_multiple_of(mr));

    let job = Job {
        kernel,
        alpha,
        beta,
        a,
        b,
        c,
        rs_c,
        m,
        n,
        k_blocks: &k_blocks,
        n_blocks: &n_blocks,
        threads,
        mc: cfg.mc,
        b_buf,
        b_len,
        a_len: a_rows * kc_max,
        panel_len: kc_max * nr,
        barrier: Barrier::new(threads),
    };
    let work = |t: usize| match split {
        // SAFETY: forwarded contract; `work_rows(t)` touches only thread `t`'s C rows and
        // B panels, and every shared write is ordered by the job's barrier; each thread
        // `0..threads` runs it exactly once, concurrently.
        Split::Rows => unsafe { job.work_rows(t) },
        // SAFETY: forwarded contract; `work_cols(t)` touches only thread `t`'s C columns.
        Split::Cols => unsafe { job.work_cols(t) },
    };
    if threads == 1 {
        work(0);
    } else {
        std::thread::scope(|s| {
            let work = &work;
            for t in 1..threads {
                s.spawn(move || work(t));
            }
            work(0);
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
    n: usize,
    k_blocks: &'a [(usize, usize)],
    n_blocks: &'a [(usize, usize)],
    threads: usize,
    mc: usize,
    /// The shared packed B block of the row split, `b_len` elements (empty otherwise).
    b_buf: SyncPtr<T>,
    b_len: usize,
    /// Elements of each thread's private A block.
    a_len: usize,
    /// Elements of one packed B micro-panel (the column split's private buffer).
    panel_len: usize,
    barrier: Barrier,
}

impl<T: GemmScalar> Job<'_, T> {
    /// Thread `t`'s share under [`Split::Rows`]: its rows, all columns, the B block shared.
    ///
    /// # Safety
    /// The [`gemm_raw`] contract; every thread `0..threads` runs `work_rows` exactly once,
    /// concurrently (the barriers wait for all of them).
    unsafe fn work_rows(&self, t: usize) {
        let Kernel { mr, nr, .. } = self.kernel;
        let mut a_scratch = Scratch::take(self.a_len * size_of::<T>());
        let a_buf = a_scratch.buf().slice_mut::<T>(self.a_len);
        let p = chunk_range(self.m.div_ceil(mr), self.threads, t);
        let my_rows = p.start * mr..(p.end * mr).min(self.m);
        for &(jc, nc) in self.n_blocks {
            let n_panels = nc.div_ceil(nr);
            let team = chunk_range(n_panels, self.threads, t);
            for (kb, &(pc, kc)) in self.k_blocks.iter().enumerate() {
                let beta = if kb == 0 { self.beta } else { T::ONE };
                let b_panels: *const T = match self.b {
                    BSource::Strided(b) => {
                        // This thread packs the panels `team` of the block: disjoint across
                        // threads; everybody reads all of them after the barrier.
                        let first = team.start * kc * nr;
                        let len = team.len() * kc * nr;
                        assert!(first + len <= self.b_len);
                        // SAFETY: `b_buf` holds `b_len` elements (just checked) and panels
                        // `team` are written by this thread only, while no thread reads the
                        // block (between the two barriers of the previous and this block).
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(self.b_buf.0.add(first), len) };
                        let cols = team.start * nr..(team.end * nr).min(nc);
                        if !cols.is_empty() {
                            pack_b(&b, (pc, kc), (jc + cols.start, cols.len()), nr, dst);
                        }
                        self.barrier.wait();
                        self.b_buf.0
                    }
                    BSource::Packed(p) => p.block_ptr(kb),
                };
                for (ic, mc) in blocks(my_rows.len(), self.mc, mr) {
                    let ic = my_rows.start + ic;
                    pack_a(&self.a, (ic, mc), (pc, kc), mr, a_buf);
                    for q in 0..n_panels {
                        // SAFETY: panel `q` (and the prefetch hint's `q + 1`, only
                        // prefetched, never read, when it lies past the block) of the packed
                        // block; the C tiles of rows `ic..ic + mc` are this thread's.
                        unsafe {
                            let bp = b_panels.add(q * kc * nr);
                            let next = bp.wrapping_add(kc * nr);
                            let n_here = nr.min(nc - q * nr);
                            self.column(a_buf, (ic, mc), kc, (bp, next), jc + q * nr, n_here, beta);
                        }
                    }
                }
                if matches!(self.b, BSource::Strided(_)) {
                    // Nobody repacks the shared block until everybody is done reading it.
                    self.barrier.wait();
                }
            }
        }
    }

    /// Thread `t`'s share under [`Split::Columns`]: all rows, its B micro-panels, each packed
    /// just before use into a private buffer (or read in place from a pre-packed B).
    ///
    /// # Safety
    /// The [`gemm_raw`] contract.
    unsafe fn work_cols(&self, t: usize) {
        let Kernel { mr, nr, .. } = self.kernel;
        let panels = chunk_range(self.n.div_ceil(nr), self.threads, t);
        if panels.is_empty() {
            return;
        }
        let mut a_scratch = Scratch::take(self.a_len * size_of::<T>());
        let a_buf = a_scratch.buf().slice_mut::<T>(self.a_len);
        let panel_len = match self.b {
            BSource::Strided(_) => self.panel_len,
            BSource::Packed(_) => 0,
        };
        let mut panel_scratch = Scratch::take(panel_len * size_of::<T>());
        let panel_buf = panel_scratch.buf().slice_mut::<T>(panel_len);
        for (kb, &(pc, kc)) in self.k_blocks.iter().enumerate() {
            let beta = if kb == 0 { self.beta } else { T::ONE };
            for (ic, mc) in blocks(self.m, self.mc, mr) {
                pack_a(&self.a, (ic, mc), (pc, kc), mr, a_buf);
                for q in panels.clone() {
                    let n_here = nr.min(self.n - q * nr);
                    let (bp, next) = match self.b {
                        BSource::Strided(b) => {
                            pack_b(&b, (pc, kc), (q * nr, n_here), nr, panel_buf);
                            (panel_buf.as_ptr(), panel_buf.as_ptr())
                        }
                        BSource::Packed(p) => {
                            // SAFETY: panel `q` of k block `kb` lies inside the packed B; the
                            // next one is only prefetched.
                            let bp = unsafe { p.block_ptr(kb).add(q * kc * nr) };
                            (bp, bp.wrapping_add(kc * nr))
                        }
                    };
                    // SAFETY: `bp` holds the packed `kc × nr` panel; the C tiles of columns
                    // `q·nr..` are this thread's.
                    unsafe { self.column(a_buf, (ic, mc), kc, (bp, next), q * nr, n_here, beta) };
                }
            }
        }
    }

    /// Runs the kernel down one column of tiles: every A micro-panel of the packed block
    /// `a_buf` (rows `ic..ic + mc`) times the B micro-panel `bp`, into C columns
    /// `col..col + n_here`. The first call prefetches `next` (the next B panel) into L2.
    ///
    /// # Safety
    /// `bp` holds a packed `kc × nr` panel (64-byte aligned); the C tiles are this thread's.
    #[allow(clippy::too_many_arguments)]
    unsafe fn column(
        &self,
        a_buf: &[T],
        (ic, mc): (usize, usize),
        kc: usize,
        (bp, next): (*const T, *const T),
        col: usize,
        n_here: usize,
        beta: T,
    ) {
        let Kernel { mr, run, .. } = self.kernel;
        for (ir, m_here) in blocks(mc, mr, mr) {
            let a_panel = &a_buf[ir * kc..(ir + mr) * kc];
            let prefetch = if ir == 0 { next } else { bp };
            // SAFETY: the A panel holds `kc·mr` elements; the C tile (rows `ic + ir..`,
            // columns `col..col + n_here`) lies inside C and belongs to this thread; the
            // kernel's path was checked by the caller; the prefetch hint is never read.
            unsafe {
                let cp = self.c.0.add((ic + ir) * self.rs_c + col);
                let args = (
                    a_panel.as_ptr(),
                    bp,
                    prefetch,
                    cp,
                    self.rs_c,
                    m_here,
                    n_here,
                );
                run(kc, args, self.alpha, beta);
            }
        }
    }
}
