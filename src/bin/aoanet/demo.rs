//! `aoanet demo`: the whole pipeline on the embedded synthetic world, in a few minutes on a
//! laptop: generate the world, train a small AoA model with cross-entropy then self-critical,
//! evaluate the test split with beam search, train the same model with the same budget on
//! features shuffled across images (the control), and write the run folder.

use super::common::{
    CmdResult, DeviceArgs, MetricArgs, Printer, default_run_dir, err, metrics_json, print_table,
    stop_flag,
};
use aoanet::data::{Dataset, Split, SynthConfig, World};
use aoanet::json::{self, Value};
use aoanet::model::AoaConfig;
use aoanet::report::{self, ReportData};
use aoanet::tensor::DType;
use aoanet::train::checkpoint::CHECKPOINT_FILE;
use aoanet::train::evaluate::write_text;
use aoanet::train::history::{self, HistoryRecord};
use aoanet::train::report_data;
use aoanet::train::{
    EvalOptions, Outcome, Scoring, SplitEval, TrainEnv, TrainOptions, Trainer, evaluate_split,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {
    /// The run folder to write (default: runs/demo-<time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seed of the world, the model and training.
    #[arg(long, default_value_t = 2019)]
    seed: u64,
    /// Cross-entropy iterations (10 images × 5 captions each).
    #[arg(long, default_value_t = 600)]
    xe_iters: u64,
    /// Self-critical iterations.
    #[arg(long, default_value_t = 300)]
    scst_iters: u64,
    /// Beam size of the test evaluation (the reference: 2).
    #[arg(long, default_value_t = 2)]
    beam_size: usize,
    /// Training images of the world (val and test: 250 each).
    #[arg(long, default_value_t = 4000)]
    train_images: usize,
    /// Model width (rnn_size = input_encoding_size).
    #[arg(long, default_value_t = 128)]
    rnn_size: usize,
    /// XE learning rate (the reference's 2e-4 is tuned for 25 epochs of COCO; the demo has
    /// a budget of minutes).
    #[arg(long, default_value_t = 1e-3)]
    xe_lr: f64,
    /// SCST learning rate (the reference: 2e-5).
    #[arg(long, default_value_t = 2e-4)]
    scst_lr: f64,
    /// Skip the shuffled-features control.
    #[arg(long)]
    no_control: bool,
    /// Score the SCST rewards after the greedy baseline instead of beside it (for timing).
    #[arg(long, hide = true)]
    no_overlap_rewards: bool,
    #[command(flatten)]
    metrics: MetricArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The demo's world.
fn world_config(args: &Args) -> SynthConfig {
    SynthConfig {
        seed: args.seed,
        train: args.train_images,
        ..SynthConfig::default()
    }
}

/// The demo's model: the reference's structure at a fraction of its width and depth.
fn model_config(args: &Args, vocab: usize, dim: usize) -> AoaConfig {
    let mut c = AoaConfig::small(vocab, dim);
    c.rnn_size = args.rnn_size;
    c.input_encoding_size = args.rnn_size;
    c
}

/// A validation cadence for iterations `start..=end` (absolute counts, as the reference's
/// `iteration % save_checkpoint_every`): the smallest interval that divides both ends with at
/// most `checks` validations, so the last one falls on the stage's last iteration; the whole
/// span if there is none.
fn cadence(start: u64, end: u64, checks: u64) -> u64 {
    let span = end - start;
    (span.div_ceil(checks.max(1)).max(1)..=span)
        .find(|d| start.is_multiple_of(*d) && end.is_multiple_of(*d))
        .unwrap_or(span.max(1))
}

fn xe_options(args: &Args) -> TrainOptions {
    TrainOptions {
        seed: args.seed,
        max_iters: Some(args.xe_iters),
        max_epochs: None,
        learning_rate: args.xe_lr,
        val_every: cadence(0, args.xe_iters, 4),
        val_images: Some(100),
        losses_log_every: 10,
        ..TrainOptions::xe()
    }
}

fn scst_options(args: &Args) -> TrainOptions {
    TrainOptions {
        seed: args.seed,
        max_iters: Some(args.xe_iters + args.scst_iters),
        max_epochs: None,
        learning_rate: args.scst_lr,
        overlap_rewards: !args.no_overlap_rewards,
        val_every: cadence(args.xe_iters, args.xe_iters + args.scst_iters, 5),
        val_images: Some(100),
        losses_log_every: 10,
        ..TrainOptions::scst()
    }
}

struct StageResult {
    test: SplitEval,
    metrics: Vec<(String, f64)>,
    seconds: f64,
    history: Vec<HistoryRecord>,
    stopped: bool,
}

fn train_stage(
    name: &str,
    mut trainer: Trainer,
    data: &Arc<Dataset>,
    beam_size: usize,
    scoring: &Scoring,
    stop: &AtomicBool,
) -> CmdResult<StageResult> {
    let t0 = Instant::now();
    let mut printer = Printer::new(5.0);
    printer.prefix = format!("[{name}] ");
    let outcome = trainer.run(stop, &mut |e| printer.event(e)).map_err(err)?;
    printer.end_line();
    let train_secs = t0.elapsed().as_secs_f64();
    eprintln!("[{name}] steps: {}", trainer.phases().summary());
    let t1 = Instant::now();
    let opts = EvalOptions {
        beam_size,
        with_attention: true,
        ..EvalOptions::greedy(trainer.model().config().max_length)
    };
    let test = evaluate_split(
        trainer.model(),
        trainer.vocab(),
        data,
        Split::Test,
        &opts,
        scoring,
    )
    .map_err(err)?;
    test.write_results(
        &trainer
            .out_dir()
            .join(format!("test-captions-beam{beam_size}.json")),
    )
    .map_err(err)?;
    eprintln!(
        "[{name}] trained {:.1}s, test decoded and scored in {:.1}s: CIDEr-D {:.4}",
        train_secs,
        t1.elapsed().as_secs_f64(),
        test.evaluation.get("CIDEr").unwrap_or(f64::NAN)
    );
    Ok(StageResult {
        metrics: test.metrics(),
        test,
        seconds: t0.elapsed().as_secs_f64(),
        history: trainer.history().to_vec(),
        stopped: outcome == Outcome::Stopped,
    })
}

/// Runs the subcommand.
pub fn run(args: &Args) -> CmdResult {
    let t_total = Instant::now();
    let stop = stop_flag()?;
    let scoring = || args.metrics.scoring_quiet(None);
    let device = args.device.resolve()?;
    let env = || -> CmdResult<TrainEnv> {
        Ok(TrainEnv {
            scoring: scoring()?,
            df: None,
            hooks: Default::default(),
            dtype: DType::F32,
            device,
        })
    };
    let eval_scoring = args.metrics.scoring(None)?;
    let out = args.out.clone().unwrap_or_else(|| default_run_dir("demo"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;

    let t0 = Instant::now();
    let world = World::generate(&world_config(args)).map_err(err)?;
    let control = (!args.no_control)
        .then(|| world.shuffled_control(args.seed ^ 0x5eed))
        .transpose()
        .map_err(err)?;
    let World {
        scenes, dataset, ..
    } = world;
    let data = Arc::new(dataset);
    let cfg = model_config(args, data.vocab.len(), data.features.dim());
    let (cfg_width, cfg_layers) = (cfg.rnn_size, cfg.refiner_layers);
    eprintln!(
        "synthetic world: {} train / {} val / {} test images, {}-value region features, {} \
         words ({:.1}s); model: rnn_size {}, {} refiner layers, {} parameters",
        data.split_len(Split::Train),
        data.split_len(Split::Val),
        data.split_len(Split::Test),
        data.features.dim(),
        data.vocab.len(),
        t0.elapsed().as_secs_f64(),
        cfg.rnn_size,
        cfg.refiner_layers,
        aoanet::model::AoaModel::new(cfg.clone(), DType::F32, 0)
            .map_err(err)?
            .num_parameters()
    );

    // Cross-entropy.
    let xe_dir = out.join("xe");
    let xe_trainer = Trainer::fresh(data.clone(), &xe_dir, cfg.clone(), xe_options(args), env()?)
        .map_err(err)?;
    let pre = xe_trainer.preflight().map_err(err)?;
    eprintln!(
        "pre-flight: decoded and scored {} val images ({})",
        pre.image_ids.len(),
        xe_trainer.scoring().keys().join(", ")
    );
    let xe = train_stage(
        "xe",
        xe_trainer,
        &data,
        args.beam_size,
        &eval_scoring,
        &stop,
    )?;
    if xe.stopped {
        return stopped(&out);
    }

    // Self-critical, from the last XE checkpoint.
    let scst_trainer = Trainer::from_checkpoint(
        data.clone(),
        out.join("scst"),
        &xe_dir.join(CHECKPOINT_FILE),
        &[],
        scst_options(args),
        env()?,
    )
    .map_err(err)?;
    let scst = train_stage(
        "scst",
        scst_trainer,
        &data,
        args.beam_size,
        &eval_scoring,
        &stop,
    )?;
    if scst.stopped {
        return stopped(&out);
    }

    // The control: the same model and XE budget on features shuffled across images.
    let control = match control {
        Some(c) => {
            let c = Arc::new(c);
            let t = Trainer::fresh(
                c.clone(),
                out.join("control"),
                cfg,
                xe_options(args),
                env()?,
            )
            .map_err(err)?;
            let r = train_stage("control", t, &c, args.beam_size, &eval_scoring, &stop)?;
            if r.stopped {
                return stopped(&out);
            }
            Some(r)
        }
        None => None,
    };

    // Results.
    let total = t_total.elapsed().as_secs_f64();
    println!(
        "\ntest split ({} images), beam {}:",
        xe.test.image_ids.len(),
        args.beam_size
    );
    let mut cols: Vec<(&str, &[(String, f64)])> =
        vec![("xe", &xe.metrics), ("scst", &scst.metrics)];
    if let Some(c) = &control {
        cols.push(("control", &c.metrics));
    }
    print_table(&cols);
    let cider = |m: &[(String, f64)]| m.iter().find(|(k, _)| k == "CIDEr").map(|(_, v)| *v);
    let (xc, sc) = (cider(&xe.metrics), cider(&scst.metrics));
    if let (Some(x), Some(s)) = (xc, sc) {
        println!(
            "self-critical vs cross-entropy CIDEr-D: {:+.1}%",
            100.0 * (s / x - 1.0)
        );
    }
    if let (Some(x), Some(c)) = (xc, control.as_ref().and_then(|c| cider(&c.metrics))) {
        println!(
            "cross-entropy vs shuffled-features control CIDEr-D: {:.1}×",
            x / c.max(1e-12)
        );
    }

    let mut all_history = xe.history.clone();
    all_history.extend(scst.history.iter().cloned());
    write_text(&out.join("history.jsonl"), &history::to_jsonl(&all_history)).map_err(err)?;
    // The control's curves stay in control/curves.svg: on the same iterations as the XE
    // stage they would read as one series with it.
    let curves = report_data::curves_svg(&all_history);
    write_text(&out.join("curves.svg"), &curves).map_err(err)?;
    let mut rows: Vec<(&str, &[(String, f64)])> =
        vec![("xe", &xe.metrics), ("scst", &scst.metrics)];
    if let Some(c) = &control {
        rows.push(("control (shuffled features)", &c.metrics));
    }
    let mut images = Vec::new();
    let xe_cards =
        report_data::image_cards(&data, &xe.test, 8, Some("xe"), Some(&scenes), &data.vocab);
    let scst_cards = report_data::image_cards(
        &data,
        &scst.test,
        8,
        Some("scst"),
        Some(&scenes),
        &data.vocab,
    );
    for (a, b) in xe_cards.into_iter().zip(scst_cards) {
        images.push(a);
        images.push(b);
    }
    let report = ReportData {
        title: "aoanet demo: the synthetic world".into(),
        tables: vec![report_data::metrics_table(
            &format!(
                "Test split ({} images), beam size {}",
                xe.test.image_ids.len(),
                args.beam_size
            ),
            &rows,
        )],
        notes: vec![
            format!(
                "World: {} train / {} val / {} test images, seed {}. Model: rnn_size {}, {} refiner \
                 layers. Cross-entropy {} iterations (lr {:e}), self-critical {} iterations (lr \
                 {:e}, greedy baseline), 10 images × 5 captions per iteration.",
                data.split_len(Split::Train),
                data.split_len(Split::Val),
                data.split_len(Split::Test),
                args.seed,
                cfg_width,
                cfg_layers,
                args.xe_iters,
                args.xe_lr,
                args.scst_iters,
                args.scst_lr
            ),
            format!(
                "Seconds: xe {:.1}, scst {:.1}, control {}, total {:.1}.",
                xe.seconds,
                scst.seconds,
                control
                    .as_ref()
                    .map_or("not run".to_string(), |c| format!("{:.1}", c.seconds)),
                t_total.elapsed().as_secs_f64()
            ),
            "The control trains the same model with the same budget on features shuffled \
             across images: what the captions' language alone gives."
                .into(),
        ],
        curves_svg: Some(curves),
        images,
    };
    report::write_report(out.join("report.html"), &report).map_err(err)?;

    let summary = json::object([
        ("xe", metrics_json(&xe.metrics)),
        ("scst", metrics_json(&scst.metrics)),
        (
            "control",
            control
                .as_ref()
                .map_or(Value::Null, |c| metrics_json(&c.metrics)),
        ),
        (
            "seconds",
            json::object([
                ("xe", Value::from(xe.seconds)),
                ("scst", Value::from(scst.seconds)),
                (
                    "control",
                    control
                        .as_ref()
                        .map_or(Value::Null, |c| Value::from(c.seconds)),
                ),
                ("total", Value::from(total)),
            ]),
        ),
        ("report", Value::from("report.html")),
        ("beam_size", Value::from(args.beam_size)),
        ("test_images", Value::from(xe.test.image_ids.len())),
    ]);
    write_text(
        &out.join("summary.json"),
        &(summary.to_json_pretty() + "\n"),
    )
    .map_err(err)?;
    println!(
        "total {:.1}s; wrote {} (summary.json, report.html, curves.svg, history.jsonl, xe/, scst/, control/)",
        total,
        out.display()
    );
    Ok(())
}

fn stopped(out: &Path) -> CmdResult {
    eprintln!(
        "demo stopped; the stages done so far are in {} (the demo's world lives in memory, so \
         it restarts from the beginning)",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cadence;

    #[test]
    fn validation_falls_on_the_last_iteration() {
        assert_eq!(cadence(0, 700, 4), 175);
        assert_eq!(cadence(700, 950, 5), 50);
        assert_eq!(cadence(701, 951, 5), 250);
        assert_eq!(cadence(0, 3, 4), 1);
    }
}
