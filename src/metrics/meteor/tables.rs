//! Building `meteor.bin` from METEOR's own resource files (what `aoanet-data meteor-data` calls).
//!
//! Each file is read the way the jar reads it, so the lookups answer as the jar's hash tables
//! do: lines end at `\n`, `\r` or `\r\n` (`BufferedReader.readLine`), words split at
//! `StringTokenizer`'s delimiters, a later synonym entry for the same word replaces an earlier
//! one, and a form listed under several base forms keeps them all.

use super::data::{self, SECTION_COUNT, Sec};
use super::java;
use super::normalize::PrefixKind;
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// The small English resource files inside `meteor-1.5.jar`, as UTF-8 text.
#[derive(Clone, Copy, Debug)]
pub struct MeteorSources<'a> {
    /// `function/english.words`: one function word a line.
    pub function_words: &'a str,
    /// `nonbreaking/english.prefixes`: Moses non-breaking prefixes.
    pub prefixes: &'a str,
    /// `synonym/english.synsets`: alternating lines of word and WordNet synset numbers.
    pub synsets: &'a str,
    /// `synonym/english.exceptions`: alternating lines of base form and irregular forms.
    pub exceptions: &'a str,
}

/// What a build put into the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildSummary {
    /// Function words.
    pub function_words: usize,
    /// Non-breaking prefixes.
    pub prefixes: usize,
    /// WordNet words with synsets.
    pub synonym_words: usize,
    /// Irregular forms.
    pub irregular_forms: usize,
    /// Paraphrase table entries (phrase, paraphrase).
    pub paraphrase_entries: usize,
    /// Distinct phrases in the paraphrase table.
    pub phrases: usize,
    /// Distinct words in the paraphrase table.
    pub paraphrase_words: usize,
    /// Bytes written.
    pub bytes: usize,
}

/// Splits `text` into lines as `BufferedReader.readLine` does.
fn java_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// Reads `BufferedReader.readLine`-style lines from a byte stream, decoding UTF-8 (invalid
/// bytes become U+FFFD, as Java's decoder does).
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    pending_cr: bool,
}

impl<R: BufRead> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            pending_cr: false,
        }
    }

    /// The next line, or `None` at the end of the stream.
    fn next_line(&mut self) -> std::io::Result<Option<String>> {
        self.buf.clear();
        let mut any = false;
        loop {
            let avail = self.inner.fill_buf()?;
            if avail.is_empty() {
                return Ok(if any {
                    Some(String::from_utf8_lossy(&self.buf).into_owned())
                } else {
                    None
                });
            }
            let mut start = 0;
            if self.pending_cr {
                self.pending_cr = false;
                if avail[0] == b'\n' {
                    start = 1;
                }
            }
            match avail[start..]
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
            {
                Some(p) => {
                    let end = start + p;
                    self.buf.extend_from_slice(&avail[start..end]);
                    let cr = avail[end] == b'\r';
                    let mut used = end + 1;
                    if cr {
                        if used < avail.len() {
                            if avail[used] == b'\n' {
                                used += 1;
                            }
                        } else {
                            self.pending_cr = true;
                        }
                    }
                    self.inner.consume(used);
                    return Ok(Some(String::from_utf8_lossy(&self.buf).into_owned()));
                }
                None => {
                    any |= avail.len() > start;
                    self.buf.extend_from_slice(&avail[start..]);
                    let n = avail.len();
                    self.inner.consume(n);
                }
            }
        }
    }
}

/// Appends a sorted string table (offsets section, bytes section) for `words`.
fn string_table(words: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut offsets = Vec::with_capacity(4 * (words.len() + 1));
    let mut bytes = Vec::new();
    offsets.extend_from_slice(&0u32.to_le_bytes());
    for w in words {
        bytes.extend_from_slice(w.as_bytes());
        offsets.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    }
    (offsets, bytes)
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The parsed small resources, ready to be laid out.
struct Small {
    function_words: Vec<String>,
    prefixes: Vec<(String, PrefixKind)>,
    /// Sorted by word; synsets sorted and deduplicated.
    synsets: Vec<(String, Vec<u32>)>,
    /// Sorted by form; bases as indices into `synsets`.
    exceptions: Vec<(String, Vec<u32>)>,
}

fn parse_small(src: &MeteorSources) -> Result<Small> {
    let mut function_words: Vec<String> =
        java_lines(src.function_words).map(str::to_string).collect();
    function_words.sort();
    function_words.dedup();

    let mut prefixes: HashMap<String, PrefixKind> = HashMap::new();
    for line in java_lines(src.prefixes) {
        let mut toks = java::tokenize(line);
        let Some(pre) = toks.next() else { continue };
        if pre.starts_with('#') {
            continue;
        }
        let kind = match toks.next() {
            Some("#NUMERIC_ONLY#") => PrefixKind::NumericOnly,
            _ => PrefixKind::Any,
        };
        prefixes.insert(pre.to_string(), kind);
    }
    let mut prefixes: Vec<(String, PrefixKind)> = prefixes.into_iter().collect();
    prefixes.sort_by(|a, b| a.0.cmp(&b.0));

    const SYN: &str = "synonym/english.synsets";
    let mut syn: HashMap<String, Vec<u32>> = HashMap::new();
    let mut lines = java_lines(src.synsets).enumerate();
    while let Some((_, word)) = lines.next() {
        let Some((n, ids)) = lines.next() else {
            return Err(Error::format(
                SYN,
                format!("word {word:?} on the last line has no synset line"),
            ));
        };
        let mut set = Vec::new();
        for t in java::tokenize(ids) {
            let v: i32 = t.parse().map_err(|_| {
                Error::format(SYN, format!("line {}: {t:?} is not a number", n + 1))
            })?;
            // Only membership matters, so the bits of Java's int are kept as they are.
            set.push(v as u32);
        }
        set.sort_unstable();
        set.dedup();
        syn.insert(word.to_string(), set);
    }
    let mut synsets: Vec<(String, Vec<u32>)> = syn.into_iter().collect();
    synsets.sort();
    let index: HashMap<&str, u32> = synsets
        .iter()
        .enumerate()
        .map(|(i, (w, _))| (w.as_str(), i as u32))
        .collect();

    const EXC: &str = "synonym/english.exceptions";
    let mut exc: HashMap<String, Vec<u32>> = HashMap::new();
    let mut lines = java_lines(src.exceptions);
    while let Some(base) = lines.next() {
        let Some(forms) = lines.next() else {
            return Err(Error::format(
                EXC,
                format!("base form {base:?} on the last line has no forms line"),
            ));
        };
        for form in java::tokenize(forms) {
            let bases = exc.entry(form.to_string()).or_default();
            // A base without synsets adds nothing to a union of synsets, but the form must
            // stay listed: METEOR then skips its suffix rules.
            if let Some(&i) = index.get(base) {
                bases.push(i);
            }
        }
    }
    let mut exceptions: Vec<(String, Vec<u32>)> = exc.into_iter().collect();
    exceptions.sort();
    Ok(Small {
        function_words,
        prefixes,
        synsets,
        exceptions,
    })
}

/// The paraphrase table, interned: words by first appearance (16-bit ids, the format's
/// limit), phrases as word-id strings, entries in table order.
#[derive(Default)]
struct Paraphrases {
    vocab: HashMap<String, u16>,
    words: Vec<String>,
    phrase_ids: HashMap<Box<[u16]>, u32>,
    /// (reference phrase, paraphrase) in table order.
    entries: Vec<(u32, u32)>,
}

impl Paraphrases {
    /// The id of the phrase on `line`; `None` when the vocabulary outgrows 16-bit ids.
    fn intern(&mut self, line: &str) -> Option<u32> {
        let mut ids = Vec::with_capacity(8);
        for t in java::tokenize(line) {
            let id = match self.vocab.get(t) {
                Some(&id) => id,
                None => {
                    let id = u16::try_from(self.words.len()).ok()?;
                    self.vocab.insert(t.to_string(), id);
                    self.words.push(t.to_string());
                    id
                }
            };
            ids.push(id);
        }
        let next = self.phrase_ids.len() as u32;
        Some(
            *self
                .phrase_ids
                .entry(ids.into_boxed_slice())
                .or_insert(next),
        )
    }

    /// The phrases, indexed by id (consumes the interning map).
    fn take_phrases(&mut self) -> Vec<Box<[u16]>> {
        let mut phrases: Vec<Box<[u16]>> = vec![Box::default(); self.phrase_ids.len()];
        for (p, id) in std::mem::take(&mut self.phrase_ids) {
            phrases[id as usize] = p;
        }
        phrases
    }
}

fn parse_paraphrases(reader: &mut dyn BufRead, name: &Path) -> Result<Paraphrases> {
    let mut lr = LineReader::new(reader);
    let mut t = Paraphrases::default();
    let mut n = 0usize;
    let io = |e| Error::io(name, e);
    // Each entry is three lines: a probability (ignored, as METEOR does), a phrase and its
    // paraphrase.
    while lr.next_line().map_err(io)?.is_some() {
        n += 1;
        let (Some(phrase), Some(para)) = (lr.next_line().map_err(io)?, lr.next_line().map_err(io)?)
        else {
            return Err(Error::format(
                name,
                format!("entry {n} is cut short: every entry needs three lines"),
            ));
        };
        if java::tokenize(&phrase).next().is_none() || java::tokenize(&para).next().is_none() {
            // The jar would loop forever on an empty phrase; refuse it instead.
            return Err(Error::format(
                name,
                format!("entry {n} has an empty phrase"),
            ));
        }
        let (Some(r), Some(p)) = (t.intern(&phrase), t.intern(&para)) else {
            return Err(Error::format(
                name,
                "more than 65536 distinct words: this format stores word ids in 16 bits",
            ));
        };
        t.entries.push((r, p));
    }
    if t.entries.is_empty() {
        return Err(Error::format(name, "no paraphrase entries"));
    }
    Ok(t)
}

/// Builds `meteor.bin` at `out` (atomically) from the jar's small files and the decompressed
/// paraphrase table (`paraphrase-en.gz`'s text, read from `paraphrases`; `paraphrase_name` names
/// it in errors).
pub fn build_meteor_data(
    src: &MeteorSources,
    paraphrases: &mut dyn BufRead,
    paraphrase_name: &Path,
    out: &Path,
) -> Result<BuildSummary> {
    let small = parse_small(src)?;
    let para = parse_paraphrases(paraphrases, paraphrase_name)?;
    let mut para = para;
    let phrase_count = para.phrase_ids.len();
    let image = encode_tables(&small, &mut para)?;
    crate::io::write_file(out, &image)?;
    Ok(BuildSummary {
        function_words: small.function_words.len(),
        prefixes: small.prefixes.len(),
        synonym_words: small.synsets.len(),
        irregular_forms: small.exceptions.len(),
        paraphrase_entries: para.entries.len(),
        phrases: phrase_count,
        paraphrase_words: para.words.len(),
        bytes: image.len(),
    })
}

fn encode_tables(small: &Small, para: &mut Paraphrases) -> Result<Vec<u8>> {
    let mut sections: [Vec<u8>; SECTION_COUNT] = Default::default();
    let mut put = |s: Sec, bytes: Vec<u8>| sections[s as usize - 1] = bytes;

    let fw: Vec<&str> = small.function_words.iter().map(String::as_str).collect();
    let (o, b) = string_table(&fw);
    put(Sec::FuncOffsets, o);
    put(Sec::FuncBytes, b);

    let nbp: Vec<&str> = small.prefixes.iter().map(|(w, _)| w.as_str()).collect();
    let (o, b) = string_table(&nbp);
    put(Sec::NbpOffsets, o);
    put(Sec::NbpBytes, b);
    put(
        Sec::NbpKinds,
        small
            .prefixes
            .iter()
            .map(|(_, k)| u8::from(*k == PrefixKind::NumericOnly))
            .collect(),
    );

    let sw: Vec<&str> = small.synsets.iter().map(|(w, _)| w.as_str()).collect();
    let (o, b) = string_table(&sw);
    put(Sec::SynWordOffsets, o);
    put(Sec::SynWordBytes, b);
    let (ranges, ids) = flatten(small.synsets.iter().map(|(_, s)| s.as_slice()));
    put(Sec::SynRanges, u32_bytes(&ranges));
    put(Sec::SynIds, u32_bytes(&ids));

    let ef: Vec<&str> = small.exceptions.iter().map(|(w, _)| w.as_str()).collect();
    let (o, b) = string_table(&ef);
    put(Sec::ExcFormOffsets, o);
    put(Sec::ExcFormBytes, b);
    let (ranges, bases) = flatten(small.exceptions.iter().map(|(_, s)| s.as_slice()));
    put(Sec::ExcRanges, u32_bytes(&ranges));
    put(Sec::ExcBases, u32_bytes(&bases));

    // Paraphrase words get their rank in byte order as id, so lookups can binary-search.
    let mut order: Vec<u32> = (0..para.words.len() as u32).collect();
    order.sort_by(|&a, &b| para.words[a as usize].cmp(&para.words[b as usize]));
    let mut rank = vec![0u16; para.words.len()];
    for (r, &w) in order.iter().enumerate() {
        rank[w as usize] = r as u16;
    }
    let sorted: Vec<&str> = order
        .iter()
        .map(|&w| para.words[w as usize].as_str())
        .collect();
    let (o, b) = string_table(&sorted);
    put(Sec::VocabOffsets, o);
    put(Sec::VocabBytes, b);

    let mut phrases = para.take_phrases();
    for p in phrases.iter_mut() {
        for w in p.iter_mut() {
            *w = rank[*w as usize];
        }
    }
    let mut ranges = Vec::with_capacity(phrases.len() + 1);
    let mut words: Vec<u16> = Vec::new();
    ranges.push(0u32);
    for p in &phrases {
        words.extend_from_slice(p);
        ranges.push(words.len() as u32);
    }
    put(Sec::PhraseRanges, u32_bytes(&ranges));
    put(Sec::PhraseWords, u16_bytes(&words));

    // Reference phrases sorted by word ids; their paraphrases grouped, in table order.
    let mut is_ref = vec![false; phrases.len()];
    for &(r, _) in &para.entries {
        is_ref[r as usize] = true;
    }
    let mut refs: Vec<u32> = (0..phrases.len() as u32)
        .filter(|&p| is_ref[p as usize])
        .collect();
    refs.sort_by(|&a, &b| phrases[a as usize].cmp(&phrases[b as usize]));
    let mut ref_rank = vec![u32::MAX; phrases.len()];
    for (i, &p) in refs.iter().enumerate() {
        ref_rank[p as usize] = i as u32;
    }
    let mut ref_ranges = vec![0u32; refs.len() + 1];
    for &(r, _) in &para.entries {
        ref_ranges[ref_rank[r as usize] as usize + 1] += 1;
    }
    for i in 1..ref_ranges.len() {
        ref_ranges[i] += ref_ranges[i - 1];
    }
    let mut fill: Vec<u32> = ref_ranges[..refs.len()].to_vec();
    let mut targets = vec![0u32; para.entries.len()];
    for &(r, p) in &para.entries {
        let slot = &mut fill[ref_rank[r as usize] as usize];
        targets[*slot as usize] = p;
        *slot += 1;
    }
    let mut first = vec![0u32; para.words.len() + 1];
    for &p in &refs {
        first[phrases[p as usize][0] as usize + 1] += 1;
    }
    for i in 1..first.len() {
        first[i] += first[i - 1];
    }
    put(Sec::RefFirst, u32_bytes(&first));
    put(Sec::RefPhrases, u32_bytes(&refs));
    put(Sec::RefRanges, u32_bytes(&ref_ranges));
    put(Sec::RefTargets, u32_bytes(&targets));

    Ok(data::encode(&sections))
}

/// Concatenates lists into (ranges `u32[n+1]`, values).
fn flatten<'a>(lists: impl Iterator<Item = &'a [u32]>) -> (Vec<u32>, Vec<u32>) {
    let mut ranges = vec![0u32];
    let mut values = Vec::new();
    for l in lists {
        values.extend_from_slice(l);
        ranges.push(values.len() as u32);
    }
    (ranges, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_java_readline() {
        let v: Vec<&str> = java_lines("a\nb\r\nc\rd\n\ne").collect();
        assert_eq!(v, vec!["a", "b", "c", "d", "", "e"]);
        assert_eq!(java_lines("a\n").count(), 1);
        let mut r = LineReader::new(std::io::Cursor::new(b"a\r\nb\rc\n\nd".to_vec()));
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push(l);
        }
        assert_eq!(got, vec!["a", "b", "c", "", "d"]);
    }

    #[test]
    fn a_cut_short_paraphrase_table_is_an_error() {
        let mut r = std::io::Cursor::new(b"0.1\na b\nc\n0.2\nx\n".to_vec());
        let e = parse_paraphrases(&mut r, Path::new("p.gz"))
            .err()
            .expect("must fail");
        assert!(e.to_string().contains("entry 2 is cut short"), "{e}");
    }
}
