//! Shared helpers of the GPU tests (`tests/cuda_*.rs`): device or skip, random data, and the
//! `atol + rtol·|ref|` comparison that reports the worst element (STYLE.md 6).
#![allow(dead_code)]

use std::sync::Arc;

use aoanet::Philox;
use aoanet::cuda::CudaDevice;

/// The first GPU, or `None` after printing why the test is skipped. With
/// `AOANET_REQUIRE_GPU=1` (set by `scripts/gpu-check run`) a missing GPU fails the test instead,
/// so a GPU run can never pass by skipping.
pub fn gpu(test: &str) -> Option<Arc<CudaDevice>> {
    let required = std::env::var_os("AOANET_REQUIRE_GPU").is_some();
    if let Some(why) = aoanet::cuda::unavailable_reason() {
        assert!(
            !required,
            "{test}: AOANET_REQUIRE_GPU is set but there is no GPU: {why}"
        );
        eprintln!("skipped {test}: no GPU ({why})");
        return None;
    }
    match CudaDevice::get(0) {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(!required, "{test}: AOANET_REQUIRE_GPU is set: {e}");
            eprintln!("skipped {test}: {e}");
            None
        }
    }
}

/// Uniform values in [lo, hi) from a seeded Philox stream, with a few outliers (±8·hi) mixed in
/// so that max-subtraction and large exponents are exercised (llm.c's kernel lab does the same).
pub fn rand_vec(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut g = Philox::new(seed);
    let mut v = vec![0f32; n];
    g.fill_uniform_f32(&mut v);
    for (i, x) in v.iter_mut().enumerate() {
        *x = lo + (hi - lo) * *x;
        if i % 97 == 13 {
            *x *= 8.0;
        }
    }
    v
}

/// Plain uniform values in [lo, hi), no outliers.
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut g = Philox::new(seed);
    let mut v = vec![0f32; n];
    g.fill_uniform_f32(&mut v);
    v.iter().map(|u| lo + (hi - lo) * u).collect()
}

/// A 0/1 key mask of `b` rows of `n` keys where row r keeps its first `n - r % n` keys, so
/// rows have different valid lengths, one row may keep a single key.
pub fn key_mask(b: usize, n: usize) -> Vec<u8> {
    (0..b)
        .flat_map(|r| (0..n).map(move |k| u8::from(k < n - (r * 3) % n)))
        .collect()
}

/// Checks `|got - want| <= atol + rtol·|want|` everywhere; panics naming the worst element.
/// NaN in either is a failure. Returns the worst ratio error/tolerance (for printing).
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let tol = atol + rtol * w.abs();
        let r = if g.is_nan() || w.is_nan() {
            f64::INFINITY
        } else {
            (g - w).abs() / tol
        };
        if r > worst.0 {
            worst = (r, i);
        }
    }
    let (r, i) = worst;
    eprintln!(
        "{what}: worst element {i}: got {} want {} (error/tolerance {r:.3})",
        got.get(i).copied().unwrap_or(0.0),
        want.get(i).copied().unwrap_or(0.0)
    );
    assert!(
        r <= 1.0,
        "{what}: element {i} got {} want {} exceeds atol {atol} + rtol {rtol}·|want|",
        got[i],
        want[i]
    );
    r
}

/// f32 slice to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}
