//! `aoanet-data ngrams`: CIDEr-D document frequencies of the training split (to come: it uses
//! the metrics module's `df.rs`).

use aoanet::{Error, Result};
use std::path::PathBuf;

/// Flags of `ngrams`.
#[derive(clap::Args)]
pub struct Args {
    /// The data folder (reads captions.bin, writes train-df.bin).
    #[arg(long)]
    data: PathBuf,
}

/// Runs `ngrams`.
pub fn run(args: Args) -> Result<()> {
    Err(Error::invalid(format!(
        "ngrams ({}): not built yet: it waits for the metrics module's document frequencies",
        args.data.display()
    )))
}
