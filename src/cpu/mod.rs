//! CPU kernels: the packed, register-blocked SIMD GEMM ([`gemm()`]) and the small
//! data-parallel helper ([`parallel`]) that it and the elementwise ops share.

pub mod alloc;
pub mod gemm;
pub mod parallel;
pub mod vmath;

pub use gemm::{
    GemmConfig, GemmPath, GemmScalar, MatMut, MatRef, PackedB, gemm, gemm_batched,
    gemm_batched_with, gemm_packed, gemm_packed_with, gemm_path, gemm_with,
};
pub use parallel::num_threads;
