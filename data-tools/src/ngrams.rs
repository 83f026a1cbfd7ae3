//! `aoanet-data ngrams`: the training split's CIDEr-D document frequencies → `train-df.bin`,
//! as the reference's `prepro_ngrams.py` (AOANET.md 3.3, 5.4): see `aoanet::data::ngrams`.

use aoanet::data::dataset::{CAPTIONS_FILE, DF_FILE};
use aoanet::data::{Captions, Split};
use aoanet::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `ngrams`.
#[derive(clap::Args)]
pub struct Args {
    /// The data folder: reads captions.bin, writes train-df.bin.
    #[arg(long)]
    data: PathBuf,
    /// The split to count (train includes Karpathy's restval).
    #[arg(long, default_value = "train")]
    split: String,
    /// Output file (default: DATA/train-df.bin).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Counting threads. Each counts a shard and the shards are merged, which costs about
    /// as much as it saves at COCO's size, so the default is 1.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Runs `ngrams`.
pub fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let split = Split::parse(&args.split)?;
    let captions = Captions::read(args.data.join(CAPTIONS_FILE))?;
    let images = captions.split_positions(split).len();
    if images == 0 {
        return Err(Error::invalid(format!(
            "ngrams: the {} split of {} has no images",
            split.name(),
            args.data.join(CAPTIONS_FILE).display()
        )));
    }
    let df = aoanet::data::ngrams::document_frequencies(&captions, split, args.threads);
    let out = args.out.unwrap_or_else(|| args.data.join(DF_FILE));
    df.write(&out)?;
    println!(
        "wrote {}: document frequencies of {} {} images ({} captions), {} n-grams, \
         ref_len ln({}) = {:.4}, in {:.2} s",
        out.display(),
        df.num_images(),
        split.name(),
        captions
            .split_positions(split)
            .iter()
            .map(|&p| captions.image(p).len())
            .sum::<usize>(),
        df.len(),
        df.num_images(),
        df.ref_len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
