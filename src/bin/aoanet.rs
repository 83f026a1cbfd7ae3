//! The `aoanet` command line: `demo`, `train`, `eval`, `caption`, `eval-captions`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[path = "aoanet/caption.rs"]
mod caption;
#[path = "aoanet/common.rs"]
mod common;
#[path = "aoanet/demo.rs"]
mod demo;
#[path = "aoanet/eval_captions.rs"]
mod eval_captions;
#[path = "aoanet/eval_cmd.rs"]
mod eval_cmd;
#[path = "aoanet/train_cmd.rs"]
mod train_cmd;

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
    Demo(demo::Args),
    /// Train a model on a data folder written by `aoanet-data`.
    Train(Box<train_cmd::Args>),
    /// Decode a split with a checkpoint and score it.
    Eval(eval_cmd::Args),
    /// Caption given images with a checkpoint.
    Caption(caption::Args),
    /// Score a COCO results file against references.
    EvalCaptions(eval_captions::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Training and decoding reuse step-sized buffers; keep them in the heap (no page faults).
    aoanet::cpu::alloc::keep_large_blocks();
    let (name, result) = match &cli.command {
        Command::Demo(a) => ("demo", demo::run(a)),
        Command::Train(a) => ("train", train_cmd::run(a)),
        Command::Eval(a) => ("eval", eval_cmd::run(a)),
        Command::Caption(a) => ("caption", caption::run(a)),
        Command::EvalCaptions(a) => ("eval-captions", eval_captions::run(a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("aoanet {name}: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
