//! `labels` (and, with the metrics' document frequencies, `ngrams`) on the full official COCO
//! 2014 captions. Ignored by default: it needs the annotation files, which are not committed.
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
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_aoanet-data"))
            .args([
                "labels",
                train.to_str().unwrap(),
                val.to_str().unwrap(),
                "--out",
            ])
            .arg(&out)
            .args(["--threshold", &threshold.to_string()])
            .output()
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        print!("{}", String::from_utf8_lossy(&o.stdout));
        let c = Captions::read(out.join("captions.bin")).unwrap();
        let v = Vocab::read(out.join("vocab.txt")).unwrap();
        println!(
            "threshold {threshold}: vocabulary {} words, {secs:.2} s",
            v.len()
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
    }
    std::fs::remove_dir_all(&out).unwrap();
}
