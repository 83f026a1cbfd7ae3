//! The AoA model: configuration, refiner, decoder core, the model itself, and decoding.
//!
//! Read in this order: [`config`] (every switch with the reference's defaults), [`refiner`]
//! (the encoder), [`decoder`] (one step of the decoder core), [`aoa`] (the whole model:
//! feature preparation, the step API, teacher forcing), then [`decode`](mod@decode) (greedy, sampling
//! and beam search).

pub mod aoa;
pub mod categorical;
pub mod config;
pub mod decode;
pub mod decoder;
pub mod refiner;

pub use aoa::{AoaModel, Encoded, StepOutput};
pub use categorical::sample_from_logprobs;
pub use config::{AoaConfig, DecoderType};
pub use decode::{
    Beam, BeamResult, Caption, DecodeOptions, LengthPenalty, SampleMethod, Samples, bad_ending_ids,
    beam_search, decode, sample,
};
pub use decoder::DecoderState;
