//! BLEU-1..4, ROUGE-L and CIDEr-D equal to pycocoevalcap 1.2 on the fixtures, per image and for
//! the corpus, starting from the toolkit's own tokenized captions (the per-image files), so the
//! scorers are checked apart from the tokenizer. Tolerance: bit-exact is the goal (METRICS.md §6);
//! the assertion allows 1e-12, the bound, and the worst difference is printed.

mod metrics_support;

use aoanet::metrics::{WordIds, corpus_bleu, corpus_cider_d, corpus_rouge_l};
use metrics_support::*;

struct Tokenized {
    keys: Vec<String>,
    cand: Vec<String>,
    refs: Vec<Vec<String>>,
    rows: Vec<aoanet::json::Value>,
}

fn load(per_image: &str) -> Tokenized {
    let v = read_json(per_image);
    let rows = v.as_array().expect("array").to_vec();
    Tokenized {
        keys: rows
            .iter()
            .map(|r| r.get("key").expect("key").to_json())
            .collect(),
        cand: rows
            .iter()
            .map(|r| text(r, "candidate").to_string())
            .collect(),
        refs: rows.iter().map(|r| strings(r, "references")).collect(),
        rows,
    }
}

fn check_dataset(per_image: &str, dataset: &str) {
    let t = load(per_image);
    let reference = reference_dataset(dataset);
    let scores = reference.get("scores").expect("scores");
    let mut words = WordIds::new();

    // BLEU and CIDEr-D split on any whitespace; ROUGE-L on single spaces.
    let cand_ws: Vec<Vec<u32>> = t.cand.iter().map(|c| words.split_whitespace(c)).collect();
    let refs_ws: Vec<Vec<Vec<u32>>> = t
        .refs
        .iter()
        .map(|rs| rs.iter().map(|r| words.split_whitespace(r)).collect())
        .collect();
    let cand_sp: Vec<Vec<u32>> = t.cand.iter().map(|c| words.split_space(c)).collect();
    let refs_sp: Vec<Vec<Vec<u32>>> = t
        .refs
        .iter()
        .map(|rs| rs.iter().map(|r| words.split_space(r)).collect())
        .collect();

    let (totals, bleu, bleu_per) = corpus_bleu(&cand_ws, &refs_ws);
    let (rouge, rouge_per) = corpus_rouge_l(&cand_sp, &refs_sp);
    let (cider, cider_per) = corpus_cider_d(&cand_ws, &refs_ws).unwrap();

    let stats = reference.get("bleu_corpus_stats").expect("stats");
    assert_eq!(totals.testlen as f64, num(stats, "testlen"));
    assert_eq!(totals.reflen as f64, num(stats, "reflen"));
    for k in 0..4 {
        let g = stats.get("guess").unwrap().as_array().unwrap()[k]
            .as_f64()
            .unwrap();
        let c = stats.get("correct").unwrap().as_array().unwrap()[k]
            .as_f64()
            .unwrap();
        assert_eq!(totals.guess[k] as f64, g, "guess[{k}]");
        assert_eq!(totals.correct[k] as f64, c, "correct[{k}]");
    }

    let mut report = Vec::new();
    let mut corpus = Worst::default();
    for k in 0..4 {
        let key = format!("Bleu_{}", k + 1);
        corpus.check(|| key.clone(), bleu[k], num(scores, &key));
    }
    corpus.check(|| "ROUGE_L".into(), rouge, num(scores, "ROUGE_L"));
    corpus.check(|| "CIDEr".into(), cider, num(scores, "CIDEr"));
    report.push(("corpus", corpus));

    let mut per = [
        ("Bleu_1", Worst::default()),
        ("Bleu_2", Worst::default()),
        ("Bleu_3", Worst::default()),
        ("Bleu_4", Worst::default()),
        ("ROUGE_L", Worst::default()),
        ("CIDEr", Worst::default()),
    ];
    for (i, row) in t.rows.iter().enumerate() {
        let ours = [
            bleu_per[i][0],
            bleu_per[i][1],
            bleu_per[i][2],
            bleu_per[i][3],
            rouge_per[i],
            cider_per[i],
        ];
        for (j, (name, w)) in per.iter_mut().enumerate() {
            w.check(
                || format!("{} {}", t.keys[i], name),
                ours[j],
                num(row, name),
            );
        }
    }
    for (name, w) in per {
        report.push((name, w));
    }
    for (name, w) in &report {
        println!(
            "{dataset} {name}: {} of {} not bit-equal, worst |diff| {:e}{}",
            w.unequal,
            w.total,
            w.max_abs,
            w.first
                .as_ref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        );
        assert!(
            w.max_abs <= 1e-12,
            "{dataset} {name}: worst |diff| {:e}",
            w.max_abs
        );
    }
}

#[test]
fn fakecap_scores_equal_the_toolkit() {
    check_dataset(
        "per_image/fakecap.per_image.json.gz",
        "coco_val2014_fakecap",
    );
}

#[test]
fn edge_case_scores_equal_the_toolkit() {
    check_dataset(
        "per_image/edge_cases.per_image.json.gz",
        "edge_cases_synthetic",
    );
}
