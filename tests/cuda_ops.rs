//! Every tensor op on a CUDA device against the same op on the CPU, forward and backward
//! (through autograd, with a random projection of the output), in f32 and f64, on odd shapes,
//! strided views and masks. Each test is named after the kernel it exercises first (the f64
//! instantiations have no kernel-level test of their own; `tests/kernels_coverage.rs` checks
//! that every kernel is named by a test). Without a GPU every test prints why it is skipped.
//!
//! Tolerances (`cuda_util::Tol`): `TIGHT` for elementwise ops, `SUMS` for products and long
//! reductions; f64 tolerances are 1e-10 or tighter, so a wrong formula cannot pass there even
//! when f32 rounding would hide it.
#![cfg(feature = "cuda")]
// `&[x.clone()]` reads better than `std::slice::from_ref(&x)` (as in the library's tests).
#![allow(clippy::cloned_ref_to_slice_refs)]

mod cuda_util;

use aoanet::Philox;
use aoanet::rng::PhiloxState;
use aoanet::tensor::{DType, Device, Ids, Tensor};
use cuda_util::{Tol, assert_tensors_close, cuda, op_matches_cpu, randt};

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

/// A 0/1 mask `[b, n]` (as f64) where row r keeps its first `n − (3r mod n)` entries.
fn key_mask(b: usize, n: usize) -> Tensor {
    let v: Vec<f64> = (0..b)
        .flat_map(|r| (0..n).map(move |k| if k < n - (r * 3) % n { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(v, &[b, n]).unwrap()
}

// ------------------------------------------------------------------------------- elementwise

#[test]
fn binary_f64_add_sub_mul_div_broadcast_and_strided() {
    let Some(dev) = cuda("binary_f64_add_sub_mul_div_broadcast_and_strided") else {
        return;
    };
    let shapes = [
        (vec![7, 33], vec![7, 33]),
        (vec![3, 1, 7], vec![5, 1]),
        (vec![1], vec![4, 7]),
        (vec![2, 3, 4], vec![4]),
    ];
    for dtype in DTYPES {
        for (sa, sb) in &shapes {
            let (a, b) = (randt(sa, -1.0, 1.0, 1), randt(sb, 0.5, 2.0, 2));
            type Op = fn(&Tensor, &Tensor) -> aoanet::Result<Tensor>;
            let ops: [(&str, Op); 4] = [
                ("add", |x, y| x.add(y)),
                ("sub", |x, y| x.sub(y)),
                ("mul", |x, y| x.mul(y)),
                ("div", |x, y| x.div(y)),
            ];
            for (name, op) in ops {
                op_matches_cpu(
                    &format!("{name} {sa:?} {sb:?}"),
                    dev,
                    dtype,
                    &[a.clone(), b.clone()],
                    Tol::TIGHT,
                    |t, _| op(&t[0], &t[1]),
                );
            }
        }
        // A transposed (strided) left operand and a narrowed right one.
        op_matches_cpu(
            "mul of views",
            dev,
            dtype,
            &[randt(&[5, 9], -1.0, 1.0, 3), randt(&[9, 7], -1.0, 1.0, 4)],
            Tol::TIGHT,
            |t, _| t[0].transpose(0, 1)?.mul(&t[1].narrow(1, 2, 5)?),
        );
    }
}

#[test]
fn unary_f64_every_op_and_its_backward() {
    let Some(dev) = cuda("unary_f64_every_op_and_its_backward") else {
        return;
    };
    let x = randt(&[3, 333], -3.0, 3.0, 11);
    let pos = randt(&[3, 333], 0.2, 3.0, 12);
    type Op = fn(&Tensor) -> aoanet::Result<Tensor>;
    let ops: [(&str, bool, Op); 12] = [
        ("neg", false, |t| t.neg()),
        ("add_scalar", false, |t| t.add_scalar(0.7)),
        ("mul_scalar", false, |t| t.mul_scalar(-1.3)),
        ("exp", false, |t| t.exp()),
        ("log", true, |t| t.log()),
        ("sqrt", true, |t| t.sqrt()),
        ("pow_scalar", true, |t| t.pow_scalar(2.5)),
        ("relu", false, |t| t.relu()),
        ("sigmoid", false, |t| t.sigmoid()),
        ("tanh", false, |t| t.tanh()),
        ("clamp", false, |t| t.clamp(-0.5, 0.4)),
        // A strided input goes through a dense copy first.
        ("exp of a transpose", false, |t| t.transpose(0, 1)?.exp()),
    ];
    for dtype in DTYPES {
        for (name, positive, op) in ops {
            let input = if positive { &pos } else { &x };
            op_matches_cpu(name, dev, dtype, &[input.clone()], Tol::TIGHT, |t, _| {
                op(&t[0])
            });
        }
    }
}

#[test]
fn fill_f64_full_zeros_ones_on_the_device() {
    let Some(dev) = cuda("fill_f64_full_zeros_ones_on_the_device") else {
        return;
    };
    for dtype in [DType::F32, DType::F64, DType::BF16] {
        let t = Tensor::full_on(&[3, 1001], 2.5, dtype, dev).unwrap();
        assert_eq!(t.device(), dev);
        assert_eq!(t.dtype(), dtype);
        assert!(t.to_vec_f64().iter().all(|&v| v == 2.5), "{dtype}");
        let z = Tensor::zeros_on(&[17], dtype, dev).unwrap();
        assert!(z.to_vec_f64().iter().all(|&v| v == 0.0));
        assert_eq!(z.zeros_like().device(), dev);
    }
    // f16 has no device storage (a host f16 tensor is fine: the dry run on the CPU).
    assert_eq!(
        Tensor::zeros_on(&[2], DType::F16, dev).is_err(),
        dev != Device::Cpu
    );
}

#[test]
fn axpy_f64_accumulates_gradients_in_place() {
    let Some(dev) = cuda("axpy_f64_accumulates_gradients_in_place") else {
        return;
    };
    for dtype in DTYPES {
        // x used three times: its gradient is summed in place on the device.
        op_matches_cpu(
            "x used thrice",
            dev,
            dtype,
            &[randt(&[4, 77], -1.0, 1.0, 5)],
            Tol::TIGHT,
            |t, _| t[0].mul(&t[0])?.add(&t[0].exp()?)?.add(&t[0]),
        );
        // Two backward passes add into the leaf's stored gradient.
        let x = randt(&[50], -1.0, 1.0, 6).to_dtype(dtype).unwrap();
        let (xc, xg) = (
            x.requiring_grad(),
            x.to_device(dev).unwrap().requiring_grad(),
        );
        for _ in 0..2 {
            xc.tanh().unwrap().sum_all().unwrap().backward().unwrap();
            xg.tanh().unwrap().sum_all().unwrap().backward().unwrap();
        }
        let tol = if dtype == DType::F64 { 1e-14 } else { 1e-6 };
        assert_tensors_close(
            "accumulated over two backward passes",
            &xg.grad().unwrap(),
            &xc.grad().unwrap(),
            tol,
            tol,
        );
    }
}

#[test]
fn copy_strided_f64_views_concat_and_narrow() {
    let Some(dev) = cuda("copy_strided_f64_views_concat_and_narrow") else {
        return;
    };
    for dtype in DTYPES {
        let x = randt(&[3, 5, 7], -1.0, 1.0, 31);
        op_matches_cpu(
            "permute contiguous",
            dev,
            dtype,
            &[x.clone()],
            Tol::TIGHT,
            |t, _| t[0].permute(&[2, 0, 1])?.contiguous(),
        );
        op_matches_cpu(
            "reshape of a view",
            dev,
            dtype,
            &[x.clone()],
            Tol::TIGHT,
            |t, _| t[0].transpose(1, 2)?.reshape(&[21, 5]),
        );
        op_matches_cpu("narrow", dev, dtype, &[x.clone()], Tol::TIGHT, |t, _| {
            t[0].narrow(1, 1, 3)
        });
        op_matches_cpu("chunk", dev, dtype, &[x.clone()], Tol::TIGHT, |t, _| {
            Ok(t[0].chunk(5, 1)?[3].clone())
        });
        op_matches_cpu(
            "broadcast_to",
            dev,
            dtype,
            &[randt(&[3, 1, 7], -1.0, 1.0, 32)],
            Tol::TIGHT,
            |t, _| t[0].broadcast_to(&[2, 3, 4, 7]),
        );
        op_matches_cpu(
            "concat of views",
            dev,
            dtype,
            &[x.clone(), randt(&[3, 7, 2], -1.0, 1.0, 33)],
            Tol::TIGHT,
            |t, _| Tensor::concat(&[&t[0], &t[1].transpose(1, 2)?, &t[0].narrow(1, 4, 1)?], 1),
        );
        // Reading back views without a copy on the device side.
        let xd = x.to_dtype(dtype).unwrap().to_device(dev).unwrap();
        let v = xd.permute(&[1, 2, 0]).unwrap().narrow(0, 1, 2).unwrap();
        let c = x
            .to_dtype(dtype)
            .unwrap()
            .permute(&[1, 2, 0])
            .unwrap()
            .narrow(0, 1, 2)
            .unwrap();
        assert_eq!(v.to_vec_f64(), c.to_vec_f64());
    }
}

#[test]
fn cast_f32_f64_and_back_with_gradients() {
    let Some(dev) = cuda("cast_f32_f64_and_back_with_gradients") else {
        return;
    };
    let x = randt(&[4, 129], -100.0, 100.0, 41);
    op_matches_cpu(
        "f32 to f64",
        dev,
        DType::F32,
        &[x.clone()],
        Tol::TIGHT,
        |t, _| t[0].to_dtype(DType::F64)?.mul_scalar(1.5),
    );
    op_matches_cpu(
        "f64 to f32",
        dev,
        DType::F64,
        &[x.clone()],
        Tol::TIGHT,
        |t, _| t[0].to_dtype(DType::F32)?.mul_scalar(1.5),
    );
    // bf16 storage on the device rounds exactly as the host does.
    let xd = x.to_device(dev).unwrap();
    let want = x.to_dtype(DType::BF16).unwrap().to_vec_f64();
    let got = xd.to_dtype(DType::BF16).unwrap();
    assert_eq!(got.device(), dev);
    assert_eq!(got.to_vec_f64(), want);
    assert_eq!(got.to_dtype(DType::F32).unwrap().to_vec_f64(), want);
}

/// Named for the f64 cast; the f32→f64 direction is the test above.
#[test]
fn cast_f64_f32_rounds_like_rust() {
    let Some(dev) = cuda("cast_f64_f32_rounds_like_rust") else {
        return;
    };
    let x = randt(&[10_001], -1e6, 1e6, 42)
        .div(&randt(&[10_001], 0.5, 3.0, 43))
        .unwrap();
    let got = x.to_device(dev).unwrap().to_dtype(DType::F32).unwrap();
    assert_eq!(
        got.to_vec_f32(),
        x.to_vec_f32(),
        "round to nearest even, as `as f32`"
    );
}

// ------------------------------------------------------------------------------- reductions

#[test]
fn reduce_rows_f64_sum_and_mean_over_the_last_axis() {
    let Some(dev) = cuda("reduce_rows_f64_sum_and_mean_over_the_last_axis") else {
        return;
    };
    for dtype in DTYPES {
        for shape in [vec![7], vec![3, 1000], vec![2, 5, 7]] {
            let x = randt(&shape, -1.0, 1.0, 21);
            op_matches_cpu("sum last", dev, dtype, &[x.clone()], Tol::SUMS, |t, _| {
                t[0].sum_axis(-1, false)
            });
            op_matches_cpu("mean last", dev, dtype, &[x.clone()], Tol::SUMS, |t, _| {
                t[0].mean_axis(-1, true)
            });
        }
    }
}

#[test]
fn reduce_axis_f64_sums_over_inner_axes_and_sum_to() {
    let Some(dev) = cuda("reduce_axis_f64_sums_over_inner_axes_and_sum_to") else {
        return;
    };
    for dtype in DTYPES {
        let x = randt(&[2, 5, 7], -1.0, 1.0, 22);
        for axis in [0isize, 1] {
            op_matches_cpu("sum axis", dev, dtype, &[x.clone()], Tol::SUMS, |t, _| {
                t[0].sum_axis(axis, axis == 0)
            });
        }
        op_matches_cpu(
            "sum_to",
            dev,
            dtype,
            &[randt(&[3, 5, 7], -1.0, 1.0, 23)],
            Tol::SUMS,
            |t, _| t[0].sum_to(&[5, 1]),
        );
        // Broadcasting's backward is sum_to on the device.
        op_matches_cpu(
            "broadcast add backward",
            dev,
            dtype,
            &[
                randt(&[4, 1, 6], -1.0, 1.0, 24),
                randt(&[3, 1], -1.0, 1.0, 25),
            ],
            Tol::SUMS,
            |t, _| t[0].add(&t[1]),
        );
    }
}

#[test]
fn max_axis_f32_and_scatter_axis_f32_first_maximum_gets_the_gradient() {
    let Some(dev) = cuda("max_axis_f32_and_scatter_axis_f32_first_maximum_gets_the_gradient")
    else {
        return;
    };
    // Ties: values rounded to a coarse grid, so the first maximum matters.
    let x = randt(&[4, 9, 6], -2.0, 2.0, 26).mul_scalar(2.0).unwrap();
    let x = Tensor::from_vec(
        x.to_vec_f64().iter().map(|v| v.round()).collect::<Vec<_>>(),
        &[4, 9, 6],
    )
    .unwrap();
    for axis in [0isize, 1, 2] {
        op_matches_cpu(
            "max_axis",
            dev,
            DType::F32,
            &[x.clone()],
            Tol::TIGHT,
            |t, _| t[0].max_axis(axis, axis == 1),
        );
    }
    op_matches_cpu("max_all", dev, DType::F32, &[x], Tol::TIGHT, |t, _| {
        t[0].max_all()
    });
}

#[test]
fn max_axis_f64_and_scatter_axis_f64_match_cpu() {
    let Some(dev) = cuda("max_axis_f64_and_scatter_axis_f64_match_cpu") else {
        return;
    };
    let x = randt(&[3, 33], -1.0, 1.0, 27);
    for axis in [0isize, 1] {
        op_matches_cpu(
            "max_axis",
            dev,
            DType::F64,
            &[x.clone()],
            Tol::TIGHT,
            |t, _| t[0].max_axis(axis, false),
        );
    }
}

/// Named for the f64 scatter (the max tests above exercise it); NaN wins, as on the CPU.
#[test]
fn scatter_axis_f64_nan_wins_like_the_cpu() {
    let Some(dev) = cuda("scatter_axis_f64_nan_wins_like_the_cpu") else {
        return;
    };
    let x = Tensor::from_vec(vec![1.0f64, f64::NAN, 3.0, 2.0, 5.0, 5.0], &[2, 3]).unwrap();
    let c = x.max_axis(1, false).unwrap().to_vec_f64();
    let g = x
        .to_device(dev)
        .unwrap()
        .max_axis(1, false)
        .unwrap()
        .to_vec_f64();
    assert!(c[0].is_nan() && g[0].is_nan());
    assert_eq!(c[1], g[1]);
}

#[test]
fn scatter_axis_f32_places_gradients_at_the_argmax() {
    let Some(dev) = cuda("scatter_axis_f32_places_gradients_at_the_argmax") else {
        return;
    };
    let x = Tensor::from_vec(vec![1.0f32, 7.0, 7.0, -1.0, 0.0, 2.0], &[2, 3]).unwrap();
    let xd = x.to_device(dev).unwrap().requiring_grad();
    xd.max_axis(1, false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        xd.grad().unwrap().to_vec_f32(),
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
}

#[test]
fn sum_partial_f32_sums_everything_in_two_passes() {
    let Some(dev) = cuda("sum_partial_f32_sums_everything_in_two_passes") else {
        return;
    };
    for n in [1usize, 8191, 8193, 300_007] {
        op_matches_cpu(
            &format!("sum_all {n}"),
            dev,
            DType::F32,
            &[randt(&[n], -1.0, 1.0, 28)],
            Tol::SUMS,
            |t, _| t[0].sum_all(),
        );
    }
    op_matches_cpu(
        "mean_all",
        dev,
        DType::F32,
        &[randt(&[7, 11], -1.0, 1.0, 29)],
        Tol::SUMS,
        |t, _| t[0].mean_all(),
    );
}

#[test]
fn sum_partial_f64_sums_everything_in_two_passes() {
    let Some(dev) = cuda("sum_partial_f64_sums_everything_in_two_passes") else {
        return;
    };
    for n in [1usize, 8193, 300_007] {
        op_matches_cpu(
            &format!("sum_all {n}"),
            dev,
            DType::F64,
            &[randt(&[n], -1.0, 1.0, 30)],
            Tol::SUMS,
            |t, _| t[0].sum_all(),
        );
    }
}

#[test]
fn argmax_rows_f64_first_maximum_and_nan_like_the_cpu() {
    let Some(dev) = cuda("argmax_rows_f64_first_maximum_and_nan_like_the_cpu") else {
        return;
    };
    for dtype in DTYPES {
        let x = randt(&[37, 9488], -5.0, 5.0, 31).to_dtype(dtype).unwrap();
        let want = x.argmax_last().unwrap();
        assert_eq!(
            x.to_device(dev).unwrap().argmax_last().unwrap(),
            want,
            "{dtype}"
        );
        let ties = Tensor::from_vec(
            vec![
                1.0,
                3.0,
                3.0,
                0.0,
                f64::NAN,
                9.0,
                f64::NAN,
                1.0,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
            &[3, 4],
        )
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
        assert_eq!(ties.argmax_last().unwrap(), vec![1, 0, 0]);
        assert_eq!(
            ties.to_device(dev).unwrap().argmax_last().unwrap(),
            vec![1, 0, 0]
        );
    }
}

#[test]
fn count_nonfinite_f32_and_count_nonfinite_f64_all_finite() {
    let Some(dev) = cuda("count_nonfinite_f32_and_count_nonfinite_f64_all_finite") else {
        return;
    };
    for dtype in DTYPES {
        let x = randt(&[100_000], -1.0, 1.0, 32).to_dtype(dtype).unwrap();
        assert!(x.to_device(dev).unwrap().all_finite().unwrap());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut v = x.to_vec_f64();
            v[77_777] = bad;
            let t = Tensor::from_vec(v, &[100_000])
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            assert!(!t.to_device(dev).unwrap().all_finite().unwrap(), "{bad}");
        }
    }
}

/// Named for the f64 instantiation of the count (the test above runs both).
#[test]
fn count_nonfinite_f64_on_a_strided_view() {
    let Some(dev) = cuda("count_nonfinite_f64_on_a_strided_view") else {
        return;
    };
    let x = Tensor::from_vec(vec![1.0f64, f64::NAN, 2.0, 3.0], &[2, 2])
        .unwrap()
        .to_device(dev)
        .unwrap();
    assert!(!x.transpose(0, 1).unwrap().all_finite().unwrap());
    assert!(x.narrow(1, 0, 1).unwrap().all_finite().unwrap());
}

/// Many tensors checked with one counter on the device: a bad element in any of them (the
/// first, a middle one, the last, a strided view) is found, mixed dtypes are fine.
#[test]
fn count_nonfinite_f32_all_finite_many_over_gradients() {
    let Some(dev) = cuda("count_nonfinite_f32_all_finite_many_over_gradients") else {
        return;
    };
    let make = |seed: u64, n: usize, dtype| {
        randt(&[n], -1.0, 1.0, seed)
            .to_dtype(dtype)
            .unwrap()
            .to_device(dev)
            .unwrap()
    };
    let good: Vec<Tensor> = (0..5)
        .map(|i| make(40 + i, 1000 + 777 * i as usize, DTYPES[i as usize % 2]))
        .collect();
    let refs: Vec<&Tensor> = good.iter().collect();
    assert!(Tensor::all_finite_many(&refs).unwrap());
    assert!(Tensor::all_finite_many(&[]).unwrap());
    for at in [0, 2, 4] {
        let mut v = good[at].to_vec_f64();
        let last = v.len() - 1;
        v[last] = f64::NAN;
        let bad = Tensor::from_vec(v, &[good[at].numel()])
            .unwrap()
            .to_dtype(good[at].dtype())
            .unwrap()
            .to_device(dev)
            .unwrap();
        let mut refs: Vec<&Tensor> = good.iter().collect();
        refs[at] = &bad;
        assert!(
            !Tensor::all_finite_many(&refs).unwrap(),
            "NaN in tensor {at}"
        );
    }
    let m = Tensor::from_vec(vec![1.0f32, f32::INFINITY, 2.0, 3.0], &[2, 2])
        .unwrap()
        .to_device(dev)
        .unwrap();
    let t = m.transpose(0, 1).unwrap();
    assert!(!Tensor::all_finite_many(&[&good[0], &t]).unwrap());
}

/// A training step's loss and its gradients' check read together: the scalar's value (f32
/// and f64, also a one-element view at an offset into a larger tensor) and the finiteness of
/// every gradient, equal to `item` and `all_finite_many`, in one wait on a GPU.
#[test]
fn count_nonfinite_f32_item_and_all_finite_in_one_read() {
    let Some(dev) = cuda("count_nonfinite_f32_item_and_all_finite_in_one_read") else {
        return;
    };
    let grads: Vec<Tensor> = (0..4)
        .map(|i| {
            randt(&[300 + 100 * i], -1.0, 1.0, 90 + i as u64)
                .to_dtype(DTYPES[i % 2])
                .unwrap()
                .to_device(dev)
                .unwrap()
        })
        .collect();
    let mut bad = grads[3].to_vec_f64();
    bad[17] = f64::INFINITY;
    let bad = Tensor::from_vec(bad, &[grads[3].numel()])
        .unwrap()
        .to_dtype(grads[3].dtype())
        .unwrap()
        .to_device(dev)
        .unwrap();
    for dtype in DTYPES {
        let losses = randt(&[5], 0.5, 3.0, 99)
            .to_dtype(dtype)
            .unwrap()
            .to_device(dev)
            .unwrap();
        let loss = losses.narrow(0, 3, 1).unwrap().reshape(&[]).unwrap();
        for (with_bad, refs) in [
            (false, grads.iter().collect::<Vec<_>>()),
            (true, grads[..3].iter().chain([&bad]).collect()),
            (false, Vec::new()),
        ] {
            let want = (
                loss.item().unwrap(),
                Tensor::all_finite_many(&refs).unwrap(),
            );
            assert_eq!(want.1, !with_bad);
            let before = aoanet::cuda::waits_on_this_thread();
            let got = loss.item_and_all_finite(&refs).unwrap();
            if matches!(dev, Device::Cuda(_)) {
                assert_eq!(
                    aoanet::cuda::waits_on_this_thread() - before,
                    1,
                    "{dtype} one wait"
                );
            }
            assert_eq!(got, want, "{dtype}, a bad gradient: {with_bad}");
        }
    }
    assert!(grads[0].item_and_all_finite(&[]).is_err(), "not a scalar");
}

// ------------------------------------------------------------------------------- products

#[test]
fn gemm_f64_matmul_every_transpose_batch_and_broadcast() {
    let Some(dev) = cuda("gemm_f64_matmul_every_transpose_batch_and_broadcast") else {
        return;
    };
    for dtype in DTYPES {
        for (m, k, n) in [(1, 1, 1), (7, 33, 5), (65, 70, 129)] {
            let (a, b) = (randt(&[m, k], -1.0, 1.0, 1), randt(&[k, n], -1.0, 1.0, 2));
            op_matches_cpu(
                "matmul",
                dev,
                dtype,
                &[a.clone(), b.clone()],
                Tol::SUMS,
                |t, _| t[0].matmul(&t[1]),
            );
            op_matches_cpu(
                "matmul aᵀ",
                dev,
                dtype,
                &[a.transpose(0, 1).unwrap().contiguous().unwrap(), b.clone()],
                Tol::SUMS,
                |t, _| t[0].transpose(0, 1)?.matmul(&t[1]),
            );
            op_matches_cpu(
                "matmul bᵀ",
                dev,
                dtype,
                &[a.clone(), b.transpose(0, 1).unwrap().contiguous().unwrap()],
                Tol::SUMS,
                |t, _| t[0].matmul(&t[1].transpose(0, 1)?),
            );
        }
        op_matches_cpu(
            "batched, rank-2 rhs",
            dev,
            dtype,
            &[
                randt(&[2, 3, 7], -1.0, 1.0, 3),
                randt(&[5, 7], -1.0, 1.0, 4),
            ],
            Tol::SUMS,
            |t, _| t[0].matmul(&t[1].transpose(0, 1)?),
        );
        op_matches_cpu(
            "broadcast batch",
            dev,
            dtype,
            &[
                randt(&[2, 1, 4, 3], -1.0, 1.0, 5),
                randt(&[3, 3, 2], -1.0, 1.0, 6),
            ],
            Tol::SUMS,
            |t, _| t[0].matmul(&t[1]),
        );
        op_matches_cpu(
            "attention-like [B,h,1,d]·[B,h,d,N]",
            dev,
            dtype,
            &[
                randt(&[3, 8, 1, 32], -1.0, 1.0, 7),
                randt(&[3, 36, 8, 32], -1.0, 1.0, 8),
            ],
            Tol::SUMS,
            |t, _| t[0].matmul(&t[1].permute(&[0, 2, 3, 1])?),
        );
    }
}

#[test]
fn gemm_f32_linear_with_bias_epilogue_and_deferred_weight_gradient() {
    let Some(dev) = cuda("gemm_f32_linear_with_bias_epilogue_and_deferred_weight_gradient") else {
        return;
    };
    for dtype in DTYPES {
        op_matches_cpu(
            "linear",
            dev,
            dtype,
            &[
                randt(&[3, 33], -1.0, 1.0, 5),
                randt(&[7, 33], -1.0, 1.0, 6),
                randt(&[7], -1.0, 1.0, 7),
            ],
            Tol::SUMS,
            |t, _| t[0].linear(&t[1], Some(&t[2])),
        );
        op_matches_cpu(
            "linear no bias, batched",
            dev,
            dtype,
            &[
                randt(&[2, 3, 5], -1.0, 1.0, 8),
                randt(&[1, 5], -1.0, 1.0, 9),
            ],
            Tol::SUMS,
            |t, _| t[0].linear(&t[1], None),
        );
        // The weight used twice, as in a recurrent step: deferred pieces summed in one GEMM.
        op_matches_cpu(
            "linear twice",
            dev,
            dtype,
            &[
                randt(&[4, 6], -1.0, 1.0, 10),
                randt(&[6, 6], -1.0, 1.0, 11),
                randt(&[6], -1.0, 1.0, 12),
            ],
            Tol::SUMS,
            |t, _| {
                let h = t[0].linear(&t[1], Some(&t[2]))?.tanh()?;
                h.linear(&t[1], Some(&t[2]))
            },
        );
        // A strided input (a transposed view).
        op_matches_cpu(
            "linear of a view",
            dev,
            dtype,
            &[
                randt(&[33, 3], -1.0, 1.0, 13),
                randt(&[7, 33], -1.0, 1.0, 14),
                randt(&[7], -1.0, 1.0, 15),
            ],
            Tol::SUMS,
            |t, _| t[0].transpose(0, 1)?.linear(&t[1], Some(&t[2])),
        );
    }
}

// ------------------------------------------------------------------------------- row ops

#[test]
fn softmax_fwd_f64_and_softmax_bwd_f64_rows_and_masks() {
    let Some(dev) = cuda("softmax_fwd_f64_and_softmax_bwd_f64_rows_and_masks") else {
        return;
    };
    for dtype in DTYPES {
        for shape in [vec![2], vec![7], vec![3, 33], vec![2, 3, 9488]] {
            let x = randt(&shape, -3.0, 3.0, 41);
            op_matches_cpu("softmax", dev, dtype, &[x.clone()], Tol::SUMS, |t, _| {
                t[0].softmax()
            });
            op_matches_cpu(
                "log_softmax",
                dev,
                dtype,
                &[x.clone()],
                Tol::SUMS,
                |t, _| t[0].log_softmax(),
            );
        }
        // Masked attention scores: −1e9 on padded keys, as the model does.
        let mask = key_mask(4, 9).reshape(&[4, 1, 9]).unwrap();
        op_matches_cpu(
            "masked softmax",
            dev,
            dtype,
            &[randt(&[4, 5, 9], -2.0, 2.0, 42)],
            Tol::SUMS,
            move |t, d| {
                let m = mask.neg()?.add_scalar(1.0)?.to_device(d)?;
                t[0].masked_fill(&m, -1e9)?.softmax()
            },
        );
    }
}

#[test]
fn layernorm_fwd_f64_and_backward_with_constant_rows() {
    let Some(dev) = cuda("layernorm_fwd_f64_and_backward_with_constant_rows") else {
        return;
    };
    for dtype in DTYPES {
        for shape in [vec![3], vec![7, 33], vec![2, 3, 1024]] {
            let n = *shape.last().unwrap();
            op_matches_cpu(
                "layer_norm",
                dev,
                dtype,
                &[
                    randt(&shape, -1.0, 1.0, 61),
                    randt(&[n], -1.0, 1.0, 62),
                    randt(&[n], -1.0, 1.0, 63),
                ],
                Tol::SUMS,
                |t, _| t[0].layer_norm(&t[1], &t[2], 1e-6),
            );
        }
        // Exact-zero (padded) rows: the zero-std rule, finite gradients.
        let mut x = randt(&[4, 16], -1.0, 1.0, 64).to_vec_f64();
        x[16..32].iter_mut().for_each(|v| *v = 0.0);
        let x = Tensor::from_vec(x, &[4, 16]).unwrap();
        op_matches_cpu(
            "layer_norm zero rows",
            dev,
            dtype,
            &[x, randt(&[16], -1.0, 1.0, 65), randt(&[16], -1.0, 1.0, 66)],
            Tol::SUMS,
            |t, _| t[0].layer_norm(&t[1], &t[2], 1e-6),
        );
    }
}

/// Named for the f64 input-gradient kernel (run by the test above).
#[test]
fn layernorm_bwd_f64_many_rows() {
    let Some(dev) = cuda("layernorm_bwd_f64_many_rows") else {
        return;
    };
    op_matches_cpu(
        "layer_norm 500 rows",
        dev,
        DType::F64,
        &[
            randt(&[500, 64], -2.0, 2.0, 67),
            randt(&[64], 0.5, 1.5, 68),
            randt(&[64], -1.0, 1.0, 69),
        ],
        Tol::SUMS,
        |t, _| t[0].layer_norm(&t[1], &t[2], 1e-6),
    );
}

/// Named for the f64 parameter-gradient kernel and the chunked column sum it feeds (more than
/// one chunk of 64 rows, more than one sum_cols chunk of 256).
#[test]
fn layernorm_bwd_params_f64_and_sum_cols_f64_over_many_chunks() {
    let Some(dev) = cuda("layernorm_bwd_params_f64_and_sum_cols_f64_over_many_chunks") else {
        return;
    };
    op_matches_cpu(
        "layer_norm 20000 rows",
        dev,
        DType::F64,
        &[
            randt(&[20_000, 24], -2.0, 2.0, 70),
            randt(&[24], 0.5, 1.5, 71),
            randt(&[24], -1.0, 1.0, 72),
        ],
        Tol::SUMS,
        |t, _| t[0].layer_norm(&t[1], &t[2], 1e-6),
    );
}

#[test]
fn sum_cols_f64_bias_gradient_of_a_long_batch() {
    let Some(dev) = cuda("sum_cols_f64_bias_gradient_of_a_long_batch") else {
        return;
    };
    op_matches_cpu(
        "layer_norm 70000 rows",
        dev,
        DType::F64,
        &[
            randt(&[70_000, 3], -2.0, 2.0, 73),
            randt(&[3], 0.5, 1.5, 74),
            randt(&[3], -1.0, 1.0, 75),
        ],
        Tol::SUMS,
        |t, _| t[0].layer_norm(&t[1], &t[2], 1e-6),
    );
}

#[test]
fn glu_fwd_f64_and_glu_bwd_f64_match_cpu() {
    let Some(dev) = cuda("glu_fwd_f64_and_glu_bwd_f64_match_cpu") else {
        return;
    };
    for dtype in DTYPES {
        for shape in [vec![2], vec![7, 66], vec![2, 3, 2048]] {
            op_matches_cpu(
                "glu",
                dev,
                dtype,
                &[randt(&shape, -4.0, 4.0, 51)],
                Tol::TIGHT,
                |t, _| t[0].glu(),
            );
        }
    }
}

/// Named for the f64 backward kernel (the test above runs it).
#[test]
fn glu_bwd_f64_of_a_strided_input() {
    let Some(dev) = cuda("glu_bwd_f64_of_a_strided_input") else {
        return;
    };
    op_matches_cpu(
        "glu of a transpose",
        dev,
        DType::F64,
        &[randt(&[10, 3], -4.0, 4.0, 52)],
        Tol::TIGHT,
        |t, _| t[0].transpose(0, 1)?.glu(),
    );
}

// ------------------------------------------------------------------------------- indexing

#[test]
fn embedding_fwd_f64_and_scatter_rows_f64_with_repeated_ids() {
    let Some(dev) = cuda("embedding_fwd_f64_and_scatter_rows_f64_with_repeated_ids") else {
        return;
    };
    for dtype in DTYPES {
        let ids = [4usize, 0, 4, 6, 1, 4];
        op_matches_cpu(
            "embedding",
            dev,
            dtype,
            &[randt(&[7, 33], -1.0, 1.0, 71)],
            Tol::TIGHT,
            move |t, _| t[0].embedding(&ids),
        );
        // The same table at several "steps": deferred row gradients scattered once.
        op_matches_cpu(
            "embedding thrice",
            dev,
            dtype,
            &[randt(&[9, 5], -1.0, 1.0, 72)],
            Tol::TIGHT,
            |t, _| {
                let a = t[0].embedding(&[1, 2, 1])?;
                let b = t[0].embedding(&[8, 1, 0])?.mul_scalar(2.0)?;
                a.add(&b)?.add(&t[0].embedding(&[1, 1, 1])?)
            },
        );
        let e = Tensor::zeros_on(&[3, 2], dtype, dev)
            .unwrap()
            .embedding(&[3]);
        assert!(e.unwrap_err().to_string().contains("index 3"));
    }
}

/// The embedding gradient (scatter_rows, f64) added into a gradient the tensor already holds.
#[test]
fn scatter_rows_f64_accumulates_into_an_existing_gradient() {
    let Some(dev) = cuda("scatter_rows_f64_accumulates_into_an_existing_gradient") else {
        return;
    };
    // A dense and a row gradient for one leaf: the rows are added into the dense sum.
    op_matches_cpu(
        "dense + rows",
        dev,
        DType::F64,
        &[randt(&[6, 4], -1.0, 1.0, 73)],
        Tol::TIGHT,
        |t, _| {
            t[0].embedding(&[5, 0, 5])?
                .sum_axis(0, true)?
                .add(&t[0].mul_scalar(0.5)?.sum_axis(0, true)?)
        },
    );
}

#[test]
fn index_select_f32_and_index_add_f32_inner_axes() {
    let Some(dev) = cuda("index_select_f32_and_index_add_f32_inner_axes") else {
        return;
    };
    op_matches_cpu(
        "index_select axis 1",
        dev,
        DType::F32,
        &[randt(&[2, 3, 5], -1.0, 1.0, 74)],
        Tol::TIGHT,
        |t, _| t[0].index_select(1, &[2, 2, 0]),
    );
    op_matches_cpu(
        "index_select axis 2",
        dev,
        DType::F32,
        &[randt(&[2, 3, 5], -1.0, 1.0, 75)],
        Tol::TIGHT,
        |t, _| t[0].index_select(2, &[4, 0, 4, 1]),
    );
}

#[test]
fn index_select_f64_and_index_add_f64_beam_reordering() {
    let Some(dev) = cuda("index_select_f64_and_index_add_f64_beam_reordering") else {
        return;
    };
    op_matches_cpu(
        "index_select axis 1",
        dev,
        DType::F64,
        &[randt(&[4, 6, 3], -1.0, 1.0, 76)],
        Tol::TIGHT,
        |t, _| t[0].index_select(1, &[5, 0, 5, 2]),
    );
    // Rows of a state (beam search reorders its rows this way): axis 0 of a non-table.
    op_matches_cpu(
        "select rows",
        dev,
        DType::F64,
        &[randt(&[6, 3, 2], -1.0, 1.0, 77)],
        Tol::TIGHT,
        |t, _| t[0].index_select(0, &[1, 1, 5, 0]),
    );
}

/// Named for the adjoint (the tests above run it).
#[test]
fn index_add_f32_repeated_ids_add_up() {
    let Some(dev) = cuda("index_add_f32_repeated_ids_add_up") else {
        return;
    };
    let x = Tensor::ones_on(&[2, 3], DType::F32, dev)
        .unwrap()
        .requiring_grad();
    x.index_select(1, &[2, 2, 2, 0])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f32(),
        vec![1.0, 0.0, 3.0, 1.0, 0.0, 3.0]
    );
}

/// Named for the f64 adjoint (run above); checks nothing but that it ran identically.
#[test]
fn index_add_f64_matches_cpu() {
    let Some(dev) = cuda("index_add_f64_matches_cpu") else {
        return;
    };
    op_matches_cpu(
        "index_select axis 0 of 3-d",
        dev,
        DType::F64,
        &[randt(&[5, 2, 2], -1.0, 1.0, 78)],
        Tol::TIGHT,
        |t, _| t[0].index_select(0, &[4, 4, 0])?.index_select(2, &[1, 1]),
    );
}

#[test]
fn gather_last_f32_and_scatter_last_f32_target_logprobs() {
    let Some(dev) = cuda("gather_last_f32_and_scatter_last_f32_target_logprobs") else {
        return;
    };
    for dtype in DTYPES {
        op_matches_cpu(
            "gather_last",
            dev,
            dtype,
            &[randt(&[3, 7], -1.0, 1.0, 81)],
            Tol::TIGHT,
            |t, _| t[0].gather_last(&[3, 0, 6]),
        );
        // Of a strided view, through log_softmax, as the reward loss takes it.
        op_matches_cpu(
            "gather of log_softmax of a narrow",
            dev,
            dtype,
            &[randt(&[2, 5, 11], -2.0, 2.0, 82)],
            Tol::SUMS,
            |t, _| {
                t[0].narrow(1, 1, 3)?
                    .log_softmax()?
                    .gather_last(&[0, 10, 3, 3, 7, 1])
            },
        );
    }
}

#[test]
fn gather_last_f64_scatter_last_f64_match_cpu() {
    let Some(dev) = cuda("gather_last_f64_scatter_last_f64_match_cpu") else {
        return;
    };
    op_matches_cpu(
        "gather_last",
        dev,
        DType::F64,
        &[randt(&[4, 2, 9], -1.0, 1.0, 83)],
        Tol::TIGHT,
        |t, _| t[0].gather_last(&[8, 0, 1, 1, 5, 2, 3, 4]),
    );
}

#[test]
fn scatter_last_f64_writes_every_element() {
    let Some(dev) = cuda("scatter_last_f64_writes_every_element") else {
        return;
    };
    let x = Tensor::ones_on(&[3, 4], DType::F64, dev)
        .unwrap()
        .requiring_grad();
    x.gather_last(&[3, 0, 3])
        .unwrap()
        .mul_scalar(2.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f64(),
        vec![0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]
    );
}

#[test]
fn scatter_last_f32_writes_every_element() {
    let Some(dev) = cuda("scatter_last_f32_writes_every_element") else {
        return;
    };
    let x = Tensor::ones_on(&[2, 3], DType::F32, dev)
        .unwrap()
        .requiring_grad();
    x.gather_last(&[2, 1])
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec_f32(),
        vec![0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    );
}

// ------------------------------------------------------------------------------- selection

#[test]
fn binary_f32_masked_fill_and_where_with_broadcast_masks() {
    let Some(dev) = cuda("binary_f32_masked_fill_and_where_with_broadcast_masks") else {
        return;
    };
    for dtype in DTYPES {
        let mask = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[7]).unwrap();
        let m = mask.clone();
        op_matches_cpu(
            "masked_fill",
            dev,
            dtype,
            &[randt(&[3, 7], -1.0, 1.0, 81)],
            Tol::TIGHT,
            move |t, d| t[0].masked_fill(&m.to_device(d)?, -3.0),
        );
        let cond = Tensor::from_vec(vec![1.0f64, 0.0, 1.0], &[3, 1]).unwrap();
        op_matches_cpu(
            "where",
            dev,
            dtype,
            &[randt(&[3, 5], -1.0, 1.0, 82), randt(&[5], -1.0, 1.0, 83)],
            Tol::TIGHT,
            move |t, d| Tensor::where_(&cond.to_device(d)?, &t[0], &t[1]),
        );
        // A mask on another device is an error, not a silent copy.
        let x = randt(&[3, 7], -1.0, 1.0, 84)
            .to_dtype(dtype)
            .unwrap()
            .to_device(dev)
            .unwrap();
        assert_eq!(x.masked_fill(&mask, 0.0).is_err(), dev != Device::Cpu);
    }
}

// ------------------------------------------------------------------------------- dropout

#[test]
fn dropout_f64_same_masks_and_values_as_the_cpu() {
    let Some(dev) = cuda("dropout_f64_same_masks_and_values_as_the_cpu") else {
        return;
    };
    for dtype in DTYPES {
        for (p, seed, skip) in [(0.1, 1u64, 0u64), (0.5, 2, 3), (0.3, 3, 1 << 33)] {
            let x = randt(&[7, 1001], -1.0, 1.0, 91).to_dtype(dtype).unwrap();
            let start = Philox::from_state(aoanet::rng::PhiloxState {
                seed,
                stream: 4,
                offset: skip,
            });
            let (mut rc, mut rg) = (start.clone(), start.clone());
            let xc = x.requiring_grad();
            let xg = x.to_device(dev).unwrap().requiring_grad();
            let yc = xc.dropout(p, true, &mut rc).unwrap();
            let yg = xg.dropout(p, true, &mut rg).unwrap();
            // The same words, the same rule, the same scale: identical values, bit for bit.
            assert_eq!(yg.to_vec_f64(), yc.to_vec_f64(), "{dtype} p {p}");
            assert_eq!(rg.state(), rc.state(), "both advance by the element count");
            let r = randt(&[7, 1001], -1.0, 1.0, 92).to_dtype(dtype).unwrap();
            yc.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            yg.mul(&r.to_device(dev).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            assert_eq!(
                xg.grad().unwrap().to_vec_f64(),
                xc.grad().unwrap().to_vec_f64()
            );
        }
        // p = 1 drops everything; eval mode draws nothing.
        let x = Tensor::ones_on(&[5], dtype, dev).unwrap();
        let mut g = Philox::new(3);
        assert!(
            x.dropout(1.0, true, &mut g)
                .unwrap()
                .to_vec_f64()
                .iter()
                .all(|&v| v == 0.0)
        );
        let before = g.state();
        assert_eq!(
            x.dropout(0.5, false, &mut g).unwrap().to_vec_f64(),
            vec![1.0; 5]
        );
        assert_eq!(g.state(), before);
    }
}

// ------------------------------------------------------------------------------- LSTM

fn lstm_inputs(b: usize, input: usize, hs: usize) -> Vec<Tensor> {
    vec![
        randt(&[b, input], -1.0, 1.0, 1),
        randt(&[b, hs], -1.0, 1.0, 2),
        randt(&[b, hs], -1.0, 1.0, 3),
        randt(&[4 * hs, input], -1.0, 1.0, 4),
        randt(&[4 * hs, hs], -1.0, 1.0, 5),
        randt(&[4 * hs], -1.0, 1.0, 6),
        randt(&[4 * hs], -1.0, 1.0, 7),
    ]
}

#[test]
fn lstm_cell_fwd_f64_and_lstm_cell_bwd_f64_through_the_op() {
    let Some(dev) = cuda("lstm_cell_fwd_f64_and_lstm_cell_bwd_f64_through_the_op") else {
        return;
    };
    for dtype in DTYPES {
        for (b, input, hs) in [(1, 1, 1), (3, 5, 7), (50, 33, 64)] {
            let t = lstm_inputs(b, input, hs);
            op_matches_cpu("lstm h and c", dev, dtype, &t, Tol::SUMS, |t, _| {
                let o = t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?;
                Tensor::concat(&[&o.h, &o.c.mul_scalar(0.7)?], 1)
            });
            op_matches_cpu("lstm h only", dev, dtype, &t, Tol::SUMS, |t, _| {
                Ok(t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?.h)
            });
        }
    }
}

/// Two chained steps: the second reads the first's `c`, a view into its stacked `[2, B, H]`
/// result, and the weights receive two deferred gradients. Named for the f64 backward.
#[test]
fn lstm_cell_bwd_f64_two_steps_with_strided_state() {
    let Some(dev) = cuda("lstm_cell_bwd_f64_two_steps_with_strided_state") else {
        return;
    };
    for dtype in DTYPES {
        let t = lstm_inputs(4, 6, 5);
        op_matches_cpu("lstm two steps", dev, dtype, &t, Tol::SUMS, |t, _| {
            let o1 = t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?;
            let o2 = t[0]
                .mul_scalar(-0.5)?
                .lstm_cell(&o1.h, &o1.c, &t[3], &t[4], &t[5], &t[6])?;
            Tensor::concat(&[&o2.h, &o2.c], 1)
        });
    }
}

// ------------------------------------------------------------------------------- losses, Adam

#[test]
fn smoothed_kl_fwd_f32_and_smoothed_kl_bwd_f32_label_smoothing_and_lm_loss() {
    let Some(dev) = cuda("smoothed_kl_fwd_f32_and_smoothed_kl_bwd_f32_label_smoothing_and_lm_loss")
    else {
        return;
    };
    use aoanet::train::{label_smoothing_loss, lm_loss};
    for dtype in DTYPES {
        let targets = vec![0, 3, 6, 1, 0, 2];
        let mask = Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0, 0.5, 1.0], &[2, 3]).unwrap();
        for eps in [0.0, 0.2] {
            let (t, m) = (targets.clone(), mask.clone());
            op_matches_cpu(
                &format!("label_smoothing {eps}"),
                dev,
                dtype,
                &[randt(&[2, 3, 7], -2.0, 2.0, 17)],
                Tol::SUMS,
                move |x, d| label_smoothing_loss(&x[0].log_softmax()?, &t, &m.to_device(d)?, eps),
            );
        }
        let (t, m) = (targets.clone(), mask.clone());
        op_matches_cpu(
            "lm_loss",
            dev,
            dtype,
            &[randt(&[2, 3, 7], -2.0, 2.0, 18)],
            Tol::SUMS,
            move |x, _| {
                // A host mask works with device log-probabilities (read once on the host).
                lm_loss(&x[0].log_softmax()?, &t, &m)
            },
        );
        // The vocabulary-wide case: 9488 classes, 40 rows.
        let t: Vec<usize> = (0..40).map(|r| (r * 2371) % 9488).collect();
        op_matches_cpu(
            "label_smoothing 9488",
            dev,
            dtype,
            &[randt(&[40, 9488], -3.0, 3.0, 19)],
            Tol::SUMS,
            move |x, _| {
                label_smoothing_loss(
                    &x[0].log_softmax()?,
                    &t,
                    &Tensor::ones(&[40], DType::F32),
                    0.2,
                )
            },
        );
    }
}

/// The loss straight from logits (on a GPU in f32: `label_smooth_fwd_f32` / `_bwd_f32`, which
/// never form the log-probabilities; the upstream gradient of `op_matches_cpu`'s random
/// projection is read on the device) against the CPU's composed `log_softmax` + loss.
#[test]
fn label_smooth_fwd_f32_from_logits_matches_the_composed_loss() {
    let Some(dev) = cuda("label_smooth_fwd_f32_from_logits_matches_the_composed_loss") else {
        return;
    };
    use aoanet::train::label_smoothing_loss_from_logits;
    for dtype in DTYPES {
        let targets = vec![0, 3, 6, 1, 0, 2];
        let mask = Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0, 0.5, 1.0], &[2, 3]).unwrap();
        for eps in [0.0, 0.2] {
            let (t, m) = (targets.clone(), mask.clone());
            op_matches_cpu(
                &format!("label_smoothing_from_logits {eps}"),
                dev,
                dtype,
                &[randt(&[2, 3, 7], -2.0, 2.0, 21)],
                Tol::SUMS,
                move |x, d| label_smoothing_loss_from_logits(&x[0], &t, &m.to_device(d)?, eps),
            );
        }
        let t: Vec<usize> = (0..40).map(|r| (r * 2371) % 9488).collect();
        op_matches_cpu(
            "label_smoothing_from_logits 9488",
            dev,
            dtype,
            &[randt(&[40, 9488], -3.0, 3.0, 22)],
            Tol::SUMS,
            move |x, _| {
                label_smoothing_loss_from_logits(&x[0], &t, &Tensor::ones(&[40], DType::F32), 0.2)
            },
        );
    }
}

#[test]
fn smoothed_kl_fwd_f64_and_smoothed_kl_bwd_f64_with_minus_infinity() {
    let Some(dev) = cuda("smoothed_kl_fwd_f64_and_smoothed_kl_bwd_f64_with_minus_infinity") else {
        return;
    };
    use aoanet::train::lm_loss;
    // −∞ in a masked row and in non-target classes with no smoothing: never read.
    let mut v = vec![-1.0f64; 8];
    v[4..].iter_mut().for_each(|x| *x = f64::NEG_INFINITY);
    v[1] = f64::NEG_INFINITY;
    let lp = Tensor::from_vec(v, &[2, 4])
        .unwrap()
        .to_device(dev)
        .unwrap()
        .requiring_grad();
    let mask = Tensor::from_vec(vec![1.0, 0.0], &[2]).unwrap();
    let l = lm_loss(&lp, &[2, 0], &mask).unwrap();
    assert_eq!(l.item().unwrap(), 1.0);
    l.backward().unwrap();
    assert_eq!(
        lp.grad().unwrap().to_vec_f64(),
        vec![0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
}

/// Named for the f64 backward kernel (run by both tests above).
#[test]
fn smoothed_kl_bwd_f64_reward_loss_too() {
    let Some(dev) = cuda("smoothed_kl_bwd_f64_reward_loss_too") else {
        return;
    };
    use aoanet::train::reward_loss;
    for dtype in DTYPES {
        let seq = vec![3, 1, 0, 0, 2, 0, 5, 4, 7];
        op_matches_cpu(
            "reward_loss",
            dev,
            dtype,
            &[randt(&[3, 3], -3.0, 0.0, 8)],
            Tol::TIGHT,
            move |x, _| reward_loss(&x[0], &seq, &[0.5, -1.25, 2.0]),
        );
    }
}

/// Named for the f32 backward kernel (run by the label-smoothing test).
#[test]
fn smoothed_kl_bwd_f32_gradient_rows_sum_to_zero_through_log_softmax() {
    let Some(dev) = cuda("smoothed_kl_bwd_f32_gradient_rows_sum_to_zero_through_log_softmax")
    else {
        return;
    };
    use aoanet::train::label_smoothing_loss;
    let x = randt(&[5, 300], -2.0, 2.0, 20)
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(dev)
        .unwrap()
        .requiring_grad();
    let l = label_smoothing_loss(
        &x.log_softmax().unwrap(),
        &[0, 1, 2, 3, 299],
        &Tensor::ones(&[5], DType::F32),
        0.2,
    )
    .unwrap();
    l.backward().unwrap();
    for s in x.grad().unwrap().sum_axis(1, false).unwrap().to_vec_f64() {
        assert!(s.abs() < 1e-6, "softmax − q sums to 0 per row, got {s}");
    }
}

#[test]
fn adam_f64_steps_match_the_cpu_optimiser() {
    let Some(dev) = cuda("adam_f64_steps_match_the_cpu_optimiser") else {
        return;
    };
    use aoanet::train::{Adam, AdamConfig};
    for dtype in DTYPES {
        let p0 = randt(&[3, 1000], -1.0, 1.0, 1).to_dtype(dtype).unwrap();
        let (pc, pg) = (
            p0.deep_copy().unwrap().requiring_grad(),
            p0.to_device(dev).unwrap().requiring_grad(),
        );
        let config = AdamConfig {
            lr: 1e-2,
            ..AdamConfig::default()
        };
        let (mut oc, mut og) = (Adam::new(config).unwrap(), Adam::new(config).unwrap());
        for step in 0..3u64 {
            // Gradients up to ±0.5: most are clamped to ±0.1.
            let g = randt(&[3, 1000], -0.5, 0.5, 10 + step)
                .to_dtype(dtype)
                .unwrap();
            pc.set_grad(Some(g.clone()));
            pg.set_grad(Some(g.to_device(dev).unwrap()));
            oc.step(&[("p", pc.clone())]).unwrap();
            og.step(&[("p", pg.clone())]).unwrap();
        }
        assert_eq!(pg.device(), dev);
        // f64: the same arithmetic in the same order, FMA contraction aside; f32: an ulp of
        // each of the three updates (≈ 1e-2 each) on parameters of size ≤ 1.
        let tol = if dtype == DType::F64 { 1e-14 } else { 3e-7 };
        assert_tensors_close("Adam params", &pg, &pc, tol, tol);
        let (sc, sg) = (oc.state(), og.state());
        assert_tensors_close(
            "Adam exp_avg",
            &sg.params[0].exp_avg,
            &sc.params[0].exp_avg,
            tol,
            tol,
        );
        assert_tensors_close(
            "Adam exp_avg_sq",
            &sg.params[0].exp_avg_sq,
            &sc.params[0].exp_avg_sq,
            tol * 1e-2,
            tol,
        );
    }
}

// ------------------------------------------------------------------------------- devices

#[test]
fn to_device_round_trips_and_is_differentiable() {
    let Some(dev) = cuda("to_device_round_trips_and_is_differentiable") else {
        return;
    };
    for dtype in [DType::F32, DType::F64, DType::BF16] {
        let x = randt(&[3, 5], -1.0, 1.0, 1).to_dtype(dtype).unwrap();
        let d = x.to_device(dev).unwrap();
        assert_eq!((d.device(), d.dtype(), d.shape()), (dev, dtype, x.shape()));
        assert_eq!(
            d.to_device(Device::Cpu).unwrap().to_vec_f64(),
            x.to_vec_f64()
        );
        assert_eq!(d.to_vec_f64(), x.to_vec_f64());
    }
    let x = randt(&[4], -1.0, 1.0, 2).requiring_grad();
    let y = x
        .to_device(dev)
        .unwrap()
        .exp()
        .unwrap()
        .to_device(Device::Cpu)
        .unwrap();
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().device(), Device::Cpu);
    assert_tensors_close(
        "exp grad via the GPU",
        &x.grad().unwrap(),
        &x.detach().exp().unwrap(),
        1e-14,
        1e-14,
    );
    // Mixed devices are an error naming both (no such thing in the dry run on the CPU).
    if dev != Device::Cpu {
        let e = x
            .detach()
            .add(&x.detach().to_device(dev).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpu") && e.contains("cuda"), "{e}");
    }
}

#[test]
fn move_to_device_update_and_host_access_of_parameters() {
    let Some(dev) = cuda("move_to_device_update_and_host_access_of_parameters") else {
        return;
    };
    let base = randt(&[2, 3], -1.0, 1.0, 3).to_dtype(DType::F32).unwrap();
    let p = base.requiring_grad();
    let view = p.detach().transpose(0, 1).unwrap();
    let want = view.to_vec_f64();
    p.move_to_device_(dev).unwrap();
    // Every tensor sharing the storage moved with it, layouts intact.
    assert_eq!((p.device(), base.device(), view.device()), (dev, dev, dev));
    assert_eq!(view.to_vec_f64(), want);
    // update_ from a host tensor and from a device view.
    let ones = Tensor::ones(&[2, 3], DType::F64);
    p.update_(&ones).unwrap();
    assert_eq!(p.to_vec_f32(), vec![1.0; 6]);
    p.update_(&p.mul_scalar(3.0).unwrap()).unwrap();
    assert_eq!(p.to_vec_f32(), vec![3.0; 6]);
    // Host access (checkpoints): read and write through a host copy.
    p.with_data_mut::<f32, _>(|v| v[4] = -2.0).unwrap();
    assert_eq!(p.with_data::<f32, _>(|v| v[4]).unwrap(), -2.0);
    assert_eq!(p.deep_copy().unwrap().device(), dev);
    p.move_to_device_(Device::Cpu).unwrap();
    assert_eq!(p.device(), Device::Cpu);
    assert_eq!(p.to_vec_f32()[4], -2.0);
}

#[test]
fn model_parameters_move_and_a_step_runs_on_the_device() {
    let Some(dev) = cuda("model_parameters_move_and_a_step_runs_on_the_device") else {
        return;
    };
    use aoanet::model::{AoaConfig, AoaModel};
    use aoanet::nn::{Ctx, Module};
    let mut cfg = AoaConfig::reference(20);
    cfg.rnn_size = 32;
    cfg.input_encoding_size = 32;
    cfg.att_feat_size = 16;
    cfg.num_heads = 4;
    let m = AoaModel::new(cfg, DType::F32, 1).unwrap();
    m.to_device_(dev).unwrap();
    assert_eq!(m.device(), dev);
    assert!(m.named_parameters().iter().all(|(_, p)| p.device() == dev));
    let feats = randt(&[2, 5, 16], -1.0, 1.0, 4)
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let mut rng = Philox::new(0);
    let enc = m
        .encode(&feats, None, None, &mut Ctx::eval(&mut rng), None)
        .unwrap();
    let out = m
        .step(&[0, 0], &enc, &m.init_state(2), &mut Ctx::eval(&mut rng))
        .unwrap();
    assert_eq!(out.logprobs.device(), dev);
    assert_eq!(out.logprobs.shape(), &[2, 21]);
}

/// Named for the f32 strided copy: `contiguous` of a permuted view, bit for bit.
#[test]
fn copy_strided_f32_is_an_exact_copy() {
    let Some(dev) = cuda("copy_strided_f32_is_an_exact_copy") else {
        return;
    };
    let x = randt(&[4, 6, 5, 3], -1.0, 1.0, 1)
        .to_dtype(DType::F32)
        .unwrap();
    let v = x.permute(&[3, 1, 0, 2]).unwrap().narrow(1, 1, 4).unwrap();
    let vd = x
        .to_device(dev)
        .unwrap()
        .permute(&[3, 1, 0, 2])
        .unwrap()
        .narrow(1, 1, 4)
        .unwrap();
    let c = vd.contiguous().unwrap();
    assert!(c.is_contiguous() && c.device() == dev);
    assert_eq!(c.to_vec_f32(), v.to_vec_f32());
}

/// Named for the f64 softmax backward (the softmax test runs it too): log_softmax rows of
/// the vocabulary size, as the model's output layer.
#[test]
fn softmax_bwd_f64_vocabulary_rows() {
    let Some(dev) = cuda("softmax_bwd_f64_vocabulary_rows") else {
        return;
    };
    op_matches_cpu(
        "log_softmax 9488",
        dev,
        DType::F64,
        &[randt(&[17, 9488], -5.0, 5.0, 2)],
        Tol::SUMS,
        |t, _| t[0].log_softmax(),
    );
}

/// Concatenation of dense inputs in one launch (`copy_blocks`) along the first, a middle and
/// the last axis: pieces of different lengths, a dense window with an offset (a narrow of the
/// first axis), the same tensor twice, an empty piece, pieces larger than the kernel's
/// 8192-element chunk, and a strided view among them (copied on its own); values and
/// gradients against the CPU.
fn concat_of_dense_pieces(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let a = randt(&[4, 3, 700], -1.0, 1.0, 71);
    let b = randt(&[4, 5, 700], -1.0, 1.0, 72);
    let c = randt(&[6, 3, 700], -1.0, 1.0, 73);
    op_matches_cpu(
        &format!("{test}: axis 1"),
        dev,
        dtype,
        &[a.clone(), b.clone()],
        Tol::TIGHT,
        |t, _| {
            let empty = t[1].narrow(1, 0, 0)?;
            Tensor::concat(&[&t[0], &t[1], &empty, &t[0], &t[1].narrow(1, 2, 2)?], 1)
        },
    );
    op_matches_cpu(
        &format!("{test}: axis 0"),
        dev,
        dtype,
        &[a.clone(), c.clone()],
        Tol::TIGHT,
        |t, _| Tensor::concat(&[&t[1].narrow(0, 1, 3)?, &t[0], &t[1]], 0),
    );
    op_matches_cpu(
        &format!("{test}: last axis"),
        dev,
        dtype,
        &[a.clone(), randt(&[4, 3, 5], -1.0, 1.0, 74)],
        Tol::TIGHT,
        |t, _| Tensor::concat(&[&t[1], &t[0], &t[1].transpose(0, 0)?, &t[1]], 2),
    );
    op_matches_cpu(
        &format!("{test}: 17 decoder steps"),
        dev,
        dtype,
        &[randt(&[17, 50, 64], -1.0, 1.0, 75)],
        Tol::TIGHT,
        |t, _| {
            let steps: Vec<Tensor> = (0..17)
                .map(|i| t[0].narrow(0, i, 1).and_then(|s| s.squeeze(0)))
                .collect::<aoanet::Result<_>>()?;
            let refs: Vec<&Tensor> = steps.iter().collect();
            Tensor::concat(&refs, 0)
        },
    );
    // On a GPU the 17 dense pieces take one kernel launch.
    if matches!(dev, Device::Cuda(_)) {
        let x = randt(&[17, 50, 64], -1.0, 1.0, 76)
            .to_dtype(dtype)
            .unwrap()
            .to_device(dev)
            .unwrap();
        let steps: Vec<Tensor> = (0..17)
            .map(|i| x.narrow(0, i, 1).unwrap().squeeze(0).unwrap())
            .collect();
        let refs: Vec<&Tensor> = steps.iter().collect();
        let before = aoanet::cuda::launches_on_this_thread();
        let joined = Tensor::concat(&refs, 0).unwrap();
        assert_eq!(
            aoanet::cuda::launches_on_this_thread() - before,
            1,
            "{test}: launches for 17 dense pieces"
        );
        assert_eq!(
            joined.to_vec_f64(),
            x.reshape(&[850, 64]).unwrap().to_vec_f64()
        );
    }
}

/// Two to four dense pieces go through `copy_blocks_small` (the table in the launch): the
/// decoder's per-step concatenations, along the last and a middle axis.
fn concat_of_few_dense_pieces(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let (x, h) = (
        randt(&[50, 1024], -1.0, 1.0, 81),
        randt(&[50, 1024], -1.0, 1.0, 82),
    );
    for pieces in 2..=4 {
        op_matches_cpu(
            &format!("{test}: {pieces} pieces"),
            dev,
            dtype,
            &[x.clone(), h.clone()],
            Tol::TIGHT,
            |t, _| {
                let all = [&t[0], &t[1], &t[0], &t[1]];
                Tensor::concat(&all[..pieces], 1)
            },
        );
    }
    op_matches_cpu(
        &format!("{test}: middle axis"),
        dev,
        dtype,
        &[
            randt(&[3, 2, 5], -1.0, 1.0, 83),
            randt(&[3, 4, 5], -1.0, 1.0, 84),
        ],
        Tol::TIGHT,
        |t, _| Tensor::concat(&[&t[0], &t[1]], 1),
    );
    if matches!(dev, Device::Cuda(_)) {
        let (xd, hd) = (
            x.to_dtype(dtype).unwrap().to_device(dev).unwrap(),
            h.to_dtype(dtype).unwrap().to_device(dev).unwrap(),
        );
        let before = aoanet::cuda::launches_on_this_thread();
        let joined = Tensor::concat(&[&xd, &hd], 1).unwrap();
        assert_eq!(
            aoanet::cuda::launches_on_this_thread() - before,
            1,
            "{test}: launches for two dense pieces"
        );
        assert_eq!(
            joined.to_vec_f64(),
            Tensor::concat(&[&x, &h], 1)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .to_vec_f64()
        );
    }
}

#[test]
fn copy_blocks_small_f32_concatenates_two_to_four_pieces() {
    concat_of_few_dense_pieces(
        "copy_blocks_small_f32_concatenates_two_to_four_pieces",
        DType::F32,
    );
}

#[test]
fn copy_blocks_small_f64_concatenates_two_to_four_pieces() {
    concat_of_few_dense_pieces(
        "copy_blocks_small_f64_concatenates_two_to_four_pieces",
        DType::F64,
    );
}

#[test]
fn copy_blocks_f32_concatenates_dense_pieces_in_one_launch() {
    concat_of_dense_pieces(
        "copy_blocks_f32_concatenates_dense_pieces_in_one_launch",
        DType::F32,
    );
}

#[test]
fn copy_blocks_f64_concatenates_dense_pieces_in_one_launch() {
    concat_of_dense_pieces(
        "copy_blocks_f64_concatenates_dense_pieces_in_one_launch",
        DType::F64,
    );
}

/// A concatenation's backward splits the upstream gradient into every input's gradient in one
/// launch (`split_blocks*`, the adjoint of `copy_blocks*`): 2 to 4 pieces carry their table in
/// the launch, more upload it; along the last, a middle and the first axis; the gradients
/// equal the CPU's (which copies each piece), bit for bit (a copy).
fn split_of_dense_gradient(test: &str, dtype: DType, counts: &[usize]) {
    let Some(dev) = cuda(test) else {
        return;
    };
    for &pieces in counts {
        for (axis, shape) in [(1usize, [6usize, 3, 5]), (0, [2, 3, 5]), (2, [4, 3, 7])] {
            let inputs: Vec<Tensor> = (0..pieces)
                .map(|k| {
                    let mut s = shape;
                    s[axis] += k % 3; // unequal sizes along the axis
                    randt(&s, -1.0, 1.0, 200 + k as u64)
                        .to_dtype(dtype)
                        .unwrap()
                })
                .collect();
            let mut out_shape = shape;
            out_shape[axis] = inputs.iter().map(|t| t.shape()[axis]).sum();
            let upstream = randt(&out_shape, -1.0, 1.0, 300).to_dtype(dtype).unwrap();
            let grads_on = |device: Device| -> (Vec<Vec<f64>>, u64) {
                let leaves: Vec<Tensor> = inputs
                    .iter()
                    .map(|t| t.to_device(device).unwrap().requiring_grad())
                    .collect();
                let refs: Vec<&Tensor> = leaves.iter().collect();
                let y = Tensor::concat(&refs, axis as isize).unwrap();
                let g = upstream.to_device(device).unwrap();
                let before = aoanet::cuda::launches_on_this_thread();
                y.backward_with(g).unwrap();
                let launches = aoanet::cuda::launches_on_this_thread() - before;
                let grads = leaves
                    .iter()
                    .map(|l| l.grad().unwrap().to_vec_f64())
                    .collect();
                (grads, launches)
            };
            let (want, _) = grads_on(Device::Cpu);
            let (got, launches) = grads_on(dev);
            assert_eq!(got, want, "{test}: {pieces} pieces along axis {axis}");
            if matches!(dev, Device::Cuda(_)) {
                assert_eq!(
                    launches, 1,
                    "{test}: launches of the backward, {pieces} pieces"
                );
            }
        }
    }
}

#[test]
fn split_blocks_small_f32_splits_two_to_four_gradients_in_one_launch() {
    split_of_dense_gradient(
        "split_blocks_small_f32_splits_two_to_four_gradients_in_one_launch",
        DType::F32,
        &[2, 3, 4],
    );
}

#[test]
fn split_blocks_small_f64_splits_two_to_four_gradients_in_one_launch() {
    split_of_dense_gradient(
        "split_blocks_small_f64_splits_two_to_four_gradients_in_one_launch",
        DType::F64,
        &[2, 4],
    );
}

#[test]
fn split_blocks_f32_splits_many_gradients_in_one_launch() {
    split_of_dense_gradient(
        "split_blocks_f32_splits_many_gradients_in_one_launch",
        DType::F32,
        &[5, 17],
    );
}

#[test]
fn split_blocks_f64_splits_many_gradients_in_one_launch() {
    split_of_dense_gradient(
        "split_blocks_f64_splits_many_gradients_in_one_launch",
        DType::F64,
        &[17],
    );
}

/// ReLU and dropout fused on the device (`relu_dropout_*`; backward `binary` with the
/// ReLU-scale code): equal to the CPU's fused op, which equals ReLU then dropout, values and
/// gradients, and the generator advanced by the element count on both devices.
fn relu_dropout_matches(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    op_matches_cpu(
        test,
        dev,
        dtype,
        &[randt(&[50, 1024], -1.0, 1.0, 91)],
        Tol::TIGHT,
        |t, _| {
            let mut rng = Philox::new(12);
            let y = t[0].relu_dropout(0.5, true, &mut rng)?;
            assert_eq!(rng.state().offset, 50 * 1024);
            Ok(y)
        },
    );
    op_matches_cpu(
        &format!("{test}: composed"),
        dev,
        dtype,
        &[randt(&[50, 1024], -1.0, 1.0, 91)],
        Tol::TIGHT,
        |t, d| {
            // The device's fused op against the CPU's ReLU then dropout.
            let mut rng = Philox::new(12);
            if d == Device::Cpu {
                t[0].relu()?.dropout(0.5, true, &mut rng)
            } else {
                t[0].relu_dropout(0.5, true, &mut rng)
            }
        },
    );
}

#[test]
fn relu_dropout_f32_matches_relu_then_dropout_on_the_cpu() {
    relu_dropout_matches(
        "relu_dropout_f32_matches_relu_then_dropout_on_the_cpu",
        DType::F32,
    );
}

#[test]
fn relu_dropout_f64_matches_relu_then_dropout_on_the_cpu() {
    relu_dropout_matches(
        "relu_dropout_f64_matches_relu_then_dropout_on_the_cpu",
        DType::F64,
    );
}

/// `add_dropout_*`: `a + dropout(x)` in one kernel against the CPU (values and both
/// gradients through `op_matches_cpu`'s random projection), and on the device against the
/// dropout kernel followed by the add kernel: the same bits (the kernel rounds the product and
/// the sum separately, with no fused multiply-add).
fn add_dropout_matches(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let inputs = [
        randt(&[50, 1024], -1.0, 1.0, 93),
        randt(&[50, 1024], -1.0, 1.0, 94),
    ];
    op_matches_cpu(test, dev, dtype, &inputs, Tol::TIGHT, |t, _| {
        let mut rng = Philox::new(13);
        let y = t[0].add_dropout(&t[1], 0.3, true, &mut rng)?;
        assert_eq!(rng.state().offset, 50 * 1024);
        Ok(y)
    });
    let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(dev).unwrap();
    let (a, x) = (on(&inputs[0]), on(&inputs[1]));
    let fused = a.add_dropout(&x, 0.3, true, &mut Philox::new(13)).unwrap();
    let two = a
        .add(&x.dropout(0.3, true, &mut Philox::new(13)).unwrap())
        .unwrap();
    let bits = |t: &Tensor| -> Vec<u64> { t.to_vec_f64().iter().map(|v| v.to_bits()).collect() };
    assert!(
        bits(&fused) == bits(&two),
        "{test}: fused and two-op results differ"
    );
}

#[test]
fn add_dropout_f32_matches_the_cpu_and_the_two_ops() {
    add_dropout_matches(
        "add_dropout_f32_matches_the_cpu_and_the_two_ops",
        DType::F32,
    );
}

#[test]
fn add_dropout_f64_matches_the_cpu_and_the_two_ops() {
    add_dropout_matches(
        "add_dropout_f64_matches_the_cpu_and_the_two_ops",
        DType::F64,
    );
}

/// `sum_many_*` adds its sources in order, bit for bit as one-by-one f32/f64 additions, in
/// place or into a new buffer, across its 16-source launches; and a backward pass whose
/// tensor collects 20 gradient pieces (one use per "step") gives the CPU's gradient.
fn sum_many_matches(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    op_matches_cpu(
        &format!("{test}: 20 uses"),
        dev,
        dtype,
        &[
            randt(&[50, 300], -1.0, 1.0, 101),
            randt(&[20, 300], -1.0, 1.0, 102),
        ],
        Tol::TIGHT,
        |t, _| {
            let mut acc = t[0].mul(&t[1].narrow(0, 0, 1)?)?;
            for k in 1..20 {
                acc = acc.add(&t[0].mul(&t[1].narrow(0, k, 1)?)?)?;
            }
            Ok(acc)
        },
    );
    let Device::Cuda(ordinal) = dev else {
        return;
    };
    let d = aoanet::cuda::CudaDevice::get(ordinal).unwrap();
    let n = 10_001;
    let host: Vec<Vec<f64>> = (0..20)
        .map(|k| randt(&[n], -1.0, 1.0, 200 + k).to_vec_f64())
        .collect();
    fn run<T: aoanet::cuda::CudaFloat>(
        d: &std::sync::Arc<aoanet::cuda::CudaDevice>,
        host: &[Vec<f64>],
        in_place: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        use aoanet::cuda::kernels::elementwise::sum_many;
        let typed: Vec<Vec<T>> = host
            .iter()
            .map(|v| v.iter().map(|&x| T::from_f64(x)).collect())
            .collect();
        let mut want = typed[0].clone();
        for v in &typed[1..] {
            for (w, &x) in want.iter_mut().zip(v) {
                *w += x;
            }
        }
        let bufs: Vec<_> = typed.iter().map(|v| d.htod(v).unwrap()).collect();
        let views: Vec<_> = bufs[1..].iter().map(|b| b.view()).collect();
        let got = if in_place {
            let mut out = d.htod(&typed[0]).unwrap();
            sum_many(d, out.view_mut(), None, &views).unwrap();
            out.to_host().unwrap()
        } else {
            let mut out = d.zeros::<T>(typed[0].len()).unwrap();
            sum_many(d, out.view_mut(), Some(bufs[0].view()), &views).unwrap();
            out.to_host().unwrap()
        };
        (
            got.iter().map(|x| x.to_f64()).collect(),
            want.iter().map(|x| x.to_f64()).collect(),
        )
    }
    for in_place in [false, true] {
        let (got, want) = if dtype == DType::F32 {
            run::<f32>(&d, &host, in_place)
        } else {
            run::<f64>(&d, &host, in_place)
        };
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{test}: in place {in_place}: not the one-by-one sum"
        );
    }
}

#[test]
fn sum_many_f32_adds_in_order_like_one_by_one() {
    sum_many_matches("sum_many_f32_adds_in_order_like_one_by_one", DType::F32);
}

#[test]
fn sum_many_f64_adds_in_order_like_one_by_one() {
    sum_many_matches("sum_many_f64_adds_in_order_like_one_by_one", DType::F64);
}

/// `dropout_steps` on the device: the CPU's values and gradient, bit for bit, with equally
/// spaced draws (one launch each way) and with unequal spacing (one launch per step), and the
/// values of one dropout per step on the device.
fn dropout_steps_matches(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let (outer, steps, width) = (50, 7, 1030);
    let mut rng = Philox::new(31);
    let spaced: Vec<PhiloxState> = (0..steps)
        .map(|_| {
            rng.reserve(3 * 1024 + 2); // a step's other draws, the same each step
            rng.reserve((outer * width) as u64)
        })
        .collect();
    let unequal: Vec<PhiloxState> = (0..steps)
        .map(|t| {
            rng.reserve(t as u64 + 1);
            rng.reserve((outer * width) as u64)
        })
        .collect();
    let x = randt(&[outer, steps, width], -1.0, 1.0, 95);
    for (name, draws) in [("equally spaced", &spaced), ("unequally spaced", &unequal)] {
        let what = format!("{test}, draws {name}");
        op_matches_cpu(&what, dev, dtype, &[x.clone()], Tol::EXACT, |t, _| {
            t[0].dropout_steps(0.5, draws)
        });
        let on = x.to_dtype(dtype).unwrap().to_device(dev).unwrap();
        let before = aoanet::cuda::launches_on_this_thread();
        let all = on.dropout_steps(0.5, draws).unwrap();
        let launches = aoanet::cuda::launches_on_this_thread() - before;
        if dev != Device::Cpu {
            // Unequal spacing falls back to a copy and a dropout per step.
            let one = std::ptr::eq(draws, &spaced);
            assert_eq!(launches == 1, one, "{what}: {launches} launches");
        }
        for (t, &d) in draws.iter().enumerate() {
            let slice = on.narrow(1, t, 1).unwrap().contiguous().unwrap();
            let one = slice
                .dropout(0.5, true, &mut Philox::from_state(d))
                .unwrap();
            let got = all.narrow(1, t, 1).unwrap().contiguous().unwrap();
            assert_eq!(got.to_vec_f64(), one.to_vec_f64(), "{what}: step {t}");
        }
    }
}

#[test]
fn dropout_steps_f32_matches_the_cpu_and_one_dropout_per_step() {
    dropout_steps_matches(
        "dropout_steps_f32_matches_the_cpu_and_one_dropout_per_step",
        DType::F32,
    );
}

#[test]
fn dropout_steps_f64_matches_the_cpu_and_one_dropout_per_step() {
    dropout_steps_matches(
        "dropout_steps_f64_matches_the_cpu_and_one_dropout_per_step",
        DType::F64,
    );
}

/// The decoder's LSTM input on the device (one kernel each way): the CPU composition's values
/// and gradients bit for bit, the same generator use, in training and evaluation mode; one
/// launch forward.
fn lstm_input_matches(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let (vocab, embed, width, rows) = (97, 300, 260, 50);
    let ids = Ids::from((0..rows).map(|r| (r * 13) % vocab).collect::<Vec<usize>>());
    let inputs = [
        randt(&[vocab, embed], -1.0, 1.0, 96),
        randt(&[rows, width], -1.0, 1.0, 97),
        randt(&[rows, width], -1.0, 1.0, 98),
    ];
    for train in [true, false] {
        let what = format!("{test} (train {train})");
        op_matches_cpu(&what, dev, dtype, &inputs, Tol::EXACT, |t, _| {
            let mut rng = Philox::new(17);
            let y = aoanet::ops::LstmInput {
                table: &t[0],
                ids: &ids,
                embed_p: 0.5,
                base: &t[1],
                x: &t[2],
                x_p: 0.5,
            }
            .forward(train, &mut rng)?;
            let drawn = if train { rows * (embed + width) } else { 0 };
            assert_eq!(rng.state().offset, drawn as u64, "{what}: words drawn");
            Ok(y)
        });
        if dev != Device::Cpu {
            let on: Vec<Tensor> = inputs
                .iter()
                .map(|t| t.to_dtype(dtype).unwrap().to_device(dev).unwrap())
                .collect();
            let before = aoanet::cuda::launches_on_this_thread();
            aoanet::ops::LstmInput {
                table: &on[0],
                ids: &ids,
                embed_p: 0.5,
                base: &on[1],
                x: &on[2],
                x_p: 0.5,
            }
            .forward(train, &mut Philox::new(17))
            .unwrap();
            // The ids' upload is a copy, not a launch.
            let launches = aoanet::cuda::launches_on_this_thread() - before;
            assert_eq!(launches, 1, "{what}: launches");
        }
    }
    // A word outside the table is an error naming it, on both devices.
    let bad = Ids::from(vec![vocab; rows]);
    for device in [Device::Cpu, dev] {
        let on: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.to_device(device).unwrap())
            .collect();
        let err = aoanet::ops::LstmInput {
            table: &on[0],
            ids: &bad,
            embed_p: 0.5,
            base: &on[1],
            x: &on[2],
            x_p: 0.5,
        }
        .forward(true, &mut Philox::new(1))
        .unwrap_err();
        assert!(err.to_string().contains("97"), "{device}: {err}");
    }
}

#[test]
fn lstm_input_f32_matches_the_cpu_composition() {
    lstm_input_matches("lstm_input_f32_matches_the_cpu_composition", DType::F32);
}

#[test]
fn lstm_input_f64_matches_the_cpu_composition() {
    lstm_input_matches("lstm_input_f64_matches_the_cpu_composition", DType::F64);
}

/// The backward kernel of the decoder's LSTM input, through the op: after one forward on the
/// device, the backward's gradients of the table (rows added by the scatter), the base and the
/// context equal the CPU composition's bit for bit, with several words repeated; the table's
/// untouched rows get zeros.
fn lstm_input_bwd_matches(test: &str, dtype: DType) {
    let Some(dev) = cuda(test) else {
        return;
    };
    let (vocab, embed, width, rows) = (40, 130, 70, 25);
    let ids = Ids::from((0..rows).map(|r| (r * r) % 17).collect::<Vec<usize>>());
    let run = |device: Device| {
        let leaves: Vec<Tensor> = [
            randt(&[vocab, embed], -1.0, 1.0, 81),
            randt(&[rows, width], -1.0, 1.0, 82),
            randt(&[rows, width], -1.0, 1.0, 83),
        ]
        .iter()
        .map(|t| {
            t.to_dtype(dtype)
                .unwrap()
                .to_device(device)
                .unwrap()
                .requiring_grad()
        })
        .collect();
        let y = aoanet::ops::LstmInput {
            table: &leaves[0],
            ids: &ids,
            embed_p: 0.25,
            base: &leaves[1],
            x: &leaves[2],
            x_p: 0.35,
        }
        .forward(true, &mut Philox::new(84))
        .unwrap();
        let r = randt(y.shape(), -1.0, 1.0, 85).to_dtype(dtype).unwrap();
        y.mul(&r.to_device(device).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        leaves
            .iter()
            .map(|l| l.grad().unwrap().to_vec_f64())
            .collect::<Vec<_>>()
    };
    let (want, got) = (run(Device::Cpu), run(dev));
    for (i, name) in ["table", "base", "x"].iter().enumerate() {
        assert_eq!(got[i], want[i], "{test}: gradient of {name}");
    }
    let untouched = (0..vocab)
        .find(|v| !ids.host().unwrap().contains(v))
        .unwrap();
    assert!(
        got[0][untouched * embed..(untouched + 1) * embed]
            .iter()
            .all(|&g| g == 0.0)
    );
}

#[test]
fn lstm_input_bwd_f32_gives_the_composition_gradients() {
    lstm_input_bwd_matches(
        "lstm_input_bwd_f32_gives_the_composition_gradients",
        DType::F32,
    );
}

#[test]
fn lstm_input_bwd_f64_gives_the_composition_gradients() {
    lstm_input_bwd_matches(
        "lstm_input_bwd_f64_gives_the_composition_gradients",
        DType::F64,
    );
}
