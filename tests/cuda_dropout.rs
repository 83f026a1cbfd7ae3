//! GPU Philox words and dropout masks equal the CPU's, word for word.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::dropout;
use aoanet::rng::{Philox, PhiloxState};
use cuda_util::{gpu, rand_vec};

#[test]
fn philox_u32_equals_the_cpu_generator() {
    let Some(dev) = gpu("philox_u32_equals_the_cpu_generator") else {
        return;
    };
    // Offsets not multiples of 4, a stream and seed with high bits set, a block counter past 2^32.
    for (seed, stream, offset, n) in [
        (0u64, 0u64, 0u64, 1usize),
        (42, 7, 3, 1001),
        (u64::MAX - 5, 1 << 40, (1 << 34) + 2, 4099),
    ] {
        let mut out = dev.alloc::<u32>(n).unwrap();
        dropout::philox_words(
            &dev,
            out.view_mut(),
            PhiloxState {
                seed,
                stream,
                offset,
            },
        )
        .unwrap();
        let mut cpu = Philox::from_state(PhiloxState {
            seed,
            stream,
            offset,
        });
        let mut want = vec![0u32; n];
        cpu.fill_u32(&mut want);
        assert_eq!(
            out.to_host().unwrap(),
            want,
            "seed {seed} stream {stream} offset {offset}"
        );
    }
}

#[test]
fn dropout_f32_mask_and_scale_match_the_cpu_rule() {
    let Some(dev) = gpu("dropout_f32_mask_and_scale_match_the_cpu_rule") else {
        return;
    };
    let n = 100_003;
    let x = rand_vec(9, n, -1.0, 1.0);
    let xd = dev.htod(&x).unwrap();
    for (p, offset) in [(0.1f64, 0u64), (0.5, 13), (0.3, 1 << 33)] {
        let state = PhiloxState {
            seed: 1234,
            stream: 5,
            offset,
        };
        let mut y = dev.alloc::<f32>(n).unwrap();
        dropout::dropout(&dev, y.view_mut(), xd.view(), p, state).unwrap();
        let got = y.to_host().unwrap();
        let g = Philox::from_state(PhiloxState { offset: 0, ..state });
        // The CPU's scale: formed in f64, rounded once.
        let scale = (1.0 / (1.0 - p)) as f32;
        let mut kept = 0usize;
        for (i, (&gv, &xv)) in got.iter().zip(&x).enumerate() {
            let keep = aoanet::cuda::dropout_keep(g.word_at(offset + i as u64), p as f32);
            kept += usize::from(keep);
            // Exact: the same f32 product on both sides.
            assert_eq!(gv, if keep { xv * scale } else { 0.0 }, "element {i} p {p}");
        }
        let frac = kept as f64 / n as f64;
        assert!((frac - (1.0 - p)).abs() < 0.01, "kept {frac} for p {p}");
    }
}

/// The fused LSTM input kernel on its own: a word outside the table gives a row of NaN in the
/// embedding half (not the ReLU's 0), the other half stays `base + x`; without dropout the
/// embedding half is the ReLU of the table's row.
#[test]
fn lstm_input_f32_poisons_bad_words_and_keeps_the_rest() {
    let Some(dev) = gpu("lstm_input_f32_poisons_bad_words_and_keeps_the_rest") else {
        return;
    };
    let (vocab, e, d) = (5usize, 3usize, 2usize);
    let table = rand_vec(1, vocab * e, -1.0, 1.0);
    let ids: Vec<i32> = vec![4, -1, 5, 0];
    let rows = ids.len();
    let (base, x) = (
        rand_vec(2, rows * d, -1.0, 1.0),
        rand_vec(3, rows * d, -1.0, 1.0),
    );
    let (td, idd) = (dev.htod(&table).unwrap(), dev.htod(&ids).unwrap());
    let (bd, xd) = (dev.htod(&base).unwrap(), dev.htod(&x).unwrap());
    let mut y = dev.alloc::<f32>(rows * (e + d)).unwrap();
    let dims = dropout::LstmInputDims {
        rows,
        embed: e,
        width: d,
        vocab,
    };
    let none = dropout::HalfDropout::NONE;
    dropout::lstm_input(
        &dev,
        y.view_mut(),
        td.view(),
        idd.view(),
        bd.view(),
        xd.view(),
        dims,
        [none, none],
    )
    .unwrap();
    let y = y.to_host().unwrap();
    for (r, &id) in ids.iter().enumerate() {
        let row = &y[r * (e + d)..(r + 1) * (e + d)];
        for c in 0..e {
            if (0..vocab as i32).contains(&id) {
                assert_eq!(
                    row[c],
                    table[id as usize * e + c].max(0.0),
                    "row {r} col {c}"
                );
            } else {
                assert!(row[c].is_nan(), "word {id}: row {r} col {c} is {}", row[c]);
            }
        }
        for c in 0..d {
            assert_eq!(
                row[e + c],
                base[r * d + c] + x[r * d + c],
                "row {r} col {}",
                e + c
            );
        }
    }
}
