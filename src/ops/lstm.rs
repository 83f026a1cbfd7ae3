//! The LSTM cell as one op with a hand-written backward (PyTorch's `nn.LSTMCell` maths: gate
//! order i, f, g, o; both biases added).
//!
//! Forward: `z = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`, split in four `[B, H]` blocks,
//! `i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o)`, `c' = f ⊙ c + i ⊙ g`,
//! `h' = o ⊙ tanh(c')`. The op returns `h'` and `c'` stacked as one `[2, B, H]` tensor (so one
//! node carries both outputs); [`LstmCellOutput`] holds the two halves, each a dense `[B, H]`
//! view (what the next ops read without a copy: the query's LayerNorm, the concatenation with
//! the attended context, the next step's products).
//!
//! Backward, from `∂h'`, `∂c'` (either may be zero), with `t = tanh(c')`:
//! ```text
//! ∂o = ∂h' ⊙ t                  ∂c_tot = ∂c' + ∂h' ⊙ o ⊙ (1 − t²)
//! ∂i = ∂c_tot ⊙ g   ∂f = ∂c_tot ⊙ c   ∂g = ∂c_tot ⊙ i   ∂c = ∂c_tot ⊙ f
//! ∂z = [∂i ⊙ i(1−i) ; ∂f ⊙ f(1−f) ; ∂g ⊙ (1−g²) ; ∂o ⊙ o(1−o)]
//! ∂x = ∂z W_ih   ∂h = ∂z W_hh   ∂W_ih = ∂zᵀ x   ∂W_hh = ∂zᵀ h   ∂b_ih = ∂b_hh = Σ_rows ∂z
//! ```
//!
//! On a CUDA device the two products are GEMM kernels and the gates, state update and output
//! one fused kernel (`kernels/lstm.cu`), which also gives `∂z` and `∂c` in the backward; the
//! input and weight gradients are the same products as here.

use super::weights::weight_product;
use crate::autograd::{Grad, no_grad};
#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{Float, Tensor};
use crate::{Error, Result, with_float};

/// The two results of [`Tensor::lstm_cell`]: dense views into one `[2, B, H]` result.
#[derive(Clone, Debug)]
pub struct LstmCellOutput {
    /// The new hidden state `h'` `[B, H]`.
    pub h: Tensor,
    /// The new cell state `c'` `[B, H]`.
    pub c: Tensor,
}

/// Gate activations `[i f g o]` (`[B, 4H]`) and the new `h'`, `c'` stacked (`[2, B, H]`) from
/// the pre-activations `z` and the old cell state.
fn cell_forward<T: Float>(z: &[T], c: &[T], hs: usize) -> (Vec<T>, Vec<T>) {
    let rows = c.len() / hs;
    let mut acts = vec![T::ZERO; rows * 4 * hs];
    let mut hc = vec![T::ZERO; rows * 2 * hs];
    let (h_new, c_out) = hc.split_at_mut(rows * hs);
    for r in 0..rows {
        let zr = &z[r * 4 * hs..][..4 * hs];
        let ar = &mut acts[r * 4 * hs..][..4 * hs];
        let (h_row, c_row) = (&mut h_new[r * hs..][..hs], &mut c_out[r * hs..][..hs]);
        for j in 0..hs {
            let i = zr[j].sigmoid();
            let f = zr[hs + j].sigmoid();
            let g = zr[2 * hs + j].tanh();
            let o = zr[3 * hs + j].sigmoid();
            let c_new = f * c[r * hs + j] + i * g;
            ar[j] = i;
            ar[hs + j] = f;
            ar[2 * hs + j] = g;
            ar[3 * hs + j] = o;
            h_row[j] = o * c_new.tanh();
            c_row[j] = c_new;
        }
    }
    (acts, hc)
}

/// `∂z` from the output gradient (`∂h'`, `∂c'` stacked as the output), the saved activations
/// and states; also `∂c`.
fn cell_backward<T: Float>(
    ghc: &[T],
    acts: &[T],
    hc: &[T],
    c: &[T],
    hs: usize,
) -> (Vec<T>, Vec<T>) {
    let rows = c.len() / hs;
    let mut dz = vec![T::ZERO; rows * 4 * hs];
    let mut dc = vec![T::ZERO; rows * hs];
    for r in 0..rows {
        for j in 0..hs {
            let a = &acts[r * 4 * hs..];
            let (i, f, g, o) = (a[j], a[hs + j], a[2 * hs + j], a[3 * hs + j]);
            let t = hc[(rows + r) * hs + j].tanh();
            let (dh, dcn) = (ghc[r * hs + j], ghc[(rows + r) * hs + j]);
            let d_o = dh * t;
            let dct = dcn + dh * o * (T::ONE - t * t);
            let d = &mut dz[r * 4 * hs..];
            d[j] = dct * g * i * (T::ONE - i);
            d[hs + j] = dct * c[r * hs + j] * f * (T::ONE - f);
            d[2 * hs + j] = dct * i * (T::ONE - g * g);
            d[3 * hs + j] = d_o * o * (T::ONE - o);
            dc[r * hs + j] = dct * f;
        }
    }
    (dz, dc)
}

/// The gradients of all seven inputs from `∂z` and `∂c` (both devices).
fn lstm_input_grads(
    dz: Tensor,
    dc: Tensor,
    x: &Tensor,
    h: &Tensor,
    w_ih: &Tensor,
    w_hh: &Tensor,
) -> Result<Vec<Option<Grad>>> {
    // The weight gradients ∂zᵀx and ∂zᵀh and the bias gradients Σ_rows ∂z are deferred: one
    // GEMM and one column sum each over all time steps.
    Ok(vec![
        Some(Grad::Dense(weight_product(&dz, w_ih, false)?)),
        Some(Grad::Dense(weight_product(&dz, w_hh, false)?)),
        Some(Grad::Dense(dc)),
        Some(Grad::Outer {
            g: dz.clone(),
            x: x.detach(),
        }),
        Some(Grad::Outer {
            g: dz.clone(),
            x: h.detach(),
        }),
        Some(Grad::SumRows { g: dz.clone() }),
        Some(Grad::SumRows { g: dz }),
    ])
}

impl Tensor {
    /// One LSTM step for input `x [B, In]` and state `h, c [B, H]` (`self` is `x`), with
    /// weights `w_ih [4H, In]`, `w_hh [4H, H]` and biases `[4H]`.
    pub fn lstm_cell(
        &self,
        h: &Tensor,
        c: &Tensor,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
    ) -> Result<LstmCellOutput> {
        let (x, b) = (self, self.shape().first().copied().unwrap_or(0));
        let hs = h.shape().get(1).copied().unwrap_or(0);
        let input = x.shape().get(1).copied().unwrap_or(0);
        let ok = x.rank() == 2
            && h.shape() == [b, hs]
            && c.shape() == [b, hs]
            && w_ih.shape() == [4 * hs, input]
            && w_hh.shape() == [4 * hs, hs]
            && b_ih.shape() == [4 * hs]
            && b_hh.shape() == [4 * hs];
        if !ok {
            return Err(Error::shape(
                "lstm_cell",
                &[
                    x.shape(),
                    h.shape(),
                    c.shape(),
                    w_ih.shape(),
                    w_hh.shape(),
                    b_ih.shape(),
                    b_hh.shape(),
                ],
                "x [B, In], h and c [B, H], w_ih [4H, In], w_hh [4H, H], b_ih and b_hh [4H]",
            ));
        }
        #[cfg(feature = "cuda")]
        if x.is_cuda() {
            for t in [h, c, w_ih, w_hh, b_ih, b_hh] {
                super::same_kind("lstm_cell", x, t)?;
            }
            let (hc, gates) = gpu::lstm_cell(x, h, c, (w_ih, w_hh), (b_ih, b_hh))?;
            let saved = (
                x.clone(),
                h.clone(),
                c.clone(),
                w_ih.clone(),
                w_hh.clone(),
                gates,
            );
            let out = hc.record_grads("lstm_cell", &[x, h, c, w_ih, w_hh, b_ih, b_hh], move |g| {
                let (x, h, c, w_ih, w_hh, gates) = saved;
                let (dz, dc) = gpu::lstm_cell_backward(g, &gates, &c)?;
                lstm_input_grads(dz, dc, &x, &h, &w_ih, &w_hh)
            });
            return Ok(LstmCellOutput {
                h: out.narrow(0, 0, 1)?.squeeze(0)?,
                c: out.narrow(0, 1, 1)?.squeeze(0)?,
            });
        }
        let z = no_grad(|| {
            weight_product(x, w_ih, true)?
                .add(&weight_product(h, w_hh, true)?)?
                .add(&b_ih.add(b_hh)?)
        })?;
        let (acts, hc) = with_float!(x.dtype(), "lstm_cell", T => {
            let (a, o) = z.with_slice::<T, _>("lstm_cell", |zv| c.with_slice::<T, _>("lstm_cell", |cv| cell_forward(zv, cv, hs)))??;
            Ok((Tensor::from_vec(a, &[b, 4 * hs])?, Tensor::from_vec(o, &[2, b, hs])?))
        })?;
        let saved = (
            x.clone(),
            h.clone(),
            c.clone(),
            w_ih.clone(),
            w_hh.clone(),
            acts,
            hc.clone(),
        );
        let out = hc.record_grads("lstm_cell", &[x, h, c, w_ih, w_hh, b_ih, b_hh], move |g| {
            let (x, h, c, w_ih, w_hh, acts, hc) = saved;
            let (dz, dc) = with_float!(g.dtype(), "lstm_cell", T => {
                let (dz, dc) = g.with_slice::<T, _>("lstm_cell", |gv| {
                    acts.with_slice::<T, _>("lstm_cell", |av| {
                        hc.with_slice::<T, _>("lstm_cell", |hv| c.with_slice::<T, _>("lstm_cell", |cv| cell_backward(gv, av, hv, cv, hs)))
                    })
                })????;
                Ok((Tensor::from_vec(dz, &[b, 4 * hs])?, Tensor::from_vec(dc, &[b, hs])?))
            })?;
            lstm_input_grads(dz, dc, &x, &h, &w_ih, &w_hh)
        });
        Ok(LstmCellOutput {
            h: out.narrow(0, 0, 1)?.squeeze(0)?,
            c: out.narrow(0, 1, 1)?.squeeze(0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;
    use crate::tensor::Tensor;

    /// The cell composed from differentiable ops, as PyTorch writes it: the reference.
    fn composed(t: &[Tensor]) -> crate::Result<(Tensor, Tensor)> {
        let z = t[0]
            .matmul(&t[3].transpose(0, 1)?)?
            .add(&t[5])?
            .add(&t[1].matmul(&t[4].transpose(0, 1)?)?)?
            .add(&t[6])?;
        let g = z.chunk(4, 1)?;
        let (i, f, gg, o) = (
            g[0].sigmoid()?,
            g[1].sigmoid()?,
            g[2].tanh()?,
            g[3].sigmoid()?,
        );
        let c = f.mul(&t[2])?.add(&i.mul(&gg)?)?;
        Ok((o.mul(&c.tanh()?)?, c))
    }

    fn inputs(b: usize, input: usize, hs: usize) -> Vec<Tensor> {
        vec![
            rand(&[b, input], 1),
            rand(&[b, hs], 2),
            rand(&[b, hs], 3),
            rand(&[4 * hs, input], 4),
            rand(&[4 * hs, hs], 5),
            rand(&[4 * hs], 6),
            rand(&[4 * hs], 7),
        ]
    }

    #[test]
    fn equals_the_composed_cell() {
        let t = inputs(3, 5, 7);
        let out = t[0]
            .lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])
            .unwrap();
        let (h, c) = composed(&t).unwrap();
        for (a, b) in out
            .h
            .to_vec_f64()
            .iter()
            .zip(h.to_vec_f64())
            .chain(out.c.to_vec_f64().iter().zip(c.to_vec_f64()))
        {
            assert!((a - b).abs() < 1e-14);
        }
        assert!(
            t[0].lstm_cell(&t[2], &t[1], &t[4], &t[3], &t[5], &t[6])
                .is_err()
        );
    }

    #[test]
    fn gradients() {
        for (b, input, hs) in [(1, 1, 1), (3, 5, 7), (2, 9, 4)] {
            let t = inputs(b, input, hs);
            // Both outputs used with different weights, and each alone.
            check_op(
                "lstm_cell",
                |t| {
                    let o = t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?;
                    Tensor::concat(&[&o.h, &o.c.mul_scalar(0.7)?], 1)
                },
                &t,
            );
            check_op(
                "lstm_cell",
                |t| Ok(t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?.h),
                &t,
            );
            check_op(
                "lstm_cell",
                |t| Ok(t[0].lstm_cell(&t[1], &t[2], &t[3], &t[4], &t[5], &t[6])?.c),
                &t,
            );
        }
    }
}
