//! `labels` and `ngrams` on the full official COCO 2014 captions: counts checked, vocabulary
//! sizes, run time and (where `/usr/bin/time` exists) peak memory printed; goal under 10 s and
//! 2 GB each. Ignored by default: it needs the annotation files, which are not committed.
//! They are inside the PyPI package pycocoevalcap 1.2 (`pycocoevalcap/spice/spice-1.0.jar`):
//!
//! ```sh
//! pip download pycocoevalcap==1.2 --no-deps -d /tmp/pc
//! unzip -o /tmp/pc/pycocoevalcap-1.2-py3-none-any.whl 'pycocoevalcap/spice/spice-1.0.jar' -d /tmp/pc
//! unzip -o /tmp/pc/pycocoevalcap/spice/spice-1.0.jar 'coco/annotations/captions_*' -d /tmp/cocoann
//! AOANET_COCO_ANNOTATIONS=/tmp/cocoann/coco/annotations \
//!     cargo test --release -p data-tools --test data_coco_full -- --ignored --nocapture
//! ```

use aoanet::data::{Captions, Split, Vocab};
use aoanet::metrics::df::DocumentFrequencies;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn annotations() -> PathBuf {
    std::env::var_os("AOANET_COCO_ANNOTATIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/cocoann/coco/annotations"))
}

#[test]
#[ignore = "needs the COCO 2014 caption annotations (see the file's docs)"]
fn labels_on_full_coco_2014() {
    let ann = annotations();
    let (train, val) = (
        ann.join("captions_train2014.json"),
        ann.join("captions_val2014.json"),
    );
    assert!(
        train.exists(),
        "{} is missing (see this file's docs)",
        train.display()
    );
    let out = std::env::temp_dir().join(format!("aoanet-coco-full-{}", std::process::id()));
    for threshold in [5, 4] {
        let (secs, rss, stdout) = timed(&[
            "labels",
            train.to_str().unwrap(),
            val.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--threshold",
            &threshold.to_string(),
        ]);
        print!("{stdout}");
        let c = Captions::read(out.join("captions.bin")).unwrap();
        let v = Vocab::read(out.join("vocab.txt")).unwrap();
        println!(
            "labels, threshold {threshold}: vocabulary {} words, {secs:.2} s, peak {} MB",
            v.len(),
            rss.map_or("?".into(), |k| (k / 1024).to_string())
        );
        // The official 2014 sets: 82,783 train + 40,504 val images, 616,767 captions.
        assert_eq!(c.len(), 123_287);
        assert_eq!(c.num_captions(), 616_767);
        assert_eq!(
            Split::ALL.map(|s| c.split_positions(s).len()),
            [113_287, 5_000, 5_000]
        );
        assert_eq!(v.words().last().map(String::as_str), Some("UNK"));
        assert!(secs < 10.0, "labels took {secs:.1} s");
        assert!(
            rss.is_none_or(|k| k < 2 << 20),
            "labels peaked at {rss:?} KB"
        );

        let (secs, rss, stdout) = timed(&["ngrams", "--data", out.to_str().unwrap()]);
        print!("{stdout}");
        let df = DocumentFrequencies::read(out.join("train-df.bin")).unwrap();
        println!(
            "ngrams, threshold {threshold}: {} n-grams, {secs:.2} s, peak {} MB",
            df.len(),
            rss.map_or("?".into(), |k| (k / 1024).to_string())
        );
        assert_eq!(df.num_images(), 113_287);
        assert_eq!(
            df.get(&[0]),
            113_287,
            "every image has a caption ending in EOS"
        );
        assert!(secs < 10.0, "ngrams took {secs:.1} s");
        assert!(
            rss.is_none_or(|k| k < 2 << 20),
            "ngrams peaked at {rss:?} KB"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// Runs `aoanet-data args` (under `/usr/bin/time` when present): seconds, peak KB, stdout.
/// The seconds are CPU seconds (user + system) when `/usr/bin/time` reports them, since wall
/// time on a shared machine measures the neighbours; wall seconds otherwise.
fn timed(args: &[&str]) -> (f64, Option<u64>, String) {
    let bin = env!("CARGO_BIN_EXE_aoanet-data");
    let gnu_time = std::path::Path::new("/usr/bin/time").exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "MAXRSS_KB %M\nCPU_S %U %S", bin]);
        c
    } else {
        Command::new(bin)
    };
    let t = Instant::now();
    let o = cmd.args(args).output().unwrap();
    let wall = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr);
    let cpu: Option<f64> = err.lines().find_map(|l| {
        let mut v = l
            .strip_prefix("CPU_S ")?
            .split(' ')
            .map(|x| x.parse::<f64>().ok());
        Some(v.next()?? + v.next()??)
    });
    println!(
        "  {}: wall {wall:.2} s, cpu {} s",
        args[0],
        cpu.map_or("?".into(), |c| format!("{c:.2}"))
    );
    let secs = cpu.unwrap_or(wall);
    assert!(o.status.success(), "{args:?}: {err}");
    let rss = err
        .lines()
        .find_map(|l| l.strip_prefix("MAXRSS_KB "))
        .and_then(|v| v.trim().parse().ok());
    (secs, rss, String::from_utf8_lossy(&o.stdout).into_owned())
}
