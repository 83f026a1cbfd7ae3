//! The feature store: every image's region features (and boxes) in one file, memory-mapped and
//! read with zero copies.
//!
//! # Format (version 1, little-endian)
//!
//! ```text
//! offset  size  field
//!      0     8  magic "AOAFEATS"
//!      8     4  version = 1
//!     12     4  dtype: 1 = f32, 2 = f16 (IEEE binary16)
//!     16     4  dim: feature values per region (2048 for bottom-up features)
//!     20     4  box_dim: 4 (x1, y1, x2, y2 as f32, pixels) or 0 (no boxes)
//!     24     8  count: images
//!     32     8  index_offset (64-aligned)
//!     40     8  file_len = index_offset + 24 * count
//!     48     8  FNV-1a 64 of the index
//!     56     8  FNV-1a 64 of bytes 0..56 (the header)
//!     64        image blocks, one per image in index order, each starting 64-aligned:
//!                 features [regions, dim] dtype, then (4-aligned) boxes [regions, box_dim] f32
//! index_offset  count entries of 24 bytes: image id u64, block offset u64, regions u32, 0u32
//! ```
//!
//! [`FeatureStore::open`] validates all of it (magic, version, checksums, sizes, every block
//! offset, duplicate ids) in O(images) and names the file and the problem on any mismatch, so
//! no input can make a later read go out of bounds. The index sits at the end so that
//! [`FeatureStoreWriter`] can stream images of unknown count in constant memory (the index is
//! 24 bytes per image) and then finish with an atomic rename.
//!
//! A store can also live in memory ([`FeatureStoreWriter::in_memory`]): the synthetic world
//! uses it, so the demo and the loader run the same code on disk and in memory.

use super::bytes::{align_up, check_little_endian, fnv1a64, u32_at, u64_at};
use crate::io::AtomicFile;
use crate::{Error, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The first 8 bytes of every feature store.
pub const MAGIC: [u8; 8] = *b"AOAFEATS";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 64;
/// Index entry size in bytes.
pub const ENTRY_LEN: usize = 24;
/// Values per box (x1, y1, x2, y2) when a store has boxes.
pub const BOX_DIM: usize = 4;

/// How region features are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit floats, exactly as given.
    F32,
    /// IEEE half floats: half the size; values keep about 3 significant digits.
    F16,
}

impl Dtype {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    /// The name used on command lines and in `inspect`: `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }

    /// Parses `f32` / `f16`.
    pub fn parse(s: &str) -> Result<Dtype> {
        match s {
            "f32" => Ok(Dtype::F32),
            "f16" => Ok(Dtype::F16),
            _ => Err(Error::invalid(format!(
                "unknown feature dtype `{s}` (expected f32 or f16)"
            ))),
        }
    }

    fn code(self) -> u32 {
        match self {
            Dtype::F32 => 1,
            Dtype::F16 => 2,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// One image's regions, borrowed from the store.
#[derive(Clone, Copy, Debug)]
pub struct Regions<'a> {
    /// The image id.
    pub image_id: u64,
    /// Number of regions.
    pub count: usize,
    /// Values per region.
    pub dim: usize,
    /// `[count, dim]`, row-major.
    pub feats: Feats<'a>,
    /// `[count, 4]` boxes (x1, y1, x2, y2), if the store has them.
    pub boxes: Option<&'a [f32]>,
}

/// Region features in the store's dtype.
#[derive(Clone, Copy, Debug)]
pub enum Feats<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
}

impl Feats<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Feats::F32(v) => v.len(),
            Feats::F16(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the values as f32 into `out`, which must have exactly [`Feats::len`] elements.
    pub fn copy_to_f32(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.len(), "copy_to_f32: output length");
        match self {
            Feats::F32(v) => out.copy_from_slice(v),
            Feats::F16(v) => v.convert_to_f32_slice(out),
        }
    }

    /// The values as a new f32 vector.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.copy_to_f32(&mut out);
        out
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u64,
    offset: u64,
    regions: u32,
}

/// The bytes behind a store: a read-only memory map, or an owned buffer kept 8-byte aligned so
/// the zero-copy casts are valid (every section offset is a multiple of 4).
#[derive(Debug)]
enum Backing {
    Mmap(memmap2::Mmap),
    Owned(Vec<u64>, usize),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(words, len) => &bytemuck::cast_slice::<u64, u8>(words)[..*len],
        }
    }
}

/// A validated feature store; see the module docs. Random access by image id is O(1).
#[derive(Debug)]
pub struct FeatureStore {
    path: PathBuf,
    backing: Backing,
    dtype: Dtype,
    dim: usize,
    has_boxes: bool,
    entries: Vec<Entry>,
    by_id: HashMap<u64, u32>,
}

struct Header {
    dtype: Dtype,
    dim: usize,
    box_dim: usize,
    count: u64,
    index_offset: u64,
    file_len: u64,
    index_hash: u64,
}

impl FeatureStore {
    /// Opens and validates the store at `path` (memory-mapped).
    pub fn open(path: impl AsRef<Path>) -> Result<FeatureStore> {
        let path = path.as_ref();
        check_little_endian(path)?;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < HEADER_LEN as u64 {
            // Too short to map usefully (and a zero-length map is refused by some systems).
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            return Err(parse_header(&bytes, path)
                .err()
                .unwrap_or_else(|| Error::format(path, "truncated header")));
        }
        // SAFETY: the map is read-only and we never form a mutable reference into it. A file
        // changed by another process while mapped is outside what any mmap reader can guard
        // against; our own writers never modify a published store in place (they write a new
        // file and rename it over the old one, which leaves existing maps intact).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::validate(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Validates a store held in memory; `name` stands for the file in errors.
    pub fn from_bytes(bytes: &[u8], name: impl Into<PathBuf>) -> Result<FeatureStore> {
        let name = name.into();
        check_little_endian(&name)?;
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Self::validate(name, Backing::Owned(words, bytes.len()))
    }

    fn validate(path: PathBuf, backing: Backing) -> Result<FeatureStore> {
        let bytes = backing.bytes();
        let h = parse_header(bytes, &path)?;
        let fail = |problem: String| Error::format(&path, problem);
        let len = bytes.len() as u64;
        if len < h.file_len {
            return Err(fail(format!(
                "truncated: expected {} bytes, found {len}",
                h.file_len
            )));
        }
        if len > h.file_len {
            return Err(fail(format!(
                "{} unexpected bytes after the end of the store (expected {} bytes, found {len})",
                len - h.file_len,
                h.file_len
            )));
        }
        // From here on every offset below file_len == bytes.len() fits in usize.
        let index = &bytes[h.index_offset as usize..];
        if fnv1a64(&[index]) != h.index_hash {
            return Err(fail("index checksum mismatch: the index is damaged".into()));
        }
        let count = h.count as usize;
        let mut entries = Vec::with_capacity(count);
        let mut by_id = HashMap::with_capacity(count);
        let mut expect = HEADER_LEN as u64;
        for i in 0..count {
            let at = i * ENTRY_LEN;
            let id = u64_at(index, at);
            let offset = u64_at(index, at + 8);
            let regions = u32_at(index, at + 16);
            let reserved = u32_at(index, at + 20);
            let entry = |problem: &str| fail(format!("index entry {i} (image {id}): {problem}"));
            if reserved != 0 {
                return Err(entry("reserved field is not zero"));
            }
            if offset != expect {
                return Err(entry(&format!("block offset {offset}, expected {expect}")));
            }
            if regions == 0 {
                return Err(entry("zero regions"));
            }
            let end = block_end(offset, regions, h.dim, h.dtype, h.box_dim)
                .and_then(|e| align_up(e, 64))
                .filter(|&e| e <= h.index_offset)
                .ok_or_else(|| entry("block runs past the index"))?;
            if let Some(prev) = by_id.insert(id, i as u32) {
                return Err(fail(format!(
                    "duplicate image id {id} (index entries {prev} and {i})"
                )));
            }
            entries.push(Entry {
                id,
                offset,
                regions,
            });
            expect = end;
        }
        if expect != h.index_offset {
            return Err(fail(format!(
                "the image blocks end at {expect}, but the index starts at {}",
                h.index_offset
            )));
        }
        Ok(FeatureStore {
            dtype: h.dtype,
            dim: h.dim,
            has_boxes: h.box_dim != 0,
            entries,
            by_id,
            path,
            backing,
        })
    }

    /// The file (or the in-memory name) this store was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Storage dtype.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Values per region.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether boxes are stored.
    pub fn has_boxes(&self) -> bool {
        self.has_boxes
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no image.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size of the store in bytes.
    pub fn byte_len(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// Image ids in store order.
    pub fn image_ids(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// Whether the store holds `image_id`.
    pub fn contains(&self, image_id: u64) -> bool {
        self.by_id.contains_key(&image_id)
    }

    /// The position of `image_id` in store order.
    pub fn position(&self, image_id: u64) -> Option<usize> {
        self.by_id.get(&image_id).map(|&i| i as usize)
    }

    /// Region count of the image at `position`.
    pub fn region_count_at(&self, position: usize) -> usize {
        self.entries[position].regions as usize
    }

    /// The regions of `image_id`, if stored.
    pub fn get(&self, image_id: u64) -> Option<Regions<'_>> {
        self.position(image_id).map(|i| self.at(i))
    }

    /// The regions of the image at `position` (store order); panics if out of range.
    pub fn at(&self, position: usize) -> Regions<'_> {
        let e = self.entries[position];
        let bytes = self.backing.bytes();
        let n = e.regions as usize;
        let start = e.offset as usize;
        let feat_len = n * self.dim * self.dtype.size();
        let raw = &bytes[start..start + feat_len];
        // The casts cannot fail: offsets were checked on open to be 64-aligned within a buffer
        // that is itself at least 8-aligned, and lengths are whole multiples of the value size.
        let feats = match self.dtype {
            Dtype::F32 => Feats::F32(bytemuck::cast_slice(raw)),
            Dtype::F16 => Feats::F16(bytemuck::cast_slice(raw)),
        };
        let boxes = self.has_boxes.then(|| {
            let b = (start + feat_len).next_multiple_of(4);
            bytemuck::cast_slice(&bytes[b..b + n * BOX_DIM * 4])
        });
        Regions {
            image_id: e.id,
            count: n,
            dim: self.dim,
            feats,
            boxes,
        }
    }

    /// The largest region count of any image.
    pub fn max_regions(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.regions as usize)
            .max()
            .unwrap_or(0)
    }

    /// The total number of regions.
    pub fn total_regions(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.regions)).sum()
    }

    /// Writes the store's bytes to `path` atomically (e.g. an in-memory store to disk).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_file(path, self.backing.bytes())
    }

    /// Asks the kernel to start reading the block of the image at `position` now, in one
    /// large read (under random access a cold block otherwise comes in one 4 KB page fault at
    /// a time). The loader calls it for every image of a batch before copying any, so their
    /// reads overlap. A hint: a no-op in memory or where unsupported.
    pub fn will_need(&self, position: usize) {
        if let Backing::Mmap(m) = &self.backing {
            let e = self.entries[position];
            if let Some(end) = block_end(e.offset, e.regions, self.dim, self.dtype, self.box_dim())
            {
                let _ = m.advise_range(
                    memmap2::Advice::WillNeed,
                    e.offset as usize,
                    (end - e.offset) as usize,
                );
            }
        }
    }

    fn box_dim(&self) -> usize {
        if self.has_boxes { BOX_DIM } else { 0 }
    }

    /// Advises the kernel that the whole mapping will be read at random (no read-ahead), as
    /// the loader does; a no-op for in-memory stores.
    pub fn advise_random(&self) {
        if let Backing::Mmap(m) = &self.backing {
            // Advice is a hint; failure changes speed, never results.
            let _ = m.advise(memmap2::Advice::Random);
        }
    }
}

/// Where the block of an image at `offset` ends (before padding), `None` on overflow.
fn block_end(offset: u64, regions: u32, dim: usize, dtype: Dtype, box_dim: usize) -> Option<u64> {
    let n = u64::from(regions);
    let feat = n
        .checked_mul(dim as u64)?
        .checked_mul(dtype.size() as u64)?;
    let feat_end = offset.checked_add(feat)?;
    if box_dim == 0 {
        return Some(feat_end);
    }
    align_up(feat_end, 4)?.checked_add(n.checked_mul(box_dim as u64 * 4)?)
}

fn parse_header(bytes: &[u8], path: &Path) -> Result<Header> {
    let fail = |problem: String| Error::format(path, problem);
    let m = bytes.len().min(MAGIC.len());
    if bytes[..m] != MAGIC[..m] {
        return Err(fail(
            "not an aoanet feature store (bad magic; expected \"AOAFEATS\")".into(),
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
            "unsupported feature store version {version} (this build reads version {VERSION})"
        )));
    }
    if fnv1a64(&[&bytes[..56]]) != u64_at(bytes, 56) {
        return Err(fail(
            "header checksum mismatch: the header is damaged".into(),
        ));
    }
    let dtype = match u32_at(bytes, 12) {
        1 => Dtype::F32,
        2 => Dtype::F16,
        d => return Err(fail(format!("unknown dtype code {d}"))),
    };
    let dim = u32_at(bytes, 16) as usize;
    if dim == 0 {
        return Err(fail("feature dim is 0".into()));
    }
    let box_dim = u32_at(bytes, 20) as usize;
    if box_dim != 0 && box_dim != BOX_DIM {
        return Err(fail(format!("box dim {box_dim} (expected 0 or {BOX_DIM})")));
    }
    let count = u64_at(bytes, 24);
    let index_offset = u64_at(bytes, 32);
    let file_len = u64_at(bytes, 40);
    if index_offset < HEADER_LEN as u64 || !index_offset.is_multiple_of(64) {
        return Err(fail(format!(
            "index offset {index_offset} is not a 64-aligned offset after the header"
        )));
    }
    let expect = count
        .checked_mul(ENTRY_LEN as u64)
        .and_then(|s| s.checked_add(index_offset));
    if expect != Some(file_len) || usize::try_from(file_len).is_err() {
        return Err(fail(format!(
            "header sizes disagree: {count} images with the index at {index_offset} \
             cannot make a file of {file_len} bytes"
        )));
    }
    Ok(Header {
        dtype,
        dim,
        box_dim,
        count,
        index_offset,
        file_len,
        index_hash: u64_at(bytes, 48),
    })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// A growable byte buffer kept 8-byte aligned (so it can back a store directly).
struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    fn zeroed(len: usize) -> Self {
        AlignedBytes {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end > self.words.len() * 8 {
            // Vec's growth is amortised (capacity doubles) and zero-fills only what is used.
            self.words.resize(end.div_ceil(8), 0);
        }
        bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[..self.len]
    }
}

enum Sink {
    File(AtomicFile),
    Memory(AlignedBytes),
}

/// Streams images into a new store; nothing appears under the final name until
/// [`FeatureStoreWriter::finish`] succeeds. Memory use is constant apart from 24 bytes (plus a
/// hash-map slot for the duplicate check) per image.
pub struct FeatureStoreWriter {
    name: PathBuf,
    sink: Sink,
    dtype: Dtype,
    dim: usize,
    has_boxes: bool,
    pos: u64,
    entries: Vec<Entry>,
    seen: HashMap<u64, usize>,
    block: Vec<u8>,
    half: Vec<f16>,
}

impl FeatureStoreWriter {
    /// Starts a store at `path` with `dim` values per region, boxes if `with_boxes`.
    pub fn create(
        path: impl AsRef<Path>,
        dtype: Dtype,
        dim: usize,
        with_boxes: bool,
    ) -> Result<FeatureStoreWriter> {
        let path = path.as_ref();
        let mut file = AtomicFile::create(path)?;
        // The header is written last, when the sizes are known.
        file.write_all(&[0; HEADER_LEN])?;
        Self::new(path.to_path_buf(), Sink::File(file), dtype, dim, with_boxes)
    }

    /// Starts a store in memory; `name` stands for the file in errors.
    pub fn in_memory(
        name: impl Into<PathBuf>,
        dtype: Dtype,
        dim: usize,
        with_boxes: bool,
    ) -> Result<FeatureStoreWriter> {
        Self::new(
            name.into(),
            Sink::Memory(AlignedBytes::zeroed(HEADER_LEN)),
            dtype,
            dim,
            with_boxes,
        )
    }

    fn new(
        name: PathBuf,
        sink: Sink,
        dtype: Dtype,
        dim: usize,
        has_boxes: bool,
    ) -> Result<FeatureStoreWriter> {
        if dim == 0 || u32::try_from(dim).is_err() {
            return Err(Error::invalid(format!(
                "{}: feature dim {dim} out of range",
                name.display()
            )));
        }
        Ok(FeatureStoreWriter {
            name,
            sink,
            dtype,
            dim,
            has_boxes,
            pos: HEADER_LEN as u64,
            entries: Vec::new(),
            seen: HashMap::new(),
            block: Vec::new(),
            half: Vec::new(),
        })
    }

    /// Images written so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no image has been written.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.pos
    }

    /// Appends one image: `feats` is `[regions, dim]` row-major, `boxes` `[regions, 4]`
    /// (required exactly when the store has boxes). Refuses a duplicate id, zero regions,
    /// mismatched sizes and values that are not finite (or overflow f16). A refused image
    /// leaves the writer usable.
    pub fn push(&mut self, image_id: u64, feats: &[f32], boxes: Option<&[f32]>) -> Result<()> {
        let bad = |problem: String| Error::invalid(format!("image {image_id}: {problem}"));
        if feats.is_empty() || !feats.len().is_multiple_of(self.dim) {
            return Err(bad(format!(
                "{} feature values is not a positive multiple of the dim {}",
                feats.len(),
                self.dim
            )));
        }
        let n = feats.len() / self.dim;
        let regions = u32::try_from(n).map_err(|_| bad(format!("{n} regions is too many")))?;
        match (boxes, self.has_boxes) {
            (Some(b), true) if b.len() != n * BOX_DIM => {
                return Err(bad(format!(
                    "{} box values for {n} regions (expected {})",
                    b.len(),
                    n * BOX_DIM
                )));
            }
            (None, true) => return Err(bad("boxes are missing".into())),
            (Some(_), false) => return Err(bad("this store has no boxes".into())),
            _ => {}
        }
        if let Some(&prev) = self.seen.get(&image_id) {
            return Err(bad(format!(
                "duplicate image id (already written as image #{prev})"
            )));
        }
        if let Some(k) = feats.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("feature value #{k} is {}", feats[k])));
        }
        if let Some(k) = boxes.and_then(|b| b.iter().position(|v| !v.is_finite())) {
            return Err(bad(format!("box value #{k} is not finite")));
        }

        self.block.clear();
        match self.dtype {
            Dtype::F32 => self.block.extend_from_slice(bytemuck::cast_slice(feats)),
            Dtype::F16 => {
                self.half.resize(feats.len(), f16::ZERO);
                self.half.convert_from_f32_slice(feats);
                if let Some(k) = self.half.iter().position(|v| v.is_infinite()) {
                    return Err(bad(format!(
                        "feature value {} does not fit f16 (largest is 65504); use f32",
                        feats[k]
                    )));
                }
                self.block
                    .extend_from_slice(bytemuck::cast_slice(&self.half));
            }
        }
        if let Some(b) = boxes {
            self.block.resize(self.block.len().next_multiple_of(4), 0);
            self.block.extend_from_slice(bytemuck::cast_slice(b));
        }
        self.block.resize(self.block.len().next_multiple_of(64), 0);
        match &mut self.sink {
            Sink::File(f) => f.write_all(&self.block)?,
            Sink::Memory(v) => v.extend_from_slice(&self.block),
        }
        self.seen.insert(image_id, self.entries.len());
        self.entries.push(Entry {
            id: image_id,
            offset: self.pos,
            regions,
        });
        self.pos += self.block.len() as u64;
        Ok(())
    }

    /// Writes the index and header, then publishes the store (renaming a file into place) and
    /// opens it again, so what is returned has passed the same validation as any reader's.
    pub fn finish(self) -> Result<FeatureStore> {
        let mut index = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            index.extend_from_slice(&e.id.to_le_bytes());
            index.extend_from_slice(&e.offset.to_le_bytes());
            index.extend_from_slice(&e.regions.to_le_bytes());
            index.extend_from_slice(&0u32.to_le_bytes());
        }
        let index_offset = self.pos;
        let file_len = index_offset + index.len() as u64;
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&self.dtype.code().to_le_bytes());
        header[16..20].copy_from_slice(&(self.dim as u32).to_le_bytes());
        let box_dim = if self.has_boxes { BOX_DIM as u32 } else { 0 };
        header[20..24].copy_from_slice(&box_dim.to_le_bytes());
        header[24..32].copy_from_slice(&(self.entries.len() as u64).to_le_bytes());
        header[32..40].copy_from_slice(&index_offset.to_le_bytes());
        header[40..48].copy_from_slice(&file_len.to_le_bytes());
        header[48..56].copy_from_slice(&fnv1a64(&[&index]).to_le_bytes());
        let h = fnv1a64(&[&header[..56]]);
        header[56..64].copy_from_slice(&h.to_le_bytes());
        match self.sink {
            Sink::File(mut f) => {
                f.write_all(&index)?;
                f.write_at(0, &header)?;
                f.commit()?;
                FeatureStore::open(&self.name)
            }
            Sink::Memory(mut v) => {
                v.extend_from_slice(&index);
                v.bytes_mut()[..HEADER_LEN].copy_from_slice(&header);
                check_little_endian(&self.name)?;
                // Validated like a file, without copying the (possibly large) buffer.
                FeatureStore::validate(self.name, Backing::Owned(v.words, v.len))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(dtype: Dtype, boxes: bool) -> FeatureStore {
        let mut w = FeatureStoreWriter::in_memory("mem", dtype, 3, boxes).unwrap();
        for (id, n) in [(42u64, 2usize), (7, 1), (1 << 40, 3)] {
            let f: Vec<f32> = (0..n * 3)
                .map(|k| (id % 64) as f32 * 0.5 + k as f32)
                .collect();
            let b: Vec<f32> = (0..n * 4).map(|k| k as f32).collect();
            w.push(id, &f, boxes.then_some(&b[..])).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn in_memory_round_trip_f32_and_f16() {
        for dtype in [Dtype::F32, Dtype::F16] {
            for boxes in [false, true] {
                let s = small(dtype, boxes);
                assert_eq!(s.len(), 3);
                assert_eq!(s.image_ids().collect::<Vec<_>>(), [42, 7, 1 << 40]);
                let r = s.get(7).unwrap();
                assert_eq!(r.count, 1);
                assert_eq!(r.feats.to_f32_vec(), [3.5, 4.5, 5.5]);
                assert_eq!(r.boxes.is_some(), boxes);
                assert_eq!(s.get(1 << 40).unwrap().count, 3);
                assert!(s.get(8).is_none());
                assert_eq!(s.max_regions(), 3);
            }
        }
    }

    #[test]
    fn writer_refuses_bad_images_and_stays_usable() {
        let mut w = FeatureStoreWriter::in_memory("mem", Dtype::F16, 2, false).unwrap();
        w.push(1, &[1.0, 2.0], None).unwrap();
        let e = w.push(1, &[1.0, 2.0], None).unwrap_err().to_string();
        assert!(e.contains("duplicate image id"), "{e}");
        let e = w.push(2, &[1.0, 2.0, 3.0], None).unwrap_err().to_string();
        assert!(e.contains("not a positive multiple"), "{e}");
        let e = w.push(3, &[1.0, f32::NAN], None).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
        let e = w.push(4, &[1e6, 0.0], None).unwrap_err().to_string();
        assert!(e.contains("does not fit f16"), "{e}");
        let e = w
            .push(5, &[1.0, 0.0], Some(&[0.0; 4]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no boxes"), "{e}");
        w.push(6, &[1.0, 2.0, 3.0, 4.0], None).unwrap();
        let s = w.finish().unwrap();
        assert_eq!(s.image_ids().collect::<Vec<_>>(), [1, 6]);
    }
}
