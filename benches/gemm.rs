//! GEMM throughput against this machine's measured fp32 peak.
//!
//! `cargo bench --bench gemm` prints, for each shape (M, N, K) and thread count T,
//!
//! ```text
//! gemm MxNxK t=T: G GFLOP/s (P% of peak X)
//! ```
//!
//! where G is the best of several timed runs (the median follows on a `#` line), and X is the
//! fp32 peak of T threads measured by the FMA-throughput probe below, in the same run. Extra
//! lines time the layouts the model really uses (`gemm_nt`: B transposed, as in `x·Wᵀ`;
//! `gemm_tn`: A transposed, as in a weight gradient `dYᵀ·X`; `gemm_packed`: a pre-packed B)
//! and compare against the portable kernel as a baseline.
//!
//! Arguments: words that filter the lines run (e.g. `cargo bench --bench gemm -- 50x t=2`);
//! `--quick` runs fewer repetitions; `--no-peak` skips the probe (percentages become NaN); `--huge`
//! backs the operands with transparent huge pages. `GEMM_BENCH_BLOCKING=kc,mc,nc` overrides the blocking
//! (for tuning). Other processes on the machine (compiles) depress the numbers: the load
//! average is printed first, and the best-of-N figure is the least affected.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aoanet::Philox;
use aoanet::cpu::gemm::{
    GemmConfig, GemmPath, MatMut, MatRef, PackedB, gemm_batched_with, gemm_packed_with, gemm_path,
    gemm_with,
};

/// The forward, decoder and weight-gradient shapes (M, N, K) of the issue.
const SHAPES: [[usize; 3]; 8] = [
    [1800, 1024, 2048],
    [1800, 2048, 2048],
    [2048, 2048, 2048],
    [500, 2048, 2048],
    [50, 4096, 3072],
    [50, 9488, 1024],
    [1024, 2048, 360],
    [4096, 3072, 50],
];

struct Options {
    filters: Vec<String>,
    quick: bool,
    no_peak: bool,
    huge: bool,
}

/// Operand storage: a plain `Vec` (4 KiB pages), or with `--huge` an anonymous map advised to
/// use transparent huge pages (what a tensor allocator could do for large buffers).
enum Buffer {
    Vec(Vec<f32>),
    Map(memmap2::MmapMut),
}

impl Buffer {
    fn new(len: usize, huge: bool) -> Buffer {
        if huge {
            let map = memmap2::MmapMut::map_anon(len.max(1) * 4).expect("anonymous map");
            #[cfg(target_os = "linux")]
            map.advise(memmap2::Advice::HugePage).expect("madvise");
            Buffer::Map(map)
        } else {
            Buffer::Vec(vec![0.0; len])
        }
    }

    fn slice(&mut self) -> &mut [f32] {
        match self {
            Buffer::Vec(v) => v,
            Buffer::Map(m) => {
                let len = m.len() / 4;
                &mut bytemuck::cast_slice_mut(&mut m[..])[..len]
            }
        }
    }
}

impl Options {
    fn wants(&self, label: &str) -> bool {
        self.filters.iter().all(|f| label.contains(f.as_str()))
    }
}

fn main() {
    let mut opts = Options {
        filters: Vec::new(),
        quick: false,
        no_peak: false,
        huge: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--no-peak" => opts.no_peak = true,
            "--huge" => opts.huge = true,
            "--bench" => {}
            a if a.starts_with("--") => {}
            a => opts.filters.push(a.to_string()),
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# load average at start: {}", load.trim());
    let path = gemm_path();
    let mut base = GemmConfig::current();
    if let Ok(b) = std::env::var("GEMM_BENCH_BLOCKING") {
        let v: Vec<usize> = b.split(',').filter_map(|s| s.trim().parse().ok()).collect();
        if let [kc, mc, nc] = v[..] {
            base = base.with_blocking(kc, mc, nc);
        }
    }
    println!(
        "# path {path}, blocking kc={} mc={} nc={}",
        base.kc, base.mc, base.nc
    );

    let peaks = [1, 2].map(|t| {
        if opts.no_peak {
            return (t, f64::NAN);
        }
        let (wall, cpu) = fp32_peak(t);
        println!(
            "peak fp32 t={t}: {wall:.1} GFLOP/s (FMA probe, {path}; per CPU-second x t: {cpu:.1})"
        );
        (t, wall)
    });
    let peak_of = |t: usize| peaks.iter().find(|p| p.0 == t).map_or(f64::NAN, |p| p.1);

    for [m, n, k] in SHAPES {
        for t in [1, 2] {
            let label = format!("gemm {m}x{n}x{k} t={t}");
            if opts.wants(&label) {
                let cfg = base.with_threads(t);
                let r = time_gemm(&cfg, [m, n, k], Layout::Nn, &opts);
                report(&label, r, peak_of(t));
            }
        }
    }

    // The layouts the model uses, with two threads.
    let extra: [(&str, [usize; 3], Layout); 6] = [
        ("gemm_nt", [1800, 2048, 2048], Layout::Nt),
        ("gemm_tn", [1024, 2048, 360], Layout::Tn),
        ("gemm_tn", [4096, 3072, 50], Layout::Tn),
        ("gemm_packed", [50, 4096, 3072], Layout::Packed),
        ("gemm_packed", [50, 9488, 1024], Layout::Packed),
        ("gemm_nt", [50, 9488, 1024], Layout::Nt),
    ];
    for (name, [m, n, k], layout) in extra {
        for t in [1, 2] {
            let label = format!("{name} {m}x{n}x{k} t={t}");
            if opts.wants(&label) {
                let cfg = base.with_threads(t);
                let r = time_gemm(&cfg, [m, n, k], layout, &opts);
                report(&label, r, peak_of(t));
            }
        }
    }

    // Attention-sized batches: 80 heads·images of scores Q·Kᵀ ([36×128]·[128×36], K read
    // transposed) and of the weighted sum P·V ([36×36]·[36×128]).
    for (name, [m, n, k], bt) in [
        ("gemm_batched 80x", [36, 36, 128], true),
        ("gemm_batched 80x", [36, 128, 36], false),
    ] {
        for t in [1, 2] {
            let label = format!("{name}{m}x{n}x{k}{} t={t}", if bt { " (B^T)" } else { "" });
            if opts.wants(&label) {
                let r = time_batched(&base.with_threads(t), 80, [m, n, k], bt, &opts);
                report(&label, r, peak_of(t));
            }
        }
    }

    // Baseline: the portable kernel (same packing, blocking and threads) on a mid shape.
    let shape = [500, 2048, 2048];
    let label = format!(
        "baseline portable {}x{}x{} t=2",
        shape[0], shape[1], shape[2]
    );
    if opts.wants(&label) {
        let fast_cfg = base.with_threads(2);
        let slow_cfg = GemmConfig::for_path(GemmPath::Portable).with_threads(2);
        let quick = Options {
            filters: Vec::new(),
            quick: true,
            no_peak: true,
            huge: opts.huge,
        };
        let slow = time_gemm(&slow_cfg, shape, Layout::Nn, &quick).best;
        let fast = time_gemm(&fast_cfg, shape, Layout::Nn, &opts).best;
        println!(
            "{label}: {slow:.1} GFLOP/s; {path}: {fast:.1} GFLOP/s = {:.1}x the baseline",
            fast / slow
        );
    }
}

fn report(label: &str, r: Timing, peak: f64) {
    println!(
        "{label}: {:.1} GFLOP/s ({:.1}% of peak {peak:.1})",
        r.best,
        100.0 * r.best / peak
    );
    println!(
        "#   median {:.1} GFLOP/s over {} runs; best per CPU-second x t: {:.1} GFLOP/s",
        r.median, r.runs, r.cpu
    );
}

/// GFLOP/s of one shape: best and median wall-clock runs, and the best run's flops per
/// second of process CPU time times the thread count (what the threads reach while they
/// actually run, which discounts time stolen by other processes).
#[derive(Clone, Copy)]
struct Timing {
    best: f64,
    median: f64,
    runs: usize,
    cpu: f64,
}

/// CPU time of this process (all its threads, finished ones included), in seconds.
fn process_cpu_time() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    /// `CLOCK_PROCESS_CPUTIME_ID` on Linux.
    const CLOCK_PROCESS_CPUTIME: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `clock_gettime` (libc, linked by std) writes one `struct timespec`, whose
    // layout on 64-bit Linux is two `i64`s, into the valid pointer we pass.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

#[derive(Clone, Copy)]
enum Layout {
    /// A and B row-major.
    Nn,
    /// B stored transposed (a Linear weight `W` used as `Wᵀ`).
    Nt,
    /// A stored transposed (a weight gradient `dYᵀ·X`).
    Tn,
    /// B packed once ahead of the timed calls.
    Packed,
}

/// Times `run` (after a warm-up run) and converts to GFLOP/s for `macs` multiply-adds.
fn time_runs(
    run: impl Fn(&mut [f32]),
    c: &mut [f32],
    macs: f64,
    threads: usize,
    opts: &Options,
) -> Timing {
    run(c); // warm-up: page faults, pooled buffers, caches
    let (min_reps, max_reps, min_time) = if opts.quick {
        (3, 10, Duration::from_millis(150))
    } else {
        (7, 60, Duration::from_millis(700))
    };
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || (start.elapsed() < min_time && times.len() < max_reps) {
        let (t0, c0) = (Instant::now(), process_cpu_time());
        run(black_box(&mut *c));
        times.push(t0.elapsed().as_secs_f64());
        cpu_times.push(process_cpu_time() - c0);
    }
    black_box(&*c);
    times.sort_by(f64::total_cmp);
    cpu_times.sort_by(f64::total_cmp);
    let gflop = 2.0 * macs / 1e9;
    Timing {
        best: gflop / times[0],
        median: gflop / times[times.len() / 2],
        runs: times.len(),
        cpu: gflop / (cpu_times[0] / threads as f64),
    }
}

/// Times one shape in one layout.
fn time_gemm(cfg: &GemmConfig, [m, n, k]: [usize; 3], layout: Layout, opts: &Options) -> Timing {
    let mut rng = Philox::new(42);
    let (mut a, mut b, mut c) = (
        Buffer::new(m * k, opts.huge),
        Buffer::new(k * n, opts.huge),
        Buffer::new(m * n, opts.huge),
    );
    let (a, b, c) = (a.slice(), b.slice(), c.slice());
    rng.fill_uniform_f32(a);
    rng.fill_uniform_f32(b);
    let (a, b) = (&*a, &*b);
    let av = match layout {
        Layout::Tn => MatRef::new(a, k, m).t(),
        _ => MatRef::new(a, m, k),
    };
    let bv = match layout {
        Layout::Nt => MatRef::new(b, n, k).t(),
        _ => MatRef::new(b, k, n),
    };
    let packed = match layout {
        Layout::Packed => Some(PackedB::new_with(cfg, bv).expect("pack B")),
        _ => None,
    };
    let run = |c: &mut [f32]| {
        let cv = MatMut::new(c, m, n);
        match &packed {
            Some(p) => gemm_packed_with(cfg, 1.0, av, p, 0.0, cv),
            None => gemm_with(cfg, 1.0, av, bv, 0.0, cv),
        }
        .expect("gemm");
    };
    time_runs(run, c, (m * n * k) as f64, cfg.threads, opts)
}

/// Times `batch` independent products of one shape (B stored transposed when `bt`).
fn time_batched(
    cfg: &GemmConfig,
    batch: usize,
    [m, n, k]: [usize; 3],
    bt: bool,
    opts: &Options,
) -> Timing {
    let mut rng = Philox::new(7);
    let mut a = vec![0.0f32; batch * m * k];
    let mut b = vec![0.0f32; batch * k * n];
    rng.fill_uniform_f32(&mut a);
    rng.fill_uniform_f32(&mut b);
    let mut c = vec![0.0f32; batch * m * n];
    let av = MatRef::new(&a, m, k);
    let bv = if bt {
        MatRef::new(&b, n, k).t()
    } else {
        MatRef::new(&b, k, n)
    };
    let run = |c: &mut [f32]| {
        let cv = MatMut::new(c, m, n);
        gemm_batched_with(cfg, batch, 1.0, av, m * k, bv, k * n, 0.0, cv, m * n).expect("gemm");
    };
    time_runs(run, &mut c, (batch * m * n * k) as f64, cfg.threads, opts)
}

// -------------------------------------------------------------------------------------------
// FMA-throughput probe
// -------------------------------------------------------------------------------------------

/// Best fp32 GFLOP/s of `threads` threads running independent FMA chains concurrently
/// (wall clock), and the same per CPU-second times `threads`.
fn fp32_peak(threads: usize) -> (f64, f64) {
    let iters = 20_000_000u64;
    let mut best = 0.0f64;
    let mut best_cpu = 0.0f64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let cpu0 = process_cpu_time();
        let flops: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || fma_probe(iters)))
                .collect();
            handles.into_iter().map(|h| h.join().expect("probe")).sum()
        });
        best = best.max(flops / t0.elapsed().as_secs_f64() / 1e9);
        let cpu = process_cpu_time() - cpu0;
        best_cpu = best_cpu.max(flops / (cpu / threads as f64) / 1e9);
    }
    (best, best_cpu)
}

/// Runs `iters` rounds of independent FMAs on the widest supported vectors; returns flops.
fn fma_probe(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected on this CPU.
            return unsafe { probe_avx512(iters) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            return unsafe { probe_avx2(iters) };
        }
    }
    probe_scalar(iters)
}

/// 24 independent zmm FMA chains: enough to cover 4-cycle latency on two FMA ports.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn probe_avx512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let x = _mm512_set1_ps(black_box(0.999_999));
    let y = _mm512_set1_ps(black_box(1e-7));
    let mut acc = [_mm512_set1_ps(black_box(1.0)); 24];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    black_box(&acc);
    (iters * 24 * 32) as f64
}

/// 12 independent ymm FMA chains.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn probe_avx2(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1e-7));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    black_box(&acc);
    (iters * 12 * 16) as f64
}

/// Scalar fallback for other targets: 8 independent chains.
fn probe_scalar(iters: u64) -> f64 {
    let (x, y) = (black_box(0.999_999f32), black_box(1e-7f32));
    let mut acc = [black_box(1.0f32); 8];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(x, y);
        }
    }
    black_box(&acc);
    (iters * 8 * 2) as f64
}
