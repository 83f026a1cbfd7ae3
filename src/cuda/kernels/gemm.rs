//! Batched GEMM with transposes and a bias/ReLU epilogue (`kernels/gemm.cu`).

use std::sync::{Arc, Mutex};

use super::{check_len, to_i32};
use crate::cuda::{CudaBuffer, CudaDevice, CudaFloat, CudaView, CudaViewMut, LaunchCfg};
use crate::{Error, Result};

/// The raw launches. Every GEMM kernel ends with `partials` and `counters`: both absent for a
/// plain product; for a split-K product (`batch` counts K slices, C and the epilogue describe
/// the whole product) the slices' workspace `[batch, m, n]` and one zero counter per tile of
/// the grid, left zero again by the launch (`kernels/gemm.cu`, "split K").
pub mod raw {
    use crate::cuda::{CudaView, CudaViewMut};

    crate::__aoanet_cuda_float_kernels! { "gemm";
    /// `gemm_f32`, `gemm_f64`: the SIMT GEMM.
    fn gemm<T>(c: CudaViewMut<'_, T>, a: CudaView<'_, T>, b: CudaView<'_, T>, bias: Option<CudaView<'_, T>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: T, beta: T, act: i32, partials: Option<CudaViewMut<'_, T>>,
        counters: Option<CudaViewMut<'_, i32>>);
    }

    crate::__aoanet_cuda_kernels! { "gemm";
    /// Tensor-core GEMM on f32 inputs rounded to TF32.
    fn gemm_tf32(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// Tensor-core GEMM on bf16 inputs, f32 accumulation and output.
    fn gemm_bf16(c: CudaViewMut<'_, f32>, a: CudaView<'_, half::bf16>, b: CudaView<'_, half::bf16>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// `gemm_bf16` on f32 operands, rounded to bf16 as the kernel loads them.
    fn gemm_bf16_ff(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// `gemm_bf16` on an f32 A (rounded as loaded) and a bf16 B.
    fn gemm_bf16_fb(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, half::bf16>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// SIMT f32 GEMM with 64×128 tiles (128 threads).
    fn gemm_half_f32(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// SIMT f32 GEMM with 128×128 tiles (256 threads).
    fn gemm_large_f32(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// TF32 tensor-core GEMM with 128×128 tiles (256 threads).
    fn gemm_tf32_large(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// bf16 tensor-core GEMM with 128×128 tiles (256 threads).
    fn gemm_bf16_large(c: CudaViewMut<'_, f32>, a: CudaView<'_, half::bf16>, b: CudaView<'_, half::bf16>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// `gemm_bf16_large` on f32 operands, rounded to bf16 as the kernel loads them.
    fn gemm_bf16_large_ff(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, f32>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
    /// `gemm_bf16_large` on an f32 A (rounded as loaded) and a bf16 B.
    fn gemm_bf16_large_fb(c: CudaViewMut<'_, f32>, a: CudaView<'_, f32>, b: CudaView<'_, half::bf16>, bias: Option<CudaView<'_, f32>>,
        m: i32, n: i32, k: i32, lda: i64, ldb: i64, ldc: i64, s_a: i64, s_b: i64, s_c: i64, batch: i32,
        trans_a: i32, trans_b: i32, alpha: f32, beta: f32, act: i32, partials: Option<CudaViewMut<'_, f32>>,
        counters: Option<CudaViewMut<'_, i32>>);
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
    /// Tensor cores with bf16 inputs (7-bit mantissa): f32 operands are rounded to bf16 (to
    /// nearest even) as the kernel loads them, then multiplied with f32 accumulation.
    Bf16,
}

/// The block tile a product runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// 64×64 outputs per block (`gemm_f32`, `gemm_f64`, `gemm_tf32`, `gemm_bf16`): simpler
    /// kernels, for products whose padding to 128 would waste most of a large tile.
    Small,
    /// 64 rows × 128 columns per block (`gemm_half_f32`), for products of at most 64 rows;
    /// TF32 and bf16 have no such kernel and run their `Large` one.
    Half,
    /// 128×128 outputs per block (`gemm_large_f32`, `gemm_tf32_large`, `gemm_bf16_large`);
    /// f64 has no large kernel and runs `Small`.
    Large,
}

impl Tile {
    /// Rows and columns of the block tile.
    pub fn dims(self) -> (usize, usize) {
        match self {
            Tile::Small => (64, 64),
            Tile::Half => (64, 128),
            Tile::Large => (128, 128),
        }
    }
}

/// How a product is laid over the GPU: its tile and the number of slices K is split into
/// (each slice a partial product into a workspace; the last block of each tile to finish sums
/// them and applies the epilogue, in the same launch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The block tile.
    pub tile: Tile,
    /// Slices of K (1: no split). Must divide K; only for `batch == 1`.
    pub splits: usize,
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

    /// The elements of A and of B that the product reads: one past the largest index.
    /// The elements of A and of B the product reads, from each operand's first element
    /// (what a copy of an operand must cover).
    pub fn operand_extents(&self) -> (usize, usize) {
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
        (
            Self::extent(ar, ac, self.lda, self.batch, self.stride_a),
            Self::extent(br, bc, self.ldb, self.batch, self.stride_b),
        )
    }

    fn check(&self, c: usize, a: usize, b: usize, bias: Option<usize>) -> Result<()> {
        let ac = if self.trans_a { self.m } else { self.k };
        let bc = if self.trans_b { self.k } else { self.n };
        if self.lda < ac || self.ldb < bc || self.ldc < self.n {
            return Err(Error::invalid(format!(
                "cuda gemm: leading dimensions too small in {self:?}"
            )));
        }
        let (ea, eb) = self.operand_extents();
        check_len("gemm", "A", a, ea)?;
        check_len("gemm", "B", b, eb)?;
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

    /// The plan [`gemm`] uses on a GPU with `sms` multiprocessors.
    ///
    /// Tile: the least padded work per unit of kernel speed, with the 64×128 and 128×128
    /// kernels counted as 1.8 and 2 times as fast per computed element as the 64×64 ones
    /// (measured on the H100 at 0.43–0.52 of the 128×128 kernel's speed). So 128×128 for the
    /// refiner and the 250 decoder rows, 64×128 for the 50-row decoding products, 64×64 for
    /// the refiner attention's batched 64×64 scores. K is split when fewer than 1.5 blocks per
    /// SM would run, into the fewest slices of at least 256 that reach 1.5 per SM, or else
    /// the most such slices; batched products never split.
    ///
    /// Measured on the H100 (`cargo bench --bench kernels` times the alternatives; f32, ms):
    /// 250×4096×2048: 1 slice 0.266, 2 0.149, 4 0.142, 8 0.163; 1800×1024×2048 (120 tiles):
    /// 1 slice 0.271, 2 0.259, 4 0.272; 50×4096×3072: 64×64 at best 0.126 in 6 slices,
    /// 128×128 0.096 in 8.
    pub fn plan(&self, sms: usize) -> Plan {
        let padded = |t: Tile| {
            let (r, c) = t.dims();
            self.m.div_ceil(r) * r * self.n.div_ceil(c) * c
        };
        // Work over speed, in tenths: the 64x64 kernel at 1.0, 64x128 at 1.8, 128x128 at 2.
        let cost = |t: Tile| {
            let speed = match t {
                Tile::Small => 10,
                Tile::Half => 18,
                Tile::Large => 20,
            };
            padded(t) * 180 / speed
        };
        let tile = [Tile::Large, Tile::Half, Tile::Small]
            .into_iter()
            .min_by_key(|&t| cost(t))
            .expect("three tiles");
        let (r, c) = tile.dims();
        let blocks = self.m.div_ceil(r) * self.n.div_ceil(c) * self.batch;
        let enough = |blocks: usize| 2 * blocks >= 3 * sms;
        let mut splits = 1;
        if !enough(blocks) && self.batch == 1 {
            for s in 2..=16 {
                if self.k.is_multiple_of(s) && self.k / s >= 256 {
                    splits = s;
                    if enough(blocks * s) {
                        break;
                    }
                }
            }
        }
        Plan { tile, splits }
    }

    /// The plan of the bf16 tensor-core products ([`gemm_bf16_tc`], and [`gemm`] with
    /// [`Precision::Bf16`]) on a GPU with `sms` multiprocessors.
    ///
    /// [`Gemm::plan`]'s when it picks the 64×64 tile (batched attention products, outputs
    /// narrower than 128); else the 128×128 kernel (bf16 has no 64×128 one, and its 64×64 one
    /// ran 2–10 times slower on every model product measured) with K split by a cost model
    /// fitted to the H200's times of every tile and split of the model's products
    /// (`cargo bench --bench kernels`, `gemm-bf16-fb` lines): waves of blocks (two per SM) ×
    /// K steps of 32 per block × 0.5, plus 1.0 per slice per 128 rows of the tile (the last
    /// block of each tile sums the slices alone). Slices of at least 128 (4 steps). Over the
    /// 13 products measured it picks the fastest split or one within 13 % of it, where the
    /// general plan (at least 1.5 blocks per SM, slices of 256) was up to 1.37 times slower
    /// (the refiner's 360 × 2048 × 2048 in 8 slices: 66 µs, in 4: 50 µs).
    pub fn plan_bf16(&self, sms: usize) -> Plan {
        let general = self.plan(sms);
        if general.tile == Tile::Small {
            return general;
        }
        if self.batch > 1 {
            return Plan {
                tile: Tile::Large,
                splits: 1,
            };
        }
        let tiles = self.m.div_ceil(128) * self.n.div_ceil(128);
        let rows = self.m.min(128) as f64 / 128.0;
        let cost = |s: usize| {
            let waves = (tiles * s).div_ceil(2 * sms.max(1)) as f64;
            0.5 * waves * (self.k / s) as f64 / 32.0 + s as f64 * rows
        };
        let splits = [1usize, 2, 4, 8, 16, 32]
            .into_iter()
            .filter(|&s| s == 1 || (self.k.is_multiple_of(s) && self.k / s >= 128))
            .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
            .unwrap_or(1);
        Plan {
            tile: Tile::Large,
            splits,
        }
    }

    /// The launch shape of a split-K plan: `splits` slices of K / splits as the batch (grid
    /// z), each stepping through A and B by a slice; C, `ldc` and the epilogue stay the whole
    /// product's (the kernel writes the slices to the workspace, then C).
    fn split_k(&self, splits: usize) -> Result<Gemm> {
        if splits == 0 || !self.k.is_multiple_of(splits) || (splits > 1 && self.batch != 1) {
            return Err(Error::invalid(format!(
                "cuda gemm: cannot split k = {} into {splits} slices (batch {})",
                self.k, self.batch
            )));
        }
        let kc = self.k / splits;
        Ok(Gemm {
            k: kc,
            batch: splits,
            stride_a: if self.trans_a { kc * self.lda } else { kc },
            stride_b: if self.trans_b { kc } else { kc * self.ldb },
            stride_c: 0,
            ..*self
        })
    }

    /// Blocks of `tile` over C (grid z: the batch), `threads` each.
    fn cfg_tiled(&self, threads: u32, tile: Tile) -> Result<LaunchCfg> {
        let (rows, cols) = tile.dims();
        let gy = self.m.div_ceil(rows);
        if gy > 65535 {
            return Err(Error::invalid(format!(
                "cuda gemm: m = {} is too large",
                self.m
            )));
        }
        Ok(LaunchCfg {
            grid: (
                self.n.div_ceil(cols) as u32,
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

/// Launches one GEMM kernel with the shape, strides and epilogue of a checked [`Gemm`].
macro_rules! launch_gemm {
    ($kernel:path, $dev:expr, $g:expr, $cfg:expr, $c:expr, $a:expr, $b:expr, $bias:expr, $alpha:expr, $beta:expr, $split:expr) => {{
        let g: &Gemm = $g;
        let (m, n, k, batch) = g.ints()?;
        let cfg = $cfg;
        let (partials, counters) = match $split {
            Some((p, n)) => (Some(p), Some(n)),
            None => (None, None),
        };
        // SAFETY: the caller checked every operand's extent for `g` against its length
        // (`Gemm::check`, or `Gemm::split_k` of a checked product, whose slices stay inside
        // it, with a workspace of `batch·m·n` and a zero counter per tile of `cfg`), and
        // `cfg` has the block size the kernel is written for.
        unsafe {
            $kernel(
                $dev,
                cfg,
                $c,
                $a,
                $b,
                $bias,
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
                $alpha,
                $beta,
                g.act as i32,
                partials,
                counters,
            )
        }
    }};
}

/// `C = act(alpha · op(A) op(B) + beta · C + bias)`: SIMT FMAs in the type of the operands,
/// or for f32 tensor cores on TF32- or bf16-rounded inputs ([`Precision`]; f64 ignores it),
/// with the tile and K split of [`Gemm::plan`] (bf16 products: [`Gemm::plan_bf16`]) for this GPU.
pub fn gemm<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &Gemm,
    c: CudaViewMut<'_, T>,
    a: CudaView<'_, T>,
    b: CudaView<'_, T>,
    bias: Option<CudaView<'_, T>>,
    precision: Precision,
) -> Result<()> {
    let sms = dev.multiprocessors()? as usize;
    let plan = if precision == Precision::Bf16 && !T::IS_F64 {
        g.plan_bf16(sms)
    } else {
        g.plan(sms)
    };
    gemm_planned(dev, g, plan, c, a, b, bias, precision)
}

/// [`gemm`] with an explicit [`Plan`] (tests and benches run every kernel through this). f64
/// runs the 64×64 SIMT kernel whatever the plan.
#[allow(clippy::too_many_arguments)]
pub fn gemm_planned<T: CudaFloat>(
    dev: &Arc<CudaDevice>,
    g: &Gemm,
    plan: Plan,
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
    if T::IS_F64 {
        let (alpha, beta) = (
            T::from_f64(f64::from(g.alpha)),
            T::from_f64(f64::from(g.beta)),
        );
        return launch_gemm!(
            raw::gemm::<T>,
            dev,
            g,
            g.cfg_tiled(256, Tile::Small)?,
            c,
            a,
            b,
            bias,
            alpha,
            beta,
            None
        );
    }
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
    if precision == Precision::Bf16 {
        // One launch: the kernel rounds both operands as it loads them.
        return launch_planned(dev, g, plan, c, a, b, bias, bf16_kernel_ff(plan.tile));
    }
    let kernel = f32_kernel(plan.tile, precision == Precision::Tf32);
    launch_planned(dev, g, plan, c, a, b, bias, kernel)
}

/// Launches `kernel` (with its block size and tile) for the checked product `g`: one launch,
/// also when `plan` splits K (the slices go to a workspace, and the last block of each tile
/// sums them into C).
#[allow(clippy::too_many_arguments)]
fn launch_planned<EA: crate::cuda::DeviceType, EB: crate::cuda::DeviceType>(
    dev: &Arc<CudaDevice>,
    g: &Gemm,
    plan: Plan,
    c: CudaViewMut<'_, f32>,
    a: CudaView<'_, EA>,
    b: CudaView<'_, EB>,
    bias: Option<CudaView<'_, f32>>,
    (kernel, threads, tile): (GemmKernel<EA, EB>, u32, Tile),
) -> Result<()> {
    if plan.splits == 1 {
        let cfg = g.cfg_tiled(threads, tile)?;
        return launch_gemm!(kernel, dev, g, cfg, c, a, b, bias, g.alpha, g.beta, None);
    }
    let slices = g.split_k(plan.splits)?;
    let cfg = slices.cfg_tiled(threads, tile)?;
    let tiles = cfg.grid.0 as usize * cfg.grid.1 as usize;
    let mut partials = dev.alloc::<f32>(plan.splits * g.m * g.n)?;
    let mut counters = TileCounters::lend(dev, tiles)?;
    let split = Some((partials.view_mut(), counters.view_mut(tiles)?));
    launch_gemm!(
        kernel, dev, &slices, cfg, c, a, b, bias, g.alpha, g.beta, split
    )
}

/// Counters per tile of a launch whose last block per tile finishes the tile's sum (a split-K
/// product, a LayerNorm's parameter gradients over several chunks of rows), zero before it and
/// again after it (the last block of each tile resets its count). Lent one buffer per launch and taken back as soon as the
/// launch is queued: a device runs all its launches on its one stream, in order, so the next
/// borrower's kernel runs after the last one has reset them, and host threads queueing at the
/// same time hold different buffers.
pub(crate) struct TileCounters {
    ordinal: usize,
    buffer: Option<CudaBuffer<i32>>,
}

/// Counters per lent buffer: more tiles than a planned split product has (K is split only
/// when the tiles give fewer than 1.5 blocks per SM); an explicit plan with more gets a buffer
/// of its own.
const COUNTERS_PER_BUFFER: usize = 1024;

/// Zeroed counter buffers not lent out, with their device's ordinal.
static SPARE_COUNTERS: Mutex<Vec<(usize, CudaBuffer<i32>)>> = Mutex::new(Vec::new());

impl TileCounters {
    /// At least `tiles` zero counters on `dev`: a spare buffer, or a new one zeroed on the
    /// stream (one for this launch only when `tiles` exceeds [`COUNTERS_PER_BUFFER`]).
    pub(crate) fn lend(dev: &Arc<CudaDevice>, tiles: usize) -> Result<Self> {
        let ordinal = dev.ordinal();
        if tiles > COUNTERS_PER_BUFFER {
            return Ok(TileCounters {
                ordinal,
                buffer: Some(dev.zeros::<i32>(tiles)?),
            });
        }
        let spare = {
            let mut spare = SPARE_COUNTERS
                .lock()
                .map_err(|_| Error::Cuda("split-K counters poisoned".into()))?;
            spare
                .iter()
                .position(|(o, _)| *o == ordinal)
                .map(|i| spare.swap_remove(i).1)
        };
        let buffer = match spare {
            Some(b) => b,
            None => dev.zeros::<i32>(COUNTERS_PER_BUFFER)?,
        };
        Ok(TileCounters {
            ordinal,
            buffer: Some(buffer),
        })
    }

    /// The first `tiles` counters.
    pub(crate) fn view_mut(&mut self, tiles: usize) -> Result<CudaViewMut<'_, i32>> {
        self.buffer
            .as_mut()
            .expect("lent until dropped")
            .view_mut()
            .slice_mut(..tiles)
    }
}

impl Drop for TileCounters {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        // A buffer sized for one launch is freed; a poisoned list only loses the buffer.
        if buffer.len() == COUNTERS_PER_BUFFER
            && let Ok(mut spare) = SPARE_COUNTERS.lock()
        {
            spare.push((self.ordinal, buffer));
        }
    }
}

/// The launch wrapper of a GEMM kernel with operands of types `EA` and `EB` and an f32 output
/// (all of `kernels/gemm.cu` but `gemm_f64`): the shape, strides and epilogue of
/// `launch_gemm!`.
pub type GemmKernel<EA, EB = EA> = for<'c, 'a, 'b, 'd, 'e, 'f> unsafe fn(
    &CudaDevice,
    LaunchCfg,
    CudaViewMut<'c, f32>,
    CudaView<'a, EA>,
    CudaView<'b, EB>,
    Option<CudaView<'d, f32>>,
    i32,
    i32,
    i32,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i32,
    i32,
    i32,
    f32,
    f32,
    i32,
    Option<CudaViewMut<'e, f32>>,
    Option<CudaViewMut<'f, i32>>,
) -> Result<()>;

/// The kernel for an f32 product with `tile` on SIMT FMAs or (`tf32`) TF32 tensor cores, its
/// block size and the tile it computes (TF32 has no 64×128 kernel: such products run the
/// 128×128 one).
fn f32_kernel(tile: Tile, tf32: bool) -> (GemmKernel<f32>, u32, Tile) {
    match (tile, tf32) {
        (Tile::Small, false) => (raw::gemm::<f32>, 256, Tile::Small),
        (Tile::Small, true) => (raw::gemm_tf32, 128, Tile::Small),
        (Tile::Half, false) => (raw::gemm_half_f32, 128, Tile::Half),
        (Tile::Large, false) => (raw::gemm_large_f32, 256, Tile::Large),
        (Tile::Half | Tile::Large, true) => (raw::gemm_tf32_large, 256, Tile::Large),
    }
}

/// The bf16 kernel for `tile` (no 64×128 one either), its block size and computed tile.
fn bf16_kernel(tile: Tile) -> (GemmKernel<half::bf16>, u32, Tile) {
    match tile {
        Tile::Small => (raw::gemm_bf16, 128, Tile::Small),
        Tile::Half | Tile::Large => (raw::gemm_bf16_large, 256, Tile::Large),
    }
}

/// The bf16 kernel for `tile` over f32 operands rounded as loaded.
fn bf16_kernel_ff(tile: Tile) -> (GemmKernel<f32>, u32, Tile) {
    match tile {
        Tile::Small => (raw::gemm_bf16_ff, 128, Tile::Small),
        Tile::Half | Tile::Large => (raw::gemm_bf16_large_ff, 256, Tile::Large),
    }
}

/// The bf16 kernel for `tile` over an f32 A rounded as loaded and a bf16 B.
fn bf16_kernel_fb(tile: Tile) -> (GemmKernel<f32, half::bf16>, u32, Tile) {
    match tile {
        Tile::Small => (raw::gemm_bf16_fb, 128, Tile::Small),
        Tile::Half | Tile::Large => (raw::gemm_bf16_large_fb, 256, Tile::Large),
    }
}

/// What the bf16 tensor-core kernels take for `A`: bf16, or f32 rounded to bf16 (to nearest
/// even) as the kernel loads it — the same bits as a cast first, without the cast's launch
/// and copy.
pub trait Bf16Operand: crate::cuda::DeviceType {
    /// The kernel for `tile` with `A` of this type and a bf16 `B`, its block size and the tile
    /// it computes.
    #[doc(hidden)]
    fn kernel(tile: Tile) -> (GemmKernel<Self, half::bf16>, u32, Tile);
}

impl Bf16Operand for half::bf16 {
    fn kernel(tile: Tile) -> (GemmKernel<Self, half::bf16>, u32, Tile) {
        bf16_kernel(tile)
    }
}

impl Bf16Operand for f32 {
    fn kernel(tile: Tile) -> (GemmKernel<Self, half::bf16>, u32, Tile) {
        bf16_kernel_fb(tile)
    }
}

/// The same product on bf16 tensor cores (f32 accumulation and output) with `B` in bf16 (a
/// weight's cached copy) and `A` in bf16 or f32 ([`Bf16Operand`]), with the tile and K split
/// of [`Gemm::plan_bf16`].
pub fn gemm_bf16_tc<A: Bf16Operand>(
    dev: &Arc<CudaDevice>,
    g: &Gemm,
    c: CudaViewMut<'_, f32>,
    a: CudaView<'_, A>,
    b: CudaView<'_, half::bf16>,
    bias: Option<CudaView<'_, f32>>,
) -> Result<()> {
    let plan = g.plan_bf16(dev.multiprocessors()? as usize);
    gemm_bf16_planned(dev, g, plan, c, a, b, bias)
}

/// [`gemm_bf16_tc`] with an explicit [`Plan`].
pub fn gemm_bf16_planned<A: Bf16Operand>(
    dev: &Arc<CudaDevice>,
    g: &Gemm,
    plan: Plan,
    c: CudaViewMut<'_, f32>,
    a: CudaView<'_, A>,
    b: CudaView<'_, half::bf16>,
    bias: Option<CudaView<'_, f32>>,
) -> Result<()> {
    g.check(c.len(), a.len(), b.len(), bias.map(|v| v.len()))?;
    if g.m * g.n * g.batch == 0 {
        return Ok(());
    }
    launch_planned(dev, g, plan, c, a, b, bias, A::kernel(plan.tile))
}
