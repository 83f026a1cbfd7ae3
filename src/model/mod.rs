//! The AoA model: refiner, decoder, `AoaModel`, and decoding (greedy, sampling, beam search).
