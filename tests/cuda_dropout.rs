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
