//! AVX-512F micro-kernels: f32 tiles of 14 × 32 (two zmm per row), f64 tiles of 14 × 16.
//!
//! Register budget (32 zmm): 28 accumulators, 2 B vectors, and the A value, broadcast
//! straight from memory by the FMA (`{1to16}`). Per `k` step: 2 aligned B loads, 14
//! broadcasts, 28 FMAs, i.e. 14 cycles on the two 512-bit FMA ports, comfortably within the
//! load ports. Edge columns use a lane mask on the C load/store; edge rows use a smaller `M`.
//! f32 and f64 share the body through `avx512_kernel!`.

use std::arch::x86_64::*;

use super::kernel::{Kernel, KernelPtrs, dispatch_rows};

/// Rows of a register tile (and of a packed A micro-panel).
const MR: usize = 14;

macro_rules! avx512_kernel {
    (
        $t:ty, lanes: $lanes:literal, mask: $mask:ty,
        $setzero:ident, $set1:ident, $load:ident, $fmadd:ident, $mul:ident,
        $maskz_loadu:ident, $mask_storeu:ident, $tile:ident, $run:ident, $kernel:ident
    ) => {
        // A panel row is two vectors, 128 bytes, for both element types.
        const _: () = assert!(2 * $lanes * std::mem::size_of::<$t>() == 128);

        /// One `M × (NV·lanes)` tile; see [`KernelFn`](super::kernel::KernelFn) for the contract.
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $tile<const M: usize, const NV: usize>(
            k: usize,
            a: *const $t,
            b: *const $t,
            pf: *const $t,
            c: *mut $t,
            rs_c: usize,
            n: usize,
            alpha: $t,
            beta: $t,
        ) {
            const NR: usize = 2 * $lanes;
            // SAFETY: the caller upholds the `KernelFn` contract: `a`/`b` hold `k` steps of
            // `MR`/`NR` elements (`b` 64-byte aligned, so the aligned loads are valid), the
            // `M × n` tile at `c` is ours, and `n > (NV - 1) * lanes`, so every lane the masks
            // enable lies inside the tile. `pf` is only prefetched (wrapping arithmetic, no
            // access). The CPU supports AVX-512F.
            unsafe {
                // Fetch the C tile while the FMAs run: C is read once per k block, from L3.
                for i in 0..M {
                    let row = c.add(i * rs_c);
                    _mm_prefetch::<_MM_HINT_ET0>(row as *const i8);
                    _mm_prefetch::<_MM_HINT_ET0>(row.add(n - 1) as *const i8);
                }
                let mut acc = [[$setzero(); NV]; M];
                // One k step: NV aligned B loads, M broadcasts of A, M·NV FMAs.
                let step = |acc: &mut [[_; NV]; M], ap: *const $t, bp: *const $t| {
                    let mut bv = [$setzero(); NV];
                    for (v, bv) in bv.iter_mut().enumerate() {
                        *bv = $load(bp.add(v * $lanes));
                    }
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let ai = $set1(*ap.add(i));
                        for v in 0..NV {
                            acc[v] = $fmadd(ai, bv[v], acc[v]);
                        }
                    }
                };
                let (mut ap, mut bp, mut pfp) = (a, b, pf as *const i8);
                // Unrolled by 4: fewer loop-carried pointer updates per FMA. Each round also
                // pulls the matching 4 rows of the next B panel (512 bytes) towards L2, so
                // the next panel does not start with a stall on memory.
                for _ in 0..k / 4 {
                    for line in 0..8 {
                        _mm_prefetch::<_MM_HINT_T1>(pfp.wrapping_add(64 * line));
                    }
                    pfp = pfp.wrapping_add(512);
                    step(&mut acc, ap, bp);
                    step(&mut acc, ap.add(MR), bp.add(NR));
                    step(&mut acc, ap.add(2 * MR), bp.add(2 * NR));
                    step(&mut acc, ap.add(3 * MR), bp.add(3 * NR));
                    ap = ap.add(4 * MR);
                    bp = bp.add(4 * NR);
                }
                for _ in 0..k % 4 {
                    step(&mut acc, ap, bp);
                    ap = ap.add(MR);
                    bp = bp.add(NR);
                }
                let va = $set1(alpha);
                let vb = $set1(beta);
                for (i, acc) in acc.iter().enumerate() {
                    let row = c.add(i * rs_c);
                    for v in 0..NV {
                        let live = n - v * $lanes;
                        let mask = if live >= $lanes {
                            !0
                        } else {
                            ((1u32 << live) - 1) as $mask
                        };
                        let mut r = $mul(acc[v], va);
                        if beta != 0.0 {
                            r = $fmadd(vb, $maskz_loadu(mask, row.add(v * $lanes)), r);
                        }
                        $mask_storeu(row.add(v * $lanes), mask, r);
                    }
                }
            }
        }

        /// Row/width dispatch for [`$tile`]: the `KernelFn` of this path.
        #[target_feature(enable = "avx512f")]
        unsafe fn $run(k: usize, (a, b, pf, c, rs_c, m, n): KernelPtrs<$t>, alpha: $t, beta: $t) {
            // SAFETY: forwarded contract; `n ≤ lanes` picks the one-vector tile, so the
            // masks always cover the live columns.
            unsafe {
                if n > $lanes {
                    dispatch_rows!(
                        m,
                        $tile::<_, 2>(k, a, b, pf, c, rs_c, n, alpha, beta),
                        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
                    )
                } else {
                    dispatch_rows!(
                        m,
                        $tile::<_, 1>(k, a, b, pf, c, rs_c, n, alpha, beta),
                        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
                    )
                }
            }
        }

        /// The AVX-512 kernel for this scalar type (the caller checks CPU support).
        pub(crate) fn $kernel() -> Kernel<$t> {
            Kernel {
                mr: MR,
                nr: 2 * $lanes,
                run: $run,
            }
        }
    };
}

avx512_kernel!(
    f32, lanes: 16, mask: __mmask16,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_load_ps, _mm512_fmadd_ps, _mm512_mul_ps,
    _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps, tile_f32, run_f32, kernel_f32
);
avx512_kernel!(
    f64, lanes: 8, mask: __mmask8,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_load_pd, _mm512_fmadd_pd, _mm512_mul_pd,
    _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd, tile_f64, run_f64, kernel_f64
);
