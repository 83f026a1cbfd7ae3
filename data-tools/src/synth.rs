//! `aoanet-data synth`: writes the synthetic world (`aoanet::data::synth`) as a complete data
//! folder, the train split's document frequencies included.

use aoanet::Result;
use aoanet::data::dataset::DF_FILE;
use aoanet::data::{Dtype, Split, SynthConfig, World};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `synth` (defaults: the demo's world).
#[derive(clap::Args)]
pub struct Args {
    /// The data folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Seed of everything in the world.
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    seed: u64,
    /// Training images.
    #[arg(long, default_value_t = SynthConfig::default().train)]
    train: usize,
    /// Validation images.
    #[arg(long, default_value_t = SynthConfig::default().val)]
    val: usize,
    /// Test images.
    #[arg(long, default_value_t = SynthConfig::default().test)]
    test: usize,
    /// Fewest regions per image.
    #[arg(long, default_value_t = SynthConfig::default().min_regions)]
    min_regions: usize,
    /// Most regions per image.
    #[arg(long, default_value_t = SynthConfig::default().max_regions)]
    max_regions: usize,
    /// Feature values per region.
    #[arg(long, default_value_t = SynthConfig::default().dim)]
    dim: usize,
    /// Half-width of the uniform feature noise.
    #[arg(long, default_value_t = SynthConfig::default().noise)]
    noise: f32,
    /// Storage dtype: f32 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

/// Runs `synth`.
pub fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let cfg = SynthConfig {
        seed: args.seed,
        train: args.train,
        val: args.val,
        test: args.test,
        min_regions: args.min_regions,
        max_regions: args.max_regions,
        dim: args.dim,
        noise: args.noise,
        dtype: Dtype::parse(&args.dtype)?,
        ..SynthConfig::default()
    };
    let world = World::generate(&cfg)?;
    let gen_secs = t.elapsed().as_secs_f64();
    world.dataset.save(&args.out)?;
    let d = &world.dataset;
    // A complete data folder includes the SCST reward's document frequencies.
    aoanet::data::ngrams::document_frequencies(&d.captions, Split::Train, 1)
        .write(args.out.join(DF_FILE))?;
    println!(
        "wrote the synthetic world to {}: {} images ({} train, {} val, {} test), {} captions, \
         {} words, {} regions of {} values ({}); generated in {gen_secs:.2} s, {:.2} s in all",
        args.out.display(),
        d.captions.len(),
        cfg.train,
        cfg.val,
        cfg.test,
        d.captions.num_captions(),
        d.vocab.len(),
        d.features.total_regions(),
        d.features.dim(),
        d.features.dtype().name(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
