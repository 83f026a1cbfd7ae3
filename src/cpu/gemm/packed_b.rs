//! Pre-packed B operands: pack a weight matrix once, multiply it many times.
//!
//! The decoder multiplies the same weights by a 50-row activation 17-20 times per batch;
//! packing a 3072 × 4096 B costs about as much as the multiply itself, so it is done once.
//! The layout is the driver's: for each k block, the `ceil(n / nr)` micro-panels of
//! `kc × nr` elements, back to back, 64-byte aligned.

use super::buffer::AlignedBuf;
use super::config::{GemmConfig, GemmPath};
use super::driver::blocks;
use super::pack::pack_b;
use super::{GemmScalar, MatRef, check_ref};
use crate::Result;

/// A `k × n` B matrix packed for one kernel path, for [`gemm_packed`](super::gemm_packed).
pub struct PackedB<T> {
    path: GemmPath,
    rows: usize,
    cols: usize,
    /// `(k0, kc, offset)` of each k block; `offset` in elements.
    k_blocks: Vec<(usize, usize, usize)>,
    /// Packed elements in `data`.
    len: usize,
    data: AlignedBuf,
    _type: std::marker::PhantomData<T>,
}

impl<T: GemmScalar> PackedB<T> {
    /// Packs `b` for the process-wide [`GemmConfig::current`] path and blocking.
    /// Fails if the view is out of bounds.
    pub fn new(b: MatRef<'_, T>) -> Result<Self> {
        Self::new_with(&GemmConfig::current(), b)
    }

    /// Packs `b` for `cfg.path` with `cfg.kc`. Fails if the view is out of bounds or the
    /// path does not run on this CPU.
    pub fn new_with(cfg: &GemmConfig, b: MatRef<'_, T>) -> Result<Self> {
        cfg.check()?;
        check_ref("gemm_packed", "B", &b, 1, 0)?;
        let nr = T::kernel(cfg.path).nr;
        let panel_cols = b.cols.next_multiple_of(nr);
        let mut k_blocks = Vec::new();
        let mut len = 0;
        for (k0, kc) in blocks(b.rows, cfg.kc, 1) {
            k_blocks.push((k0, kc, len));
            len += kc * panel_cols;
        }
        let mut data = AlignedBuf::zeroed(len * size_of::<T>());
        let out = data.slice_mut::<T>(len);
        for &(k0, kc, offset) in &k_blocks {
            let block = &mut out[offset..offset + kc * panel_cols];
            pack_b(&b, (k0, kc), (0, b.cols), nr, block);
        }
        Ok(PackedB {
            path: cfg.path,
            rows: b.rows,
            cols: b.cols,
            k_blocks,
            len,
            data,
            _type: std::marker::PhantomData,
        })
    }

    /// Rows of B (the product's inner dimension `k`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of B (the product's `n`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The kernel path the panels were packed for (and that multiplies them).
    pub fn path(&self) -> GemmPath {
        self.path
    }

    /// `(k0, kc, offset)` of each k block.
    pub(crate) fn k_blocks(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.k_blocks.iter().copied()
    }

    /// The first micro-panel of k block `kb`; panel `q` follows at `q · kc · nr`.
    pub(crate) fn block_ptr(&self, kb: usize) -> *const T {
        self.data.slice::<T>(self.len)[self.k_blocks[kb].2..].as_ptr()
    }
}
