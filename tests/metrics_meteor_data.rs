//! `meteor.bin` end to end on toy resources, without the real data file: building, opening,
//! the four matching stages, and the errors a bad file gives.
//!
//! The expected statistics come from the real jar run on the same toy resources:
//! ```text
//! java -jar meteor-1.5.jar - - -stdio -l en -norm -s words.txt -d syn -a para.gz
//! ```
//! with `words.txt`, `syn/english.{synsets,exceptions}` and `para.gz` holding the texts below
//! (`syn/english.relations` empty), fed the `SCORE ||| refs ||| candidate` lines of `CASES`.

use aoanet::metrics::meteor::{Meteor, MeteorData, MeteorSources, build_meteor_data};
use std::path::{Path, PathBuf};

const FUNCTION_WORDS: &str = "a\nthe\nis\non\nof\nin\n";
const PREFIXES: &str = "# comment\nMr\nNo #NUMERIC_ONLY#\n";
const SYNSETS: &str = "big\n00000001 00000002\nlarge\n00000002 00000003\nmouse\n00000020\nrodent\n00000020\nhorse\n00000030\nsteed\n00000030\n";
const EXCEPTIONS: &str = "mouse\nmice\n";
const PARAPHRASES: &str = "0.5\nis sitting on\nsits on\n0.3\nsits on\nis sitting on\n0.2\nsits on\nrests on\n0.1\nlarge dog\nbig hound\n";

/// (references, candidate, the jar's statistics).
const CASES: &[(&[&str], &str, &str)] = &[
    (
        &["a large dog"],
        "a big dog",
        "3.0 3.0 1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 3.0 3.0",
    ),
    (
        &["the cat is sitting on the mat"],
        "the cat sits on the mat",
        "6.0 7.0 3.0 4.0 2.0 2.0 2.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 1.0 1.0 2.0 1.0 6.0 7.0",
    ),
    (
        &["the dog rests on a mat"],
        "the dog sits on a mat",
        "6.0 6.0 3.0 3.0 2.0 2.0 2.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 1.0 1.0 1.0 1.0 6.0 6.0",
    ),
    (
        &["mice in a field"],
        "a rodent in the field",
        "5.0 4.0 3.0 2.0 1.0 1.0 2.0 2.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 3.0 4.0 4.0",
    ),
    (
        &["dogs running"],
        "a dog runs",
        "3.0 2.0 1.0 0.0 0.0 0.0 0.0 0.0 2.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 2.0 2.0",
    ),
    (
        &["a large dog on the grass"],
        "a big hound on grass",
        "5.0 6.0 2.0 3.0 1.0 1.0 2.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 2.0 0.0 0.0 2.0 5.0 5.0",
    ),
    (
        &["horses and a steed"],
        "a horse and horses",
        "4.0 4.0 1.0 1.0 2.0 2.0 1.0 1.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 3.0 4.0 4.0",
    ),
    (
        &["the cat"],
        "the cat",
        "2.0 2.0 1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 2.0 2.0",
    ),
    (
        &["x"],
        "",
        "0.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0",
    ),
    // No references: the toolkit's request then holds one empty reference.
    (
        &[],
        "a big dog",
        "3.0 0.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0",
    ),
    // A reference holding `|||` counts as two; the candidate's double space is collapsed.
    (
        &["a large dog ||| cat", "the cat"],
        "a big  dog",
        "3.0 3.0 1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 3.0 3.0",
    ),
    (
        &["the cat"],
        "the  cat",
        "2.0 2.0 1.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 2.0 2.0",
    ),
    (
        &["a large dog", "the cat sits on the mat"],
        "a big dog sits on the mat",
        "7.0 3.0 3.0 1.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 3.0 3.0",
    ),
];

/// A fresh folder under the system temp dir for one test.
fn temp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-meteor-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn sources() -> MeteorSources<'static> {
    MeteorSources {
        function_words: FUNCTION_WORDS,
        prefixes: PREFIXES,
        synsets: SYNSETS,
        exceptions: EXCEPTIONS,
    }
}

fn build(dir: &Path, paraphrases: &str) -> aoanet::Result<PathBuf> {
    let out = dir.join("meteor.bin");
    let mut text = paraphrases.as_bytes();
    build_meteor_data(&sources(), &mut text, Path::new("para.gz"), &out)?;
    Ok(out)
}

#[test]
fn toy_resources_give_the_jars_statistics() {
    let dir = temp_dir("toy");
    let path = build(&dir, PARAPHRASES).expect("build");
    let meteor = Meteor::open(&path).expect("open");
    for (refs, cand, want) in CASES {
        let got = meteor.score_segment(cand, refs).to_toolkit_string();
        assert_eq!(&got, want, "{cand:?} vs {refs:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_scorer_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Meteor>();
    shared::<MeteorData>();
}

#[test]
fn build_summary_counts_what_it_wrote() {
    let dir = temp_dir("summary");
    let out = dir.join("meteor.bin");
    let mut text = PARAPHRASES.as_bytes();
    let s = build_meteor_data(&sources(), &mut text, Path::new("para.gz"), &out).expect("build");
    assert_eq!(s.function_words, 6);
    assert_eq!(s.prefixes, 2);
    assert_eq!(s.synonym_words, 6);
    assert_eq!(s.irregular_forms, 1);
    assert_eq!(s.paraphrase_entries, 4);
    // is sitting on, sits on, rests on, large dog, big hound
    assert_eq!(s.phrases, 5);
    assert_eq!(s.bytes as u64, std::fs::metadata(&out).expect("out").len());
    assert!(MeteorData::open(&out).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opening `bytes` written to a file fails with a message containing `expect`.
fn open_fails(dir: &Path, name: &str, bytes: &[u8], expect: &str) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    let e = MeteorData::open(&p).expect_err(name);
    let msg = e.to_string();
    assert!(msg.contains(expect), "{name}: {msg}");
    assert!(
        msg.contains(&p.display().to_string()),
        "{name}: error must name the file: {msg}"
    );
}

#[test]
fn a_bad_file_is_a_clear_error() {
    let dir = temp_dir("bad");
    let good = std::fs::read(build(&dir, PARAPHRASES).expect("build")).expect("read");

    let missing = dir.join("nope.bin");
    let e = MeteorData::open(&missing).expect_err("missing");
    assert!(e.to_string().contains("nope.bin"), "{e}");

    open_fails(&dir, "text.bin", b"hello, not METEOR data\n", "bad magic");
    open_fails(&dir, "empty.bin", b"", "bad magic");
    open_fails(&dir, "truncated.bin", &good[..good.len() - 8], "truncated");
    let mut flipped = good.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 0x40;
    open_fails(&dir, "flipped.bin", &flipped, "checksum");
    let mut version = good.clone();
    version[8] = 99;
    open_fails(&dir, "version.bin", &version, "version 99");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_source_leaves_no_output() {
    let dir = temp_dir("badsrc");
    let out = dir.join("meteor.bin");
    // An entry cut short: two lines instead of three.
    let mut text = "0.5\nis sitting on\nsits on\n0.1\nlarge dog\n".as_bytes();
    let e = build_meteor_data(&sources(), &mut text, Path::new("para.gz"), &out)
        .expect_err("cut short");
    assert!(e.to_string().contains("para.gz"), "{e}");
    let mut bad_syn = sources();
    bad_syn.synsets = "big\n0000x001\n";
    let mut text = PARAPHRASES.as_bytes();
    let e =
        build_meteor_data(&bad_syn, &mut text, Path::new("para.gz"), &out).expect_err("bad synset");
    assert!(e.to_string().contains("english.synsets"), "{e}");
    assert!(!out.exists(), "no partial output");
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        0,
        "no temp files left"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
