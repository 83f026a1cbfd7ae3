//! The decoder's LSTM input of one step, `[relu_dropout(E[ids]) ; ā + ctx_drop(ctx)]`
//! (AOANET.md 2.3: `xt = dropout(relu(embed(it)))`, then `cat([xt, mean_feats +
//! ctx_drop(prev_ctx)])`), as one op.
//!
//! Composed, a step takes four ops (an embedding lookup, [`Tensor::relu_dropout`],
//! [`Tensor::add_dropout`], a concatenation) and three more in the backward (a split, the
//! ReLU-scale product, a dropout). On a GPU this op is one kernel each way
//! (`kernels/dropout.cu`: `lstm_input_*`), with the same values, gradients and random words as
//! the composition, which it runs everywhere else. The decoder runs it at every step: 17
//! steps of a training batch save 85 launches.
//!
//! Backward: the embedding half's gradient `∂E[ids] = g[:, :E] · s_e` where the output is
//! positive (ReLU and dropout, as [`Tensor::relu_dropout`]), added into the table's rows
//! (deferred: every step's rows are added at once); `∂ā = g[:, E:]`;
//! `∂ctx = dropout(g[:, E:])` with the forward's words.

use crate::Result;
use crate::rng::Philox;
use crate::tensor::{Ids, Tensor};

/// The operands of [`LstmInput::forward`].
#[derive(Clone, Copy, Debug)]
pub struct LstmInput<'a> {
    /// The word embedding table `[vocab, E]`.
    pub table: &'a Tensor,
    /// One word per row, each below `vocab` (on a GPU the words may be in device memory,
    /// drawn there by scheduled sampling: the kernel reads them where they are).
    pub ids: &'a Ids,
    /// The word embedding's dropout probability (after its ReLU).
    pub embed_p: f64,
    /// `[rows, D]`, added as it is: the mean of the regions (`ā`).
    pub base: &'a Tensor,
    /// `[rows, D]`, dropped out with `x_p` before the addition: the previous context.
    pub x: &'a Tensor,
    /// The dropout probability of `x`.
    pub x_p: f64,
}

impl LstmInput<'_> {
    /// `[relu_dropout(table[ids]) ; base + dropout(x)]` along the last axis, `[rows, E + D]`,
    /// the embedding's words drawn first (as the composition draws them). Dropout only when
    /// `train`.
    pub fn forward(&self, train: bool, rng: &mut Philox) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(out) = self.fused(train, rng)? {
            return Ok(out);
        }
        let xt = self
            .table
            .embedding(self.ids.host()?)?
            .relu_dropout(self.embed_p, train, rng)?;
        let global = self.base.add_dropout(self.x, self.x_p, train, rng)?;
        Tensor::concat(&[&xt, &global], 1)
    }

    /// The one-kernel path on a GPU, or `None` (nothing drawn) where it does not apply: not
    /// every operand on one GPU in one dtype, shapes other than the decoder's, or a
    /// probability of 1.
    #[cfg(feature = "cuda")]
    fn fused(&self, train: bool, rng: &mut Philox) -> Result<Option<Tensor>> {
        use crate::autograd::Grad;
        use crate::cuda::kernels::dropout::{HalfDropout, LstmInputDims};
        let (t, b, x) = (self.table, self.base, self.x);
        let on_one_gpu = t.is_cuda()
            && [b, x]
                .iter()
                .all(|o| o.device() == t.device() && o.dtype() == t.dtype());
        if !on_one_gpu
            || t.rank() != 2
            || b.rank() != 2
            || b.shape() != x.shape()
            || b.shape()[0] != self.ids.len()
            || !(0.0..1.0).contains(&self.embed_p)
            || !(0.0..1.0).contains(&self.x_p)
        {
            return Ok(None);
        }
        let dims = LstmInputDims {
            rows: self.ids.len(),
            embed: t.shape()[1],
            width: b.shape()[1],
            vocab: t.shape()[0],
        };
        // Words on the host are checked here; words drawn on the device are below the
        // number of classes by construction (and the kernel turns a row with any other into
        // NaN rather than read outside the table).
        if let Some(&bad) = self
            .ids
            .host_if_known()
            .and_then(|ids| ids.iter().find(|&&i| i >= dims.vocab))
        {
            return Err(crate::Error::invalid(format!(
                "lstm_input: word id {bad} is outside the embedding table of {} rows",
                dims.vocab
            )));
        }
        let mut draw = |p: f64, n: usize| {
            if train && p > 0.0 {
                HalfDropout {
                    p,
                    state: rng.reserve(n as u64),
                }
            } else {
                HalfDropout::NONE
            }
        };
        let embed_drop = draw(self.embed_p, dims.rows * dims.embed);
        let x_drop = draw(self.x_p, dims.rows * dims.width);
        let drops = [embed_drop, x_drop];
        let out = crate::cuda::ops::dropout::lstm_input(t, self.ids, b, x, dims, drops)?;
        let (y, ids, table_shape) = (out.clone(), self.ids.clone(), t.shape().to_vec());
        Ok(Some(out.record_grads("lstm_input", &[t, b, x], move |g| {
            let [g_emb, g_base, g_x] =
                crate::cuda::ops::dropout::lstm_input_backward(g, &y, dims, drops)?;
            Ok(vec![
                Some(Grad::Rows {
                    ids,
                    values: g_emb,
                    shape: table_shape,
                }),
                Some(Grad::Dense(g_base)),
                Some(Grad::Dense(g_x)),
            ])
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::gradcheck::{GradcheckOptions, gradcheck};
    use crate::ops::test_util::rand;

    /// The op is the composition on the CPU: its values, its generator use, and gradients
    /// that pass the finite-difference check for all three operands.
    #[test]
    fn values_and_gradients_of_the_composition() {
        let (table, base, x) = (rand(&[7, 5], 1), rand(&[4, 3], 2), rand(&[4, 3], 3));
        let ids = Ids::from(vec![3, 0, 6, 3]);
        let op = LstmInput {
            table: &table,
            ids: &ids,
            embed_p: 0.3,
            base: &base,
            x: &x,
            x_p: 0.4,
        };
        let mut rng = Philox::new(4);
        let y = op.forward(true, &mut rng).unwrap();
        assert_eq!(y.shape(), &[4, 8]);
        assert_eq!(rng.state().offset, 4 * 5 + 4 * 3);
        let mut again = Philox::new(4);
        let xt = table
            .embedding(ids.host().unwrap())
            .unwrap()
            .relu_dropout(0.3, true, &mut again)
            .unwrap();
        let global = base.add_dropout(&x, 0.4, true, &mut again).unwrap();
        let want = Tensor::concat(&[&xt, &global], 1).unwrap();
        assert_eq!(y.to_vec_f64(), want.to_vec_f64());
        // On the CPU the op is the composition, whose ops each have their own check (with the
        // scaled-backward test); this checks the whole, and the GPU tests check the fused
        // kernel's backward against it.
        let report = gradcheck(
            |t| {
                LstmInput {
                    table: &t[0],
                    ids: &ids,
                    embed_p: 0.3,
                    base: &t[1],
                    x: &t[2],
                    x_p: 0.4,
                }
                .forward(true, &mut Philox::new(5))
            },
            &[rand(&[7, 5], 6), rand(&[4, 3], 7), rand(&[4, 3], 8)],
            &GradcheckOptions::default(),
        )
        .unwrap();
        assert!(report.passed(), "{report}");
    }
}
