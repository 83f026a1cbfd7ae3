//! The PTB tokenizer + punctuation filter equal to coco-caption's on every fixture row: the 45
//! hand-made probes and 20,185 real COCO captions (every caption with a character outside
//! `[A-Za-z ,.]` plus 3000 plain ones).
//!
//! The Java lexer sees all captions as one text, and a few rules look past the line end (`S.`
//! before a line starting "A " splits into `S` + `.`; a final `:-)` is a smiley only when
//! something follows). The fixture does not record which caption followed each row when the
//! reference ran, so each row is tokenized twice, alone (end of input follows) and followed by
//! "A man" (the most common start of a COCO caption), and must equal the reference in one of
//! the two; rows where the two differ are printed.

mod metrics_support;

use aoanet::metrics::PtbTokenizer;
use metrics_support::*;

fn report(name: &str, mismatches: &[(String, String, String)], total: usize) {
    println!("{name}: {} of {total} rows differ", mismatches.len());
    for (raw, ours, reference) in mismatches.iter().take(40) {
        println!("  raw {raw:?}\n    ours      {ours:?}\n    reference {reference:?}");
    }
}

#[test]
fn probes_equal_the_reference() {
    let mut t = PtbTokenizer::new();
    let rows = read_json("ptb_tokenizer_probes.json");
    let rows = rows.as_array().expect("array");
    let mut bad = Vec::new();
    for r in rows {
        let (raw, expected) = (text(r, "raw"), text(r, "tokenized"));
        let ours = t.tokenize(raw);
        if ours != expected {
            bad.push((raw.to_string(), ours, expected.to_string()));
        }
    }
    report("probes", &bad, rows.len());
    assert!(bad.is_empty());
}

fn check_jsonl(name: &str) {
    let mut t = PtbTokenizer::new();
    let data = read_text(name);
    let mut bad = Vec::new();
    let mut total = 0;
    let mut context_dependent = 0;
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let r = aoanet::json::parse(line, name).unwrap();
        let (raw, expected) = (text(&r, "raw"), text(&r, "ptb"));
        total += 1;
        let alone = t.tokenize(raw);
        let before_a = t.tokenize_all(&[raw, "A man"]).swap_remove(0);
        if alone != before_a {
            context_dependent += 1;
            let which = if alone == expected {
                "alone"
            } else {
                "before \"A man\""
            };
            println!("  depends on the next caption: {raw:?} (reference equals ours {which})");
        }
        if alone != expected && before_a != expected {
            bad.push((raw.to_string(), alone, expected.to_string()));
        }
    }
    report(name, &bad, total);
    println!("{name}: {context_dependent} rows depend on the next caption");
    assert!(total > 8000, "{name}: only {total} rows");
    assert!(
        context_dependent < 20,
        "{context_dependent} context-dependent rows"
    );
    assert!(bad.is_empty());
}

#[test]
fn coco_val2014_rows_equal_the_reference() {
    check_jsonl("ptb_tokenizer_fixture_val2014.jsonl.gz");
}

#[test]
fn coco_train2014_rows_equal_the_reference() {
    check_jsonl("ptb_tokenizer_fixture_train2014.jsonl.gz");
}
