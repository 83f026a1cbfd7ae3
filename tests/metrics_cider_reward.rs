//! The SCST CIDEr-D reward on token indices with fixed training-set document frequencies,
//! against pycocoevalcap's CiderScorer run with the same frequencies
//! (`scripts/make_cider_reward_fixture.py`, AOANET.md §3.3).

mod metrics_support;

use aoanet::json::Value;
use aoanet::metrics::{CiderD, DfBuilder, DocumentFrequencies, reward_tokens};
use metrics_support::*;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn fixture_df(fx: &Value) -> DocumentFrequencies {
    let mut b = DfBuilder::new();
    for image in fx.get("train_refs").unwrap().as_array().unwrap() {
        let refs: Vec<Vec<u32>> = image.as_array().unwrap().iter().map(ids).collect();
        b.add_image(&refs);
    }
    b.finish()
}

#[test]
fn document_frequencies_equal_the_reference_counting() {
    let fx = read_json("cider_reward_fixture.json");
    let df = fixture_df(&fx);
    assert_eq!(df.num_images() as f64, num(&fx, "num_train_images"));
    let expected: Vec<(Vec<u32>, u32)> = fx
        .get("df")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (ids(e.get("ngram").unwrap()), num(e, "count") as u32))
        .collect();
    let mut ours = df.sorted_entries();
    ours.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(ours, expected_sorted);
}

#[test]
fn reward_equals_the_reference_bit_for_bit() {
    let fx = read_json("cider_reward_fixture.json");
    // Through the file format, as training loads it.
    let dir = std::env::temp_dir().join(format!("aoanet-reward-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("train-df.bin");
    fixture_df(&fx).write(&path).unwrap();
    let scorer = CiderD::new(DocumentFrequencies::read(&path).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let mut worst = Worst::default();
    let mut nonzero = 0;
    for (i, img) in fx
        .get("batch")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let labels: Vec<Vec<u32>> = img
            .get("refs")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        let refs: Vec<&[u32]> = labels.iter().map(|r| reward_tokens(r)).collect();
        let prepared = scorer.prepare(&refs);
        let cands = img.get("candidates").unwrap().as_array().unwrap();
        let scores = img.get("scores").unwrap().as_array().unwrap();
        for (j, (c, s)) in cands.iter().zip(scores).enumerate() {
            let seq = ids(c);
            let ours = scorer.score(reward_tokens(&seq), &prepared);
            let reference = s.as_f64().unwrap();
            nonzero += usize::from(reference > 0.0);
            worst.check(|| format!("image {i} sample {j}"), ours, reference);
        }
    }
    println!(
        "reward: {} of {} not bit-equal, worst |diff| {:e} {:?}",
        worst.unequal, worst.total, worst.max_abs, worst.first
    );
    assert!(nonzero > worst.total / 2, "fixture too degenerate");
    assert!(worst.max_abs <= 1e-12, "worst |diff| {:e}", worst.max_abs);
}
