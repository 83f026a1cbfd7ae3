//! NVRTC: compiling `kernels/*.cu` to a CUBIN for one GPU architecture.
//!
//! Every kernel family is embedded with `include_str!` ([`SOURCES`]) together with the shared
//! header `kernels/common.cuh`, which NVRTC receives as a named in-memory header, so line
//! numbers in the compiler log are those of the files on disk. Compilation needs only
//! `libnvrtc` (no GPU): `tests/kernels_compile.rs` compiles every file for `sm_80` and `sm_90`
//! in CI, and [`compile`] returns the compiler log even on success so that test can refuse
//! warnings.
//!
//! We ask NVRTC for a CUBIN (`--gpu-architecture=sm_XY`) rather than PTX: machine code needs no
//! JIT at load time, so a PTX version newer than the driver cannot break loading (candle#1846).

use std::ffi::{CStr, CString, c_char};

use cudarc::nvrtc::sys;

use crate::{Error, Result};

/// One embedded kernel family: `kernels/<name>.cu`.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// The family's name, the file stem (`"softmax"` for `kernels/softmax.cu`).
    pub name: &'static str,
    /// The CUDA C source.
    pub source: &'static str,
}

/// The shared header every family includes as `#include "common.cuh"`.
pub const COMMON_HEADER: &str = include_str!("../../kernels/common.cuh");

macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        /// Every kernel family, in the order of `kernels/`. `tests/kernels_compile.rs` checks
        /// this list against the directory, so a new `.cu` file cannot be forgotten here.
        pub const SOURCES: &[KernelSource] = &[
            $(KernelSource { name: $name, source: include_str!(concat!("../../kernels/", $name, ".cu")) }),*
        ];
    };
}

sources![
    "adam",
    "attention",
    "dropout",
    "elementwise",
    "embedding",
    "gemm",
    "glu",
    "layernorm",
    "loss",
    "lstm",
    "reduce",
    "sample",
    "softmax",
];

/// Looks a family up by name.
pub fn source(name: &str) -> Result<&'static KernelSource> {
    SOURCES
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::Cuda(format!("no kernel family named {name:?}")))
}

/// The result of a successful compilation.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The CUBIN image for the requested architecture.
    pub cubin: Vec<u8>,
    /// NVRTC's log (warnings); empty for a clean compile.
    pub log: String,
}

/// Whether `libnvrtc` can be loaded (it is found through `LD_LIBRARY_PATH`).
pub fn is_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names; no symbol is called.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version as (major, minor).
pub fn version() -> Result<(i32, i32)> {
    if !is_available() {
        return Err(not_found());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); both pointers are valid for writes.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::Cuda(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// The NVRTC options used for every family; `arch` is e.g. `"sm_90"`.
pub fn options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        // Line info lets compute-sanitizer and ncu point at source lines; it costs nothing at
        // run time.
        "--generate-line-info".into(),
        // Precise division and sqrt and no flush-to-zero: fast-math only after the CPU
        // comparison passes (STYLE.md 12). fmad (contraction to FMA) stays on, as in nvcc.
        "--prec-div=true".into(),
        "--prec-sqrt=true".into(),
        "--ftz=false".into(),
    ]
}

fn not_found() -> Error {
    Error::Cuda(
        "libnvrtc not found: install the wheel nvidia-cuda-nvrtc==13.0.88 and put its \
         nvidia/cu13/lib folder on LD_LIBRARY_PATH (see .ci/run), or install a CUDA 13 toolkit"
            .into(),
    )
}

/// Owns an `nvrtcProgram` and destroys it on every exit path.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: self.0 was created by nvrtcCreateProgram and is destroyed only here.
        unsafe {
            sys::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

impl Program {
    fn log(&self) -> String {
        let mut size = 0usize;
        // SAFETY: valid program handle; size is a valid out-pointer.
        if unsafe { sys::nvrtcGetProgramLogSize(self.0, &mut size) }
            .result()
            .is_err()
            || size == 0
        {
            return String::new();
        }
        let mut buf = vec![0 as c_char; size];
        // SAFETY: buf has the size NVRTC asked for.
        if unsafe { sys::nvrtcGetProgramLog(self.0, buf.as_mut_ptr()) }
            .result()
            .is_err()
        {
            return String::new();
        }
        // SAFETY: NVRTC writes a NUL-terminated string of at most `size` bytes.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .trim()
            .to_string()
    }
}

/// Compiles one family for `arch` (`"sm_80"`, `"sm_90"`, ...). The error names the file and
/// holds NVRTC's full log.
pub fn compile(src: &KernelSource, arch: &str) -> Result<Compiled> {
    compile_with(src, arch, &[])
}

/// What ptxas reports of one kernel's use of the GPU's resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelResources {
    /// The kernel (`extern "C"` name).
    pub kernel: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of local memory per thread for the stack frame (locals indexed at run time,
    /// such as a by-value parameter array read with a loop index).
    pub stack_bytes: u32,
    /// Bytes per thread of registers spilled to local memory, stored and loaded.
    pub spill_bytes: (u32, u32),
}

/// [`compile`], plus ptxas's report of every kernel's registers, stack frame and spills
/// (`--ptxas-options=-v`); the returned log holds only what NVRTC printed besides that report.
pub fn compile_with_resources(
    src: &KernelSource,
    arch: &str,
) -> Result<(Compiled, Vec<KernelResources>)> {
    let mut out = compile_with(src, arch, &["--ptxas-options=-v"])?;
    let (report, rest): (Vec<&str>, Vec<&str>) =
        out.log.lines().partition(|l| l.starts_with("ptxas"));
    let resources = parse_ptxas_report(&report).map_err(|e| {
        Error::Cuda(format!(
            "kernels/{}.cu for {arch}: unreadable ptxas report ({e}):\n{}",
            src.name,
            report.join("\n")
        ))
    })?;
    out.log = rest.join("\n").trim().to_string();
    Ok((out, resources))
}

/// The kernels of a `ptxas -v` report: "Compiling entry function 'k'", then "N bytes stack
/// frame, N bytes spill stores, N bytes spill loads" and "Used N registers".
fn parse_ptxas_report(lines: &[&str]) -> std::result::Result<Vec<KernelResources>, String> {
    // The number just before `unit` in `line` ("... 24 bytes stack frame" -> 24).
    fn number_before(line: &str, unit: &str) -> Option<u32> {
        let head = &line[..line.find(unit)?];
        head.split_whitespace().last()?.parse().ok()
    }
    let mut found: Vec<KernelResources> = Vec::new();
    for line in lines {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or_default().to_string();
            found.push(KernelResources {
                kernel,
                registers: 0,
                stack_bytes: 0,
                spill_bytes: (0, 0),
            });
            continue;
        }
        let Some(k) = found.last_mut() else { continue };
        if line.contains("stack frame") {
            k.stack_bytes = number_before(line, "bytes stack frame").ok_or(*line)?;
            k.spill_bytes = (
                number_before(line, "bytes spill stores").ok_or(*line)?,
                number_before(line, "bytes spill loads").ok_or(*line)?,
            );
        } else if line.contains("registers") {
            k.registers = number_before(line, "registers").ok_or(*line)?;
        }
    }
    if found.is_empty() {
        return Err("no entry function".into());
    }
    Ok(found)
}

/// [`compile`] with `extra` options after [`options`].
fn compile_with(src: &KernelSource, arch: &str, extra: &[&str]) -> Result<Compiled> {
    if !is_available() {
        return Err(not_found());
    }
    let file = format!("kernels/{}.cu", src.name);
    let cstr = |s: &str, what: &str| {
        CString::new(s).map_err(|_| Error::Cuda(format!("{file}: {what} contains a NUL byte")))
    };
    let source = cstr(src.source, "source")?;
    let name = cstr(&file, "name")?;
    let header = cstr(COMMON_HEADER, "kernels/common.cuh")?;
    let header_name = cstr("common.cuh", "header name")?;
    let headers = [header.as_ptr()];
    let header_names = [header_name.as_ptr()];

    let mut raw = std::ptr::null_mut();
    // SAFETY: every pointer refers to a NUL-terminated string alive until the program is
    // destroyed (they outlive `prog` below); the header arrays have length 1 as declared.
    unsafe {
        sys::nvrtcCreateProgram(
            &mut raw,
            source.as_ptr(),
            name.as_ptr(),
            1,
            headers.as_ptr(),
            header_names.as_ptr(),
        )
    }
    .result()
    .map_err(|e| Error::Cuda(format!("{file}: nvrtcCreateProgram: {e:?}")))?;
    let prog = Program(raw);

    let mut opts = options(arch);
    opts.extend(extra.iter().map(|o| o.to_string()));
    let copts: Vec<CString> = opts
        .iter()
        .map(|o| cstr(o, "option"))
        .collect::<Result<_>>()?;
    let ptrs: Vec<*const c_char> = copts.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: valid program; `ptrs` holds `ptrs.len()` valid C strings kept alive by `copts`.
    let status = unsafe { sys::nvrtcCompileProgram(prog.0, ptrs.len() as i32, ptrs.as_ptr()) };
    let log = prog.log();
    if let Err(e) = status.result() {
        return Err(Error::Cuda(format!(
            "{file}: NVRTC failed for {arch} ({e:?}) with options {opts:?}:\n{log}"
        )));
    }

    let mut size = 0usize;
    // SAFETY: valid, compiled program; size is a valid out-pointer.
    unsafe { sys::nvrtcGetCUBINSize(prog.0, &mut size) }
        .result()
        .map_err(|e| Error::Cuda(format!("{file}: nvrtcGetCUBINSize: {e:?}")))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: cubin has exactly the size NVRTC reported.
    unsafe { sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| Error::Cuda(format!("{file}: nvrtcGetCUBIN: {e:?}")))?;
    Ok(Compiled { cubin, log })
}

/// The environment variable naming a folder where compiled CUBINs are kept between processes
/// (unset: no disk cache). `scripts/gpu-check run` sets it, so the ~20 test and bench processes
/// compile each family once instead of once each.
pub const CUBIN_CACHE_ENV: &str = "AOANET_CUBIN_CACHE";

/// FNV-1a over the bytes of `parts`, each followed by a separator (a stable 64-bit key:
/// std's hasher is not guaranteed to be stable between builds).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// [`compile`]'s CUBIN, read from the folder in `$AOANET_CUBIN_CACHE` when a previous process
/// compiled the same source, header, options and NVRTC version for `arch`, and written there
/// otherwise (atomically: a temporary file renamed). Any cache problem falls back to compiling;
/// a failed compile is an error as from [`compile`].
pub fn compile_cached(src: &KernelSource, arch: &str) -> Result<Vec<u8>> {
    let Some(dir) = std::env::var_os(CUBIN_CACHE_ENV).map(std::path::PathBuf::from) else {
        return Ok(compile(src, arch)?.cubin);
    };
    let (major, minor) = version().unwrap_or((0, 0));
    let opts = options(arch).join(" ");
    let key = fnv1a(&[
        src.source.as_bytes(),
        COMMON_HEADER.as_bytes(),
        opts.as_bytes(),
        format!("{major}.{minor}").as_bytes(),
    ]);
    let path = dir.join(format!("{}-{arch}-{key:016x}.cubin", src.name));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() > 64
    {
        return Ok(bytes);
    }
    let cubin = compile(src, arch)?.cubin;
    let tmp = dir.join(format!(".{}-{}.tmp", src.name, std::process::id()));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&tmp, &cubin))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(cubin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_keys_differ_by_content_and_separation() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[b"x"]), fnv1a(&[b"x"]));
    }

    /// Every launch wrapper's kernel is an unmangled symbol of its family's CUBIN (a kernel
    /// without `extern "C"` would compile, and fail only when a GPU looks it up by name).
    #[test]
    fn every_wrapped_kernel_is_a_symbol_of_its_cubin() {
        if !is_available() {
            eprintln!("skipped: libnvrtc not found");
            return;
        }
        let mut missing = Vec::new();
        for src in SOURCES {
            let cubin = compile(src, "sm_80").unwrap().cubin;
            for sig in crate::cuda::signatures()
                .iter()
                .filter(|s| s.family == src.name)
            {
                // ELF string tables hold NUL-terminated names.
                let needle: Vec<u8> = [&[0u8][..], sig.name.as_bytes(), &[0u8][..]].concat();
                if !cubin.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    missing.push(format!("{}: {}", src.name, sig.name));
                }
            }
        }
        assert!(missing.is_empty(), "not in the CUBIN: {missing:?}");
    }

    #[test]
    fn the_disk_cache_returns_what_it_compiled() {
        if !is_available() {
            eprintln!("skipped: libnvrtc not found");
            return;
        }
        let dir = std::env::temp_dir().join(format!("aoanet-cubin-test-{}", std::process::id()));
        let src = source("glu").unwrap();
        let direct = compile(src, "sm_80").unwrap().cubin;
        // SAFETY: no other test reads or writes AOANET_CUBIN_CACHE.
        unsafe { std::env::set_var(CUBIN_CACHE_ENV, &dir) };
        let first = compile_cached(src, "sm_80").unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        let second = compile_cached(src, "sm_80").unwrap();
        // SAFETY: as above.
        unsafe { std::env::remove_var(CUBIN_CACHE_ENV) };
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(files.len(), 1, "one cached file, no temporary left");
        assert_eq!(first, direct);
        assert_eq!(second, direct);
    }

    #[test]
    fn ptxas_reports_are_read_per_kernel() {
        let report = [
            "ptxas info    : 0 bytes gmem",
            "ptxas info    : Compiling entry function 'a_f32' for 'sm_90'",
            "ptxas info    : Function properties for a_f32",
            "ptxas         .     128 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads",
            "ptxas info    : Used 32 registers, used 1 barriers, 10240 bytes smem",
            "ptxas info    : Compile time = 36.536 ms",
            "ptxas info    : Compiling entry function 'b' for 'sm_90'",
            "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
            "ptxas info    : Used 255 registers, used 0 barriers",
        ];
        let k = parse_ptxas_report(&report).unwrap();
        assert_eq!(
            k,
            vec![
                KernelResources {
                    kernel: "a_f32".into(),
                    registers: 32,
                    stack_bytes: 128,
                    spill_bytes: (8, 4),
                },
                KernelResources {
                    kernel: "b".into(),
                    registers: 255,
                    stack_bytes: 0,
                    spill_bytes: (0, 0),
                },
            ]
        );
        assert!(parse_ptxas_report(&["ptxas info    : 0 bytes gmem"]).is_err());
        let bad = [
            "ptxas info    : Compiling entry function 'c' for 'sm_90'",
            "ptxas . x bytes stack frame",
        ];
        assert!(
            parse_ptxas_report(&bad)
                .unwrap_err()
                .contains("stack frame")
        );
    }
}
