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
