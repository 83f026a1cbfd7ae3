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

// ---------------------------------------------------------------------------------------------
// Tensor-level comparisons (tests/cuda_ops.rs, cuda_parity.rs, cuda_train.rs)
// ---------------------------------------------------------------------------------------------

use aoanet::tensor::{DType, Device, Tensor};

/// The first GPU as a tensor device, or `None` after printing why the test is skipped (see
/// [`gpu`]). With `AOANET_CUDA_TESTS_ON_CPU=1` (no GPU needed) it returns the CPU instead: a
/// dry run of the test harnesses themselves (both sides then run the CPU kernels, so only
/// the harness logic is checked, and device-specific assertions are skipped).
pub fn cuda(test: &str) -> Option<Device> {
    if std::env::var_os("AOANET_CUDA_TESTS_ON_CPU").is_some() {
        eprintln!("{test}: dry run on the CPU (AOANET_CUDA_TESTS_ON_CPU)");
        return Some(Device::Cpu);
    }
    gpu(test).map(|d| Device::Cuda(d.ordinal()))
}

/// `atol + rtol·|want|` per element between two tensors of equal shape (any devices); panics
/// naming the worst element. Returns the worst error/tolerance ratio.
pub fn assert_tensors_close(what: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let (gv, wv) = (got.to_vec_f64(), want.to_vec_f64());
    assert_eq!(gv.len(), want.numel(), "{what}: readback length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&a, &b)) in gv.iter().zip(&wv).enumerate() {
        let tol = atol + rtol * b.abs();
        let r = if a.is_nan() || b.is_nan() {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else if a == b {
            0.0
        } else {
            (a - b).abs() / tol
        };
        if r > worst.0 {
            worst = (r, i);
        }
    }
    let (r, i) = worst;
    eprintln!(
        "{what}: worst element {i}: got {} want {} (error/tolerance {r:.3})",
        gv.get(i).copied().unwrap_or(0.0),
        wv.get(i).copied().unwrap_or(0.0)
    );
    assert!(
        r <= 1.0,
        "{what}: element {i} got {} want {} exceeds atol {atol} + rtol {rtol}·|want|",
        gv[i],
        wv[i]
    );
    r
}

/// Per-dtype tolerances `(atol, rtol)` of an op's CUDA result against the CPU's.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// f32: both devices round every operation to f32 but in different orders (reductions,
    /// GEMM tiles, fused multiply-adds) and with different `exp`/`tanh` (CUDA's are within
    /// 2 ulp): a few ulp of each input's scale.
    pub f32: (f64, f64),
    /// f64: the same, ~1e-16 per operation: far below anything a wrong formula gives.
    pub f64: (f64, f64),
}

impl Tol {
    /// Elementwise ops and short reductions.
    pub const TIGHT: Tol = Tol {
        f32: (2e-6, 2e-6),
        f64: (1e-13, 1e-12),
    };
    /// Ops that must give the CPU's bits (masks and products rounded once, as on the CPU).
    pub const EXACT: Tol = Tol {
        f32: (0.0, 0.0),
        f64: (0.0, 0.0),
    };
    /// Products and reductions over hundreds of terms, and their gradients.
    pub const SUMS: Tol = Tol {
        f32: (2e-5, 1e-4),
        f64: (1e-12, 1e-10),
    };

    fn of(self, dtype: DType) -> (f64, f64) {
        if dtype == DType::F64 {
            self.f64
        } else {
            self.f32
        }
    }
}

/// Runs `f` on CPU leaves and on CUDA copies of them, in `dtype`, and compares the outputs and,
/// through a fixed random projection `L = Σ out ⊙ R`, every input's gradient (an input whose
/// CPU gradient is `None` must get none on the GPU either). `inputs` are CPU tensors of any
/// float dtype; `f` gets the leaves and their device (to move anything else it uses there).
pub fn op_matches_cpu(
    what: &str,
    dev: Device,
    dtype: DType,
    inputs: &[Tensor],
    tol: Tol,
    f: impl Fn(&[Tensor], Device) -> aoanet::Result<Tensor>,
) {
    let (atol, rtol) = tol.of(dtype);
    let cpu: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_dtype(dtype).unwrap().requiring_grad())
        .collect();
    let gpu: Vec<Tensor> = cpu
        .iter()
        .map(|t| t.detach().to_device(dev).unwrap().requiring_grad())
        .collect();
    let want = f(&cpu, Device::Cpu).unwrap_or_else(|e| panic!("{what} on the CPU: {e}"));
    let got = f(&gpu, dev).unwrap_or_else(|e| panic!("{what} on {dev}: {e}"));
    assert_eq!(got.device(), dev, "{what}: result device");
    assert_eq!(got.dtype(), want.dtype(), "{what}: result dtype");
    let label = format!("{what} {dtype}");
    assert_tensors_close(&format!("{label} forward"), &got, &want, atol, rtol);
    if !want.requires_grad() {
        return;
    }
    let mut rng = aoanet::Philox::new(0x9e37);
    let r = Tensor::uniform(want.shape(), -1.0, 1.0, want.dtype(), &mut rng);
    want.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    got.mul(&r.to_device(dev).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap_or_else(|e| panic!("{what} backward on {dev}: {e}"));
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        match (c.grad(), g.grad()) {
            (None, None) => {}
            (Some(cg), Some(gg)) => {
                assert_eq!(gg.device(), dev, "{label}: gradient {i} device");
                // Gradients sum over the projection: one more reduction's worth of error.
                assert_tensors_close(
                    &format!("{label} grad {i}"),
                    &gg,
                    &cg,
                    4.0 * atol,
                    4.0 * rtol,
                );
            }
            (c, g) => panic!(
                "{label}: input {i} gradient on the CPU {} but on the GPU {}",
                if c.is_some() { "exists" } else { "is absent" },
                if g.is_some() { "exists" } else { "is absent" }
            ),
        }
    }
}

/// A random f64 CPU tensor in [lo, hi), fixed by `seed`.
pub fn randt(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::uniform(shape, lo, hi, DType::F64, &mut aoanet::Philox::new(seed))
}

/// How many times the tests of launches that finish a sum in their last block (split-K
/// products, LayerNorm's parameter gradients) repeat them and compare the bits:
/// `AOANET_GPU_TEST_REPEATS` (at least 2), else 3. On a GPU more repeats give a block-order or
/// memory-ordering mistake more chances to show (`scripts/gpu-check` sets 50); on the
/// emulator each repeat costs seconds.
#[allow(dead_code)] // not every test binary that includes this module repeats launches
pub fn repeats() -> usize {
    std::env::var("AOANET_GPU_TEST_REPEATS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(3, |n| n.max(2))
}
