//! Word interning: each distinct word string gets a `u32` id, so the metrics compare and hash
//! integers. Equal ids ⇔ equal strings, which is all the toolkit's tuple-of-strings n-grams and
//! token comparisons use.

use super::hash::FastMap;
use super::numeric::py_split;

/// Maps words to dense ids `0, 1, 2, ...` in order of first sight.
#[derive(Clone, Debug, Default)]
pub struct WordIds {
    ids: FastMap<String, u32>,
}

impl WordIds {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `word`, assigning the next one if it is new.
    pub fn id(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(word.to_string(), id);
        id
    }

    /// Number of distinct words seen.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no word was seen.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids of `s.split()` (Python: any whitespace, no empty words), as BLEU and CIDEr-D split.
    pub fn split_whitespace(&mut self, s: &str) -> Vec<u32> {
        py_split(s).map(|w| self.id(w)).collect()
    }

    /// Ids of `s.split(" ")` (Python: single spaces, empty words kept, so `""` is one empty
    /// word), as ROUGE-L splits.
    pub fn split_space(&mut self, s: &str) -> Vec<u32> {
        s.split(' ').map(|w| self.id(w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_follow_python() {
        let mut w = WordIds::new();
        assert_eq!(w.split_whitespace("a  b a"), vec![0, 1, 0]);
        assert_eq!(w.split_space("a  b"), vec![0, 2, 1]);
        assert_eq!(w.split_space(""), vec![2]);
        assert!(w.split_whitespace(" \t").is_empty());
        assert_eq!(w.len(), 3);
    }
}
