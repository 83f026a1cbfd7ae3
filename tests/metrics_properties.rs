//! Properties of the scores on random inputs: a candidate equal to a reference scores BLEU 1
//! (up to the toolkit's 1e-9/1e-15 constants) and ROUGE-L exactly 1; no score is ever NaN;
//! empty and punctuation-only candidates score exactly as the toolkit scores them: 0 for every
//! metric (its edge cases `edge_02_empty` and `edge_03_punct_only`), except ROUGE-L, which is 1
//! when a reference is empty too (`"".split(" ")` is `[""]` on both sides).

use aoanet::Philox;
use aoanet::metrics::{EvalSet, Evaluator, ImageKey, KEYS};

const WORDS: &[&str] = &[
    "a", "man", "dog", "riding", "on", "the", "beach", "two", "cats", "sleep", "red", "bus", "of",
    "with", "is", "are", "kitchen", "table", "pizza", "grass", "field", "white", "plate", "near",
];
const PUNCT: &[&str] = &[
    ".", ",", "!", "?", "...", "--", ";", ":", "'", "\"", "-", "``",
];

fn sentence(rng: &mut Philox, max_len: u32) -> String {
    let n = rng.below(max_len + 1);
    let mut words: Vec<&str> = (0..n)
        .map(|_| WORDS[rng.below(WORDS.len() as u32) as usize])
        .collect();
    if rng.below(2) == 0 {
        words.push(".");
    }
    let mut s = words.join(" ");
    if rng.below(4) == 0 && !s.is_empty() {
        s[..1].make_ascii_uppercase();
    }
    s
}

fn random_set(seed: u64, images: usize) -> EvalSet {
    let mut rng = Philox::new(seed);
    let mut set = EvalSet::default();
    for i in 0..images {
        let refs: Vec<String> = (0..1 + rng.below(6))
            .map(|_| sentence(&mut rng, 14))
            .collect();
        let cand = match rng.below(6) {
            0 => refs[rng.below(refs.len() as u32) as usize].clone(),
            1 => String::new(),
            2 => PUNCT[rng.below(PUNCT.len() as u32) as usize].repeat(1 + rng.below(3) as usize),
            3 => WORDS[rng.below(WORDS.len() as u32) as usize].to_string(),
            _ => sentence(&mut rng, 20),
        };
        set.keys.push(ImageKey::Id(i as i64));
        set.candidates.push(cand);
        set.references.push(refs);
    }
    set
}

#[test]
fn no_score_is_nan_and_all_are_in_range() {
    for seed in 0..20 {
        let set = random_set(seed, 60);
        let e = Evaluator::offline().evaluate(&set).unwrap();
        for key in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"] {
            let c = e.get(key).unwrap();
            assert!(c.is_finite() && c >= 0.0, "seed {seed} corpus {key} = {c}");
            for i in 0..set.len() {
                let s = e.image(i, key).unwrap();
                assert!(
                    s.is_finite() && s >= 0.0,
                    "seed {seed} image {i} {key} = {s}"
                );
                if key != "CIDEr" {
                    assert!(s <= 1.0, "seed {seed} image {i} {key} = {s}");
                }
            }
        }
    }
}

#[test]
fn candidate_equal_to_a_reference_scores_one() {
    let mut checked = 0;
    for seed in 100..110 {
        let set = random_set(seed, 60);
        let e = Evaluator::offline().evaluate(&set).unwrap();
        for i in 0..set.len() {
            let cand = &e.tokenized_candidates[i];
            let words = cand.split(' ').count();
            if cand.is_empty() || !e.tokenized_references[i].contains(cand) {
                continue;
            }
            checked += 1;
            assert_eq!(e.image(i, "ROUGE_L"), Some(1.0), "image {i}: {cand:?}");
            // BLEU-n needs n words to be defined as 1; shorter candidates score by the constants.
            for (n, key) in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"].iter().enumerate() {
                if words > n {
                    let b = e.image(i, key).unwrap();
                    assert!((1.0 - b).abs() < 1e-8 && b <= 1.0, "image {i} {key} = {b}");
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} candidates equal to a reference"
    );
}

#[test]
fn empty_and_punctuation_only_candidates_score_zero() {
    let mut checked = 0;
    for seed in 200..210 {
        let set = random_set(seed, 60);
        let e = Evaluator::offline().evaluate(&set).unwrap();
        for i in 0..set.len() {
            if !e.tokenized_candidates[i].is_empty() {
                continue;
            }
            checked += 1;
            let empty_ref = e.tokenized_references[i].iter().any(String::is_empty);
            for key in KEYS {
                if let Some(s) = e.image(i, key) {
                    let expected = if key == "ROUGE_L" && empty_ref {
                        1.0
                    } else {
                        0.0
                    };
                    assert_eq!(s, expected, "image {i} ({:?}) {key}", set.candidates[i]);
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} empty candidates");
}
