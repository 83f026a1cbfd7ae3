//! # aoanet
//!
//! AoANet image captioning ("Attention on Attention for Image Captioning", Huang et al.,
//! ICCV 2019) from scratch: our own tensor type and reverse-mode autograd, a fast CPU backend,
//! hand-written CUDA kernels, the training recipe of the authors' code, decoding, and the
//! coco-caption metrics, in one library without a deep-learning framework.
//!
//! A newcomer reads the modules in dependency order (nothing low imports anything high):
//!
//! | module | what it defines |
//! | --- | --- |
//! | [`error`] | the one [`Error`] type |
//! | [`rng`] | Philox4x32-10, the replayable randomness of CPU and GPU |
//! | [`json`] | a small JSON reader/writer (safetensors headers, fixtures, run files) |
//! | [`cpu`] | CPU kernels: the packed SIMD GEMM, threads |
//! | [`tensor`] | `Tensor`: shape, strides, dtype, device, storage, creation, views |
//! | [`autograd`] | the tape, `backward`, `no_grad` |
//! | [`io`] | safetensors checkpoints, atomic file writes |
//! | [`ops`] | every differentiable op, forward and backward together |
//! | [`nn`] | `Linear`, `Embedding`, `LayerNorm`, `LstmCell`, `MultiHeadAoa`, ... |
//! | [`model`] | the AoA refiner and decoder, decoding |
//! | [`data`] | feature store, captions, vocabulary, loader, the synthetic world |
//! | [`metrics`] | PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr-D |
//! | [`train`] | losses, Adam, schedules, the training loop, checkpoints |
//! | [`report`] | `history.jsonl`, `curves.svg`, `report.html`: what a person looks at |
//! | `cuda` | (feature `cuda`) device, memory pool, NVRTC-built kernels |

// Tests pass `&[x.clone()]` to the gradient checker throughout; that reads better than
// `std::slice::from_ref(&x)`.
#![cfg_attr(test, allow(clippy::cloned_ref_to_slice_refs))]

pub mod error;
pub mod json;
pub mod rng;

pub mod autograd;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod io;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod ops;
pub mod report;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use rng::Philox;
