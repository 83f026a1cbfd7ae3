//! GPU reference LayerNorm (unbiased std, eps on the std) vs an f64 CPU reference.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::layernorm::{self, EPS, ParamGrads, ROWS_PER_CHUNK};
use cuda_util::{assert_close, gpu, rand_vec};

struct Ref {
    y: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
    dx: Vec<f64>,
    dg: Vec<f64>,
    db: Vec<f64>,
}

fn reference(x: &[f32], g: &[f32], b: &[f32], dy: &[f32], rows: usize, d: usize) -> Ref {
    let eps = EPS;
    let mut r = Ref {
        y: vec![],
        mean: vec![],
        std: vec![],
        dx: vec![],
        dg: vec![0.0; d],
        db: vec![0.0; d],
    };
    for i in 0..rows {
        let xs: Vec<f64> = x[i * d..(i + 1) * d]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mu = xs.iter().sum::<f64>() / d as f64;
        let sd = (xs.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (d - 1) as f64).sqrt();
        let rr = 1.0 / (sd + eps);
        r.mean.push(mu);
        r.std.push(sd);
        let a: Vec<f64> = (0..d)
            .map(|j| f64::from(dy[i * d + j]) * f64::from(g[j]))
            .collect();
        let sa: f64 = a.iter().sum();
        let sax: f64 = (0..d).map(|j| a[j] * (xs[j] - mu)).sum();
        for j in 0..d {
            let xhat = (xs[j] - mu) * rr;
            r.y.push(f64::from(g[j]) * xhat + f64::from(b[j]));
            let k = if sd > 0.0 {
                rr * rr * sax / ((d - 1) as f64 * sd)
            } else {
                0.0
            };
            r.dx.push(rr * (a[j] - sa / d as f64) - k * (xs[j] - mu));
            r.dg[j] += f64::from(dy[i * d + j]) * xhat;
            r.db[j] += f64::from(dy[i * d + j]);
        }
    }
    r
}

// (rows, cols): odd sizes, 2 columns (the smallest valid), a constant row (std = 0), and more
// rows than one parameter-gradient chunk (64) so the chunked column sum is exercised.
const SHAPES: [(usize, usize); 4] = [(5, 2), (7, 33), (130, 1024), (3, 2047)];

fn run(test: &str, check_params: bool) {
    // One shape has three chunks of rows: the parameter sums finished by a last block.
    assert!(SHAPES.iter().any(|&(rows, _)| rows > 2 * ROWS_PER_CHUNK));
    for params in [ParamGrads::Accumulate, ParamGrads::Overwrite] {
        run_with(test, check_params, params);
    }
}

fn run_with(test: &str, check_params: bool, params: ParamGrads) {
    let Some(dev) = gpu(test) else { return };
    for (rows, d) in SHAPES {
        let mut x = rand_vec(rows as u64 * 3 + d as u64, rows * d, -2.0, 2.0);
        for v in &mut x[..d] {
            *v = 0.75; // first row constant: std = 0
        }
        let g = rand_vec(11, d, 0.5, 1.5);
        let b = rand_vec(12, d, -0.5, 0.5);
        let dy = rand_vec(13, rows * d, -1.0, 1.0);
        let want = reference(&x, &g, &b, &dy, rows, d);
        let (xd, gd, bd, dyd) = (
            dev.htod(&x).unwrap(),
            dev.htod(&g).unwrap(),
            dev.htod(&b).unwrap(),
            dev.htod(&dy).unwrap(),
        );
        let mut y = dev.alloc::<f32>(rows * d).unwrap();
        let mut mean = dev.alloc::<f32>(rows).unwrap();
        let mut std = dev.alloc::<f32>(rows).unwrap();
        layernorm::forward(
            &dev,
            y.view_mut(),
            Some((mean.view_mut(), std.view_mut())),
            xd.view(),
            gd.view(),
            bd.view(),
            rows,
            d,
            EPS,
        )
        .unwrap();
        // Normalised values are O(3); mean and variance in f32 over ≤ 2047 terms: 1e-5 relative.
        assert_close("layernorm y", &y.to_host().unwrap(), &want.y, 2e-5, 1e-5);
        assert_close(
            "layernorm mean",
            &mean.to_host().unwrap(),
            &want.mean,
            1e-6,
            1e-5,
        );
        assert_close(
            "layernorm std",
            &std.to_host().unwrap(),
            &want.std,
            1e-6,
            1e-5,
        );
        // Accumulated parameter gradients start from 1 and end at 1 + the gradient;
        // overwritten ones start from NaN, which must not show.
        let start = match params {
            ParamGrads::Accumulate => 1.0f32,
            ParamGrads::Overwrite => f32::NAN,
        };
        // The backward into fresh buffers: dx, dgamma, dbeta, and the launches it took.
        let backward = || {
            let mut dx = dev.alloc::<f32>(rows * d).unwrap();
            let mut dg = dev.htod(&vec![start; d]).unwrap();
            let mut db = dev.htod(&vec![start; d]).unwrap();
            let launches = aoanet::cuda::launches_on_this_thread();
            layernorm::backward(
                &dev,
                params,
                dx.view_mut(),
                dg.view_mut(),
                db.view_mut(),
                dyd.view(),
                xd.view(),
                gd.view(),
                mean.view(),
                std.view(),
                rows,
                d,
                EPS,
            )
            .unwrap();
            let launches = aoanet::cuda::launches_on_this_thread() - launches;
            (dx, dg, db, launches)
        };
        let (dx, dg, db, launches) = backward();
        // The input gradient, and the parameter gradients in one launch however many chunks
        // of rows (more than one: the last block of each column tile sums the chunks).
        assert_eq!(launches, 2, "{rows} rows");
        // Again (`cuda_util::repeats`): the same bits (the sum's order does not depend on
        // which block finishes last, and the tile counters were left at zero for the next
        // launch).
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (dg_bits, db_bits) = (bits(dg.to_host().unwrap()), bits(db.to_host().unwrap()));
        for _ in 1..cuda_util::repeats() {
            let (_, dg2, db2, _) = backward();
            assert_eq!(
                bits(dg2.to_host().unwrap()),
                dg_bits,
                "{rows} rows: dgamma bits"
            );
            assert_eq!(
                bits(db2.to_host().unwrap()),
                db_bits,
                "{rows} rows: dbeta bits"
            );
        }
        if check_params {
            let expected = |v: &[f64]| {
                v.iter()
                    .map(|x| {
                        x + if params == ParamGrads::Accumulate {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect::<Vec<_>>()
            };
            // Sums over up to 130 rows of O(3) terms in f32.
            assert_close(
                "layernorm dgamma",
                &dg.to_host().unwrap(),
                &expected(&want.dg),
                1e-4,
                1e-5,
            );
            assert_close(
                "layernorm dbeta",
                &db.to_host().unwrap(),
                &expected(&want.db),
                1e-4,
                1e-5,
            );
        } else {
            // dx subtracts two O(1) terms: 1e-4 absolute (r is up to 1/std ≈ 1 here).
            assert_close("layernorm dx", &dx.to_host().unwrap(), &want.dx, 1e-4, 1e-4);
        }
    }
}

#[test]
fn layernorm_fwd_f32_and_input_gradient_match_cpu() {
    run("layernorm_fwd_f32_and_input_gradient_match_cpu", false);
}

#[test]
fn layernorm_bwd_f32_matches_cpu() {
    run("layernorm_bwd_f32_matches_cpu", false);
}

#[test]
fn layernorm_bwd_params_f32_accumulates_like_cpu() {
    run("layernorm_bwd_params_f32_accumulates_like_cpu", true);
}

#[test]
fn no_rows_give_zero_or_unchanged_parameter_gradients() {
    let Some(dev) = gpu("no_rows_give_zero_or_unchanged_parameter_gradients") else {
        return;
    };
    let empty = dev.alloc::<f32>(0).unwrap();
    for (params, want) in [
        (ParamGrads::Accumulate, 1.0f32),
        (ParamGrads::Overwrite, 0.0),
    ] {
        let mut dx = dev.alloc::<f32>(0).unwrap();
        let mut dg = dev.htod(&[1.0f32; 3]).unwrap();
        let mut db = dev.htod(&[1.0f32; 3]).unwrap();
        let gamma = dev.htod(&[1.0f32; 3]).unwrap();
        layernorm::backward(
            &dev,
            params,
            dx.view_mut(),
            dg.view_mut(),
            db.view_mut(),
            empty.view(),
            empty.view(),
            gamma.view(),
            empty.view(),
            empty.view(),
            0,
            3,
            EPS,
        )
        .unwrap();
        assert_eq!(dg.to_host().unwrap(), vec![want; 3], "{params:?}");
        assert_eq!(db.to_host().unwrap(), vec![want; 3], "{params:?}");
    }
}

#[test]
fn layernorm_refuses_one_column() {
    let Some(dev) = gpu("layernorm_refuses_one_column") else {
        return;
    };
    let x = dev.htod(&[1.0f32; 4]).unwrap();
    let mut y = dev.alloc::<f32>(4).unwrap();
    assert!(
        layernorm::forward(
            &dev,
            y.view_mut(),
            None,
            x.view(),
            x.view(),
            x.view(),
            4,
            1,
            EPS
        )
        .is_err()
    );
}
