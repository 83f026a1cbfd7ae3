//! Products with weight matrices, `x · W` or `x · Wᵀ`, for the ops that own weights (`linear`,
//! `lstm_cell`) — forward and the input-gradient half of backward.
//!
//! The decoder multiplies 50 rows by the same weights at every one of its ~17 steps. A GEMM
//! with M = 50 spends most of its time packing B (megabytes, for fifty uses of each element),
//! so for skinny products with large `f32` weights we pack each weight once and reuse the
//! packing until the weight changes: a cache keyed by the storage's identity, layout and
//! version. The optimiser's in-place update bumps the version, so every weight is packed once
//! per training step in each orientation it is used in.

use crate::cpu::gemm::{self, MatMut, MatRef, PackedB};
#[cfg(feature = "cuda")]
use crate::cuda::ops as gpu;
use crate::tensor::{DType, Tensor, on_cuda};
use crate::{Error, Result, with_float};
use std::sync::{Arc, Mutex, Weak};

/// Products with at most this many rows use a cached packed weight.
const SKINNY_ROWS: usize = 256;
/// Weights with fewer elements are cheap to pack every time.
const MIN_CACHED_ELEMENTS: usize = 1 << 16;

struct Entry {
    storage: Weak<crate::tensor::StorageCell>,
    key: (usize, u64),
    layout: (Vec<usize>, Vec<usize>, usize),
    transposed: bool,
    packed: Arc<PackedB<f32>>,
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The element view of a 2-D `w` (or its transpose) as a GEMM operand.
fn operand<'a, T>(data: &'a [T], w: &Tensor, transposed: bool) -> MatRef<'a, T> {
    let (s, st) = (w.layout().shape(), w.layout().strides());
    let (rows, cols, rs, cs) = if transposed {
        (s[1], s[0], st[1], st[0])
    } else {
        (s[0], s[1], st[0], st[1])
    };
    MatRef {
        data,
        offset: w.layout().offset(),
        rows,
        cols,
        row_stride: rs,
        col_stride: cs,
    }
}

/// The packed `W` (or `Wᵀ`) for `w`, from the cache or packed now.
fn packed(w: &Tensor, transposed: bool) -> Result<Arc<PackedB<f32>>> {
    let key = w.storage_key();
    let layout = (
        w.shape().to_vec(),
        w.layout().strides().to_vec(),
        w.layout().offset(),
    );
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = cache
        .iter()
        .find(|e| e.key == key && e.layout == layout && e.transposed == transposed)
    {
        return Ok(e.packed.clone());
    }
    // Drop what can no longer be hit: freed weights and stale versions of this one.
    cache.retain(|e| e.storage.strong_count() > 0 && !(e.key.0 == key.0 && e.key.1 != key.1));
    let p = Arc::new(w.with_strided::<f32, _>("weight_product", |d, _| {
        PackedB::new(operand(d, w, transposed))
    })??);
    cache.push(Entry {
        storage: w.storage_weak(),
        key,
        layout,
        transposed,
        packed: p.clone(),
    });
    Ok(p)
}

/// `x · Wᵀ` (`transposed`) or `x · W` for a 2-D `x [M, K]` and a 2-D weight, without autograd
/// (on a CUDA device: one GEMM kernel reading `W` through its strides).
pub(crate) fn weight_product(x: &Tensor, w: &Tensor, transposed: bool) -> Result<Tensor> {
    let (m, k) = (x.shape()[0], x.shape()[1]);
    let (wr, wc) = (w.shape()[0], w.shape()[1]);
    let (kk, n) = if transposed { (wc, wr) } else { (wr, wc) };
    if x.rank() != 2 || w.rank() != 2 || k != kk {
        return Err(Error::shape(
            "weight_product",
            &[x.shape(), w.shape()],
            if transposed {
                "x [M, K] and W [N, K]"
            } else {
                "x [M, K] and W [K, N]"
            },
        ));
    }
    super::same_kind("weight_product", x, w)?;
    if x.is_cuda() {
        return on_cuda!(gpu::weight_product(x, w, transposed, None));
    }
    if x.dtype() == DType::F32 && m <= SKINNY_ROWS && w.numel() >= MIN_CACHED_ELEMENTS {
        let p = packed(w, transposed)?;
        let mut out = vec![0f32; m * n];
        x.with_strided::<f32, _>("weight_product", |d, l| {
            let a = MatRef {
                data: d,
                offset: l.offset(),
                rows: m,
                cols: k,
                row_stride: l.strides()[0],
                col_stride: l.strides()[1],
            };
            gemm::gemm_packed(
                1.0,
                a,
                &p,
                0.0,
                MatMut {
                    data: &mut out,
                    offset: 0,
                    rows: m,
                    cols: n,
                    row_stride: n,
                },
            )
        })??;
        return Tensor::from_vec(out, &[m, n]);
    }
    with_float!(x.dtype(), "weight_product", T => {
        let mut out = vec![<T as crate::tensor::Float>::ZERO; m * n];
        x.with_strided::<T, _>("weight_product", |d, l| {
            w.with_strided::<T, _>("weight_product", |wd, _| {
                let a = MatRef { data: d, offset: l.offset(), rows: m, cols: k, row_stride: l.strides()[0], col_stride: l.strides()[1] };
                gemm::gemm(<T as crate::tensor::Float>::ONE, a, operand(wd, w, transposed), <T as crate::tensor::Float>::ZERO, MatMut { data: &mut out, offset: 0, rows: m, cols: n, row_stride: n })
            })
        })???;
        Tensor::from_vec(out, &[m, n])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Philox;

    #[test]
    fn cached_packing_follows_weight_updates() {
        let mut rng = Philox::new(1);
        let x = Tensor::randn(&[7, 300], DType::F32, &mut rng);
        let w = Tensor::randn(&[260, 300], DType::F32, &mut rng);
        let want = |w: &Tensor| x.matmul(&w.transpose(0, 1).unwrap()).unwrap().to_vec_f32();
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
        };
        assert!(close(
            &weight_product(&x, &w, true).unwrap().to_vec_f32(),
            &want(&w)
        ));
        // Cached now; an in-place update must invalidate it.
        w.update_(&w.mul_scalar(-2.0).unwrap()).unwrap();
        assert!(close(
            &weight_product(&x, &w, true).unwrap().to_vec_f32(),
            &want(&w)
        ));
        // The other orientation is a separate packing.
        let g = Tensor::randn(&[7, 260], DType::F32, &mut rng);
        let plain = g.matmul(&w).unwrap().to_vec_f32();
        assert!(close(
            &weight_product(&g, &w, false).unwrap().to_vec_f32(),
            &plain
        ));
        assert!(weight_product(&g, &w, true).is_err());
    }

    #[test]
    fn packed_products_have_the_bits_of_matmul() {
        // `linear`'s backward takes `G W` from here instead of `matmul`: the training losses
        // stay the same to the last bit only if the two agree exactly (same kernel and
        // summation order, packed once or per call).
        let mut rng = Philox::new(3);
        for (m, o, i) in [(50, 1024, 300), (7, 260, 300), (300, 256, 260)] {
            let g = Tensor::randn(&[m, o], DType::F32, &mut rng);
            let w = Tensor::randn(&[o, i], DType::F32, &mut rng);
            let bits =
                |t: Tensor| -> Vec<u32> { t.to_vec_f32().iter().map(|v| v.to_bits()).collect() };
            assert_eq!(
                bits(weight_product(&g, &w, false).unwrap()),
                bits(g.matmul(&w).unwrap()),
                "{m}x{o}x{i}"
            );
        }
    }
}
