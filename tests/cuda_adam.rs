//! GPU Adam with the fused ±0.1 gradient clamp vs an f64 CPU reference.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::adam::{self, AdamStep};
use cuda_util::{assert_close, gpu, rand_vec};

#[test]
fn adam_f32_three_steps_match_cpu() {
    let Some(dev) = gpu("adam_f32_three_steps_match_cpu") else {
        return;
    };
    let n = 10_007;
    let p0 = rand_vec(1, n, -1.0, 1.0);
    let mut pd = dev.htod(&p0).unwrap();
    let mut md = dev.zeros::<f32>(n).unwrap();
    let mut vd = dev.zeros::<f32>(n).unwrap();
    let (mut p, mut m, mut v) = (
        p0.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
        vec![0f64; n],
        vec![0f64; n],
    );
    for t in 1..=3u64 {
        // Gradients up to ±0.5: most are clamped to ±0.1.
        let g = rand_vec(10 + t, n, -0.5, 0.5);
        let gd = dev.htod(&g).unwrap();
        let h = AdamStep {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t,
            clip: Some(0.1),
            weight_decay: 0.0,
        };
        adam::step(
            &dev,
            pd.view_mut(),
            md.view_mut(),
            vd.view_mut(),
            gd.view(),
            h,
        )
        .unwrap();
        let (bc1, bc2) = (1.0 - 0.9f64.powi(t as i32), 1.0 - 0.999f64.powi(t as i32));
        for i in 0..n {
            let gi = f64::from(g[i]).clamp(-0.1, 0.1);
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            p[i] -= 2e-4 / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + 1e-8);
        }
    }
    // Each update is ≈ lr = 2e-4 and is computed with ~1e-6 relative f32 error; parameters of
    // size ≤ 8 carry 1 ulp (≈ 5e-7) per step: 3e-6 absolute.
    assert_close("adam param", &pd.to_host().unwrap(), &p, 3e-6, 1e-6);
    assert_close("adam m", &md.to_host().unwrap(), &m, 1e-9, 1e-5);
    assert_close("adam v", &vd.to_host().unwrap(), &v, 1e-12, 1e-5);
}

/// `adam_multi_*` gives, for every tensor of one launch, the bits `adam_*` gives for it alone:
/// sizes around the kernel's 8192-element chunks (one element, one chunk less/more by one,
/// several chunks), different step counts per tensor, three steps in a row.
fn multi_matches_per_tensor<T: aoanet::cuda::CudaFloat>(test: &str) {
    let Some(dev) = gpu(test) else {
        return;
    };
    let sizes = [1usize, 8191, 8192, 8193, 30_000, 7];
    let first_steps = [1u64, 4, 1, 2, 9, 1];
    let host = |seed: u64, n: usize, lo: f32, hi: f32| -> Vec<T> {
        rand_vec(seed, n, lo, hi)
            .into_iter()
            .map(|x| T::from_f64(f64::from(x)))
            .collect()
    };
    let upload = |v: &[T]| dev.htod(v).unwrap();
    let params: Vec<Vec<T>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| host(100 + i as u64, n, -1.0, 1.0))
        .collect();
    // Two copies of every buffer: one stepped by the multi-tensor kernel, one per tensor.
    let mut multi: Vec<[aoanet::cuda::CudaBuffer<T>; 3]> = params
        .iter()
        .map(|p| {
            [
                upload(p),
                dev.zeros::<T>(p.len()).unwrap(),
                dev.zeros::<T>(p.len()).unwrap(),
            ]
        })
        .collect();
    let mut single: Vec<[aoanet::cuda::CudaBuffer<T>; 3]> = params
        .iter()
        .map(|p| {
            [
                upload(p),
                dev.zeros::<T>(p.len()).unwrap(),
                dev.zeros::<T>(p.len()).unwrap(),
            ]
        })
        .collect();
    let h = AdamStep {
        lr: 2e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t: 0,
        clip: Some(0.1),
        weight_decay: 0.0,
    };
    for round in 0..3u64 {
        let grads: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| upload(&host(200 + 10 * round + i as u64, n, -0.5, 0.5)))
            .collect();
        let tensors = multi
            .iter_mut()
            .zip(&grads)
            .zip(first_steps)
            .map(|(([p, m, v], g), t0)| adam::AdamTensor {
                param: p.view_mut(),
                m: m.view_mut(),
                v: v.view_mut(),
                grad: g.view(),
                t: t0 + round,
            })
            .collect();
        adam::step_many(&dev, tensors, h).unwrap();
        for (([p, m, v], g), t0) in single.iter_mut().zip(&grads).zip(first_steps) {
            let h = AdamStep { t: t0 + round, ..h };
            adam::step(&dev, p.view_mut(), m.view_mut(), v.view_mut(), g.view(), h).unwrap();
        }
    }
    for (i, (a, b)) in multi.iter().zip(&single).enumerate() {
        for (k, what) in ["param", "m", "v"].iter().enumerate() {
            let (x, y) = (a[k].to_host().unwrap(), b[k].to_host().unwrap());
            let ulp = if T::IS_F64 { 1e-15 } else { 3e-7 };
            let worst = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p.to_f64() - q.to_f64()).abs() / (ulp * (1e-3 + q.to_f64().abs())))
                .fold(0.0f64, f64::max);
            assert!(
                worst <= 2.0,
                "{test}: tensor {i} ({} elements): {what} differs from the per-tensor kernel \
                 by {worst:.1} units of {ulp:e} relative",
                sizes[i]
            );
        }
    }
    // An empty launch and a zero step number are refused or skipped, not launched.
    adam::step_many::<T>(&dev, Vec::new(), h).unwrap();
    let [p, m, v] = &mut multi[0];
    let g = upload(&host(1, 1, -0.5, 0.5));
    let zero_step = vec![adam::AdamTensor {
        param: p.view_mut(),
        m: m.view_mut(),
        v: v.view_mut(),
        grad: g.view(),
        t: 0,
    }];
    assert!(adam::step_many(&dev, zero_step, h).is_err());
}

#[test]
fn adam_multi_f32_matches_the_per_tensor_kernel() {
    multi_matches_per_tensor::<f32>("adam_multi_f32_matches_the_per_tensor_kernel");
}

#[test]
fn adam_multi_f64_matches_the_per_tensor_kernel() {
    multi_matches_per_tensor::<f64>("adam_multi_f64_matches_the_per_tensor_kernel");
}

/// The optimiser on GPU parameters (all updated in one launch) follows the optimiser on the
/// same parameters on the CPU, including a parameter that skips a step (no gradient), so its
/// step count differs from the others', and an f64 one beside the f32 ones (its own launch).
#[test]
fn optimizer_on_the_gpu_updates_every_parameter_like_the_cpu() {
    use aoanet::tensor::{DType, Device, Tensor};
    use aoanet::train::{Adam, AdamConfig};
    let test = "optimizer_on_the_gpu_updates_every_parameter_like_the_cpu";
    let Some(dev) = cuda_util::cuda(test) else {
        return;
    };
    let shapes: [(&str, &[usize], DType); 4] = [
        ("a", &[3, 5], DType::F32),
        ("b", &[9000], DType::F32),
        ("c", &[1], DType::F32),
        ("d", &[4, 4], DType::F64),
    ];
    let make = |device: Device| -> Vec<(String, Tensor)> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, (name, shape, dtype))| {
                let n = shape.iter().product();
                let v: Vec<f64> = rand_vec(300 + i as u64, n, -1.0, 1.0)
                    .into_iter()
                    .map(f64::from)
                    .collect();
                let t = Tensor::from_vec(v, shape)
                    .unwrap()
                    .to_dtype(*dtype)
                    .unwrap()
                    .to_device(device)
                    .unwrap()
                    .requiring_grad();
                (name.to_string(), t)
            })
            .collect()
    };
    let config = AdamConfig {
        lr: 1e-2,
        grad_clip: Some(0.1),
        ..AdamConfig::default()
    };
    let (cpu, gpu) = (make(Device::Cpu), make(dev));
    let (mut cpu_opt, mut gpu_opt) = (Adam::new(config).unwrap(), Adam::new(config).unwrap());
    for step in 0..3u64 {
        for (params, opt) in [(&cpu, &mut cpu_opt), (&gpu, &mut gpu_opt)] {
            for (_, p) in params {
                p.zero_grad();
            }
            // Loss Σ r ⊙ p over the parameters taking part: gradient r (some clamped).
            for (i, (name, p)) in params.iter().enumerate() {
                if step == 1 && name == "b" {
                    continue;
                }
                let r = Tensor::from_vec(
                    rand_vec(400 + 10 * step + i as u64, p.numel(), -0.3, 0.3)
                        .into_iter()
                        .map(f64::from)
                        .collect(),
                    p.shape(),
                )
                .unwrap()
                .to_dtype(p.dtype())
                .unwrap()
                .to_device(p.device())
                .unwrap();
                p.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
            }
            opt.step(params).unwrap();
        }
    }
    assert_eq!(gpu_opt.step_count("b"), Some(2));
    assert_eq!(gpu_opt.step_count("a"), Some(3));
    for ((name, c), (_, g)) in cpu.iter().zip(&gpu) {
        let (c, g) = (
            c.to_vec_f64(),
            g.to_device(Device::Cpu).unwrap().to_vec_f64(),
        );
        for (x, y) in g.iter().zip(&c) {
            // Same arithmetic in the same dtype on both devices; f32 sqrt/division may
            // differ in the last bit.
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "{test}: {name}: {x} vs {y}"
            );
        }
    }
}
