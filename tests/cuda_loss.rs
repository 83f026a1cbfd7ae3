//! GPU label-smoothed KL loss fused with log_softmax vs f64 CPU (AOANET.md 2.3).
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::loss;
use cuda_util::{assert_close, gpu, rand_vec};

/// Per-row KL(q || softmax(x)) · w and its gradient w (softmax - q) · scale.
fn reference(
    x: &[f32],
    y: &[i32],
    w: &[f32],
    v: usize,
    s: f64,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut l, mut d) = (vec![], vec![]);
    for (r, row) in x.chunks(v).enumerate() {
        let row: Vec<f64> = row.iter().map(|&a| f64::from(a)).collect();
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + row.iter().map(|a| (a - m).exp()).sum::<f64>().ln();
        let q = |k: usize| {
            if k == y[r] as usize {
                1.0 - s
            } else {
                s / (v - 1) as f64
            }
        };
        let kl: f64 = (0..v)
            .map(|k| {
                if q(k) > 0.0 {
                    q(k) * (q(k).ln() - (row[k] - lse))
                } else {
                    0.0
                }
            })
            .sum();
        l.push(f64::from(w[r]) * kl);
        d.extend((0..v).map(|k| scale * f64::from(w[r]) * ((row[k] - lse).exp() - q(k))));
    }
    (l, d)
}

#[test]
fn label_smooth_fwd_f32_and_bwd_match_cpu() {
    let Some(dev) = gpu("label_smooth_fwd_f32_and_bwd_match_cpu") else {
        return;
    };
    for (rows, v, s) in [(3usize, 2usize, 0.2f32), (17, 1001, 0.2), (5, 9488, 0.0)] {
        let x = rand_vec(rows as u64 + v as u64, rows * v, -5.0, 5.0);
        let y: Vec<i32> = (0..rows).map(|r| ((r * 7919) % v) as i32).collect();
        // The caption mask: some rows weighted 0 (padding).
        let w: Vec<f32> = (0..rows)
            .map(|r| if r % 4 == 3 { 0.0 } else { 1.0 })
            .collect();
        let scale = 1.0 / w.iter().sum::<f32>();
        // The upstream gradient, read on the device: the gradient scales with it.
        let upstream = 0.5f32;
        let (want_l, want_d) = reference(
            &x,
            &y,
            &w,
            v,
            f64::from(s),
            f64::from(scale) * f64::from(upstream),
        );
        let (xd, yd, wd) = (
            dev.htod(&x).unwrap(),
            dev.htod(&y).unwrap(),
            dev.htod(&w).unwrap(),
        );
        let mut l = dev.alloc::<f32>(rows).unwrap();
        let mut lse = dev.alloc::<f32>(rows).unwrap();
        loss::forward(
            &dev,
            l.view_mut(),
            Some(lse.view_mut()),
            xd.view(),
            yd.view(),
            Some(wd.view()),
            rows,
            v,
            s,
        )
        .unwrap();
        // The loss combines sums over V ≤ 9488 logits of size ≤ 40 (outliers) in f32:
        // 1e-5 relative of Σ|x| ≈ 1e-5·V·5: 1e-3 absolute for the largest vocabulary.
        assert_close(
            &format!("loss V={v}"),
            &l.to_host().unwrap(),
            &want_l,
            1e-3,
            1e-5,
        );
        let mut d = dev.alloc::<f32>(rows * v).unwrap();
        let up = dev.htod(&[upstream]).unwrap();
        loss::backward(
            &dev,
            d.view_mut(),
            xd.view(),
            lse.view(),
            yd.view(),
            Some(wd.view()),
            Some(up.view()),
            rows,
            v,
            s,
            scale,
        )
        .unwrap();
        // Probabilities through expf(x - lse): 1e-6 relative of values ≤ 1, scaled by ≤ 1.
        assert_close(
            &format!("dlogits V={v}"),
            &d.to_host().unwrap(),
            &want_d,
            1e-7,
            1e-5,
        );
    }
}

#[test]
fn label_smooth_bwd_f32_without_weights_is_softmax_minus_q() {
    let Some(dev) = gpu("label_smooth_bwd_f32_without_weights_is_softmax_minus_q") else {
        return;
    };
    let (rows, v) = (4usize, 33usize);
    let x = rand_vec(3, rows * v, -2.0, 2.0);
    let y: Vec<i32> = vec![0, 32, 5, 5];
    let ones = vec![1.0f32; rows];
    let (_, want) = reference(&x, &y, &ones, v, 0.1, 1.0);
    let (xd, yd) = (dev.htod(&x).unwrap(), dev.htod(&y).unwrap());
    let mut l = dev.alloc::<f32>(rows).unwrap();
    let mut lse = dev.alloc::<f32>(rows).unwrap();
    loss::forward(
        &dev,
        l.view_mut(),
        Some(lse.view_mut()),
        xd.view(),
        yd.view(),
        None,
        rows,
        v,
        0.1,
    )
    .unwrap();
    let mut d = dev.alloc::<f32>(rows * v).unwrap();
    loss::backward(
        &dev,
        d.view_mut(),
        xd.view(),
        lse.view(),
        yd.view(),
        None,
        None,
        rows,
        v,
        0.1,
        1.0,
    )
    .unwrap();
    assert_close("dlogits", &d.to_host().unwrap(), &want, 1e-7, 1e-5);
}
