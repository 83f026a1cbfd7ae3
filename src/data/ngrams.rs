//! The CIDEr-D document frequencies of a split, exactly as the reference's `prepro_ngrams.py`
//! counts them for the self-critical reward (AOANET.md 3.3): every reference of every image,
//! full length (not truncated to the label length), with the EOS index 0 appended; each image
//! counts once per n-gram; `ref_len` is the number of images. The counting and the file are the
//! metrics module's ([`DocumentFrequencies`]); this only feeds it the captions.

use super::captions::{Captions, Split};
use crate::metrics::df::{DfBuilder, DocumentFrequencies};

/// The document frequencies of `split` (train: Karpathy train + restval), counted on up to
/// `threads` threads (the result does not depend on the count).
pub fn document_frequencies(
    captions: &Captions,
    split: Split,
    threads: usize,
) -> DocumentFrequencies {
    let positions = captions.split_positions(split);
    let per = positions.len().div_ceil(threads.max(1)).max(1);
    let builders: Vec<DfBuilder> = std::thread::scope(|s| {
        let handles: Vec<_> = positions
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let mut b = DfBuilder::new();
                    let mut refs: Vec<Vec<u32>> = Vec::new();
                    for &p in part {
                        let img = captions.image(p);
                        refs.clear();
                        refs.extend((0..img.len()).map(|c| {
                            let mut r = img.tokens(c).to_vec();
                            r.push(0);
                            r
                        }));
                        b.add_image(&refs);
                    }
                    b
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("df worker panicked"))
            .collect()
    });
    let mut all = DfBuilder::new();
    for b in builders {
        all.merge(b);
    }
    all.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CaptionsBuilder;

    #[test]
    fn counts_once_per_image_with_eos_and_only_the_split() {
        let mut b = CaptionsBuilder::new(9, 2);
        b.add_image(1, Split::Train).unwrap();
        b.add_caption(&[5, 6, 7], "x").unwrap(); // longer than max_length 2: still counted whole
        b.add_caption(&[5, 6], "x").unwrap();
        b.add_image(2, Split::Train).unwrap();
        b.add_caption(&[6], "x").unwrap();
        b.add_image(3, Split::Val).unwrap();
        b.add_caption(&[5, 9], "x").unwrap();
        let c = b.finish().unwrap();
        for threads in [1, 2, 3] {
            let df = document_frequencies(&c, Split::Train, threads);
            assert_eq!(df.num_images(), 2);
            assert_eq!(df.get(&[5]), 1, "twice in image 1, counted once");
            assert_eq!(df.get(&[6]), 2);
            assert_eq!(df.get(&[0]), 2, "EOS is a word");
            assert_eq!(df.get(&[5, 6, 7, 0]), 1, "untruncated, with EOS");
            assert_eq!(df.get(&[6, 0]), 2);
            assert_eq!(df.get(&[9]), 0, "val is not counted");
        }
    }
}
