//! `meteor.bin`: METEOR's English resources in one memory-mapped file.
//!
//! `aoanet-data meteor-data` builds it from the pycocoevalcap wheel (see [`super::tables`]); the
//! scorer maps it read-only and looks words up by binary search, so opening costs a validation
//! pass instead of the jar's 7-second parse of a 272 MB paraphrase table.
//!
//! # Layout (little-endian)
//! ```text
//! 0   magic  b"AOAMETR\0"
//! 8   version u32 (= 1)        12  section count u32
//! 16  file length u64           24  checksum u64 of every byte after the section table
//! 32  section table: per section {id u32, element size u32, offset u64, element count u64}
//!     then the sections, each starting on an 8-byte boundary, zero-padded.
//! ```
//! Sections (all required, each once):
//!
//! | id | contents |
//! | --- | --- |
//! | 1, 2 | function words: string table (offsets `u32[n+1]`, UTF-8 bytes), sorted |
//! | 3, 4, 5 | non-breaking prefixes: sorted string table, and one kind byte each (0 any, 1 numeric only) |
//! | 6, 7, 8, 9 | WordNet words: sorted string table, `u32[n+1]` ranges into 9, synset numbers `u32` (sorted per word) |
//! | 10, 11, 12, 13 | irregular forms: sorted string table, `u32[n+1]` ranges into 13, base forms as indices into 6/7 |
//! | 14, 15 | paraphrase vocabulary: sorted string table; a word's id is its rank |
//! | 16, 17 | phrases: `u32[p+1]` ranges into 17, word ids `u16` |
//! | 18, 19, 20 | reference phrases (phrase ids `u32`, sorted by word ids), `u32[r+1]` ranges into 20, paraphrase phrase ids `u32` in table order |
//! | 21 | `u32[vocabulary+1]`: per first word, the range of reference phrases starting with it |
//!
//! Every offset, range, id and the sort orders are checked on open, so a lookup can never
//! index out of bounds; the checksum catches a damaged file whose structure still looks right.

use crate::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The first eight bytes of every `meteor.bin`.
pub const MAGIC: [u8; 8] = *b"AOAMETR\0";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// The environment variable naming the data file.
pub const ENV_VAR: &str = "AOANET_METEOR_DATA";

const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 24;
pub(crate) const SECTION_COUNT: usize = 21;

/// Section ids, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Sec {
    FuncOffsets = 1,
    FuncBytes,
    NbpOffsets,
    NbpBytes,
    NbpKinds,
    SynWordOffsets,
    SynWordBytes,
    SynRanges,
    SynIds,
    ExcFormOffsets,
    ExcFormBytes,
    ExcRanges,
    ExcBases,
    VocabOffsets,
    VocabBytes,
    PhraseRanges,
    PhraseWords,
    RefPhrases,
    RefRanges,
    RefTargets,
    RefFirst,
}

impl Sec {
    pub(crate) const ALL: [Sec; SECTION_COUNT] = [
        Sec::FuncOffsets,
        Sec::FuncBytes,
        Sec::NbpOffsets,
        Sec::NbpBytes,
        Sec::NbpKinds,
        Sec::SynWordOffsets,
        Sec::SynWordBytes,
        Sec::SynRanges,
        Sec::SynIds,
        Sec::ExcFormOffsets,
        Sec::ExcFormBytes,
        Sec::ExcRanges,
        Sec::ExcBases,
        Sec::VocabOffsets,
        Sec::VocabBytes,
        Sec::PhraseRanges,
        Sec::PhraseWords,
        Sec::RefPhrases,
        Sec::RefRanges,
        Sec::RefTargets,
        Sec::RefFirst,
    ];

    /// Size in bytes of one element.
    pub(crate) fn elem_size(self) -> usize {
        match self {
            Sec::FuncBytes | Sec::NbpBytes | Sec::NbpKinds | Sec::SynWordBytes => 1,
            Sec::ExcFormBytes | Sec::VocabBytes => 1,
            Sec::PhraseWords => 2,
            _ => 4,
        }
    }
}

/// The 64-bit checksum of `bytes` stored in the header: a multiply-rotate hash over 8-byte
/// words (the tail zero-padded). It guards against damage, not against tampering.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(b)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Serialises the sections (given in [`Sec::ALL`] order as raw little-endian bytes) into one file
/// image: header, section table, 8-byte aligned payload, checksum.
pub(crate) fn encode(sections: &[Vec<u8>; SECTION_COUNT]) -> Vec<u8> {
    let table_end = HEADER_LEN + ENTRY_LEN * SECTION_COUNT;
    let mut out = vec![0u8; table_end];
    let mut entries = Vec::with_capacity(SECTION_COUNT);
    for (sec, bytes) in Sec::ALL.iter().zip(sections) {
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        entries.push((*sec, out.len(), bytes.len() / sec.elem_size()));
        out.extend_from_slice(bytes);
    }
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(SECTION_COUNT as u32).to_le_bytes());
    let len = out.len() as u64;
    out[16..24].copy_from_slice(&len.to_le_bytes());
    for (i, (sec, offset, count)) in entries.into_iter().enumerate() {
        let e = HEADER_LEN + i * ENTRY_LEN;
        out[e..e + 4].copy_from_slice(&(sec as u32).to_le_bytes());
        out[e + 4..e + 8].copy_from_slice(&(sec.elem_size() as u32).to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&(offset as u64).to_le_bytes());
        out[e + 16..e + 24].copy_from_slice(&(count as u64).to_le_bytes());
    }
    let sum = checksum(&out[table_end..]);
    out[24..32].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Where a section lies in the mapped file: byte offset and element count.
#[derive(Clone, Copy, Default, Debug)]
struct Span {
    offset: usize,
    count: usize,
}

/// A sorted table of strings inside the file.
#[derive(Clone, Copy)]
struct StrTable<'a> {
    offsets: &'a [u32],
    bytes: &'a [u8],
}

impl<'a> StrTable<'a> {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn get(&self, i: usize) -> &'a [u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The index of `key`, by binary search.
    fn find(&self, key: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// METEOR's English resources, memory-mapped from a `meteor.bin` and validated.
///
/// Cheap to share: every lookup borrows the map, nothing is copied at open.
pub struct MeteorData {
    map: Mmap,
    path: PathBuf,
    spans: [Span; SECTION_COUNT],
}

impl std::fmt::Debug for MeteorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteorData")
            .field("path", &self.path)
            .field("bytes", &self.map.len())
            .finish()
    }
}

impl MeteorData {
    /// Maps and validates the file at `path`. A missing, truncated, damaged or foreign file is
    /// an error naming the file and the problem.
    pub fn open(path: impl AsRef<Path>) -> Result<MeteorData> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only and private to this process. The file could still be
        // changed by another process while mapped, which would change the bytes we read but not
        // break memory safety of this code, which bounds-checks every access (validated below).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut data = MeteorData {
            map,
            path: path.to_path_buf(),
            spans: [Span::default(); SECTION_COUNT],
        };
        data.validate()?;
        Ok(data)
    }

    /// Opens the data file named by `$AOANET_METEOR_DATA`, or else the one at
    /// [`MeteorData::default_path`]. `Ok(None)` when neither is set up; an error when the
    /// variable names a file that cannot be opened or when a file found is bad.
    pub fn open_default() -> Result<Option<MeteorData>> {
        if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
            return MeteorData::open(PathBuf::from(p)).map(Some);
        }
        match MeteorData::default_path() {
            Some(p) if p.exists() => MeteorData::open(p).map(Some),
            _ => Ok(None),
        }
    }

    /// `$XDG_DATA_HOME/aoanet/meteor.bin`, or `~/.local/share/aoanet/meteor.bin` when
    /// `XDG_DATA_HOME` is unset; `None` when neither it nor `HOME` is set.
    pub fn default_path() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => PathBuf::from(std::env::var_os("HOME").filter(|p| !p.is_empty())?)
                .join(".local")
                .join("share"),
        };
        Some(base.join("aoanet").join("meteor.bin"))
    }

    /// What to tell a user who has no data file: the variable, the default location and the
    /// commands that build one.
    pub fn setup_hint() -> String {
        let default = MeteorData::default_path().map_or_else(
            || "~/.local/share/aoanet/meteor.bin".to_string(),
            |p| p.display().to_string(),
        );
        format!(
            "no METEOR data: set {ENV_VAR} to a meteor.bin, or build one at {default} with \
             `pip download pycocoevalcap==1.2 --no-deps -d DIR` and \
             `aoanet-data meteor-data --from DIR/pycocoevalcap-1.2-py3-none-any.whl --out {default}`"
        )
    }

    /// The file this data was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the mapped file in bytes.
    pub fn size_bytes(&self) -> usize {
        self.map.len()
    }

    fn bad(&self, problem: impl Into<String>) -> Error {
        Error::format(&self.path, problem)
    }

    fn validate(&mut self) -> Result<()> {
        if !cfg!(target_endian = "little") {
            return Err(self.bad("this build reads meteor.bin only on little-endian machines"));
        }
        let b: &[u8] = &self.map;
        let len = b.len();
        let table_end = HEADER_LEN + ENTRY_LEN * SECTION_COUNT;
        if len < HEADER_LEN || b[0..8] != MAGIC {
            return Err(self.bad(
                "not an aoanet METEOR data file (bad magic); build one with `aoanet-data meteor-data`",
            ));
        }
        let rd32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let rd64 = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let version = rd32(8);
        if version != VERSION {
            return Err(self.bad(format!(
                "format version {version}, this build reads version {VERSION}; rebuild it with `aoanet-data meteor-data`"
            )));
        }
        if rd32(12) as usize != SECTION_COUNT || len < table_end {
            return Err(self.bad("bad section table"));
        }
        let stated = rd64(16);
        if stated != len as u64 {
            return Err(self.bad(format!(
                "truncated or extended: header says {stated} bytes, file has {len}"
            )));
        }
        if checksum(&b[table_end..]) != rd64(24) {
            return Err(self.bad("checksum mismatch: the file is damaged"));
        }
        let mut spans = [Span::default(); SECTION_COUNT];
        for (i, sec) in Sec::ALL.iter().enumerate() {
            let e = HEADER_LEN + i * ENTRY_LEN;
            let (id, size, offset, count) = (rd32(e), rd32(e + 4), rd64(e + 8), rd64(e + 16));
            if id != *sec as u32 || size as usize != sec.elem_size() {
                return Err(self.bad(format!("section {i}: unexpected id {id} or size {size}")));
            }
            let end = count
                .checked_mul(u64::from(size))
                .and_then(|n| n.checked_add(offset));
            match end {
                Some(end) if offset >= table_end as u64 && end <= len as u64 && offset % 8 == 0 => {
                }
                _ => return Err(self.bad(format!("section {i} lies outside the file"))),
            }
            spans[i] = Span {
                offset: offset as usize,
                count: count as usize,
            };
        }
        self.spans = spans;
        self.validate_content()
    }

    fn validate_content(&self) -> Result<()> {
        let strs = |o: Sec, b: Sec, what: &str| -> Result<usize> {
            let offsets = self.u32s(o);
            let bytes = self.bytes(b);
            check_ranges(offsets, bytes.len())
                .map_err(|p| self.bad(format!("{what} string table: {p}")))?;
            let t = StrTable { offsets, bytes };
            for i in 0..t.len() {
                if std::str::from_utf8(t.get(i)).is_err() {
                    return Err(self.bad(format!("{what} string {i} is not UTF-8")));
                }
                if i > 0 && t.get(i - 1) >= t.get(i) {
                    return Err(self.bad(format!("{what} strings are not sorted at {i}")));
                }
            }
            Ok(t.len())
        };
        strs(Sec::FuncOffsets, Sec::FuncBytes, "function-word")?;
        let n_nbp = strs(Sec::NbpOffsets, Sec::NbpBytes, "prefix")?;
        let kinds = self.bytes(Sec::NbpKinds);
        if kinds.len() != n_nbp || kinds.iter().any(|&k| k > 1) {
            return Err(self.bad("prefix kinds do not match the prefixes"));
        }
        let n_syn = strs(Sec::SynWordOffsets, Sec::SynWordBytes, "synonym word")?;
        let ranges = self.u32s(Sec::SynRanges);
        if ranges.len() != n_syn + 1 {
            return Err(self.bad("synset ranges do not match the words"));
        }
        check_ranges(ranges, self.u32s(Sec::SynIds).len())
            .map_err(|p| self.bad(format!("synset ranges: {p}")))?;
        let n_exc = strs(Sec::ExcFormOffsets, Sec::ExcFormBytes, "irregular form")?;
        let ranges = self.u32s(Sec::ExcRanges);
        if ranges.len() != n_exc + 1 {
            return Err(self.bad("base-form ranges do not match the forms"));
        }
        let bases = self.u32s(Sec::ExcBases);
        check_ranges(ranges, bases.len()).map_err(|p| self.bad(format!("base forms: {p}")))?;
        if bases.iter().any(|&b| b as usize >= n_syn) {
            return Err(self.bad("a base form points past the synonym words"));
        }
        let n_vocab = strs(Sec::VocabOffsets, Sec::VocabBytes, "paraphrase vocabulary")?;
        let ranges = self.u32s(Sec::PhraseRanges);
        if ranges.is_empty() {
            return Err(self.bad("empty phrase ranges"));
        }
        let words = self.u16s(Sec::PhraseWords);
        check_ranges(ranges, words.len()).map_err(|p| self.bad(format!("phrases: {p}")))?;
        if ranges.windows(2).any(|w| w[0] == w[1]) {
            return Err(self.bad("an empty phrase in the paraphrase table"));
        }
        if words.iter().any(|&w| w as usize >= n_vocab) {
            return Err(self.bad("a phrase word points past the vocabulary"));
        }
        let n_phrases = ranges.len() - 1;
        let refs = self.u32s(Sec::RefPhrases);
        let ref_ranges = self.u32s(Sec::RefRanges);
        if ref_ranges.len() != refs.len() + 1 {
            return Err(self.bad("paraphrase ranges do not match the reference phrases"));
        }
        let targets = self.u32s(Sec::RefTargets);
        check_ranges(ref_ranges, targets.len())
            .map_err(|p| self.bad(format!("paraphrase ranges: {p}")))?;
        if refs.iter().chain(targets).any(|&p| p as usize >= n_phrases) {
            return Err(self.bad("a paraphrase entry points past the phrases"));
        }
        for i in 1..refs.len() {
            if self.phrase(refs[i - 1]) >= self.phrase(refs[i]) {
                return Err(self.bad(format!("reference phrases are not sorted at {i}")));
            }
        }
        let first = self.u32s(Sec::RefFirst);
        if first.len() != n_vocab + 1 {
            return Err(self.bad("first-word index does not match the vocabulary"));
        }
        check_ranges(first, refs.len()).map_err(|p| self.bad(format!("first-word index: {p}")))?;
        for w in 0..n_vocab {
            let r = first[w] as usize..first[w + 1] as usize;
            if refs[r].iter().any(|&p| self.phrase(p)[0] as usize != w) {
                return Err(self.bad(format!("first-word index is wrong for word {w}")));
            }
        }
        Ok(())
    }

    fn bytes(&self, s: Sec) -> &[u8] {
        let sp = self.spans[s as usize - 1];
        &self.map[sp.offset..sp.offset + sp.count * s.elem_size()]
    }

    fn u32s(&self, s: Sec) -> &[u32] {
        // Sections start 8-byte aligned inside a page-aligned map and hold whole elements
        // (checked in `validate`), so the cast cannot fail.
        bytemuck::cast_slice(self.bytes(s))
    }

    fn u16s(&self, s: Sec) -> &[u16] {
        bytemuck::cast_slice(self.bytes(s))
    }

    fn table(&self, o: Sec, b: Sec) -> StrTable<'_> {
        StrTable {
            offsets: self.u32s(o),
            bytes: self.bytes(b),
        }
    }

    // ---- lookups used by the scorer ------------------------------------------------------

    /// Whether `word` is in the function-word list.
    pub(crate) fn is_function_word(&self, word: &str) -> bool {
        self.table(Sec::FuncOffsets, Sec::FuncBytes)
            .find(word.as_bytes())
            .is_some()
    }

    /// The kind of non-breaking prefix `word` is, if it is one.
    pub(crate) fn prefix_kind(&self, word: &str) -> Option<super::normalize::PrefixKind> {
        use super::normalize::PrefixKind;
        let i = self
            .table(Sec::NbpOffsets, Sec::NbpBytes)
            .find(word.as_bytes())?;
        Some(match self.bytes(Sec::NbpKinds)[i] {
            0 => PrefixKind::Any,
            _ => PrefixKind::NumericOnly,
        })
    }

    /// The index of `word` among the WordNet words.
    pub(crate) fn synonym_word(&self, word: &str) -> Option<usize> {
        self.table(Sec::SynWordOffsets, Sec::SynWordBytes)
            .find(word.as_bytes())
    }

    /// The synset numbers of WordNet word `i`.
    pub(crate) fn synsets(&self, i: usize) -> &[u32] {
        let r = self.u32s(Sec::SynRanges);
        &self.u32s(Sec::SynIds)[r[i] as usize..r[i + 1] as usize]
    }

    /// The base forms (as WordNet word indices) of an irregular form, if `word` is one. A form
    /// whose bases have no synsets still returns `Some(&[])`: it is listed, so METEOR does not
    /// fall back to suffix rules for it.
    pub(crate) fn base_forms(&self, word: &str) -> Option<&[u32]> {
        let i = self
            .table(Sec::ExcFormOffsets, Sec::ExcFormBytes)
            .find(word.as_bytes())?;
        let r = self.u32s(Sec::ExcRanges);
        Some(&self.u32s(Sec::ExcBases)[r[i] as usize..r[i + 1] as usize])
    }

    /// The paraphrase-vocabulary id of `word`, or -1 when the table never uses it.
    pub(crate) fn vocab_id(&self, word: &str) -> i32 {
        self.table(Sec::VocabOffsets, Sec::VocabBytes)
            .find(word.as_bytes())
            .map_or(-1, |i| i as i32)
    }

    /// The word ids of phrase `p`.
    pub(crate) fn phrase(&self, p: u32) -> &[u16] {
        let r = self.u32s(Sec::PhraseRanges);
        &self.u16s(Sec::PhraseWords)[r[p as usize] as usize..r[p as usize + 1] as usize]
    }

    /// Every paraphrase of a reference phrase starting at `line[start]`, as METEOR's trie walk
    /// yields them: by phrase length, then in table order, as `(length, paraphrase id)`.
    pub(crate) fn paraphrases_at(&self, line: &[i32], start: usize, out: &mut Vec<(usize, u32)>) {
        out.clear();
        let refs = self.u32s(Sec::RefPhrases);
        let ranges = self.u32s(Sec::RefRanges);
        let targets = self.u32s(Sec::RefTargets);
        let first = self.u32s(Sec::RefFirst);
        // [lo, hi): the reference phrases whose first `len` words equal line[start..start+len].
        let Some(&w0) = line.get(start) else { return };
        let Ok(w0) = usize::try_from(w0) else { return };
        let (Some(&lo0), Some(&hi0)) = (first.get(w0), first.get(w0 + 1)) else {
            return;
        };
        let (mut lo, mut hi) = (lo0 as usize, hi0 as usize);
        for len in 1..=line.len() - start {
            if len > 1 {
                let w = line[start + len - 1];
                if w < 0 {
                    break;
                }
                let w = w as u16;
                let k = len - 1;
                // Within [lo, hi) all phrases share the first k words; those of length k
                // come first, then the rest ordered by word k.
                let before = |p: &u32| self.phrase(*p).get(k).is_none_or(|&x| x < w);
                lo += refs[lo..hi].partition_point(before);
                hi = lo + refs[lo..hi].partition_point(|&p| self.phrase(p).get(k) == Some(&w));
            }
            if lo >= hi {
                break;
            }
            if self.phrase(refs[lo]).len() == len {
                let r = ranges[lo] as usize..ranges[lo + 1] as usize;
                out.extend(targets[r].iter().map(|&t| (len, t)));
            }
        }
    }
}

/// Checks that `offsets` is a non-empty, non-decreasing list starting at 0 and ending at `len`.
fn check_ranges(offsets: &[u32], len: usize) -> std::result::Result<(), String> {
    if offsets.is_empty() || offsets[0] != 0 {
        return Err("ranges must start at 0".into());
    }
    if offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err("ranges go backwards".into());
    }
    if *offsets.last().unwrap_or(&0) as usize != len {
        return Err(format!(
            "ranges end at {} but the data holds {len}",
            offsets.last().unwrap_or(&0)
        ));
    }
    Ok(())
}
