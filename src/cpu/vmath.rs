//! Vectorised `f32` math for the row kernels (softmax, log-softmax, their backward passes).
//!
//! The library is built for baseline x86-64, so a plain loop calling `f32::exp` runs one libm
//! call per element (the softmax over a 9488-word vocabulary spent most of its time there).
//! Here the loops are written as branch-free arithmetic that LLVM vectorises, and compiled
//! three times: for AVX-512, for AVX2+FMA (both chosen at run time) and for the baseline.
//!
//! [`exp_in_place`] is accurate to about 2 ulp for `x ≤ 88` (Cephes' `expf` reduction and
//! polynomial) and flushes results below `2⁻¹²⁶` (`x < −87.3`) to zero instead of returning a
//! subnormal; a `−1e9` attention mask therefore still gives exactly zero. NaN propagates.

/// One lane of `eˣ`: `x = n·ln2 + r`, `eʳ` by a degree-6 polynomial on `|r| ≤ ln2/2`, times
/// `2ⁿ` assembled in the exponent bits.
#[inline(always)]
fn exp1(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·C1 is exact.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-88.0, 88.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2ⁿ without a float→int conversion (Rust's saturating `as` would not vectorise): in
    // `n + 127 + 2²³` the integer n + 127 sits in the low mantissa bits.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0x7f_ffff;
    let scale = f32::from_bits(biased << 23);
    let y = er * scale;
    if x < -87.3 { 0.0 } else { y }
}

#[inline(always)]
fn exp_generic(xs: &mut [f32]) {
    for x in xs {
        *x = exp1(*x);
    }
}

/// Largest element, with 16 independent lanes so the reduction vectorises; NaN-propagating.
#[inline(always)]
fn max_generic(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut nan = false;
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            nan |= v.is_nan();
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(tail) {
        nan |= v.is_nan();
        m = if v > m { v } else { m };
    }
    if nan { f32::NAN } else { m }
}

/// Sum with 16 independent lanes (pairwise-ish: error grows with n/16, not n).
#[inline(always)]
fn sum_generic(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Dot product with 16 independent lanes.
#[inline(always)]
fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + ta.iter().zip(tb).map(|(x, y)| x * y).sum::<f32>()
}

/// Declares a function compiled for AVX-512, for AVX2+FMA and for the baseline, dispatching
/// at run time.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

multiversion! {
    /// `x ← eˣ` for every element (see the module documentation for accuracy).
    pub fn exp_in_place(xs: &mut [f32]) -> () => exp_generic
}

multiversion! {
    /// The largest element (−∞ for an empty slice; NaN if any element is NaN).
    pub fn max(xs: &[f32]) -> f32 => max_generic
}

multiversion! {
    /// The sum of the elements.
    pub fn sum(xs: &[f32]) -> f32 => sum_generic
}

multiversion! {
    /// `Σ aᵢ bᵢ` over the shorter of the two slices.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 => dot_generic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_two_ulp() {
        let mut worst = 0.0f64;
        let xs: Vec<f32> = (0..200_000)
            .map(|i| -87.0 + i as f32 * (175.0 / 200_000.0))
            .collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            let ulp = (want as f32).abs() * f32::EPSILON;
            worst = worst.max(((y as f64) - want).abs() / ulp as f64);
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
        let mut edge = [-1e9f32, -100.0, 0.0, f32::NAN, f32::NEG_INFINITY];
        exp_in_place(&mut edge);
        assert_eq!(&edge[..3], &[0.0, 0.0, 1.0]);
        assert!(edge[3].is_nan());
        assert_eq!(edge[4], 0.0);
    }

    #[test]
    fn reductions_match_scalar() {
        let xs: Vec<f32> = (0..1001)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        assert_eq!(
            max(&xs),
            xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
        let s: f64 = xs.iter().map(|&v| v as f64).sum();
        assert!((sum(&xs) as f64 - s).abs() < 1e-4);
        let d: f64 = xs.iter().map(|&v| (v as f64) * (v as f64)).sum();
        assert!((dot(&xs, &xs) as f64 - d).abs() < 1e-3);
        assert!(max(&[1.0, f32::NAN, 2.0]).is_nan());
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
