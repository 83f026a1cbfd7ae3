//! GPU embedding gather and scatter-add vs CPU.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::embedding;
use cuda_util::{assert_close, gpu, rand_vec};

#[test]
fn embedding_fwd_f32_gathers_and_poisons_bad_ids() {
    let Some(dev) = gpu("embedding_fwd_f32_gathers_and_poisons_bad_ids") else {
        return;
    };
    let (vocab, dim) = (37usize, 33usize);
    let table = rand_vec(1, vocab * dim, -1.0, 1.0);
    let ids: Vec<i32> = vec![0, 36, 5, 5, 17, -1, 37];
    let (td, idd) = (dev.htod(&table).unwrap(), dev.htod(&ids).unwrap());
    let mut out = dev.alloc::<f32>(ids.len() * dim).unwrap();
    embedding::forward(&dev, out.view_mut(), td.view(), idd.view(), vocab, dim).unwrap();
    let got = out.to_host().unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let row = &got[t * dim..(t + 1) * dim];
        if (0..vocab as i32).contains(&id) {
            assert_eq!(row, &table[id as usize * dim..(id as usize + 1) * dim]);
        } else {
            assert!(row.iter().all(|v| v.is_nan()), "id {id} must give NaN");
        }
    }
}

#[test]
fn embedding_bwd_f32_scatter_adds_in_token_order() {
    let Some(dev) = gpu("embedding_bwd_f32_scatter_adds_in_token_order") else {
        return;
    };
    let (vocab, dim, n) = (50usize, 1024usize, 851usize);
    let ids: Vec<i32> = (0..n)
        .map(|t| ((t * 7) % 13 + (t % 3) * 17) as i32)
        .collect();
    let dout = rand_vec(3, n * dim, -1.0, 1.0);
    let init = rand_vec(4, vocab * dim, -1.0, 1.0);
    let mut dt = dev.htod(&init).unwrap();
    let (dd, idd) = (dev.htod(&dout).unwrap(), dev.htod(&ids).unwrap());
    embedding::backward(&dev, dt.view_mut(), dd.view(), idd.view(), vocab, dim).unwrap();
    // The CPU loop in the same (token) order in f32 gives the same bits.
    let mut cpu = init.clone();
    for (t, &id) in ids.iter().enumerate() {
        for d in 0..dim {
            cpu[id as usize * dim + d] += dout[t * dim + d];
        }
    }
    assert_eq!(dt.to_host().unwrap(), cpu);
    let want: Vec<f64> = cpu.iter().map(|&v| f64::from(v)).collect();
    assert_close("embedding bwd", &dt.to_host().unwrap(), &want, 0.0, 0.0);
}
