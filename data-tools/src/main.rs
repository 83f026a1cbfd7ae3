//! `aoanet-data`: converts the public captioning formats into aoanet's data folder.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Converts Karpathy/COCO captions, bottom-up features and the METEOR data for aoanet.
#[derive(Parser)]
#[command(name = "aoanet-data", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the vocabulary and captions from Karpathy's or COCO's JSON.
    Labels,
    /// Convert bottom-up-attention TSV files into a feature store.
    BuFeatures,
    /// Convert a directory of the reference's npz features into a feature store.
    NpzFeatures,
    /// Compute CIDEr-D document frequencies over the training split.
    Ngrams,
    /// Convert METEOR's data from the pycocoevalcap wheel into one compact file.
    MeteorData,
    /// Write the synthetic world as a data folder.
    Synth,
    /// Say what a file is and check it.
    Inspect,
}

fn main() -> ExitCode {
    let _ = Cli::parse();
    eprintln!("aoanet-data: this subcommand is not built yet");
    ExitCode::from(2)
}
