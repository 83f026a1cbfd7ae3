//! Whole training steps on a CUDA device against the same steps on the CPU: one model built
//! twice from one seed, one of them moved to the GPU, the same batch, the same Philox streams
//! (dropout ON: the masks must be identical on both devices for this to pass), then
//! - XE: encode, teacher-forced log-probabilities (with scheduled sampling in one variant),
//!   the label-smoothed loss, backward, Adam with the ±0.1 clamp; two steps, the second as
//!   the trainer runs it (masks on the host beside device features, the loss from the logits);
//! - SCST: sampling 5 captions per image, the reward loss, backward, Adam.
//!
//! Losses, every parameter gradient and every parameter after the step are compared. One
//! variant has a head size of 32, so that in f32 its attention runs the fused kernels on the
//! GPU while the CPU composes it.
//!
//! And the training loop itself on the device (`TrainEnv::device`): XE with validation,
//! checkpoints written from device tensors, and a stop-and-resume that continues bit for bit.
//!
//! Tolerances: f64 `1e-11 + 1e-9·|ref|` (summation order only, over ~20 layers); f32
//! `2e-4 + 2e-3·|ref|` for gradients (f32 rounding through the whole model and its backward,
//! where small gradients are differences of large terms), `1e-5` relative on the loss.
//! Without a GPU each test prints why it is skipped.
#![cfg(feature = "cuda")]

mod cuda_util;
mod train_support;

use aoanet::Philox;
use aoanet::model::{AoaConfig, AoaModel, DecodeOptions, SampleMethod, sample};
use aoanet::nn::{Ctx, Module};
use aoanet::tensor::{DType, Device, Tensor};
use aoanet::train::{
    Adam, AdamConfig, label_smoothing_loss, label_smoothing_loss_from_logits, reward_loss,
};
use cuda_util::{assert_tensors_close, cuda, randt};

/// A small model: every module of the full one (refiner with AoA, LSTM decoder, AoA context),
/// odd widths.
fn config() -> AoaConfig {
    let mut c = AoaConfig::reference(37);
    c.rnn_size = 48;
    c.input_encoding_size = 48;
    c.att_feat_size = 20;
    c.num_heads = 4;
    c.refiner_layers = 2;
    c.max_length = 9;
    c.seq_length = 9;
    c
}

/// The same model with a head size the fused attention kernels take (d_k = 64 / 2 = 32), so
/// that in f32 on the GPU the refiner and the decoder attend through them.
fn config_fused() -> AoaConfig {
    let mut c = config();
    c.rnn_size = 64;
    c.input_encoding_size = 64;
    c.num_heads = 2;
    c
}

const IMAGES: usize = 3;
const REGIONS: usize = 7;
const SPI: usize = 5;
const LEN: usize = 9;

/// Features with padded regions, their mask, labels `[IMAGES·SPI, LEN]` and the label mask.
fn batch() -> (Tensor, Tensor, Vec<usize>, Tensor) {
    let feats = randt(&[IMAGES, REGIONS, 20], -1.0, 1.0, 1);
    let counts = [7usize, 4, 6];
    let mut fv = feats.to_vec_f64();
    let mut mv = vec![0.0; IMAGES * REGIONS];
    for (b, &n) in counts.iter().enumerate() {
        for r in 0..REGIONS {
            if r < n {
                mv[b * REGIONS + r] = 1.0;
            } else {
                fv[(b * REGIONS + r) * 20..(b * REGIONS + r + 1) * 20].fill(0.0);
            }
        }
    }
    let mut g = Philox::new(2);
    let rows = IMAGES * SPI;
    let mut labels = vec![0usize; rows * LEN];
    let mut lmask = vec![0.0; rows * (LEN - 1)];
    for r in 0..rows {
        let words = 2 + g.below(6) as usize;
        for t in 1..=words.min(LEN - 2) {
            labels[r * LEN + t] = 1 + g.below(37) as usize;
        }
        for t in 0..=words.min(LEN - 2) {
            lmask[r * (LEN - 1) + t] = 1.0;
        }
    }
    (
        Tensor::from_vec(fv, &[IMAGES, REGIONS, 20]).unwrap(),
        Tensor::from_vec(mv, &[IMAGES, REGIONS]).unwrap(),
        labels,
        Tensor::from_vec(lmask, &[rows, LEN - 1]).unwrap(),
    )
}

fn tol(dtype: DType) -> ((f64, f64), (f64, f64)) {
    // (loss and parameters, gradients)
    if dtype == DType::F64 {
        ((1e-11, 1e-9), (1e-11, 1e-9))
    } else {
        ((1e-6, 1e-5), (2e-4, 2e-3))
    }
}

/// One XE step on `m` (on its device); returns the loss value. Odd seeds take the trainer's
/// path: masks on the host beside device features, and the loss from the logits (fused with
/// the log_softmax on a GPU in f32); even seeds put the masks on the device and take the loss
/// of the log-probabilities.
fn xe_step(m: &AoaModel, opt: &mut Adam, dtype: DType, ss_prob: f64, seed: u64) -> f64 {
    let dev = m.device();
    let (feats, masks, labels, lmask) = batch();
    let trainers_path = seed % 2 == 1;
    let to = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(dev).unwrap();
    let on_host = |t: &Tensor| t.to_dtype(dtype).unwrap();
    let (masks, lmask) = if trainers_path {
        (on_host(&masks), on_host(&lmask))
    } else {
        (to(&masks), to(&lmask))
    };
    let mut rng = Philox::new(seed);
    let mut ctx = Ctx::train(&mut rng);
    let enc = m
        .encode(&to(&feats), Some(&masks), None, &mut ctx, None)
        .unwrap()
        .expand(SPI)
        .unwrap();
    let targets: Vec<usize> = (0..IMAGES * SPI)
        .flat_map(|r| labels[r * LEN + 1..(r + 1) * LEN].to_vec())
        .collect();
    let loss = if trainers_path {
        let logits = m
            .forward_xe_logits(&enc, &labels, LEN, ss_prob, &mut ctx)
            .unwrap();
        label_smoothing_loss_from_logits(&logits, &targets, &lmask, 0.2).unwrap()
    } else {
        let lp = m.forward_xe(&enc, &labels, LEN, ss_prob, &mut ctx).unwrap();
        label_smoothing_loss(&lp, &targets, &lmask, 0.2).unwrap()
    };
    assert_eq!(loss.device(), dev);
    let value = loss.item().unwrap();
    let params = m.named_parameters();
    aoanet::train::adam::zero_grad(&params);
    loss.backward().unwrap();
    opt.step(&params).unwrap();
    value
}

/// Compares every gradient and parameter of the GPU model with the CPU one.
fn compare_models(what: &str, gpu: &AoaModel, cpu: &AoaModel, dtype: DType, dev: Device) {
    let ((pa, pr), (ga, gr)) = tol(dtype);
    for ((name, pg), (_, pc)) in gpu.named_parameters().iter().zip(cpu.named_parameters()) {
        assert_eq!(pg.device(), dev, "{name}");
        let (gg, gc) = (pg.grad(), pc.grad());
        assert_eq!(
            gg.is_some(),
            gc.is_some(),
            "{what}: {name}: gradient presence"
        );
        if let (Some(gg), Some(gc)) = (gg, gc) {
            assert_tensors_close(&format!("{what}: grad {name}"), &gg, &gc, ga, gr);
        }
        assert_tensors_close(&format!("{what}: {name}"), pg, &pc, pa, pr);
    }
}

fn xe_steps_match(test: &str, ss_prob: f64) {
    xe_steps_match_with(test, config(), &[DType::F64, DType::F32], ss_prob);
}

fn xe_steps_match_with(test: &str, config: AoaConfig, dtypes: &[DType], ss_prob: f64) {
    let Some(dev) = cuda(test) else {
        return;
    };
    for &dtype in dtypes {
        let cpu = AoaModel::new(config.clone(), dtype, 11).unwrap();
        let gpu = AoaModel::new(config.clone(), dtype, 11).unwrap();
        gpu.to_device_(dev).unwrap();
        // f32 runs Adam with ε = 1e-3 instead of the reference's 1e-8. The key half of
        // `ctx2att.bias` has an exactly zero gradient (a constant added to every key's score
        // leaves the softmax unchanged), so in f32 it holds rounding noise of ~1e-9 that
        // differs between devices, and Adam's first step lr·g/(|g| + ε) turns that noise into
        // a step of up to ±lr: seen on the H100 as ctx2att.bias[81] off by 1.2e-5 after one
        // step while every gradient agreed. A larger ε keeps the step a smooth function of the
        // gradient, so the parameters test the update and not the sign of noise; the f64 run
        // keeps the reference's ε, and tests/cuda_adam.rs checks the kernel with it.
        let adam = AdamConfig {
            lr: 1e-3,
            eps: if dtype == DType::F32 { 1e-3 } else { 1e-8 },
            ..AdamConfig::default()
        };
        let (mut oc, mut og) = (Adam::new(adam).unwrap(), Adam::new(adam).unwrap());
        for step in 0..2u64 {
            let lc = xe_step(&cpu, &mut oc, dtype, ss_prob, 100 + step);
            let lg = xe_step(&gpu, &mut og, dtype, ss_prob, 100 + step);
            let ((a, r), _) = tol(dtype);
            eprintln!("{dtype} step {step}: loss cpu {lc} gpu {lg}");
            assert!(
                (lg - lc).abs() <= a + r * lc.abs(),
                "{dtype} step {step}: loss {lg} vs {lc}"
            );
            compare_models(&format!("{dtype} XE step {step}"), &gpu, &cpu, dtype, dev);
        }
    }
}

#[test]
fn xe_training_steps_with_dropout_match_the_cpu() {
    xe_steps_match("xe_training_steps_with_dropout_match_the_cpu", 0.0);
}

#[test]
fn xe_training_steps_with_scheduled_sampling_match_the_cpu() {
    xe_steps_match(
        "xe_training_steps_with_scheduled_sampling_match_the_cpu",
        0.25,
    );
}

/// The fused attention kernels inside whole XE steps (dropout on the probabilities drawn from
/// the same Philox words as the CPU's composed attention).
#[test]
fn xe_training_steps_with_fused_attention_match_the_cpu() {
    let test = "xe_training_steps_with_fused_attention_match_the_cpu";
    if let Some(Device::Cuda(i)) = cuda(test) {
        let m = AoaModel::new(config_fused(), DType::F32, 0).unwrap();
        let probe = Tensor::zeros_on(&[1], DType::F32, Device::Cuda(i)).unwrap();
        assert!(
            m.core.attention.fuses(&probe),
            "d_k = 32 in f32 on the GPU must take the fused kernels"
        );
    }
    xe_steps_match_with(test, config_fused(), &[DType::F32], 0.0);
}

/// An XE step as the trainer runs it (masks on the host, the loss from the logits, fused
/// attention) queues its whole forward and backward without waiting for the GPU once; reading
/// the loss is then the wait. A `.item()` or a read-back of a device tensor anywhere in the
/// step would show here as a wait. With scheduled sampling the forward still queues without a
/// wait (the drawn words stay on the device for the next step), and the backward waits once,
/// to read every step's words for the embedding's gradient.
#[test]
fn an_xe_step_queues_forward_and_backward_without_waiting_for_the_gpu() {
    let test = "an_xe_step_queues_forward_and_backward_without_waiting_for_the_gpu";
    let Some(Device::Cuda(ordinal)) = cuda(test) else {
        eprintln!("{test}: needs a GPU (the dry run has nothing to count)");
        return;
    };
    let cd = aoanet::cuda::CudaDevice::get(ordinal).unwrap();
    let dev = Device::Cuda(ordinal);
    let m = AoaModel::new(config_fused(), DType::F32, 11).unwrap();
    m.to_device_(dev).unwrap();
    let (feats, masks, labels, lmask) = batch();
    let feats = feats.to_dtype(DType::F32).unwrap().to_device(dev).unwrap();
    let (masks, lmask) = (
        masks.to_dtype(DType::F32).unwrap(),
        lmask.to_dtype(DType::F32).unwrap(),
    );
    let targets: Vec<usize> = (0..IMAGES * SPI)
        .flat_map(|r| labels[r * LEN + 1..(r + 1) * LEN].to_vec())
        .collect();
    for (round, ss_prob) in [0.0, 0.0, 0.25].into_iter().enumerate() {
        // The first round also compiles and uploads what a first use does.
        cd.synchronize().unwrap();
        let before = aoanet::cuda::waits_on_this_thread();
        let mut rng = Philox::new(100 + round as u64);
        let mut ctx = Ctx::train(&mut rng);
        let enc = m
            .encode(&feats, Some(&masks), None, &mut ctx, None)
            .unwrap()
            .expand(SPI)
            .unwrap();
        let logits = m
            .forward_xe_logits(&enc, &labels, LEN, ss_prob, &mut ctx)
            .unwrap();
        let loss = label_smoothing_loss_from_logits(&logits, &targets, &lmask, 0.2).unwrap();
        let forward = aoanet::cuda::waits_on_this_thread() - before;
        loss.backward().unwrap();
        let queued = aoanet::cuda::waits_on_this_thread() - before;
        assert!(loss.item().unwrap().is_finite());
        let read = aoanet::cuda::waits_on_this_thread() - before;
        aoanet::train::adam::zero_grad(&m.named_parameters());
        if round == 0 {
            continue;
        }
        assert_eq!(
            forward, 0,
            "ss {ss_prob}: the forward waited {forward} times"
        );
        let backward = if ss_prob > 0.0 { 1 } else { 0 };
        assert_eq!(
            queued - forward,
            backward,
            "ss {ss_prob}: the backward waited {} times",
            queued - forward
        );
        assert_eq!(
            read - queued,
            1,
            "reading the loss waited {} times",
            read - queued
        );
    }
}

#[test]
fn scst_step_samples_and_reward_loss_match_the_cpu() {
    let Some(dev) = cuda("scst_step_samples_and_reward_loss_match_the_cpu") else {
        return;
    };
    // f64 only: the sampled words must agree, and f32 rounding could move a draw across a
    // boundary of the inverse CDF.
    let dtype = DType::F64;
    let cpu = AoaModel::new(config(), dtype, 12).unwrap();
    let gpu = AoaModel::new(config(), dtype, 12).unwrap();
    gpu.to_device_(dev).unwrap();
    let adam = AdamConfig {
        lr: 2e-5,
        ..AdamConfig::default()
    };
    let (mut oc, mut og) = (Adam::new(adam).unwrap(), Adam::new(adam).unwrap());
    let (feats, masks, _, _) = batch();
    let mut seqs = Vec::new();
    for (m, opt) in [(&cpu, &mut oc), (&gpu, &mut og)] {
        let d = m.device();
        let to = |t: &Tensor| t.to_device(d).unwrap();
        let mut rng = Philox::new(5);
        let mut ctx = Ctx::train(&mut rng);
        let enc = m
            .encode(&to(&feats), Some(&to(&masks)), None, &mut ctx, None)
            .unwrap()
            .expand(SPI)
            .unwrap();
        let opts = DecodeOptions {
            sample_method: SampleMethod::Sample,
            ..DecodeOptions::greedy(LEN)
        };
        let s = sample(m, &enc, &opts, &mut ctx, false).unwrap();
        assert_eq!(s.logprobs.device(), d);
        let reward: Vec<f64> = (0..s.rows).map(|r| (r as f64 * 0.37).sin()).collect();
        let loss = reward_loss(&s.logprobs, &s.seq, &reward).unwrap();
        let params = m.named_parameters();
        aoanet::train::adam::zero_grad(&params);
        loss.backward().unwrap();
        opt.step(&params).unwrap();
        seqs.push((s.seq.clone(), loss.item().unwrap()));
    }
    assert_eq!(seqs[0].0, seqs[1].0, "sampled captions");
    let ((a, r), _) = tol(dtype);
    assert!(
        (seqs[0].1 - seqs[1].1).abs() <= a + r * seqs[0].1.abs(),
        "{seqs:?}"
    );
    compare_models("SCST step", &gpu, &cpu, dtype, dev);
}

#[test]
fn trainer_on_the_gpu_validates_checkpoints_and_resumes_bit_identically() {
    use aoanet::json::Value;
    use aoanet::train::{Outcome, TrainEnv, Trainer};
    use train_support::{assert_same, model, run, scratch, world, xe_options};
    let Some(dev) = cuda("trainer_on_the_gpu_validates_checkpoints_and_resumes_bit_identically")
    else {
        return;
    };
    let env = || TrainEnv {
        device: dev,
        ..TrainEnv::offline()
    };
    let data = world();
    let cfg = model(&data);
    let (one, two) = (scratch("gpu-one"), scratch("gpu-two"));
    // 9 iterations straight (validations at 4 and 8 decode on the device) ...
    let mut a = Trainer::fresh(data.clone(), &one, cfg.clone(), xe_options(9), env()).unwrap();
    assert_eq!(a.model().device(), dev);
    a.preflight().unwrap();
    assert_eq!(run(&mut a), Outcome::Finished);
    assert_eq!(a.state().iteration, 9);
    assert!(a.history().iter().any(|r| r.val.is_some()), "validated");
    // ... equal 5, a checkpoint (written from device tensors), and 4 more after a resume.
    let mut b = Trainer::fresh(data.clone(), &two, cfg, xe_options(5), env()).unwrap();
    assert_eq!(run(&mut b), Outcome::Finished);
    drop(b);
    let more = [("max_iters".to_string(), Value::from(9usize))];
    let mut b = Trainer::resume(data.clone(), &two, &[], &more, env()).unwrap();
    assert_eq!(b.model().device(), dev);
    assert_eq!(run(&mut b), Outcome::Finished);
    assert_same(&one, &two);
    for d in [one, two] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// What one decode produced, for comparing the device loop with the host loop.
struct Decoded {
    seq: Vec<usize>,
    /// The recorded log-probabilities' bits.
    logprobs: Vec<u32>,
    /// Every parameter gradient's bits after the reward loss's backward (sampling only).
    grads: Vec<Vec<u32>>,
    /// The generator after the decode.
    rng: aoanet::rng::PhiloxState,
}

/// Greedy decoding and sampling with the loop's words on the device give the host loop's
/// captions, recorded log-probabilities, gradients and generator state bit for bit, with one
/// wait for the whole decode (the captions' read) instead of one per step. With EOS made
/// likely the loop stops early (every row finished): the device loop has queued the step
/// after the stop, which it must drop and rewind the generator over.
#[test]
fn decoding_with_words_on_the_device_equals_the_host_loop() {
    let test = "decoding_with_words_on_the_device_equals_the_host_loop";
    let Some(dev) = cuda(test) else {
        return;
    };
    let m = AoaModel::new(config(), DType::F32, 21).unwrap();
    m.to_device_(dev).unwrap();
    let params = m.named_parameters();
    let (feats, masks, _, _) = batch();
    let on_gpu = |t: Tensor| t.to_dtype(DType::F32).unwrap().to_device(dev).unwrap();
    let (feats, masks) = (on_gpu(feats), on_gpu(masks));
    let to_bits = |t: &Tensor| -> Vec<u32> { t.to_vec_f32().iter().map(|v| v.to_bits()).collect() };
    let mut stopped_early = 0;
    for eos_bias in [0.0f32, 2.5, 60.0] {
        m.logit
            .bias
            .with_data_mut::<f32, _>(|b| b[0] = eos_bias)
            .unwrap();
        for method in [SampleMethod::Greedy, SampleMethod::Sample] {
            let sampling = method == SampleMethod::Sample;
            let run = |device_loop: bool| -> (Decoded, u64) {
                aoanet::model::decode::set_device_loop(device_loop);
                let mut rng = Philox::new(31);
                let mut ctx = if sampling {
                    Ctx::train(&mut rng)
                } else {
                    Ctx::eval(&mut rng)
                };
                let enc = m
                    .encode(&feats, Some(&masks), None, &mut ctx, None)
                    .unwrap()
                    .expand(SPI)
                    .unwrap();
                let opts = DecodeOptions {
                    sample_method: method,
                    ..DecodeOptions::greedy(LEN)
                };
                let before = aoanet::cuda::waits_on_this_thread();
                let s = if sampling {
                    sample(&m, &enc, &opts, &mut ctx, false).unwrap()
                } else {
                    aoanet::autograd::no_grad(|| sample(&m, &enc, &opts, &mut ctx, false)).unwrap()
                };
                let waits = aoanet::cuda::waits_on_this_thread() - before;
                let rng_after = ctx.rng.state();
                let mut grads = Vec::new();
                if sampling {
                    aoanet::train::adam::zero_grad(&params);
                    let reward: Vec<f64> = (0..s.rows).map(|r| (r as f64 * 0.61).cos()).collect();
                    reward_loss(&s.logprobs, &s.seq, &reward)
                        .unwrap()
                        .backward()
                        .unwrap();
                    grads = params
                        .iter()
                        .map(|(_, p)| p.grad().map(|g| to_bits(&g)).unwrap_or_default())
                        .collect();
                    aoanet::train::adam::zero_grad(&params);
                }
                aoanet::model::decode::set_device_loop(true);
                let decoded = Decoded {
                    seq: s.seq.clone(),
                    logprobs: to_bits(&s.logprobs),
                    grads,
                    rng: rng_after,
                };
                (decoded, waits)
            };
            let (host, host_waits) = run(false);
            let (device, device_waits) = run(true);
            let what = format!("EOS bias {eos_bias}, {method:?}");
            assert_eq!(device.seq, host.seq, "{what}: captions");
            assert!(
                device.logprobs == host.logprobs,
                "{what}: recorded log-probabilities"
            );
            for (i, (d, h)) in device.grads.iter().zip(&host.grads).enumerate() {
                assert!(d == h, "{what}: gradient of {}", params[i].0);
            }
            assert_eq!(device.grads.len(), host.grads.len(), "{what}");
            assert_eq!(
                device.rng, host.rng,
                "{what}: the generator after the decode"
            );
            assert_eq!(
                device_waits, 1,
                "{what}: the device loop waited {device_waits} times"
            );
            let steps = (0..LEN)
                .filter(|&t| (0..IMAGES * SPI).any(|r| t == 0 || host.seq[r * LEN + t - 1] != 0))
                .count() as u64;
            assert_eq!(
                host_waits, steps,
                "{what}: the host loop reads every step's words"
            );
            if steps < LEN as u64 {
                stopped_early += 1;
            }
        }
    }
    m.logit
        .bias
        .with_data_mut::<f32, _>(|b| b[0] = 0.0)
        .unwrap();
    assert!(
        stopped_early >= 2,
        "only {stopped_early} decodes stopped early"
    );
}
