//! Kernel benches (GPU only; `cargo bench --features cuda --bench kernels`, and with
//! `--features cublas` our GEMM is compared with cuBLAS). Prints one line per measurement:
//!
//!   kernel NAME: T ms, G GB/s (P% of B TB/s)          memory-bound kernels
//!   gemm MxNxK KIND: T ms, F TFLOP/s (P% of 790)      products (bf16 dense peak ~790 TFLOP/s)
//!   gemm MxNxK ours/cublas KIND: R                    ratio to cuBLAS on the same shape
//!   attn NAME: fused T ms, unfused U ms (speedup S)   fused vs the unfused composition
//!
//! Method (see /work/.library/device/METHOD.md): everything compiled and warmed up first;
//! each figure is the median of 7 samples, a sample timing `reps` back-to-back calls with CUDA
//! events; inputs are random (never zeros) and, for the memory-bound kernels, several times
//! larger than the L2 cache. Peaks: 3.0 TB/s (H100, measured copy) or 4.3 TB/s (H200).
//! Without a GPU it prints why and exits 0.
//!
//! Smoke mode: `AOANET_BENCH_SMOKE=1` divides every size by 64 (head sizes and widths that a
//! kernel requires stay) to check that the bench runs from end to end; CI runs it on
//! `cuda-emu`, where the figures mean nothing (the labels keep the full sizes' names); each
//! figure is then one call.

use std::sync::Arc;

use aoanet::Result;
use aoanet::cuda::kernels::attention::{self, Attention, AttnGrads, AttnInputs};
use aoanet::cuda::kernels::gemm::{self, Gemm, Precision};
use aoanet::cuda::kernels::{adam, dropout, elementwise, layernorm, loss, lstm, softmax};
use aoanet::cuda::{CudaBuffer, CudaDevice};
use aoanet::rng::{Philox, PhiloxState};

/// Whether sizes are divided by 64 (`AOANET_BENCH_SMOKE`, see the module docs).
fn smoke() -> bool {
    std::env::var_os("AOANET_BENCH_SMOKE").is_some_and(|v| v != "0")
}

/// `full`, or `full / 64` (at least 1) in smoke mode.
fn size(full: usize) -> usize {
    if smoke() { (full / 64).max(1) } else { full }
}

fn random(dev: &Arc<CudaDevice>, n: usize, seed: u64) -> Result<CudaBuffer<f32>> {
    let mut v = vec![0f32; n];
    Philox::new(seed).fill_uniform_f32(&mut v);
    for x in &mut v {
        *x = 2.0 * *x - 1.0;
    }
    dev.htod(&v)
}

/// Median milliseconds per call of `f` (7 samples of `reps` calls, after 2 warm-up samples;
/// one call in smoke mode).
fn time(dev: &CudaDevice, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let (reps, warm, total) = if smoke() { (1, 0, 1) } else { (reps, 2, 9) };
    let mut samples = Vec::new();
    for s in 0..total {
        let ms = dev.time_ms(|| {
            for _ in 0..reps {
                f()?;
            }
            Ok(())
        })?;
        if s >= warm {
            samples.push(f64::from(ms) / reps as f64);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn mem_line(name: &str, ms: f64, bytes: f64, peak_tbs: f64) {
    let gbs = bytes / ms / 1e6;
    println!(
        "kernel {name}: {ms:.4} ms, {gbs:.0} GB/s ({:.0}% of {peak_tbs} TB/s)",
        100.0 * gbs / (peak_tbs * 1e3)
    );
}

fn memory_bound(dev: &Arc<CudaDevice>, peak: f64) -> Result<()> {
    let n = size(64 << 20); // 64 Mi floats = 256 MiB per operand
    let x = random(dev, n, 1)?;
    let mut y = random(dev, n, 2)?;
    let t = time(dev, 5, || {
        elementwise::axpy(dev, y.view_mut(), x.view(), 0.5)
    })?;
    mem_line("axpy_f32 (64Mi)", t, 3.0 * 4.0 * n as f64, peak);
    let st = PhiloxState {
        seed: 1,
        stream: 2,
        offset: 0,
    };
    let t = time(dev, 5, || {
        dropout::dropout(dev, y.view_mut(), x.view(), 0.1, st)
    })?;
    mem_line("dropout_f32 (64Mi)", t, 2.0 * 4.0 * n as f64, peak);

    let (rows, v) = (size(850), size(9488)); // 50 images x 17 steps, AoANet's vocabulary
    let logits = random(dev, rows * v, 3)?;
    let mut probs = dev.alloc::<f32>(rows * v)?;
    let t = time(dev, 20, || {
        softmax::forward(dev, probs.view_mut(), logits.view(), rows, v, true)
    })?;
    mem_line(
        "softmax_fwd_f32 log 850x9488",
        t,
        2.0 * 4.0 * (rows * v) as f64,
        peak,
    );
    let targets: Vec<i32> = (0..rows as i32).map(|r| (r * 31) % v as i32).collect();
    let td = dev.htod(&targets)?;
    let mut rl = dev.alloc::<f32>(rows)?;
    let mut lse = dev.alloc::<f32>(rows)?;
    let t = time(dev, 20, || {
        loss::forward(
            dev,
            rl.view_mut(),
            Some(lse.view_mut()),
            logits.view(),
            td.view(),
            None,
            rows,
            v,
            0.2,
        )
    })?;
    mem_line(
        "label_smooth_fwd_f32 850x9488",
        t,
        4.0 * (rows * v) as f64,
        peak,
    );
    let t = time(dev, 20, || {
        loss::backward(
            dev,
            probs.view_mut(),
            logits.view(),
            lse.view(),
            td.view(),
            None,
            None,
            rows,
            v,
            0.2,
            1.0,
        )
    })?;
    mem_line(
        "label_smooth_bwd_f32 850x9488",
        t,
        2.0 * 4.0 * (rows * v) as f64,
        peak,
    );

    let (r, d) = (size(5000), 1024usize); // 50 images x 100 regions
    let xl = random(dev, r * d, 4)?;
    let g = random(dev, d, 5)?;
    let mut yl = dev.alloc::<f32>(r * d)?;
    let mut mean = dev.alloc::<f32>(r)?;
    let mut sd = dev.alloc::<f32>(r)?;
    let t = time(dev, 20, || {
        layernorm::forward(
            dev,
            yl.view_mut(),
            Some((mean.view_mut(), sd.view_mut())),
            xl.view(),
            g.view(),
            g.view(),
            r,
            d,
            layernorm::EPS,
        )
    })?;
    mem_line(
        "layernorm_fwd_f32 5000x1024",
        t,
        2.0 * 4.0 * (r * d) as f64,
        peak,
    );

    let (b, h) = (size(250), 1024usize);
    let gx = random(dev, b * 4 * h, 6)?;
    let gh = random(dev, b * 4 * h, 7)?;
    let mut hh = dev.alloc::<f32>(b * h)?;
    let cp = random(dev, b * h, 12)?;
    let mut cc = dev.alloc::<f32>(b * h)?;
    let mut gates = dev.alloc::<f32>(b * 4 * h)?;
    let t = time(dev, 50, || {
        let inp = lstm::LstmInputs {
            gx: gx.view(),
            gh: gh.view(),
            b_ih: None,
            b_hh: None,
            c_prev: Some(cp.view()),
        };
        lstm::forward(
            dev,
            hh.view_mut(),
            cc.view_mut(),
            Some(gates.view_mut()),
            inp,
            b,
            h,
        )
    })?;
    mem_line(
        "lstm_cell_fwd_f32 250x1024",
        t,
        4.0 * (4.0 * 4.0 * (b * h) as f64 + 3.0 * (b * h) as f64),
        peak,
    );

    let np = size(60 << 20); // about AoANet's parameter count scaled up to fill the GPU
    let mut p = random(dev, np, 8)?;
    let mut m = dev.zeros::<f32>(np)?;
    let mut vv = dev.zeros::<f32>(np)?;
    let gr = random(dev, np, 9)?;
    let hs = adam::AdamStep {
        lr: 2e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t: 1,
        clip: Some(0.1),
        weight_decay: 0.0,
    };
    let t = time(dev, 5, || {
        adam::step(
            dev,
            p.view_mut(),
            m.view_mut(),
            vv.view_mut(),
            gr.view(),
            hs,
        )
    })?;
    mem_line("adam_f32 (60Mi params)", t, 7.0 * 4.0 * np as f64, peak);
    Ok(())
}

#[cfg(feature = "cublas")]
mod cublas {
    use super::*;
    use cudarc::cublas::{CudaBlas, result, sys};

    /// cuBLAS's math: plain f32 (SIMT), f32 operands on TF32 tensor cores, bf16 operands.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        F32,
        Tf32,
        Bf16,
    }

    /// Row-major `C [m, n] = A [m, k] · Wᵀ` with `W [n, k]`, as cuBLAS (column-major) sees it:
    /// `Cᵀ = W · Aᵀ`, i.e. op(W) = T, op(A) = N.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        blas: &CudaBlas,
        m: usize,
        n: usize,
        k: usize,
        c: u64,
        a: u64,
        w: u64,
        kind: Kind,
    ) -> Result<()> {
        let (one, zero) = (1.0f32, 0.0f32);
        let h = *blas.handle();
        let (tn, nn) = (
            sys::cublasOperation_t::CUBLAS_OP_T,
            sys::cublasOperation_t::CUBLAS_OP_N,
        );
        // SAFETY: the pointers are live device buffers of the stated shapes (the caller's),
        // alpha/beta point to host floats, and the handle runs on the device's stream.
        let r = unsafe {
            if kind != Kind::F32 {
                // bf16 operands, or f32 operands with TF32 tensor-core math.
                let (tin, compute) = if kind == Kind::Bf16 {
                    (
                        sys::cudaDataType::CUDA_R_16BF,
                        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    )
                } else {
                    (
                        sys::cudaDataType::CUDA_R_32F,
                        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
                    )
                };
                result::gemm_ex(
                    h,
                    tn,
                    nn,
                    n as i32,
                    m as i32,
                    k as i32,
                    (&one as *const f32).cast(),
                    w as *const _,
                    tin,
                    k as i32,
                    a as *const _,
                    tin,
                    k as i32,
                    (&zero as *const f32).cast(),
                    c as *mut _,
                    sys::cudaDataType::CUDA_R_32F,
                    n as i32,
                    compute,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            } else {
                result::sgemm(
                    h,
                    tn,
                    nn,
                    n as i32,
                    m as i32,
                    k as i32,
                    &one,
                    w as *const f32,
                    k as i32,
                    a as *const f32,
                    k as i32,
                    &zero,
                    c as *mut f32,
                    n as i32,
                )
            }
        };
        r.map_err(|e| aoanet::Error::Cuda(format!("cuBLAS: {e:?}")))
    }
}

fn gemms(dev: &Arc<CudaDevice>) -> Result<()> {
    #[cfg(feature = "cublas")]
    let blas = cudarc::cublas::CudaBlas::new(dev.stream().clone())
        .map_err(|e| aoanet::Error::Cuda(format!("cuBLAS: {e:?}")))?;
    // The model's products as x · Wᵀ (rows, out, in): refiner/att_embed, AoA, logits, LSTM.
    for (m, n, k) in [
        (1800usize, 1024usize, 2048usize),
        (1800, 2048, 2048),
        (2048, 2048, 2048),
        (250, 4096, 2048),
        (50, 4096, 3072),
        (50, 9488, 1024),
    ] {
        let (m, n, k) = (size(m), size(n), size(k));
        let a = random(dev, m * k, 10)?;
        let w = random(dev, n * k, 11)?;
        let mut c = dev.alloc::<f32>(m * n)?;
        let mut a16 = dev.alloc::<half::bf16>(m * k)?;
        let mut w16 = dev.alloc::<half::bf16>(n * k)?;
        elementwise::cast_to_bf16(dev, a16.view_mut(), a.view())?;
        elementwise::cast_to_bf16(dev, w16.view_mut(), w.view())?;
        let g = Gemm::new(m, n, k, false, true);
        println!(
            "gemm {m}x{n}x{k} plan: {:?}",
            g.plan(dev.multiprocessors()? as usize)
        );
        let flop = 2.0 * (m * n * k) as f64;
        let line = |kind: &str, ms: f64| {
            let tf = flop / ms / 1e9;
            println!(
                "gemm {m}x{n}x{k} {kind}: {ms:.4} ms, {tf:.1} TFLOP/s ({:.1}% of 790)",
                100.0 * tf / 790.0
            );
            ms
        };
        let f32_ms = line(
            "f32",
            time(dev, 3, || {
                gemm::gemm(
                    dev,
                    &g,
                    c.view_mut(),
                    a.view(),
                    w.view(),
                    None,
                    Precision::F32,
                )
            })?,
        );
        let tf32_ms = line(
            "tf32",
            time(dev, 3, || {
                gemm::gemm(
                    dev,
                    &g,
                    c.view_mut(),
                    a.view(),
                    w.view(),
                    None,
                    Precision::Tf32,
                )
            })?,
        );
        let bf16_ms = line(
            "bf16",
            time(dev, 3, || {
                gemm::gemm_bf16_tc(dev, &g, c.view_mut(), a16.view(), w16.view(), None)
            })?,
        );
        // A bf16 linear layer as the model runs it (the weight's bf16 copy cached): x rounded
        // as the kernel loads it, against a cast of x and the product of the copies (what the
        // model ran before `gemm_bf16*_fb`), and against both operands rounded on load.
        let fused_ms = line(
            "bf16 x f32 rounded on load",
            time(dev, 3, || {
                gemm::gemm_bf16_tc(dev, &g, c.view_mut(), a.view(), w16.view(), None)
            })?,
        );
        let cast_ms = line(
            "bf16 x cast then product",
            time(dev, 3, || {
                elementwise::cast_to_bf16(dev, a16.view_mut(), a.view())?;
                gemm::gemm_bf16_tc(dev, &g, c.view_mut(), a16.view(), w16.view(), None)
            })?,
        );
        let both_ms = line(
            "bf16 both f32 rounded on load",
            time(dev, 3, || {
                gemm::gemm(
                    dev,
                    &g,
                    c.view_mut(),
                    a.view(),
                    w.view(),
                    None,
                    Precision::Bf16,
                )
            })?,
        );
        println!(
            "gemm {m}x{n}x{k} bf16 rounded on load / cast first: {:.2}x faster (both operands f32: {:.2}x the bf16-copies product's time)",
            cast_ms / fused_ms,
            both_ms / bf16_ms
        );
        #[cfg(feature = "cublas")]
        {
            let (cp, ap, wp) = (c.device_ptr(), a.device_ptr(), w.device_ptr());
            use cublas::Kind;
            let cb = line(
                "cublas-f32",
                time(dev, 3, || {
                    cublas::run(&blas, m, n, k, cp, ap, wp, Kind::F32)
                })?,
            );
            let cbt = line(
                "cublas-tf32",
                time(dev, 3, || {
                    cublas::run(&blas, m, n, k, cp, ap, wp, Kind::Tf32)
                })?,
            );
            let (a16p, w16p) = (a16.device_ptr(), w16.device_ptr());
            let cb16 = line(
                "cublas-bf16",
                time(dev, 3, || {
                    cublas::run(&blas, m, n, k, cp, a16p, w16p, Kind::Bf16)
                })?,
            );
            // Speed ratios (cuBLAS time / ours): ≥ 1 means ours is faster.
            println!("gemm {m}x{n}x{k} ours/cublas f32: {:.2}", cb / f32_ms);
            println!("gemm {m}x{n}x{k} ours/cublas tf32: {:.2}", cbt / tf32_ms);
            println!("gemm {m}x{n}x{k} ours-tf32/cublas-f32: {:.2}", cb / tf32_ms);
            println!("gemm {m}x{n}x{k} ours/cublas bf16: {:.2}", cb16 / bf16_ms);
        }
        #[cfg(not(feature = "cublas"))]
        let _ = (f32_ms, tf32_ms, bf16_ms);
        // The plan's alternatives (f32), so a new GPU's numbers can retune `Gemm::plan`.
        for tile in [gemm::Tile::Small, gemm::Tile::Half, gemm::Tile::Large] {
            for splits in [1usize, 2, 3, 4, 6, 8] {
                if !k.is_multiple_of(splits) || k / splits < 256 {
                    continue;
                }
                let plan = gemm::Plan { tile, splits };
                let ms = time(dev, 3, || {
                    gemm::gemm_planned(
                        dev,
                        &g,
                        plan,
                        c.view_mut(),
                        a.view(),
                        w.view(),
                        None,
                        Precision::F32,
                    )
                })?;
                println!(
                    "gemm {m}x{n}x{k} f32 with {tile:?} x{splits}: {ms:.4} ms ({:.2}x the plan's speed)",
                    f32_ms / ms
                );
            }
        }
    }
    Ok(())
}

/// The model's products as the bf16 step runs them (activations f32 rounded on load, the
/// weight's bf16 copy): every tile and split against the plan's, so the plan can be tuned to
/// what a GPU measures. Forward `x · Wᵀ` (NT) and the input gradient `dY · W` (NN), for the
/// refiner's 360 rows (10 images × 36 regions) and the decoder's 50 rows per step.
fn bf16_plans(dev: &Arc<CudaDevice>) -> Result<()> {
    let sms = dev.multiprocessors()? as usize;
    // Linear layers (rows, out, in): each forward `x · Wᵀ` and its input gradient, whose
    // product is (rows, in, out) with W as stored; the vocabulary projection's forward alone.
    let layers = [
        (360usize, 1024usize, 1024usize),
        (360, 2048, 2048),
        (50, 1024, 1024),
        (50, 2048, 2048),
        (50, 4096, 2048),
        (50, 4096, 1024),
    ];
    let products = layers
        .iter()
        .flat_map(|&(m, out, inp)| [(m, out, inp, true), (m, inp, out, false)])
        .chain([(50, 9488, 1024, true)]);
    for (m, n, k, trans_b) in products {
        let (m, n, k) = (size(m), size(n), size(k));
        let a = random(dev, m * k, 12)?;
        let w = random(dev, n * k, 13)?;
        let mut w16 = dev.alloc::<half::bf16>(n * k)?;
        elementwise::cast_to_bf16(dev, w16.view_mut(), w.view())?;
        let mut c = dev.alloc::<f32>(m * n)?;
        let g = Gemm::new(m, n, k, false, trans_b);
        let layout = if trans_b { "NT" } else { "NN" };
        let mut run = |plan: gemm::Plan| {
            time(dev, 5, || {
                gemm::gemm_bf16_planned(dev, &g, plan, c.view_mut(), a.view(), w16.view(), None)
            })
        };
        let planned = g.plan_bf16(sms);
        let plan_ms = run(planned)?;
        let mut best = (plan_ms, planned);
        let mut line = Vec::new();
        for tile in [gemm::Tile::Small, gemm::Tile::Large] {
            for splits in [1usize, 2, 4, 8, 16, 32] {
                if !k.is_multiple_of(splits) || k / splits < 32 {
                    continue;
                }
                let plan = gemm::Plan { tile, splits };
                let ms = run(plan)?;
                if ms < best.0 {
                    best = (ms, plan);
                }
                line.push(format!("{tile:?}x{splits} {:.1}", 1e3 * ms));
            }
        }
        let bytes = (2 * n * k + 4 * m * k + 4 * m * n) as f64;
        println!(
            "gemm-bf16-fb {m}x{n}x{k} {layout}: plan {planned:?} {:.1} us ({:.0} GB/s); best {:?} {:.1} \
             us ({:.2}x); us by plan: {}",
            1e3 * plan_ms,
            bytes / plan_ms / 1e6,
            best.1,
            1e3 * best.0,
            plan_ms / best.0,
            line.join(", ")
        );
    }
    Ok(())
}

fn attn(dev: &Arc<CudaDevice>) -> Result<()> {
    // Refiner: 50 images x 64 regions, 8 heads of 128; decoder: 250 rows, 1 query vs 64 keys.
    for (name, b, nq, nk) in [
        ("refiner 50x64x64", 50usize, 64usize, 64usize),
        ("decoder 250x1x64", 250, 1, 64),
    ] {
        let b = size(b);
        let (h, dh) = (8usize, 128usize);
        let w = h * dh;
        let mut a = Attention::contiguous(b, h, nq, nk, dh);
        a.dropout = Some((
            0.1,
            PhiloxState {
                seed: 3,
                stream: 1,
                offset: 0,
            },
        ));
        let q = random(dev, b * nq * w, 20)?;
        let k = random(dev, b * nk * w, 21)?;
        let v = random(dev, b * nk * w, 22)?;
        let mask = dev.htod(&vec![1u8; b * nk])?;
        let x = AttnInputs {
            q: q.view(),
            k: k.view(),
            v: v.view(),
            mask: Some(mask.view()),
        };
        let mut out = dev.alloc::<f32>(b * nq * w)?;
        let mut lse = dev.alloc::<f32>(a.rows())?;
        let fused = time(dev, 10, || {
            attention::forward(dev, &a, out.view_mut(), Some(lse.view_mut()), x)
        })?;
        let unfused = time(dev, 10, || {
            attention::unfused_forward(dev, &a, out.view_mut(), x, Precision::F32).map(drop)
        })?;
        let unfused_tf32 = time(dev, 10, || {
            attention::unfused_forward(dev, &a, out.view_mut(), x, Precision::Tf32).map(drop)
        })?;
        println!(
            "attn {name} fwd: fused {fused:.4} ms, unfused {unfused:.4} ms (speedup {:.2}), unfused-tf32 {unfused_tf32:.4} ms",
            unfused / fused
        );
        attention::forward(dev, &a, out.view_mut(), Some(lse.view_mut()), x)?;
        let dout = random(dev, b * nq * w, 23)?;
        let mut dq = dev.alloc::<f32>(b * nq * w)?;
        let mut dk = dev.alloc::<f32>(b * nk * w)?;
        let mut dv = dev.alloc::<f32>(b * nk * w)?;
        let bwd = time(dev, 10, || {
            let g = AttnGrads {
                dq: dq.view_mut(),
                dk: dk.view_mut(),
                dv: dv.view_mut(),
            };
            attention::backward(dev, &a, g, dout.view(), out.view(), lse.view(), x)
        })?;
        println!("attn {name} bwd: fused {bwd:.4} ms");
    }
    Ok(())
}

fn main() -> Result<()> {
    if let Some(why) = aoanet::cuda::unavailable_reason() {
        println!("bench kernels skipped: no GPU ({why})");
        if std::env::var_os("AOANET_REQUIRE_GPU").is_some() {
            return Err(aoanet::Error::Cuda(format!(
                "AOANET_REQUIRE_GPU is set: {why}"
            )));
        }
        return Ok(());
    }
    let dev = CudaDevice::get(0)?;
    dev.load_all()?;
    let peak = if dev.name().contains("H200") {
        4.3
    } else {
        3.0
    };
    if smoke() {
        println!("bench kernels: smoke mode, every size / 64: the figures mean nothing");
    }
    println!(
        "bench device: {} ({}), {} SMs, bandwidth peak used {peak} TB/s",
        dev.name(),
        dev.arch(),
        dev.multiprocessors()?
    );
    memory_bound(&dev, peak)?;
    gemms(&dev)?;
    bf16_plans(&dev)?;
    attn(&dev)?;
    let s = dev.memory_stats();
    println!(
        "bench memory: peak in use {} MiB, peak reserved {} MiB",
        s.peak_in_use >> 20,
        s.peak_reserved >> 20
    );
    Ok(())
}
