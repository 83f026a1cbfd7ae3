//! GPU reductions vs f64 CPU.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::reduce::{self, Reduce};
use cuda_util::{assert_close, gpu, rand_vec};

#[test]
fn reduce_rows_f32_sum_mean_max_and_accumulate() {
    let Some(dev) = gpu("reduce_rows_f32_sum_mean_max_and_accumulate") else {
        return;
    };
    for (rows, cols) in [(3usize, 1usize), (9, 33), (4, 9488)] {
        let x = rand_vec(rows as u64 + cols as u64, rows * cols, -2.0, 2.0);
        let xd = dev.htod(&x).unwrap();
        for op in [Reduce::Sum, Reduce::Mean, Reduce::Max] {
            let mut out = dev.htod(&vec![0.5f32; rows]).unwrap();
            reduce::rows(
                &dev,
                out.view_mut(),
                xd.view(),
                rows,
                cols,
                op,
                op == Reduce::Sum,
            )
            .unwrap();
            let want: Vec<f64> = x
                .chunks(cols)
                .map(|r| {
                    let s: f64 = r.iter().map(|&v| f64::from(v)).sum();
                    match op {
                        Reduce::Sum => s + 0.5, // accumulated onto 0.5
                        Reduce::Mean => s / cols as f64,
                        Reduce::Max => r.iter().map(|&v| f64::from(v)).fold(f64::MIN, f64::max),
                    }
                })
                .collect();
            // f32 tree sums of ≤ 9488 terms of size ≤ 16: 1e-4 absolute; max is exact.
            assert_close(
                &format!("reduce_rows {op:?}"),
                &out.to_host().unwrap(),
                &want,
                1e-4,
                1e-6,
            );
        }
    }
}

#[test]
fn reduce_axis_f32_reduces_the_middle_axis() {
    let Some(dev) = gpu("reduce_axis_f32_reduces_the_middle_axis") else {
        return;
    };
    let (o, l, i) = (3usize, 17usize, 5usize);
    let x = rand_vec(21, o * l * i, -1.0, 1.0);
    let xd = dev.htod(&x).unwrap();
    for op in [Reduce::Sum, Reduce::Mean, Reduce::Max] {
        let mut out = dev.alloc::<f32>(o * i).unwrap();
        reduce::axis(&dev, out.view_mut(), xd.view(), [o, l, i], op).unwrap();
        let mut want = vec![];
        for a in 0..o {
            for c in 0..i {
                let vals: Vec<f64> = (0..l).map(|b| f64::from(x[(a * l + b) * i + c])).collect();
                let s: f64 = vals.iter().sum();
                want.push(match op {
                    Reduce::Sum => s,
                    Reduce::Mean => s / l as f64,
                    Reduce::Max => vals.iter().cloned().fold(f64::MIN, f64::max),
                });
            }
        }
        // Sequential f32 sums of 17 terms of size ≤ 8.
        assert_close(
            &format!("reduce_axis {op:?}"),
            &out.to_host().unwrap(),
            &want,
            1e-5,
            1e-6,
        );
    }
}

#[test]
fn sum_cols_f32_chains_chunks_deterministically() {
    let Some(dev) = gpu("sum_cols_f32_chains_chunks_deterministically") else {
        return;
    };
    // 70_000 rows: three launches (70000 -> 274 -> 2 -> 1 chunks).
    for (rows, cols) in [(1usize, 7usize), (300, 33), (70_000, 5)] {
        let x = rand_vec(rows as u64, rows * cols, -1.0, 1.0);
        let xd = dev.htod(&x).unwrap();
        let mut out = dev.htod(&vec![2.0f32; cols]).unwrap();
        reduce::sum_cols(&dev, out.view_mut(), xd.view(), rows, cols, true).unwrap();
        let first = out.to_host().unwrap();
        let want: Vec<f64> = (0..cols)
            .map(|j| 2.0 + (0..rows).map(|r| f64::from(x[r * cols + j])).sum::<f64>())
            .collect();
        // Chunked f32 sums of 70000 terms of size ≤ 8: ~256·ulp·|partial| per chunk: 2e-3.
        assert_close("sum_cols", &first, &want, 2e-3, 1e-5);
        // Deterministic: the same call gives the same bits.
        let mut again = dev.htod(&vec![2.0f32; cols]).unwrap();
        reduce::sum_cols(&dev, again.view_mut(), xd.view(), rows, cols, true).unwrap();
        assert_eq!(again.to_host().unwrap(), first);
    }
}

#[test]
fn argmax_rows_f32_takes_the_first_maximum() {
    let Some(dev) = gpu("argmax_rows_f32_takes_the_first_maximum") else {
        return;
    };
    let (rows, cols) = (6usize, 9488usize);
    let mut x = rand_vec(77, rows * cols, -1.0, 1.0);
    x[2 * cols + 100] = 50.0;
    x[2 * cols + 9000] = 50.0; // tie: the first index wins
    x[5 * cols + 9487] = 60.0; // the last column
    let xd = dev.htod(&x).unwrap();
    let mut idx = dev.alloc::<i32>(rows).unwrap();
    let mut val = dev.alloc::<f32>(rows).unwrap();
    reduce::argmax(&dev, idx.view_mut(), val.view_mut(), xd.view(), rows, cols).unwrap();
    let (gi, gv) = (idx.to_host().unwrap(), val.to_host().unwrap());
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().cloned().fold(f32::MIN, f32::max);
        let first = row.iter().position(|&v| v == m).unwrap();
        assert_eq!((gi[r] as usize, gv[r]), (first, m), "row {r}");
    }
}
