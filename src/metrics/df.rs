//! Document frequencies for CIDEr-D: for every n-gram (n = 1..=4), the number of images whose
//! reference set contains it, and the number of images they were counted over.
//!
//! Two users share this type:
//! * the evaluation-time CIDEr-D, whose frequencies come from the references of the evaluated
//!   images themselves (METRICS.md §4), built in memory with [`DfBuilder`];
//! * the self-critical training reward, whose frequencies are fixed and precomputed once over
//!   the training references (`aoanet-data ngrams`, AOANET.md §3.3 / `prepro_ngrams.py`),
//!   stored with [`DocumentFrequencies::write`] and loaded with [`DocumentFrequencies::read`].
//!
//! Counting follows the reference exactly: each image contributes **one** count to every n-gram
//! that occurs in **any** of its references (a set per image), whatever the number of
//! occurrences. For the training reward the caller passes each reference as the Karpathy tokens
//! mapped to vocabulary indices (out-of-vocabulary words as `UNK`) **with the EOS index 0
//! appended**, untruncated: that is what `prepro_ngrams.py` counts over `train` + `restval`.
//! `ref_len` is `ln(number of images)`, as `CiderD` computes it from the pickled image count.
//!
//! # File format (version 1, all integers little-endian)
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `AOANETDF` |
//! | 8 | 4 | version, `1` |
//! | 12 | 4 | bytes per token id, `2` or `4` (2 when every id fits in `u16`) |
//! | 16 | 8 | number of images |
//! | 24 | 4×8 | number of n-grams of order 1, 2, 3, 4 |
//! | 56 | … | order 1 entries, then order 2, 3, 4; an entry is `n` ids then its count as `u32`; entries of one order strictly ascending by their ids |
//! | end − 8 | 8 | FNV-1a 64 checksum of every byte before it |
//!
//! Reading checks every size, the ordering, each count (1 ..= number of images) and the
//! checksum; a truncated, corrupt or foreign file is an [`Error::Format`] naming the file.
//! Writing goes to a temporary file in the same folder, then renames it into place.

use super::hash::{FastMap, FastSet};
use super::ngram::{MAX_N, NgramCounts, NgramKey, ngram_ids, ngram_key, ngram_order};
use crate::{Error, Result};
use std::path::Path;

const MAGIC: &[u8; 8] = b"AOANETDF";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 4 * 8;
const CHECKSUM_LEN: usize = 8;

/// N-gram document frequencies and the image count behind them. See the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DocumentFrequencies {
    counts: FastMap<NgramKey, u32>,
    num_images: u64,
}

impl DocumentFrequencies {
    /// Counts the document frequencies of `images`, each a list of references, each a token-id
    /// sequence (see the module docs for what the training reward passes).
    pub fn from_images<I, R, S>(images: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[S]>,
        S: AsRef<[u32]>,
    {
        let mut b = DfBuilder::new();
        for refs in images {
            b.add_image(refs.as_ref());
        }
        b.finish()
    }

    /// Number of images the frequencies were counted over.
    pub fn num_images(&self) -> u64 {
        self.num_images
    }

    /// `ln(number of images)`: CIDEr-D's `ref_len`, the idf of an n-gram no image contains.
    pub fn ref_len(&self) -> f64 {
        (self.num_images as f64).ln()
    }

    /// Number of distinct n-grams.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no n-gram was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The number of images whose references contain `ngram` (1 to 4 ids), 0 if none.
    pub fn get(&self, ngram: &[u32]) -> u32 {
        self.get_key(ngram_key(ngram))
    }

    /// [`get`](Self::get) for a packed n-gram.
    #[inline]
    pub fn get_key(&self, key: NgramKey) -> u32 {
        self.counts.get(&key).copied().unwrap_or(0)
    }

    /// Every `(n-gram ids, count)`, by order and then ascending ids (the file order).
    pub fn sorted_entries(&self) -> Vec<(Vec<u32>, u32)> {
        let mut keyed: Vec<(usize, Vec<u32>, u32)> = self
            .counts
            .iter()
            .map(|(&k, &c)| (ngram_order(k), ngram_ids(k), c))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, ids, c)| (ids, c)).collect()
    }

    /// The file image of these frequencies (format in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries = self.sorted_entries();
        let max_id = entries
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .max()
            .unwrap_or(0);
        let id_bytes: usize = if max_id <= u32::from(u16::MAX) { 2 } else { 4 };
        let mut per_order = [0u64; MAX_N];
        for (ids, _) in &entries {
            per_order[ids.len() - 1] += 1;
        }
        let body: usize = entries
            .iter()
            .map(|(ids, _)| ids.len() * id_bytes + 4)
            .sum();
        let mut out = Vec::with_capacity(HEADER_LEN + body + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(id_bytes as u32).to_le_bytes());
        out.extend_from_slice(&self.num_images.to_le_bytes());
        for n in per_order {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for (ids, count) in &entries {
            for &id in ids {
                if id_bytes == 2 {
                    out.extend_from_slice(&(id as u16).to_le_bytes());
                } else {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
            out.extend_from_slice(&count.to_le_bytes());
        }
        let sum = fnv1a64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses a file image; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |problem: String| Error::format(path, problem);
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(bad(
                "not an aoanet document-frequency file (magic AOANETDF missing)".into(),
            ));
        }
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(bad(format!(
                "truncated: {} bytes, shorter than the {}-byte header and checksum",
                bytes.len(),
                HEADER_LEN + CHECKSUM_LEN
            )));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "document-frequency format version {version}; this build reads version {VERSION}"
            )));
        }
        let id_bytes = u32_at(12) as usize;
        if id_bytes != 2 && id_bytes != 4 {
            return Err(bad(format!(
                "token ids of {id_bytes} bytes (expected 2 or 4)"
            )));
        }
        let num_images = u64_at(16);
        let mut per_order = [0u64; MAX_N];
        let mut expected = (HEADER_LEN + CHECKSUM_LEN) as u128;
        for (n, slot) in per_order.iter_mut().enumerate() {
            *slot = u64_at(24 + 8 * n);
            expected += u128::from(*slot) * ((n + 1) * id_bytes + 4) as u128;
        }
        if expected != bytes.len() as u128 {
            let what = if (bytes.len() as u128) < expected {
                "truncated"
            } else {
                "trailing bytes"
            };
            return Err(bad(format!(
                "{what}: the header describes {expected} bytes, the file has {}",
                bytes.len()
            )));
        }
        let (payload, tail) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let stored = u64::from_le_bytes(tail.try_into().expect("8"));
        if stored != fnv1a64(payload) {
            return Err(bad("checksum mismatch: the file is corrupt".into()));
        }
        let total: u64 = per_order.iter().sum();
        let mut counts = FastMap::default();
        counts.reserve(total as usize);
        let mut at = HEADER_LEN;
        let mut ids = [0u32; MAX_N];
        for (n0, &entries) in per_order.iter().enumerate() {
            let n = n0 + 1;
            let mut prev: Option<[u32; MAX_N]> = None;
            for i in 0..entries {
                for id in ids.iter_mut().take(n) {
                    *id = if id_bytes == 2 {
                        u32::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
                    } else {
                        u32_at(at)
                    };
                    at += id_bytes;
                }
                let count = u32_at(at);
                at += 4;
                if ids[..n].contains(&u32::MAX) {
                    return Err(bad(format!(
                        "order-{n} entry {i} holds the reserved token id {}",
                        u32::MAX
                    )));
                }
                if count == 0 || u64::from(count) > num_images {
                    return Err(bad(format!(
                        "order-{n} entry {i} has count {count}, outside 1..={num_images} (the image count)"
                    )));
                }
                let mut cur = [0u32; MAX_N];
                cur[..n].copy_from_slice(&ids[..n]);
                if prev.is_some_and(|p| p[..n] >= cur[..n]) {
                    return Err(bad(format!(
                        "order-{n} entries not strictly ascending at entry {i}"
                    )));
                }
                prev = Some(cur);
                counts.insert(ngram_key(&ids[..n]), count);
            }
        }
        Ok(DocumentFrequencies { counts, num_images })
    }

    /// Writes the frequencies to `path` atomically (temporary file, then rename).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_file(path.as_ref(), &self.to_bytes())
    }

    /// Reads frequencies written by [`write`](Self::write), validating everything.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }
}

/// Counts document frequencies image by image.
#[derive(Clone, Debug, Default)]
pub struct DfBuilder {
    counts: FastMap<NgramKey, u32>,
    num_images: u64,
    seen: FastSet<NgramKey>,
}

impl DfBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one image: every n-gram (n = 1..=4) of any of `refs` counts once.
    pub fn add_image<S: AsRef<[u32]>>(&mut self, refs: &[S]) {
        self.seen.clear();
        for r in refs {
            let r = r.as_ref();
            for n in 1..=MAX_N.min(r.len()) {
                for w in r.windows(n) {
                    self.seen.insert(ngram_key(w));
                }
            }
        }
        for &k in &self.seen {
            *self.counts.entry(k).or_insert(0) += 1;
        }
        self.num_images += 1;
    }

    /// [`add_image`](Self::add_image) from the references' precomputed n-gram counts.
    pub fn add_image_counts(&mut self, refs: &[&NgramCounts]) {
        self.seen.clear();
        for r in refs {
            for &(k, _) in r.all() {
                self.seen.insert(k);
            }
        }
        for &k in &self.seen {
            *self.counts.entry(k).or_insert(0) += 1;
        }
        self.num_images += 1;
    }

    /// Adds the counts of another builder (e.g. one that counted a different shard of images).
    pub fn merge(&mut self, other: DfBuilder) {
        for (k, c) in other.counts {
            *self.counts.entry(k).or_insert(0) += c;
        }
        self.num_images += other.num_images;
    }

    /// Images added so far.
    pub fn num_images(&self) -> u64 {
        self.num_images
    }

    /// The frequencies counted so far.
    pub fn finish(self) -> DocumentFrequencies {
        DocumentFrequencies {
            counts: self.counts,
            num_images: self.num_images,
        }
    }
}

/// Evaluation-time document frequencies counted on several threads: n-grams are split over
/// shards by hash, each thread counts its shard over all images, and every image gets the
/// frequency of each of its distinct reference n-grams back by index (no second hash lookup).
/// When every token id fits 16 bits (any realistic vocabulary) keys are stored in 64 bits,
/// halving the tables the counting walks through.
pub(crate) struct ShardedDf {
    shards: Shards,
    num_images: u64,
}

enum Shards {
    Narrow(Vec<Shard<u64>>),
    Wide(Vec<Shard<NgramKey>>),
}

/// One shard: key → local index, and the counts by local index.
type Shard<K> = (FastMap<K, u32>, Vec<u32>);

/// Bits of a shard-local index; the shard number sits above them.
const LOCAL_BITS: u32 = 27;

/// A key type for the shard maps.
trait ShardKey: Copy + Eq + std::hash::Hash + Send + Sync {
    fn from_ngram(key: NgramKey) -> Option<Self>;
}

impl ShardKey for NgramKey {
    fn from_ngram(key: NgramKey) -> Option<Self> {
        Some(key)
    }
}

impl ShardKey for u64 {
    /// The four lanes (`id + 1`) in 16 bits each, if they fit.
    fn from_ngram(key: NgramKey) -> Option<Self> {
        let mut out = 0u64;
        for i in 0..4 {
            let lane = (key >> (32 * i)) as u32;
            if lane > 0xFFFF {
                return None;
            }
            out |= u64::from(lane) << (16 * i);
        }
        Some(out)
    }
}

fn shard_of<K: ShardKey>(key: K, shards: usize) -> usize {
    use std::hash::BuildHasher;
    let h = super::hash::FastBuild::default().hash_one(key);
    ((h >> 32) as usize) % shards
}

/// Counts `images` into `shards` maps keyed by `K` (every key must convert).
fn count_sharded<K: ShardKey>(
    images: &[&[NgramKey]],
    shards: usize,
) -> (Vec<Shard<K>>, Vec<Vec<u32>>) {
    use std::sync::atomic::{AtomicU32, Ordering};
    let total: usize = images.iter().map(|k| k.len()).sum();
    // Distinct n-grams are typically about half of all per-image ones.
    let expect = total / (2 * shards) + 1;
    let offsets: Vec<usize> = images
        .iter()
        .scan(0, |acc, k| {
            let o = *acc;
            *acc += k.len();
            Some(o)
        })
        .collect();
    let gids: Vec<AtomicU32> = (0..total).map(|_| AtomicU32::new(0)).collect();
    let count_shard = |t: usize| {
        let mut map: FastMap<K, u32> = FastMap::default();
        map.reserve(expect);
        let mut counts: Vec<u32> = Vec::with_capacity(expect);
        for (keys, &off) in images.iter().zip(&offsets) {
            for (j, &k) in keys.iter().enumerate() {
                let k = K::from_ngram(k).expect("key fits the shard key type");
                if shards > 1 && shard_of(k, shards) != t {
                    continue;
                }
                let id = *map.entry(k).or_insert_with(|| {
                    counts.push(0);
                    (counts.len() - 1) as u32
                });
                counts[id as usize] += 1;
                gids[off + j].store(((t as u32) << LOCAL_BITS) | id, Ordering::Relaxed);
            }
        }
        (map, counts)
    };
    let built: Vec<Shard<K>> = if shards == 1 {
        vec![count_shard(0)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..shards)
                .map(|t| s.spawn(move || count_shard(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("df worker thread panicked"))
                .collect()
        })
    };
    let mask = (1u32 << LOCAL_BITS) - 1;
    let per_image = images
        .iter()
        .zip(&offsets)
        .map(|(keys, &off)| {
            (0..keys.len())
                .map(|j| {
                    let g = gids[off + j].load(Ordering::Relaxed);
                    built[(g >> LOCAL_BITS) as usize].1[(g & mask) as usize]
                })
                .collect()
        })
        .collect();
    (built, per_image)
}

fn lookup<K: ShardKey>(shards: &[Shard<K>], key: K) -> u32 {
    let (map, counts) = &shards[shard_of(key, shards.len())];
    map.get(&key).map_or(0, |&id| counts[id as usize])
}

impl ShardedDf {
    /// Counts `images` (each image's distinct reference n-grams, e.g. `SlottedRefs::sorted_keys`)
    /// and returns, per image and n-gram, the n-gram's document frequency.
    pub(crate) fn build(images: &[&[NgramKey]]) -> (Self, Vec<Vec<u32>>) {
        let hw = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total: usize = images.iter().map(|k| k.len()).sum();
        let shards = hw.min(8).min(total / 50_000 + 1).max(1);
        let narrow = images
            .iter()
            .all(|keys| keys.iter().all(|&k| u64::from_ngram(k).is_some()));
        let (shards, per_image) = if narrow {
            let (s, p) = count_sharded::<u64>(images, shards);
            (Shards::Narrow(s), p)
        } else {
            let (s, p) = count_sharded::<NgramKey>(images, shards);
            (Shards::Wide(s), p)
        };
        (
            ShardedDf {
                shards,
                num_images: images.len() as u64,
            },
            per_image,
        )
    }

    /// The document frequency of `key` (0 if no image has it).
    pub(crate) fn get(&self, key: NgramKey) -> u32 {
        match &self.shards {
            // A key that does not fit 64 bits is in no image: every stored one fits.
            Shards::Narrow(s) => u64::from_ngram(key).map_or(0, |k| lookup(s, k)),
            Shards::Wide(s) => lookup(s, key),
        }
    }

    /// Number of images counted.
    pub(crate) fn num_images(&self) -> u64 {
        self.num_images
    }
}

/// FNV-1a, 64-bit: enough to tell a damaged file from a good one.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DocumentFrequencies {
        // Two images; "1 2" occurs twice in image 0 but counts once for it.
        DocumentFrequencies::from_images([
            vec![vec![1u32, 2, 0], vec![1, 2, 1, 2, 0]],
            vec![vec![2, 3, 0]],
        ])
    }

    #[test]
    fn one_count_per_image_whatever_the_occurrences() {
        let df = sample();
        assert_eq!(df.num_images(), 2);
        assert_eq!(df.get(&[1, 2]), 1);
        assert_eq!(df.get(&[2]), 2);
        assert_eq!(df.get(&[0]), 2);
        assert_eq!(df.get(&[2, 0]), 1);
        assert_eq!(df.get(&[1, 2, 1, 2]), 1);
        assert_eq!(df.get(&[3, 3]), 0);
        assert_eq!(df.ref_len(), 2f64.ln());
    }

    #[test]
    fn bytes_round_trip_with_narrow_and_wide_ids() {
        let df = sample();
        let p = Path::new("mem.df");
        assert_eq!(
            DocumentFrequencies::from_bytes(&df.to_bytes(), p).unwrap(),
            df
        );
        let wide = DocumentFrequencies::from_images([vec![vec![70_000u32, 1, 70_000]]]);
        let bytes = wide.to_bytes();
        assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().unwrap()), 4);
        assert_eq!(DocumentFrequencies::from_bytes(&bytes, p).unwrap(), wide);
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let bytes = sample().to_bytes();
        let p = Path::new("/data/train-df.bin");
        let check = |b: &[u8], needle: &str| {
            let e = DocumentFrequencies::from_bytes(b, p)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("/data/train-df.bin") && e.contains(needle),
                "{e}"
            );
        };
        check(&bytes[..bytes.len() - 3], "truncated");
        check(&bytes[..20], "truncated");
        check(b"PK\x03\x04 a zip file, not ours", "magic");
        let mut extra = bytes.clone();
        extra.push(0);
        check(&extra, "trailing bytes");
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 1] ^= 0x40;
        check(&flipped, "checksum");
        let mut version = bytes.clone();
        version[8] = 9;
        check(&version, "version 9");
    }

    #[test]
    fn sharded_counting_equals_the_builder() {
        let sentences: Vec<Vec<u32>> = (0..3000u32)
            .map(|i| vec![i % 17, i % 5, i % 11, i % 3])
            .collect();
        let counts: Vec<NgramCounts> = sentences.iter().map(|s| NgramCounts::new(s)).collect();
        let images: Vec<Vec<NgramKey>> = counts
            .chunks(3)
            .map(|c| {
                let refs: Vec<&NgramCounts> = c.iter().collect();
                super::super::ngram::SlottedRefs::new(&refs).sorted_keys
            })
            .collect();
        let views: Vec<&[NgramKey]> = images.iter().map(|k| k.as_slice()).collect();
        let (sharded, per_image) = ShardedDf::build(&views);
        let reference = DocumentFrequencies::from_images(sentences.chunks(3));
        assert_eq!(sharded.num_images(), reference.num_images());
        for (keys, dfs) in images.iter().zip(&per_image) {
            for (&k, &d) in keys.iter().zip(dfs) {
                assert_eq!(d, reference.get_key(k));
                assert_eq!(sharded.get(k), d);
            }
        }
        assert_eq!(sharded.get(ngram_key(&[99, 99])), 0);
        assert_eq!(sharded.get(ngram_key(&[70_000])), 0);
        // Wide ids take the 128-bit path and count the same.
        let wide = [
            vec![ngram_key(&[70_000, 1])],
            vec![ngram_key(&[70_000, 1]), ngram_key(&[2])],
        ];
        let views: Vec<&[NgramKey]> = wide.iter().map(|k| k.as_slice()).collect();
        let (sharded, per_image) = ShardedDf::build(&views);
        assert_eq!(per_image, vec![vec![2], vec![2, 1]]);
        assert_eq!(sharded.get(ngram_key(&[2])), 1);
    }

    #[test]
    fn write_is_atomic_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("aoanet-df-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("train-df.bin");
        let df = sample();
        df.write(&path).unwrap();
        assert_eq!(DocumentFrequencies::read(&path).unwrap(), df);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");
        let missing = DocumentFrequencies::read(dir.join("nope.bin"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.bin"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
