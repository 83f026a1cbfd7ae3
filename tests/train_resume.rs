//! The training loop's guarantees, on a tiny model and a tiny synthetic world (seconds):
//! N steps in one run equal k + (N − k) steps with a stop and resume between, bit for bit (XE
//! with epochs straddled, the learning-rate decay and scheduled sampling active; SCST with
//! the plateau schedule and both baselines); a changed shape option is refused by name; an
//! injected NaN stops training naming the iteration and keeps the last good checkpoint.

mod train_support;

use aoanet::json::Value;
use aoanet::train::checkpoint::Checkpoint;
use aoanet::train::{Baseline, Hooks, NanTarget, Outcome, Stage, TrainEnv, TrainOptions, Trainer};
use std::sync::atomic::AtomicBool;
use train_support::{assert_same, model, run, scratch, world, xe_options};

#[test]
fn xe_resume_is_bit_identical() {
    let data = world();
    let cfg = model(&data);
    let (one, two) = (scratch("xe-one"), scratch("xe-two"));
    let mut a = Trainer::fresh(
        data.clone(),
        &one,
        cfg.clone(),
        xe_options(13),
        TrainEnv::offline(),
    )
    .unwrap();
    a.preflight().unwrap();
    assert_eq!(run(&mut a), Outcome::Finished);
    assert_eq!(a.state().iteration, 13);
    assert!(
        a.state().epoch >= 2,
        "epochs straddled: {}",
        a.state().epoch
    );

    let mut b = Trainer::fresh(
        data.clone(),
        &two,
        cfg.clone(),
        xe_options(6),
        TrainEnv::offline(),
    )
    .unwrap();
    assert_eq!(run(&mut b), Outcome::Finished);
    drop(b);
    let more = [("max_iters".to_string(), Value::from(13usize))];
    let mut b = Trainer::resume(data.clone(), &two, &[], &more, TrainEnv::offline()).unwrap();
    assert_eq!(b.state().iteration, 6);
    assert_eq!(run(&mut b), Outcome::Finished);
    assert_same(&one, &two);
    // The history continues: validations at 4, 8, 12 in both.
    let vals = |t: &Trainer| -> Vec<u64> {
        t.history()
            .iter()
            .filter(|r| r.is_val())
            .map(|r| r.iteration)
            .collect()
    };
    assert_eq!(vals(&a), vec![4, 8, 12]);
    assert_eq!(vals(&a), vals(&b));

    // A stop request saves and ends the run at once.
    let three = scratch("xe-stop");
    let mut c = Trainer::fresh(
        data.clone(),
        &three,
        cfg.clone(),
        xe_options(13),
        TrainEnv::offline(),
    )
    .unwrap();
    let stop = AtomicBool::new(true);
    assert_eq!(c.run(&stop, &mut |_| {}).unwrap(), Outcome::Stopped);
    assert_eq!(
        Checkpoint::open(&three)
            .unwrap()
            .train
            .unwrap()
            .state
            .iteration,
        1
    );

    // Resuming with another width is refused, naming the option.
    let wider = [("rnn_size".to_string(), Value::from(32usize))];
    let e = Trainer::resume(data.clone(), &two, &wider, &[], TrainEnv::offline())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("rnn_size (16 vs 32)"), "{e}");
    // A fresh run into a folder holding one is refused too.
    let e = Trainer::fresh(data, &two, cfg, xe_options(1), TrainEnv::offline())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--resume"), "{e}");
    for d in [one, two, three] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

fn scst_options(max_iters: u64, baseline: Baseline) -> TrainOptions {
    TrainOptions {
        seed: 7,
        batch_size: 4,
        max_iters: Some(max_iters),
        max_epochs: None,
        learning_rate: 1e-3,
        val_every: 2,
        val_images: Some(3),
        val_batch_size: 3,
        reduce_on_plateau_patience: 0,
        losses_log_every: 2,
        baseline,
        ..TrainOptions::scst()
    }
}

#[test]
fn scst_resume_is_bit_identical_with_both_baselines() {
    let data = world();
    let cfg = model(&data);
    let xe = scratch("scst-xe");
    let mut t = Trainer::fresh(data.clone(), &xe, cfg, xe_options(5), TrainEnv::offline()).unwrap();
    run(&mut t);
    let xe_best = t.state().best;
    drop(t);
    let from = xe.join("checkpoint.safetensors");
    for (k, baseline) in [Baseline::Greedy, Baseline::Mean].into_iter().enumerate() {
        let (one, two) = (
            scratch(&format!("scst-one{k}")),
            scratch(&format!("scst-two{k}")),
        );
        let mut a = Trainer::from_checkpoint(
            data.clone(),
            &one,
            &from,
            &[],
            scst_options(11, baseline),
            TrainEnv::offline(),
        )
        .unwrap();
        // SCST continues the count and inherits the best score.
        assert_eq!((a.state().iteration, a.state().best), (5, xe_best));
        assert_eq!(a.state().stage, Stage::Scst);
        run(&mut a);
        let mut b = Trainer::from_checkpoint(
            data.clone(),
            &two,
            &from,
            &[],
            scst_options(8, baseline),
            TrainEnv::offline(),
        )
        .unwrap();
        run(&mut b);
        drop(b);
        let more = [("max_iters".to_string(), Value::from(11usize))];
        let mut b = Trainer::resume(data.clone(), &two, &[], &more, TrainEnv::offline()).unwrap();
        run(&mut b);
        assert_same(&one, &two);
        // Patience 0: the plateau schedule halves the rate at the first evaluation that does
        // not improve; the rate and the schedule's state resume exactly (compared above).
        assert!(a.history().iter().any(|r| r.reward.is_some()));
        for d in [one, two] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    std::fs::remove_dir_all(xe).unwrap();
}

#[test]
fn an_injected_nan_stops_naming_the_iteration_and_keeps_the_checkpoint() {
    let data = world();
    let cfg = model(&data);
    for (k, target) in [NanTarget::Loss, NanTarget::Gradient]
        .into_iter()
        .enumerate()
    {
        let dir = scratch(&format!("nan{k}"));
        let opts = TrainOptions {
            save_every: Some(2),
            ..xe_options(10)
        };
        let env = TrainEnv {
            hooks: Hooks {
                nan_at: Some((5, target)),
                checkpoint_pause: None,
            },
            ..TrainEnv::offline()
        };
        let mut t = Trainer::fresh(data.clone(), &dir, cfg.clone(), opts, env).unwrap();
        let e = t
            .run(&AtomicBool::new(false), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("at iteration 5"), "{e}");
        assert!(
            e.contains("iteration 4)"),
            "names the last good checkpoint: {e}"
        );
        match target {
            NanTarget::Loss => assert!(e.contains("loss is NaN"), "{e}"),
            NanTarget::Gradient => assert!(e.contains("gradient of"), "{e}"),
        }
        let kept = Checkpoint::open(&dir).unwrap().train.unwrap().state;
        assert_eq!(kept.iteration, 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
