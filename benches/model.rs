//! Model benches at the reference's full size (`cargo bench --bench model [SECTION…]`): a list
//! of named sections, each timing one workload; name sections on the command line to run only
//! those (a prefix matches: `decode` runs every decoding section).
//!
//! Method: the model is AoaConfig::reference(9487) in f32 with random PyTorch-default weights;
//! inputs are 36 regions × 2048-d features drawn from U(0, 1) (bottom-up features are
//! non-negative); every workload runs once to warm up, then `AOANET_BENCH_REPS` times (3 by
//! default) and the best wall time is reported, per call and per image, with the best CPU
//! time (all threads; on a busy machine, CPU time ÷ threads is the better estimate of the
//! time alone). Threads: the library's
//! default (`AOANET_NUM_THREADS` overrides). Peak RSS is the process's high-water mark so far.
//!
//! With random weights no beam ever emits EOS (p ≈ 1/9488), so decoding always runs all
//! 20 steps: the worst case; a trained model's captions end after about 10 words, and beam
//! search stops an image once its result is settled.
//!
//! For scale, on the bench machine the authors' PyTorch code (2.15, 2 threads) takes 1.45 s
//! (0.72 s with MKL on AVX-512) for greedy and 17.9 s (4.8 s) for beam-3 decoding of 50
//! images; the targets are greedy ≤ 0.55 s and beam-3 ≤ 1.0 s.

use aoanet::autograd::no_grad;
use aoanet::model::{AoaConfig, AoaModel, DecodeOptions, beam_search, sample};
use aoanet::nn::Ctx;
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use std::time::Instant;

/// One named workload.
struct Section {
    name: &'static str,
    run: fn(&mut Shared),
}

/// Things sections share (built on first use: the full model takes a while).
#[derive(Default)]
struct Shared {
    model: Option<AoaModel>,
}

impl Shared {
    fn model(&mut self) -> &AoaModel {
        self.model.get_or_insert_with(|| {
            let t = Instant::now();
            let m = AoaModel::new(AoaConfig::reference(9487), DType::F32, 0).unwrap();
            println!(
                "model: {} parameters, built in {:.2} s",
                m.num_parameters(),
                t.elapsed().as_secs_f64()
            );
            m
        })
    }
}

const SECTIONS: &[Section] = &[
    Section {
        name: "decode.encode",
        run: decode_encode,
    },
    Section {
        name: "decode.greedy",
        run: decode_greedy,
    },
    Section {
        name: "decode.beam3",
        run: decode_beam3,
    },
];

const IMAGES: usize = 50;
const REGIONS: usize = 36;

fn reps() -> usize {
    std::env::var("AOANET_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// Best wall time and best CPU time (all threads, user + system) in seconds of `reps()` runs
/// of `f`, after one warm-up run. The CPU time is the figure to trust on a shared machine:
/// other processes stretch the wall time, not the work done.
fn best_of(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps() {
        let (t, c) = (Instant::now(), cpu_seconds());
        f();
        best.0 = best.0.min(t.elapsed().as_secs_f64());
        best.1 = best.1.min(cpu_seconds() - c);
    }
    best
}

/// This process's CPU time so far, every thread included (Linux `/proc/self/stat` utime +
/// stime at the usual 100 ticks per second; 0 elsewhere).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start at `) `.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// The process's peak resident set size in MB (Linux; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn report(name: &str, (wall, cpu): (f64, f64)) {
    println!(
        "{name}: {wall:.3} s per call of {IMAGES} images, {:.2} ms per image (best of {}); \
         CPU {cpu:.2} s on {} threads; peak RSS {:.0} MB",
        1e3 * wall / IMAGES as f64,
        reps(),
        aoanet::cpu::gemm::num_threads(),
        peak_rss_mb()
    );
}

fn features() -> Tensor {
    Tensor::uniform(
        &[IMAGES, REGIONS, 2048],
        0.0,
        1.0,
        DType::F32,
        &mut Philox::new(1),
    )
}

/// The encoder alone (att_embed, 6 refiner layers, ctx2att): the part every decode shares.
fn decode_encode(shared: &mut Shared) {
    let m = shared.model();
    let feats = features();
    let s = best_of(|| {
        no_grad(|| {
            m.encode(
                &feats,
                None,
                None,
                &mut Ctx::eval(&mut Philox::new(0)),
                None,
            )
        })
        .unwrap();
    });
    report("decode.encode", s);
}

/// Greedy decoding, encoding included (as the reference's `_sample`).
fn decode_greedy(shared: &mut Shared) {
    let m = shared.model();
    let feats = features();
    let opts = DecodeOptions::greedy(20);
    let s = best_of(|| {
        no_grad(|| {
            let mut rng = Philox::new(0);
            let mut ctx = Ctx::eval(&mut rng);
            let enc = m.encode(&feats, None, None, &mut ctx, None).unwrap();
            sample(m, &enc, &opts, &mut ctx, false).unwrap()
        });
    });
    report("decode.greedy", s);
}

/// Beam search with 3 beams, encoding included (as the reference's `_sample_beam`).
fn decode_beam3(shared: &mut Shared) {
    let m = shared.model();
    let feats = features();
    let opts = DecodeOptions::beam(3, 20);
    let s = best_of(|| {
        let enc = no_grad(|| {
            m.encode(
                &feats,
                None,
                None,
                &mut Ctx::eval(&mut Philox::new(0)),
                None,
            )
        })
        .unwrap();
        beam_search(m, &enc, &opts, false).unwrap();
    });
    report("decode.beam3", s);
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments name sections (prefixes).
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mut shared = Shared::default();
    for s in SECTIONS {
        if wanted.is_empty() || wanted.iter().any(|w| s.name.starts_with(w.as_str())) {
            (s.run)(&mut shared);
        }
    }
}
