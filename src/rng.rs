//! Philox4x32-10: the one replayable source of randomness in aoanet.
//!
//! A counter-based generator (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
//! SC 2011): output block `b` is a pure function of (key, counter), so any element of any
//! stream can be computed independently, on the CPU or by a CUDA thread, in any order. That is
//! what makes dropout masks identical on both devices and a training run resumable bit for bit.
//!
//! Layout used throughout aoanet:
//! - key   = the 64-bit seed, `[seed as u32, seed >> 32]`;
//! - counter = `[block lo, block hi, stream lo, stream hi]`, where `block = offset / 4` and
//!   `offset` counts the 32-bit words already drawn from the stream;
//! - word `offset` of a stream is lane `offset % 4` of block `offset / 4`.
//!
//! The whole state is [`PhiloxState`] (seed, stream, offset): three integers a checkpoint stores.

use rand::RngCore;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Ten rounds of Philox4x32 on one counter block with one key (the Random123 reference
/// function `philox4x32_R(10, ctr, key)`).
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// Number of blocks computed together by the batched path: 16 lanes of 32-bit words fill one
/// AVX-512 register, so the compiler vectorises the rounds across blocks.
const LANES: usize = 16;

/// Philox4x32-10 for `LANES` consecutive blocks at once, written structure-of-arrays so that
/// each round is a handful of vector instructions. Returns the blocks' words block-major
/// (block 0 words 0..4, block 1 words 0..4, ...).
#[inline]
fn philox_lanes(first_block: u64, stream: u64, key: [u32; 2]) -> [u32; 4 * LANES] {
    let mut c0 = [0u32; LANES];
    let mut c1 = [0u32; LANES];
    let c2 = [stream as u32; LANES];
    let c3 = [(stream >> 32) as u32; LANES];
    for i in 0..LANES {
        let b = first_block.wrapping_add(i as u64);
        c0[i] = b as u32;
        c1[i] = (b >> 32) as u32;
    }
    let (mut c2, mut c3) = (c2, c3);
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let mut n0 = [0u32; LANES];
        let mut n1 = [0u32; LANES];
        let mut n2 = [0u32; LANES];
        let mut n3 = [0u32; LANES];
        for i in 0..LANES {
            let p0 = u64::from(M0) * u64::from(c0[i]);
            let p1 = u64::from(M1) * u64::from(c2[i]);
            n0[i] = (p1 >> 32) as u32 ^ c1[i] ^ k[0];
            n1[i] = p1 as u32;
            n2[i] = (p0 >> 32) as u32 ^ c3[i] ^ k[1];
            n3[i] = p0 as u32;
        }
        (c0, c1, c2, c3) = (n0, n1, n2, n3);
    }
    let mut out = [0u32; 4 * LANES];
    for i in 0..LANES {
        out[4 * i] = c0[i];
        out[4 * i + 1] = c1[i];
        out[4 * i + 2] = c2[i];
        out[4 * i + 3] = c3[i];
    }
    out
}

/// Everything needed to replay a [`Philox`] stream exactly: store it in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhiloxState {
    /// The key.
    pub seed: u64,
    /// The sub-stream (upper half of the counter).
    pub stream: u64,
    /// How many 32-bit words have been drawn from the stream.
    pub offset: u64,
}

/// A Philox4x32-10 stream: `(seed, stream)` fixed, `offset` advancing by one per 32-bit word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Philox {
    state: PhiloxState,
}

/// Converts a random word to a uniform `f32` in `[0, 1)` with 24 bits of resolution.
#[inline]
pub fn u32_to_unit_f32(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Converts a random word to a uniform `f64` in `[0, 1)` with 32 bits of resolution.
#[inline]
pub fn u32_to_unit_f64(x: u32) -> f64 {
    f64::from(x) * (1.0 / 4_294_967_296.0)
}

impl Philox {
    /// Stream 0 of `seed`, at offset 0.
    pub fn new(seed: u64) -> Self {
        Self::with_stream(seed, 0)
    }

    /// Stream `stream` of `seed`, at offset 0. Different streams of one seed never overlap.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        Philox {
            state: PhiloxState {
                seed,
                stream,
                offset: 0,
            },
        }
    }

    /// Restores a generator from a saved state.
    pub fn from_state(state: PhiloxState) -> Self {
        Philox { state }
    }

    /// The state to save; [`Philox::from_state`] continues exactly from here.
    pub fn state(&self) -> PhiloxState {
        self.state
    }

    /// Reserves the next `words` words of the stream for a device kernel that draws them by
    /// offset (dropout on a GPU): returns the state they start at and advances past them, as
    /// drawing them here would.
    pub fn reserve(&mut self, words: u64) -> PhiloxState {
        let start = self.state;
        self.state.offset += words;
        start
    }

    /// A new independent generator: same seed, stream derived from this one's next word pair.
    /// Used to hand a sub-task (e.g. one dropout call) its own reproducible stream.
    pub fn fork(&mut self) -> Philox {
        let stream = self.next_u64();
        Philox::with_stream(self.state.seed ^ 0x5851_F42D_4C95_7F2D, stream)
    }

    fn key(&self) -> [u32; 2] {
        [self.state.seed as u32, (self.state.seed >> 32) as u32]
    }

    /// The 32-bit word at `offset` of this generator's stream, without advancing.
    pub fn word_at(&self, offset: u64) -> u32 {
        let block = offset / 4;
        let s = self.state.stream;
        let out = philox4x32_10(
            [
                block as u32,
                (block >> 32) as u32,
                s as u32,
                (s >> 32) as u32,
            ],
            self.key(),
        );
        out[(offset % 4) as usize]
    }

    /// Fills `out` with the next `out.len()` words of the stream and advances past them.
    /// Equal, word for word, to calling `next_u32` `out.len()` times, but vectorised.
    pub fn fill_u32(&mut self, out: &mut [u32]) {
        let mut pos = 0;
        // Words before the next block boundary come one at a time.
        while pos < out.len() && !self.state.offset.is_multiple_of(4) {
            out[pos] = self.next_u32();
            pos += 1;
        }
        let key = self.key();
        let stream = self.state.stream;
        while out.len() - pos >= 4 * LANES {
            let words = philox_lanes(self.state.offset / 4, stream, key);
            out[pos..pos + 4 * LANES].copy_from_slice(&words);
            pos += 4 * LANES;
            self.state.offset += (4 * LANES) as u64;
        }
        while pos < out.len() {
            out[pos] = self.next_u32();
            pos += 1;
        }
    }

    /// Fills `out` with uniform values in `[0, 1)` ([`u32_to_unit_f32`] of consecutive words).
    pub fn fill_uniform_f32(&mut self, out: &mut [f32]) {
        let mut words = [0u32; 4 * LANES];
        for chunk in out.chunks_mut(4 * LANES) {
            let w = &mut words[..chunk.len()];
            self.fill_u32(w);
            for (o, &x) in chunk.iter_mut().zip(w.iter()) {
                *o = u32_to_unit_f32(x);
            }
        }
    }

    /// A uniform `f64` in `[0, 1)` from the next word.
    pub fn next_f64(&mut self) -> f64 {
        u32_to_unit_f64(self.next_u32())
    }

    /// A standard normal `f64` by Box–Muller from the next two words.
    pub fn next_normal(&mut self) -> f64 {
        // 1 - u keeps the argument of ln in (0, 1].
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A uniform integer in `0..n` (Lemire's multiply-shift with rejection, so unbiased).
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "Philox::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u64::from(self.next_u32()) * u64::from(n);
            if (m as u32) >= threshold {
                return (m >> 32) as u32;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates, drawing with [`Philox::below`]).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }
}

impl RngCore for Philox {
    fn next_u32(&mut self) -> u32 {
        let w = self.word_at(self.state.offset);
        self.state.offset += 1;
        w
    }

    fn next_u64(&mut self) -> u64 {
        let lo = self.next_u32();
        let hi = self.next_u32();
        u64::from(lo) | (u64::from(hi) << 32)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(4) {
            let w = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors from Random123's `kat_vectors` for philox4x32 with 10 rounds.
    #[test]
    fn known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn batched_fill_equals_word_by_word() {
        for start in [0u64, 1, 3, 4, 61, 1 << 33] {
            let mut a = Philox::with_stream(42, 7);
            let mut b = a.clone();
            a.state.offset = start;
            b.state.offset = start;
            let mut fast = vec![0u32; 301];
            a.fill_u32(&mut fast);
            let slow: Vec<u32> = (0..301).map(|_| b.next_u32()).collect();
            assert_eq!(fast, slow, "start {start}");
            assert_eq!(a.state(), b.state());
        }
    }

    #[test]
    fn reserve_skips_the_words_drawing_them_would_take() {
        let (mut drawn, mut reserved) = (Philox::new(7), Philox::new(7));
        let mut skipped = vec![0u32; 13];
        drawn.fill_u32(&mut skipped);
        let start = reserved.reserve(13);
        assert_eq!(start, Philox::new(7).state());
        assert_eq!(reserved.state(), drawn.state());
        assert_eq!(reserved.word_at(start.offset + 5), skipped[5]);
    }

    #[test]
    fn state_round_trip_replays() {
        let mut g = Philox::new(9);
        for _ in 0..5 {
            g.next_u32();
        }
        let saved = g.state();
        let next: Vec<u32> = (0..10).map(|_| g.next_u32()).collect();
        let mut h = Philox::from_state(saved);
        let again: Vec<u32> = (0..10).map(|_| h.next_u32()).collect();
        assert_eq!(next, again);
    }

    #[test]
    fn streams_and_seeds_differ() {
        let a: Vec<u32> = {
            let mut g = Philox::with_stream(1, 0);
            (0..8).map(|_| g.next_u32()).collect()
        };
        let b: Vec<u32> = {
            let mut g = Philox::with_stream(1, 1);
            (0..8).map(|_| g.next_u32()).collect()
        };
        let c: Vec<u32> = {
            let mut g = Philox::with_stream(2, 0);
            (0..8).map(|_| g.next_u32()).collect()
        };
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_and_normal_moments() {
        let mut g = Philox::new(3);
        let mut u = vec![0f32; 100_000];
        g.fill_uniform_f32(&mut u);
        let mean = u.iter().map(|&x| f64::from(x)).sum::<f64>() / u.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let n: Vec<f64> = (0..100_000).map(|_| g.next_normal()).collect();
        let m = n.iter().sum::<f64>() / n.len() as f64;
        let v = n.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n.len() as f64;
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.02, "{m} {v}");
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut g = Philox::new(5);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[g.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_replays() {
        let mut v: Vec<u32> = (0..100).collect();
        Philox::new(11).shuffle(&mut v);
        let mut w: Vec<u32> = (0..100).collect();
        Philox::new(11).shuffle(&mut w);
        assert_eq!(v, w);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
