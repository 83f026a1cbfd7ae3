//! The loader against the reference's batch layout (AOANET.md 2.1): labels, masks, caption
//! windows, padding and masks of regions, epoch order and `wrapped`, exact save/restore, and
//! read-ahead that changes nothing.

use aoanet::data::{
    Batch, CaptionsBuilder, Dataset, Dtype, FeatureStoreWriter, Loader, LoaderConfig, LoaderState,
    Mode, Split, SynthConfig, Vocab, World,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Seven train images with region counts 1..=7 and caption counts 1..=7, plus 2 val images
/// with 3 regions each. Token ids encode (image, caption, position) so every label can be
/// traced: caption `c` of image `i` is `[100 i + 10 c + 1, ..]`, `2 + 3 c` tokens long (image
/// 6's last caption has 20 tokens, longer than 16).
fn handmade() -> Arc<Dataset> {
    let dim = 3;
    let vocab = Vocab::new((1..=1000).map(|k| format!("w{k}")).collect()).unwrap();
    let mut w = FeatureStoreWriter::in_memory("handmade", Dtype::F32, dim, false).unwrap();
    let mut c = CaptionsBuilder::new(vocab.len(), 16);
    for i in 0..9u64 {
        let n = if i < 7 { i as usize + 1 } else { 3 };
        let feats: Vec<f32> = (0..n * dim)
            .map(|k| (i * 1000 + k as u64 + 1) as f32)
            .collect();
        w.push(i, &feats, None).unwrap();
        c.add_image(i, if i < 7 { Split::Train } else { Split::Val })
            .unwrap();
        let ncap = if i < 7 { i as usize + 1 } else { 5 };
        for cap in 0..ncap as u32 {
            let len = 2 + 3 * cap;
            let toks: Vec<u32> = (0..len)
                .map(|p| 100 * i as u32 + 10 * cap + 1 + p % 8)
                .collect();
            c.add_caption(&toks, &format!("image {i} caption {cap}"))
                .unwrap();
        }
    }
    Arc::new(Dataset::new(w.finish().unwrap(), c.finish().unwrap(), vocab).unwrap())
}

fn cfg(batch_size: usize, prefetch: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        seed: 77,
        prefetch,
        ..LoaderConfig::default()
    }
}

/// Which caption of its image a label row holds (from the traceable token ids).
fn caption_of(b: &Batch, row: usize) -> u32 {
    let w = b.label_width();
    (b.labels[row * w + 1] % 100) / 10
}

#[test]
fn labels_masks_and_features_follow_the_reference_layout() {
    let data = handmade();
    let mut l = Loader::new(data.clone(), cfg(7, 0)).unwrap();
    let b = l.next_batch().unwrap().unwrap();
    // First epoch in file order; the batch holds the whole split, so it wraps.
    assert_eq!(b.image_ids, [0, 1, 2, 3, 4, 5, 6]);
    assert!(b.wrapped);
    assert_eq!((b.rows(), b.label_width(), b.max_regions), (35, 18, 7));
    for i in 0..7 {
        let img = data.captions.image(i);
        let mut chosen = Vec::new();
        for j in 0..5 {
            let row = i * 5 + j;
            let lab = &b.labels[row * 18..(row + 1) * 18];
            let mask = &b.masks[row * 18..(row + 1) * 18];
            let c = caption_of(&b, row);
            chosen.push(c);
            let toks = img.tokens(c as usize);
            let nnz = toks.len().min(16);
            assert_eq!(lab[0], 0, "BOS");
            assert_eq!(&lab[1..1 + nnz], &toks[..nnz]);
            assert!(lab[1 + nnz..].iter().all(|&t| t == 0), "EOS and padding");
            let ones = mask.iter().take_while(|&&m| m == 1.0).count();
            assert_eq!(ones, nnz + 2, "mask covers BOS, the tokens and one EOS");
            assert!(mask[ones..].iter().all(|&m| m == 0.0));
        }
        if img.len() >= 5 {
            // A contiguous window of 5.
            assert!(chosen.windows(2).all(|w| w[1] == w[0] + 1), "{chosen:?}");
        } else {
            assert!(chosen.iter().all(|&c| (c as usize) < img.len()));
        }
        // gts: every caption, truncated to 16.
        assert_eq!(b.gts[i].len(), img.len());
        for (c, g) in b.gts[i].iter().enumerate() {
            let t = img.tokens(c);
            assert_eq!(g[..], t[..t.len().min(16)]);
        }
        // Features in place, zero padding, mask on real regions.
        let n = b.region_counts[i];
        assert_eq!(n, i + 1);
        let masks = b
            .att_masks
            .as_ref()
            .expect("counts differ, so masks are given");
        for r in 0..7 {
            assert_eq!(masks[i * 7 + r], if r < n { 1.0 } else { 0.0 });
            for d in 0..3 {
                let v = b.att_feats[(i * 7 + r) * 3 + d];
                let want = if r < n {
                    (i * 1000 + r * 3 + d + 1) as f32
                } else {
                    0.0
                };
                assert_eq!(v, want);
            }
        }
    }
    // A caption longer than 16 fills all 16 columns and keeps one EOS (look for one: the
    // windows are random, but over a few batches images 5 and 6 show captions 5 and 6).
    let mut found = false;
    for _ in 0..20 {
        let b = l.next_batch().unwrap().unwrap();
        for row in 0..b.rows() {
            if caption_of(&b, row) >= 5 {
                assert_eq!(b.masks[row * 18..(row + 1) * 18].iter().sum::<f32>(), 18.0);
                assert_eq!(b.labels[row * 18 + 17], 0);
                assert_ne!(b.labels[row * 18 + 16], 0);
                found = true;
            }
        }
    }
    assert!(found);
}

#[test]
fn equal_region_counts_give_no_mask() {
    let data = handmade();
    let c = LoaderConfig {
        split: Split::Val,
        ..cfg(2, 0)
    };
    let b = Loader::new(data, c).unwrap().next_batch().unwrap().unwrap();
    assert_eq!(b.region_counts, [3, 3]);
    assert!(b.att_masks.is_none());
}

#[test]
fn epochs_cover_the_split_and_batches_straddle_them() {
    let data = handmade();
    let mut l = Loader::new(data, cfg(3, 0)).unwrap();
    let mut seen: Vec<(u64, u64)> = Vec::new(); // (epoch of batch, id)
    let mut wraps = Vec::new();
    for it in 0..14 {
        let b = l.next_batch().unwrap().unwrap();
        assert_eq!(b.iteration, it);
        if b.wrapped {
            wraps.push(it);
        }
        for &id in &b.image_ids {
            seen.push((b.epoch, id));
        }
    }
    // 42 picks = 6 epochs of 7; the wrap happens in batches taking picks 7, 14, ... 42.
    assert_eq!(wraps, [2, 4, 6, 9, 11, 13]);
    let ids: Vec<u64> = seen.iter().map(|s| s.1).collect();
    assert_eq!(
        &ids[..7],
        &[0, 1, 2, 3, 4, 5, 6],
        "first epoch in file order"
    );
    let mut orders = Vec::new();
    for e in 0..6 {
        let ep: Vec<u64> = ids[e * 7..(e + 1) * 7].to_vec();
        let set: HashSet<u64> = ep.iter().copied().collect();
        assert_eq!(set.len(), 7, "epoch {e} takes every image once");
        orders.push(ep);
    }
    assert!(
        orders[1..].iter().any(|o| o != &orders[0]),
        "later epochs are shuffled"
    );
    assert_ne!(orders[1], orders[2], "each epoch has its own order");
    assert_eq!(l.state().epoch, 6);
    assert_eq!(l.state().index, 0);
}

#[test]
fn read_ahead_changes_nothing() {
    let data = handmade();
    let mut a = Loader::new(data.clone(), cfg(4, 0)).unwrap();
    let mut b = Loader::new(data, cfg(4, 3)).unwrap();
    for _ in 0..25 {
        assert_eq!(a.next_batch().unwrap(), b.next_batch().unwrap());
        assert_eq!(a.state(), b.state());
    }
}

#[test]
fn a_saved_state_resumes_exactly() {
    let world = World::generate(&SynthConfig {
        train: 23,
        val: 3,
        test: 3,
        dim: 8,
        ..SynthConfig::default()
    })
    .unwrap();
    let data = Arc::new(world.dataset);
    for prefetch in [0, 2] {
        let mut a = Loader::new(data.clone(), cfg(5, prefetch)).unwrap();
        for _ in 0..11 {
            a.next_batch().unwrap();
        }
        let text = a.state().to_json().to_json();
        let state = LoaderState::from_json(&aoanet::json::parse(&text, "state").unwrap()).unwrap();
        assert_eq!(&state, a.state());
        let mut r = Loader::resume(data.clone(), cfg(5, prefetch), state).unwrap();
        for _ in 0..12 {
            assert_eq!(a.next_batch().unwrap(), r.next_batch().unwrap());
        }
    }
    // A state for another split, size or seed is refused.
    let l = Loader::new(data.clone(), cfg(5, 0)).unwrap();
    let mut other = l.state().clone();
    other.seed = 78;
    let e = Loader::resume(data.clone(), cfg(5, 0), other)
        .err()
        .unwrap();
    assert!(e.to_string().contains("seed 78"), "{e}");
    let mut other = l.state().clone();
    other.split_len = 22;
    assert!(Loader::resume(data, cfg(5, 0), other).is_err());
}

#[test]
fn eval_makes_one_pass_with_a_short_last_batch() {
    let data = handmade();
    for prefetch in [0, 1] {
        let c = LoaderConfig {
            mode: Mode::Eval,
            ..cfg(3, prefetch)
        };
        let mut l = Loader::new(data.clone(), c).unwrap();
        let mut sizes = Vec::new();
        let mut ids = Vec::new();
        while let Some(b) = l.next_batch().unwrap() {
            sizes.push((b.images(), b.wrapped));
            ids.extend(b.image_ids);
        }
        assert_eq!(sizes, [(3, false), (3, false), (1, true)]);
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6]);
        assert!(l.next_batch().unwrap().is_none());
    }
}

#[test]
fn bad_configurations_are_refused() {
    let data = handmade();
    assert!(Loader::new(data.clone(), cfg(0, 0)).is_err());
    let c = LoaderConfig {
        split: Split::Test,
        ..cfg(2, 0)
    };
    let e = Loader::new(data, c).err().unwrap().to_string();
    assert!(e.contains("test split has no images"), "{e}");
}
