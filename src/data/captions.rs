//! Captions: every image's id and split, its captions as token ids (full length; the loader
//! truncates to `seq_length`), and the raw reference sentences, untruncated, for evaluation.
//!
//! # `captions.bin` (version 1, little-endian)
//!
//! ```text
//! offset  size  field
//!      0     8  magic "AOACAPTS"
//!      8     4  version = 1
//!     12     4  max_length: the label length the data was prepared for (16)
//!     16     4  vocab_size V: every token id is in 1..=V
//!     20     4  0
//!     24     8  images            32  8  captions
//!     40     8  tokens            48  8  raw text bytes
//!     56     8  FNV-1a 64 of bytes 0..56 and of everything after the header
//!     64        images × {id u64, split u32 (0 train, 1 val, 2 test), captions u32}
//!               captions × {tokens u32, raw bytes u32}   (in image order)
//!               tokens × u32                             (in caption order)
//!               raw UTF-8 text                           (in caption order)
//! ```
//!
//! The file is small (COCO: about 60 MB) and is read whole and validated on open.

use super::bytes::{check_little_endian, fnv1a64, u32_at, u64_at};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The first 8 bytes of a captions file.
pub const MAGIC: [u8; 8] = *b"AOACAPTS";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;

/// A dataset split. Karpathy's `restval` is training data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training images (Karpathy `train` + `restval`).
    Train,
    /// Validation images.
    Val,
    /// Test images.
    Test,
}

impl Split {
    /// All splits, in code order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// `train`, `val` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Parses a split name; `restval` is `train`.
    pub fn parse(s: &str) -> Result<Split> {
        match s {
            "train" | "restval" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            _ => Err(Error::invalid(format!(
                "unknown split `{s}` (expected train, restval, val or test)"
            ))),
        }
    }

    fn code(self) -> u32 {
        match self {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }
    }

    fn from_code(c: u32) -> Option<Split> {
        Split::ALL.get(c as usize).copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ImageRecord {
    id: u64,
    split: Split,
    first: usize,
    count: usize,
}

/// All captions of a dataset; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captions {
    max_length: usize,
    vocab_size: usize,
    images: Vec<ImageRecord>,
    /// Caption k's tokens are `tokens[tok_start[k]..tok_start[k + 1]]`.
    tok_start: Vec<usize>,
    tokens: Vec<u32>,
    /// Caption k's raw text is `raw[raw_start[k]..raw_start[k + 1]]`.
    raw_start: Vec<usize>,
    raw: String,
    by_id: HashMap<u64, usize>,
}

/// One image's captions, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ImageCaptions<'a> {
    /// The image id.
    pub id: u64,
    /// Its split.
    pub split: Split,
    all: &'a Captions,
    first: usize,
    count: usize,
}

impl<'a> ImageCaptions<'a> {
    /// Number of captions (at least 1).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: every image has a caption.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Token ids of caption `j`, full length, no BOS/EOS.
    pub fn tokens(&self, j: usize) -> &'a [u32] {
        assert!(j < self.count, "caption {j} of {}", self.count);
        let k = self.first + j;
        &self.all.tokens[self.all.tok_start[k]..self.all.tok_start[k + 1]]
    }

    /// The raw reference sentence of caption `j`.
    pub fn raw(&self, j: usize) -> &'a str {
        assert!(j < self.count, "caption {j} of {}", self.count);
        let k = self.first + j;
        &self.all.raw[self.all.raw_start[k]..self.all.raw_start[k + 1]]
    }
}

impl Captions {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Total number of captions.
    pub fn num_captions(&self) -> usize {
        self.tok_start.len() - 1
    }

    /// Total number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// The label length the data was prepared for (the reference's 16).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// V: token ids are in 1..=V.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The image at `position` (file order).
    pub fn image(&self, position: usize) -> ImageCaptions<'_> {
        let r = self.images[position];
        ImageCaptions {
            id: r.id,
            split: r.split,
            all: self,
            first: r.first,
            count: r.count,
        }
    }

    /// The position of image `id`.
    pub fn position(&self, id: u64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// Images in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ImageCaptions<'_>> + '_ {
        (0..self.len()).map(|i| self.image(i))
    }

    /// Positions of the images of `split`, in file order.
    pub fn split_positions(&self, split: Split) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.images[i].split == split)
            .collect()
    }

    /// Encodes the `captions.bin` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n_caps = self.num_captions();
        let body_len = self.images.len() * 16 + n_caps * 8 + self.tokens.len() * 4 + self.raw.len();
        let mut out = Vec::with_capacity(HEADER_LEN + body_len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.max_length as u32).to_le_bytes());
        out.extend_from_slice(&(self.vocab_size as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for n in [self.images.len(), n_caps, self.tokens.len(), self.raw.len()] {
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
        out.extend_from_slice(&[0; 8]);
        for r in &self.images {
            out.extend_from_slice(&r.id.to_le_bytes());
            out.extend_from_slice(&r.split.code().to_le_bytes());
            out.extend_from_slice(&(r.count as u32).to_le_bytes());
        }
        for k in 0..n_caps {
            let t = self.tok_start[k + 1] - self.tok_start[k];
            let r = self.raw_start[k + 1] - self.raw_start[k];
            out.extend_from_slice(&(t as u32).to_le_bytes());
            out.extend_from_slice(&(r as u32).to_le_bytes());
        }
        out.extend_from_slice(bytemuck::cast_slice(&self.tokens));
        out.extend_from_slice(self.raw.as_bytes());
        let h = fnv1a64(&[&out[..56], &out[HEADER_LEN..]]);
        out[56..64].copy_from_slice(&h.to_le_bytes());
        out
    }

    /// Writes `captions.bin` atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_file(path, &self.to_bytes())
    }

    /// Reads and validates `captions.bin`.
    pub fn read(path: impl AsRef<Path>) -> Result<Captions> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses and validates `captions.bin` bytes; `name` stands for the file in errors.
    pub fn from_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Captions> {
        let path = name.as_ref();
        check_little_endian(path)?;
        let fail = |p: String| Error::format(path, p);
        let m = bytes.len().min(8);
        if bytes[..m] != MAGIC[..m] {
            return Err(fail(
                "not an aoanet captions file (bad magic; expected \"AOACAPTS\")".into(),
            ));
        }
        if bytes.len() < HEADER_LEN {
            return Err(fail(format!(
                "truncated: expected at least {HEADER_LEN} bytes (the header), found {}",
                bytes.len()
            )));
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(fail(format!(
                "unsupported captions version {version} (this build reads version {VERSION})"
            )));
        }
        let max_length = u32_at(bytes, 12) as usize;
        let vocab_size = u32_at(bytes, 16) as usize;
        let [n_img, n_cap, n_tok, n_raw] = [24, 32, 40, 48].map(|at| u64_at(bytes, at));
        let expect = [(n_img, 16), (n_cap, 8), (n_tok, 4), (n_raw, 1)]
            .iter()
            .try_fold(HEADER_LEN as u64, |acc, &(n, size)| {
                n.checked_mul(size).and_then(|s| s.checked_add(acc))
            });
        let Some(expect) = expect else {
            return Err(fail("header counts overflow: the header is damaged".into()));
        };
        let len = bytes.len() as u64;
        if len < expect {
            return Err(fail(format!(
                "truncated: expected {expect} bytes, found {len}"
            )));
        }
        if len > expect {
            return Err(fail(format!(
                "{} unexpected bytes after the end (expected {expect} bytes, found {len})",
                len - expect
            )));
        }
        if fnv1a64(&[&bytes[..56], &bytes[HEADER_LEN..]]) != u64_at(bytes, 56) {
            return Err(fail("checksum mismatch: the file is damaged".into()));
        }
        // All counts now fit the file, hence usize.
        let (n_img, n_cap, n_tok) = (n_img as usize, n_cap as usize, n_tok as usize);
        let img_at = HEADER_LEN;
        let cap_at = img_at + n_img * 16;
        let tok_at = cap_at + n_cap * 8;
        let raw_at = tok_at + n_tok * 4;

        let mut images = Vec::with_capacity(n_img);
        let mut by_id = HashMap::with_capacity(n_img);
        let mut first = 0usize;
        for i in 0..n_img {
            let at = img_at + i * 16;
            let id = u64_at(bytes, at);
            let split = Split::from_code(u32_at(bytes, at + 8))
                .ok_or_else(|| fail(format!("image {id}: unknown split code")))?;
            let count = u32_at(bytes, at + 12) as usize;
            if count == 0 {
                return Err(fail(format!("image {id} has no captions")));
            }
            if let Some(prev) = by_id.insert(id, i) {
                return Err(fail(format!(
                    "duplicate image id {id} (images #{prev} and #{i})"
                )));
            }
            images.push(ImageRecord {
                id,
                split,
                first,
                count,
            });
            first += count;
        }
        if first != n_cap {
            return Err(fail(format!(
                "images claim {first} captions, the header says {n_cap}"
            )));
        }
        let mut tok_start = Vec::with_capacity(n_cap + 1);
        let mut raw_start = Vec::with_capacity(n_cap + 1);
        let (mut t, mut r) = (0usize, 0usize);
        tok_start.push(0);
        raw_start.push(0);
        for k in 0..n_cap {
            t += u32_at(bytes, cap_at + k * 8) as usize;
            r += u32_at(bytes, cap_at + k * 8 + 4) as usize;
            tok_start.push(t);
            raw_start.push(r);
        }
        if t != n_tok || r != n_raw as usize {
            return Err(fail(format!(
                "captions claim {t} tokens and {r} text bytes, the header says {n_tok} and {n_raw}"
            )));
        }
        let tokens: Vec<u32> = bytes[tok_at..raw_at]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if let Some(k) = tokens
            .iter()
            .position(|&w| w == 0 || w as usize > vocab_size)
        {
            return Err(fail(format!(
                "token #{k} is {}, outside 1..={vocab_size}",
                tokens[k]
            )));
        }
        let raw = std::str::from_utf8(&bytes[raw_at..])
            .map_err(|e| fail(format!("caption text is not UTF-8: {e}")))?
            .to_string();
        if let Some(k) = raw_start.iter().position(|&s| !raw.is_char_boundary(s)) {
            return Err(fail(format!(
                "caption #{k} starts inside a UTF-8 character"
            )));
        }
        Ok(Captions {
            max_length,
            vocab_size,
            images,
            tok_start,
            tokens,
            raw_start,
            raw,
            by_id,
        })
    }
}

/// Builds a [`Captions`] image by image.
#[derive(Debug)]
pub struct CaptionsBuilder {
    c: Captions,
    name: PathBuf,
}

impl CaptionsBuilder {
    /// An empty set for a vocabulary of `vocab_size` words and labels of `max_length` tokens.
    pub fn new(vocab_size: usize, max_length: usize) -> Self {
        CaptionsBuilder {
            c: Captions {
                max_length,
                vocab_size,
                images: Vec::new(),
                tok_start: vec![0],
                tokens: Vec::new(),
                raw_start: vec![0],
                raw: String::new(),
                by_id: HashMap::new(),
            },
            name: PathBuf::from("captions"),
        }
    }

    /// Starts image `id`; its captions follow with [`CaptionsBuilder::add_caption`].
    pub fn add_image(&mut self, id: u64, split: Split) -> Result<()> {
        self.check_last()?;
        if let Some(&prev) = self.c.by_id.get(&id) {
            return Err(Error::invalid(format!(
                "duplicate image id {id} (images #{prev} and #{})",
                self.c.images.len()
            )));
        }
        self.c.by_id.insert(id, self.c.images.len());
        self.c.images.push(ImageRecord {
            id,
            split,
            first: self.c.num_captions(),
            count: 0,
        });
        Ok(())
    }

    /// Adds a caption (token ids in 1..=V, and its raw sentence) to the current image.
    pub fn add_caption(&mut self, tokens: &[u32], raw: &str) -> Result<()> {
        let Some(img) = self.c.images.last_mut() else {
            return Err(Error::invalid("add_caption before add_image"));
        };
        if let Some(&w) = tokens
            .iter()
            .find(|&&w| w == 0 || w as usize > self.c.vocab_size)
        {
            return Err(Error::invalid(format!(
                "image {}: token id {w} outside 1..={}",
                img.id, self.c.vocab_size
            )));
        }
        if tokens.len() > u32::MAX as usize || raw.len() > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "image {}: caption too long",
                img.id
            )));
        }
        img.count += 1;
        self.c.tokens.extend_from_slice(tokens);
        self.c.tok_start.push(self.c.tokens.len());
        self.c.raw.push_str(raw);
        self.c.raw_start.push(self.c.raw.len());
        Ok(())
    }

    fn check_last(&self) -> Result<()> {
        match self.c.images.last() {
            Some(r) if r.count == 0 => Err(Error::invalid(format!(
                "{}: image {} has no captions",
                self.name.display(),
                r.id
            ))),
            _ => Ok(()),
        }
    }

    /// The finished set; every image must have at least one caption.
    pub fn finish(self) -> Result<Captions> {
        self.check_last()?;
        Ok(self.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Captions {
        let mut b = CaptionsBuilder::new(9, 16);
        b.add_image(100, Split::Train).unwrap();
        b.add_caption(&[1, 2, 3], "a b c").unwrap();
        b.add_caption(&[4], "d. ").unwrap();
        b.add_image(5, Split::Test).unwrap();
        b.add_caption(&[9, 9], "ünï ünï").unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn round_trip_and_access() {
        let c = sample();
        let back = Captions::from_bytes(&c.to_bytes(), "c.bin").unwrap();
        assert_eq!(back, c);
        let img = back.image(back.position(5).unwrap());
        assert_eq!(img.split, Split::Test);
        assert_eq!(img.tokens(0), [9, 9]);
        assert_eq!(img.raw(0), "ünï ünï");
        assert_eq!(back.image(0).raw(1), "d. ");
        assert_eq!(back.split_positions(Split::Train), [0]);
        assert_eq!(back.num_captions(), 3);
    }

    #[test]
    fn damage_is_named() {
        let bytes = sample().to_bytes();
        for cut in 0..bytes.len() {
            let e = Captions::from_bytes(&bytes[..cut], "c.bin").unwrap_err();
            assert!(e.to_string().starts_with("c.bin: "), "{e}");
        }
        for k in 0..bytes.len() {
            let mut b = bytes.clone();
            b[k] ^= 0x10;
            let e = Captions::from_bytes(&b, "c.bin").unwrap_err();
            assert!(e.to_string().starts_with("c.bin: "), "{e}");
        }
    }

    #[test]
    fn builder_refuses_bad_input() {
        let mut b = CaptionsBuilder::new(3, 16);
        b.add_image(1, Split::Val).unwrap();
        assert!(b.add_caption(&[4], "x").is_err());
        assert!(b.add_caption(&[0], "x").is_err());
        assert!(
            b.add_image(2, Split::Val).is_err(),
            "image 1 has no caption"
        );
        b.add_caption(&[3], "x").unwrap();
        assert!(b.add_image(1, Split::Train).is_err(), "duplicate id");
    }
}
