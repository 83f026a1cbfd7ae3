//! GPU tests of `kernels/elementwise.cu` against CPU references (f64), plus device detection
//! and the host↔device round trip. Without a GPU each test prints why it is skipped.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::elementwise::{self as ew, Bcast, Binary, Unary};
use aoanet::cuda::{self, CudaDevice};
use cuda_util::{assert_close, f64s, gpu, key_mask, rand_vec, uniform};

#[test]
fn detection_never_panics_and_explains_itself() {
    let n = cuda::device_count();
    assert_eq!(cuda::available(), n > 0);
    // An ordinal past the last device is a clear error, GPU or not.
    let e = CudaDevice::get(n + 3).unwrap_err().to_string();
    assert!(e.contains(&format!("cuda:{}", n + 3)), "{e}");
    if n == 0 {
        let why = cuda::unavailable_reason().unwrap();
        assert!(!why.is_empty());
        eprintln!("no GPU here: {why}");
    }
}

// Odd sizes: not multiples of the block size, one smaller than a warp.
const SIZES: [usize; 4] = [1, 31, 1000, 70_001];

#[test]
fn axpy_f32_round_trip() {
    let Some(dev) = gpu("axpy_f32_round_trip") else {
        return;
    };
    for n in SIZES {
        let x = rand_vec(1, n, -1.0, 1.0);
        let y0 = rand_vec(2, n, -1.0, 1.0);
        let xd = dev.htod(&x).unwrap();
        let mut yd = dev.htod(&y0).unwrap();
        // The copy alone round-trips exactly.
        assert_eq!(yd.to_host().unwrap(), y0);
        ew::axpy(&dev, yd.view_mut(), xd.view(), 0.5).unwrap();
        let got = yd.to_host().unwrap();
        let want: Vec<f64> = x
            .iter()
            .zip(&y0)
            .map(|(&a, &b)| f64::from(b) + 0.5 * f64::from(a))
            .collect();
        // One fma in f32: half an ulp of the result.
        assert_close("axpy", &got, &want, 1e-7, 1e-7);
    }
    let s = dev.memory_stats();
    assert!(s.peak_in_use > 0 && s.reserved >= s.in_use, "{s:?}");
}

#[test]
fn fill_f32_writes_every_element() {
    let Some(dev) = gpu("fill_f32_writes_every_element") else {
        return;
    };
    for n in SIZES {
        let mut d = dev.htod(&vec![f32::NAN; n]).unwrap();
        ew::fill(&dev, d.view_mut(), 2.5).unwrap();
        assert!(d.to_host().unwrap().iter().all(|&v| v == 2.5));
    }
}

#[test]
fn unary_f32_matches_cpu() {
    let Some(dev) = gpu("unary_f32_matches_cpu") else {
        return;
    };
    let n = 10_007;
    let x = rand_vec(3, n, -3.0, 3.0);
    let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
    type Ref = fn(f64) -> f64;
    let cases: [(Unary, bool, Ref); 11] = [
        (Unary::Affine(1.5, -0.25), false, |v| 1.5 * v - 0.25),
        (Unary::Neg, false, |v| -v),
        (Unary::Exp, false, f64::exp),
        (Unary::Log, true, f64::ln),
        (Unary::Sqrt, true, f64::sqrt),
        (Unary::Relu, false, |v| v.max(0.0)),
        (Unary::Sigmoid, false, |v| 1.0 / (1.0 + (-v).exp())),
        (Unary::Tanh, false, f64::tanh),
        (Unary::Pow(1.7), true, |v| v.powf(1.7)),
        (Unary::Clamp(-0.1, 0.1), false, |v| v.clamp(-0.1, 0.1)),
        (Unary::Recip, true, |v| 1.0 / v),
    ];
    for (op, positive, f) in cases {
        let input = if positive { &pos } else { &x };
        let xd = dev.htod(input).unwrap();
        let mut out = dev.alloc::<f32>(n).unwrap();
        ew::unary(&dev, out.view_mut(), xd.view(), op).unwrap();
        let want: Vec<f64> = input.iter().map(|&v| f(f64::from(v))).collect();
        // CUDA's expf/logf/tanhf/powf are within 2 ulp of the f32 result (CUDA C guide,
        // appendix "Mathematical functions"), and the inputs are exact f32: 4 ulp relative
        // plus a tiny absolute floor for results near zero.
        assert_close(
            &format!("unary {op:?}"),
            &out.to_host().unwrap(),
            &want,
            1e-30,
            4.0 * f64::from(f32::EPSILON),
        );
    }
}

#[test]
fn binary_f32_broadcasts_like_the_cpu() {
    let Some(dev) = gpu("binary_f32_broadcasts_like_the_cpu") else {
        return;
    };
    // out [3, 5, 7]: a is a transposed [7, 5, 3] view (strides 1, 3, 15), b broadcasts a
    // [5, 1] column (strides 0, 1, 0).
    let shape = [3usize, 5, 7];
    let a = rand_vec(4, 105, -2.0, 2.0);
    let b = uniform(5, 5, 0.5, 2.0);
    let bc = Bcast::new(&shape, &[1, 3, 15], &[0, 1, 0]).unwrap();
    let ad = dev.htod(&a).unwrap();
    let bd = dev.htod(&b).unwrap();
    type Ref = fn(f64, f64) -> f64;
    let ops: [(Binary, Ref); 9] = [
        (Binary::Add, |x, y| x + y),
        (Binary::Sub, |x, y| x - y),
        (Binary::Mul, |x, y| x * y),
        (Binary::Div, |x, y| x / y),
        (Binary::Max, f64::max),
        (Binary::Min, f64::min),
        (Binary::ReluBwd, |g, x| if x > 0.0 { g } else { 0.0 }),
        (Binary::SigmoidBwd, |g, y| g * y * (1.0 - y)),
        (Binary::TanhBwd, |g, y| g * (1.0 - y * y)),
    ];
    for (op, f) in ops {
        let mut out = dev.alloc::<f32>(105).unwrap();
        ew::binary(&dev, out.view_mut(), ad.view(), bd.view(), op, bc).unwrap();
        let mut want = Vec::new();
        for i in 0..3 {
            for j in 0..5 {
                for k in 0..7 {
                    want.push(f(f64::from(a[i + 3 * j + 15 * k]), f64::from(b[j])));
                }
            }
        }
        // One or two f32 roundings of values of size <= 16: 2 ulp relative, 1e-6 absolute
        // for the cancellations in sub and tanh_bwd.
        assert_close(
            &format!("binary {op:?}"),
            &out.to_host().unwrap(),
            &want,
            1e-6,
            2.5e-7,
        );
    }
    // An operand too short for its strides is refused before launch.
    let short = dev.htod(&a[..50]).unwrap();
    let mut out = dev.alloc::<f32>(105).unwrap();
    assert!(
        ew::binary(
            &dev,
            out.view_mut(),
            short.view(),
            bd.view(),
            Binary::Add,
            bc
        )
        .is_err()
    );
}

#[test]
fn cast_f32_bf16_rounds_to_nearest_even() {
    let Some(dev) = gpu("cast_f32_bf16_rounds_to_nearest_even") else {
        return;
    };
    let x = rand_vec(6, 4099, -100.0, 100.0);
    let xd = dev.htod(&x).unwrap();
    let mut out = dev.alloc::<half::bf16>(x.len()).unwrap();
    ew::cast_to_bf16(&dev, out.view_mut(), xd.view()).unwrap();
    let got = out.to_host().unwrap();
    // Exact: half's from_f32 also rounds to nearest even.
    for (g, &v) in got.iter().zip(&x) {
        assert_eq!(g.to_bits(), half::bf16::from_f32(v).to_bits(), "{v}");
    }
}

#[test]
fn cast_bf16_f32_is_exact() {
    let Some(dev) = gpu("cast_bf16_f32_is_exact") else {
        return;
    };
    let x: Vec<half::bf16> = rand_vec(7, 777, -5.0, 5.0)
        .iter()
        .map(|&v| half::bf16::from_f32(v))
        .collect();
    let xd = dev.htod(&x).unwrap();
    let mut out = dev.alloc::<f32>(x.len()).unwrap();
    ew::cast_from_bf16(&dev, out.view_mut(), xd.view()).unwrap();
    let want: Vec<f32> = x.iter().map(|v| v.to_f32()).collect();
    assert_eq!(out.to_host().unwrap(), want);
}

#[test]
fn permute0213_f32_swaps_the_middle_axes() {
    let Some(dev) = gpu("permute0213_f32_swaps_the_middle_axes") else {
        return;
    };
    let dims = [2usize, 3, 5, 7];
    let x = rand_vec(8, 210, -1.0, 1.0);
    let xd = dev.htod(&x).unwrap();
    let mut out = dev.alloc::<f32>(210).unwrap();
    ew::permute0213(&dev, out.view_mut(), xd.view(), dims).unwrap();
    let got = out.to_host().unwrap();
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..5 {
                for e in 0..7 {
                    assert_eq!(
                        got[((a * 5 + c) * 3 + b) * 7 + e],
                        x[((a * 3 + b) * 5 + c) * 7 + e]
                    );
                }
            }
        }
    }
}

#[test]
fn mask_keys_f32_replaces_masked_scores() {
    let Some(dev) = gpu("mask_keys_f32_replaces_masked_scores") else {
        return;
    };
    let (batches, rpb, nk) = (3usize, 4usize, 9usize);
    let s = rand_vec(9, batches * rpb * nk, -1.0, 1.0);
    let m = key_mask(batches, nk);
    let mut sd = dev.htod(&s).unwrap();
    let md = dev.htod(&m).unwrap();
    ew::mask_keys(&dev, sd.view_mut(), md.view(), batches, rpb, nk, -1e9).unwrap();
    let got = sd.to_host().unwrap();
    for (i, &g) in got.iter().enumerate() {
        let (row, k) = (i / nk, i % nk);
        let want = if m[(row / rpb) * nk + k] == 0 {
            -1e9
        } else {
            s[i]
        };
        assert_eq!(g, want, "element {i}");
    }
    let _ = f64s(&s);
}
