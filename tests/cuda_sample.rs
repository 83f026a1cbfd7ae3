//! Drawing words on the GPU (`kernels/sample.cu`) against the exact inverse CDF computed in
//! f64 on the host: the word must be the f64 rule's except where `u · total` lies within
//! 1e-5 (relative) of a boundary of the cumulative distribution, where f32 exponentials may
//! move it; forbidden (−∞) words are never drawn; NaN and all −∞ rows give word 0; and the
//! tensor path (`model::categorical::Rows` on a device tensor) returns the kernel's words.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::Philox;
use aoanet::cuda::kernels::sample;
use aoanet::model::categorical::Rows;
use aoanet::tensor::{DType, Device, Tensor};
use cuda_util::{gpu, uniform};

/// Log-softmax rows, peaked like a decoder's, with every 13th word forbidden (−∞).
fn rows(rows: usize, classes: usize, seed: u64) -> Vec<f32> {
    let x = uniform(seed, rows * classes, 0.0, 1.0);
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(classes) {
        let logits: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(k, &u)| {
                if k % 13 == 7 {
                    f64::NEG_INFINITY
                } else {
                    12.0 * f64::from(u).powi(5) - 6.0
                }
            })
            .collect();
        let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        out.extend(logits.iter().map(|l| (l - lse) as f32));
    }
    out
}

/// The f64 inverse CDF of one row: the word, and the distance of `u` from the nearest
/// boundary of the normalised cumulative distribution.
fn exact(row: &[f32], u: f64) -> (usize, f64) {
    let p: Vec<f64> = row.iter().map(|&x| f64::from(x).exp()).collect();
    let total: f64 = p.iter().sum();
    let (mut acc, mut word, mut near) = (0.0, None, f64::INFINITY);
    for (k, &pk) in p.iter().enumerate() {
        if pk > 0.0 {
            acc += pk / total;
            near = near.min((acc - u).abs());
            if word.is_none() && acc > u {
                word = Some(k);
            }
        }
    }
    let last = p.iter().rposition(|&x| x > 0.0).unwrap_or(0);
    (word.unwrap_or(last), near)
}

#[test]
fn sample_rows_f32_follows_the_inverse_cdf() {
    let Some(dev) = gpu("sample_rows_f32_follows_the_inverse_cdf") else {
        return;
    };
    // One class, fewer classes than threads, not a multiple of 256, the vocabulary.
    for (r, c) in [(5, 1), (9, 40), (33, 1001), (50, 9488)] {
        let lp = rows(r, c, (r * c) as u64);
        let mut g = Philox::new(c as u64);
        let mut us: Vec<f64> = (0..r).map(|_| g.next_f64()).collect();
        us[0] = 0.0;
        if r > 1 {
            us[1] = 0.999_999_9;
        }
        let lpd = dev.htod(&lp).unwrap();
        let ud = dev.htod(&us).unwrap();
        let mut words = dev.alloc::<i32>(r).unwrap();
        sample::sample_rows(&dev, words.view_mut(), lpd.view(), ud.view(), r, c).unwrap();
        let words = words.to_host().unwrap();
        let mut differ = 0;
        for (i, (&w, &u)) in words.iter().zip(&us).enumerate() {
            let row = &lp[i * c..(i + 1) * c];
            assert!(w >= 0 && (w as usize) < c, "[{r}x{c}] row {i}: word {w}");
            assert!(
                row[w as usize] > f32::NEG_INFINITY,
                "[{r}x{c}] row {i}: drew forbidden word {w}"
            );
            let (want, near) = exact(row, u);
            if w as usize != want {
                differ += 1;
                assert!(
                    near < 1e-5,
                    "[{r}x{c}] row {i}, u {u}: word {w}, the inverse CDF gives {want}"
                );
            }
        }
        eprintln!("[{r}x{c}]: {differ} of {r} words differ from the f64 rule (at boundaries)");
    }
}

#[test]
fn sample_rows_f32_gives_zero_for_rows_without_a_finite_entry() {
    let Some(dev) = gpu("sample_rows_f32_gives_zero_for_rows_without_a_finite_entry") else {
        return;
    };
    let c = 300;
    let mut lp = rows(3, c, 4);
    lp[17] = f32::NAN;
    lp[c..2 * c].fill(f32::NEG_INFINITY);
    let lpd = dev.htod(&lp).unwrap();
    let ud = dev.htod(&[0.5f64, 0.5, 0.5]).unwrap();
    let mut words = dev.alloc::<i32>(3).unwrap();
    sample::sample_rows(&dev, words.view_mut(), lpd.view(), ud.view(), 3, c).unwrap();
    let words = words.to_host().unwrap();
    assert_eq!(&words[..2], [0, 0], "NaN row, all −∞ row");
    assert_eq!(words[2] as usize, exact(&lp[2 * c..], 0.5).0);
    let short = dev.htod(&[0.5f64]).unwrap();
    let mut w = dev.alloc::<i32>(3).unwrap();
    assert!(
        sample::sample_rows(&dev, w.view_mut(), lpd.view(), short.view(), 3, c).is_err(),
        "too few uniform numbers"
    );
}

/// `Rows` on an f32 device tensor draws on the device (the same words as the kernel), keeps
/// rows without a number undrawn, and agrees with the host path except at boundaries.
#[test]
fn sample_rows_f32_through_rows_on_a_device_tensor() {
    let Some(dev) = gpu("sample_rows_f32_through_rows_on_a_device_tensor") else {
        return;
    };
    let (r, c) = (20, 9488);
    let lp = rows(r, c, 8);
    let host = Tensor::from_vec(lp.clone(), &[r, 1, c]).unwrap();
    let device = host.to_device(Device::Cuda(dev.ordinal())).unwrap();
    assert_eq!(device.dtype(), DType::F32);
    let mut g = Philox::new(3);
    let us: Vec<f64> = (0..r).map(|_| g.next_f64()).collect();
    let pick = |i: usize| (i % 3 != 1).then(|| us[i]);
    let on_gpu = Rows::new(&device).unwrap().draw(pick).unwrap();
    let on_cpu = Rows::new(&host).unwrap().draw(pick).unwrap();
    for (i, (a, b)) in on_gpu.iter().zip(&on_cpu).enumerate() {
        assert_eq!(a.is_some(), i % 3 != 1, "row {i}");
        if let (Some(a), Some(b)) = (a, b)
            && a != b
        {
            let (_, near) = exact(&lp[i * c..(i + 1) * c], us[i]);
            assert!(near < 1e-5, "row {i}: GPU {a}, CPU {b}");
        }
    }
}

/// A negative number leaves the row's word as it was (scheduled sampling's kept labels);
/// through `Rows::draw_or_keep` the mixed words stay on the device and read back as the
/// host path's.
#[test]
fn sample_rows_f32_keeps_the_words_of_rows_with_a_negative_number() {
    let Some(dev) = gpu("sample_rows_f32_keeps_the_words_of_rows_with_a_negative_number") else {
        return;
    };
    let (r, c) = (6, 500);
    let lp = rows(r, c, 9);
    let lpd = dev.htod(&lp).unwrap();
    let us = [0.3f64, -1.0, 0.9, -0.5, 0.0, -1.0];
    let ud = dev.htod(&us).unwrap();
    let kept = [11i32, 22, 33, 44, 55, 66];
    let mut words = dev.htod(&kept).unwrap();
    sample::sample_rows(&dev, words.view_mut(), lpd.view(), ud.view(), r, c).unwrap();
    let words = words.to_host().unwrap();
    for (i, &u) in us.iter().enumerate() {
        if u < 0.0 {
            assert_eq!(words[i], kept[i], "row {i} keeps its word");
        } else {
            assert_eq!(
                words[i] as usize,
                exact(&lp[i * c..(i + 1) * c], u).0,
                "row {i}"
            );
        }
    }
    // The tensor path: draws on the device, words read only when asked for.
    let host = Tensor::from_vec(lp.clone(), &[r, c]).unwrap();
    let device = host.to_device(Device::Cuda(dev.ordinal())).unwrap();
    let keep: Vec<usize> = kept.iter().map(|&k| k as usize).collect();
    let pick = |i: usize| (us[i] >= 0.0).then_some(us[i]);
    let before = aoanet::cuda::waits_on_this_thread();
    let on_gpu = Rows::new(&device)
        .unwrap()
        .draw_or_keep(&keep, pick)
        .unwrap();
    assert!(
        on_gpu.host_if_known().is_none(),
        "the words stay on the device"
    );
    assert_eq!(
        aoanet::cuda::waits_on_this_thread(),
        before,
        "no wait to draw"
    );
    let on_cpu = Rows::new(&host).unwrap().draw_or_keep(&keep, pick).unwrap();
    assert_eq!(on_gpu.host().unwrap(), on_cpu.host().unwrap());
    assert_eq!(
        on_gpu.host().unwrap(),
        words.iter().map(|&w| w as usize).collect::<Vec<_>>()
    );
    // No row drawn: the kept words, on the host, without a launch.
    let none = Rows::new(&device)
        .unwrap()
        .draw_or_keep(&keep, |_| None)
        .unwrap();
    assert_eq!(none.host_if_known(), Some(keep.as_slice()));
    assert!(
        Rows::new(&device)
            .unwrap()
            .draw_or_keep(&keep[1..], pick)
            .is_err()
    );
}

/// One step of the decoding loop's bookkeeping over more rows than a block: rows that pick
/// EOS (0) finish, finished rows feed 0, the step's column of the captions is written and the
/// unfinished rows are counted into their step's slot (the others untouched).
#[test]
fn decode_advance_finishes_rows_and_counts_the_rest() {
    let Some(dev) = gpu("decode_advance_finishes_rows_and_counts_the_rest") else {
        return;
    };
    let (rows, len) = (1000, 3);
    let mut unfinished: Vec<i32> = (0..rows).map(|r| (r % 3 != 0) as i32).collect();
    let mut ud = dev.htod(&unfinished).unwrap();
    let mut seq = dev.zeros::<i32>(rows * len).unwrap();
    let mut alive = dev.zeros::<i32>(len).unwrap();
    let mut want_seq = vec![0i32; rows * len];
    let mut want_alive = vec![0i32; len];
    for t in [1, 2] {
        let words: Vec<i32> = (0..rows as i32).map(|r| (r * 7 + t as i32) % 5).collect();
        let wd = dev.htod(&words).unwrap();
        let mut it = dev.alloc::<i32>(rows).unwrap();
        sample::advance_words(
            &dev,
            it.view_mut(),
            ud.view_mut(),
            seq.view_mut(),
            alive.view_mut(),
            wd.view(),
            len,
            t,
        )
        .unwrap();
        let mut want_it = vec![0i32; rows];
        for r in 0..rows {
            let on = unfinished[r] != 0 && words[r] > 0;
            unfinished[r] = on as i32;
            want_it[r] = if on { words[r] } else { 0 };
            want_seq[r * len + t] = want_it[r];
            want_alive[t] += on as i32;
        }
        assert_eq!(it.to_host().unwrap(), want_it, "step {t}: inputs");
        assert_eq!(
            ud.to_host().unwrap(),
            unfinished,
            "step {t}: unfinished rows"
        );
    }
    assert_eq!(seq.to_host().unwrap(), want_seq, "captions");
    assert_eq!(alive.to_host().unwrap(), want_alive, "counts");
    assert!(want_alive[2] > 0 && want_alive[2] < want_alive[1]);
    let wd = dev.zeros::<i32>(rows).unwrap();
    let mut it = dev.alloc::<i32>(rows).unwrap();
    let step_past_end = sample::advance_words(
        &dev,
        it.view_mut(),
        ud.view_mut(),
        seq.view_mut(),
        alive.view_mut(),
        wd.view(),
        len,
        len,
    );
    assert!(step_past_end.is_err(), "a step past the loop's end");
}

/// Later reads give the values queued, whichever order they are collected in, dropped ones
/// give their slot back (more reads than slots over the test), and reads too large for a slot
/// happen at once.
#[test]
fn read_later_gives_the_values_queued() {
    let Some(dev) = gpu("read_later_gives_the_values_queued") else {
        return;
    };
    let values: Vec<i32> = (0..300).map(|i| i * 3 - 7).collect();
    let buf = dev.htod(&values).unwrap();
    for round in 0..3 {
        let reads: Vec<_> = (0..40)
            .map(|i| dev.read_later(buf.slice(i..i + 3).unwrap()).unwrap())
            .collect();
        for (i, read) in reads.into_iter().enumerate().rev() {
            if (i + round) % 4 == 0 {
                drop(read);
                continue;
            }
            assert_eq!(read.wait().unwrap(), values[i..i + 3], "read {i}");
        }
    }
    let before = aoanet::cuda::waits_on_this_thread();
    let big = dev.read_later(buf.view()).unwrap();
    assert_eq!(
        aoanet::cuda::waits_on_this_thread() - before,
        1,
        "a large read waits at once"
    );
    assert_eq!(big.wait().unwrap(), values);
}

/// The stable descending order's first `k` (value descending, index ascending; NaN skipped).
fn host_topk(row: &[f32], k: usize) -> Vec<(f32, i32)> {
    let mut idx: Vec<usize> = (0..row.len()).filter(|&j| !row[j].is_nan()).collect();
    idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
    let mut out: Vec<(f32, i32)> = idx.iter().take(k).map(|&j| (row[j], j as i32)).collect();
    out.resize(k, (f32::NEG_INFINITY, -1));
    out
}

#[test]
fn topk_rows_f32_is_a_stable_descending_sort_prefix() {
    let Some(dev) = gpu("topk_rows_f32_is_a_stable_descending_sort_prefix") else {
        return;
    };
    for (r, c, k) in [
        (3, 1, 4),
        (5, 40, 6),
        (7, 1001, 3),
        (150, 9488, 6),
        (2, 300, 300),
    ] {
        let mut x = rows(r, c, (r + c + k) as u64);
        // Ties (equal values at several indices), −∞ runs and a NaN.
        for row in x.chunks_exact_mut(c) {
            for j in (0..c).step_by(5) {
                row[j] = row[0];
            }
        }
        if c > 3 {
            x[2] = f32::NAN;
            x[c..2 * c].fill(f32::NEG_INFINITY);
        }
        let xd = dev.htod(&x).unwrap();
        let mut vals = dev.alloc::<f32>(r * k).unwrap();
        let mut idx = dev.alloc::<i32>(r * k).unwrap();
        sample::topk_rows(&dev, vals.view_mut(), idx.view_mut(), xd.view(), r, c, k).unwrap();
        let (vals, idx) = (vals.to_host().unwrap(), idx.to_host().unwrap());
        for i in 0..r {
            let want = host_topk(&x[i * c..(i + 1) * c], k);
            let got: Vec<(f32, i32)> = (0..k).map(|j| (vals[i * k + j], idx[i * k + j])).collect();
            assert_eq!(got, want, "[{r}x{c}] k {k} row {i}");
        }
    }
}
