//! GPU fused LSTM cell vs f64 CPU (PyTorch gate order i, f, g, o; both biases).
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::lstm::{self, LstmInputs};
use cuda_util::{assert_close, gpu, rand_vec};

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn lstm_cell_fwd_f32_and_lstm_cell_bwd_f32_match_cpu() {
    let Some(dev) = gpu("lstm_cell_fwd_f32_and_lstm_cell_bwd_f32_match_cpu") else {
        return;
    };
    for (b, hd) in [(1usize, 1usize), (7, 33), (50, 1024)] {
        let n4 = b * 4 * hd;
        let gx = rand_vec(1 + b as u64, n4, -2.0, 2.0);
        let gh = rand_vec(2 + b as u64, n4, -2.0, 2.0);
        let bih = rand_vec(3, 4 * hd, -0.5, 0.5);
        let bhh = rand_vec(4, 4 * hd, -0.5, 0.5);
        let cp = rand_vec(5, b * hd, -1.0, 1.0);
        let dh = rand_vec(6, b * hd, -1.0, 1.0);
        let dc = rand_vec(7, b * hd, -1.0, 1.0);
        let up = |v: &Vec<f32>| dev.htod(v).unwrap();
        let (gxd, ghd, bid, bhd, cpd, dhd, dcd) = (
            up(&gx),
            up(&gh),
            up(&bih),
            up(&bhh),
            up(&cp),
            up(&dh),
            up(&dc),
        );
        let mut h = dev.alloc::<f32>(b * hd).unwrap();
        let mut c = dev.alloc::<f32>(b * hd).unwrap();
        let mut gates = dev.alloc::<f32>(n4).unwrap();
        let inp = LstmInputs {
            gx: gxd.view(),
            gh: ghd.view(),
            b_ih: Some(bid.view()),
            b_hh: Some(bhd.view()),
            c_prev: Some(cpd.view()),
        };
        lstm::forward(
            &dev,
            h.view_mut(),
            c.view_mut(),
            Some(gates.view_mut()),
            inp,
            b,
            hd,
        )
        .unwrap();
        let mut dg = dev.alloc::<f32>(n4).unwrap();
        let mut dcp = dev.alloc::<f32>(b * hd).unwrap();
        lstm::backward(
            &dev,
            dg.view_mut(),
            Some(dcp.view_mut()),
            Some(dhd.view()),
            Some(dcd.view()),
            gates.view(),
            Some(cpd.view()),
            b,
            hd,
        )
        .unwrap();
        let (mut wh, mut wc, mut wg, mut wdg, mut wdcp) = (
            vec![0.0; b * hd],
            vec![0.0; b * hd],
            vec![0.0; n4],
            vec![0.0; n4],
            vec![0.0; b * hd],
        );
        for r in 0..b {
            for j in 0..hd {
                let pre = |q: usize| {
                    let k = q * hd + j;
                    f64::from(gx[r * 4 * hd + k])
                        + f64::from(gh[r * 4 * hd + k])
                        + f64::from(bih[k])
                        + f64::from(bhh[k])
                };
                let (i, f, g, o) = (sig(pre(0)), sig(pre(1)), pre(2).tanh(), sig(pre(3)));
                let t = r * hd + j;
                let cprev = f64::from(cp[t]);
                let cn = f * cprev + i * g;
                let tc = cn.tanh();
                wc[t] = cn;
                wh[t] = o * tc;
                let base = r * 4 * hd + j;
                for (q, val) in [i, f, g, o].into_iter().enumerate() {
                    wg[base + q * hd] = val;
                }
                let (gdh, gdc) = (f64::from(dh[t]), f64::from(dc[t]));
                let dct = gdc + gdh * o * (1.0 - tc * tc);
                wdg[base] = dct * g * i * (1.0 - i);
                wdg[base + hd] = dct * cprev * f * (1.0 - f);
                wdg[base + 2 * hd] = dct * i * (1.0 - g * g);
                wdg[base + 3 * hd] = gdh * tc * o * (1.0 - o);
                wdcp[t] = dct * f;
            }
        }
        // Sums of four f32 inputs then expf/tanhf (2 ulp) and a few products: values ≤ 2,
        // 2e-6 absolute plus 2e-6 relative covers the f32 rounding of the pre-activations.
        assert_close("lstm h", &h.to_host().unwrap(), &wh, 2e-6, 2e-6);
        assert_close("lstm c", &c.to_host().unwrap(), &wc, 2e-6, 2e-6);
        assert_close("lstm gates", &gates.to_host().unwrap(), &wg, 2e-6, 2e-6);
        assert_close("lstm dgates", &dg.to_host().unwrap(), &wdg, 4e-6, 4e-6);
        assert_close("lstm dc_prev", &dcp.to_host().unwrap(), &wdcp, 4e-6, 4e-6);
    }
}

/// The same check under the backward kernel's name (the comparison above covers both).
#[test]
fn lstm_cell_bwd_f32_matches_cpu() {
    lstm_cell_fwd_f32_and_lstm_cell_bwd_f32_match_cpu();
}
