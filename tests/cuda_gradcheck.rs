//! Gradient checks of ops running on a CUDA device, in f64: central differences of the device
//! forward against the device backward (the inputs cross to the GPU and the output back through
//! the differentiable `to_device`, so the checker itself runs on the host). This does not lean
//! on the CPU kernels at all: a backward kernel that is wrong in the same way as a CPU one
//! would still fail here. Skips with a printed reason without a GPU.
#![cfg(feature = "cuda")]
// `&[x.clone()]` reads better than `std::slice::from_ref(&x)` (as in the library's tests).
#![allow(clippy::cloned_ref_to_slice_refs)]

mod cuda_util;

use aoanet::Philox;
use aoanet::autograd::gradcheck::{GradcheckOptions, gradcheck};
use aoanet::tensor::{Device, Tensor};
use cuda_util::{cuda, randt};

/// Gradient-checks `f` run on `dev` (inputs moved there, the result moved back).
fn check(
    what: &str,
    dev: Device,
    inputs: &[Tensor],
    f: impl Fn(&[Tensor], Device) -> aoanet::Result<Tensor>,
) {
    let report = gradcheck(
        |xs| {
            let on: Vec<Tensor> = xs
                .iter()
                .map(|x| x.to_device(dev))
                .collect::<aoanet::Result<_>>()?;
            f(&on, dev)?.to_device(Device::Cpu)
        },
        inputs,
        &GradcheckOptions {
            // Few coordinates: every one is two device forwards.
            max_coords: 40,
            ..GradcheckOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}:\n{report}");
    assert!(report.passed(), "{what}:\n{report}");
}

#[test]
fn gradcheck_softmax_log_softmax_and_masked_scores() {
    let Some(dev) = cuda("gradcheck_softmax_log_softmax_and_masked_scores") else {
        return;
    };
    let x = randt(&[3, 17], -3.0, 3.0, 1);
    check("softmax", dev, &[x.clone()], |t, _| t[0].softmax());
    check("log_softmax", dev, &[x], |t, _| t[0].log_softmax());
    let mask = Tensor::from_vec(vec![0.0f64, 0.0, 1.0, 0.0, 1.0], &[5]).unwrap();
    check(
        "masked softmax",
        dev,
        &[randt(&[2, 5], -2.0, 2.0, 2)],
        move |t, d| t[0].masked_fill(&mask.to_device(d)?, -1e9)?.softmax(),
    );
}

#[test]
fn gradcheck_layer_norm_glu_and_linear() {
    let Some(dev) = cuda("gradcheck_layer_norm_glu_and_linear") else {
        return;
    };
    check(
        "layer_norm",
        dev,
        &[
            randt(&[4, 9], -1.0, 1.0, 3),
            randt(&[9], -1.0, 1.0, 4),
            randt(&[9], -1.0, 1.0, 5),
        ],
        |t, _| t[0].layer_norm(&t[1], &t[2], 1e-6),
    );
    check("glu", dev, &[randt(&[3, 10], -2.0, 2.0, 6)], |t, _| {
        t[0].glu()
    });
    check(
        "linear twice",
        dev,
        &[
            randt(&[3, 6], -1.0, 1.0, 7),
            randt(&[6, 6], -1.0, 1.0, 8),
            randt(&[6], -1.0, 1.0, 9),
        ],
        |t, _| {
            let h = t[0].linear(&t[1], Some(&t[2]))?.tanh()?;
            h.linear(&t[1], Some(&t[2]))
        },
    );
    check(
        "batched matmul of views",
        dev,
        &[
            randt(&[2, 4, 3], -1.0, 1.0, 10),
            randt(&[2, 5, 4], -1.0, 1.0, 11),
        ],
        |t, _| t[0].transpose(1, 2)?.matmul(&t[1].transpose(1, 2)?),
    );
}

#[test]
fn gradcheck_lstm_cell_two_steps() {
    let Some(dev) = cuda("gradcheck_lstm_cell_two_steps") else {
        return;
    };
    let (b, input, hs) = (2, 3, 4);
    let inputs = vec![
        randt(&[b, input], -1.0, 1.0, 1),
        randt(&[b, hs], -1.0, 1.0, 2),
        randt(&[b, hs], -1.0, 1.0, 3),
        randt(&[4 * hs, input], -1.0, 1.0, 4),
        randt(&[4 * hs, hs], -1.0, 1.0, 5),
        randt(&[4 * hs], -1.0, 1.0, 6),
        randt(&[4 * hs], -1.0, 1.0, 7),
    ];
    check("lstm", dev, &inputs, |t, _| {
        let o = t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?;
        let o2 = t[0].lstm_cell(&o.h, &o.c, &t[3], &t[4], &t[5], &t[6])?;
        Tensor::concat(&[&o2.h, &o2.c.mul_scalar(0.7)?], 1)
    });
}

#[test]
fn gradcheck_indexing_reductions_and_dropout() {
    let Some(dev) = cuda("gradcheck_indexing_reductions_and_dropout") else {
        return;
    };
    check("embedding", dev, &[randt(&[7, 5], -1.0, 1.0, 1)], |t, _| {
        t[0].embedding(&[4, 0, 4, 6])
    });
    check(
        "index_select axis 1",
        dev,
        &[randt(&[2, 3, 5], -1.0, 1.0, 2)],
        |t, _| t[0].index_select(1, &[2, 2, 0]),
    );
    check(
        "gather of log_softmax",
        dev,
        &[randt(&[3, 7], -1.0, 1.0, 3)],
        |t, _| t[0].log_softmax()?.gather_last(&[3, 0, 6]),
    );
    for axis in [0isize, 1] {
        check("max_axis", dev, &[randt(&[4, 7], -1.0, 1.0, 4)], |t, _| {
            t[0].max_axis(axis, false)
        });
        check(
            "sum and mean",
            dev,
            &[randt(&[4, 7], -1.0, 1.0, 5)],
            |t, _| t[0].sum_axis(axis, true)?.mul(&t[0].mean_axis(axis, true)?),
        );
    }
    check(
        "concat and narrow",
        dev,
        &[randt(&[3, 4], -1.0, 1.0, 6)],
        |t, _| Tensor::concat(&[&t[0].narrow(1, 1, 2)?, &t[0].exp()?], 1),
    );
    // A fresh generator per evaluation keeps the mask fixed across the differences.
    check("dropout", dev, &[randt(&[7, 33], -1.0, 1.0, 7)], |t, _| {
        t[0].dropout(0.4, true, &mut Philox::new(3))
    });
    check(
        "relu_dropout",
        dev,
        &[randt(&[7, 33], -1.0, 1.0, 8)],
        |t, _| t[0].relu_dropout(0.4, true, &mut Philox::new(3)),
    );
}

/// The decoder's fused LSTM input (one kernel each way on a GPU): gradients of the table, the
/// base and the dropped context, with a repeated word, in training and evaluation mode.
#[test]
fn gradcheck_lstm_input() {
    let Some(dev) = cuda("gradcheck_lstm_input") else {
        return;
    };
    let inputs = [
        randt(&[9, 6], -1.0, 1.0, 41),
        randt(&[5, 4], -1.0, 1.0, 42),
        randt(&[5, 4], -1.0, 1.0, 43),
    ];
    for train in [true, false] {
        check(
            &format!("lstm_input (train {train})"),
            dev,
            &inputs,
            |t, _| {
                aoanet::ops::LstmInput {
                    table: &t[0],
                    ids: &aoanet::tensor::Ids::from(vec![2, 8, 0, 2, 5]),
                    embed_p: 0.3,
                    base: &t[1],
                    x: &t[2],
                    x_p: 0.4,
                }
                .forward(train, &mut Philox::new(44))
            },
        );
    }
}
