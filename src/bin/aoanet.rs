//! The `aoanet` command line: `demo`, `train`, `eval`, `caption`, `eval-captions`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// AoANet image captioning in pure Rust: train, decode and evaluate.
#[derive(Parser)]
#[command(name = "aoanet", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the synthetic world, train a small model (XE then SCST), evaluate, report.
    Demo,
    /// Train a model on a data folder written by `aoanet-data`.
    Train,
    /// Decode a split with a checkpoint and score it.
    Eval,
    /// Caption given images with a checkpoint.
    Caption,
    /// Score a COCO results file against references.
    EvalCaptions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, part) = match cli.command {
        Command::Demo => ("demo", "training (issue: training and the CLI)"),
        Command::Train => ("train", "training (issue: training and the CLI)"),
        Command::Eval => ("eval", "evaluation (issue: training and the CLI)"),
        Command::Caption => ("caption", "decoding (issue: the AoA model)"),
        Command::EvalCaptions => ("eval-captions", "the metrics (issue: metrics)"),
    };
    eprintln!("aoanet {name}: not built yet: {part} is still to come");
    ExitCode::from(2)
}
