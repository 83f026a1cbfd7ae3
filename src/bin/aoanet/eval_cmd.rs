//! `aoanet eval`: decode a split with a checkpoint and score it.

use super::common::{CmdResult, DeviceArgs, MetricArgs, err, print_table};
use super::train_cmd::checkpoint_file;
use aoanet::data::{Dataset, Split};
use aoanet::json;
use aoanet::report::{self, ReportData};
use aoanet::tensor::DType;
use aoanet::train::evaluate::write_text;
use aoanet::train::report_data;
use aoanet::train::{Checkpoint, EvalOptions, evaluate_split};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `eval`.
#[derive(clap::Args)]
#[command(after_help = "Example (the reference's reported setting):\n  \
    aoanet eval --checkpoint runs/scst --data data/coco --split test --beam-size 2")]
pub struct Args {
    /// A run folder (its last checkpoint) or a checkpoint file (ours, or a reference
    /// model.pth converted with data-tools/pth_to_safetensors.py --infos).
    #[arg(long, value_name = "RUN|FILE")]
    checkpoint: PathBuf,
    /// With a run folder: its best checkpoint.
    #[arg(long)]
    best: bool,
    /// The data folder with the split's features and references.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// train, val or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Beam size (1 = greedy; the reference evaluates with 2).
    #[arg(long, default_value_t = 2)]
    beam_size: usize,
    /// Only the first N images of the split.
    #[arg(long, value_name = "N")]
    max_images: Option<usize>,
    /// Images decoded at once.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Where to write the captions (COCO results JSON; default: beside the checkpoint,
    /// <split>-captions-beam<K>.json).
    #[arg(long, value_name = "FILE")]
    captions: Option<PathBuf>,
    /// Where to write the scores as JSON (toolkit keys, per image; default: beside the
    /// captions, <split>-scores-beam<K>.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write report.html (beside the captions): the scores and, for the first N images,
    /// each word's attention over the region boxes, the references and the image's scores.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "12")]
    report: Option<usize>,
    #[command(flatten)]
    metrics: MetricArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> CmdResult {
    let split = Split::parse(&args.split).map_err(err)?;
    let scoring = args.metrics.scoring(None)?;
    let device = args.device.resolve()?;
    let file = checkpoint_file(&args.checkpoint, args.best);
    let ckpt = Checkpoint::open(&file).map_err(err)?;
    let data = Arc::new(Dataset::open(&args.data).map_err(err)?);
    if ckpt.model.att_feat_size != data.features.dim() {
        return Err(format!(
            "{}: the model reads {}-value features but {} holds {}-value features",
            file.display(),
            ckpt.model.att_feat_size,
            args.data.display(),
            data.features.dim()
        ));
    }
    let model = ckpt.build_model(DType::F32).map_err(err)?;
    model.to_device_(device).map_err(err)?;
    let t0 = Instant::now();
    let opts = EvalOptions {
        beam_size: args.beam_size,
        batch_size: args.batch_size,
        max_images: args.max_images,
        with_attention: args.report.is_some(),
        ..EvalOptions::greedy(model.config().max_length)
    };
    let r = evaluate_split(&model, &ckpt.vocab, &data, split, &opts, &scoring).map_err(err)?;
    let dir = file
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let captions = args.captions.clone().unwrap_or_else(|| {
        dir.join(format!(
            "{}-captions-beam{}.json",
            split.name(),
            args.beam_size
        ))
    });
    r.write_results(&captions).map_err(err)?;
    let scores = args.json.clone().unwrap_or_else(|| {
        dir.join(format!(
            "{}-scores-beam{}.json",
            split.name(),
            args.beam_size
        ))
    });
    let mut j = r.evaluation.to_json();
    if let json::Value::Object(f) = &mut j {
        f.insert(0, ("checkpoint".into(), file.display().to_string().into()));
        f.insert(1, ("split".into(), split.name().into()));
        f.insert(2, ("beam_size".into(), args.beam_size.into()));
    }
    write_text(&scores, &(j.to_json_pretty() + "\n")).map_err(err)?;
    println!(
        "{} {} images, beam {}, {:.1}s, {}",
        split.name(),
        r.image_ids.len(),
        args.beam_size,
        t0.elapsed().as_secs_f64(),
        file.display()
    );
    let m = r.metrics();
    print_table(&[("score", &m)]);
    println!("wrote {} and {}", captions.display(), scores.display());
    if let Some(n) = args.report {
        let path = captions.with_file_name(format!(
            "{}-report-beam{}.html",
            split.name(),
            args.beam_size
        ));
        let title = format!(
            "{} split ({} images), beam size {}",
            split.name(),
            r.image_ids.len(),
            args.beam_size
        );
        let page = ReportData {
            title: format!("aoanet eval: {}", file.display()),
            tables: vec![report_data::metrics_table(&title, &[("model", &m)])],
            notes: vec![format!("Data: {}.", args.data.display())],
            curves_svg: None,
            images: report_data::image_cards(&data, &r, n, None, None, &ckpt.vocab),
        };
        report::write_report(&path, &page).map_err(err)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
