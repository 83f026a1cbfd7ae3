//! AVX-512 packing for the two transposing layouts of f32, where the scalar packers move one
//! element per store: row-major A (rows → k-major micro-panels) and column-major B (a Linear
//! weight `W` used as `Wᵀ`, columns → k-major micro-panels). Both load 16 × 16 blocks,
//! transpose them in registers (64 shuffles) and store whole vectors.
//!
//! Memory safety rests on slices: every load and store goes through a bounds-checked
//! sub-slice of exactly the vector's length, so the `unsafe` here is only the CPU-feature
//! contract of the intrinsics.

use std::arch::x86_64::*;

/// Whether this CPU can run the packers (cached by the standard library after the first call).
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Transposes the 16 × 16 block whose row `r` is `v[r]`: afterwards `v[c]` holds column `c`.
#[target_feature(enable = "avx512f")]
fn transpose16(v: &mut [__m512; 16]) {
    // Stage 1: interleave 32-bit elements of row pairs (2i, 2i+1).
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // Stage 2: interleave 64-bit pairs: u[4j + e], 128-bit lane l = column 4l + e of rows
    // 4j..4j+4.
    let lo = |a: __m512, b: __m512| {
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
    };
    let hi = |a: __m512, b: __m512| {
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
    };
    let mut u = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        u[4 * j] = lo(t[4 * j], t[4 * j + 2]);
        u[4 * j + 1] = hi(t[4 * j], t[4 * j + 2]);
        u[4 * j + 2] = lo(t[4 * j + 1], t[4 * j + 3]);
        u[4 * j + 3] = hi(t[4 * j + 1], t[4 * j + 3]);
    }
    // Stages 3-4: a 4 × 4 transpose of 128-bit lanes among u[e], u[4+e], u[8+e], u[12+e]:
    // column 4l + e is lane l of those four, in order.
    for e in 0..4 {
        let (x0, x1, x2, x3) = (u[e], u[4 + e], u[8 + e], u[12 + e]);
        let s0 = _mm512_shuffle_f32x4::<0x44>(x0, x1);
        let s1 = _mm512_shuffle_f32x4::<0xEE>(x0, x1);
        let s2 = _mm512_shuffle_f32x4::<0x44>(x2, x3);
        let s3 = _mm512_shuffle_f32x4::<0xEE>(x2, x3);
        v[e] = _mm512_shuffle_f32x4::<0x88>(s0, s2);
        v[4 + e] = _mm512_shuffle_f32x4::<0xDD>(s0, s2);
        v[8 + e] = _mm512_shuffle_f32x4::<0x88>(s1, s3);
        v[12 + e] = _mm512_shuffle_f32x4::<0xDD>(s1, s3);
    }
}

/// Loads `src[p..p + 16]`.
#[target_feature(enable = "avx512f")]
fn load16(src: &[f32], p: usize) -> __m512 {
    let s = &src[p..p + 16];
    // SAFETY: `s` is 16 readable f32s.
    unsafe { _mm512_loadu_ps(s.as_ptr()) }
}

/// One micro-panel of row-major A: `rows[i]` is row `i` of the panel (`kc` values each,
/// at most 16 rows); `dst` receives `kc` steps of `mr ≥ rows.len()` values, zero past the
/// last row.
#[target_feature(enable = "avx512f")]
pub(crate) fn pack_a_rows(rows: &[&[f32]], kc: usize, mr: usize, dst: &mut [f32]) {
    assert!(rows.len() <= mr && mr <= 16 && dst.len() >= kc * mr);
    let mask: __mmask16 = ((1u32 << mr) - 1) as __mmask16;
    let mut p = 0;
    while p + 16 <= kc {
        let mut v = [_mm512_setzero_ps(); 16];
        for (v, row) in v.iter_mut().zip(rows) {
            *v = load16(row, p);
        }
        transpose16(&mut v);
        for (q, v) in v.iter().enumerate() {
            let d = &mut dst[(p + q) * mr..(p + q + 1) * mr];
            // SAFETY: `d` holds `mr` f32s and the mask enables exactly the first `mr` lanes.
            unsafe { _mm512_mask_storeu_ps(d.as_mut_ptr(), mask, *v) };
        }
        p += 16;
    }
    for p in p..kc {
        let d = &mut dst[p * mr..(p + 1) * mr];
        for (i, d) in d.iter_mut().enumerate() {
            *d = rows.get(i).map_or(0.0, |r| r[p]);
        }
    }
}

/// One micro-panel of column-major B: `cols[j]` is column `j` of the panel (`kc` values
/// each, at most `nr` columns, `nr` a multiple of 16); `dst` receives `kc` steps of `nr`
/// values, zero past the last column.
#[target_feature(enable = "avx512f")]
pub(crate) fn pack_b_cols(cols: &[&[f32]], kc: usize, nr: usize, dst: &mut [f32]) {
    assert!(cols.len() <= nr && nr.is_multiple_of(16) && dst.len() >= kc * nr);
    let mut p = 0;
    while p + 16 <= kc {
        for g in 0..nr / 16 {
            let mut v = [_mm512_setzero_ps(); 16];
            for (v, col) in v.iter_mut().zip(cols.iter().skip(16 * g)) {
                *v = load16(col, p);
            }
            transpose16(&mut v);
            for (q, v) in v.iter().enumerate() {
                let d = &mut dst[(p + q) * nr + 16 * g..][..16];
                // SAFETY: `d` holds 16 f32s.
                unsafe { _mm512_storeu_ps(d.as_mut_ptr(), *v) };
            }
        }
        p += 16;
    }
    for p in p..kc {
        let d = &mut dst[p * nr..(p + 1) * nr];
        for (j, d) in d.iter_mut().enumerate() {
            *d = cols.get(j).map_or(0.0, |c| c[p]);
        }
    }
}
