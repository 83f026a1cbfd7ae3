//! GPU softmax / log_softmax vs an f64 CPU reference.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::softmax;
use cuda_util::{assert_close, gpu, rand_vec};

fn reference(x: &[f32], rows: usize, cols: usize, log: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for r in 0..rows {
        let row: Vec<f64> = x[r * cols..(r + 1) * cols]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        out.extend(row.iter().map(|v| {
            if log {
                v - m - s.ln()
            } else {
                (v - m).exp() / s
            }
        }));
    }
    out
}

// Odd row lengths around the block sizes, 1 (a single element), and a vocabulary-sized row.
const SHAPES: [(usize, usize); 5] = [(3, 1), (7, 33), (5, 255), (4, 1000), (2, 9488)];

#[test]
fn softmax_fwd_f32_matches_cpu() {
    let Some(dev) = gpu("softmax_fwd_f32_matches_cpu") else {
        return;
    };
    for (rows, cols) in SHAPES {
        let x = rand_vec(rows as u64 * 31 + cols as u64, rows * cols, -4.0, 4.0);
        let xd = dev.htod(&x).unwrap();
        for log in [false, true] {
            let mut y = dev.alloc::<f32>(rows * cols).unwrap();
            softmax::forward(&dev, y.view_mut(), xd.view(), rows, cols, log).unwrap();
            // f32 exp is within 2 ulp and the sum of up to 9488 terms in f32 tree order loses
            // about log2(n)·ulp relative: 1e-5 relative. log-probs are sums of O(30) values:
            // 1e-5 absolute.
            let (atol, rtol) = if log { (1e-5, 1e-6) } else { (1e-9, 1e-5) };
            assert_close(
                &format!("softmax {rows}x{cols} log={log}"),
                &y.to_host().unwrap(),
                &reference(&x, rows, cols, log),
                atol,
                rtol,
            );
        }
    }
}

#[test]
fn softmax_bwd_f32_matches_cpu() {
    let Some(dev) = gpu("softmax_bwd_f32_matches_cpu") else {
        return;
    };
    for (rows, cols) in SHAPES {
        let x = rand_vec(rows as u64 + 7 * cols as u64, rows * cols, -3.0, 3.0);
        let dy = rand_vec(99 + cols as u64, rows * cols, -1.0, 1.0);
        for log in [false, true] {
            let y64 = reference(&x, rows, cols, log);
            let y: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
            let (yd, dyd) = (dev.htod(&y).unwrap(), dev.htod(&dy).unwrap());
            let mut dx = dev.alloc::<f32>(rows * cols).unwrap();
            softmax::backward(&dev, dx.view_mut(), yd.view(), dyd.view(), rows, cols, log).unwrap();
            let mut want = Vec::new();
            for r in 0..rows {
                let ys = &y[r * cols..(r + 1) * cols];
                let gs = &dy[r * cols..(r + 1) * cols];
                let dot: f64 = if log {
                    gs.iter().map(|&g| f64::from(g)).sum()
                } else {
                    ys.iter()
                        .zip(gs)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum()
                };
                for (&yv, &g) in ys.iter().zip(gs) {
                    let (yv, g) = (f64::from(yv), f64::from(g));
                    want.push(if log {
                        g - yv.exp() * dot
                    } else {
                        yv * (g - dot)
                    });
                }
            }
            // The row dot product (up to 9488 terms of size ≤ 8) in f32: ~1e-5 absolute.
            assert_close(
                &format!("softmax bwd {rows}x{cols} log={log}"),
                &dx.to_host().unwrap(),
                &want,
                2e-5,
                1e-5,
            );
        }
    }
}
