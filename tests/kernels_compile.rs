//! Every `kernels/*.cu` compiles with NVRTC for sm_80 and sm_90 with an empty log (no errors,
//! no warnings). Needs only libnvrtc, no GPU: CI installs the pinned wheel
//! `nvidia-cuda-nvrtc==13.0.88` and points `LD_LIBRARY_PATH` at it (.ci/run).
//!
//! Without libnvrtc these tests FAIL (with instructions) rather than skip, so that CI can never
//! silently compile no kernel (dfdx#781). Set `AOANET_NVRTC_OPTIONAL=1` to skip instead.
#![cfg(feature = "cuda")]

use aoanet::cuda::nvrtc;

const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

fn nvrtc_present() -> bool {
    if nvrtc::is_available() {
        return true;
    }
    if std::env::var_os("AOANET_NVRTC_OPTIONAL").is_some() {
        eprintln!("skipped: libnvrtc not found and AOANET_NVRTC_OPTIONAL is set");
        return false;
    }
    panic!(
        "libnvrtc not found. Install it with `pip install --target .ci/cache/nvrtc \
         nvidia-cuda-nvrtc==13.0.88` and run with \
         LD_LIBRARY_PATH=$PWD/.ci/cache/nvrtc/nvidia/cu13/lib (as .ci/run does)"
    );
}

fn compile_family(name: &str) {
    if !nvrtc_present() {
        return;
    }
    let src = nvrtc::source(name).unwrap();
    for arch in ARCHS {
        let (out, kernels) =
            nvrtc::compile_with_resources(src, arch).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.log.is_empty(),
            "kernels/{name}.cu for {arch}: NVRTC printed:\n{}",
            out.log
        );
        assert!(
            out.cubin.len() > 64,
            "kernels/{name}.cu for {arch}: empty CUBIN"
        );
        // No kernel touches local memory: a spill or a stack frame (a by-value table indexed
        // with a loop variable gave sum_many 128 bytes of one) is a slow path nobody meant.
        let local: Vec<String> = kernels
            .iter()
            .filter(|k| k.stack_bytes > 0 || k.spill_bytes != (0, 0))
            .map(|k| format!("{k:?}"))
            .collect();
        assert!(
            local.is_empty(),
            "kernels/{name}.cu for {arch}: kernels using local memory:\n{}",
            local.join("\n")
        );
        assert!(
            kernels.iter().all(|k| k.registers > 0),
            "kernels/{name}.cu for {arch}: a kernel without a register count: {kernels:?}"
        );
    }
}

/// One test per file, named after it, so a failure names the family.
macro_rules! per_file {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { compile_family(stringify!($name)); } )*

        /// The list above, `nvrtc::SOURCES` and the files in kernels/ are the same set.
        #[test]
        fn every_cu_file_is_embedded_and_tested() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels");
            let mut on_disk: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| {
                    let p = e.unwrap().path();
                    (p.extension()? == "cu").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
                })
                .collect();
            on_disk.sort();
            let mut embedded: Vec<String> = nvrtc::SOURCES.iter().map(|s| s.name.to_string()).collect();
            embedded.sort();
            let mut tested: Vec<String> = vec![$(stringify!($name).to_string()),*];
            tested.sort();
            assert_eq!(on_disk, embedded, "kernels/*.cu vs nvrtc::SOURCES");
            assert_eq!(on_disk, tested, "kernels/*.cu vs the tests in this file");
        }
    };
}

per_file!(
    adam,
    attention,
    dropout,
    elementwise,
    embedding,
    gemm,
    glu,
    layernorm,
    loss,
    lstm,
    reduce,
    sample,
    softmax,
);

#[test]
fn a_syntax_error_reports_the_file_and_the_log() {
    if !nvrtc_present() {
        return;
    }
    let bad = nvrtc::KernelSource {
        name: "broken",
        source: "#include \"common.cuh\"\nextern \"C\" __global__ void k(float* x) { x[0] = y; }\n",
    };
    let e = nvrtc::compile(&bad, "sm_90").unwrap_err().to_string();
    assert!(e.contains("kernels/broken.cu"), "{e}");
    assert!(e.contains("identifier \"y\" is undefined"), "{e}");
}

#[test]
fn warnings_are_reported_in_the_log() {
    if !nvrtc_present() {
        return;
    }
    // An unused variable gives a warning: the log the per-file tests require to be empty
    // really does carry warnings.
    let warn = nvrtc::KernelSource {
        name: "warns",
        source: "extern \"C\" __global__ void k(float* x) { int unused = 1; x[0] = 0.f; }\n",
    };
    let out = nvrtc::compile(&warn, "sm_80").unwrap();
    assert!(out.log.contains("warning"), "log: {:?}", out.log);
}
