//! GPU fused multi-head attention (forward, dQ, dK/dV) vs an f64 CPU reference with the same
//! masks and dropout masks, for the refiner (N×N, 8 heads, key masks, dropout) and the decoder
//! (one query, K and V read in place from the halves of p_att_feats); and fused vs unfused.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::dropout_keep;
use aoanet::cuda::kernels::attention::{self, Attention, AttnGrads, AttnInputs, Layout};
use aoanet::cuda::kernels::gemm::Precision;
use aoanet::rng::{Philox, PhiloxState};
use cuda_util::{assert_close, gpu, key_mask, rand_vec};

struct Ref {
    out: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
}

/// f64 reference on buffers addressed through the problem's layouts.
fn reference(
    a: &Attention,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u8]>,
    dout: &[f32],
    sizes: [usize; 4],
) -> Ref {
    let at = |l: Layout, b: usize, i: usize, h: usize, d: usize| {
        b * l.batch_stride + i * l.row_stride + h * a.dh + d
    };
    let mut r = Ref {
        out: vec![0.0; sizes[3]],
        dq: vec![0.0; sizes[0]],
        dk: vec![0.0; sizes[1]],
        dv: vec![0.0; sizes[2]],
    };
    let scale = 1.0 / (a.dh as f64).sqrt();
    for b in 0..a.batch {
        for h in 0..a.heads {
            for i in 0..a.nq {
                let s: Vec<f64> = (0..a.nk)
                    .map(|j| {
                        if mask.is_some_and(|m| m[b * a.nk + j] == 0) {
                            return -1e9;
                        }
                        (0..a.dh)
                            .map(|d| {
                                f64::from(q[at(a.q, b, i, h, d)])
                                    * f64::from(k[at(a.k, b, j, h, d)])
                            })
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let tot: f64 = e.iter().sum();
                let p: Vec<f64> = e.iter().map(|x| x / tot).collect();
                let z: Vec<f64> = (0..a.nk)
                    .map(|j| match a.dropout {
                        None => 1.0,
                        Some((pd, st)) => {
                            let idx = (((b * a.heads + h) * a.nq + i) * a.nk + j) as u64;
                            let word = Philox::from_state(st).word_at(st.offset + idx);
                            if dropout_keep(word, pd) {
                                1.0 / (1.0 - f64::from(pd))
                            } else {
                                0.0
                            }
                        }
                    })
                    .collect();
                for d in 0..a.dh {
                    r.out[at(a.o, b, i, h, d)] = (0..a.nk)
                        .map(|j| p[j] * z[j] * f64::from(v[at(a.v, b, j, h, d)]))
                        .sum();
                }
                // backward
                let go = |d: usize| f64::from(dout[at(a.o, b, i, h, d)]);
                let dpp: Vec<f64> = (0..a.nk)
                    .map(|j| {
                        z[j] * (0..a.dh)
                            .map(|d| go(d) * f64::from(v[at(a.v, b, j, h, d)]))
                            .sum::<f64>()
                    })
                    .collect();
                let di: f64 = (0..a.nk).map(|j| p[j] * dpp[j]).sum();
                for j in 0..a.nk {
                    let masked = mask.is_some_and(|m| m[b * a.nk + j] == 0);
                    let ds = if masked { 0.0 } else { p[j] * (dpp[j] - di) };
                    for d in 0..a.dh {
                        r.dq[at(a.q, b, i, h, d)] += scale * ds * f64::from(k[at(a.k, b, j, h, d)]);
                        r.dk[at(a.k, b, j, h, d)] += scale * ds * f64::from(q[at(a.q, b, i, h, d)]);
                        r.dv[at(a.v, b, j, h, d)] += p[j] * z[j] * go(d);
                    }
                }
            }
        }
    }
    r
}

fn check(
    test: &str,
    a: Attention,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    mask: Option<Vec<u8>>,
    out_len: usize,
) {
    let Some(dev) = gpu(test) else { return };
    let dout = rand_vec(77, out_len, -1.0, 1.0);
    // K and V may share one buffer (the decoder): gradients go to separate zeroed buffers.
    let want = reference(
        &a,
        &q,
        &k,
        &v,
        mask.as_deref(),
        &dout,
        [q.len(), k.len(), v.len(), out_len],
    );
    let (qd, kd, vd, dod) = (
        dev.htod(&q).unwrap(),
        dev.htod(&k).unwrap(),
        dev.htod(&v).unwrap(),
        dev.htod(&dout).unwrap(),
    );
    let md = mask.as_ref().map(|m| dev.htod(m).unwrap());
    let x = AttnInputs {
        q: qd.view(),
        k: kd.view(),
        v: vd.view(),
        mask: md.as_ref().map(|m| m.view()),
    };
    let mut out = dev.zeros::<f32>(out_len).unwrap();
    let mut lse = dev.alloc::<f32>(a.rows()).unwrap();
    attention::forward(&dev, &a, out.view_mut(), Some(lse.view_mut()), x).unwrap();
    // Scores are sums of dh ≤ 128 products of size ≤ 8 (outliers); exp and the weighted sum of
    // ≤ 37 values ≤ 8: f32 error ≈ 1e-6 relative of Σ|terms|: 2e-5 absolute, 1e-4 relative.
    assert_close(
        &format!("{test}: out"),
        &out.to_host().unwrap(),
        &want.out,
        2e-5,
        1e-4,
    );
    let mut dq = dev.zeros::<f32>(q.len()).unwrap();
    let mut dk = dev.zeros::<f32>(k.len()).unwrap();
    let mut dv = dev.zeros::<f32>(v.len()).unwrap();
    let g = AttnGrads {
        dq: dq.view_mut(),
        dk: dk.view_mut(),
        dv: dv.view_mut(),
    };
    attention::backward(&dev, &a, g, dod.view(), out.view(), lse.view(), x).unwrap();
    // Gradients combine two such sums (dP, then dS·K): 1e-4 absolute and relative.
    assert_close(
        &format!("{test}: dq"),
        &dq.to_host().unwrap(),
        &want.dq,
        1e-4,
        1e-4,
    );
    if k.as_ptr() != v.as_ptr() {
        assert_close(
            &format!("{test}: dk"),
            &dk.to_host().unwrap(),
            &want.dk,
            1e-4,
            1e-4,
        );
        assert_close(
            &format!("{test}: dv"),
            &dv.to_host().unwrap(),
            &want.dv,
            1e-4,
            1e-4,
        );
    }
}

fn refiner(
    nq: usize,
    heads: usize,
    dh: usize,
    dropout: bool,
) -> (Attention, Vec<f32>, Vec<f32>, Vec<f32>, Vec<u8>) {
    let b = 3;
    let mut a = Attention::contiguous(b, heads, nq, nq, dh);
    if dropout {
        a.dropout = Some((
            0.1,
            PhiloxState {
                seed: 7,
                stream: 3,
                offset: 5,
            },
        ));
    }
    let n = b * nq * heads * dh;
    (
        a,
        rand_vec(1, n, -1.0, 1.0),
        rand_vec(2, n, -1.0, 1.0),
        rand_vec(3, n, -1.0, 1.0),
        key_mask(b, nq),
    )
}

#[test]
fn attn_fwd_f32_refiner_with_masks_and_dropout() {
    // 37 keys: two key tiles, the second partial; 8 heads of 128.
    let (a, q, k, v, m) = refiner(37, 8, 128, true);
    let len = q.len();
    check(
        "attn_fwd_f32_refiner_with_masks_and_dropout",
        a,
        q,
        k,
        v,
        Some(m),
        len,
    );
}

#[test]
fn attn_bwd_dq_f32_and_dkdv_small_heads_no_dropout() {
    // dh = 32 (one register per lane), 9 queries: one partial tile, 2 heads.
    let (a, q, k, v, m) = refiner(9, 2, 32, false);
    let len = q.len();
    check(
        "attn_bwd_dq_f32_and_dkdv_small_heads_no_dropout",
        a,
        q,
        k,
        v,
        Some(m),
        len,
    );
}

#[test]
fn attn_bwd_dkdv_f32_refiner_without_mask() {
    let (a, q, k, v, _) = refiner(33, 4, 64, true);
    let len = q.len();
    check(
        "attn_bwd_dkdv_f32_refiner_without_mask",
        a,
        q,
        k,
        v,
        None,
        len,
    );
}

#[test]
fn attn_decode_fwd_f32_one_query_strided_kv() {
    // `forward` launches attn_decode_fwd_f32 for one query per (b, h).
    // p_att_feats [B, N, 2·H·dh]: V = first half, K = second half (AOANET.md 1.6), read in place.
    let (b, heads, dh, nk) = (3usize, 8usize, 128usize, 37usize);
    let w = heads * dh;
    let p = rand_vec(5, b * nk * 2 * w, -1.0, 1.0);
    let q = rand_vec(6, b * w, -1.0, 1.0);
    let kv = Layout {
        batch_stride: nk * 2 * w,
        row_stride: 2 * w,
    };
    for dropout in [false, true] {
        let mut a = Attention::contiguous(b, heads, 1, nk, dh);
        a.k = kv;
        a.v = kv;
        if dropout {
            a.dropout = Some((
                0.1,
                PhiloxState {
                    seed: 1,
                    stream: 2,
                    offset: 3,
                },
            ));
        }
        // K starts w elements into p: pass the sub-slices as separate host vectors.
        let (v_host, k_host) = (p.clone(), p[w..].to_vec());
        let mut k_pad = k_host;
        k_pad.extend(std::iter::repeat_n(0.0, w));
        check(
            "attn_decode_fwd_f32_one_query_strided_kv",
            a,
            q.clone(),
            k_pad,
            v_host,
            Some(key_mask(b, nk)),
            b * w,
        );
    }
}

#[test]
fn attn_fwd_f32_fused_equals_unfused() {
    let Some(dev) = gpu("attn_fwd_f32_fused_equals_unfused") else {
        return;
    };
    let (a, q, k, v, m) = refiner(37, 8, 128, true);
    let (qd, kd, vd, md) = (
        dev.htod(&q).unwrap(),
        dev.htod(&k).unwrap(),
        dev.htod(&v).unwrap(),
        dev.htod(&m).unwrap(),
    );
    let x = AttnInputs {
        q: qd.view(),
        k: kd.view(),
        v: vd.view(),
        mask: Some(md.view()),
    };
    let mut fused = dev.alloc::<f32>(q.len()).unwrap();
    attention::forward(&dev, &a, fused.view_mut(), None, x).unwrap();
    let mut unfused = dev.alloc::<f32>(q.len()).unwrap();
    attention::unfused_forward(&dev, &a, unfused.view_mut(), x, Precision::F32).unwrap();
    let u: Vec<f64> = unfused
        .to_host()
        .unwrap()
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    // Same math, same dropout mask, different summation order: f32 rounding only.
    assert_close(
        "fused vs unfused",
        &fused.to_host().unwrap(),
        &u,
        2e-5,
        1e-4,
    );
}
