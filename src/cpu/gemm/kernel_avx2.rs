//! AVX2 + FMA micro-kernels: f32 tiles of 6 × 16 (two ymm per row), f64 tiles of 6 × 8.
//!
//! Register budget (16 ymm): 12 accumulators, 2 B vectors, 1 broadcast A value. Per `k` step:
//! 2 aligned B loads, 6 broadcasts, 12 FMAs. Edge columns use `vmaskmov` loads/stores of C;
//! edge rows use a smaller `M`. f32 and f64 share the body through `avx2_kernel!`.

use std::arch::x86_64::*;

use super::kernel::{Kernel, KernelPtrs, dispatch_rows};

/// Rows of a register tile (and of a packed A micro-panel).
const MR: usize = 6;

/// All-ones in the first `live` of eight 32-bit lanes (`live ≤ 8`).
#[target_feature(enable = "avx2")]
fn lanes_mask_f32(live: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(live as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// All-ones in the first `live` of four 64-bit lanes (`live ≤ 4`).
#[target_feature(enable = "avx2")]
fn lanes_mask_f64(live: usize) -> __m256i {
    _mm256_cmpgt_epi64(
        _mm256_set1_epi64x(live as i64),
        _mm256_setr_epi64x(0, 1, 2, 3),
    )
}

macro_rules! avx2_kernel {
    (
        $t:ty, lanes: $lanes:literal, $lanes_mask:ident,
        $setzero:ident, $set1:ident, $load:ident, $loadu:ident, $storeu:ident,
        $maskload:ident, $maskstore:ident, $fmadd:ident, $mul:ident,
        $tile:ident, $run:ident, $kernel:ident
    ) => {
        /// One `M × (NV·lanes)` tile; see [`KernelFn`](super::kernel::KernelFn) for the contract.
        #[target_feature(enable = "avx2,fma")]
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
            // `M × n` tile at `c` is ours, and `n > (NV - 1) * lanes`, so full-width accesses
            // stay inside the tile and partial ones are masked. `pf` is only prefetched
            // (wrapping arithmetic, no access). The CPU supports AVX2 and FMA.
            unsafe {
                let mut acc = [[$setzero(); NV]; M];
                let (mut ap, mut bp, mut pfp) = (a, b, pf as *const i8);
                for p in 0..k {
                    // Pull the next B panel towards L2, one 64-byte line per 2 k steps
                    // (its rows are `NR` elements: 64 bytes for f32, 64 for f64's 8).
                    if p % 2 == 0 {
                        _mm_prefetch::<_MM_HINT_T1>(pfp);
                        _mm_prefetch::<_MM_HINT_T1>(pfp.wrapping_add(64));
                        pfp = pfp.wrapping_add(128);
                    }
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
                    ap = ap.add(MR);
                    bp = bp.add(NR);
                }
                let va = $set1(alpha);
                let vb = $set1(beta);
                for (i, acc) in acc.iter().enumerate() {
                    let row = c.add(i * rs_c);
                    for v in 0..NV {
                        let live = n - v * $lanes;
                        let p = row.add(v * $lanes);
                        let mut r = $mul(acc[v], va);
                        if live >= $lanes {
                            if beta != 0.0 {
                                r = $fmadd(vb, $loadu(p), r);
                            }
                            $storeu(p, r);
                        } else {
                            let mask = $lanes_mask(live);
                            if beta != 0.0 {
                                r = $fmadd(vb, $maskload(p, mask), r);
                            }
                            $maskstore(p, mask, r);
                        }
                    }
                }
            }
        }

        /// Row/width dispatch for [`$tile`]: the `KernelFn` of this path.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $run(k: usize, (a, b, pf, c, rs_c, m, n): KernelPtrs<$t>, alpha: $t, beta: $t) {
            // SAFETY: forwarded contract; `n ≤ lanes` picks the one-vector tile.
            unsafe {
                if n > $lanes {
                    dispatch_rows!(
                        m,
                        $tile::<_, 2>(k, a, b, pf, c, rs_c, n, alpha, beta),
                        [1, 2, 3, 4, 5, 6]
                    )
                } else {
                    dispatch_rows!(
                        m,
                        $tile::<_, 1>(k, a, b, pf, c, rs_c, n, alpha, beta),
                        [1, 2, 3, 4, 5, 6]
                    )
                }
            }
        }

        /// The AVX2 kernel for this scalar type (the caller checks CPU support).
        pub(crate) fn $kernel() -> Kernel<$t> {
            Kernel {
                mr: MR,
                nr: 2 * $lanes,
                run: $run,
            }
        }
    };
}

avx2_kernel!(
    f32, lanes: 8, lanes_mask_f32,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_load_ps, _mm256_loadu_ps, _mm256_storeu_ps,
    _mm256_maskload_ps, _mm256_maskstore_ps, _mm256_fmadd_ps, _mm256_mul_ps,
    tile_f32, run_f32, kernel_f32
);
avx2_kernel!(
    f64, lanes: 4, lanes_mask_f64,
    _mm256_setzero_pd, _mm256_set1_pd, _mm256_load_pd, _mm256_loadu_pd, _mm256_storeu_pd,
    _mm256_maskload_pd, _mm256_maskstore_pd, _mm256_fmadd_pd, _mm256_mul_pd,
    tile_f64, run_f64, kernel_f64
);
