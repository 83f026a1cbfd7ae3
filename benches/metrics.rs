//! Metrics benchmark (`cargo bench --bench metrics`):
//! 1. 5000 images × 5 references, resampled from real COCO captions (the metric fixtures):
//!    tokenizer + BLEU-1..4 + ROUGE-L + CIDEr-D end to end (METEOR is not built in), time and
//!    peak memory; then the same file scored by pycocoevalcap 1.2
//!    (`scripts/bench_pycocoevalcap.py`, needs python3 with pycocoevalcap and Java) for the
//!    ratio. `AOANET_BENCH_METEOR=1` also times the toolkit's METEOR.
//! 2. The SCST reward: document frequencies over 113,287 synthetic training images, their file
//!    round trip, and the time per caption of scoring 50 sampled captions against the
//!    precomputed references of their 10 images.
//!
//! `AOANET_BENCH_ONLY=eval|reward` runs one part; `AOANET_BENCH_NO_TOOLKIT=1` skips Python.

use aoanet::Philox;
use aoanet::json::{self, Value};
use aoanet::metrics::input::load;
use aoanet::metrics::{
    CiderD, DfBuilder, DocumentFrequencies, Evaluator, PtbTokenizer, WordIds, reward_tokens,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;
use common::{cpu_seconds, current_rss_mb, peak_rss_mb, reset_peak_rss};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name)
}

fn read_text(name: &str) -> String {
    let bytes = std::fs::read(fixture(name)).expect("fixture");
    if name.ends_with(".gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .expect("gzip");
        s
    } else {
        String::from_utf8(bytes).expect("utf-8")
    }
}

/// Every raw COCO caption in the fixtures.
fn caption_pool() -> Vec<String> {
    let mut pool = Vec::new();
    let ann = json::parse(
        &read_text("captions_val2014_fakecap_subset_annotations.json.gz"),
        "annotations",
    )
    .unwrap();
    for a in ann.get("annotations").unwrap().as_array().unwrap() {
        pool.push(a.get("caption").unwrap().as_str().unwrap().to_string());
    }
    for f in [
        "ptb_tokenizer_fixture_val2014.jsonl.gz",
        "ptb_tokenizer_fixture_train2014.jsonl.gz",
    ] {
        for line in read_text(f).lines().filter(|l| !l.is_empty()) {
            let r = json::parse(line, f).unwrap();
            pool.push(r.get("raw").unwrap().as_str().unwrap().to_string());
        }
    }
    pool
}

/// 5000 images, 5 references each, in the combined form; half the candidates are a reference
/// with its last word dropped, half another image's caption.
fn write_dataset(pool: &[String], path: &Path) {
    let mut rng = Philox::new(7);
    let pick = |rng: &mut Philox| pool[rng.below(pool.len() as u32) as usize].clone();
    let mut items = Vec::new();
    for i in 0..5000 {
        let refs: Vec<String> = (0..5).map(|_| pick(&mut rng)).collect();
        let prediction = if rng.below(2) == 0 {
            let mut w: Vec<&str> = refs[0].split(' ').collect();
            w.pop();
            w.join(" ")
        } else {
            pick(&mut rng)
        };
        items.push(json::object([
            ("image_name", Value::from(format!("img{i}"))),
            ("captions", Value::from(refs)),
            ("prediction", Value::from(prediction)),
        ]));
    }
    std::fs::write(path, Value::Array(items).to_json()).unwrap();
}

fn bench_eval(pool: &[String], dir: &Path) {
    let data = dir.join("bench_5000x5.json");
    write_dataset(pool, &data);
    println!("== 5000 images x 5 references ({})", data.display());

    // Best of 3 end-to-end runs (load + tokenize + BLEU + ROUGE-L + CIDEr-D).
    let before = current_rss_mb();
    let reset = reset_peak_rss();
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    let mut ours = [0.0; 6];
    for _ in 0..3 {
        let c = cpu_seconds();
        let t = Instant::now();
        let (set, _) = load(&data, None).unwrap();
        let e = Evaluator::offline().evaluate(&set).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_seconds() - c);
        for (o, k) in ours
            .iter_mut()
            .zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"])
        {
            *o = e.get(k).unwrap();
        }
    }
    let cider = ours[5];
    if reset {
        println!(
            "aoanet evaluation memory: peak RSS {:.1} MB during the runs, {before:.1} MB before (caption pool and data generation)",
            peak_rss_mb()
        );
    }
    let (set, _) = load(&data, None).unwrap();
    let t = Instant::now();
    let refs: Vec<&str> = set
        .references
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let tok_refs = PtbTokenizer::new().tokenize_all(&refs);
    let tok_cands = PtbTokenizer::new().tokenize_all(&set.candidates);
    let tokenize_1thread = t.elapsed().as_secs_f64();
    assert_eq!(tok_refs.len() + tok_cands.len(), 30_000);
    println!(
        "aoanet end to end (load + tokenize + BLEU + ROUGE-L + CIDEr-D): {best:.3} s wall, {best_cpu:.2} s CPU (best of 3), CIDEr {cider:.6}"
    );
    println!("aoanet tokenizer alone, one thread, 30000 captions: {tokenize_1thread:.3} s");
    println!(
        "aoanet peak RSS of the bench process so far: {:.1} MB",
        peak_rss_mb()
    );

    if std::env::var("AOANET_BENCH_NO_TOOLKIT").is_ok_and(|v| v == "1") {
        println!("pycocoevalcap: skipped (AOANET_BENCH_NO_TOOLKIT=1)");
        return;
    }
    let has_toolkit = Command::new("python3")
        .args(["-c", "import pycocoevalcap"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_toolkit {
        println!("pycocoevalcap: skipped (python3 with pycocoevalcap==1.2 and Java needed)");
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_pycocoevalcap.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(&data);
    let meteor = std::env::var("AOANET_BENCH_METEOR").is_ok_and(|v| v == "1");
    if meteor {
        cmd.arg("--meteor");
    }
    let t = Instant::now();
    let out = cmd.output().expect("python3");
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        println!(
            "pycocoevalcap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let r = json::parse(line, "bench_pycocoevalcap.py output").unwrap();
    let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let toolkit_same = f("tokenize_s") + f("bleu_s") + f("rouge_s") + f("cider_s");
    println!(
        "pycocoevalcap: tokenize {:.2} s, BLEU {:.2} s, ROUGE-L {:.2} s, CIDEr-D {:.2} s; same metrics {:.2} s; process wall {wall:.2} s; CIDEr {:.6}",
        f("tokenize_s"),
        f("bleu_s"),
        f("rouge_s"),
        f("cider_s"),
        toolkit_same,
        f("cider")
    );
    if meteor {
        println!(
            "pycocoevalcap METEOR: start-up {:.2} s, scoring {:.2} s",
            f("meteor_startup_s"),
            f("meteor_s")
        );
    }
    println!(
        "pycocoevalcap peak RSS: python {:.0} MB, largest Java child {:.0} MB",
        f("peak_rss_mb_python"),
        f("peak_rss_mb_java_children")
    );
    println!(
        "ratio (same metrics, toolkit in-process time / aoanet end to end): {:.1}x wall; toolkit process wall / aoanet: {:.1}x; CPU time (toolkit Python + Java {:.2} s): {:.1}x",
        toolkit_same / best,
        wall / best,
        f("cpu_s"),
        f("cpu_s") / best_cpu
    );
    let bleu = r.get("bleu").and_then(Value::as_array).unwrap();
    let theirs: Vec<f64> = bleu
        .iter()
        .map(|v| v.as_f64().unwrap())
        .chain([f("rouge"), f("cider")])
        .collect();
    let unequal = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!(
        "corpus BLEU-1..4, ROUGE-L, CIDEr-D vs pycocoevalcap: {unequal} of 6 not bit-equal, worst |diff| {worst:e}"
    );
    assert!(worst <= 1e-12, "scores differ from the toolkit");
}

fn bench_reward(pool: &[String], dir: &Path) {
    println!("== SCST reward (CIDEr-D on token ids with fixed training df)");
    let mut tok = PtbTokenizer::new();
    let mut words = WordIds::new();
    words.id("<eos>"); // id 0 is EOS, as in the reference's vocabulary
    let sentences: Vec<Vec<u32>> = tok
        .tokenize_all(pool)
        .iter()
        .map(|s| words.split_whitespace(s))
        .collect();
    let mut rng = Philox::new(11);
    let pick = |rng: &mut Philox| sentences[rng.below(sentences.len() as u32) as usize].clone();
    let t = Instant::now();
    let mut b = DfBuilder::new();
    for _ in 0..113_287 {
        let refs: Vec<Vec<u32>> = (0..5)
            .map(|_| {
                let mut s = pick(&mut rng);
                s.push(0);
                s
            })
            .collect();
        b.add_image(&refs);
    }
    let df = b.finish();
    let build = t.elapsed().as_secs_f64();
    let path = dir.join("train-df.bin");
    let t = Instant::now();
    df.write(&path).unwrap();
    let write = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let df = DocumentFrequencies::read(&path).unwrap();
    let read = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "df over 113287 images x 5 refs: {} n-grams; build {build:.2} s, write {write:.2} s, read {read:.2} s, file {:.1} MB",
        df.len(),
        size as f64 / 1e6
    );
    let scorer = CiderD::new(df).unwrap();

    // Batches of 10 images x 5 references (labels truncated at 16), 5 samples per image
    // (at most 20 tokens + EOS, padded to 20).
    let batches = 400;
    let mut prep = 0.0;
    let mut score = 0.0;
    let mut sink = 0.0;
    for _ in 0..batches {
        let mut images = Vec::new();
        for _ in 0..10 {
            let labels: Vec<Vec<u32>> = (0..5)
                .map(|_| {
                    let mut s = pick(&mut rng);
                    s.truncate(16);
                    s.resize(16, 0);
                    s
                })
                .collect();
            let samples: Vec<Vec<u32>> = (0..5)
                .map(|_| {
                    let mut s = pick(&mut rng);
                    s.truncate(20);
                    s.resize(20, 0);
                    s
                })
                .collect();
            images.push((labels, samples));
        }
        let t = Instant::now();
        let prepared: Vec<_> = images
            .iter()
            .map(|(labels, _)| {
                let refs: Vec<&[u32]> = labels.iter().map(|l| reward_tokens(l)).collect();
                scorer.prepare(&refs)
            })
            .collect();
        prep += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for ((_, samples), refs) in images.iter().zip(&prepared) {
            for s in samples {
                sink += scorer.score(reward_tokens(s), refs);
            }
        }
        score += t.elapsed().as_secs_f64();
    }
    let captions = (batches * 50) as f64;
    println!(
        "reward: {:.2} us per sampled caption (50 per batch, {batches} batches); precomputing refs {:.2} us per image; mean reward {:.4}",
        score / captions * 1e6,
        prep / (batches * 10) as f64 * 1e6,
        sink / captions
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("aoanet-bench-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pool = caption_pool();
    println!("caption pool: {} real COCO captions", pool.len());
    let only = std::env::var("AOANET_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "eval" {
        bench_eval(&pool, &dir);
    }
    if only.is_empty() || only == "reward" {
        bench_reward(&pool, &dir);
    }
    println!("peak RSS of the bench process: {:.1} MB", peak_rss_mb());
    std::fs::remove_dir_all(&dir).unwrap();
}
