//! Row-wise kernels in GB/s: softmax, log_softmax and the reference LayerNorm, forward and
//! backward, at the model's shapes. The baseline, measured in the same run, is a plain copy
//! of the same bytes (the memory-bound floor); each line reports the ratio to it. Also: the
//! dropout masks of one XE step and the word sampling of one self-critical step, each against
//! the simple implementation it replaced.
//!
//! `cargo bench --bench ops`

use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use std::hint::black_box;
use std::time::Instant;

/// Best wall time of `reps` runs of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Dropout at the size of one full XE step: about 10.6 M elements (att_embed 0.37 M; six
/// refiner layers of attention probabilities, AoA input and residual, 7.3 M; 17 decoder steps
/// of embedding, context, attention probabilities and output, 2.9 M). Baseline: the same
/// keep decisions drawn one word at a time through `RngCore::next_u32`.
fn dropout_masks() {
    use rand::RngCore;
    let n = 10_600_000;
    let x = Tensor::ones(&[n], DType::F32);
    let fast = best(5, || {
        black_box(x.dropout(0.3, true, &mut Philox::new(9)).unwrap());
    });
    let slow = best(5, || {
        let mut g = Philox::new(9);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if aoanet::ops::dropout_keeps(g.next_u32(), 0.3) {
                    1.0 / 0.7
                } else {
                    0.0
                }
            })
            .collect();
        black_box(v);
    });
    println!(
        "dropout {n} elements (one XE step): {:.1} ms; word-at-a-time baseline {:.1} ms ({:.1}x)",
        fast * 1e3,
        slow * 1e3,
        slow / fast
    );
}

/// The host sampling of one self-critical step: 16 steps × 50 rows of a 9488-word
/// log-softmax (`model::categorical::Rows`, f32 with vectorised `exp`). Baseline: the `f64`
/// rule (`sample_from_logprobs`, two libm `exp` per entry) on the same rows and uniforms.
fn sampling() {
    use aoanet::model::categorical::Rows;
    let (steps, rows, classes) = (16, 50, 9488);
    let mut rng = Philox::new(12);
    let lp = Tensor::randn(&[rows, classes], DType::F32, &mut rng)
        .mul_scalar(3.0)
        .unwrap()
        .log_softmax()
        .unwrap();
    let lp64 = lp.to_vec_f64();
    let uniforms: Vec<f64> = (0..steps * rows).map(|_| rng.next_f64()).collect();
    let mut fast_words = Vec::new();
    let fast = best(5, || {
        fast_words.clear();
        for step in uniforms.chunks_exact(rows) {
            fast_words.extend(Rows::new(&lp).unwrap().draw_all(step).unwrap());
        }
    });
    let mut slow_words = Vec::new();
    let slow = best(5, || {
        slow_words.clear();
        for step in uniforms.chunks_exact(rows) {
            slow_words.extend(step.iter().enumerate().map(|(i, &u)| {
                aoanet::model::sample_from_logprobs(&lp64[i * classes..(i + 1) * classes], u)
            }));
        }
    });
    let same = fast_words
        .iter()
        .zip(&slow_words)
        .filter(|(a, b)| a == b)
        .count();
    println!(
        "sampling {steps} steps x {rows} rows x {classes} words (one SCST step): {:.2} ms; f64 \
         baseline {:.2} ms ({:.1}x); same word in {same} of {} draws",
        fast * 1e3,
        slow * 1e3,
        slow / fast,
        slow_words.len()
    );
}

fn main() {
    aoanet::cpu::alloc::keep_large_blocks();
    let mut rng = Philox::new(1);
    let reps = 15;
    println!("threads: {}", aoanet::cpu::num_threads());
    dropout_masks();
    sampling();
    for (what, rows, cols) in [
        ("logits", 850, 9488),
        ("logits (one step)", 50, 9488),
        ("refiner", 360, 1024),
        ("scores", 2880, 36),
    ] {
        let x = Tensor::randn(&[rows, cols], DType::F32, &mut rng);
        let bytes = (rows * cols * 4) as f64;
        let copy = best(reps, || {
            black_box(x.deep_copy().unwrap());
        });
        // Read + write of the tensor: 2 × bytes moved.
        let report = |name: &str, secs: f64, passes: f64| {
            let gbs = passes * bytes / secs / 1e9;
            let base = 2.0 * bytes / copy / 1e9;
            println!(
                "{name} [{rows}x{cols}] ({what}): {gbs:.1} GB/s ({:.2}x of a copy at {base:.1} GB/s)",
                gbs / base
            );
        };
        let t = best(reps, || {
            black_box(x.softmax().unwrap());
        });
        report("softmax fwd", t, 2.0);
        let t = best(reps, || {
            black_box(x.log_softmax().unwrap());
        });
        report("log_softmax fwd", t, 2.0);
        let xg = x.requiring_grad();
        let g = Tensor::randn(&[rows, cols], DType::F32, &mut rng);
        let t = best(reps, || {
            let y = xg.log_softmax().unwrap();
            y.backward_with(g.clone()).unwrap();
            xg.zero_grad();
        });
        // Forward (read x, write y) + backward (read g, y; write dx).
        report("log_softmax fwd+bwd", t, 5.0);
        let (a, b) = (
            Tensor::ones(&[cols], DType::F32),
            Tensor::zeros(&[cols], DType::F32),
        );
        if cols >= 2 {
            let t = best(reps, || {
                black_box(x.layer_norm(&a, &b, 1e-6).unwrap());
            });
            report("layer_norm fwd", t, 2.0);
            let (ag, bg) = (a.requiring_grad(), b.requiring_grad());
            let t = best(reps, || {
                let y = xg.layer_norm(&ag, &bg, 1e-6).unwrap();
                y.backward_with(g.clone()).unwrap();
                xg.zero_grad();
                ag.zero_grad();
                bg.zero_grad();
            });
            report("layer_norm fwd+bwd", t, 5.0);
        }
    }
}
