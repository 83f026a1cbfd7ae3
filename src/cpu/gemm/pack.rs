//! Packing: copying blocks of A and B into the contiguous micro-panel layouts the kernels
//! stream through.
//!
//! * A block (`mc × kc`) → `ceil(mc / mr)` micro-panels; panel `q` holds, for each `p < kc`,
//!   the `mr` values `A[r0 + q·mr + i, p0 + p]` (`i < mr`), zero past the block's last row.
//! * B block (`kc × nc`) → `ceil(nc / nr)` micro-panels; panel `q` holds, for each `p < kc`,
//!   the `nr` values `B[p0 + p, c0 + q·nr + j]`, zero past the block's last column.
//!
//! Each layout has a fast case for a unit column stride, one for a unit row stride (the
//! transposed operand), and a general strided case. All indexing is bounds-checked: views are
//! validated before they get here, so a failed check would be an internal bug, never UB.

use std::any::TypeId;

#[cfg(target_arch = "x86_64")]
use super::pack_avx512;
use super::{GemmScalar, MatRef};

/// The data of `v` as f32, when `T` is f32 and the AVX-512 packers can run.
fn simd_f32<T: GemmScalar>(data: &[T]) -> Option<&[f32]> {
    #[cfg(target_arch = "x86_64")]
    if TypeId::of::<T>() == TypeId::of::<f32>() && pack_avx512::available() {
        return Some(bytemuck::cast_slice(data));
    }
    let _ = data;
    None
}

/// `dst = src` for slices of length `N` (checked), as one fixed-size copy.
fn copy_fixed<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
    let d: &mut [T; N] = dst.try_into().expect("copy_fixed: length");
    let s: &[T; N] = src.try_into().expect("copy_fixed: length");
    *d = *s;
}

/// Asks the CPU to start loading the cache lines of a short `span` (at most 128 bytes: the
/// first, second and last line it touches). A hint: no effect on other targets.
fn prefetch_short<T>(span: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = std::mem::size_of_val(span);
        let base = span.as_ptr() as *const i8;
        for off in [0, 64.min(bytes.saturating_sub(1)), bytes.saturating_sub(1)] {
            // SAFETY: a prefetch never faults or reads into Rust-visible state, and the
            // address lies inside `span`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = span;
}

/// Packs rows `r0..r0 + mc` × columns `p0..p0 + kc` of `a` into `mr`-row micro-panels in
/// `out` (length at least `ceil(mc / mr) · mr · kc`).
pub(crate) fn pack_a<T: GemmScalar>(
    a: &MatRef<'_, T>,
    (r0, mc): (usize, usize),
    (p0, kc): (usize, usize),
    mr: usize,
    out: &mut [T],
) {
    let (rs, cs) = (a.row_stride, a.col_stride);
    for (q, dst) in out
        .chunks_exact_mut(mr * kc)
        .take(mc.div_ceil(mr))
        .enumerate()
    {
        let first = r0 + q * mr;
        let h = mr.min(r0 + mc - first);
        let at = |i: usize, p: usize| a.offset + (first + i) * rs + (p0 + p) * cs;
        #[cfg(target_arch = "x86_64")]
        if cs == 1
            && mr <= 16
            && let Some(data) = simd_f32(a.data)
        {
            {
                let rows: [&[f32]; 16] = std::array::from_fn(|i| {
                    if i < h {
                        &data[at(i, 0)..at(i, 0) + kc]
                    } else {
                        &[]
                    }
                });
                // SAFETY: `simd_f32` checked that the CPU has AVX-512F.
                unsafe {
                    pack_avx512::pack_a_rows(&rows[..h], kc, mr, bytemuck::cast_slice_mut(dst))
                };
                continue;
            }
        }
        if cs == 1 {
            // Row-major A: read each row contiguously, scatter with stride `mr`.
            for i in 0..h {
                let row = &a.data[at(i, 0)..at(i, 0) + kc];
                for (d, &v) in dst.chunks_exact_mut(mr).zip(row) {
                    d[i] = v;
                }
            }
        } else if rs == 1 {
            // Column-major A (a transposed operand): each `p` is `h` contiguous values.
            for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                d[..h].copy_from_slice(&a.data[at(0, p)..at(0, p) + h]);
            }
        } else {
            for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                for (i, d) in d[..h].iter_mut().enumerate() {
                    *d = a.data[at(i, p)];
                }
            }
        }
        if h < mr {
            for d in dst.chunks_exact_mut(mr) {
                d[h..].fill(T::ZERO);
            }
        }
    }
}

/// Packs rows `p0..p0 + kc` × columns `c0..c0 + nc` of `b` into `nr`-column micro-panels in
/// `out` (length at least `ceil(nc / nr) · nr · kc`).
pub(crate) fn pack_b<T: GemmScalar>(
    b: &MatRef<'_, T>,
    (p0, kc): (usize, usize),
    (c0, nc): (usize, usize),
    nr: usize,
    out: &mut [T],
) {
    let (rs, cs) = (b.row_stride, b.col_stride);
    let panels = nc.div_ceil(nr);
    let out = &mut out[..panels * nr * kc];
    if cs == 1 {
        // Row-major B: read each row once, and copy its `nr`-wide pieces into the panels.
        // A single panel (packed just in time) reads 128-byte pieces of rows `rs` apart
        // (often a power of two of bytes), which the hardware prefetchers do not follow, so
        // fetch `PREFETCH_ROWS` rows ahead explicitly; wide blocks stream whole rows.
        const PREFETCH_ROWS: usize = 24;
        let narrow = nc <= nr && nc * size_of::<T>() <= 128;
        for p in 0..kc {
            let start = b.offset + (p0 + p) * rs + c0;
            let row = &b.data[start..start + nc];
            if narrow && p + PREFETCH_ROWS < kc {
                prefetch_short(&b.data[start + PREFETCH_ROWS * rs..][..nc]);
            }
            for (q, piece) in row.chunks(nr).enumerate() {
                let d = &mut out[q * nr * kc + p * nr..][..nr];
                match (d.len(), piece.len()) {
                    // Fixed-size copies compile to a few vector moves, not a memmove call.
                    (32, 32) => copy_fixed::<T, 32>(d, piece),
                    (16, 16) => copy_fixed::<T, 16>(d, piece),
                    (8, 8) => copy_fixed::<T, 8>(d, piece),
                    (_, w) => {
                        d[..w].copy_from_slice(piece);
                        d[w..].fill(T::ZERO);
                    }
                }
            }
        }
        return;
    }
    for (q, dst) in out.chunks_exact_mut(nr * kc).enumerate() {
        let first = c0 + q * nr;
        let w = nr.min(c0 + nc - first);
        let at = |p: usize, j: usize| b.offset + (p0 + p) * rs + (first + j) * cs;
        #[cfg(target_arch = "x86_64")]
        if rs == 1
            && nr.is_multiple_of(16)
            && nr <= 64
            && let Some(data) = simd_f32(b.data)
        {
            {
                let cols: [&[f32]; 64] = std::array::from_fn(|j| {
                    if j < w {
                        &data[at(0, j)..at(0, j) + kc]
                    } else {
                        &[]
                    }
                });
                // SAFETY: `simd_f32` checked that the CPU has AVX-512F.
                unsafe {
                    pack_avx512::pack_b_cols(&cols[..w], kc, nr, bytemuck::cast_slice_mut(dst))
                };
                continue;
            }
        }
        if rs == 1 {
            // Column-major B (e.g. a Linear weight used as Wᵀ): read each column
            // contiguously, scatter with stride `nr`.
            for j in 0..w {
                let col = &b.data[at(0, j)..at(0, j) + kc];
                for (d, &v) in dst.chunks_exact_mut(nr).zip(col) {
                    d[j] = v;
                }
            }
        } else {
            for (p, d) in dst.chunks_exact_mut(nr).enumerate() {
                for (j, d) in d[..w].iter_mut().enumerate() {
                    *d = b.data[at(p, j)];
                }
            }
        }
        if w < nr {
            for d in dst.chunks_exact_mut(nr) {
                d[w..].fill(T::ZERO);
            }
        }
    }
}
