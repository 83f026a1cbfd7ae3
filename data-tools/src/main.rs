//! `aoanet-data`: converts the public captioning formats into aoanet's data folder.

mod meteor_data;

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
    MeteorData(meteor_data::Args),
    /// Write the synthetic world as a data folder.
    Synth,
    /// Say what a file is and check it.
    Inspect,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::MeteorData(args) => meteor_data::run(args),
        _ => {
            eprintln!("aoanet-data: this subcommand is not built yet");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aoanet-data: {e}");
            ExitCode::FAILURE
        }
    }
}
