//! The vocabulary: word ids 1..=V, with 0 reserved for BOS/EOS/padding as in the reference,
//! and `UNK` as the last word. Stored as `vocab.txt`, UTF-8, one word a line (line k = id k).

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// The out-of-vocabulary word; the reference appends it last, so its id is V.
pub const UNK: &str = "UNK";

/// Word ↔ id; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// A vocabulary with `words[k]` as id `k + 1`. Words must be non-empty, free of whitespace
    /// and distinct.
    pub fn new(words: Vec<String>) -> Result<Vocab> {
        let mut ids = HashMap::with_capacity(words.len());
        for (k, w) in words.iter().enumerate() {
            if w.is_empty() || w.chars().any(char::is_whitespace) {
                return Err(Error::invalid(format!(
                    "vocabulary word {} ({w:?}) is empty or contains whitespace",
                    k + 1
                )));
            }
            if let Some(prev) = ids.insert(w.clone(), (k + 1) as u32) {
                return Err(Error::invalid(format!(
                    "vocabulary word {w:?} appears twice (ids {prev} and {})",
                    k + 1
                )));
            }
        }
        if u32::try_from(words.len()).is_err() {
            return Err(Error::invalid("vocabulary too large"));
        }
        Ok(Vocab { words, ids })
    }

    /// V: the number of words, UNK included (the model has V + 1 outputs).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The word with id `id` (1..=V); `None` for 0 and out-of-range ids.
    pub fn word(&self, id: u32) -> Option<&str> {
        let k = (id as usize).checked_sub(1)?;
        self.words.get(k).map(String::as_str)
    }

    /// The id of `word`.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    /// The id of `UNK`, if the vocabulary has it.
    pub fn unk(&self) -> Option<u32> {
        self.id(UNK)
    }

    /// The words in id order (id 1 first).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Token ids of `tokens`, unknown words mapped to `UNK` (an error if there is none).
    pub fn encode<S: AsRef<str>>(&self, tokens: &[S]) -> Result<Vec<u32>> {
        tokens
            .iter()
            .map(|t| {
                let t = t.as_ref();
                self.id(t).or_else(|| self.unk()).ok_or_else(|| {
                    Error::invalid(format!(
                        "word {t:?} is not in the vocabulary, which has no {UNK}"
                    ))
                })
            })
            .collect()
    }

    /// The words of `ids` joined by spaces, stopping at the first 0 (EOS).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = String::new();
        for &id in ids.iter().take_while(|&&id| id != 0) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(self.word(id).unwrap_or("<?>"));
        }
        out
    }

    /// The `vocab.txt` text: one word a line.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.words.iter().map(|w| w.len() + 1).sum());
        for w in &self.words {
            s.push_str(w);
            s.push('\n');
        }
        s
    }

    /// Parses `vocab.txt` text; `what` names the source in errors.
    pub fn from_text(text: &str, what: &Path) -> Result<Vocab> {
        let mut words = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let w = line.strip_suffix('\r').unwrap_or(line);
            if w.is_empty() || w.chars().any(char::is_whitespace) {
                return Err(Error::format(
                    what,
                    format!("line {}: {w:?} is not a single word", k + 1),
                ));
            }
            words.push(w.to_string());
        }
        if words.is_empty() {
            return Err(Error::format(what, "empty vocabulary"));
        }
        Vocab::new(words).map_err(|e| Error::format(what, e.to_string()))
    }

    /// Reads a vocabulary: our `vocab.txt`, or a reference `cocotalk.json` (its `ix_to_word`,
    /// so a converted reference checkpoint keeps its word indices). JSON is recognised by a
    /// leading `{`.
    pub fn read(path: impl AsRef<Path>) -> Result<Vocab> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| Error::format(path, format!("not UTF-8 text: {e}")))?;
        if text.trim_start().starts_with('{') {
            Self::from_ix_to_word(text, path)
        } else {
            Self::from_text(text, path)
        }
    }

    fn from_ix_to_word(text: &str, path: &Path) -> Result<Vocab> {
        let v = crate::json::parse(text, &path.display().to_string())?;
        let fail = |p: String| Error::format(path, p);
        let map = v
            .get("ix_to_word")
            .and_then(|m| m.as_object())
            .ok_or_else(|| fail("no `ix_to_word` object (expected a cocotalk.json)".into()))?;
        let mut words = vec![None; map.len()];
        for (k, w) in map {
            let ix: usize = k
                .parse()
                .ok()
                .filter(|&i| (1..=map.len()).contains(&i))
                .ok_or_else(|| {
                    fail(format!(
                        "ix_to_word key {k:?} is not an index in 1..={}",
                        map.len()
                    ))
                })?;
            let w = w
                .as_str()
                .ok_or_else(|| fail(format!("ix_to_word[{k}] is not a string")))?;
            if words[ix - 1].replace(w.to_string()).is_some() {
                return Err(fail(format!("ix_to_word index {ix} appears twice")));
            }
        }
        let words: Vec<String> = words.into_iter().map(|w| w.expect("all set")).collect();
        Vocab::new(words).map_err(|e| fail(e.to_string()))
    }

    /// Writes `vocab.txt` atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_file(path, self.to_text().as_bytes())
    }
}

/// FNV-1a as a `Hasher`: fast for the short keys of word tables (inputs are local files, so
/// hash flooding is no concern).
#[derive(Clone, Copy)]
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FnvHasher>>;

/// Distinct words with their counts, in first-occurrence order (an interner: each word gets an
/// index), from which [`WordCounts::build_vocab`] makes the reference's vocabulary
/// (`prepro_labels.py` iterates a Python 3 dict, i.e. insertion order).
#[derive(Clone, Debug, Default)]
pub struct WordCounts {
    words: Vec<String>,
    counts: Vec<u64>,
    index: FnvMap<String, u32>,
}

impl WordCounts {
    /// No words yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one occurrence of `word`; returns its index (first-occurrence order).
    pub fn add(&mut self, word: &str) -> u32 {
        if let Some(&k) = self.index.get(word) {
            self.counts[k as usize] += 1;
            return k;
        }
        let k = self.words.len() as u32;
        self.index.insert(word.to_string(), k);
        self.words.push(word.to_string());
        self.counts.push(1);
        k
    }

    /// How often `word` was seen.
    pub fn count(&self, word: &str) -> u64 {
        self.index.get(word).map_or(0, |&k| self.counts[k as usize])
    }

    /// The word with index `k`.
    pub fn word(&self, k: u32) -> &str {
        &self.words[k as usize]
    }

    /// Distinct words seen.
    pub fn distinct(&self) -> usize {
        self.words.len()
    }

    /// Words seen more than `threshold` times, in first-occurrence order, then `UNK` (always
    /// appended, so every later word has an id; the reference appends it whenever a word was
    /// dropped, which is every real dataset).
    pub fn build_vocab(&self, threshold: u64) -> Result<Vocab> {
        let mut words: Vec<String> = self
            .words
            .iter()
            .zip(&self.counts)
            .filter(|(_, c)| **c > threshold)
            .map(|(w, _)| w.clone())
            .collect();
        words.push(UNK.to_string());
        Vocab::new(words)
    }

    /// For every word index, its id in `vocab` (`UNK`'s for words it lacks; an error if it
    /// has no `UNK` and a word is missing).
    pub fn ids_in(&self, vocab: &Vocab) -> Result<Vec<u32>> {
        self.words
            .iter()
            .map(|w| {
                vocab.id(w).or_else(|| vocab.unk()).ok_or_else(|| {
                    Error::invalid(format!(
                        "word {w:?} is not in the vocabulary, which has no {UNK}"
                    ))
                })
            })
            .collect()
    }
}

/// Calls `f` with each token of `raw` under Karpathy's tokenisation (neuraltalk2 `prepro.py`:
/// lower-case, delete ASCII punctuation, split on whitespace); `scratch` is reused.
pub fn for_each_token(raw: &str, scratch: &mut String, mut f: impl FnMut(&str)) {
    scratch.clear();
    for c in raw.chars() {
        if c.is_ascii() {
            if !c.is_ascii_punctuation() {
                scratch.push(c.to_ascii_lowercase());
            }
        } else {
            scratch.extend(c.to_lowercase());
        }
    }
    scratch.split_whitespace().for_each(&mut f);
}

/// Karpathy's tokenisation of a raw caption; see [`for_each_token`].
pub fn tokenize(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(raw, &mut String::new(), |t| out.push(t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_like_karpathy() {
        assert_eq!(
            tokenize("A man's T-shirt,  on a   DIRT road. "),
            ["a", "mans", "tshirt", "on", "a", "dirt", "road"]
        );
        assert!(tokenize(" . , ").is_empty());
    }

    #[test]
    fn vocab_from_counts_keeps_first_occurrence_order_and_puts_unk_last() {
        let mut c = WordCounts::new();
        let idx: Vec<u32> = "b a b c a b d".split(' ').map(|w| c.add(w)).collect();
        assert_eq!(idx, [0, 1, 0, 2, 1, 0, 3]);
        assert_eq!((c.count("b"), c.count("z"), c.word(2)), (3, 0, "c"));
        let v = c.build_vocab(1).unwrap();
        assert_eq!(c.ids_in(&v).unwrap(), [1, 2, 3, 3]);
        let no_unk = Vocab::new(vec!["b".into()]).unwrap();
        assert!(c.ids_in(&no_unk).is_err());
        assert_eq!(v.words(), ["b", "a", "UNK"]);
        assert_eq!(v.unk(), Some(3));
        assert_eq!(v.encode(&["a", "zzz", "b"]).unwrap(), [2, 3, 1]);
        assert_eq!(v.decode(&[2, 3, 1, 0, 2]), "a UNK b");
    }

    #[test]
    fn text_and_cocotalk_json_read_back() {
        let p = Path::new("v.txt");
        let v = Vocab::from_text("x\ny\nUNK\n", p).unwrap();
        assert_eq!(Vocab::from_text(&v.to_text(), p).unwrap(), v);
        let e = Vocab::from_text("x\n\ny\n", p).unwrap_err().to_string();
        assert!(e.contains("v.txt") && e.contains("line 2"), "{e}");
        let e = Vocab::from_text("x\nx\n", p).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let j = r#"{"ix_to_word": {"2": "dog", "1": "a", "3": "UNK"}, "images": []}"#;
        let v = Vocab::from_ix_to_word(j, Path::new("cocotalk.json")).unwrap();
        assert_eq!(v.words(), ["a", "dog", "UNK"]);
        let j = r#"{"ix_to_word": {"1": "a", "3": "dog"}}"#;
        let e = Vocab::from_ix_to_word(j, Path::new("c.json")).unwrap_err();
        assert!(e.to_string().contains("not an index"), "{e}");
    }
}
