//! CPU kernels: the packed, register-blocked SIMD GEMM and its threading.
