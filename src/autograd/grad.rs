//! Gradients as they flow through the backward pass, including deferred forms that make
//! recurrent weight and bias gradients, and gradients assembled from slices, cheap.
//!
//! A weight used at every decoder step receives one gradient per step. Computed eagerly, each
//! is a full `[out, in]` GEMM with a tiny inner dimension (the batch, 50) plus a full-size
//! addition: for the LSTM and logit weights that is tens of megabytes written 17 times. Ops
//! may instead return the gradient *as a product still to be formed*:
//! - [`Grad::Outer`]`{ g, x }` means `gᵀ·x` (the weight gradient of `y = x Wᵀ`);
//! - [`Grad::Rows`] means rows `ids` of a zero tensor receive `values` (an embedding's
//!   gradient);
//! - [`Grad::SumRows`]`{ g }` means the sum of `g`'s rows (the bias gradient of `y = x Wᵀ + b`);
//! - [`Grad::Window`] means `g` placed in a window of a zero tensor (the gradient of a
//!   `narrow`): windows that tile their tensor along one axis (an LSTM step's `h` and `c`
//!   halves, keys and values cut from one projection) are joined by one concatenation instead
//!   of each being padded with zeros and added. Unlike the other deferred forms, windows also
//!   wait for non-leaf tensors, whose op needs the whole gradient only when it runs.
//!
//! Pieces bound for a leaf are collected in a [`Pending`] and formed once, when the walk
//! reaches the leaf: all `g`s and `x`s stacked into one GEMM with the summed inner dimension,
//! all rows into one scatter-add, all row sums stacked into one column sum (on a GPU each
//! stack is one launch: 17 decoder steps' bias gradients cost a copy and a sum, not 17 sums
//! and 17 additions). Pieces bound for a non-leaf are formed at once (the op that
//! receives them needs a dense tensor). The result equals the eager sum up to the order of
//! floating-point additions. On a CUDA device the GEMM, the scatter-add and the in-place
//! accumulation are device kernels.

use crate::tensor::{Float, Ids, Tensor, TensorId, numel};
use crate::{Error, Result, with_float};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// The stacks of gradient pieces formed during this thread's backward pass, by the pieces'
    /// identities: a linear layer applied at every decoding step hands the same per-step
    /// output gradients to its weight (`Outer`) and its bias (`SumRows`), an LSTM cell to two
    /// weights and two biases; they are stacked once, not once per parameter. `None` outside
    /// a backward pass.
    static STACKS: RefCell<Option<HashMap<Vec<TensorId>, Tensor>>> = const { RefCell::new(None) };
}

/// Runs `f` (a backward pass) with [`stack_rows`] remembering its stacks, and forgets them
/// after (whatever `f` returns), so they live no longer than the pass.
pub(crate) fn with_stack_cache<R>(f: impl FnOnce() -> R) -> R {
    let outer = STACKS.with(|s| s.borrow_mut().replace(HashMap::new()));
    let r = f();
    STACKS.with(|s| *s.borrow_mut() = outer);
    r
}

/// `parts` concatenated along the first axis: the stack formed earlier in this backward pass
/// from the same tensors when there is one. Gradient pieces are never written after they are
/// made (one held by two parameters' pending sums is not exclusively owned, so nothing adds
/// into it in place), so equal identities mean equal values.
fn stack_rows(parts: &[&Tensor]) -> Result<Tensor> {
    if parts.len() == 1 {
        return Ok(parts[0].clone());
    }
    let key: Vec<TensorId> = parts.iter().map(|t| t.id()).collect();
    if let Some(t) = STACKS.with(|s| s.borrow().as_ref().and_then(|m| m.get(&key).cloned())) {
        return Ok(t);
    }
    let stacked = Tensor::concat(parts, 0)?;
    STACKS.with(|s| {
        if let Some(m) = s.borrow_mut().as_mut() {
            m.insert(key, stacked.clone());
        }
    });
    Ok(stacked)
}

/// A gradient on its way to an op input.
#[derive(Clone, Debug)]
pub enum Grad {
    /// An ordinary tensor shaped like the input.
    Dense(Tensor),
    /// `gᵀ·x` with `g [rows, out]`, `x [rows, in]`: an `[out, in]` gradient not yet formed.
    Outer {
        /// `[rows, out]`
        g: Tensor,
        /// `[rows, in]`
        x: Tensor,
    },
    /// `Σ_r g[r, :]` with `g [rows, n]`: an `[n]` gradient not yet formed.
    SumRows {
        /// `[rows, n]`
        g: Tensor,
    },
    /// Zeros of `shape` with `g` at `start..start + g.shape()[axis]` along `axis`.
    Window {
        /// The window's values.
        g: Tensor,
        /// The axis the window is cut along.
        axis: usize,
        /// Where along `axis` it starts.
        start: usize,
        /// The full gradient's shape.
        shape: Vec<usize>,
    },
    /// Zeros of `shape` with `values [ids.len(), shape[1..]]` added at rows `ids`.
    Rows {
        /// Destination rows (repeats add up); on a GPU they may still be in device memory
        /// (words drawn there), read back when the pieces are formed.
        ids: Ids,
        /// One slice per id.
        values: Tensor,
        /// The full gradient's shape.
        shape: Vec<usize>,
    },
}

impl From<Tensor> for Grad {
    fn from(t: Tensor) -> Self {
        Grad::Dense(t)
    }
}

impl Grad {
    /// The shape of the gradient this represents.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Grad::Dense(t) => t.shape().to_vec(),
            Grad::Outer { g, x } => vec![g.shape()[1], x.shape()[1]],
            Grad::SumRows { g } => vec![g.shape()[1]],
            Grad::Window { shape, .. } => shape.clone(),
            Grad::Rows { shape, .. } => shape.clone(),
        }
    }

    /// The same gradient times `f` (the gradient checker's self-test).
    pub fn scaled(self, f: f64) -> Result<Grad> {
        Ok(match self {
            Grad::Dense(t) => Grad::Dense(t.mul_scalar(f)?),
            Grad::Outer { g, x } => Grad::Outer {
                g: g.mul_scalar(f)?,
                x,
            },
            Grad::SumRows { g } => Grad::SumRows {
                g: g.mul_scalar(f)?,
            },
            Grad::Window {
                g,
                axis,
                start,
                shape,
            } => Grad::Window {
                g: g.mul_scalar(f)?,
                axis,
                start,
                shape,
            },
            Grad::Rows { ids, values, shape } => Grad::Rows {
                ids,
                values: values.mul_scalar(f)?,
                shape,
            },
        })
    }

    /// Forms the gradient as a dense tensor.
    pub fn into_dense(self) -> Result<Tensor> {
        let mut p = Pending::default();
        p.add(self)?;
        p.finish()
    }
}

/// The gradients collected for one tensor during a backward pass.
#[derive(Default)]
pub struct Pending {
    dense: Vec<Tensor>,
    outer: Vec<(Tensor, Tensor)>,
    sum_rows: Vec<Tensor>,
    windows: Vec<(usize, usize, Tensor)>,
    rows: Vec<(Ids, Tensor)>,
    shape: Option<Vec<usize>>,
}

impl Pending {
    /// Adds one more gradient (kept until [`Pending::finish`], which forms them all).
    pub fn add(&mut self, g: Grad) -> Result<()> {
        let shape = g.shape();
        if let Some(s) = &self.shape
            && *s != shape
        {
            return Err(Error::shape(
                "backward",
                &[s, &shape],
                "gradients of one tensor to agree in shape",
            ));
        }
        self.shape = Some(shape);
        match g {
            Grad::Dense(t) => self.dense.push(t),
            Grad::Outer { g, x } => self.outer.push((g, x)),
            Grad::SumRows { g } => self.sum_rows.push(g),
            Grad::Window { g, axis, start, .. } => self.windows.push((axis, start, g)),
            Grad::Rows { ids, values, .. } => self.rows.push((ids, values)),
        }
        Ok(())
    }

    /// Forms the sum: the dense pieces added in arrival order (one launch on a GPU), one GEMM
    /// over all outer-product pieces, one scatter over all rows.
    pub fn finish(self) -> Result<Tensor> {
        let shape = self
            .shape
            .ok_or_else(|| Error::invalid("backward: an empty gradient"))?;
        let mut total = sum_dense(self.dense)?;
        if !self.outer.is_empty() {
            let gs: Vec<&Tensor> = self.outer.iter().map(|(g, _)| g).collect();
            let xs: Vec<&Tensor> = self.outer.iter().map(|(_, x)| x).collect();
            let (g, x) = if gs.len() == 1 {
                (gs[0].clone(), xs[0].clone())
            } else {
                // The gradients' stack is shared with the bias (and an LSTM's other weight);
                // the inputs' is this weight's own.
                (stack_rows(&gs)?, Tensor::concat(&xs, 0)?)
            };
            let product = g.transpose(0, 1)?.matmul(&x)?;
            total = Some(match total {
                None => product,
                Some(t) => accumulate(t, &product)?,
            });
        }
        if !self.sum_rows.is_empty() {
            let gs: Vec<&Tensor> = self.sum_rows.iter().collect();
            let sum = if gs.len() == 1 {
                gs[0].sum_axis(0, false)?
            } else {
                stack_rows(&gs)?.sum_axis(0, false)?
            };
            total = Some(match total {
                None => sum,
                Some(t) => accumulate(t, &sum)?,
            });
        }
        if !self.windows.is_empty() {
            let formed = form_windows(self.windows, &shape)?;
            total = Some(match total {
                None => formed,
                Some(t) => accumulate(t, &formed)?,
            });
        }
        if !self.rows.is_empty() {
            let dtype = self.rows[0].1.dtype();
            let out = match total.take() {
                Some(t) if exclusively_owned(&t) => t,
                Some(t) => t.deep_copy()?,
                None => Tensor::zeros_on(&shape, dtype, self.rows[0].1.device())?,
            };
            total = Some(scatter_add_pieces(out, &self.rows)?);
        }
        total.ok_or_else(|| Error::invalid("backward: an empty gradient"))
    }
}

/// The dense pieces summed in arrival order, the order an eager `((a + b) + c) + …` adds
/// them: on a GPU one launch per 16 pieces (the decoder's keys and values collect one piece
/// per step), elsewhere one addition each; in place into the first piece when nothing else
/// holds it.
fn sum_dense(parts: Vec<Tensor>) -> Result<Option<Tensor>> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Ok(None);
    };
    let rest: Vec<Tensor> = parts.collect();
    if rest.is_empty() {
        return Ok(Some(first));
    }
    #[cfg(feature = "cuda")]
    if first.is_cuda()
        && rest
            .iter()
            .all(|t| t.device() == first.device() && t.dtype() == first.dtype())
    {
        let in_place = exclusively_owned(&first);
        return crate::cuda::ops::sum_many(first, &rest, in_place).map(Some);
    }
    let mut total = first;
    for t in &rest {
        total = accumulate(total, t)?;
    }
    Ok(Some(total))
}

/// The sum of `(axis, start, g)` windows of a zero tensor of `shape`: one concatenation when
/// they tile it along one axis, else each padded with zeros and added.
fn form_windows(mut windows: Vec<(usize, usize, Tensor)>, shape: &[usize]) -> Result<Tensor> {
    let axis = windows[0].0;
    windows.sort_by_key(|&(_, start, _)| start);
    let mut next = 0;
    let mut tiles = true;
    for (a, start, g) in &windows {
        if *a != axis || *start != next {
            tiles = false;
            break;
        }
        next += g.shape()[axis];
    }
    if tiles && next == shape[axis] {
        let parts: Vec<&Tensor> = windows.iter().map(|(_, _, g)| g).collect();
        return if parts.len() == 1 {
            Ok(parts[0].clone())
        } else {
            Tensor::concat(&parts, axis as isize)
        };
    }
    let mut total: Option<Tensor> = None;
    for (axis, start, g) in windows {
        let padded = crate::ops::pad_into(&g, shape, axis, start)?;
        total = Some(match total {
            None => padded,
            Some(t) => accumulate(t, &padded)?,
        });
    }
    Ok(total.expect("at least one window"))
}

/// Whether nothing else can observe `t`'s storage, so it may be written in place.
fn exclusively_owned(t: &Tensor) -> bool {
    std::sync::Arc::strong_count(&t.0) == 1
        && std::sync::Arc::strong_count(&t.0.storage) == 1
        && t.is_contiguous()
        && t.layout().offset() == 0
}

/// `prev + g`, written into `prev`'s buffer when nothing else holds it (saves an allocation
/// and a pass over memory for every accumulated gradient).
pub(crate) fn accumulate(prev: Tensor, g: &Tensor) -> Result<Tensor> {
    if prev.shape() != g.shape()
        || prev.dtype() != g.dtype()
        || prev.device() != g.device()
        || !exclusively_owned(&prev)
    {
        return prev.add(g);
    }
    #[cfg(feature = "cuda")]
    if prev.is_cuda() {
        crate::cuda::ops::accumulate_(&prev, g)?;
        return Ok(prev);
    }
    with_float!(prev.dtype(), "accumulate", T => {
        g.with_slice::<T, _>("accumulate", |gv| {
            prev.with_data_mut::<T, _>(|pv| add_slices(pv, gv))
        })??;
        Ok(prev)
    })
}

fn add_slices<T: Float>(dst: &mut [T], src: &[T]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// Adds each piece's `values` rows into `out` at its rows `ids`, piece after piece (in place
/// when `out` is exclusively owned): on a GPU in one launch (an embedding used at every
/// decoding step collects a piece per step), elsewhere one row at a time; the same bits
/// either way.
fn scatter_add_pieces(out: Tensor, pieces: &[(Ids, Tensor)]) -> Result<Tensor> {
    let out = if exclusively_owned(&out) {
        out
    } else {
        out.deep_copy()?
    };
    let row: usize = numel(&out.shape()[1..]);
    let rows = out.shape()[0];
    // Words drawn on a GPU are read back here, all pieces' at once (one wait).
    Ids::fetch_all(pieces.iter().map(|(ids, _)| ids))?;
    for (ids, values) in pieces {
        check_rows(
            "scatter_add_rows",
            out.shape(),
            rows,
            row,
            ids.host()?,
            values,
        )?;
    }
    #[cfg(feature = "cuda")]
    if out.is_cuda()
        && pieces
            .iter()
            .all(|(_, v)| v.device() == out.device() && v.dtype() == out.dtype())
    {
        crate::cuda::ops::scatter_add_rows_many_(&out, pieces)?;
        return Ok(out);
    }
    with_float!(out.dtype(), "scatter_add_rows", T => {
        out.with_data_mut::<T, _>(|o| {
            for (ids, values) in pieces {
                let ids = ids.host()?;
                values.with_slice::<T, _>("scatter_add_rows", |v| {
                    for (k, &i) in ids.iter().enumerate() {
                        add_slices(&mut o[i * row..(i + 1) * row], &v[k * row..(k + 1) * row]);
                    }
                })?;
            }
            Ok::<(), Error>(())
        })??;
        Ok(out)
    })
}

/// Checks one piece of a scatter: one row of values per id, every id a row of `out`.
fn check_rows(
    op: &'static str,
    shape: &[usize],
    rows: usize,
    row: usize,
    ids: &[usize],
    values: &Tensor,
) -> Result<()> {
    if values.numel() != ids.len() * row {
        return Err(Error::shape(
            op,
            &[shape, values.shape()],
            "one row of values per id",
        ));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= rows) {
        return Err(Error::invalid(format!(
            "{op}: row {bad} out of range for {rows} rows"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::rand;

    /// Within a backward pass the stack of the same pieces is formed once and shared (the
    /// bias and the weight of a layer used at every step); outside one, or for other pieces,
    /// it is formed anew; the values are the concatenation's either way.
    #[test]
    fn stacks_of_the_same_pieces_are_formed_once_per_pass() {
        let (a, b, c) = (rand(&[2, 3], 1), rand(&[4, 3], 2), rand(&[1, 3], 3));
        let want = Tensor::concat(&[&a, &b, &c], 0).unwrap().to_vec_f64();
        let (first, again, other) = with_stack_cache(|| {
            (
                stack_rows(&[&a, &b, &c]).unwrap(),
                stack_rows(&[&a, &b, &c]).unwrap(),
                stack_rows(&[&a, &c, &b]).unwrap(),
            )
        });
        assert_eq!(first.to_vec_f64(), want);
        assert_eq!(
            first.storage_key(),
            again.storage_key(),
            "shared within the pass"
        );
        assert_ne!(
            first.storage_key(),
            other.storage_key(),
            "other pieces, another stack"
        );
        let outside = stack_rows(&[&a, &b, &c]).unwrap();
        assert_ne!(
            outside.storage_key(),
            first.storage_key(),
            "no cache outside a pass"
        );
        assert_eq!(outside.to_vec_f64(), want);
        assert!(
            STACKS.with(|s| s.borrow().is_none()),
            "forgotten after the pass"
        );
    }

    #[test]
    fn deferred_forms_equal_their_dense_sum() {
        let (g1, x1, g2, x2) = (
            rand(&[3, 4], 1),
            rand(&[3, 5], 2),
            rand(&[2, 4], 3),
            rand(&[2, 5], 4),
        );
        let d = rand(&[4, 5], 5);
        let mut p = Pending::default();
        p.add(Grad::Outer {
            g: g1.clone(),
            x: x1.clone(),
        })
        .unwrap();
        p.add(Grad::Dense(d.clone())).unwrap();
        p.add(Grad::Outer {
            g: g2.clone(),
            x: x2.clone(),
        })
        .unwrap();
        p.add(Grad::Rows {
            ids: vec![1, 3, 1].into(),
            values: rand(&[3, 5], 6),
            shape: vec![4, 5],
        })
        .unwrap();
        let got = p.finish().unwrap().to_vec_f64();
        let mut want = d
            .add(&g1.transpose(0, 1).unwrap().matmul(&x1).unwrap())
            .unwrap()
            .add(&g2.transpose(0, 1).unwrap().matmul(&x2).unwrap())
            .unwrap()
            .to_vec_f64();
        let v = rand(&[3, 5], 6).to_vec_f64();
        for (k, &i) in [1usize, 3, 1].iter().enumerate() {
            for j in 0..5 {
                want[i * 5 + j] += v[k * 5 + j];
            }
        }
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// Row sums (a bias used at several steps) stack into one column sum, alone or beside a
    /// dense piece; their shape is the column count.
    #[test]
    fn row_sums_equal_their_dense_sum() {
        let (g1, g2, g3) = (rand(&[3, 4], 7), rand(&[1, 4], 8), rand(&[5, 4], 9));
        let d = rand(&[4], 10);
        let want: Vec<f64> = (0..4)
            .map(|j| {
                let col = |g: &Tensor, rows: usize| {
                    let v = g.to_vec_f64();
                    (0..rows).map(|r| v[r * 4 + j]).sum::<f64>()
                };
                d.to_vec_f64()[j] + col(&g1, 3) + col(&g2, 1) + col(&g3, 5)
            })
            .collect();
        let mut p = Pending::default();
        for g in [&g1, &g2] {
            p.add(Grad::SumRows { g: g.clone() }).unwrap();
        }
        p.add(Grad::Dense(d.clone())).unwrap();
        p.add(Grad::SumRows { g: g3.clone() }).unwrap();
        assert!(
            p.add(Grad::Dense(rand(&[5], 1))).is_err(),
            "shape [4] expected"
        );
        let got = p.finish().unwrap().to_vec_f64();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        let one = Grad::SumRows { g: g1.clone() };
        assert_eq!(one.shape(), [4]);
        let scaled = one.scaled(2.0).unwrap().into_dense().unwrap().to_vec_f64();
        let plain = Grad::SumRows { g: g1 }.into_dense().unwrap().to_vec_f64();
        for (a, b) in scaled.iter().zip(&plain) {
            assert!((a - 2.0 * b).abs() < 1e-12);
        }
    }

    /// Windows of a `narrow`'s gradient: tiling ones (in any order) are joined, others
    /// (a gap, an overlap, two axes) padded and added; both give the dense sum.
    #[test]
    fn windows_equal_their_padded_sum() {
        let shape = [3usize, 7];
        let cases: Vec<Vec<(usize, usize, usize)>> = vec![
            vec![(1, 4, 3), (1, 0, 4)], // tiles the columns, given out of order
            vec![(1, 0, 7)],            // one window: the whole tensor
            vec![(0, 0, 1), (0, 1, 2)], // tiles the rows
            vec![(1, 0, 3), (1, 5, 2)], // a gap
            vec![(1, 0, 4), (1, 2, 5)], // an overlap
            vec![(1, 0, 4), (0, 1, 2), (1, 4, 3)], // two axes
        ];
        for (k, windows) in cases.iter().enumerate() {
            let mut want = vec![0.0f64; 21];
            let mut p = Pending::default();
            for (i, &(axis, start, len)) in windows.iter().enumerate() {
                let mut wshape = shape;
                wshape[axis] = len;
                let g = rand(&wshape, 20 + i as u64);
                let v = g.to_vec_f64();
                for r in 0..wshape[0] {
                    for c in 0..wshape[1] {
                        let (rr, cc) = if axis == 0 {
                            (start + r, c)
                        } else {
                            (r, start + c)
                        };
                        want[rr * 7 + cc] += v[r * wshape[1] + c];
                    }
                }
                p.add(Grad::Window {
                    g,
                    axis,
                    start,
                    shape: shape.to_vec(),
                })
                .unwrap();
            }
            let got = p.finish().unwrap();
            assert_eq!(got.shape(), shape);
            for (a, b) in got.to_vec_f64().iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "case {k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let mut p = Pending::default();
        p.add(Grad::Dense(rand(&[2, 2], 1))).unwrap();
        assert!(p.add(Grad::Dense(rand(&[3], 1))).is_err());
    }

    #[test]
    fn accumulate_in_place_only_when_exclusive() {
        let a = rand(&[3], 1);
        let keep = a.clone();
        let b = rand(&[3], 2);
        let sum = accumulate(a, &b).unwrap();
        // `keep` still sees the original values: the shared buffer was not written.
        assert_ne!(keep.to_vec_f64(), sum.to_vec_f64());
        let c = rand(&[3], 3);
        let before = c.to_vec_f64();
        let s2 = accumulate(c, &b).unwrap();
        let bv = b.to_vec_f64();
        for i in 0..3 {
            assert!((s2.to_vec_f64()[i] - (before[i] + bv[i])).abs() < 1e-15);
        }
    }
}
