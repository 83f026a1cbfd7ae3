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

/// Column sums in one launch: one chunk of rows, 10 chunks over three column tiles (a bias
/// gradient's shape), and 256 chunks of 274 rows; accumulated into what `out` holds; the same
/// bits on every repeat (the chunks are summed in order by whichever block finishes last, and
/// the tile counters are left at zero).
#[test]
fn sum_cols_f32_sums_chunks_in_one_launch_deterministically() {
    let Some(dev) = gpu("sum_cols_f32_sums_chunks_in_one_launch_deterministically") else {
        return;
    };
    for (rows, cols) in [(1usize, 7usize), (300, 300), (70_000, 5)] {
        let x = rand_vec(rows as u64, rows * cols, -1.0, 1.0);
        let xd = dev.htod(&x).unwrap();
        let mut out = dev.htod(&vec![2.0f32; cols]).unwrap();
        let before = aoanet::cuda::launches_on_this_thread();
        reduce::sum_cols(&dev, out.view_mut(), xd.view(), rows, cols, true).unwrap();
        assert_eq!(
            aoanet::cuda::launches_on_this_thread() - before,
            1,
            "{rows} rows"
        );
        let first = out.to_host().unwrap();
        let want: Vec<f64> = (0..cols)
            .map(|j| 2.0 + (0..rows).map(|r| f64::from(x[r * cols + j])).sum::<f64>())
            .collect();
        // Chunked f32 sums of 70000 terms of size ≤ 8: ~256·ulp·|partial| per chunk: 2e-3.
        assert_close("sum_cols", &first, &want, 2e-3, 1e-5);
        // Deterministic: the same call gives the same bits.
        for _ in 1..cuda_util::repeats() {
            let mut again = dev.htod(&vec![2.0f32; cols]).unwrap();
            reduce::sum_cols(&dev, again.view_mut(), xd.view(), rows, cols, true).unwrap();
            assert_eq!(again.to_host().unwrap(), first, "{rows} rows: repeated");
        }
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

/// `count_nonfinite_multi_*` counts every NaN and ±∞ of many tensors in one launch: bad
/// values at the first and last element and on both sides of the kernel's 16384-element chunk
/// edges, an empty tensor and a one-element one among them.
fn nonfinite_many<T: aoanet::cuda::CudaFloat>(test: &str) {
    let Some(dev) = gpu(test) else {
        return;
    };
    let sizes = [16_383usize, 16_384, 0, 16_385, 1, 40_000];
    let bad_at: [&[usize]; 6] = [
        &[0],
        &[16_383],
        &[],
        &[16_383, 16_384],
        &[],
        &[0, 16_384, 32_767, 32_768, 39_999],
    ];
    let bads = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let mut placed = 0u32;
    let mut bufs = Vec::new();
    for (k, (&n, at)) in sizes.iter().zip(bad_at).enumerate() {
        let mut v: Vec<T> = rand_vec(60 + k as u64, n, -1e30, 1e30)
            .into_iter()
            .map(|x| T::from_f64(f64::from(x)))
            .collect();
        for (j, &i) in at.iter().enumerate() {
            v[i] = T::from_f64(bads[(k + j) % 3]);
            placed += 1;
        }
        bufs.push(dev.htod(&v).unwrap());
    }
    let views: Vec<_> = bufs.iter().map(|b| b.view()).collect();
    let mut count = dev.zeros::<u32>(1).unwrap();
    reduce::add_nonfinite_many(&dev, count.view_mut(), &views).unwrap();
    assert_eq!(count.to_host().unwrap()[0], placed, "{test}: all tensors");
    // Each tensor alone agrees with the one-tensor kernel.
    for (k, view) in views.iter().enumerate() {
        let mut one = dev.zeros::<u32>(1).unwrap();
        reduce::add_nonfinite_many(&dev, one.view_mut(), std::slice::from_ref(view)).unwrap();
        let single = reduce::count_nonfinite(&dev, *view).unwrap();
        assert_eq!(
            u64::from(one.to_host().unwrap()[0]),
            single,
            "{test}: tensor {k}"
        );
        assert_eq!(single, bad_at[k].len() as u64, "{test}: tensor {k}");
    }
    let mut none = dev.zeros::<u32>(1).unwrap();
    reduce::add_nonfinite_many::<T>(&dev, none.view_mut(), &[]).unwrap();
    assert_eq!(none.to_host().unwrap()[0], 0);
}

#[test]
fn count_nonfinite_multi_f32_counts_across_tensors_and_chunk_edges() {
    nonfinite_many::<f32>("count_nonfinite_multi_f32_counts_across_tensors_and_chunk_edges");
}

#[test]
fn count_nonfinite_multi_f64_counts_across_tensors_and_chunk_edges() {
    nonfinite_many::<f64>("count_nonfinite_multi_f64_counts_across_tensors_and_chunk_edges");
}
