//! Training throughput at the reference's full model size (AoaConfig::reference: D = 1024, 8
//! heads, 6 refiner layers) on the synthetic world at full feature size (2048-value regions,
//! 10–100 per image), 10 images × 5 captions per step: seconds per step, images per second and
//! the share of each phase (data, forward, backward, optimizer, reward), for the XE stage and
//! the SCST stage (rewards overlapped with the greedy baseline, and not).
//!
//! The synthetic grammar has 46 words; the vocabulary is padded with unused words to
//! `AOANET_BENCH_VOCAB` (default 9487, the reference's) so the output layer costs what it
//! costs on COCO. SCST starts from random weights, so its samples run the full 20 steps
//! (a trained model's stop earlier): an upper bound.
//!
//! `cargo bench --bench train` (`AOANET_BENCH_STEPS`, default 4 timed steps after 1 warm-up).

use aoanet::data::{CaptionsBuilder, Dataset, FeatureStoreWriter, SynthConfig, Vocab, World};
use aoanet::model::AoaConfig;
use aoanet::train::{PhaseTimes, Stage, TrainEnv, TrainOptions, Trainer};
use std::sync::Arc;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The world with its vocabulary padded to `vocab` words (the token ids are unchanged).
fn world(vocab: usize) -> Dataset {
    let w = World::generate(&SynthConfig {
        train: 120,
        val: 10,
        test: 10,
        min_regions: 10,
        max_regions: 100,
        dim: 2048,
        ..SynthConfig::default()
    })
    .unwrap();
    let d = w.dataset;
    let mut words = d.vocab.words().to_vec();
    let mut k = 0;
    while words.len() < vocab {
        words.push(format!("unused{k}"));
        k += 1;
    }
    let v = Vocab::new(words).unwrap();
    let mut caps = CaptionsBuilder::new(v.len(), d.captions.max_length());
    for img in d.captions.iter() {
        caps.add_image(img.id, img.split).unwrap();
        for j in 0..img.len() {
            caps.add_caption(img.tokens(j), img.raw(j)).unwrap();
        }
    }
    let f = &d.features;
    let mut store = FeatureStoreWriter::in_memory("bench world", f.dtype(), f.dim(), true).unwrap();
    for id in f.image_ids() {
        let r = f.get(id).unwrap();
        store.push(id, &r.feats.to_f32_vec(), r.boxes).unwrap();
    }
    Dataset::new(store.finish().unwrap(), caps.finish().unwrap(), v).unwrap()
}

fn report(name: &str, p: &PhaseTimes, wall: f64) {
    let steps = p.steps.max(1) as f64;
    let total = p.total();
    println!(
        "{name}: {:.3} s/step, {:.1} images/s ({} steps, {} images, {:.1} s wall)",
        total / steps,
        p.images as f64 / total,
        p.steps,
        p.images,
        wall
    );
    for (phase, t) in [
        ("data", p.data),
        ("forward", p.forward),
        ("backward", p.backward),
        ("optimizer", p.optimizer),
        ("reward", p.reward),
    ] {
        println!(
            "    {phase:<10} {:>9.1} ms/step  {:>5.1}%",
            1e3 * t / steps,
            100.0 * t / total.max(1e-12)
        );
    }
    if p.reward_work > 0.0 {
        println!(
            "    (reward scoring work {:.2} ms/step, wherever it ran)",
            1e3 * p.reward_work / steps
        );
    }
}

fn bench(name: &str, data: &Arc<Dataset>, opts: TrainOptions, steps: usize) {
    let dir =
        std::env::temp_dir().join(format!("aoanet-bench-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = AoaConfig::reference(data.vocab.len());
    let mut t = Trainer::fresh(data.clone(), &dir, cfg, opts, TrainEnv::offline()).unwrap();
    t.step().unwrap();
    t.reset_phases();
    let t0 = Instant::now();
    for _ in 0..steps {
        t.step().unwrap();
    }
    report(name, &t.phases(), t0.elapsed().as_secs_f64());
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let steps = env_usize("AOANET_BENCH_STEPS", 4);
    let vocab = env_usize("AOANET_BENCH_VOCAB", 9487);
    let t0 = Instant::now();
    let data = Arc::new(world(vocab));
    println!(
        "world: {} train images, 2048-value regions (10-100 per image), {} words ({:.1}s); \
         model: AoaConfig::reference({vocab}), f32, {} threads",
        data.split_len(aoanet::data::Split::Train),
        data.vocab.len(),
        t0.elapsed().as_secs_f64(),
        aoanet::cpu::parallel::num_threads()
    );
    let base = TrainOptions {
        max_epochs: None,
        val_every: u64::MAX,
        ..TrainOptions::xe()
    };
    bench("xe", &data, base.clone(), steps);
    let scst = TrainOptions {
        stage: Stage::Scst,
        ..TrainOptions::scst()
    };
    let scst = TrainOptions {
        max_epochs: None,
        val_every: u64::MAX,
        ..scst
    };
    bench("scst (rewards overlapped)", &data, scst.clone(), steps);
    bench(
        "scst (rewards after the greedy decode)",
        &data,
        TrainOptions {
            overlap_rewards: false,
            ..scst
        },
        steps,
    );
}
