//! The `aoanet` binary end to end on a tiny data folder (each test in seconds): `--help`
//! everywhere; SIGTERM and SIGINT save and exit 0 with how to resume; `kill -9` in the middle
//! of a checkpoint write leaves the previous checkpoint readable and resumable; an injected NaN
//! stops with the iteration named; a requested METEOR without data and a missing feature file
//! fail within seconds; a changed `rnn_size` on resume is refused by name; `eval`, `caption`
//! and a tiny `demo` run.

use aoanet::json;
use aoanet::train::checkpoint::Checkpoint;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

mod train_support;

const BIN: &str = env!("CARGO_BIN_EXE_aoanet");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny synthetic data folder and a config file for a tiny model.
fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let root = scratch(name);
    let data = root.join("data");
    train_support::world().save(&data).unwrap();
    let config = root.join("tiny.json");
    std::fs::write(
        &config,
        r#"{"model": {"rnn_size": 16, "input_encoding_size": 16, "num_heads": 2,
                      "refiner_layers": 1, "d_ff": 32, "max_length": 8},
            "train": {"batch_size": 4, "val_every": 1000000, "val_images": 3,
                      "preflight_images": 2, "learning_rate": 1e-3}}"#,
    )
    .unwrap();
    (root, data, config)
}

fn aoanet(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A child with stderr read line by line on a thread.
fn spawn(mut cmd: Command) -> (Child, Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits until `n` lines containing `needle` arrived; returns everything read.
fn wait_for(rx: &Receiver<String>, needle: &str, n: usize, log: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = log.iter().filter(|l| l.contains(needle)).count();
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {needle:?} line; got:\n{}", log.join("\n")));
        if line.contains(needle) {
            seen += 1;
        }
        log.push(line);
    }
}

fn finish(mut child: Child, rx: &Receiver<String>, log: &mut Vec<String>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "child did not exit:\n{}",
            log.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    log.extend(rx.try_iter());
    // The reader thread may still be draining the pipe.
    std::thread::sleep(Duration::from_millis(50));
    log.extend(rx.try_iter());
    status.code().unwrap_or(-1)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) with the pid of a child this test spawned and still owns (not reaped).
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill failed");
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["demo", "train", "eval", "caption", "eval-captions"] {
        let o = aoanet(&[sub, "--help"]).output().unwrap();
        assert!(o.status.success(), "{sub}: {}", text(&o));
        assert!(text(&o).contains("Usage: aoanet"), "{sub}: {}", text(&o));
    }
    let o = aoanet(&["train"]).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("--data"), "{}", text(&o));
}

#[test]
fn sigterm_and_sigint_save_and_exit_cleanly() {
    let (root, data, config) = setup("signals");
    for (k, sig) in [libc::SIGTERM, libc::SIGINT].into_iter().enumerate() {
        let run = root.join(format!("run{k}"));
        let (child, rx) = spawn(aoanet(&[
            "train",
            "--data",
            p(&data),
            "--out",
            p(&run),
            "--config",
            p(&config),
            "--max-iters",
            "1000000",
            "--progress-every",
            "0",
        ]));
        let mut log = Vec::new();
        wait_for(&rx, "xe iter", 5, &mut log);
        signal(&child, sig);
        let code = finish(child, &rx, &mut log);
        let all = log.join("\n");
        assert_eq!(code, 0, "{all}");
        assert!(all.contains("stop requested"), "{all}");
        assert!(all.contains("resume with: aoanet train --data"), "{all}");
        let state = Checkpoint::open(&run).unwrap().train.unwrap().state;
        assert!(state.iteration >= 5, "{}", state.iteration);
        // ... and it resumes from there.
        let o = aoanet(&[
            "train",
            "--data",
            p(&data),
            "--resume",
            p(&run),
            "--max-iters",
            &(state.iteration + 2).to_string(),
        ])
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let after = Checkpoint::open(&run).unwrap().train.unwrap().state;
        assert_eq!(after.iteration, state.iteration + 2);
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn kill_9_during_a_checkpoint_write_leaves_the_last_one_readable() {
    let (root, data, config) = setup("kill9");
    let run = root.join("run");
    let (child, rx) = spawn(aoanet(&[
        "train",
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--config",
        p(&config),
        "--max-iters",
        "100",
        "--save-every",
        "3",
        "--debug-checkpoint-pause-ms",
        "1500",
    ]));
    let mut log = Vec::new();
    // The first write (iteration 3) completes after its pause; kill during the second.
    wait_for(&rx, "checkpoint write paused", 2, &mut log);
    let mut child = child;
    child.kill().unwrap();
    let _ = child.wait();
    let tmp: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(tmp.len(), 1, "the half-written file is there: {tmp:?}");
    let state = Checkpoint::open(&run).unwrap().train.unwrap().state;
    assert_eq!(state.iteration, 3, "{}", log.join("\n"));
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--resume",
        p(&run),
        "--max-iters",
        "5",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        Checkpoint::open(&run)
            .unwrap()
            .train
            .unwrap()
            .state
            .iteration,
        5
    );
    let left = std::fs::read_dir(&run)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(left, 0, "resume removed the stale temporary");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn nan_stops_and_bad_setups_fail_within_seconds() {
    let (root, data, config) = setup("failures");
    let run = root.join("nan");
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--config",
        p(&config),
        "--max-iters",
        "20",
        "--save-every",
        "2",
        "--debug-nan-loss-at",
        "5",
    ])
    .output()
    .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("loss is NaN at iteration 5"), "{t}");
    assert!(t.contains("--resume"), "{t}");
    assert_eq!(
        Checkpoint::open(&run)
            .unwrap()
            .train
            .unwrap()
            .state
            .iteration,
        4
    );

    // METEOR named explicitly but not installed: an error before any training.
    let empty = root.join("no-meteor-here");
    let t0 = Instant::now();
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--out",
        p(&root.join("meteor")),
        "--config",
        p(&config),
        "--metrics",
        "bleu,meteor,cider",
    ])
    .env("AOANET_METEOR_DATA", "")
    .env("XDG_DATA_HOME", &empty)
    .env("HOME", &empty)
    .output()
    .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("METEOR was requested") && t.contains("meteor-data"),
        "{t}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(!root.join("meteor").join("checkpoint.safetensors").exists());

    // A data folder without its feature file.
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["captions.bin", "vocab.txt"] {
        std::fs::copy(data.join(f), broken.join(f)).unwrap();
    }
    let t0 = Instant::now();
    let o = aoanet(&["train", "--data", p(&broken), "--config", p(&config)])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("feats.bin"), "{t}");
    assert!(t0.elapsed() < Duration::from_secs(10));

    // A device that is not there, or not a device: an error naming it before any work.
    // (Without a GPU, or in a build without the `cuda` feature, cuda:7 is never usable.)
    for (device, says) in [("cuda:7", "cuda:7"), ("tpu", "unknown device")] {
        if device == "cuda:7" && aoanet::tensor::Device::Cuda(7).check_available().is_ok() {
            continue;
        }
        let out = root.join(format!("device-{device}").replace(':', "-"));
        let t0 = Instant::now();
        let o = aoanet(&[
            "train",
            "--data",
            p(&data),
            "--out",
            p(&out),
            "--config",
            p(&config),
            "--device",
            device,
        ])
        .output()
        .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(t.contains("--device") && t.contains(says), "{t}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(!out.join("checkpoint.safetensors").exists());
    }
    // A precision that is not one, or TF32 on the CPU: the same.
    for (precision, says) in [
        ("fp8", "expected f32, tf32 or bf16"),
        ("tf32", "needs a GPU"),
        ("bf16", "needs a GPU"),
    ] {
        let o = aoanet(&[
            "train",
            "--data",
            p(&data),
            "--config",
            p(&config),
            "--device",
            "cpu",
            "--precision",
            precision,
        ])
        .output()
        .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(t.contains(says), "{t}");
    }

    // Resuming with another width.
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--resume",
        p(&run),
        "--set",
        "rnn_size=32",
    ])
    .output()
    .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("rnn_size (16 vs 32)"), "{t}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn train_then_scst_then_eval_and_caption() {
    let (root, data, config) = setup("pipeline");
    let xe = root.join("xe");
    let scst = root.join("scst");
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--out",
        p(&xe),
        "--config",
        p(&config),
        "--max-iters",
        "6",
        "--val-every",
        "3",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(xe.join("checkpoint-best.safetensors").exists());
    let history = std::fs::read_to_string(xe.join("history.jsonl")).unwrap();
    assert!(history.contains("\"val\":{\"Bleu_1\""), "{history}");
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--stage",
        "scst",
        "--from",
        p(&xe),
        "--out",
        p(&scst),
        "--config",
        p(&config),
        "--max-iters",
        "9",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = Checkpoint::open(&scst).unwrap().train.unwrap();
    assert_eq!((s.state.iteration, s.options.learning_rate), (9, 1e-3));

    let scores = root.join("scores.json");
    let o = aoanet(&[
        "eval",
        "--checkpoint",
        p(&scst),
        "--data",
        p(&data),
        "--split",
        "test",
        "--beam-size",
        "2",
        "--json",
        p(&scores),
        "--report",
    ])
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("CIDEr"), "{t}");
    let j = json::read_file(&scores).unwrap();
    assert_eq!(j.get("per_image").unwrap().as_array().unwrap().len(), 4);
    let captions = json::read_file(scst.join("test-captions-beam2.json")).unwrap();
    assert_eq!(captions.as_array().unwrap().len(), 4);
    let page = std::fs::read_to_string(scst.join("test-report-beam2.html")).unwrap();
    assert!(page.contains("Image 25") && page.contains("<svg"), "{page}");

    let o = aoanet(&[
        "caption",
        "--checkpoint",
        p(&scst),
        "--data",
        p(&data),
        "--images",
        "19,20",
        "--beam-size",
        "1",
        "--attention",
    ])
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("19: ") && t.contains("20: "), "{t}");
    let o = aoanet(&[
        "caption",
        "--checkpoint",
        p(&scst),
        "--data",
        p(&data),
        "--images",
        "999",
    ])
    .output()
    .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("image 999"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(root).unwrap();
}

/// What `data-tools/pth_to_safetensors.py --infos` writes: the weights under the reference's
/// names, the vocabulary as `ix_to_word` and the reference's `opt` (here for a tiny model
/// with the reference's fixed 6 refiner layers) as JSON metadata, no training state.
#[test]
fn a_converted_reference_checkpoint_evaluates_and_starts_a_stage() {
    use aoanet::data::Dataset;
    use aoanet::io::Writer;
    use aoanet::model::{AoaConfig, AoaModel};
    use aoanet::nn::Module;
    let (root, data, config) = setup("converted");
    let d = Dataset::open(&data).unwrap();
    let mut c = AoaConfig::reference(d.vocab.len());
    for (k, v) in [
        ("rnn_size", 16),
        ("input_encoding_size", 16),
        ("num_heads", 2),
    ] {
        c.set(k, &json::Value::from(v as usize)).unwrap();
    }
    c.att_feat_size = d.features.dim();
    c.fc_feat_size = d.features.dim();
    let m = AoaModel::new(c, aoanet::tensor::DType::F32, 5).unwrap();
    let mut w = Writer::new();
    w.add_all("", &m.named_parameters(), None).unwrap();
    let vocab = json::Value::Object(
        d.vocab
            .words()
            .iter()
            .enumerate()
            .map(|(k, word)| ((k + 1).to_string(), json::Value::from(word.as_str())))
            .collect(),
    );
    w.set_metadata("vocab", vocab.to_json());
    w.set_metadata(
        "opt",
        format!(
            r#"{{"caption_model": "aoa", "rnn_size": 16, "input_encoding_size": 16,
               "num_heads": 2, "multi_head_scale": 1, "refine": 1, "refine_aoa": 1,
               "use_ff": 0, "decoder_type": "AoA", "ctx_drop": 1, "mean_feats": 1,
               "dropout_aoa": 0.3, "att_feat_size": {0}, "fc_feat_size": {0},
               "learning_rate": 2e-05, "id": "aoanet"}}"#,
            d.features.dim()
        ),
    );
    w.set_metadata("source", "model.pth");
    let file = root.join("converted.safetensors");
    w.write(&file).unwrap();
    let o = aoanet(&[
        "eval",
        "--checkpoint",
        p(&file),
        "--data",
        p(&data),
        "--split",
        "val",
        "--beam-size",
        "1",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("CIDEr"), "{}", text(&o));
    // ... and starts a stage with fresh counters (the model options come from the file).
    let out = root.join("scst");
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--stage",
        "scst",
        "--from",
        p(&file),
        "--out",
        p(&out),
        "--config",
        p(&config),
        "--max-iters",
        "2",
    ])
    .output()
    .unwrap();
    // The config file's tiny shape (1 refiner layer) contradicts the file: refused by name.
    assert!(
        !o.status.success() && text(&o).contains("refiner_layers"),
        "{}",
        text(&o)
    );
    let o = aoanet(&[
        "train",
        "--data",
        p(&data),
        "--stage",
        "scst",
        "--from",
        p(&file),
        "--out",
        p(&out),
        "--max-iters",
        "2",
        "--batch-size",
        "4",
        "--set",
        "preflight_images=2",
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = Checkpoint::open(&out).unwrap().train.unwrap().state;
    assert_eq!(s.iteration, 2);
    std::fs::remove_dir_all(root).unwrap();
}
