//! Differential test of BLEU, ROUGE-L and CIDEr-D against pycocoevalcap's own Python scorers on
//! random tokenized captions (no tokenizer involved): every per-image score and every corpus
//! score must be bit-identical. Needs python3 with pycocoevalcap 1.2, so it is `#[ignore]`d:
//! `cargo test --release --test metrics_python_diff -- --ignored --nocapture`.

use aoanet::Philox;
use aoanet::json::{self, Value};
use aoanet::metrics::{WordIds, corpus_bleu, corpus_cider_d, corpus_rouge_l};
use std::process::Command;

const SCRIPT: &str = r#"
import json, sys
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.cider.cider import Cider
d = json.load(open(sys.argv[1]))
gts = {i: e["refs"] for i, e in enumerate(d)}
res = {i: [e["cand"]] for i, e in enumerate(d)}
b, bs = Bleu(4).compute_score(gts, res, verbose=0)
r, rs = Rouge().compute_score(gts, res)
c, cs = Cider().compute_score(gts, res)
print(json.dumps({"bleu": b, "bleu_per": [list(x) for x in bs], "rouge": r, "rouge_per": list(rs),
                  "cider": c, "cider_per": list(cs)}))
"#;

fn sentence(rng: &mut Philox, vocab: u32) -> String {
    let n = rng.below(18);
    (0..n)
        .map(|_| {
            // Zipf-like words so n-grams repeat; a few with odd characters.
            let w = (rng.next_f64().powi(3) * f64::from(vocab)) as u32;
            match w % 23 {
                0 => format!("w{w}-x"),
                1 => format!("'{w}"),
                _ => format!("w{w}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
#[ignore = "needs python3 with pycocoevalcap==1.2"]
fn random_tokenized_sets_equal_the_python_scorers() {
    let mut rng = Philox::new(42);
    for (round, images) in [(0, 7usize), (1, 100), (2, 1500), (3, 3000)] {
        let mut data = Vec::new();
        for _ in 0..images {
            let refs: Vec<String> = (0..1 + rng.below(6))
                .map(|_| sentence(&mut rng, 60))
                .collect();
            let cand = if rng.below(5) == 0 {
                refs[0].clone()
            } else {
                sentence(&mut rng, 60)
            };
            data.push((cand, refs));
        }
        let file =
            std::env::temp_dir().join(format!("aoanet-pydiff-{}-{round}.json", std::process::id()));
        let v: Vec<Value> = data
            .iter()
            .map(|(c, r)| {
                json::object([
                    ("cand", Value::from(c.as_str())),
                    ("refs", Value::from(r.clone())),
                ])
            })
            .collect();
        std::fs::write(&file, Value::Array(v).to_json()).unwrap();
        let out = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(&file)
            .output()
            .expect("python3");
        std::fs::remove_file(&file).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py = json::parse(String::from_utf8_lossy(&out.stdout).trim(), "python").unwrap();

        let mut w = WordIds::new();
        let c_ws: Vec<Vec<u32>> = data.iter().map(|(c, _)| w.split_whitespace(c)).collect();
        let r_ws: Vec<Vec<Vec<u32>>> = data
            .iter()
            .map(|(_, r)| r.iter().map(|s| w.split_whitespace(s)).collect())
            .collect();
        let c_sp: Vec<Vec<u32>> = data.iter().map(|(c, _)| w.split_space(c)).collect();
        let r_sp: Vec<Vec<Vec<u32>>> = data
            .iter()
            .map(|(_, r)| r.iter().map(|s| w.split_space(s)).collect())
            .collect();
        let (_, bleu, bleu_per) = corpus_bleu(&c_ws, &r_ws);
        let (rouge, rouge_per) = corpus_rouge_l(&c_sp, &r_sp);
        let (cider, cider_per) = corpus_cider_d(&c_ws, &r_ws).unwrap();

        let f = |v: &Value| v.as_f64().unwrap();
        let arr = |k: &str| py.get(k).unwrap().as_array().unwrap().to_vec();
        let mut unequal = 0;
        let mut check = |what: String, ours: f64, theirs: f64| {
            if ours.to_bits() != theirs.to_bits() {
                unequal += 1;
                println!("{what}: ours {ours:e} python {theirs:e}");
            }
        };
        for k in 0..4 {
            check(
                format!("corpus Bleu_{}", k + 1),
                bleu[k],
                f(&arr("bleu")[k]),
            );
            for (i, p) in arr("bleu_per")[k].as_array().unwrap().iter().enumerate() {
                check(format!("image {i} Bleu_{}", k + 1), bleu_per[i][k], f(p));
            }
        }
        check("corpus ROUGE_L".into(), rouge, f(py.get("rouge").unwrap()));
        check("corpus CIDEr".into(), cider, f(py.get("cider").unwrap()));
        for (i, p) in arr("rouge_per").iter().enumerate() {
            check(format!("image {i} ROUGE_L"), rouge_per[i], f(p));
        }
        for (i, p) in arr("cider_per").iter().enumerate() {
            check(format!("image {i} CIDEr"), cider_per[i], f(p));
        }
        println!("{images} images: {unequal} scores not bit-equal");
        assert_eq!(unequal, 0);
    }
}
