//! Matrix products on the device: batched products of strided views (`Tensor::matmul`) and
//! the products with weight matrices of `linear` and `lstm_cell`, with the bias added in the
//! GEMM's epilogue.
//!
//! A strided matrix view is passed to the GEMM kernel as it is when one of its strides is 1
//! (row-major with a leading dimension, or column-major = "transposed"); other views (both
//! strides above 1, or a broadcast inside the matrix) are copied dense first. f32 products run
//! on the SIMT kernel by default (exact to f32 rounding, as the CPU parity tolerances assume);
//! [`set_matmul_precision`] switches them to TF32 or bf16 tensor cores.

use super::{dense_copy, device_of, output, with_buffer, with_cuda_float, with_dense};
use crate::cuda::kernels::elementwise::cast_to_bf16;
use crate::cuda::kernels::gemm::{self as k, Act, Gemm, Precision};
use crate::cuda::{CudaBuffer, CudaView};
use crate::tensor::{DType, StorageCell, Tensor};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The f32 products' [`Precision`], as a number: 0 F32, 1 TF32, 2 bf16.
static PRECISION: AtomicU8 = AtomicU8::new(0);

/// How f32 matrix products on CUDA devices compute: exact f32 FMAs ([`Precision::F32`], the
/// default and what the parity tolerances assume), TF32 tensor cores (10-bit mantissa inputs),
/// or bf16 tensor cores (7-bit mantissa inputs, rounded on the device for each product); all
/// accumulate in f32. Process-wide; f64 products are always exact.
pub fn set_matmul_precision(p: Precision) {
    let code = match p {
        Precision::F32 => 0,
        Precision::Tf32 => 1,
        Precision::Bf16 => 2,
    };
    PRECISION.store(code, Ordering::Relaxed);
}

/// The current [`set_matmul_precision`] setting.
pub fn matmul_precision() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        1 => Precision::Tf32,
        2 => Precision::Bf16,
        _ => Precision::F32,
    }
}

/// A batch of `rows × cols` matrices inside a storage: element `(z, r, c)` at
/// `offset + z·batch_stride + r·row_stride + c·col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StridedMat {
    /// Storage position of element (0, 0, 0).
    pub offset: usize,
    /// Elements between matrices (0 when broadcast).
    pub batch_stride: usize,
    /// Elements between rows.
    pub row_stride: usize,
    /// Elements between columns.
    pub col_stride: usize,
}

/// How the GEMM kernel reads a `rows × cols` matrix with strides `(rs, cs)`: `(transposed,
/// leading dimension)`, or `None` when neither stride is 1 (a dense copy is needed).
fn gemm_layout(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(bool, usize)> {
    if cols == 1 || cs == 1 {
        let ld = if rows == 1 { cols } else { rs };
        if ld >= cols {
            return Some((false, ld));
        }
    }
    if rows == 1 || rs == 1 {
        let ld = if cols == 1 { rows } else { cs };
        if ld >= rows {
            return Some((true, ld));
        }
    }
    None
}

/// `C [batch, m, n] = A·B` for strided operands `a` (`[m, k]` matrices at `oa`) and `b`
/// (`[k, n]` at `ob`), shaped `out_shape` (no graph). Operands the kernel cannot read through
/// their strides are copied dense first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &Tensor,
    oa: StridedMat,
    b: &Tensor,
    ob: StridedMat,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    out_shape: &[usize],
) -> Result<Tensor> {
    let la = gemm_layout(m, k, oa.row_stride, oa.col_stride);
    let lb = gemm_layout(k, n, ob.row_stride, ob.col_stride);
    if la.is_none() || lb.is_none() {
        // Dense copies have plain row-major matrices (broadcast batches stay strides of 0 only
        // for the originals; the dense copies hold each batch's matrix).
        let dense = |t: &Tensor,
                     o: StridedMat,
                     rows: usize,
                     cols: usize,
                     ok: bool|
         -> Result<(Tensor, StridedMat)> {
            if ok {
                return Ok((t.clone(), o));
            }
            let d = dense_copy(t)?;
            let per = rows * cols;
            let bs = if d.numel() == per { 0 } else { per };
            Ok((
                d,
                StridedMat {
                    offset: 0,
                    batch_stride: bs,
                    row_stride: cols,
                    col_stride: 1,
                },
            ))
        };
        let (da, na) = dense(a, oa, m, k, la.is_some())?;
        let (db, nb) = dense(b, ob, k, n, lb.is_some())?;
        return matmul(&da, na, &db, nb, batch, (m, n, k), out_shape);
    }
    let ((ta, lda), (tb, ldb)) = (la.expect("checked"), lb.expect("checked"));
    let g = Gemm {
        m,
        n,
        k,
        trans_a: ta,
        trans_b: tb,
        lda,
        ldb,
        ldc: n,
        batch,
        stride_a: oa.batch_stride,
        stride_b: ob.batch_stride,
        stride_c: m * n,
        alpha: 1.0,
        beta: 0.0,
        act: Act::None,
    };
    let dev = device_of(a)?;
    with_cuda_float!(a.dtype(), "matmul", T => {
        with_buffer::<T, _>(a, "matmul", |ab| {
            with_buffer::<T, _>(b, "matmul", |bb| {
                output::<T>(&dev, out_shape, |o| {
                    if k == 0 {
                        // An empty contraction: zeros (the kernel would not write C).
                        return crate::cuda::kernels::elementwise::fill(&dev, o, <T as crate::tensor::Float>::ZERO);
                    }
                    k::gemm(&dev, &g, o, ab.slice(oa.offset..)?, bb.slice(ob.offset..)?, None, matmul_precision())
                })
            })
        })
    })
}

/// `x · Wᵀ` (`transposed`) or `x · W` for a 2-D `x [M, K]` and a 2-D weight, plus `bias [N]`
/// in the epilogue when given (no graph): one GEMM launch reading `W` in place. With
/// [`Precision::Bf16`], `W`'s bf16 copy comes from a cache ([`bf16_weight`]) and the kernel
/// rounds `x` as it loads it. Shapes are validated by the caller.
pub(crate) fn weight_product(
    x: &Tensor,
    w: &Tensor,
    transposed: bool,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (m, kx) = (x.shape()[0], x.shape()[1]);
    let (wr, wc) = (w.shape()[0], w.shape()[1]);
    let (kw, n) = if transposed { (wc, wr) } else { (wr, wc) };
    if kx != kw {
        return Err(Error::shape(
            "weight_product",
            &[x.shape(), w.shape()],
            "matching inner dimensions",
        ));
    }
    let (xs, ws) = (x.layout().strides(), w.layout().strides());
    let ox = StridedMat {
        offset: x.layout().offset(),
        batch_stride: 0,
        row_stride: xs[0],
        col_stride: xs[1],
    };
    // W as the [K, N] operand: its transpose is a stride swap.
    let ow = StridedMat {
        offset: w.layout().offset(),
        batch_stride: 0,
        row_stride: if transposed { ws[1] } else { ws[0] },
        col_stride: if transposed { ws[0] } else { ws[1] },
    };
    let (lx, lw) = (
        gemm_layout(m, kx, ox.row_stride, ox.col_stride),
        gemm_layout(kx, n, ow.row_stride, ow.col_stride),
    );
    let (Some((ta, lda)), Some((tb, ldb))) = (lx, lw) else {
        let (dx, dw) = (dense_copy(x)?, dense_copy(w)?);
        return weight_product(&dx, &dw, transposed, bias);
    };
    if kx == 0 {
        if bias.is_none() {
            // An empty contraction: `matmul` writes zeros.
            return matmul(x, ox, w, ow, 1, (m, n, kx), &[m, n]);
        }
        return Err(Error::invalid("cuda linear: zero input features"));
    }
    let g = Gemm {
        m,
        n,
        k: kx,
        trans_a: ta,
        trans_b: tb,
        lda,
        ldb,
        ldc: n,
        batch: 1,
        stride_a: 0,
        stride_b: 0,
        stride_c: m * n,
        alpha: 1.0,
        beta: 0.0,
        act: Act::None,
    };
    let dev = device_of(x)?;
    if matmul_precision() == Precision::Bf16 && x.dtype() == DType::F32 {
        let (ex, ew) = g.operand_extents();
        let w16 = bf16_weight(w, ow.offset, ew)?;
        return with_buffer::<f32, _>(x, "linear", |xb| {
            let xv = xb.slice(ox.offset..ox.offset + ex)?;
            let run = |bv: Option<CudaView<'_, f32>>| {
                output::<f32>(&dev, &[m, n], |o| {
                    k::gemm_bf16_tc(&dev, &g, o, xv, w16.view(), bv)
                })
            };
            match bias {
                Some(b) => with_dense::<f32, _>(b, "linear", |bv| run(Some(bv))),
                None => run(None),
            }
        });
    }
    with_cuda_float!(x.dtype(), "linear", T => {
        with_buffer::<T, _>(x, "linear", |xb| {
            with_buffer::<T, _>(w, "linear", |wb| {
                let run = |bv: Option<CudaView<'_, T>>| {
                    output::<T>(&dev, &[m, n], |o| {
                        k::gemm::<T>(&dev, &g, o, xb.slice(ox.offset..)?, wb.slice(ow.offset..)?, bv, matmul_precision())
                    })
                };
                match bias {
                    Some(b) => with_dense::<T, _>(b, "linear", |bv| run(Some(bv))),
                    None => run(None),
                }
            })
        })
    })
}

/// A bf16 copy of a weight's storage elements `offset .. offset + extent` (what a product
/// reads), cached until the weight changes.
///
/// With [`Precision::Bf16`] every product rounds its operands to bf16 on the device; for the
/// weights that is the same work at every one of the decoder's ~17 steps, forward and
/// backward. The cache is keyed like the CPU's packed weights (`src/ops/weights.rs`): the
/// storage's identity and version, so the optimiser's in-place update (a new version) makes
/// the next product cast again, once, and the layout window; entries of freed or updated
/// weights are dropped when the next copy is made.
fn bf16_weight(w: &Tensor, offset: usize, extent: usize) -> Result<Arc<CudaBuffer<half::bf16>>> {
    struct Entry {
        storage: Weak<StorageCell>,
        key: (usize, u64),
        window: (usize, usize),
        copy: Arc<CudaBuffer<half::bf16>>,
    }
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    let key = w.storage_key();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = cache
        .iter()
        .find(|e| e.key == key && e.window == (offset, extent))
    {
        return Ok(e.copy.clone());
    }
    cache.retain(|e| e.storage.strong_count() > 0 && !(e.key.0 == key.0 && e.key.1 != key.1));
    let dev = device_of(w)?;
    let mut copy = dev.alloc::<half::bf16>(extent)?;
    with_buffer::<f32, _>(w, "bf16 weight", |wb| {
        cast_to_bf16(&dev, copy.view_mut(), wb.slice(offset..offset + extent)?)
    })?;
    let copy = Arc::new(copy);
    cache.push(Entry {
        storage: w.storage_weak(),
        key,
        window: (offset, extent),
        copy: copy.clone(),
    });
    Ok(copy)
}
