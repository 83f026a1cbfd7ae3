//! Batched matrix multiplication with broadcasting over batch dimensions.
//!
//! `a [..., M, K] · b [..., K, N] → [..., M, N]`. Operands may be any strided view (a
//! transpose is a stride swap), so `x · Wᵀ` never copies `W`. A rank-2 `b` against a batched
//! `a` (every `Linear`) folds the batch into `M`: one large GEMM instead of many small ones.
//!
//! Backward (`C = A·B`, gradient `G`):
//! - `∂A = G · Bᵀ`, summed over dimensions along which `A` was broadcast;
//! - `∂B = Aᵀ · G`, likewise; for a rank-2 `B` this is one GEMM over the folded batch.

use crate::cpu::gemm::{self, MatMut, MatRef};
use crate::tensor::{Float, Tensor, broadcast_shapes, numel};
use crate::{Error, Result, with_float};

/// A strided 3-D operand view: `batch × rows × cols` with one stride per dimension.
#[derive(Clone, Copy, Debug)]
struct Operand {
    offset: usize,
    batch_stride: usize,
    row_stride: usize,
    col_stride: usize,
}

/// The operand's batch dimensions broadcast to `batch`, as one batch stride, if they
/// collapse to one (dense or fully broadcast); `None` when they would need a copy.
fn collapse_batch(t: &Tensor, batch: &[usize]) -> Option<Operand> {
    let r = t.rank();
    let mut full = batch.to_vec();
    full.extend_from_slice(&t.shape()[r - 2..]);
    let l = t.layout().broadcast_to(&full).ok()?;
    let bs = &l.strides()[..batch.len()];
    // Find the stride of the collapsed batch: innermost non-trivial dimension's stride, and
    // check every outer dimension steps by exactly the size of the ones inside it.
    let mut stride = None;
    let mut expected = None;
    for d in (0..batch.len()).rev() {
        if batch[d] == 1 {
            continue;
        }
        match (stride, expected) {
            (None, _) => {
                stride = Some(bs[d]);
                expected = Some(bs[d] * batch[d]);
            }
            (Some(s), Some(e)) => {
                if s == 0 && bs[d] == 0 {
                    continue;
                }
                if bs[d] != e {
                    return None;
                }
                expected = Some(e * batch[d]);
            }
            _ => unreachable!(),
        }
    }
    Some(Operand {
        offset: l.offset(),
        batch_stride: stride.unwrap_or(0),
        row_stride: l.strides()[batch.len()],
        col_stride: l.strides()[batch.len() + 1],
    })
}

/// Per-item size (m·n·k) below which a batched product runs as plain loops: the decoder's
/// per-head attention (400 items of 1×128·128×36) would otherwise pay packing and dispatch
/// for a few thousand FLOPs each.
const SMALL_ITEM: usize = 1 << 15;

/// Plain loops for many tiny products; inner loops run over unit strides.
fn small_batched<T: Float>(
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (a, oa): (&[T], Operand),
    (b, ob): (&[T], Operand),
    out: &mut [T],
) {
    for bi in 0..batch {
        let (a0, b0) = (
            oa.offset + bi * oa.batch_stride,
            ob.offset + bi * ob.batch_stride,
        );
        let c = &mut out[bi * m * n..(bi + 1) * m * n];
        for i in 0..m {
            let arow = a0 + i * oa.row_stride;
            let crow = &mut c[i * n..(i + 1) * n];
            if ob.row_stride == 1 && oa.col_stride == 1 {
                // Bᵀ has unit-stride rows: each output is a dot product of unit-stride slices.
                let av = &a[arow..arow + k];
                for (j, cj) in crow.iter_mut().enumerate() {
                    let bcol = &b[b0 + j * ob.col_stride..b0 + j * ob.col_stride + k];
                    *cj = av.iter().zip(bcol).map(|(&x, &y)| x * y).sum();
                }
            } else {
                crow.fill(T::ZERO);
                for p in 0..k {
                    let x = a[arow + p * oa.col_stride];
                    let brow = b0 + p * ob.row_stride;
                    if ob.col_stride == 1 {
                        for (cj, &y) in crow.iter_mut().zip(&b[brow..brow + n]) {
                            *cj += x * y;
                        }
                    } else {
                        for (j, cj) in crow.iter_mut().enumerate() {
                            *cj += x * b[brow + j * ob.col_stride];
                        }
                    }
                }
            }
        }
    }
}

fn run_gemm<T: Float + gemm::GemmScalar>(
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (a, oa): (&[T], Operand),
    (b, ob): (&[T], Operand),
    out: &mut [T],
) -> Result<()> {
    if batch > 1 && m * n * k <= SMALL_ITEM {
        small_batched(batch, (m, n, k), (a, oa), (b, ob), out);
        return Ok(());
    }
    let a_ref = MatRef {
        data: a,
        offset: oa.offset,
        rows: m,
        cols: k,
        row_stride: oa.row_stride,
        col_stride: oa.col_stride,
    };
    let b_ref = MatRef {
        data: b,
        offset: ob.offset,
        rows: k,
        cols: n,
        row_stride: ob.row_stride,
        col_stride: ob.col_stride,
    };
    let c = MatMut {
        data: out,
        offset: 0,
        rows: m,
        cols: n,
        row_stride: n,
    };
    gemm::gemm_batched(
        batch,
        <T as Float>::ONE,
        a_ref,
        oa.batch_stride,
        b_ref,
        ob.batch_stride,
        <T as Float>::ZERO,
        c,
        m * n,
    )
}

impl Tensor {
    /// Matrix product over the last two dimensions, broadcasting the others.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        super::same_kind("matmul", self, rhs)?;
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra < 2 || rb < 2 || self.shape()[ra - 1] != rhs.shape()[rb - 2] {
            return Err(Error::shape(
                "matmul",
                &[self.shape(), rhs.shape()],
                "[..., M, K] and [..., K, N]",
            ));
        }
        let out = if rb == 2 && ra > 2 {
            // Fold the batch into M: [B..., M, K]·[K, N] as one [B·M, K]·[K, N].
            let k = self.shape()[ra - 1];
            let rows = self.numel() / k.max(1);
            let folded = crate::autograd::no_grad(|| self.reshape(&[rows, k]))?;
            let y = matmul_forward(&folded, rhs)?;
            let mut shape = self.shape()[..ra - 1].to_vec();
            shape.push(rhs.shape()[1]);
            crate::autograd::no_grad(|| y.reshape(&shape))?
        } else {
            matmul_forward(self, rhs)?
        };
        let (a, b) = (self.clone(), rhs.clone());
        Ok(out.record("matmul", &[self, rhs], move |g| {
            let ga = if a.requires_grad() {
                Some(g.matmul(&b.transpose(-1, -2)?)?.sum_to(a.shape())?)
            } else {
                None
            };
            let gb = if !b.requires_grad() {
                None
            } else if b.rank() == 2 && a.rank() > 2 {
                let (k, n) = (b.shape()[0], b.shape()[1]);
                let rows = a.numel() / k.max(1);
                Some(
                    a.reshape(&[rows, k])?
                        .transpose(0, 1)?
                        .matmul(&g.reshape(&[rows, n])?)?,
                )
            } else {
                Some(a.transpose(-1, -2)?.matmul(g)?.sum_to(b.shape())?)
            };
            Ok(vec![ga, gb])
        }))
    }
}

/// The forward product without autograd (shapes validated by the caller).
fn matmul_forward(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch =
        broadcast_shapes("matmul", &a.shape()[..ra - 2], &b.shape()[..rb - 2]).map_err(|_| {
            Error::shape(
                "matmul",
                &[a.shape(), b.shape()],
                "broadcastable batch dimensions",
            )
        })?;
    let nb = numel(&batch);
    // Operands whose batch dimensions do not collapse to one stride are copied dense first.
    let dense_a;
    let (a, oa) = match collapse_batch(a, &batch) {
        Some(o) => (a, o),
        None => {
            let mut full = batch.clone();
            full.extend_from_slice(&[m, k]);
            dense_a = a.broadcast_to(&full)?.contiguous()?;
            (
                &dense_a,
                collapse_batch(&dense_a, &batch).expect("dense collapses"),
            )
        }
    };
    let dense_b;
    let (b, ob) = match collapse_batch(b, &batch) {
        Some(o) => (b, o),
        None => {
            let mut full = batch.clone();
            full.extend_from_slice(&[k, n]);
            dense_b = b.broadcast_to(&full)?.contiguous()?;
            (
                &dense_b,
                collapse_batch(&dense_b, &batch).expect("dense collapses"),
            )
        }
    };
    let mut shape = batch.clone();
    shape.extend_from_slice(&[m, n]);
    with_float!(a.dtype(), "matmul", T => {
        let mut out = vec![T::ZERO; nb * m * n];
        a.with_strided::<T, _>("matmul", |da, _| {
            b.with_strided::<T, _>("matmul", |db, _| run_gemm(nb, (m, n, k), (da, oa), (db, ob), &mut out))
        })???;
        Tensor::from_vec(out, &shape)
    })
}

/// The textbook triple loop in `f64`, for tests: `a [M, K] · b [K, N]`, both row-major.
pub fn reference_matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            for j in 0..n {
                c[i * n + j] += x * b[p * n + j];
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::gradcheck::check_op;
    use crate::ops::test_util::rand;

    #[test]
    fn matches_reference_for_all_transpose_combinations() {
        for (m, k, n) in [(1, 1, 1), (7, 33, 5), (33, 7, 65)] {
            let a = rand(&[m, k], 1);
            let b = rand(&[k, n], 2);
            let want = reference_matmul(&a.to_vec_f64(), &b.to_vec_f64(), m, k, n);
            let at = a
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .transpose(0, 1)
                .unwrap();
            let bt = b
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .transpose(0, 1)
                .unwrap();
            for (x, y) in [(&a, &b), (&at, &b), (&a, &bt), (&at, &bt)] {
                let got = x.matmul(y).unwrap().to_vec_f64();
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-12, "{g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn batched_and_broadcast() {
        let a = rand(&[2, 3, 4, 5], 3);
        let b = rand(&[3, 5, 6], 4);
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.shape(), &[2, 3, 4, 6]);
        let (av, bv, cv) = (a.to_vec_f64(), b.to_vec_f64(), c.to_vec_f64());
        for i in 0..2 {
            for j in 0..3 {
                let want =
                    reference_matmul(&av[(i * 3 + j) * 20..][..20], &bv[j * 30..][..30], 4, 5, 6);
                for (g, w) in cv[(i * 3 + j) * 24..][..24].iter().zip(&want) {
                    assert!((g - w).abs() < 1e-12);
                }
            }
        }
        let e = a.matmul(&rand(&[4, 6], 5)).unwrap_err().to_string();
        assert!(e.contains("[2, 3, 4, 5]") && e.contains("[4, 6]"), "{e}");
    }

    #[test]
    fn gradients() {
        check_op(
            "matmul",
            |t| t[0].matmul(&t[1]),
            &[rand(&[7, 33], 1), rand(&[33, 5], 2)],
        );
        check_op(
            "matmul",
            |t| t[0].matmul(&t[1].transpose(0, 1)?),
            &[rand(&[2, 3, 7], 3), rand(&[5, 7], 4)],
        );
        check_op(
            "matmul",
            |t| t[0].matmul(&t[1]),
            &[rand(&[2, 1, 4, 3], 5), rand(&[3, 3, 2], 6)],
        );
        check_op(
            "matmul",
            |t| t[0].transpose(-1, -2)?.matmul(&t[1]),
            &[rand(&[3, 4, 1], 7), rand(&[3, 4, 2], 8)],
        );
    }
}
