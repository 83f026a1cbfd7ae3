//! GPU GEMMs (SIMT f32, TF32 and bf16 tensor cores) vs an f64 CPU product, every transpose
//! combination, odd sizes, batches and the bias/ReLU/beta epilogue.
#![cfg(feature = "cuda")]

mod cuda_util;

use std::sync::Arc;

use aoanet::cuda::kernels::gemm::{self, Act, Gemm, Plan, Precision, Tile};
use aoanet::cuda::{CudaBuffer, CudaDevice};
use cuda_util::{assert_close, gpu, rand_vec};

/// f64 reference of `act(alpha · op(A) op(B) + beta · C + bias)` over the batch.
fn reference(g: &Gemm, a: &[f64], b: &[f64], c0: &[f32], bias: Option<&[f32]>) -> Vec<f64> {
    let mut out: Vec<f64> = c0.iter().map(|&v| f64::from(v)).collect();
    for z in 0..g.batch {
        for i in 0..g.m {
            for j in 0..g.n {
                let mut s = 0.0;
                for k in 0..g.k {
                    let av = if g.trans_a {
                        a[z * g.stride_a + k * g.lda + i]
                    } else {
                        a[z * g.stride_a + i * g.lda + k]
                    };
                    let bv = if g.trans_b {
                        b[z * g.stride_b + j * g.ldb + k]
                    } else {
                        b[z * g.stride_b + k * g.ldb + j]
                    };
                    s += av * bv;
                }
                let o = z * g.stride_c + i * g.ldc + j;
                let mut v = f64::from(g.alpha) * s + f64::from(g.beta) * out[o];
                if let Some(bias) = bias {
                    v += f64::from(bias[j]);
                }
                if g.act == Act::Relu {
                    v = v.max(0.0);
                }
                out[o] = v;
            }
        }
    }
    out
}

/// `cvt.rna.tf32.f32` on the host: round to 10 explicit mantissa bits, ties away from zero
/// (add half of the dropped 13 bits to the magnitude, then clear them). Finite inputs only.
fn tf32_rna(x: f32) -> f32 {
    f32::from_bits(x.to_bits().wrapping_add(0x1000) & !0x1fff)
}

/// Every transpose combination of each `(m, n, k)`.
fn all_transposes(shapes: &[(usize, usize, usize)]) -> Vec<Gemm> {
    let mut v = vec![];
    for &(m, n, k) in shapes {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            v.push(Gemm::new(m, n, k, ta, tb));
        }
    }
    v
}

/// `g` with the whole epilogue: alpha, beta (C read), bias and ReLU.
fn with_epilogue(mut g: Gemm) -> Gemm {
    g.alpha = 0.5;
    g.beta = 1.0;
    g.act = Act::Relu;
    g
}

/// The cases for a plan: odd sizes around each tile (64 or 128: partial tiles in every
/// direction, K not a multiple of the K step), all transposes, and a product with the whole
/// epilogue (batched unless K is split, which needs batch 1).
fn cases(plan: Plan) -> Vec<Gemm> {
    if plan.splits > 1 {
        // K a multiple of the split, slices of odd length; N % 4 == 0 (the 128-wide kernels
        // sum the slices four columns at a time) with a full 128x128 tile and partial ones.
        let mut v = all_transposes(&[
            (50, 70, 99),
            (17, 33, 3 * 65),
            (1, 130, 3 * 41),
            (150, 260, 3 * 32),
        ]);
        v.push(with_epilogue(Gemm::new(37, 45, 96, false, true)));
        v.push(with_epilogue(Gemm::new(37, 44, 96, false, true)));
        return v;
    }
    let mut shapes = vec![(1, 1, 1), (17, 33, 65), (64, 64, 64), (100, 70, 129)];
    match plan.tile {
        Tile::Large => shapes.extend([(130, 260, 70), (257, 129, 40), (128, 128, 17)]),
        Tile::Half => shapes.extend([(50, 300, 70), (65, 129, 40), (64, 128, 17)]),
        Tile::Small => {}
    }
    let mut v = all_transposes(&shapes);
    v.push(with_epilogue(Gemm::new(37, 45, 50, false, true).batched(3)));
    if plan.tile != Tile::Small {
        v.push(with_epilogue(
            Gemm::new(150, 140, 50, true, false).batched(2),
        ));
    }
    v
}

const SMALL: Plan = Plan {
    tile: Tile::Small,
    splits: 1,
};
const LARGE: Plan = Plan {
    tile: Tile::Large,
    splits: 1,
};

/// `gemm_planned` on device buffers of f32 operands (`ab`: A and B).
fn f32_product(
    dev: &Arc<CudaDevice>,
    g: &Gemm,
    plan: Plan,
    c: &mut CudaBuffer<f32>,
    ab: (&CudaBuffer<f32>, &CudaBuffer<f32>),
    bias: Option<&CudaBuffer<f32>>,
    precision: Precision,
) {
    gemm::gemm_planned(
        dev,
        g,
        plan,
        c.view_mut(),
        ab.0.view(),
        ab.1.view(),
        bias.map(|v| v.view()),
        precision,
    )
    .unwrap();
}

fn run(test: &str, which: &str, plan: Plan) {
    let Some(dev) = gpu(test) else { return };
    for (ci, g) in cases(plan).into_iter().enumerate() {
        let na = g.batch * g.m * g.k;
        let nb = g.batch * g.k * g.n;
        let nc = g.batch * g.m * g.n;
        let a = rand_vec(ci as u64 * 3 + 1, na, -1.0, 1.0);
        let b = rand_vec(ci as u64 * 3 + 2, nb, -1.0, 1.0);
        let c0 = rand_vec(ci as u64 * 3 + 3, nc, -1.0, 1.0);
        let bias = (g.beta != 0.0).then(|| rand_vec(99, g.n, -1.0, 1.0));
        let mut cd = dev.htod(&c0).unwrap();
        let biasd = bias.as_ref().map(|v| dev.htod(v).unwrap());
        // Operands as the kernel sees them (bf16-rounded for gemm_bf16), so the reference
        // measures the accumulation error, not the input rounding.
        let (want, tol) = match which {
            "bf16" => {
                let ab: Vec<half::bf16> = a.iter().map(|&v| half::bf16::from_f32(v)).collect();
                let bb: Vec<half::bf16> = b.iter().map(|&v| half::bf16::from_f32(v)).collect();
                let a64: Vec<f64> = ab.iter().map(|v| f64::from(v.to_f32())).collect();
                let b64: Vec<f64> = bb.iter().map(|v| f64::from(v.to_f32())).collect();
                let (ad, bd) = (dev.htod(&ab).unwrap(), dev.htod(&bb).unwrap());
                gemm::gemm_bf16_planned(
                    &dev,
                    &g,
                    plan,
                    cd.view_mut(),
                    ad.view(),
                    bd.view(),
                    biasd.as_ref().map(|v| v.view()),
                )
                .unwrap();
                // Exact bf16 products, f32 accumulation over ≤ 129 terms of size ≤ 1.
                (
                    reference(&g, &a64, &b64, &c0, bias.as_deref()),
                    (2e-5 * (g.k as f64).sqrt(), 1e-5),
                )
            }
            _ => {
                let (ad, bd) = (dev.htod(&a).unwrap(), dev.htod(&b).unwrap());
                let p = match which {
                    "tf32" => Precision::Tf32,
                    "bf16-products" => Precision::Bf16,
                    _ => Precision::F32,
                };
                f32_product(&dev, &g, plan, &mut cd, (&ad, &bd), biasd.as_ref(), p);
                // TF32: the reference takes the operands as the kernel rounds them
                // (`cvt.rna.tf32.f32`), so only the f32 accumulation differs and the bound is
                // the bf16 one; a kernel that truncated instead of rounding, or skipped the
                // conversion, fails (a first tolerance of 5e-4·√k on unrounded inputs was
                // exceeded by honest rounding on the H100). f32: k roundings of terms ≤ 1.
                // bf16 products of f32 operands: rounded to nearest even on the device, as
                // `half` rounds here.
                let round = |v: &f32| match which {
                    "tf32" => f64::from(tf32_rna(*v)),
                    "bf16-products" => f64::from(half::bf16::from_f32(*v).to_f32()),
                    _ => f64::from(*v),
                };
                let a64: Vec<f64> = a.iter().map(round).collect();
                let b64: Vec<f64> = b.iter().map(round).collect();
                let tol = if which == "tf32" || which == "bf16-products" {
                    (2e-5 * (g.k as f64).sqrt(), 1e-5)
                } else {
                    (2e-7 * g.k as f64, 1e-6)
                };
                (reference(&g, &a64, &b64, &c0, bias.as_deref()), tol)
            }
        };
        assert_close(
            &format!("gemm {which} {plan:?} {g:?}"),
            &cd.to_host().unwrap(),
            &want,
            tol.0,
            tol.1,
        );
    }
}

#[test]
fn tf32_rounding_is_round_to_nearest_ties_away() {
    // Needs no GPU: the host model of the kernel's operand rounding.
    assert_eq!(tf32_rna(1.0), 1.0);
    let ulp = 2f32.powi(-10);
    assert_eq!(tf32_rna(1.0 + ulp / 2.0), 1.0 + ulp); // a tie goes away from zero
    assert_eq!(tf32_rna(1.0 + ulp / 2.0 - 2f32.powi(-23)), 1.0);
    assert_eq!(tf32_rna(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
    assert_eq!(tf32_rna(0.3).to_bits() & 0x1fff, 0);
}

#[test]
fn gemm_f32_matches_cpu() {
    run("gemm_f32_matches_cpu", "f32", SMALL);
}

#[test]
fn gemm_tf32_matches_cpu() {
    run("gemm_tf32_matches_cpu", "tf32", SMALL);
}

#[test]
fn gemm_bf16_matches_cpu() {
    run("gemm_bf16_matches_cpu", "bf16", SMALL);
}

#[test]
fn gemm_large_f32_matches_cpu() {
    run("gemm_large_f32_matches_cpu", "f32", LARGE);
}

#[test]
fn gemm_half_f32_matches_cpu() {
    run(
        "gemm_half_f32_matches_cpu",
        "f32",
        Plan {
            tile: Tile::Half,
            splits: 1,
        },
    );
}

#[test]
fn gemm_tf32_large_matches_cpu() {
    run("gemm_tf32_large_matches_cpu", "tf32", LARGE);
}

#[test]
fn gemm_bf16_large_matches_cpu() {
    run("gemm_bf16_large_matches_cpu", "bf16", LARGE);
}

/// `Precision::Bf16` on f32 operands: rounded to bf16 as the kernels load them (batched
/// layouts included), split K included.
#[test]
fn gemm_bf16_large_products_of_f32_operands_match_cpu() {
    for plan in [
        LARGE,
        SMALL,
        Plan {
            tile: Tile::Large,
            splits: 3,
        },
    ] {
        run(
            "gemm_bf16_large_products_of_f32_operands_match_cpu",
            "bf16-products",
            plan,
        );
    }
}

/// The kernels that round f32 operands to bf16 as they load them (`gemm_bf16_ff`,
/// `gemm_bf16_fb` and their large-tile versions) against casting the operands to bf16 copies
/// first and running `gemm_bf16` / `gemm_bf16_large` on the copies: the same roundings (to
/// nearest even) and the same accumulation order, so the same bits. `b_bf16`: B is given in
/// bf16 (a weight's cached copy, the `_fb` kernels), else in f32 (the `_ff` ones).
fn same_as_cast_copies(test: &str, plans: &[Plan], b_bf16: bool) {
    let Some(dev) = gpu(test) else { return };
    let to16 =
        |v: &[f32]| -> Vec<half::bf16> { v.iter().map(|&x| half::bf16::from_f32(x)).collect() };
    for &plan in plans {
        for (ci, g) in cases(plan).into_iter().enumerate() {
            let (na, nb) = g.operand_extents();
            let nc = g.batch * g.m * g.n;
            let a = rand_vec(ci as u64 * 5 + 1, na, -1.0, 1.0);
            let b = rand_vec(ci as u64 * 5 + 2, nb, -1.0, 1.0);
            let c0 = rand_vec(ci as u64 * 5 + 3, nc, -1.0, 1.0);
            let bias = (g.beta != 0.0).then(|| dev.htod(&rand_vec(98, g.n, -1.0, 1.0)).unwrap());
            let (ad, bd) = (dev.htod(&a).unwrap(), dev.htod(&b).unwrap());
            let (a16, b16) = (dev.htod(&to16(&a)).unwrap(), dev.htod(&to16(&b)).unwrap());
            let mut fused = dev.htod(&c0).unwrap();
            let mut copies = dev.htod(&c0).unwrap();
            let bv = || bias.as_ref().map(|v| v.view());
            if b_bf16 {
                gemm::gemm_bf16_planned(
                    &dev,
                    &g,
                    plan,
                    fused.view_mut(),
                    ad.view(),
                    b16.view(),
                    bv(),
                )
                .unwrap();
            } else {
                gemm::gemm_planned(
                    &dev,
                    &g,
                    plan,
                    fused.view_mut(),
                    ad.view(),
                    bd.view(),
                    bv(),
                    Precision::Bf16,
                )
                .unwrap();
            }
            gemm::gemm_bf16_planned(
                &dev,
                &g,
                plan,
                copies.view_mut(),
                a16.view(),
                b16.view(),
                bv(),
            )
            .unwrap();
            let (f, c) = (fused.to_host().unwrap(), copies.to_host().unwrap());
            let differ = f
                .iter()
                .zip(&c)
                .position(|(x, y)| x.to_bits() != y.to_bits());
            assert!(
                differ.is_none(),
                "{test}: {plan:?} {g:?}: element {} is {} rounding on load, {} from bf16 copies",
                differ.unwrap(),
                f[differ.unwrap()],
                c[differ.unwrap()]
            );
        }
    }
}

const SPLIT3: Plan = Plan {
    tile: Tile::Large,
    splits: 3,
};

#[test]
fn gemm_bf16_ff_equals_products_of_bf16_copies() {
    same_as_cast_copies(
        "gemm_bf16_ff_equals_products_of_bf16_copies",
        &[SMALL],
        false,
    );
}

#[test]
fn gemm_bf16_large_ff_equals_products_of_bf16_copies() {
    same_as_cast_copies(
        "gemm_bf16_large_ff_equals_products_of_bf16_copies",
        &[LARGE, SPLIT3],
        false,
    );
}

#[test]
fn gemm_bf16_fb_equals_products_of_bf16_copies() {
    same_as_cast_copies(
        "gemm_bf16_fb_equals_products_of_bf16_copies",
        &[SMALL],
        true,
    );
}

#[test]
fn gemm_bf16_large_fb_equals_products_of_bf16_copies() {
    same_as_cast_copies(
        "gemm_bf16_large_fb_equals_products_of_bf16_copies",
        &[LARGE, SPLIT3],
        true,
    );
}

#[test]
fn split_k_matches_cpu_under_every_kind_of_kernel() {
    // The slices and their sum (by the last block of each tile) under each kernel family.
    for (which, tile) in [
        ("f32", Tile::Small),
        ("f32", Tile::Half),
        ("f32", Tile::Large),
        ("tf32", Tile::Small),
        ("tf32", Tile::Large),
        ("bf16", Tile::Small),
        ("bf16-products", Tile::Large),
    ] {
        run(
            "split_k_matches_cpu_under_every_kind_of_kernel",
            which,
            Plan { tile, splits: 3 },
        );
    }
}

#[test]
fn split_k_is_one_launch_and_leaves_its_counters_ready() {
    let test = "split_k_is_one_launch_and_leaves_its_counters_ready";
    let Some(dev) = gpu(test) else { return };
    // A product with the whole epilogue in 4 slices, then one whose grid has more tiles
    // (2060) than a lent buffer of counters holds, so it gets its own.
    let big = Gemm::new(64, 64 * 1030, 32, false, false);
    for (g, plan) in [
        (
            with_epilogue(Gemm::new(37, 300, 96, false, true)),
            Plan {
                tile: Tile::Half,
                splits: 4,
            },
        ),
        (
            big,
            Plan {
                tile: Tile::Small,
                splits: 2,
            },
        ),
    ] {
        let a = rand_vec(1, g.m * g.k, -1.0, 1.0);
        let b = rand_vec(2, g.k * g.n, -1.0, 1.0);
        let c0 = rand_vec(3, g.m * g.n, -1.0, 1.0);
        let bias = (g.beta != 0.0).then(|| rand_vec(4, g.n, -1.0, 1.0));
        let (ad, bd) = (dev.htod(&a).unwrap(), dev.htod(&b).unwrap());
        let biasd = bias.as_ref().map(|v| dev.htod(v).unwrap());
        let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
        let b64: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
        let want = reference(&g, &a64, &b64, &c0, bias.as_deref());
        // Several times in a row (`cuda_util::repeats`): each launch must find its counters
        // zero again, and the sum in slice order gives the same bits every time.
        let mut first: Option<Vec<f32>> = None;
        for _ in 0..cuda_util::repeats() {
            let mut cd = dev.htod(&c0).unwrap();
            let before = aoanet::cuda::launches_on_this_thread();
            f32_product(
                &dev,
                &g,
                plan,
                &mut cd,
                (&ad, &bd),
                biasd.as_ref(),
                Precision::F32,
            );
            assert_eq!(
                aoanet::cuda::launches_on_this_thread() - before,
                1,
                "{plan:?}: one launch"
            );
            let got = cd.to_host().unwrap();
            assert_close(
                &format!("{plan:?} {g:?}"),
                &got,
                &want,
                2e-7 * g.k as f64,
                1e-6,
            );
            match &first {
                None => first = Some(got),
                Some(f) => assert!(
                    f.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{plan:?}: a repeated split product changed"
                ),
            }
        }
    }
}

#[test]
fn plans_give_most_multiprocessors_a_block() {
    // Needs no GPU: the plan is arithmetic on the shape (132 SMs: the H100).
    let plan = |m, n, k| Gemm::new(m, n, k, false, true).plan(132);
    let p = |tile, splits| Plan { tile, splits };
    // Refiner-sized products: 240 and 256 tiles, no split.
    assert_eq!(plan(1800, 2048, 2048), LARGE);
    assert_eq!(plan(2048, 2048, 2048), LARGE);
    // 120 tiles: 2 slices give 240 blocks (>= 198 = 1.5 per SM).
    assert_eq!(plan(1800, 1024, 2048), p(Tile::Large, 2));
    // 250 decoder rows x 4096: 64 tiles; 4 slices of 512.
    assert_eq!(plan(250, 4096, 2048), p(Tile::Large, 4));
    // 50 rows: 64x128 tiles, 32 of them; 3072 in 8 slices of 384 gives 256 blocks.
    assert_eq!(plan(50, 4096, 3072), p(Tile::Half, 8));
    // The vocabulary projection: 75 tiles, 1024 in 4 slices of 256 (3 does not divide it).
    assert_eq!(plan(50, 9488, 1024), p(Tile::Half, 4));
    // Batched 64x64 attention scores: one small tile each, never split.
    assert_eq!(
        Gemm::new(64, 64, 128, false, true).batched(400).plan(132),
        SMALL
    );
    // K too short to split, or split into the most slices of at least 256.
    assert_eq!(plan(50, 64, 300), SMALL);
    assert_eq!(plan(50, 64, 600), p(Tile::Small, 2));
}

/// The bf16 plan (`Gemm::plan_bf16`) picks, for the model's products, the split that the
/// H200 ran fastest (`cargo bench --bench kernels`, `gemm-bf16-fb` lines; 132 SMs), or one
/// within 13 % of it.
#[test]
fn bf16_plans_split_the_model_products_as_measured() {
    let plan = |m, n, k, trans_b| Gemm::new(m, n, k, false, trans_b).plan_bf16(132);
    let large = |splits| Plan {
        tile: Tile::Large,
        splits,
    };
    // The refiner's 360 rows: 4 slices (8 measured 1.33x slower for 2048 x 2048).
    assert_eq!(plan(360, 1024, 1024, true), large(4));
    assert_eq!(plan(360, 2048, 2048, true), large(4));
    assert_eq!(plan(360, 2048, 2048, false), large(4));
    // The decoder's 50 rows per step: 8 tiles of 1024 outputs in 8 slices of 128.
    assert_eq!(plan(50, 1024, 1024, true), large(8));
    assert_eq!(plan(50, 1024, 1024, false), large(8));
    assert_eq!(plan(50, 2048, 2048, true), large(8));
    assert_eq!(plan(50, 2048, 4096, false), large(16));
    assert_eq!(plan(50, 1024, 4096, false), large(16));
    // The vocabulary projection: 75 tiles, 2 slices.
    assert_eq!(plan(50, 9488, 1024, true), large(2));
    // Enough tiles: no split.
    assert_eq!(plan(1800, 2048, 2048, true), large(1));
    // The general plan's 64x64 tile stays: batched attention products, narrow outputs.
    assert_eq!(
        Gemm::new(64, 64, 128, false, true)
            .batched(400)
            .plan_bf16(132),
        SMALL
    );
    assert_eq!(plan(50, 64, 300, true), SMALL);
    // A batched product of large tiles is never split.
    assert_eq!(
        Gemm::new(300, 300, 1024, false, true)
            .batched(2)
            .plan_bf16(132),
        large(1)
    );
}

#[test]
fn gemm_f32_refuses_a_short_operand() {
    let Some(dev) = gpu("gemm_f32_refuses_a_short_operand") else {
        return;
    };
    let g = Gemm::new(4, 4, 4, false, false);
    let a = dev.htod(&[1.0f32; 15]).unwrap();
    let b = dev.htod(&[1.0f32; 16]).unwrap();
    let mut c = dev.alloc::<f32>(16).unwrap();
    assert!(
        gemm::gemm(
            &dev,
            &g,
            c.view_mut(),
            a.view(),
            b.view(),
            None,
            Precision::F32
        )
        .is_err()
    );
}
