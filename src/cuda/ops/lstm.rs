//! The fused LSTM cell on the device: two GEMMs (`x W_ihᵀ`, `h W_hhᵀ`) and one kernel for the
//! gates, the state update and the output; the backward's kernel gives the pre-activation
//! gradient `∂z`, from which `src/ops/lstm.rs` forms the input and weight gradients.

use super::{
    dense_copy, device_of, output, weight_product, with_buffer, with_cuda_float, with_dense,
};
use crate::Result;
use crate::cuda::kernels::lstm::{self as k, LstmInputs, LstmStrides};
use crate::tensor::Tensor;

/// `c` itself when its rows are unit-stride runs the kernels can read with a row stride (a
/// dense `[B, H]`, as the previous step's `c` half is), else a dense copy.
fn rows_view(c: &Tensor) -> Result<Tensor> {
    let (b, h) = (c.shape()[0], c.shape()[1]);
    let st = c.layout().strides();
    if (h <= 1 || st[1] == 1) && (b <= 1 || st[0] >= h) {
        Ok(c.clone())
    } else {
        dense_copy(c)
    }
}

/// `(h' and c' stacked [2, B, H], gates [B, 4H])`: the op's result and the activations the
/// backward needs (no graph).
pub(crate) fn lstm_cell(
    x: &Tensor,
    h: &Tensor,
    c: &Tensor,
    w: (&Tensor, &Tensor),
    b: (&Tensor, &Tensor),
) -> Result<(Tensor, Tensor)> {
    let dev = device_of(x)?;
    let (batch, hs) = (h.shape()[0], h.shape()[1]);
    let gx = weight_product(x, w.0, true, None)?;
    let gh = weight_product(h, w.1, true, None)?;
    let c = &rows_view(c)?;
    with_cuda_float!(x.dtype(), "lstm_cell", T => {
        let gates = output::<T>(&dev, &[batch, 4 * hs], |_| Ok(()))?;
        let hc = with_dense::<T, _>(&gx, "lstm_cell", |gxv| {
            with_dense::<T, _>(&gh, "lstm_cell", |ghv| {
                with_dense::<T, _>(b.0, "lstm_cell", |bi| {
                    with_dense::<T, _>(b.1, "lstm_cell", |bh| {
                        // c may be a view with a row stride (rows_view keeps such views).
                        let (cp, cs) = (c.layout().offset(), c.layout().strides()[0]);
                        with_buffer::<T, _>(c, "lstm_cell", |cb| {
                            super::with_buffer_mut::<T, _>(&gates, "lstm_cell", |gb| {
                                output::<T>(&dev, &[2, batch, hs], |o| {
                                    // SAFETY: the kernel writes h into the first B·H elements
                                    // and c into the last B·H: disjoint elements.
                                    let (oh, oc) = unsafe { o.alias() };
                                    let oc = oc.slice_mut(batch * hs..)?;
                                    let inp = LstmInputs {
                                        gx: gxv,
                                        gh: ghv,
                                        b_ih: Some(bi),
                                        b_hh: Some(bh),
                                        c_prev: Some(cb.slice(cp..)?),
                                    };
                                    let ld = LstmStrides {
                                        out: hs,
                                        c_prev: if batch > 1 { cs } else { hs },
                                        dh: hs,
                                        dc: hs,
                                    };
                                    k::forward_strided(&dev, oh, oc, Some(gb.view_mut()), inp, batch, hs, ld)
                                })
                            })
                        })
                    })
                })
            })
        })?;
        Ok((hc, gates))
    })
}

/// `(∂z [B, 4H], ∂c [B, H])` from the gradient of the stacked `h'`, `c'` (`g [2, B, H]`), the
/// saved gates and the previous cell state `c`.
pub(crate) fn lstm_cell_backward(
    g: &Tensor,
    gates: &Tensor,
    c: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let dev = device_of(g)?;
    let (batch, hs) = (c.shape()[0], c.shape()[1]);
    let c = &rows_view(c)?;
    with_cuda_float!(g.dtype(), "lstm_cell", T => {
        let dc = output::<T>(&dev, &[batch, hs], |_| Ok(()))?;
        let dz = with_dense::<T, _>(g, "lstm_cell", |gv| {
            with_dense::<T, _>(gates, "lstm_cell", |av| {
                let (cp, cs) = (c.layout().offset(), c.layout().strides()[0]);
                with_buffer::<T, _>(c, "lstm_cell", |cb| {
                    super::with_buffer_mut::<T, _>(&dc, "lstm_cell", |dcb| {
                        output::<T>(&dev, &[batch, 4 * hs], |o| {
                            let ld = LstmStrides {
                                out: hs,
                                c_prev: if batch > 1 { cs } else { hs },
                                dh: hs,
                                dc: hs,
                            };
                            k::backward_strided(
                                &dev,
                                o,
                                Some(dcb.view_mut()),
                                Some(gv),
                                Some(gv.slice(batch * hs..)?),
                                av,
                                Some(cb.slice(cp..)?),
                                batch,
                                hs,
                                ld,
                            )
                        })
                    })
                })
            })
        })?;
        Ok((dz, dc))
    })
}
