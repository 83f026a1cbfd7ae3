//! GPU GLU forward/backward vs f64 CPU.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::glu;
use cuda_util::{assert_close, gpu, rand_vec};

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn glu_fwd_f32_and_glu_bwd_f32_match_cpu() {
    let Some(dev) = gpu("glu_fwd_f32_and_glu_bwd_f32_match_cpu") else {
        return;
    };
    for (rows, half) in [(1usize, 1usize), (7, 33), (50, 1024)] {
        let x = rand_vec(rows as u64 + half as u64, rows * 2 * half, -4.0, 4.0);
        let dy = rand_vec(5, rows * half, -1.0, 1.0);
        let (xd, dyd) = (dev.htod(&x).unwrap(), dev.htod(&dy).unwrap());
        let mut out = dev.alloc::<f32>(rows * half).unwrap();
        glu::forward(&dev, out.view_mut(), xd.view(), rows, half).unwrap();
        let mut dx = dev.alloc::<f32>(rows * 2 * half).unwrap();
        glu::backward(&dev, dx.view_mut(), dyd.view(), xd.view(), rows, half).unwrap();
        let (mut wy, mut wdx) = (vec![], vec![0.0; rows * 2 * half]);
        for r in 0..rows {
            for j in 0..half {
                let a = f64::from(x[r * 2 * half + j]);
                let s = sig(f64::from(x[r * 2 * half + half + j]));
                let g = f64::from(dy[r * half + j]);
                wy.push(a * s);
                wdx[r * 2 * half + j] = g * s;
                wdx[r * 2 * half + half + j] = g * a * s * (1.0 - s);
            }
        }
        // A few f32 roundings and one expf (2 ulp): 1e-6 relative plus a small absolute floor.
        assert_close("glu fwd", &out.to_host().unwrap(), &wy, 1e-7, 1e-6);
        assert_close("glu bwd", &dx.to_host().unwrap(), &wdx, 1e-7, 1e-6);
    }
}

#[test]
fn glu_bwd_f32_refuses_short_buffers() {
    let Some(dev) = gpu("glu_bwd_f32_refuses_short_buffers") else {
        return;
    };
    let x = dev.htod(&[0.0f32; 6]).unwrap();
    let mut dx = dev.alloc::<f32>(6).unwrap();
    assert!(glu::backward(&dev, dx.view_mut(), x.view(), x.view(), 2, 4).is_err());
}
