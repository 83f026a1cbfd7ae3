//! `aoanet caption`: captions for given images, from a data folder or a feature file, with
//! each word's attention over the regions on request.

use super::common::{CmdResult, DeviceArgs, err};
use super::train_cmd::checkpoint_file;
use aoanet::data::FeatureStore;
use aoanet::data::dataset::FEATURES_FILE;
use aoanet::json::{self, Value};
use aoanet::tensor::{DType, Tensor};
use aoanet::train::Checkpoint;
use aoanet::train::decoding::decode_images;
use aoanet::train::evaluate::write_text;
use std::path::PathBuf;

/// Arguments of `caption`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    aoanet caption --checkpoint runs/scst --data data/coco --images 391895,522418\n  \
    aoanet caption --checkpoint model.safetensors --features my-feats.bin --attention")]
pub struct Args {
    /// A run folder (its last checkpoint) or a checkpoint file.
    #[arg(long, value_name = "RUN|FILE")]
    checkpoint: PathBuf,
    /// With a run folder: its best checkpoint.
    #[arg(long)]
    best: bool,
    /// A data folder: its feats.bin is used.
    #[arg(long, value_name = "DIR", conflicts_with = "features")]
    data: Option<PathBuf>,
    /// A feature file (`aoanet-data bu-features`/`npz-features` output).
    #[arg(long, value_name = "FILE")]
    features: Option<PathBuf>,
    /// Comma-separated image ids (default: every image in the feature file).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    images: Vec<u64>,
    /// Beam size (1 = greedy).
    #[arg(long, default_value_t = 2)]
    beam_size: usize,
    /// Print each word's attention over the regions (the strongest regions; --json has all).
    #[arg(long)]
    attention: bool,
    /// Also write the captions (and attention) as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs the subcommand.
pub fn run(args: &Args) -> CmdResult {
    let feats_path = match (&args.data, &args.features) {
        (Some(d), None) => d.join(FEATURES_FILE),
        (None, Some(f)) => f.clone(),
        _ => return Err("give the images' features: --data DIR or --features FILE".into()),
    };
    let ckpt = Checkpoint::open(checkpoint_file(&args.checkpoint, args.best)).map_err(err)?;
    let store = FeatureStore::open(&feats_path).map_err(err)?;
    if store.dim() != ckpt.model.att_feat_size {
        return Err(format!(
            "{} holds {}-value features but the model reads {}",
            feats_path.display(),
            store.dim(),
            ckpt.model.att_feat_size
        ));
    }
    let ids: Vec<u64> = if args.images.is_empty() {
        store.image_ids().collect()
    } else {
        args.images.clone()
    };
    if let Some(missing) = ids.iter().find(|id| !store.contains(**id)) {
        return Err(format!(
            "image {missing} is not in {} (it has {} images)",
            feats_path.display(),
            store.len()
        ));
    }
    let device = args.device.resolve()?;
    let model = ckpt.build_model(DType::F32).map_err(err)?;
    model.to_device_(device).map_err(err)?;
    let mut out = Vec::new();
    for chunk in ids.chunks(50) {
        let regions: Vec<_> = chunk
            .iter()
            .map(|&id| store.get(id).expect("checked"))
            .collect();
        let n = regions.iter().map(|r| r.count).max().unwrap_or(0);
        let d = store.dim();
        let mut f = vec![0.0f32; chunk.len() * n * d];
        let mut m = vec![0.0f32; chunk.len() * n];
        for (i, r) in regions.iter().enumerate() {
            r.feats
                .copy_to_f32(&mut f[i * n * d..i * n * d + r.count * d]);
            m[i * n..i * n + r.count].fill(1.0);
        }
        let on_device = |t: Tensor| t.to_device(device);
        let feats = Tensor::from_vec(f, &[chunk.len(), n, d])
            .and_then(on_device)
            .map_err(err)?;
        let masks = Tensor::from_vec(m, &[chunk.len(), n])
            .and_then(on_device)
            .map_err(err)?;
        let caps = decode_images(
            &model,
            &feats,
            Some(&masks),
            args.beam_size,
            model.config().max_length,
            args.attention,
        )
        .map_err(err)?;
        for ((id, c), r) in chunk.iter().zip(caps).zip(&regions) {
            let words: Vec<String> = c
                .ids
                .iter()
                .map(|&w| ckpt.vocab.word(w as u32).unwrap_or("<?>").to_string())
                .collect();
            println!("{id}: {}", words.join(" "));
            if let Some(att) = &c.attention {
                for (w, a) in words.iter().zip(att) {
                    let mut top: Vec<(usize, f32)> =
                        a[..r.count].iter().copied().enumerate().collect();
                    top.sort_by(|x, y| y.1.total_cmp(&x.1));
                    let shown: Vec<String> = top
                        .iter()
                        .take(3)
                        .map(|(k, v)| format!("region {k} {v:.3}"))
                        .collect();
                    println!("    {w:<12} {}", shown.join(", "));
                }
            }
            out.push(json::object([
                ("image_id", Value::from(*id as usize)),
                ("caption", Value::from(words.join(" "))),
                (
                    "attention",
                    c.attention.as_ref().map_or(Value::Null, |att| {
                        Value::Array(
                            att.iter()
                                .map(|a| {
                                    Value::Array(
                                        a[..r.count]
                                            .iter()
                                            .map(|&x| Value::from(x as f64))
                                            .collect(),
                                    )
                                })
                                .collect(),
                        )
                    }),
                ),
            ]));
        }
    }
    if let Some(p) = &args.json {
        write_text(p, &(Value::Array(out).to_json_pretty() + "\n")).map_err(err)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
