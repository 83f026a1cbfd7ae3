//! `aoanet train`: either stage on a data folder, new, resumed, or started from another run.

use super::common::{
    CmdResult, DeviceArgs, MetricArgs, OptionArgs, Printer, default_run_dir, err, stop_flag,
};
use aoanet::data::Dataset;
use aoanet::data::dataset::DF_FILE;
use aoanet::metrics::DocumentFrequencies;
use aoanet::model::AoaConfig;
use aoanet::tensor::DType;
use aoanet::train::checkpoint::{BEST_FILE, CHECKPOINT_FILE};
use aoanet::train::{
    Checkpoint, Hooks, NanTarget, Outcome, Stage, TrainEnv, TrainOptions, Trainer,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `train`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    aoanet train --data data/coco --out runs/xe\n  \
    aoanet train --data data/coco --stage scst --from runs/xe --out runs/scst\n  \
    aoanet train --data data/coco --resume runs/xe\n  \
    aoanet train --data data/coco --out runs/small --set rnn_size=512 --max-epochs 5")]
pub struct Args {
    /// The data folder (`aoanet-data labels`, `bu-features`, `ngrams`): feats.bin,
    /// captions.bin, vocab.txt, and train-df.bin for SCST.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The run folder to write (default: runs/<stage>-<time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// xe (cross-entropy) or scst (self-critical; needs --from).
    #[arg(long, default_value = "xe", value_name = "xe|scst")]
    stage: String,
    /// Start from this run folder's last checkpoint (or a checkpoint file, e.g. a converted
    /// reference model.pth): weights, Adam state, counters, best score.
    #[arg(long, value_name = "RUN")]
    from: Option<PathBuf>,
    /// With --from: its best checkpoint instead of its last.
    #[arg(long, requires = "from")]
    from_best: bool,
    /// Continue the run in this folder exactly where its last checkpoint stopped.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["from", "out"])]
    resume: Option<PathBuf>,
    #[command(flatten)]
    options: OptionArgs,
    #[command(flatten)]
    metrics: MetricArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    progress_every: f64,
    /// Test hook: make the loss NaN at this iteration.
    #[arg(long, hide = true)]
    debug_nan_loss_at: Option<u64>,
    /// Test hook: make a gradient NaN at this iteration.
    #[arg(long, hide = true)]
    debug_nan_grad_at: Option<u64>,
    /// Test hook: pause half way through each checkpoint write (milliseconds).
    #[arg(long, hide = true)]
    debug_checkpoint_pause_ms: Option<u64>,
}

/// The SCST reward's frequencies: DATA/train-df.bin, or counted from the captions.
pub fn train_df(data_dir: &Path) -> CmdResult<Option<DocumentFrequencies>> {
    let p = data_dir.join(DF_FILE);
    if p.exists() {
        return DocumentFrequencies::read(&p).map(Some).map_err(err);
    }
    eprintln!(
        "note: {} not found; counting the train split's CIDEr-D frequencies from the captions \
         (as `aoanet-data ngrams` would)",
        p.display()
    );
    Ok(None)
}

/// Runs the subcommand.
pub fn run(args: &Args) -> CmdResult {
    let stage = Stage::parse(&args.stage).map_err(err)?;
    let overrides = args.options.overrides()?;
    let hooks = Hooks {
        nan_at: args
            .debug_nan_loss_at
            .map(|i| (i, NanTarget::Loss))
            .or(args.debug_nan_grad_at.map(|i| (i, NanTarget::Gradient))),
        checkpoint_pause: args.debug_checkpoint_pause_ms.map(Duration::from_millis),
    };
    // Cheap checks first: options and metrics fail before the data is opened.
    let mut metric_list = overrides
        .train
        .iter()
        .find(|(k, _)| k == "metrics")
        .and_then(|(_, v)| v.as_str().map(str::to_string));
    if let (Some(run_dir), None, None) = (&args.resume, &metric_list, &args.metrics.metrics) {
        // A resumed run computes what it computed before.
        metric_list = Checkpoint::open(run_dir.join(CHECKPOINT_FILE))
            .ok()
            .and_then(|c| c.train)
            .and_then(|t| t.options.metrics);
    }
    let scoring = args.metrics.scoring(metric_list.as_deref())?;
    let device = args.device.resolve()?;
    let data = Arc::new(Dataset::open(&args.data).map_err(|e| {
        format!(
            "{e}\n(--data must be a folder written by aoanet-data: feats.bin, captions.bin, \
             vocab.txt)"
        )
    })?);
    let df = if stage == Stage::Scst || args.resume.is_some() {
        train_df(&args.data)?
    } else {
        None
    };
    let env = TrainEnv {
        scoring,
        df,
        hooks,
        dtype: DType::F32,
        device,
    };
    let mut trainer = if let Some(run_dir) = &args.resume {
        eprintln!("resuming {}", run_dir.display());
        Trainer::resume(data, run_dir, &overrides.model, &overrides.train, env).map_err(err)?
    } else if let Some(from) = &args.from {
        let file = checkpoint_file(from, args.from_best);
        let mut opts = TrainOptions::for_stage(stage);
        overrides.apply_train(&mut opts)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| default_run_dir(stage.name()));
        eprintln!(
            "{} stage from {} into {}",
            stage.name(),
            file.display(),
            out.display()
        );
        Trainer::from_checkpoint(data, &out, &file, &overrides.model, opts, env).map_err(err)?
    } else {
        if stage == Stage::Scst {
            return Err(
                "the scst stage starts from a trained model: add --from RUN (the xe run \
                        folder), or --resume RUN to continue an scst run"
                    .into(),
            );
        }
        let mut model = AoaConfig::reference(data.vocab.len());
        model.att_feat_size = data.features.dim();
        model.fc_feat_size = data.features.dim();
        overrides.apply_model(&mut model)?;
        let mut opts = TrainOptions::xe();
        overrides.apply_train(&mut opts)?;
        let out = args.out.clone().unwrap_or_else(|| default_run_dir("xe"));
        eprintln!("new xe run in {}", out.display());
        Trainer::fresh(data, &out, model, opts, env).map_err(err)?
    };
    let hint = format!(
        "aoanet train --data {} --resume {}",
        args.data.display(),
        trainer.out_dir().display()
    );
    train_loop(&mut trainer, args.progress_every, &hint)
}

/// The checkpoint file of `from`: a file as is, a run folder's last or best.
pub fn checkpoint_file(from: &Path, best: bool) -> PathBuf {
    if from.is_dir() {
        from.join(if best { BEST_FILE } else { CHECKPOINT_FILE })
    } else {
        from.to_path_buf()
    }
}

/// Pre-flight, then the loop with signals and progress; says how to resume when stopped.
pub fn train_loop(trainer: &mut Trainer, progress_every: f64, resume_hint: &str) -> CmdResult {
    let stop = stop_flag()?;
    let pre = trainer.preflight().map_err(err)?;
    eprintln!(
        "pre-flight: decoded and scored {} val images ({})",
        pre.image_ids.len(),
        trainer.scoring().keys().join(", ")
    );
    let mut printer = Printer::new(progress_every);
    let outcome = trainer.run(&stop, &mut |e| printer.event(e));
    printer.end_line();
    let out = trainer.out_dir().display().to_string();
    match outcome {
        Ok(Outcome::Finished) => {
            eprintln!(
                "done: iteration {}, epoch {}; last checkpoint {}",
                trainer.state().iteration,
                trainer.state().epoch,
                trainer.checkpoint_path().display()
            );
            if let Some((score, it)) = trainer.state().best {
                eprintln!("best val CIDEr-D {score:.4} at iteration {it}");
            }
            Ok(())
        }
        Ok(Outcome::Stopped) => {
            eprintln!(
                "stopped at iteration {} (epoch {}); checkpoint saved in {out}\nresume with: \
                 {resume_hint}",
                trainer.state().iteration,
                trainer.state().epoch
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "{e}\n(to continue from the last checkpoint: {resume_hint})"
        )),
    }
}
