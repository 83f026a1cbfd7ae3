//! What several benches share: named sections picked from the command line, the repetition
//! count, this process's CPU time and memory, and a model that never ends a caption.
//!
//! Each bench includes it with `mod common;`; not every bench uses every item.
#![allow(dead_code)]

use aoanet::model::AoaModel;

/// One named workload over the bench's shared state `S`.
pub struct Section<S> {
    /// Its name: the command line picks sections by prefix.
    pub name: &'static str,
    /// The workload.
    pub run: fn(&mut S),
}

/// Runs the sections that the command line names (by prefix; all when none is named).
/// `cargo bench` passes `--bench`, which is not a name.
pub fn run_sections<S>(sections: &[Section<S>], shared: &mut S) {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for s in sections {
        if wanted.is_empty() || wanted.iter().any(|w| s.name.starts_with(w.as_str())) {
            (s.run)(shared);
        }
    }
}

/// Timed repetitions after the warm-up: `AOANET_BENCH_REPS` when positive, else `default`.
pub fn reps(default: usize) -> usize {
    std::env::var("AOANET_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// This process's CPU time so far, every thread included, user + system (Linux
/// `/proc/self/stat` utime + stime at the usual 100 ticks per second; NaN elsewhere).
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start at `) `.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// A `/proc/self/status` memory line (`VmHWM`, `VmRSS`) in MB; NaN where unavailable.
fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The process's peak resident set size in MB (since the last [`reset_peak_rss`]).
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM")
}

/// The process's resident set size now, in MB.
pub fn current_rss_mb() -> f64 {
    status_mb("VmRSS")
}

/// Resets the kernel's peak-RSS mark (Linux: `5` to `/proc/self/clear_refs`), so the next
/// [`peak_rss_mb`] measures from now on; false where unsupported.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Makes EOS (word 0) impossible by setting its output bias to −10⁴, so decoding runs all its
/// steps: the worst case, and the only repeatable one with random weights (which may choose
/// EOS at once).
pub fn forbid_eos(m: &AoaModel) {
    m.logit
        .bias
        .with_data_mut::<f32, _>(|b| b[0] = -1e4)
        .unwrap();
}

/// "N recorded ops (K kinds): name count, …" for the graph behind `loss` (the most frequent
/// `top` first): what one backward runs, op by op (`autograd::op_census`).
#[allow(dead_code)]
pub fn census_line(loss: &aoanet::tensor::Tensor, top: usize) -> String {
    let census = aoanet::autograd::op_census(loss);
    let total: usize = census.values().sum();
    let mut by_count: Vec<(&str, usize)> = census.iter().map(|(&k, &n)| (k, n)).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = by_count
        .iter()
        .take(top)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "{total} recorded ops ({} kinds): {}",
        census.len(),
        listed.join(", ")
    )
}
