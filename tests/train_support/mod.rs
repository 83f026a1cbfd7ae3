//! What the training-loop tests share (tests/train_resume.rs on the CPU, tests/cuda_train.rs
//! on a GPU, tests/cli_train.rs's data folder): a tiny synthetic world and model, XE options whose schedules all move within a
//! few iterations, scratch folders, and a bit-for-bit comparison of two runs' checkpoints.
#![allow(dead_code)]

use aoanet::data::{Dataset, SynthConfig, World};
use aoanet::model::AoaConfig;
use aoanet::nn::Module;
use aoanet::train::checkpoint::Checkpoint;
use aoanet::train::{Outcome, TrainOptions, Trainer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub fn world() -> Arc<Dataset> {
    let w = World::generate(&SynthConfig {
        train: 18,
        val: 6,
        test: 4,
        min_regions: 4,
        max_regions: 7,
        dim: 12,
        ..SynthConfig::default()
    })
    .unwrap();
    Arc::new(w.dataset)
}

pub fn model(data: &Dataset) -> AoaConfig {
    let mut c = AoaConfig::small(data.vocab.len(), data.features.dim());
    c.rnn_size = 16;
    c.input_encoding_size = 16;
    c.num_heads = 2;
    c.refiner_layers = 1;
    c.d_ff = 32;
    c.max_length = 8;
    c
}

/// XE with every schedule moving within a few iterations: 18 images in batches of 4, so
/// epochs end inside batches; lr decays and scheduled sampling grows every epoch.
pub fn xe_options(max_iters: u64) -> TrainOptions {
    TrainOptions {
        seed: 7,
        batch_size: 4,
        max_iters: Some(max_iters),
        max_epochs: None,
        learning_rate: 5e-3,
        learning_rate_decay_every: 1,
        scheduled_sampling_increase_every: 1,
        scheduled_sampling_increase_prob: 0.25,
        val_every: 4,
        val_images: Some(3),
        val_batch_size: 2,
        preflight_images: 2,
        losses_log_every: 2,
        ..TrainOptions::xe()
    }
}

pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn run(t: &mut Trainer) -> Outcome {
    t.run(&AtomicBool::new(false), &mut |_| {}).unwrap()
}

pub fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let c = Checkpoint::open(dir).unwrap();
    let m = c.build_model(aoanet::tensor::DType::F32).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = m
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec_f32()))
        .collect();
    let adam = c.adam_state(&m.named_parameters()).unwrap();
    for s in adam.params {
        out.push((format!("exp_avg.{}", s.name), s.exp_avg.to_vec_f32()));
        out.push((format!("exp_avg_sq.{}", s.name), s.exp_avg_sq.to_vec_f32()));
    }
    out
}

pub fn assert_same(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    for ((na, va), (nb, vb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let same = va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{na} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
    let (ca, cb) = (Checkpoint::open(a).unwrap(), Checkpoint::open(b).unwrap());
    let (sa, sb) = (&ca.train.unwrap().state, &cb.train.unwrap().state);
    assert_eq!(
        (sa.iteration, sa.epoch, sa.rng, &sa.loader),
        (sb.iteration, sb.epoch, sb.rng, &sb.loader)
    );
    assert_eq!(sa.lr.to_bits(), sb.lr.to_bits());
    assert_eq!(sa.best, sb.best);
    assert_eq!(sa.plateau, sb.plateau);
}
