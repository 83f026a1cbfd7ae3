//! Batched GEMM with transposes and a bias/ReLU epilogue (`kernels/gemm.cu`).

use super::{check_len, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches.
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "gemm";
    /// `gemm_f32`, `gemm_f64`: the SIMT GEMM.
    fn gemm<T>(c: CudaViewMut<'_, T>, a: CudaView<'_, T>, b: CudaView<'_, T>, bias: Option<CudaView<'_, T>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: T, beta: T, act: i32);
    }

    crate::__aoanet_cuda_kernels! { "gemm";
    /// Tensor-core GEMM on f32 inputs rounded to TF32.
    fn gemm_tf32(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32);
    /// Tensor-core GEMM on bf16 inputs, f32 accumulation and output.
    fn gemm_bf16(c: CudaViewMut<'_, f32>, a: CudaView<'_, half::bf16>, b: CudaView<'_, half::bf16>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32);
    }
}

pub use raw::{FLOAT_SIGNATURES, SIGNATURES};

/// Which kernel computes an f32 product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Plain f32 FMAs (exact to f32 rounding).
    F32,
    /// Tensor cores with TF32 inputs (10-bit mantissa), f32 accumulation.
    Tf32,
}

/// The epilogue's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Act {
    /// None.
    None = 0,
    /// `max(x, 0)`.
    Relu = 1,
}

/// Shape and layout of `C[z] = act(alpha · op(A[z]) op(B[z]) + beta · C[z] + bias)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// A is stored K×M (so op(A) = Aᵀ).
    pub trans_a: bool,
    /// B is stored N×K (so op(B) = Bᵀ; `x · Wᵀ` for a weight `W [out, in]`).
    pub trans_b: bool,
    /// Leading dimensions (row strides) of A, B, C as stored.
    pub lda: usize,
    /// See `lda`.
    pub ldb: usize,
    /// See `lda`.
    pub ldc: usize,
    /// Batch count and element strides between consecutive matrices of A, B, C.
    pub batch: usize,
    /// See `batch`.
    pub stride_a: usize,
    /// See `batch`.
    pub stride_b: usize,
    /// See `batch`.
    pub stride_c: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the previous C (0: C is not read).
    pub beta: f32,
    /// Activation applied last.
    pub act: Act,
}

impl Gemm {
    /// A single contiguous product `C [m, n] = op(A) op(B)` with no epilogue.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Gemm {
        Gemm {
            m,
            n,
            k,
            trans_a,
            trans_b,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            alpha: 1.0,
            beta: 0.0,
            act: Act::None,
        }
    }

    /// The same product repeated over `batch` contiguous matrices.
    pub fn batched(mut self, batch: usize) -> Gemm {
        self.batch = batch;
        self
    }

    /// One past the largest element index touched in an operand.
    fn extent(rows: usize, cols: usize, ld: usize, batch: usize, stride: usize) -> usize {
        if rows == 0 || cols == 0 || batch == 0 {
            return 0;
        }
        (batch - 1) * stride + (rows - 1) * ld + cols
    }

    fn check(&self, c: usize, a: usize, b: usize, bias: Option<usize>) -> Result<()> {
        let (ar, ac) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (br, bc) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        if self.lda < ac || self.ldb < bc || self.ldc < self.n {
            return Err(Error::invalid(format!(
                "cuda gemm: leading dimensions too small in {self:?}"
            )));
        }
        check_len(
            "gemm",
            "A",
            a,
            Self::extent(ar, ac, self.lda, self.batch, self.stride_a),
        )?;
        check_len(
            "gemm",
            "B",
            b,
            Self::extent(br, bc, self.ldb, self.batch, self.stride_b),
        )?;
        check_len(
            "gemm",
            "C",
            c,
            Self::extent(self.m, self.n, self.ldc, self.batch, self.stride_c),
        )?;
        if let Some(len) = bias {
            check_len("gemm", "bias", len, self.n)?;
        }
        Ok(())
    }

    fn cfg(&self, threads: u32) -> Result<LaunchCfg> {
        let gy = self.m.div_ceil(64);
        if gy > 65535 {
            return Err(Error::invalid(format!(
                "cuda gemm: m = {} is too large",
                self.m
            )));
        }
        Ok(LaunchCfg {
            grid: (
                self.n.div_ceil(64) as u32,
                gy as u32,
                self.batch.min(65535) as u32,
            ),
            block: (threads, 1, 1),
            smem: 0,
        })
    }

    fn ints(&self) -> Result<(i32, i32, i32, i32)> {
        Ok((
            to_i32("gemm", "m", self.m)?,
            to_i32("gemm", "n", self.n)?,
            to_i32("gemm", "k", self.k)?,
            to_i32("gemm", "batch", self.batch)?,
        ))
    }
}

/// `C = act(alpha · op(A) op(B) + beta · C + bias)`: SIMT FMAs in the type of the operands,
/// or for f32 with [`Precision::Tf32`] tensor cores on TF32-rounded inputs (f64 ignores
/// `precision`).
pub fn gemm<T: CudaFloat>(
    dev: &CudaDevice,
    g: &Gemm,
    c: CudaViewMut<'_, T>,
    a: CudaView<'_, T>,
    b: CudaView<'_, T>,
    bias: Option<CudaView<'_, T>>,
    precision: Precision,
) -> Result<()> {
    g.check(c.len(), a.len(), b.len(), bias.map(|v| v.len()))?;
    if g.m * g.n * g.batch == 0 {
        return Ok(());
    }
    let (m, n, k, batch) = g.ints()?;
    let (alpha, beta) = (
        T::from_f64(f64::from(g.alpha)),
        T::from_f64(f64::from(g.beta)),
    );
    if precision == Precision::Tf32 && !T::IS_F64 {
        // SAFETY: a `CudaView<T>` with T = f32 (IS_F64 is false only for f32) is a
        // `CudaView<f32>`: the same address and length.
        let (c, a, b, bias) = unsafe {
            (
                c.cast::<f32>(),
                a.cast::<f32>(),
                b.cast::<f32>(),
                bias.map(|v| v.cast::<f32>()),
            )
        };
        // SAFETY: every operand's extent was checked against its length; 128 threads, the
        // block size the tensor-core kernel is written for.
        return unsafe {
            raw::gemm_tf32(
                dev,
                g.cfg(128)?,
                c,
                a,
                b,
                bias,
                m,
                n,
                k,
                g.lda as i64,
                g.ldb as i64,
                g.ldc as i64,
                g.stride_a as i64,
                g.stride_b as i64,
                g.stride_c as i64,
                batch,
                i32::from(g.trans_a),
                i32::from(g.trans_b),
                g.alpha,
                g.beta,
                g.act as i32,
            )
        };
    }
    // SAFETY: every operand's extent was checked against its length; 256 threads, the block
    // size the SIMT kernel is written for.
    unsafe {
        raw::gemm(
            dev,
            g.cfg(256)?,
            c,
            a,
            b,
            bias,
            m,
            n,
            k,
            g.lda as i64,
            g.ldb as i64,
            g.ldc as i64,
            g.stride_a as i64,
            g.stride_b as i64,
            g.stride_c as i64,
            batch,
            i32::from(g.trans_a),
            i32::from(g.trans_b),
            alpha,
            beta,
            g.act as i32,
        )
    }
}

/// The same product with bf16 operands on tensor cores (f32 accumulation and output).
pub fn gemm_bf16_tc(
    dev: &CudaDevice,
    g: &Gemm,
    c: CudaViewMut<'_, f32>,
    a: CudaView<'_, half::bf16>,
    b: CudaView<'_, half::bf16>,
    bias: Option<CudaView<'_, f32>>,
) -> Result<()> {
    g.check(c.len(), a.len(), b.len(), bias.map(|v| v.len()))?;
    if g.m * g.n * g.batch == 0 {
        return Ok(());
    }
    let (m, n, k, batch) = g.ints()?;
    // SAFETY: as in `gemm`; 128 threads.
    unsafe {
        raw::gemm_bf16(
            dev,
            g.cfg(128)?,
            c,
            a,
            b,
            bias,
            m,
            n,
            k,
            g.lda as i64,
            g.ldb as i64,
            g.ldc as i64,
            g.stride_a as i64,
            g.stride_b as i64,
            g.stride_c as i64,
            batch,
            i32::from(g.trans_a),
            i32::from(g.trans_b),
            g.alpha,
            g.beta,
            g.act as i32,
        )
    }
}
