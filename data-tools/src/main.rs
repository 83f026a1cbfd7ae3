//! `aoanet-data`: converts the public captioning formats into aoanet's data folder.
//!
//! One module per subcommand; each has an `Args` (its flags, with `--help` text) and a
//! `run(Args) -> aoanet::Result<()>`.

mod bu_features;
mod inspect;
mod labels;
mod meteor_data;
mod ngrams;
mod npy;
mod npz_features;
mod progress;
mod synth;

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
    Labels(labels::Args),
    /// Convert bottom-up-attention TSV files into a feature store.
    BuFeatures(bu_features::Args),
    /// Convert a directory of the reference's npz features into a feature store.
    NpzFeatures(npz_features::Args),
    /// Compute CIDEr-D document frequencies over the training split.
    Ngrams(ngrams::Args),
    /// Convert METEOR's data from the pycocoevalcap wheel into one compact file.
    MeteorData(meteor_data::Args),
    /// Write the synthetic world as a data folder.
    Synth(synth::Args),
    /// Say what a file is and check it.
    Inspect(inspect::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Labels(a) => labels::run(a),
        Command::BuFeatures(a) => bu_features::run(a),
        Command::NpzFeatures(a) => npz_features::run(a),
        Command::Ngrams(a) => ngrams::run(a),
        Command::MeteorData(a) => meteor_data::run(&a),
        Command::Synth(a) => synth::run(a),
        Command::Inspect(a) => inspect::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aoanet-data: {e}");
            ExitCode::FAILURE
        }
    }
}
