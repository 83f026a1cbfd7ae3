//! No kernel is a stub that merely compiles: every `__global__` function in `kernels/*.cu`
//!   1. has a launch wrapper in `src/cuda/` whose declared parameter types equal the kernel's,
//!      parameter by parameter (STYLE.md 11: `cudarc` arguments are untyped, `int` vs `i64`
//!      is a silent bug), and
//!   2. is named by a test function in a `tests/cuda_*.rs` file (`fn <kernel>_...`), which
//!      compares it with a CPU reference on a GPU.
//!
//! Runs without a GPU and without NVRTC: it parses the sources.
#![cfg(feature = "cuda")]

use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Removes `//` and `/* */` comments.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `const float* __restrict__ x` -> `const float*`.
fn normalise_param(p: &str) -> String {
    let p = p.replace("__restrict__", " ");
    let p = p.trim();
    let name_start = p
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let ty = p[..name_start].replace('*', " * ");
    let ty = ty.split_whitespace().collect::<Vec<_>>().join(" ");
    ty.replace(" *", "*")
}

/// Every `__global__` function of every `kernels/*.cu`: name -> (file, parameter types).
fn parse_kernels() -> BTreeMap<String, (String, Vec<String>)> {
    let mut found = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(Path::new(ROOT).join("kernels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no kernels/*.cu found");
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let src = strip_comments(&std::fs::read_to_string(&path).unwrap());
        let mut rest = src.as_str();
        while let Some(i) = rest.find("__global__") {
            rest = &rest[i + "__global__".len()..];
            let open = rest.find('(').unwrap();
            let mut head = rest[..open].trim().to_string();
            let mut after = &rest[open..];
            if head.ends_with("__launch_bounds__") {
                // skip the bounds' parentheses, then read the name
                let close = after.find(')').unwrap();
                after = &after[close + 1..];
                let open2 = after.find('(').unwrap();
                head = after[..open2].trim().to_string();
                after = &after[open2..];
            }
            let name = head.split_whitespace().last().unwrap().to_string();
            let close = after.find(')').unwrap();
            let params: Vec<String> = after[1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "void")
                .map(normalise_param)
                .collect();
            assert!(
                found.insert(name.clone(), (file.clone(), params)).is_none(),
                "kernel {name} defined twice"
            );
            rest = &after[close..];
        }
    }
    found
}

#[test]
fn parser_normalises_parameters() {
    assert_eq!(
        normalise_param("const float* __restrict__ x"),
        "const float*"
    );
    assert_eq!(normalise_param("float *y"), "float*");
    assert_eq!(normalise_param(" i64 n"), "i64");
    assert_eq!(normalise_param("Bcast bc"), "Bcast");
    assert_eq!(strip_comments("a // b\nc /* d */ e"), "a \nc  e");
}

#[test]
fn every_kernel_has_a_wrapper_with_its_exact_signature() {
    let kernels = parse_kernels();
    let wrappers: BTreeMap<&str, aoanet::cuda::KernelSig> = aoanet::cuda::signatures()
        .into_iter()
        .map(|s| (s.name, s))
        .collect();
    let mut problems = Vec::new();
    for (name, (file, params)) in &kernels {
        match wrappers.get(name.as_str()) {
            None => problems.push(format!("{file}: {name} has no launch wrapper in src/cuda/")),
            Some(sig) => {
                if format!("{}.cu", sig.family) != *file {
                    problems.push(format!(
                        "{name}: wrapper says family {}, kernel is in {file}",
                        sig.family
                    ));
                }
                if sig.params != params.as_slice() {
                    problems.push(format!(
                        "{file}: {name} declares ({}) but its wrapper passes ({})",
                        params.join(", "),
                        sig.params.join(", ")
                    ));
                }
            }
        }
    }
    for name in wrappers.keys() {
        if !kernels.contains_key(*name) {
            problems.push(format!(
                "wrapper {name} has no __global__ function in kernels/"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_kernel_is_named_in_src_cuda_and_by_a_cuda_test() {
    let kernels = parse_kernels();
    let read_dir = |dir: &Path, pred: &dyn Fn(&str) -> bool| -> String {
        let mut all = String::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if pred(&p.file_name().unwrap().to_string_lossy()) {
                    all.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        all
    };
    let src = read_dir(&Path::new(ROOT).join("src/cuda"), &|n| n.ends_with(".rs"));
    let tests = read_dir(&Path::new(ROOT).join("tests"), &|n| {
        n.starts_with("cuda_") && n.ends_with(".rs")
    });
    // Test function names: `fn <ident>(`.
    let test_fns: Vec<&str> = tests
        .split("fn ")
        .skip(1)
        .filter_map(|s| s.split('(').next())
        .map(str::trim)
        .collect();
    let mut problems = Vec::new();
    for (name, (file, _)) in &kernels {
        if !src.contains(name.as_str()) {
            problems.push(format!("{file}: {name} is not named anywhere in src/cuda/"));
        }
        if !test_fns.iter().any(|f| f.starts_with(name.as_str())) {
            problems.push(format!(
                "{file}: {name} has no test `fn {name}_...` in tests/cuda_*.rs"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
