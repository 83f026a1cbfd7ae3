//! GEMM tests: every supported path, f32 and f64, against a naive f64 reference, on odd
//! sizes, all four transposition combinations, offsets, padded C rows, alpha/beta
//! combinations (beta = 0 over NaN), tiny blockings that cross every block edge, threads,
//! batches with broadcast operands, pre-packed B, and the errors of bad views.
//!
//! Tolerance: each element's reference is also given `Σ_p |alpha·a_ip·b_pj| + |beta·c_ij|`,
//! the magnitude its rounding error scales with. Any summation order of `k` products errs by
//! at most about `k·u` of that (u = unit roundoff), so we allow `(k + 4)·eps` times it; one
//! wrong or missing product term (a packing or edge bug) errs by about `1/k` of it, far more.

use super::*;
use crate::Philox;

/// One operand: storage (NaN outside the view, so reading padding poisons the result) and
/// the view's parameters.
struct Operand<T> {
    data: Vec<T>,
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<T: GemmScalar> Operand<T> {
    /// A random `rows × cols` operand in [-1, 1], stored transposed (column-major) or not,
    /// with `pad` elements of NaN after each stored line and `offset` NaNs in front.
    fn random(rng: &mut Philox, [rows, cols]: [usize; 2], transposed: bool, pad: usize) -> Self {
        let offset = rng.below(4) as usize;
        let (rs, cs, len) = if transposed {
            (1, rows + pad, cols * (rows + pad))
        } else {
            (cols + pad, 1, rows * (cols + pad))
        };
        let mut data = vec![T::from_f64(f64::NAN); offset + len + 2];
        for i in 0..rows {
            for j in 0..cols {
                data[offset + i * rs + j * cs] = T::from_f64(2.0 * rng.next_f64() - 1.0);
            }
        }
        Operand {
            data,
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    fn view(&self) -> MatRef<'_, T> {
        MatRef {
            data: &self.data,
            offset: self.offset,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.rs,
            col_stride: self.cs,
        }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[self.offset + i * self.rs + j * self.cs].to_f64()
    }
}

/// A C operand: row-major with `pad` sentinel elements after each row (checked untouched),
/// filled with NaN when `beta == 0` (it must not be read) and random values otherwise.
struct Output<T> {
    data: Vec<T>,
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
}

/// What padding of C holds; any change to it is a stray write.
const SENTINEL: f64 = 12345.0;

impl<T: GemmScalar> Output<T> {
    fn new(rng: &mut Philox, [rows, cols]: [usize; 2], pad: usize, nan: bool) -> Self {
        let offset = rng.below(3) as usize;
        let rs = cols + pad;
        let mut data = vec![T::from_f64(SENTINEL); offset + rows * rs + 3];
        for i in 0..rows {
            for j in 0..cols {
                let v = if nan {
                    f64::NAN
                } else {
                    2.0 * rng.next_f64() - 1.0
                };
                data[offset + i * rs + j] = T::from_f64(v);
            }
        }
        Output {
            data,
            offset,
            rows,
            cols,
            rs,
        }
    }

    fn view(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: &mut self.data,
            offset: self.offset,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.rs,
        }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[self.offset + i * self.rs + j].to_f64()
    }

    /// Every element outside the view still holds the sentinel.
    fn assert_outside_untouched(&self, what: &str) {
        for (idx, v) in self.data.iter().enumerate() {
            let rel = idx.wrapping_sub(self.offset);
            let inside =
                idx >= self.offset && rel / self.rs < self.rows && rel % self.rs < self.cols;
            if !inside {
                assert_eq!(v.to_f64(), SENTINEL, "{what}: stray write at index {idx}");
            }
        }
    }
}

fn eps<T: GemmScalar>() -> f64 {
    if size_of::<T>() == 4 {
        f64::from(f32::EPSILON)
    } else {
        f64::EPSILON
    }
}

/// `(value, error scale)` of the reference for every element of C.
fn reference<T: GemmScalar>(
    alpha: f64,
    a: &Operand<T>,
    b: &Operand<T>,
    beta: f64,
    c: &Output<T>,
) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(a.rows * b.cols);
    for i in 0..a.rows {
        for j in 0..b.cols {
            let (mut sum, mut mag) = (0.0, 0.0);
            for p in 0..a.cols {
                let t = a.at(i, p) * b.at(p, j);
                sum += t;
                mag += t.abs();
            }
            let (mut v, mut scale) = (alpha * sum, (alpha * mag).abs());
            if beta != 0.0 {
                v += beta * c.at(i, j);
                scale += (beta * c.at(i, j)).abs();
            }
            out.push((v, scale));
        }
    }
    out
}

/// Asserts `c` matches `expect` within the module's tolerance; reports the worst element.
fn assert_close<T: GemmScalar>(c: &Output<T>, expect: &[(f64, f64)], k: usize, what: &str) {
    let tol_factor = (k + 4) as f64 * eps::<T>();
    let mut worst = (0.0, 0, 0);
    for i in 0..c.rows {
        for j in 0..c.cols {
            let (v, scale) = expect[i * c.cols + j];
            let got = c.at(i, j);
            let excess = (got - v).abs() / (tol_factor * scale + f64::MIN_POSITIVE);
            assert!(
                excess <= 1.0,
                "{what}: C[{i}, {j}] = {got}, expected {v} (error {:e}, allowed {:e})",
                (got - v).abs(),
                tol_factor * scale
            );
            if excess > worst.0 {
                worst = (excess, i, j);
            }
        }
    }
    assert!(worst.0 <= 1.0, "{what}: worst {worst:?}");
    c.assert_outside_untouched(what);
}

/// The configurations under test: every supported path, each with its default blocking and
/// with a tiny blocking (so k, m and n blocks all have edges even on small inputs).
fn configs() -> Vec<(String, GemmConfig)> {
    let mut out = Vec::new();
    for path in GemmPath::ALL {
        if !path.is_supported() {
            eprintln!("skipping the {path} GEMM path: not supported by this CPU");
            continue;
        }
        let cfg = GemmConfig::for_path(path);
        out.push((format!("{path}"), cfg));
        out.push((format!("{path}/tiny-blocks"), cfg.with_blocking(5, 9, 20)));
    }
    out
}

/// One product on every configuration, checked.
#[allow(clippy::too_many_arguments)]
fn check_one<T: GemmScalar>(
    rng: &mut Philox,
    cfg: &GemmConfig,
    [m, n, k]: [usize; 3],
    [ta, tb]: [bool; 2],
    alpha: f64,
    beta: f64,
    what: &str,
) {
    let pads = [1 + rng.below(3), rng.below(3), rng.below(3)].map(|p| p as usize);
    let a = Operand::<T>::random(rng, [m, k], ta, pads[0]);
    let b = Operand::<T>::random(rng, [k, n], tb, pads[1]);
    let mut c = Output::<T>::new(rng, [m, n], pads[2], beta == 0.0);
    let expect = reference(alpha, &a, &b, beta, &c);
    gemm_with(
        cfg,
        T::from_f64(alpha),
        a.view(),
        b.view(),
        T::from_f64(beta),
        c.view(),
    )
    .unwrap();
    let what = format!("{what} {m}x{n}x{k} ta={ta} tb={tb} alpha={alpha} beta={beta}");
    assert_close(&c, &expect, k, &what);
}

fn all_paths_match_reference<T: GemmScalar>(seed: u64) {
    let mut rng = Philox::new(seed);
    let sizes = [
        [1, 1, 1],
        [7, 7, 7],
        [1, 33, 7],
        [33, 1, 65],
        [14, 32, 1],
        [15, 33, 17],
        [29, 65, 33],
        [6, 16, 8],
        [65, 17, 257],
        [50, 70, 40],
        [3, 300, 50],
        [4, 40, 300],
    ];
    let scalars = [
        (1.0, 0.0),
        (1.0, 1.0),
        (-0.5, 2.0),
        (0.75, 0.0),
        (2.0, -1.0),
    ];
    for (name, cfg) in configs() {
        for (s, &size) in sizes.iter().enumerate() {
            for t in 0..4 {
                let (alpha, beta) = scalars[(s + t) % scalars.len()];
                let trans = [t & 1 == 1, t & 2 == 2];
                check_one::<T>(&mut rng, &cfg, size, trans, alpha, beta, &name);
            }
        }
    }
}

#[test]
fn f32_all_paths_match_reference() {
    all_paths_match_reference::<f32>(1);
}

#[test]
fn f64_all_paths_match_reference() {
    all_paths_match_reference::<f64>(2);
}

#[test]
fn a_larger_product_crosses_default_blocks() {
    // k = 300 > kc = 256 and n = 300 > one panel: two k blocks, partial panels, edge rows.
    let mut rng = Philox::new(3);
    for (name, cfg) in configs() {
        check_one::<f32>(
            &mut rng,
            &cfg,
            [61, 300, 300],
            [false, true],
            1.0,
            0.5,
            &name,
        );
        // Decoder-like: few rows, B panels packed one at a time.
        let (f, t) = (false, true);
        check_one::<f32>(&mut rng, &cfg, [50, 100, 400], [f, f], 1.0, 0.0, &name);
        check_one::<f64>(&mut rng, &cfg, [50, 100, 400], [t, f], 0.5, 1.0, &name);
    }
}

#[test]
fn threads_split_rows_and_columns() {
    let mut rng = Philox::new(4);
    for (name, cfg) in configs() {
        for threads in [2, 3] {
            let cfg = cfg.with_threads(threads).with_min_flops_per_thread(1);
            let what = format!("{name} threads={threads}");
            // Many row panels: threads split rows and share the packed B block.
            check_one::<f32>(
                &mut rng,
                &cfg,
                [97, 45, 37],
                [false, false],
                1.0,
                0.0,
                &what,
            );
            check_one::<f64>(&mut rng, &cfg, [97, 45, 37], [true, true], 0.5, 1.0, &what);
            // Skinny: threads split the columns.
            check_one::<f32>(
                &mut rng,
                &cfg,
                [2, 300, 40],
                [false, false],
                1.0,
                0.5,
                &what,
            );
            check_one::<f64>(&mut rng, &cfg, [3, 700, 20], [true, false], 2.0, 0.0, &what);
            // One row panel: threads split the B panels.
            check_one::<f32>(&mut rng, &cfg, [5, 150, 37], [true, false], 1.0, 1.0, &what);
            check_one::<f64>(&mut rng, &cfg, [5, 150, 37], [false, true], 1.0, 0.0, &what);
        }
    }
}

#[test]
fn k_zero_and_alpha_zero_only_scale_c() {
    let mut rng = Philox::new(5);
    for (name, cfg) in configs() {
        // k = 0: C = beta·C.
        check_one::<f32>(&mut rng, &cfg, [7, 9, 0], [false, false], 1.0, 0.5, &name);
        check_one::<f32>(&mut rng, &cfg, [7, 9, 0], [false, false], 1.0, 0.0, &name);
        // alpha = 0 with beta = 0 over NaN: zeros, and A·B is not evaluated (A is NaN).
        let a = vec![f32::NAN; 12];
        let b = vec![1.0f32; 12];
        let mut c = vec![f32::NAN; 9];
        let (av, bv) = (MatRef::new(&a, 3, 4), MatRef::new(&b, 4, 3));
        gemm_with(&cfg, 0.0, av, bv, 0.0, MatMut::new(&mut c, 3, 3)).unwrap();
        assert!(c.iter().all(|&x| x == 0.0), "{name}: {c:?}");
    }
}

#[test]
fn batched_with_empty_inner_dimension_only_scales_c() {
    // k = 0: A and B are empty, so their (absurd) batch strides are never used.
    let x = [0.0f32; 0];
    let mut c = [2.0f32; 12];
    let (a, b) = (MatRef::new(&x, 2, 0), MatRef::new(&x, 0, 3));
    let cv = MatMut::new(&mut c, 2, 3);
    gemm_batched(2, 1.0, a, usize::MAX, b, usize::MAX, 0.5, cv, 6).unwrap();
    assert_eq!(c, [1.0; 12]);
}

#[test]
fn empty_products_touch_nothing() {
    let a = [1.0f32; 4];
    let mut c = [7.0f32; 4];
    gemm(
        1.0,
        MatRef::new(&a, 0, 4),
        MatRef::new(&a, 4, 1),
        0.0,
        MatMut::new(&mut c, 0, 1),
    )
    .unwrap();
    gemm(
        1.0,
        MatRef::new(&a, 4, 1),
        MatRef::new(&a, 1, 0),
        0.0,
        MatMut::new(&mut c, 4, 0),
    )
    .unwrap();
    assert_eq!(c, [7.0; 4]);
}

/// A batched product against the reference, item by item.
#[allow(clippy::too_many_arguments)]
fn check_batched<T: GemmScalar>(
    rng: &mut Philox,
    cfg: &GemmConfig,
    batch: usize,
    [m, n, k]: [usize; 3],
    [broadcast_a, broadcast_b]: [bool; 2],
    beta: f64,
    what: &str,
) {
    // Items are stacked in one operand along the rows; a broadcast operand has one item.
    let items = |b: bool| if b { 1 } else { batch };
    let a = Operand::<T>::random(rng, [items(broadcast_a) * m, k], false, 1);
    let b = Operand::<T>::random(rng, [items(broadcast_b) * k, n], false, 0);
    let mut c = Output::<T>::new(rng, [batch * m, n], 2, beta == 0.0);
    let item_ref = |op: &Operand<T>, i: usize, rows: usize| Operand {
        data: op.data.clone(),
        offset: op.offset + i * rows * op.rs,
        rows,
        cols: op.cols,
        rs: op.rs,
        cs: op.cs,
    };
    let mut expect = Vec::new();
    for i in 0..batch {
        let ai = item_ref(&a, if broadcast_a { 0 } else { i }, m);
        let bi = item_ref(&b, if broadcast_b { 0 } else { i }, k);
        let ci = Output {
            data: c.data.clone(),
            offset: c.offset + i * m * c.rs,
            rows: m,
            cols: n,
            rs: c.rs,
        };
        expect.extend(reference(1.0, &ai, &bi, beta, &ci));
    }
    let stride = |b: bool, rows: usize, rs: usize| if b { 0 } else { rows * rs };
    let av = MatRef {
        rows: m,
        ..a.view()
    };
    let bv = MatRef {
        rows: k,
        ..b.view()
    };
    let c_stride = m * c.rs;
    let mut cv = c.view();
    cv.rows = m;
    gemm_batched_with(
        cfg,
        batch,
        T::ONE,
        av,
        stride(broadcast_a, m, a.rs),
        bv,
        stride(broadcast_b, k, b.rs),
        T::from_f64(beta),
        cv,
        c_stride,
    )
    .unwrap();
    let what = format!("{what} batch={batch} {m}x{n}x{k} bcast=({broadcast_a},{broadcast_b})");
    assert_close(&c, &expect, k, &what);
}

#[test]
fn batched_with_broadcast_operands() {
    let mut rng = Philox::new(6);
    for (name, cfg) in configs() {
        for (threads, min_flops) in [(1, 1), (2, 1), (3, 1_000_000_000)] {
            // `min_flops` 1 makes items big enough to thread inside each product; a huge one
            // makes them small, so the batch itself is split across threads.
            let cfg = cfg
                .with_threads(threads)
                .with_min_flops_per_thread(min_flops);
            let what = format!("{name} threads={threads}");
            for bcast in [[false, false], [true, false], [false, true]] {
                check_batched::<f32>(&mut rng, &cfg, 5, [9, 20, 13], bcast, 0.0, &what);
                check_batched::<f64>(&mut rng, &cfg, 4, [16, 7, 30], bcast, 1.0, &what);
            }
        }
    }
}

#[test]
fn batched_parallel_across_items_by_default_thresholds() {
    // 80 attention-sized items: small enough to run across the batch with the default
    // threshold.
    let mut rng = Philox::new(7);
    let cfg = GemmConfig::current().with_threads(2);
    check_batched::<f32>(
        &mut rng,
        &cfg,
        80,
        [36, 36, 128],
        [false, false],
        0.0,
        "attention",
    );
}

#[test]
fn packed_b_matches_reference() {
    let mut rng = Philox::new(8);
    for (name, cfg) in configs() {
        for threads in [1, 2] {
            let cfg = cfg.with_threads(threads).with_min_flops_per_thread(1);
            for (size, tb, beta) in [
                ([50, 70, 40], false, 0.0),
                ([50, 33, 300], true, 1.0),
                ([3, 5, 7], false, 0.5),
                ([31, 1, 9], true, 0.0),
            ] {
                let [m, n, k] = size;
                let a = Operand::<f32>::random(&mut rng, [m, k], false, 0);
                let b = Operand::<f32>::random(&mut rng, [k, n], tb, 1);
                let packed = PackedB::new_with(&cfg, b.view()).unwrap();
                assert_eq!(
                    (packed.rows(), packed.cols(), packed.path()),
                    (k, n, cfg.path)
                );
                // Multiply twice: the packed panels must be reusable.
                for rep in 0..2 {
                    let mut c = Output::<f32>::new(&mut rng, [m, n], 1, beta == 0.0);
                    let expect = reference(1.0, &a, &b, beta, &c);
                    gemm_packed_with(&cfg, 1.0, a.view(), &packed, beta as f32, c.view()).unwrap();
                    let what = format!("{name} packed t={threads} {size:?} tb={tb} rep={rep}");
                    assert_close(&c, &expect, k, &what);
                }
            }
        }
    }
}

#[test]
fn shape_mismatch_names_all_shapes() {
    let x = vec![0.0f32; 64];
    let mut y = vec![0.0f32; 64];
    let err = gemm(
        1.0,
        MatRef::new(&x, 2, 3),
        MatRef::new(&x, 4, 5),
        0.0,
        MatMut::new(&mut y, 2, 5),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("[2, 3]") && err.contains("[4, 5]") && err.contains("[2, 5]"),
        "{err}"
    );
    let err = gemm(
        1.0,
        MatRef::new(&x, 2, 3),
        MatRef::new(&x, 3, 5),
        0.0,
        MatMut::new(&mut y, 3, 5),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("[3, 5]") && err.contains("gemm"), "{err}");
    let packed = PackedB::new(MatRef::new(&x, 4, 5)).unwrap();
    let err = gemm_packed(
        1.0,
        MatRef::new(&x, 2, 3),
        &packed,
        0.0,
        MatMut::new(&mut y, 2, 5),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
}

#[test]
fn out_of_bounds_views_are_errors() {
    let x = vec![1.0f32; 20];
    let mut y = vec![0.0f32; 20];
    let ok_b = MatRef::new(&x, 4, 5);
    // A reaching past its data through the offset, a stride, or an overflowing stride.
    let bad_a = [
        MatRef {
            offset: 9,
            ..MatRef::new(&x, 3, 4)
        },
        MatRef {
            row_stride: 9,
            ..MatRef::new(&x, 3, 4)
        },
        MatRef {
            col_stride: usize::MAX / 2,
            ..MatRef::new(&x, 3, 4)
        },
    ];
    for a in bad_a {
        let err = gemm(1.0, a, ok_b, 0.0, MatMut::new(&mut y, 3, 5)).unwrap_err();
        assert!(err.to_string().contains("A view out of bounds"), "{err}");
        assert!(a.check().is_err());
    }
    // C past its data, C rows overlapping, C batch items overlapping.
    let a = MatRef::new(&x, 3, 4);
    let err = gemm(
        1.0,
        a,
        ok_b,
        0.0,
        MatMut {
            offset: 6,
            ..MatMut::new(&mut y, 3, 5)
        },
    );
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("C view out of bounds")
    );
    let err = gemm(
        1.0,
        a,
        ok_b,
        0.0,
        MatMut {
            row_stride: 4,
            ..MatMut::new(&mut y, 3, 5)
        },
    );
    assert!(err.unwrap_err().to_string().contains("rows overlap"));
    let err = gemm_batched(2, 1.0, a, 0, ok_b, 0, 0.0, MatMut::new(&mut y, 3, 5), 10);
    assert!(err.unwrap_err().to_string().contains("items overlap"));
    // The last batch item of B out of bounds.
    let err = gemm_batched(
        2,
        1.0,
        a,
        0,
        ok_b,
        1,
        0.0,
        MatMut::new(&mut [0.0; 40], 3, 5),
        15,
    );
    assert!(
        err.unwrap_err()
            .to_string()
            .contains("B view out of bounds")
    );
    // Validated constructors refuse the same views.
    assert!(MatRef::from_parts(&x, 0, [5, 5], [5, 1]).is_err());
    assert!(MatRef::from_parts(&x, 0, [4, 5], [5, 1]).is_ok());
    assert!(MatMut::from_parts(&mut y, 0, [2, 5], 4).is_err());
    assert!(PackedB::new(MatRef { offset: 1, ..ok_b }).is_err());
}

#[test]
fn views_transpose_and_index() {
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let v = MatRef::new(&x, 2, 3);
    assert_eq!(v.get(1, 2), Some(5.0));
    assert_eq!(v.t().shape(), [3, 2]);
    assert_eq!(v.t().get(2, 1), Some(5.0));
    assert_eq!(v.get(2, 0), None);
}

#[test]
fn path_names_parse() {
    for p in GemmPath::ALL {
        assert_eq!(GemmPath::parse(p.name()), Some(p));
        assert_eq!(GemmPath::parse(&p.name().to_uppercase()), Some(p));
    }
    assert_eq!(GemmPath::parse("avx3"), None);
    assert!(GemmPath::Portable.is_supported());
    assert!(gemm_path().is_supported());
    assert!(num_threads() >= 1);
}
