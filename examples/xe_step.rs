//! Scratch: time one full-size XE step.
use aoanet::model::{AoaConfig, AoaModel};
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use std::time::Instant;

fn main() {
    let cfg = AoaConfig::reference(9487);
    let m = AoaModel::new(cfg, DType::F32, 1).unwrap();
    let mut rng = Philox::new(3);
    let feats = Tensor::randn(&[10, 36, 2048], DType::F32, &mut rng);
    let len = 18;
    let mut labels = vec![0usize; 50 * len];
    for r in 0..50 {
        for t in 1..12 {
            labels[r * len + t] = 1 + (r * 7 + t * 13) % 9000;
        }
    }
    for it in 0..3 {
        let t0 = Instant::now();
        let enc = m
            .encode(&feats, None, None, &mut Ctx::train(&mut rng), None)
            .unwrap()
            .expand(5)
            .unwrap();
        let t1 = Instant::now();
        let lp = m
            .forward_xe(&enc, &labels, len, 0.0, &mut Ctx::train(&mut rng))
            .unwrap();
        let t2 = Instant::now();
        let targets: Vec<usize> = (0..50)
            .flat_map(|r| (1..len).map(move |t| (r, t)))
            .map(|(r, t)| labels[r * len + t])
            .collect();
        let loss = lp
            .gather_last(&targets)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap();
        let t3 = Instant::now();
        loss.backward().unwrap();
        let t4 = Instant::now();
        for (_, p) in m.named_parameters() {
            p.zero_grad();
        }
        println!(
            "iter {it}: encode {:.3}s decode {:.3}s loss {:.3}s backward {:.3}s total {:.3}s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
            (t4 - t0).as_secs_f64()
        );
    }
}
