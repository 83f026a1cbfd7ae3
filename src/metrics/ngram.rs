//! N-grams over token ids, packed into one `u128`, and per-sentence n-gram counts in the order
//! the reference scorers see them.
//!
//! The toolkit keys n-grams by tuples of strings (`tuple(s.split()[i:i+k])`). Two tuples are
//! equal exactly when their words are equal position by position, so once every distinct word
//! (or every distinct token index, for the training reward) has one `u32` id, packing the ids
//! gives the same equality at a fraction of the cost. Each lane holds `id + 1`, so an empty lane
//! (0) never equals a word and n-grams of different orders never collide: the order is the
//! number of non-empty lanes.
//!
//! The reference iterates its `defaultdict` of counts in insertion order: all unigrams in order
//! of first occurrence, then all bigrams, and so on. Floating-point sums over n-grams follow that
//! order to be bit-identical, so [`NgramCounts`] keeps it.

use super::hash::FastMap;

/// The largest n-gram order any metric here uses (BLEU-4, CIDEr-D with n = 4).
pub const MAX_N: usize = 4;

/// An n-gram of 1 to [`MAX_N`] token ids, packed: lane `i` (bits `32·i..32·i+32`) holds
/// `ids[i] + 1`, unused lanes hold 0.
pub type NgramKey = u128;

/// Packs `ids` (1 to 4 of them, each below `u32::MAX`) into an [`NgramKey`].
///
/// # Panics
/// If `ids` is empty, longer than [`MAX_N`], or holds `u32::MAX` (which has no `id + 1`).
#[inline]
pub fn ngram_key(ids: &[u32]) -> NgramKey {
    assert!(
        (1..=MAX_N).contains(&ids.len()),
        "n-gram of {} ids",
        ids.len()
    );
    let mut key = 0u128;
    for (i, &id) in ids.iter().enumerate() {
        let lane = id
            .checked_add(1)
            .expect("token id u32::MAX cannot be packed");
        key |= u128::from(lane) << (32 * i);
    }
    key
}

/// The order (number of ids) of a packed n-gram.
#[inline]
pub fn ngram_order(key: NgramKey) -> usize {
    (0..MAX_N)
        .take_while(|i| (key >> (32 * i)) as u32 != 0)
        .count()
}

/// The ids of a packed n-gram.
pub fn ngram_ids(key: NgramKey) -> Vec<u32> {
    (0..ngram_order(key))
        .map(|i| ((key >> (32 * i)) as u32) - 1)
        .collect()
}

/// The n-grams (n = 1..=4) of one sentence with their counts, grouped by order and, within an
/// order, in order of first occurrence: the iteration order of the reference's `precook` dict.
#[derive(Clone, Debug, Default)]
pub struct NgramCounts {
    /// `(key, count)`, all unigrams first, then bigrams, ...
    entries: Vec<(NgramKey, u32)>,
    /// `entries[starts[n-1]..starts[n]]` are the n-grams of order n.
    starts: [usize; MAX_N + 1],
    /// Number of tokens in the sentence.
    len: usize,
}

impl NgramCounts {
    /// Counts the 1..=4-grams of `tokens`.
    pub fn new(tokens: &[u32]) -> Self {
        let mut c = NgramCounts::default();
        let mut index = FastMap::default();
        c.recount(tokens, &mut index);
        c
    }

    /// Recounts for `tokens`, reusing this value's buffers and the caller's `index` scratch map
    /// (cleared here), so a hot loop allocates nothing once warm.
    pub(crate) fn recount(&mut self, tokens: &[u32], index: &mut FastMap<NgramKey, u32>) {
        self.entries.clear();
        self.len = tokens.len();
        self.starts[0] = 0;
        for n in 1..=MAX_N {
            index.clear();
            if tokens.len() >= n {
                for w in tokens.windows(n) {
                    let key = ngram_key(w);
                    match index.get(&key) {
                        Some(&at) => self.entries[at as usize].1 += 1,
                        None => {
                            index.insert(key, self.entries.len() as u32);
                            self.entries.push((key, 1));
                        }
                    }
                }
            }
            self.starts[n] = self.entries.len();
        }
    }

    /// Number of tokens in the sentence.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sentence has no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All `(n-gram, count)` pairs in reference order.
    pub fn all(&self) -> &[(NgramKey, u32)] {
        &self.entries
    }

    /// The `(n-gram, count)` pairs of order `n` (1-based) in order of first occurrence.
    pub fn order(&self, n: usize) -> &[(NgramKey, u32)] {
        &self.entries[self.starts[n - 1]..self.starts[n]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_orders_never_collide() {
        for ids in [
            &[0u32][..],
            &[0, 0],
            &[7, 0, 3],
            &[1, 2, 3, 4],
            &[u32::MAX - 1],
        ] {
            let k = ngram_key(ids);
            assert_eq!(ngram_order(k), ids.len());
            assert_eq!(ngram_ids(k), ids);
        }
        assert_ne!(ngram_key(&[0]), ngram_key(&[0, 0]));
    }

    #[test]
    fn counts_follow_first_occurrence_order_per_order() {
        // "b a b a" -> unigrams b:2 a:2; bigrams (b a):2 (a b):1; trigrams (b a b) (a b a); ...
        let c = NgramCounts::new(&[2, 1, 2, 1]);
        let uni: Vec<_> = c.order(1).iter().map(|&(k, n)| (ngram_ids(k), n)).collect();
        assert_eq!(uni, vec![(vec![2], 2), (vec![1], 2)]);
        let bi: Vec<_> = c.order(2).iter().map(|&(k, n)| (ngram_ids(k), n)).collect();
        assert_eq!(bi, vec![(vec![2, 1], 2), (vec![1, 2], 1)]);
        assert_eq!(c.order(3).len(), 2);
        assert_eq!(c.order(4).len(), 1);
        assert_eq!(c.all().len(), 7);
        assert!(NgramCounts::new(&[]).all().is_empty());
    }
}
