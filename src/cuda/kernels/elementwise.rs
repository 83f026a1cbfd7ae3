//! Elementwise and broadcast kernels, strided copies and casts (`kernels/elementwise.cu`).

use std::sync::Arc;

use super::{MAX_GRID_STRIDE_BLOCKS, check_len, multi_tensor_blocks, to_i32};
use crate::cuda::{CudaDevice, CudaFloat, CudaView, CudaViewMut, KernelArg, LaunchCfg};
use crate::{Error, Result};

/// The raw launches (see [`float_kernels!`](crate::cuda::kernels)).
pub mod raw {
    use super::{Bcast, SmallBlocks, SumSources};
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "elementwise";
        /// `fill_f32`, `fill_f64`: `out[i] = value`.
        fn fill<T>(out: CudaViewMut<'_, T>, n: i64, value: T);
        /// `axpy_f32`, `axpy_f64`: `y[i] += alpha * x[i]`.
        fn axpy<T>(y: CudaViewMut<'_, T>, x: CudaView<'_, T>, n: i64, alpha: T);
        /// `unary_f32`, `unary_f64`: `out[i] = op(x[i])`, op codes of [`super::Unary`].
        fn unary<T>(out: CudaViewMut<'_, T>, x: CudaView<'_, T>, n: i64, op: i32, alpha: T, beta: T);
        /// `binary_f32`, `binary_f64`: `out[i] = op(a[ia], b[ib])` with a [`Bcast`] index map.
        fn binary<T>(out: CudaViewMut<'_, T>, a: CudaView<'_, T>, b: CudaView<'_, T>, n: i64, op: i32,
            alpha: T, beta: T, bc: Bcast);
        /// `copy_strided_f32`, `copy_strided_f64`: `dst[Σ idx·sb] = src[Σ idx·sa]`.
        fn copy_strided<T>(dst: CudaViewMut<'_, T>, src: CudaView<'_, T>, n: i64, bc: Bcast);
        /// `copy_blocks_f32`, `copy_blocks_f64`: dense pieces into rows of `dst`, one launch.
        fn copy_blocks<T>(dst: CudaViewMut<'_, T>, table: CudaView<'_, u64>, pieces: i32, dst_row_stride: i64);
        /// `sum_many_f32`, `sum_many_f64`: `out = src[0] + src[1] + …`, in that order.
        fn sum_many<T>(out: CudaViewMut<'_, T>, src: SumSources, count: i32, n: i64);
        /// `copy_blocks_small_f32`, `copy_blocks_small_f64`: the same, the table by value.
        fn copy_blocks_small<T>(dst: CudaViewMut<'_, T>, table: SmallBlocks, pieces: i32, dst_row_stride: i64);
        /// `split_blocks_f32`, `split_blocks_f64`: rows of `src` into dense pieces, one launch.
        fn split_blocks<T>(src: CudaView<'_, T>, table: CudaView<'_, u64>, pieces: i32, src_row_stride: i64);
        /// `split_blocks_small_f32`, `split_blocks_small_f64`: the same, the table by value.
        fn split_blocks_small<T>(src: CudaView<'_, T>, table: SmallBlocks, pieces: i32, src_row_stride: i64);
    }

    crate::__aoanet_cuda_kernels! { "elementwise";
        /// f32 to f64 (exact).
        fn cast_f32_f64(out: CudaViewMut<'_, f64>, x: CudaView<'_, f32>, n: i64);
        /// f64 to f32, round to nearest even.
        fn cast_f64_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, f64>, n: i64);
        /// f32 to bf16, round to nearest even.
        fn cast_f32_bf16(out: CudaViewMut<'_, half::bf16>, x: CudaView<'_, f32>, n: i64);
        /// bf16 to f32 (exact).
        fn cast_bf16_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, half::bf16>, n: i64);
        /// `[d0,d1,d2,d3] -> [d0,d2,d1,d3]`.
        fn permute0213_f32(out: CudaViewMut<'_, f32>, x: CudaView<'_, f32>, d0: i64, d1: i64, d2: i64, d3: i64);
        /// `scores[row, k] = value` where `mask[row / rows_per_batch, k] == 0`.
        fn mask_keys_f32(scores: CudaViewMut<'_, f32>, mask: CudaView<'_, u8>, rows: i64, nk: i32, rows_per_batch: i64, value: f32);
    }
}

pub use raw::{FLOAT_SIGNATURES, SIGNATURES};

/// Unary ops (the `U_*` codes of `kernels/elementwise.cu`). Parameters are `f64` and rounded
/// to the kernel's type at launch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `alpha * x + beta`.
    Affine(f64, f64),
    /// `-x`.
    Neg,
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `√x`.
    Sqrt,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `x^p`.
    Pow(f64),
    /// `min(max(x, lo), hi)`.
    Clamp(f64, f64),
    /// `1 / x`.
    Recip,
    /// `x · c` (one rounding, as the CPU's `mul_scalar`).
    Scale(f64),
    /// `x + c` (as the CPU's `add_scalar`).
    Shift(f64),
}

impl Unary {
    fn code(self) -> (i32, f64, f64) {
        match self {
            Unary::Affine(a, b) => (0, a, b),
            Unary::Neg => (1, 0.0, 0.0),
            Unary::Exp => (2, 0.0, 0.0),
            Unary::Log => (3, 0.0, 0.0),
            Unary::Sqrt => (4, 0.0, 0.0),
            Unary::Relu => (5, 0.0, 0.0),
            Unary::Sigmoid => (6, 0.0, 0.0),
            Unary::Tanh => (7, 0.0, 0.0),
            Unary::Pow(p) => (8, p, 0.0),
            Unary::Clamp(lo, hi) => (9, lo, hi),
            Unary::Recip => (10, 0.0, 0.0),
            Unary::Scale(c) => (11, c, 0.0),
            Unary::Shift(c) => (12, c, 0.0),
        }
    }
}

/// Binary ops (the `B_*` codes of `kernels/elementwise.cu`): `a` and `b` are the two
/// (broadcast) operands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `max(a, b)`.
    Max,
    /// `min(a, b)`.
    Min,
    /// ReLU backward: `a = dy`, `b = x` (or the output), gives `dy · [b > 0]`.
    ReluBwd,
    /// Sigmoid backward from the output: `a = dy`, `b = y`, gives `dy · y(1-y)`.
    SigmoidBwd,
    /// Tanh backward from the output: `a = dy`, `b = y`, gives `dy · (1-y²)`.
    TanhBwd,
    /// `masked_fill`: `b ≠ 0 ? value : a`.
    FillWhere(f64),
    /// `b ≠ 0 ? 0 : a`.
    ZeroWhere,
    /// `b ≠ 0 ? a : 0`.
    KeepWhere,
    /// Clamp backward: `a = dy`, `b = x`, gives `dy · [lo ≤ x ≤ hi]`.
    ClampBwd(f64, f64),
    /// Power backward: `a = dy`, `b = x`, gives `dy · p · x^(p−1)` (`p − 1` formed in f64).
    PowBwd(f64),
    /// `a · c / b` (sqrt backward: `dy · ½ / y`).
    ScaledDiv(f64),
    /// ReLU-then-dropout backward from the output: `a = dy`, `b = y`, gives `dy · s` where
    /// `y > 0`, else 0 (`s` the dropout's scale).
    ReluScaleBwd(f64),
}

impl Binary {
    fn code(self) -> (i32, f64, f64) {
        match self {
            Binary::Add => (0, 0.0, 0.0),
            Binary::Sub => (1, 0.0, 0.0),
            Binary::Mul => (2, 0.0, 0.0),
            Binary::Div => (3, 0.0, 0.0),
            Binary::Max => (4, 0.0, 0.0),
            Binary::Min => (5, 0.0, 0.0),
            Binary::ReluBwd => (6, 0.0, 0.0),
            Binary::SigmoidBwd => (7, 0.0, 0.0),
            Binary::TanhBwd => (8, 0.0, 0.0),
            Binary::FillWhere(v) => (9, v, 0.0),
            Binary::ZeroWhere => (10, 0.0, 0.0),
            Binary::KeepWhere => (11, 0.0, 0.0),
            Binary::ClampBwd(lo, hi) => (12, lo, hi),
            Binary::PowBwd(p) => (13, p, p - 1.0),
            Binary::ScaledDiv(c) => (14, c, 0.0),
            Binary::ReluScaleBwd(s) => (15, s, 0.0),
        }
    }
}

/// Up to this many dimensions in a [`Bcast`].
pub const BCAST_DIMS: usize = 6;

/// How `binary_*` maps output elements to operand elements: the contiguous output has
/// `shape`; operand `a` is read at `Σ idx_d · sa[d]` and `b` at `Σ idx_d · sb[d]` (element
/// strides; 0 broadcasts). `copy_strided_*` reads the source at `sa` and writes the
/// destination at `sb`. Same layout as `struct Bcast` in `kernels/elementwise.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Bcast {
    /// Output shape, padded with leading 1s.
    pub shape: [i64; BCAST_DIMS],
    /// Strides of `a` in elements.
    pub sa: [i64; BCAST_DIMS],
    /// Strides of `b` in elements.
    pub sb: [i64; BCAST_DIMS],
    /// Number of dimensions used (the first `ndim` entries).
    pub ndim: i32,
    _pad: i32,
}

// SAFETY: #[repr(C)] with the field order, sizes and alignment (8) of the C struct; the C
// struct's trailing padding after `int ndim` is the `_pad` field here.
unsafe impl KernelArg for Bcast {
    const C_TYPE: &'static str = "Bcast";
    type Repr = Bcast;
    fn repr(&self) -> Bcast {
        *self
    }
}

impl Bcast {
    /// The index map for an output of `shape` and operands with element strides `sa`, `sb`
    /// (one per output dimension, 0 where the operand is broadcast).
    pub fn new(shape: &[usize], sa: &[i64], sb: &[i64]) -> Result<Bcast> {
        if shape.len() > BCAST_DIMS || sa.len() != shape.len() || sb.len() != shape.len() {
            return Err(Error::invalid(format!(
                "cuda binary: {} dims with {} and {} strides (at most {BCAST_DIMS} dims)",
                shape.len(),
                sa.len(),
                sb.len()
            )));
        }
        let mut bc = Bcast {
            shape: [1; BCAST_DIMS],
            sa: [0; BCAST_DIMS],
            sb: [0; BCAST_DIMS],
            ndim: shape.len() as i32,
            _pad: 0,
        };
        for (d, &s) in shape.iter().enumerate() {
            bc.shape[d] = s as i64;
            bc.sa[d] = sa[d];
            bc.sb[d] = sb[d];
        }
        Ok(bc)
    }

    /// Number of output elements.
    pub fn numel(&self) -> usize {
        self.shape[..self.ndim as usize]
            .iter()
            .product::<i64>()
            .max(0) as usize
    }

    /// One past the largest element offset read from an operand with strides `s`.
    fn extent(&self, s: &[i64; BCAST_DIMS]) -> Result<usize> {
        let mut hi = 0i64;
        let n = self.ndim as usize;
        for (&len, &stride) in self.shape[..n].iter().zip(&s[..n]) {
            if stride < 0 {
                return Err(Error::invalid(
                    "cuda binary: negative strides are not supported",
                ));
            }
            hi += (len - 1).max(0) * stride;
        }
        Ok(hi as usize + 1)
    }
}

fn grid(n: usize) -> LaunchCfg {
    LaunchCfg::elementwise(n, MAX_GRID_STRIDE_BLOCKS)
}

/// `out[..] = value`.
pub fn fill<T: CudaFloat>(dev: &CudaDevice, out: CudaViewMut<'_, T>, value: T) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    // SAFETY: the kernel writes exactly `n` = out.len() elements.
    unsafe { raw::fill(dev, grid(n), out, n as i64, value) }
}

/// `y += alpha · x` (equal lengths).
pub fn axpy<T: CudaFloat>(
    dev: &CudaDevice,
    y: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    alpha: T,
) -> Result<()> {
    let n = y.len();
    check_len("axpy", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: both views hold at least n elements.
    unsafe { raw::axpy(dev, grid(n), y, x, n as i64, alpha) }
}

/// `out = op(x)` elementwise (equal lengths; `out` may not alias `x` unless identical).
pub fn unary<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    x: CudaView<'_, T>,
    op: Unary,
) -> Result<()> {
    let n = out.len();
    check_len("unary", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let (code, a, b) = op.code();
    // SAFETY: both views hold at least n elements.
    unsafe {
        raw::unary(
            dev,
            grid(n),
            out,
            x,
            n as i64,
            code,
            T::from_f64(a),
            T::from_f64(b),
        )
    }
}

/// `out = op(a, b)` with broadcasting and strides described by `bc`; `out` is contiguous.
pub fn binary<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    a: CudaView<'_, T>,
    b: CudaView<'_, T>,
    op: Binary,
    bc: Bcast,
) -> Result<()> {
    let n = bc.numel();
    check_len("binary", "out", out.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    check_len("binary", "a", a.len(), bc.extent(&bc.sa)?)?;
    check_len("binary", "b", b.len(), bc.extent(&bc.sb)?)?;
    let (code, alpha, beta) = op.code();
    // SAFETY: out holds n elements; every operand offset is below its checked extent.
    unsafe {
        raw::binary(
            dev,
            grid(n),
            out,
            a,
            b,
            n as i64,
            code,
            T::from_f64(alpha),
            T::from_f64(beta),
            bc,
        )
    }
}

/// `dst[Σ idx·bc.sb] = src[Σ idx·bc.sa]` over the index space `bc.shape`. The destination
/// strides must not map two indices to one element (no zero stride on a dimension above 1);
/// the caller passes a dense or narrowed destination.
pub fn copy_strided<T: CudaFloat>(
    dev: &CudaDevice,
    dst: CudaViewMut<'_, T>,
    src: CudaView<'_, T>,
    bc: Bcast,
) -> Result<()> {
    let n = bc.numel();
    if n == 0 {
        return Ok(());
    }
    let nd = bc.ndim as usize;
    if bc.shape[..nd]
        .iter()
        .zip(&bc.sb[..nd])
        .any(|(&len, &s)| len > 1 && s == 0)
    {
        return Err(Error::invalid(
            "cuda copy_strided: a broadcast destination would write one element twice",
        ));
    }
    check_len("copy_strided", "src", src.len(), bc.extent(&bc.sa)?)?;
    check_len("copy_strided", "dst", dst.len(), bc.extent(&bc.sb)?)?;
    // SAFETY: every source and destination offset is below its checked extent.
    unsafe { raw::copy_strided(dev, grid(n), dst, src, n as i64, bc) }
}

/// One dense piece of [`copy_blocks`]: `src.len() / inner` rows of `inner` elements.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a, T> {
    /// The piece's elements, row-major.
    pub src: CudaView<'a, T>,
    /// Elements per row (at least 1).
    pub inner: usize,
    /// Where its first row starts in the destination.
    pub dst_offset: usize,
}

/// Elements per block of `copy_blocks` (`CB_CHUNK` in `kernels/elementwise.cu`).
const COPY_BLOCKS_CHUNK: usize = 2048;
/// Words per piece of the `copy_blocks` table (`CB_SLOT`).
const COPY_BLOCKS_SLOT: usize = 5;
/// Pieces whose table goes to the kernel by value (`CB_SMALL`).
const COPY_BLOCKS_SMALL: usize = 4;

/// `copy_blocks_small`'s table, passed by value: `struct SmallBlocks` in
/// `kernels/elementwise.cu` (unused entries zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SmallBlocks {
    w: [u64; COPY_BLOCKS_SLOT * COPY_BLOCKS_SMALL],
}

// SAFETY: #[repr(C)] array of u64 with the size and alignment (8) of the C struct.
unsafe impl KernelArg for SmallBlocks {
    const C_TYPE: &'static str = "SmallBlocks";
    type Repr = SmallBlocks;
    fn repr(&self) -> SmallBlocks {
        *self
    }
}

/// A `copy_blocks`/`split_blocks` launch: its table (5 words per nonempty piece), piece count
/// and grid.
struct BlockTable {
    words: Vec<u64>,
    count: i32,
    cfg: LaunchCfg,
}

impl BlockTable {
    /// The launch for `pieces` (address, length, row length, offset in the strided tensor),
    /// each checked against the strided tensor's `len` and `row_stride`; `None` when every
    /// piece is empty.
    fn new(
        op: &'static str,
        side: &str,
        pieces: &[(u64, usize, usize, usize)],
        len: usize,
        row_stride: usize,
    ) -> Result<Option<BlockTable>> {
        for (k, &(_, n, inner, offset)) in pieces.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if inner == 0 || !n.is_multiple_of(inner) || inner > row_stride {
                return Err(Error::invalid(format!(
                    "cuda {op}: piece {k} has {n} elements in rows of {inner} (row stride \
                     {row_stride})"
                )));
            }
            let last = offset + (n / inner - 1) * row_stride + inner;
            check_len(op, &format!("{side} (piece {k})"), len, last)?;
        }
        let live: Vec<_> = pieces.iter().filter(|p| p.1 > 0).collect();
        let (first, grid) = multi_tensor_blocks(op, live.iter().map(|p| p.1), COPY_BLOCKS_CHUNK)?;
        if live.is_empty() {
            return Ok(None);
        }
        let words = live
            .iter()
            .zip(first)
            .flat_map(|(&&(ptr, n, inner, offset), first)| {
                [ptr, n as u64, inner as u64, offset as u64, first]
            })
            .collect();
        Ok(Some(BlockTable {
            words,
            count: to_i32(op, "piece count", live.len())?,
            cfg: LaunchCfg::linear(grid, 256),
        }))
    }

    /// The table by value, when it has at most `COPY_BLOCKS_SMALL` pieces.
    fn small(&self) -> Option<SmallBlocks> {
        (self.count as usize <= COPY_BLOCKS_SMALL).then(|| {
            let mut small = SmallBlocks {
                w: [0; COPY_BLOCKS_SLOT * COPY_BLOCKS_SMALL],
            };
            small.w[..self.words.len()].copy_from_slice(&self.words);
            small
        })
    }
}

/// Copies every piece into `dst` in one launch: row `o` of a piece goes to
/// `dst[dst_offset + o · dst_row_stride ..][..inner]` (a concatenation: the pieces' windows
/// must not overlap, and each row fits in `dst_row_stride`).
pub fn copy_blocks<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    dst: CudaViewMut<'_, T>,
    pieces: &[Block<'_, T>],
    dst_row_stride: usize,
) -> Result<()> {
    let described: Vec<_> = pieces
        .iter()
        .map(|p| (p.src.device_ptr(), p.src.len(), p.inner, p.dst_offset))
        .collect();
    let Some(t) = BlockTable::new("copy_blocks", "dst", &described, dst.len(), dst_row_stride)?
    else {
        return Ok(());
    };
    let stride = dst_row_stride as i64;
    if let Some(small) = t.small() {
        // SAFETY: as below, with the table in the launch's parameters.
        return unsafe { raw::copy_blocks_small(dev, t.cfg, dst, small, t.count, stride) };
    }
    let table = dev.htod(&t.words)?;
    // SAFETY: each piece's source is a view borrowed for this call and every destination index
    // was checked against dst above; the table is on the device before the kernel (same
    // stream).
    unsafe { raw::copy_blocks(dev, t.cfg, dst, table.view(), t.count, stride) }
}

/// One dense piece of [`split_blocks`]: `dst.len() / inner` rows of `inner` elements.
#[derive(Debug)]
pub struct SplitPiece<'a, T> {
    /// The piece's elements, row-major, written by the split.
    pub dst: CudaViewMut<'a, T>,
    /// Elements per row (at least 1).
    pub inner: usize,
    /// Where its first row starts in the source.
    pub src_offset: usize,
}

/// The adjoint of [`copy_blocks`], in one launch: row `o` of each piece is read from
/// `src[src_offset + o · src_row_stride ..][..inner]` (a concatenation's gradient split into
/// its inputs' gradients).
pub fn split_blocks<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    src: CudaView<'_, T>,
    pieces: &mut [SplitPiece<'_, T>],
    src_row_stride: usize,
) -> Result<()> {
    let described: Vec<_> = pieces
        .iter()
        .map(|p| (p.dst.device_ptr(), p.dst.len(), p.inner, p.src_offset))
        .collect();
    let Some(t) = BlockTable::new("split_blocks", "src", &described, src.len(), src_row_stride)?
    else {
        return Ok(());
    };
    let stride = src_row_stride as i64;
    if let Some(small) = t.small() {
        // SAFETY: as below, with the table in the launch's parameters.
        return unsafe { raw::split_blocks_small(dev, t.cfg, src, small, t.count, stride) };
    }
    let table = dev.htod(&t.words)?;
    // SAFETY: each piece's destination is a distinct view borrowed mutably for this call and
    // every source index was checked against src above; the table is on the device before
    // the kernel (same stream).
    unsafe { raw::split_blocks(dev, t.cfg, src, table.view(), t.count, stride) }
}

/// Sources of one `sum_many` launch (`SUM_MAX` in `kernels/elementwise.cu`).
pub const SUM_MAX: usize = 16;

/// `sum_many`'s source addresses, passed by value: `struct SumSources` (unused entries zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SumSources {
    p: [u64; SUM_MAX],
}

// SAFETY: #[repr(C)] array of u64 with the size and alignment (8) of the C struct.
unsafe impl KernelArg for SumSources {
    const C_TYPE: &'static str = "SumSources";
    type Repr = SumSources;
    fn repr(&self) -> SumSources {
        *self
    }
}

/// `out[i] = first[i] + rest[0][i] + rest[1][i] + …`, added in that order (the bits of adding
/// them one at a time), in one launch per [`SUM_MAX`] sources. `first: None` sums in place:
/// the first source is `out` itself.
pub fn sum_many<T: CudaFloat>(
    dev: &CudaDevice,
    out: CudaViewMut<'_, T>,
    first: Option<CudaView<'_, T>>,
    rest: &[CudaView<'_, T>],
) -> Result<()> {
    let n = out.len();
    if let Some(f) = &first {
        check_len("sum_many", "first source", f.len(), n)?;
    }
    for (k, s) in rest.iter().enumerate() {
        check_len("sum_many", &format!("source {}", k + 1), s.len(), n)?;
    }
    if n == 0 {
        return Ok(());
    }
    // The first launch starts from `first` (or `out` itself); later ones from `out`.
    let mut head = first.map_or(out.device_ptr(), |f| f.device_ptr());
    let mut rest = rest;
    let out_ptr = out.device_ptr();
    let mut out = out;
    loop {
        let take = rest.len().min(SUM_MAX - 1);
        let mut src = SumSources { p: [0; SUM_MAX] };
        src.p[0] = head;
        for (k, s) in rest[..take].iter().enumerate() {
            src.p[k + 1] = s.device_ptr();
        }
        // SAFETY: every source address is a view of n elements borrowed for this call, or
        // `out` (each thread reads element i of every source before writing out[i]).
        unsafe {
            raw::sum_many(
                dev,
                grid(n),
                out.reborrow(),
                src,
                (take + 1) as i32,
                n as i64,
            )?;
        }
        rest = &rest[take..];
        if rest.is_empty() {
            return Ok(());
        }
        head = out_ptr;
    }
}

/// f32 → f64 (exact).
pub fn cast_to_f64(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f64>,
    x: CudaView<'_, f32>,
) -> Result<()> {
    let n = out.len();
    check_len("cast_f32_f64", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: both views hold at least n elements.
    unsafe { raw::cast_f32_f64(dev, grid(n), out, x, n as i64) }
}

/// f64 → f32 (round to nearest even).
pub fn cast_to_f32(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, f64>,
) -> Result<()> {
    let n = out.len();
    check_len("cast_f64_f32", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: both views hold at least n elements.
    unsafe { raw::cast_f64_f32(dev, grid(n), out, x, n as i64) }
}

/// f32 → bf16 (round to nearest even).
pub fn cast_to_bf16(
    dev: &CudaDevice,
    out: CudaViewMut<'_, half::bf16>,
    x: CudaView<'_, f32>,
) -> Result<()> {
    let n = out.len();
    check_len("cast_f32_bf16", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: both views hold at least n elements.
    unsafe { raw::cast_f32_bf16(dev, grid(n), out, x, n as i64) }
}

/// bf16 → f32.
pub fn cast_from_bf16(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, half::bf16>,
) -> Result<()> {
    let n = out.len();
    check_len("cast_bf16_f32", "x", x.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // SAFETY: both views hold at least n elements.
    unsafe { raw::cast_bf16_f32(dev, grid(n), out, x, n as i64) }
}

/// `out[a][c][b][e] = x[a][b][c][e]` for `x` of shape `dims` (head split/merge).
pub fn permute0213(
    dev: &CudaDevice,
    out: CudaViewMut<'_, f32>,
    x: CudaView<'_, f32>,
    dims: [usize; 4],
) -> Result<()> {
    let n: usize = dims.iter().product();
    check_len("permute0213", "x", x.len(), n)?;
    check_len("permute0213", "out", out.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let [d0, d1, d2, d3] = dims.map(|d| d as i64);
    // SAFETY: both views hold at least n = d0·d1·d2·d3 elements.
    unsafe { raw::permute0213_f32(dev, grid(n), out, x, d0, d1, d2, d3) }
}

/// `masked_fill(scores, mask == 0, value)` for scores `[batches · rows_per_batch, nk]` and a
/// key mask `[batches, nk]` (1 = keep).
pub fn mask_keys(
    dev: &CudaDevice,
    scores: CudaViewMut<'_, f32>,
    mask: CudaView<'_, u8>,
    batches: usize,
    rows_per_batch: usize,
    nk: usize,
    value: f32,
) -> Result<()> {
    let rows = batches * rows_per_batch;
    check_len("mask_keys", "scores", scores.len(), rows * nk)?;
    check_len("mask_keys", "mask", mask.len(), batches * nk)?;
    if rows * nk == 0 {
        return Ok(());
    }
    let nk32 = to_i32("mask_keys", "nk", nk)?;
    // SAFETY: sizes checked above.
    unsafe {
        raw::mask_keys_f32(
            dev,
            grid(rows * nk),
            scores,
            mask,
            rows as i64,
            nk32,
            rows_per_batch as i64,
            value,
        )
    }
}
