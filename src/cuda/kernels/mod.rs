//! Launch wrappers, one module per `kernels/<family>.cu`.
//!
//! Each module has the generated raw wrappers in a `raw` submodule (`unsafe`; named exactly as
//! the `__global__` function, or, for a kernel that exists in f32 and f64, one generic wrapper
//! named without the suffix: see [`float_kernels!`](crate::__aoanet_cuda_float_kernels)) and
//! safe entry points that check buffer sizes and choose the launch shape.

pub mod adam;
pub mod attention;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod glu;
pub mod layernorm;
pub mod loss;
pub mod lstm;
pub mod reduce;
pub mod sample;
pub mod softmax;

/// Every family's signature tables (see [`crate::cuda::signatures`]): `SIGNATURES` for the
/// kernels of one type, `FLOAT_SIGNATURES` for both instantiations of the f32/f64 ones.
pub const SIGNATURES: &[&[crate::cuda::KernelSig]] = &[
    adam::FLOAT_SIGNATURES,
    attention::SIGNATURES,
    dropout::SIGNATURES,
    dropout::FLOAT_SIGNATURES,
    elementwise::SIGNATURES,
    elementwise::FLOAT_SIGNATURES,
    embedding::FLOAT_SIGNATURES,
    gemm::SIGNATURES,
    gemm::FLOAT_SIGNATURES,
    glu::FLOAT_SIGNATURES,
    layernorm::FLOAT_SIGNATURES,
    loss::SIGNATURES,
    loss::FLOAT_SIGNATURES,
    lstm::FLOAT_SIGNATURES,
    reduce::FLOAT_SIGNATURES,
    sample::SIGNATURES,
    softmax::FLOAT_SIGNATURES,
];

use crate::{Error, Result};

/// Fails unless a buffer argument holds at least `want` elements.
pub(crate) fn check_len(op: &'static str, what: &str, have: usize, want: usize) -> Result<()> {
    if have < want {
        return Err(Error::invalid(format!(
            "cuda {op}: {what} has {have} elements, needs {want}"
        )));
    }
    Ok(())
}

/// Converts a size to the `int` a kernel declares, refusing values that do not fit.
pub(crate) fn to_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::invalid(format!("cuda {op}: {what} = {v} exceeds i32::MAX")))
}

/// The blocks of a multi-tensor launch (`multi_tensor_slot` in `kernels/common.cuh`): for
/// tensors of `lens` elements and `chunk` elements a block, each non-empty tensor's first
/// block (empty tensors get none and are left out by the caller), and the grid size.
pub(crate) fn multi_tensor_blocks(
    op: &'static str,
    lens: impl IntoIterator<Item = usize>,
    chunk: usize,
) -> Result<(Vec<u64>, u32)> {
    let mut first = Vec::new();
    let mut blocks = 0usize;
    for n in lens.into_iter().filter(|&n| n > 0) {
        first.push(blocks as u64);
        blocks += n.div_ceil(chunk);
    }
    let grid = u32::try_from(blocks)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| Error::invalid(format!("cuda {op}: {blocks} blocks exceed one launch")))?;
    Ok((first, grid))
}

/// Blocks for a grid-stride elementwise launch (kernels loop over the rest).
pub(crate) const MAX_GRID_STRIDE_BLOCKS: u32 = 1 << 16;

/// One block per row, grid-stride over rows beyond the cap.
pub(crate) fn row_grid(rows: usize, threads: u32) -> crate::cuda::LaunchCfg {
    crate::cuda::LaunchCfg::linear(rows.min(MAX_GRID_STRIDE_BLOCKS as usize) as u32, threads)
}

#[cfg(test)]
mod tests {
    use super::multi_tensor_blocks;

    /// Blocks follow each other tensor by tensor, `ceil(n / chunk)` each, empty tensors get
    /// none (so first blocks strictly increase, as the kernels' binary search needs).
    #[test]
    fn multi_tensor_blocks_lay_tensors_end_to_end() {
        let (first, grid) = multi_tensor_blocks("t", [0, 1, 8192, 8193, 0, 5], 8192).unwrap();
        assert_eq!(first, [0, 1, 2, 4]);
        assert_eq!(grid, 5);
        let (first, grid) = multi_tensor_blocks("t", [0, 0], 8192).unwrap();
        assert!(first.is_empty());
        assert_eq!(grid, 0);
        let e = multi_tensor_blocks("t", [usize::MAX / 2], 1).unwrap_err();
        assert!(e.to_string().contains("exceed one launch"), "{e}");
    }
}
