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

/// Up to this many n-grams of one order, duplicates are found by a linear scan.
const LINEAR_DEDUP_MAX: usize = 48;

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
        let mut c = NgramCounts {
            entries: Vec::with_capacity(4 * tokens.len()),
            starts: [0; MAX_N + 1],
            len: tokens.len(),
        };
        for n in 1..=MAX_N {
            let start = c.entries.len();
            if tokens.len() >= n {
                let windows = tokens.len() - n + 1;
                if windows <= LINEAR_DEDUP_MAX {
                    // Short sentences: a linear scan beats hashing and allocates nothing.
                    for w in tokens.windows(n) {
                        let key = ngram_key(w);
                        match c.entries[start..].iter_mut().find(|(k, _)| *k == key) {
                            Some(e) => e.1 += 1,
                            None => c.entries.push((key, 1)),
                        }
                    }
                } else {
                    let mut index: FastMap<NgramKey, u32> = FastMap::default();
                    index.reserve(windows);
                    for w in tokens.windows(n) {
                        let key = ngram_key(w);
                        match index.get(&key) {
                            Some(&at) => c.entries[at as usize].1 += 1,
                            None => {
                                index.insert(key, c.entries.len() as u32);
                                c.entries.push((key, 1));
                            }
                        }
                    }
                }
            }
            c.starts[n] = c.entries.len();
        }
        c
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

/// The references of one image with their distinct n-grams numbered ("slots") in order of
/// first occurrence over the references: what BLEU's clipping and CIDEr-D's reference vectors
/// are built from, each reference kept in the reference scorers' iteration order. Slots are
/// found by binary search over the sorted n-grams, which keeps thousands of images in memory
/// at once small.
#[derive(Clone, Debug, Default)]
pub struct SlottedRefs {
    /// The distinct n-grams, ascending.
    pub(crate) sorted_keys: Vec<NgramKey>,
    /// `sorted_slot[j]` is the slot of `sorted_keys[j]`.
    pub(crate) sorted_slot: Vec<u32>,
    /// Slot → maximum count over the references (BLEU's clip).
    pub(crate) max_count: Vec<u32>,
    /// Per reference: `(slot, count)` grouped by order, first occurrence within an order.
    pub(crate) entries: Vec<Vec<(u32, u32)>>,
    /// Per reference: `entries[r][starts[r][n-1]..starts[r][n]]` is order n.
    pub(crate) starts: Vec<[usize; MAX_N + 1]>,
    /// Per reference: number of tokens.
    pub(crate) lens: Vec<usize>,
}

thread_local! {
    /// Scratch map for numbering slots, reused across images.
    static SLOT_SCRATCH: std::cell::RefCell<FastMap<NgramKey, u32>> =
        std::cell::RefCell::new(FastMap::default());
}

impl SlottedRefs {
    /// Numbers the n-grams of `refs`.
    pub fn new(refs: &[&NgramCounts]) -> Self {
        let mut s = SlottedRefs::default();
        let mut order: Vec<NgramKey> = Vec::new();
        SLOT_SCRATCH.with(|cell| {
            let mut slots = cell.borrow_mut();
            slots.clear();
            for r in refs {
                let mut entries = Vec::with_capacity(r.all().len());
                for &(k, c) in r.all() {
                    let slot = match slots.get(&k) {
                        Some(&slot) => {
                            let m = &mut s.max_count[slot as usize];
                            *m = (*m).max(c);
                            slot
                        }
                        None => {
                            let slot = order.len() as u32;
                            slots.insert(k, slot);
                            order.push(k);
                            s.max_count.push(c);
                            slot
                        }
                    };
                    entries.push((slot, c));
                }
                s.entries.push(entries);
                s.starts.push(r.starts);
                s.lens.push(r.len());
            }
        });
        let mut pairs: Vec<(NgramKey, u32)> = order.into_iter().zip(0u32..).collect();
        pairs.sort_unstable_by_key(|&(k, _)| k);
        s.sorted_keys = pairs.iter().map(|&(k, _)| k).collect();
        s.sorted_slot = pairs.iter().map(|&(_, slot)| slot).collect();
        s
    }

    /// Numbers the n-grams of references given as token ids, without counting each reference
    /// separately first: one slot lookup per n-gram position. Equal to
    /// `SlottedRefs::new` of the references' [`NgramCounts`].
    pub fn from_tokens<S: AsRef<[u32]>>(refs: &[S]) -> Self {
        let mut s = SlottedRefs::default();
        let mut order: Vec<NgramKey> = Vec::new();
        // Per slot: the reference (+1) that last saw it and where in that reference's entries.
        let mut last_ref: Vec<u32> = Vec::new();
        let mut last_pos: Vec<u32> = Vec::new();
        SLOT_SCRATCH.with(|cell| {
            let mut slots = cell.borrow_mut();
            slots.clear();
            for (r, tokens) in refs.iter().enumerate() {
                let tokens = tokens.as_ref();
                let tag = r as u32 + 1;
                let mut entries: Vec<(u32, u32)> = Vec::with_capacity(4 * tokens.len());
                let mut starts = [0usize; MAX_N + 1];
                for (n, start) in starts.iter_mut().enumerate().skip(1) {
                    if tokens.len() >= n {
                        for w in tokens.windows(n) {
                            let key = ngram_key(w);
                            let slot = *slots.entry(key).or_insert_with(|| {
                                order.push(key);
                                s.max_count.push(0);
                                last_ref.push(0);
                                last_pos.push(0);
                                (order.len() - 1) as u32
                            }) as usize;
                            if last_ref[slot] == tag {
                                entries[last_pos[slot] as usize].1 += 1;
                            } else {
                                last_ref[slot] = tag;
                                last_pos[slot] = entries.len() as u32;
                                entries.push((slot as u32, 1));
                            }
                        }
                    }
                    *start = entries.len();
                }
                for &(slot, c) in &entries {
                    let m = &mut s.max_count[slot as usize];
                    *m = (*m).max(c);
                }
                s.entries.push(entries);
                s.starts.push(starts);
                s.lens.push(tokens.len());
            }
        });
        let mut pairs: Vec<(NgramKey, u32)> = order.into_iter().zip(0u32..).collect();
        pairs.sort_unstable_by_key(|&(k, _)| k);
        s.sorted_keys = pairs.iter().map(|&(k, _)| k).collect();
        s.sorted_slot = pairs.iter().map(|&(_, slot)| slot).collect();
        s
    }

    /// Number of references.
    pub fn num_refs(&self) -> usize {
        self.entries.len()
    }

    /// Number of distinct n-grams.
    pub fn num_slots(&self) -> usize {
        self.max_count.len()
    }

    /// The slot of `key`, if any reference has it.
    #[inline]
    pub fn slot(&self, key: NgramKey) -> Option<u32> {
        self.sorted_keys
            .binary_search(&key)
            .ok()
            .map(|j| self.sorted_slot[j])
    }

    /// Reference `r`'s `(slot, count)` of order `n` (1-based).
    pub(crate) fn order(&self, r: usize, n: usize) -> &[(u32, u32)] {
        let st = &self.starts[r];
        &self.entries[r][st[n - 1]..st[n]]
    }

    /// Per-slot values from per-distinct-n-gram values given in sorted-key order.
    pub(crate) fn by_slot<T: Copy + Default>(
        &self,
        sorted_values: impl IntoIterator<Item = T>,
    ) -> Vec<T> {
        let mut out = vec![T::default(); self.num_slots()];
        for (&slot, v) in self.sorted_slot.iter().zip(sorted_values) {
            out[slot as usize] = v;
        }
        out
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

    #[test]
    fn long_sentences_count_the_same_through_the_hash_path() {
        let long: Vec<u32> = (0..300).map(|i| (i * 7 % 13) as u32).collect();
        let c = NgramCounts::new(&long);
        assert_eq!(c.order(1).iter().map(|e| e.1).sum::<u32>(), 300);
        assert_eq!(c.order(1).len(), 13);
        assert_eq!(ngram_ids(c.order(1)[1].0), vec![7]);
        assert_eq!(c.order(4).iter().map(|e| e.1).sum::<u32>(), 297);
    }

    #[test]
    fn slotting_from_tokens_equals_slotting_counts() {
        let refs: Vec<Vec<u32>> = vec![vec![1, 2, 1, 2, 1], vec![], vec![2, 2, 3], vec![1]];
        let counts: Vec<NgramCounts> = refs.iter().map(|r| NgramCounts::new(r)).collect();
        let a = SlottedRefs::new(&counts.iter().collect::<Vec<_>>());
        let b = SlottedRefs::from_tokens(&refs);
        assert_eq!(a.sorted_keys, b.sorted_keys);
        assert_eq!(a.sorted_slot, b.sorted_slot);
        assert_eq!(a.max_count, b.max_count);
        assert_eq!(a.entries, b.entries);
        assert_eq!(a.starts, b.starts);
        assert_eq!(a.lens, b.lens);
    }

    #[test]
    fn slots_number_distinct_ngrams_and_track_the_max_count() {
        let a = NgramCounts::new(&[1, 2, 1]);
        let b = NgramCounts::new(&[1, 1, 1, 3]);
        let s = SlottedRefs::new(&[&a, &b]);
        let one = s.slot(ngram_key(&[1])).unwrap() as usize;
        assert_eq!((one, s.max_count[one]), (0, 3));
        assert_eq!(
            s.by_slot(s.sorted_keys.iter().map(|&k| ngram_order(k)))[one],
            1
        );
        assert_eq!(s.num_refs(), 2);
        assert_eq!(
            s.order(1, 1),
            &[(0, 3), (s.slot(ngram_key(&[3])).unwrap(), 1)]
        );
        assert_eq!(s.num_slots(), a.all().len() + b.all().len() - 1); // "1" is shared
        assert!(s.slot(ngram_key(&[9])).is_none());
    }
}
