//! Process-wide GEMM settings: `AOANET_GEMM` and `AOANET_NUM_THREADS` are read once per
//! process, so each case runs this test binary again as a child process with the variables
//! set, and the child checks what it sees (the `CHILD_EXPECT` protocol below).

use std::process::Command;

use aoanet::cpu::gemm::{GemmPath, MatMut, MatRef, gemm, gemm_path, num_threads};

/// In a child: `path,threads` that `gemm_path()` and `num_threads()` must report.
const CHILD_EXPECT: &str = "AOANET_GEMM_TEST_EXPECT";

/// Runs this test in a child process with `env` set; returns its stderr.
fn run_child(env: &[(&str, &str)], expect: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "environment_selects_path_and_threads",
        "--exact",
        "--nocapture",
    ]);
    cmd.env_remove("AOANET_GEMM")
        .env_remove("AOANET_NUM_THREADS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.env(CHILD_EXPECT, expect).output().expect("run child");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child with {env:?} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The child's side: the settings it sees, and a product computed with them.
fn child(expect: &str) {
    let (path, threads) = expect.split_once(',').expect("path,threads");
    assert_eq!(gemm_path().name(), path);
    assert_eq!(num_threads().to_string(), threads);
    // A product through the plain entry point, against a direct sum.
    let (m, n, k) = (37, 41, 300);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0)
        .collect();
    let mut c = vec![f32::NAN; m * n];
    gemm(
        1.0,
        MatRef::new(&a, m, k),
        MatRef::new(&b, k, n),
        0.0,
        MatMut::new(&mut c, m, n),
    )
    .unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                .sum();
            // Inputs are multiples of 1/8 with |x| < 1: every product and partial sum is exact
            // in f32, so all paths must agree with the f64 sum exactly.
            assert_eq!(f64::from(c[i * n + j]), want, "C[{i}, {j}] on {path}");
        }
    }
}

#[test]
fn environment_selects_path_and_threads() {
    if let Ok(expect) = std::env::var(CHILD_EXPECT) {
        child(&expect);
        return;
    }
    let best = GemmPath::best().name();
    let default_threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string();

    // Every supported path can be forced, and the thread count set.
    for path in GemmPath::ALL.into_iter().filter(|p| p.is_supported()) {
        let expect = format!("{},3", path.name());
        let stderr = run_child(
            &[("AOANET_GEMM", path.name()), ("AOANET_NUM_THREADS", "3")],
            &expect,
        );
        assert!(!stderr.contains("aoanet:"), "unexpected warning: {stderr}");
    }
    // Unset: the best path, all cores.
    run_child(&[], &format!("{best},{default_threads}"));
    // Unusable values: a warning naming the variable, then the defaults.
    let stderr = run_child(
        &[("AOANET_GEMM", "avx3"), ("AOANET_NUM_THREADS", "zero")],
        &format!("{best},{default_threads}"),
    );
    assert!(
        stderr.contains("AOANET_GEMM") && stderr.contains("AOANET_NUM_THREADS"),
        "{stderr}"
    );
    // A path this CPU lacks falls back with a warning (only testable where one is missing).
    if let Some(missing) = GemmPath::ALL.into_iter().find(|p| !p.is_supported()) {
        let stderr = run_child(
            &[("AOANET_GEMM", missing.name())],
            &format!("{best},{default_threads}"),
        );
        assert!(stderr.contains("cannot run"), "{stderr}");
    }
}
