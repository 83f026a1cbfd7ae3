//! Which micro-kernel path runs, on how many threads, with which cache-blocking sizes.
//!
//! The path is chosen once per process: `AOANET_GEMM=avx512|avx2|portable` forces one, else
//! the best the CPU supports (`is_x86_feature_detected!`). A forced path the CPU lacks, or an
//! unknown value, is reported once on stderr and replaced by the best supported path, so a
//! shared launch script never makes a run fail on an older machine. An explicit
//! [`GemmConfig::with_path`] for an unsupported path, in contrast, is an error at the call.

use std::sync::OnceLock;

use crate::cpu::parallel::num_threads;
use crate::{Error, Result};

/// A micro-kernel family of the CPU GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmPath {
    /// AVX-512F: 14×32 f32 (14×16 f64) register tiles, masked edges.
    Avx512,
    /// AVX2 + FMA: 6×16 f32 (6×8 f64) register tiles.
    Avx2,
    /// Plain Rust, any target: 4×8 tiles the compiler may vectorise.
    Portable,
}

impl GemmPath {
    /// Every path, fastest first.
    pub const ALL: [GemmPath; 3] = [GemmPath::Avx512, GemmPath::Avx2, GemmPath::Portable];

    /// The lower-case name used by `AOANET_GEMM`.
    pub fn name(self) -> &'static str {
        match self {
            GemmPath::Avx512 => "avx512",
            GemmPath::Avx2 => "avx2",
            GemmPath::Portable => "portable",
        }
    }

    /// Parses an `AOANET_GEMM` value (case-insensitive), `None` if unknown.
    pub fn parse(s: &str) -> Option<GemmPath> {
        GemmPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU can run the path (detected at run time).
    pub fn is_supported(self) -> bool {
        match self {
            GemmPath::Portable => true,
            #[cfg(target_arch = "x86_64")]
            GemmPath::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            GemmPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU supports.
    pub fn best() -> GemmPath {
        GemmPath::ALL
            .into_iter()
            .find(|p| p.is_supported())
            .unwrap_or(GemmPath::Portable)
    }
}

impl std::fmt::Display for GemmPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The path [`gemm`](super::gemm) uses: `AOANET_GEMM` if set to a supported path, else
/// [`GemmPath::best`]. Read once per process (see the module docs for bad values).
pub fn gemm_path() -> GemmPath {
    static PATH: OnceLock<GemmPath> = OnceLock::new();
    *PATH.get_or_init(|| {
        let best = GemmPath::best();
        let Ok(value) = std::env::var("AOANET_GEMM") else {
            return best;
        };
        match GemmPath::parse(&value) {
            Some(p) if p.is_supported() => p,
            Some(p) => {
                eprintln!(
                    "aoanet: AOANET_GEMM={value} but this CPU cannot run the {p} GEMM path; \
                     using {best}"
                );
                best
            }
            None => {
                eprintln!(
                    "aoanet: ignoring AOANET_GEMM={value:?} (expected avx512, avx2 or portable); \
                     using {best}"
                );
                best
            }
        }
    })
}

/// Everything that steers one GEMM call: the kernel path, the thread budget and the cache
/// blocking. [`GemmConfig::current`] is what the plain entry points use; tests and benches
/// derive variants with the `with_*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmConfig {
    /// The micro-kernel path.
    pub path: GemmPath,
    /// The most threads one call may use (small problems use fewer).
    pub threads: usize,
    /// Depth of a packed block (the shared `k` of one A block and one B block), in elements.
    pub kc: usize,
    /// Rows of A packed at once per thread (sized for the 2 MiB L2), in elements.
    pub mc: usize,
    /// Columns of B packed at once (sized for the shared L3), in elements.
    pub nc: usize,
    /// Work (in flops, `2·m·n·k`) below which an extra thread is not worth its spawn: a call
    /// uses at most `flops / min_flops_per_thread` threads.
    pub min_flops_per_thread: usize,
}

impl GemmConfig {
    /// The process-wide configuration: [`gemm_path`], [`num_threads`], default blocking.
    pub fn current() -> GemmConfig {
        GemmConfig::for_path(gemm_path()).with_threads(num_threads())
    }

    /// The default configuration of `path` on one thread. Blocking (see `driver.rs`): a B
    /// micro-panel of `kc` rows stays in the 48 KiB L1d while A micro-panels stream from an
    /// `mc × kc` block in the 2 MiB L2; B blocks of `kc × nc` live in L3.
    pub fn for_path(path: GemmPath) -> GemmConfig {
        let (kc, mc, nc) = match path {
            GemmPath::Avx512 => (384, 504, 4096),
            GemmPath::Avx2 => (384, 504, 4096),
            GemmPath::Portable => (256, 512, 4096),
        };
        GemmConfig {
            path,
            threads: 1,
            kc,
            mc,
            nc,
            // A scoped spawn and join measured 45-100 µs on this (loaded) machine; a second
            // thread saves half the time, so it pays from ~16 MFLOP (~100 µs on one core).
            min_flops_per_thread: 8_000_000,
        }
    }

    /// This configuration with another path, its default blocking, and the same threads.
    /// Fails if the CPU cannot run `path`.
    pub fn with_path(self, path: GemmPath) -> Result<GemmConfig> {
        if !path.is_supported() {
            return Err(Error::invalid(format!(
                "the {path} GEMM path is not supported by this CPU"
            )));
        }
        Ok(GemmConfig {
            min_flops_per_thread: self.min_flops_per_thread,
            ..GemmConfig::for_path(path).with_threads(self.threads)
        })
    }

    /// This configuration with at most `threads` threads (0 is treated as 1).
    pub fn with_threads(self, threads: usize) -> GemmConfig {
        GemmConfig {
            threads: threads.max(1),
            ..self
        }
    }

    /// This configuration with explicit blocking sizes (each at least 1; for tuning).
    pub fn with_blocking(self, kc: usize, mc: usize, nc: usize) -> GemmConfig {
        GemmConfig {
            kc: kc.max(1),
            mc: mc.max(1),
            nc: nc.max(1),
            ..self
        }
    }

    /// This configuration with another threading threshold (see
    /// [`GemmConfig::min_flops_per_thread`]; 1 makes even tiny products use every thread,
    /// which tests use to exercise the threaded code on small inputs).
    pub fn with_min_flops_per_thread(self, flops: usize) -> GemmConfig {
        GemmConfig {
            min_flops_per_thread: flops.max(1),
            ..self
        }
    }

    /// Checks that the path runs on this CPU and the sizes are positive.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.path.is_supported() {
            return Err(Error::invalid(format!(
                "the {} GEMM path is not supported by this CPU",
                self.path
            )));
        }
        if self.threads == 0
            || self.kc == 0
            || self.mc == 0
            || self.nc == 0
            || self.min_flops_per_thread == 0
        {
            return Err(Error::invalid(format!(
                "GEMM configuration with a zero size: {self:?}"
            )));
        }
        Ok(())
    }
}
