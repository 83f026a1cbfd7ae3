//! The SPICE step with a fake `java`: a shell script that checks it was called like the
//! toolkit calls SPICE and answers in SPICE's output format (including the bare `NaN` Java
//! writes for undefined subset scores), so the runner's plumbing is tested without Java or
//! CoreNLP.
#![cfg(unix)]

mod metrics_support;

use aoanet::metrics::spice::Spice;
use aoanet::metrics::{EvalSet, Evaluator, ImageKey};
use metrics_support::fake_spice_setup as fake_setup;

#[test]
fn spice_runs_the_jar_and_maps_scores_back() {
    let root = std::env::temp_dir().join(format!("aoanet-spice-test-{}", std::process::id()));
    let (java, jar) = fake_setup(&root);
    let spice = Spice::with_java(&jar, &java).unwrap();
    let set = EvalSet {
        // Unsorted ids: per-image values must still land on their own images.
        keys: vec![ImageKey::Id(30), ImageKey::Id(10), ImageKey::Id(20)],
        candidates: vec!["a dog.".into(), "a cat".into(), "\"quoted\" caption".into()],
        references: vec![vec!["a dog".into()], vec!["a cat".into()], vec!["x".into()]],
    };
    let e = Evaluator::offline()
        .with_spice(&spice)
        .evaluate(&set)
        .unwrap();
    assert_eq!(e.image(0, "SPICE"), Some(0.1));
    assert_eq!(e.image(1, "SPICE"), Some(0.2));
    assert_eq!(e.image(2, "SPICE"), Some(0.3));
    // Mean in sorted-id order: ids 10, 20, 30 -> 0.2, 0.3, 0.1.
    assert_eq!(e.get("SPICE"), Some((0.2 + 0.3 + 0.1) / 3.0));
    let args = std::fs::read_to_string(root.join("bin/args.txt")).unwrap();
    assert!(
        args.starts_with(&format!("-jar -Xmx8G {}", jar.display()))
            && args.contains("-subset -silent"),
        "{args}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_failing_spice_run_reports_its_stderr() {
    let root = std::env::temp_dir().join(format!("aoanet-spice-fail-{}", std::process::id()));
    let (java, jar) = fake_setup(&root);
    std::fs::write(
        &java,
        "#!/bin/sh\necho 'Exception in thread \"main\" java.lang.NoClassDefFoundError: edu/stanford/nlp/semgraph/semgrex/SemgrexPattern' >&2\nexit 1\n",
    )
    .unwrap();
    let spice = Spice::with_java(&jar, &java).unwrap();
    let set = EvalSet {
        keys: vec![ImageKey::Id(1)],
        candidates: vec!["a".into()],
        references: vec![vec!["a".into()]],
    };
    let e = Evaluator::offline()
        .with_spice(&spice)
        .evaluate(&set)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SPICE") && e.contains("NoClassDefFoundError"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
