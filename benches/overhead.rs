//! The host's cost per tensor op, apart from its arithmetic: a chain of `mul`, `add`, `sub` on
//! `[50, 8]` f32 tensors (400 elements: the arithmetic is a few dozen nanoseconds), timed
//! without a graph (the baseline: the op itself), with the graph recorded, and the backward
//! pass over that graph, per op. On a GPU every op also pays this before its kernel launch,
//! so it bounds how fast a launch-bound step (the decoder's) can go.
//!
//! `cargo bench --bench overhead`; `AOANET_OVERHEAD_OPS` sets the chain's length in triples
//! (default 20000). For repeatable instruction counts:
//! `AOANET_OVERHEAD_OPS=3000 valgrind --tool=callgrind target/release/deps/overhead-*`
//! (the bench binary `cargo bench --bench overhead --no-run` prints).

use aoanet::autograd::no_grad;
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};
use std::time::Instant;

/// `x ← ((x ⊙ b) + b) − b`, `n` times: three ops each; `b` is ones, so values stay put.
fn chain(x: &Tensor, b: &Tensor, n: usize) -> Tensor {
    let mut x = x.clone();
    for _ in 0..n {
        x = x.mul(b).unwrap().add(b).unwrap().sub(b).unwrap();
    }
    x
}

fn main() {
    let n: usize = std::env::var("AOANET_OVERHEAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let ops = (3 * n) as f64;
    let a = Tensor::randn(&[50, 8], DType::F32, &mut Philox::new(1)).requiring_grad();
    let b = Tensor::ones(&[50, 8], DType::F32);
    // The best of four passes (the first also warms up).
    let mut best = [f64::INFINITY; 3];
    for _ in 0..4 {
        let t = Instant::now();
        no_grad(|| chain(&a, &b, n));
        let plain = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let y = chain(&a, &b, n);
        let recorded = t.elapsed().as_secs_f64();
        let t = Instant::now();
        y.sum_all().unwrap().backward().unwrap();
        let backward = t.elapsed().as_secs_f64();
        a.zero_grad();
        for (m, v) in best.iter_mut().zip([plain, recorded, backward]) {
            *m = m.min(v);
        }
    }
    let us = |s: f64| 1e6 * s / ops;
    println!(
        "per op ([50, 8] f32, {} ops): {:.2} µs without a graph (baseline), {:.2} µs recorded \
         ({:.2}x), backward {:.2} µs per node ({:.2}x)",
        3 * n,
        us(best[0]),
        us(best[1]),
        best[1] / best[0],
        us(best[2]),
        best[2] / best[0]
    );
}
