//! Differential test of the PTB tokenizer against the Java original: random captions built from
//! tricky pieces (abbreviations, clitics, quotes, URLs, numbers, smileys, brackets, entities,
//! non-ASCII) are tokenized by CoreNLP 3.4.1's `PTBTokenizer -preserveLines -lowerCase` and by
//! ours, as one stream each, and every line must agree.
//!
//! Needs Java and the jar from the pycocoevalcap wheel, so it is `#[ignore]`d; run it with
//! `AOANET_PTB_JAR=.../pycocoevalcap/tokenizer/stanford-corenlp-3.4.1.jar cargo test --release
//! --test metrics_tokenizer_java -- --ignored --nocapture` (`AOANET_PTB_FUZZ_N` captions,
//! default 20000; `AOANET_PTB_FUZZ_SEED`, default 1).
//! Line breaks other than `\n` are left out of the captions: there the Java tool shifts lines
//! (METRICS.md §1) and ours deliberately does not.

use aoanet::Philox;
use aoanet::metrics::PtbTokenizer;
use aoanet::metrics::numeric::py_rstrip;
use aoanet::metrics::tokenizer::PUNCTUATIONS;
use std::process::Command;

#[rustfmt::skip]
const PIECES: &[&str] = &[
    "a", "A", "man", "The", "dog", "St.", "Ave.", "S.", "U.S.", "u.s.a.", "etc.", "Mr.", "Dr.",
    "vs.", "No.", "no.", "fig.", "Jan.", "Inc.", "Co.", "pty.", "ltd", "I.", "p.m.", "a.m.",
    "it's", "don't", "can't", "won't", "cannot", "gonna", "wanna", "y'all", "'em", "'90s", "'tis",
    "'twas", "o'clock", "rock'n'roll", "isn't", "they'd've", "he'll", "d'ya", "O'Neil", "''", "``",
    "\"", "'", "`", "\"quoted\"", "'single'", "(", ")", "[", "]", "{", "}", "<", ">", "<b>",
    "</b>", "<a href=\"x\">", "&amp;", "&quot;", "&apos;", "&lt;", "&gt;", "&nbsp;", "&eacute;",
    "AT&T", "S&P-500", "$", "$5.50", "US$", "#1", "#tag", "@user", "e-mail@x.org", "100%", "3/4",
    "1/2", "23 3/4", "1,000", "3.14", "-5", "+7", "12/25/2014", "555-1234", "(555) 123-4567",
    "+1 650 123 4567", "1:00pm", "10x10", "2x4", "4-by-4", "http://x.com/a?b=c", "https://a.b/c.",
    "www.example.com", "example.org", "file.txt", "a.b.c", "hat.a", "w/", "c++", "C#", ":)", ":-)",
    ";)", ":(", ":D", "=)", "^_^", "(-_-)", "...", "....", ". . .", "--", "---", "-", "_", "__",
    "***", "*", "!!", "?!", "?", "!", ",", ";", ":", ".", "=", "/", "\\", "|", "~", "+",
    "close-up", "t-shirt", "hi-fi", "x-ray", "pro-", "anti-", "-LRB-", "C.D.s", "Cap'n",
    "\u{e9}t\u{e9}", "caf\u{e9}", "na\u{ef}ve", "\u{bd}", "\u{bc}", "\u{a2}", "\u{a3}", "\u{20ac}",
    "\u{2013}", "\u{2014}", "\u{2018}x\u{2019}", "\u{201c}x\u{201d}", "\u{ab}x\u{bb}", "\u{2026}",
    "\u{a0}", "\u{ad}", "soft\u{ad}hyphen", "\u{200b}", "\u{1F600}", "\u{4e2d}\u{6587}",
    "\u{3002}", "\u{85}", "\u{7f}", "\u{0}", "\u{b2}", "\u{2075}", "x\u{301}",
    "\u{3b1}\u{3b2}\u{3a3}", "\u{130}", "COLOUR", "Ph.D.", "e.g.", "i.e.", "a.k.a.", "TREAS.",
    "Calif.", "Mass.", "Wash.", "Sept.", "tel.", "ca.", "prop.", "op.", "nos.", "Ste.", "Mt.",
    "Ft.", "Messrs.", "Sgt.",
];

const SEPARATORS: &[&str] = &[
    " ", " ", " ", " ", "", "  ", "\t", ", ", ". ", "\u{a0}", "-", ".",
];

fn caption(rng: &mut Philox) -> String {
    let n = 1 + rng.below(10) as usize;
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(SEPARATORS[rng.below(SEPARATORS.len() as u32) as usize]);
        }
        s.push_str(PIECES[rng.below(PIECES.len() as u32) as usize]);
    }
    if rng.below(3) == 0 {
        s.push_str([".", "!", "?", " .", "..", ":-)", " S."][rng.below(7) as usize]);
    }
    s
}

/// `ptbtokenizer.py`'s filter of one Java output line.
fn filter(line: &str) -> String {
    py_rstrip(line)
        .split(' ')
        .filter(|w| !PUNCTUATIONS.contains(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the Java tokenizer on `captions` (one stream) and compares with ours line by line;
/// returns the number of differing lines, printing the first few.
fn compare_with_java(jar: &str, tag: &str, captions: &[String]) -> usize {
    let dir = std::env::temp_dir().join(format!("aoanet-ptb-java-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("captions.txt");
    std::fs::write(&input, captions.join("\n")).unwrap();
    let out = Command::new("java")
        .args(["-cp", jar, "edu.stanford.nlp.process.PTBTokenizer"])
        .args(["-preserveLines", "-lowerCase"])
        .arg(&input)
        .output()
        .expect("run java");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "java failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let java = String::from_utf8(out.stdout).expect("utf-8");
    let java_lines: Vec<String> = java.split('\n').map(filter).collect();
    let ours = PtbTokenizer::new().tokenize_all(captions);
    let mut bad = 0;
    for (i, c) in captions.iter().enumerate() {
        let j = java_lines.get(i).map_or("<missing>", String::as_str);
        if ours[i] != j {
            bad += 1;
            if bad <= 30 {
                println!("line {i}: {c:?}\n  ours {:?}\n  java {j:?}", ours[i]);
            }
        }
    }
    println!(
        "{bad} of {} lines differ; java printed {} lines",
        captions.len(),
        java_lines.len()
    );
    bad
}

fn jar() -> Option<String> {
    let jar = std::env::var("AOANET_PTB_JAR").ok();
    if jar.is_none() {
        println!("skipped: set AOANET_PTB_JAR to stanford-corenlp-3.4.1.jar");
    }
    jar
}

/// Every BMP character (but surrogates and line breaks) alone, between letters and between
/// digits: checks the letter/digit/upper-case tables and every single-character rule.
#[test]
#[ignore = "needs Java and stanford-corenlp-3.4.1.jar (AOANET_PTB_JAR)"]
fn every_bmp_character_equals_the_java_tokenizer() {
    let Some(jar) = jar() else { return };
    let mut captions = Vec::new();
    for u in 0u32..=0xFFFF {
        let Some(c) = char::from_u32(u) else { continue };
        if matches!(c, '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{2028}' | '\u{2029}') {
            continue;
        }
        captions.push(format!("{c}"));
        captions.push(format!("a{c}a"));
        captions.push(format!("1{c}1 A{c}."));
    }
    assert_eq!(compare_with_java(&jar, "bmp", &captions), 0);
}

#[test]
#[ignore = "needs Java and stanford-corenlp-3.4.1.jar (AOANET_PTB_JAR)"]
fn random_captions_equal_the_java_tokenizer() {
    let Some(jar) = jar() else { return };
    let n: usize = std::env::var("AOANET_PTB_FUZZ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("AOANET_PTB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut rng = Philox::new(seed);
    let captions: Vec<String> = (0..n).map(|_| caption(&mut rng)).collect();
    println!("seed {seed}");
    assert_eq!(compare_with_java(&jar, "random", &captions), 0);
}
