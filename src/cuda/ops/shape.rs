//! Copies that move elements between layouts on the device: `concat`, its adjoint `split`,
//! and `narrow`'s adjoint.

use super::{ReadLocks, copy_into, device_of, with_cuda_float, zeros};
use crate::Result;
use crate::cuda::CudaFloat;
use crate::cuda::kernels::elementwise::{self as ew, Block, SplitPiece};
use crate::tensor::{Layout, Storage, Tensor, numel};

/// Dense inputs from which [`concat`] copies them all in one launch (up to four pieces the
/// launch carries their table; more need a small upload first).
const BLOCK_COPY_MIN_PIECES: usize = 2;

/// The inputs joined along `axis` into a new dense tensor of `shape` (validated by the
/// caller). With at least [`BLOCK_COPY_MIN_PIECES`] dense inputs, those are copied by one
/// launch together (`copy_blocks`: row `o` of input `k` is its `len_k · trailing` elements,
/// written at `o · row + start_k · trailing`); every other input is copied through its
/// strides by a launch of its own. Backward gathers the decoder's per-step pieces (17
/// weight-gradient operands, 17 outputs) with this: an upload and one launch instead of 17
/// launches; the decoder's two concatenations per step take one launch each instead of two.
pub(crate) fn concat(tensors: &[&Tensor], axis: usize, shape: &[usize]) -> Result<Tensor> {
    let dev = device_of(tensors[0])?;
    let trailing: usize = shape[axis + 1..].iter().product();
    let row = shape[axis] * trailing;
    with_cuda_float!(tensors[0].dtype(), "concat", T => {
        let mut buf = dev.alloc::<T>(numel(shape))?;
        let full = Layout::contiguous(shape);
        let is_dense = |t: &Tensor| t.layout().contiguous_range().is_some();
        let together = tensors.iter().filter(|t| is_dense(t)).count() >= BLOCK_COPY_MIN_PIECES;
        // Windows along the axis; first every input not copied together, through its strides.
        let mut starts = Vec::with_capacity(tensors.len());
        let mut start = 0;
        for t in tensors {
            starts.push(start);
            let len = t.shape()[axis];
            if !(together && is_dense(t)) {
                copy_into::<T>(&dev, &mut buf, &full.narrow(axis, start, len)?, t)?;
            }
            start += len;
        }
        // The dense ones in one launch.
        let dense: Vec<(usize, &Tensor)> = tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| together && is_dense(t))
            .map(|(k, t)| (k, *t))
            .collect();
        let locks = ReadLocks::new(dense.iter().map(|&(_, t)| t));
        let mut blocks = Vec::with_capacity(dense.len());
        for &(k, t) in &dense {
            blocks.push(Block {
                src: locks.view::<T>(t, "concat")?,
                inner: t.shape()[axis] * trailing,
                dst_offset: starts[k] * trailing,
            });
        }
        if !blocks.is_empty() {
            ew::copy_blocks(&dev, buf.view_mut(), &blocks, row)?;
        }
        Tensor::from_storage(Storage::Cuda(T::wrap(buf)), shape)
    })
}

/// Dense copies of the consecutive pieces of `g` of `sizes` along `axis` (concat's backward):
/// one launch for all of them when `g` is dense (`split_blocks`), else a strided copy each.
pub(crate) fn split(g: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    if g.layout().contiguous_range().is_none() {
        let mut start = 0;
        return sizes
            .iter()
            .map(|&n| {
                let piece = g.narrow(axis as isize, start, n)?.contiguous();
                start += n;
                piece
            })
            .collect();
    }
    let dev = device_of(g)?;
    let trailing: usize = g.shape()[axis + 1..].iter().product();
    let row = g.shape()[axis] * trailing;
    with_cuda_float!(g.dtype(), "split", T => {
        let shapes: Vec<Vec<usize>> = sizes
            .iter()
            .map(|&n| {
                let mut s = g.shape().to_vec();
                s[axis] = n;
                s
            })
            .collect();
        let mut bufs = shapes
            .iter()
            .map(|s| dev.alloc::<T>(numel(s)))
            .collect::<Result<Vec<_>>>()?;
        let locks = ReadLocks::new([g]);
        let src = locks.view::<T>(g, "split")?;
        let mut start = 0;
        let mut pieces = Vec::with_capacity(sizes.len());
        for (buf, &n) in bufs.iter_mut().zip(sizes) {
            pieces.push(SplitPiece {
                dst: buf.view_mut(),
                inner: n * trailing,
                src_offset: start * trailing,
            });
            start += n;
        }
        ew::split_blocks(&dev, src, &mut pieces, row)?;
        drop(pieces);
        bufs.into_iter()
            .zip(&shapes)
            .map(|(b, s)| Tensor::from_storage(Storage::Cuda(T::wrap(b)), s))
            .collect()
    })
}

/// Zeros of `shape` with `g` written at `start` along `axis` (the adjoint of `narrow`).
pub(crate) fn pad_into(g: &Tensor, shape: &[usize], axis: usize, start: usize) -> Result<Tensor> {
    let dev = device_of(g)?;
    with_cuda_float!(g.dtype(), "narrow", T => {
        let out = zeros::<T>(&dev, shape)?;
        let window = Layout::contiguous(shape).narrow(axis, start, g.shape()[axis])?;
        super::with_buffer_mut::<T, _>(&out, "narrow", |b| copy_into::<T>(&dev, b, &window, g))?;
        Ok(out)
    })
}
