//! The feature store and the data folder: round trips (synth → disk → loader, f32 exact and
//! f16 within rounding) and damaged input (every truncation, every header bit, duplicate ids,
//! captions without features), never a panic and never a partial output file.

use aoanet::data::dataset::{CAPTIONS_FILE, FEATURES_FILE};
use aoanet::data::{
    Dataset, Dtype, FeatureStore, FeatureStoreWriter, Loader, LoaderConfig, Mode, Split,
    SynthConfig, World,
};
use half::f16;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Files in `dir`, sorted: what a failed write must not add to.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn small_world(dtype: Dtype) -> World {
    World::generate(&SynthConfig {
        train: 40,
        val: 7,
        test: 5,
        dim: 24,
        dtype,
        ..SynthConfig::default()
    })
    .unwrap()
}

/// Every image of every split through a loader over `data`, in order: (id, regions, feats).
fn load_all(data: Arc<Dataset>, prefetch: usize) -> Vec<(u64, usize, Vec<f32>)> {
    let mut out = Vec::new();
    for split in Split::ALL {
        let cfg = LoaderConfig {
            split,
            batch_size: 6,
            mode: Mode::Eval,
            prefetch,
            ..LoaderConfig::default()
        };
        let mut loader = Loader::new(data.clone(), cfg).unwrap();
        while let Some(b) = loader.next_batch().unwrap() {
            for i in 0..b.images() {
                let n = b.region_counts[i];
                let at = i * b.max_regions * b.dim;
                let feats = b.att_feats[at..at + n * b.dim].to_vec();
                // Padding is zero.
                let pad_end = (i + 1) * b.max_regions * b.dim;
                assert!(
                    b.att_feats[at + n * b.dim..pad_end]
                        .iter()
                        .all(|&v| v == 0.0)
                );
                out.push((b.image_ids[i], n, feats));
            }
        }
    }
    out
}

#[test]
fn synth_to_disk_to_loader_is_exact_in_f32() {
    let dir = scratch("rt32");
    let world = small_world(Dtype::F32);
    world.dataset.save(&dir).unwrap();
    let disk = Arc::new(Dataset::open(&dir).unwrap());
    assert_eq!(disk.captions, world.dataset.captions);
    assert_eq!(disk.vocab, world.dataset.vocab);
    let got = load_all(disk, 2);
    assert_eq!(got.len(), 52);
    for (id, n, feats) in &got {
        let r = world.dataset.features.get(*id).unwrap();
        assert_eq!(*n, r.count);
        let want = r.feats.to_f32_vec();
        assert!(
            feats
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "image {id}: features differ"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn f16_store_is_within_half_rounding() {
    let dir = scratch("rt16");
    let world = small_world(Dtype::F32);
    let src = &world.dataset.features;
    let path = dir.join(FEATURES_FILE);
    let mut w = FeatureStoreWriter::create(&path, Dtype::F16, src.dim(), true).unwrap();
    for id in src.image_ids() {
        let r = src.get(id).unwrap();
        w.push(id, &r.feats.to_f32_vec(), r.boxes).unwrap();
    }
    let store = w.finish().unwrap();
    assert_eq!(store.dtype(), Dtype::F16);
    assert!(
        store.byte_len() < src.byte_len() * 6 / 10,
        "f16 roughly halves the store"
    );
    world
        .dataset
        .captions
        .write(dir.join(CAPTIONS_FILE))
        .unwrap();
    world.dataset.vocab.write(dir.join("vocab.txt")).unwrap();
    let disk = Arc::new(Dataset::open(&dir).unwrap());
    let mut worst = 0.0f32;
    for (id, _, feats) in load_all(disk, 0) {
        let want = src.get(id).unwrap().feats.to_f32_vec();
        for (a, b) in feats.iter().zip(&want) {
            // Round to nearest binary16: relative error at most 2^-11 for normal values,
            // absolute 2^-25 (half the smallest subnormal step) below them.
            let tol = b.abs() * 2f32.powi(-11) + 2f32.powi(-25);
            assert!((a - b).abs() <= tol, "image {id}: {a} vs {b}");
            assert_eq!(
                *a,
                f16::from_f32(*b).to_f32(),
                "rounding is round-to-nearest"
            );
            worst = worst.max((a - b).abs() / b.abs().max(1e-6));
        }
    }
    assert!(worst > 0.0, "f16 must actually round something");
    // Boxes stay f32.
    let id = src.image_ids().next().unwrap();
    let disk = FeatureStore::open(&path).unwrap();
    assert_eq!(disk.get(id).unwrap().boxes, src.get(id).unwrap().boxes);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small store on disk: 3 images with 1, 3 and 2 regions of 5 values (f16, so the boxes
/// need the 4-byte alignment step), boxes included.
fn tiny_store(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("tiny.bin");
    let mut w = FeatureStoreWriter::create(&path, Dtype::F16, 5, true).unwrap();
    for (id, n) in [(9u64, 1usize), (4, 3), (77, 2)] {
        let f: Vec<f32> = (0..n * 5).map(|k| k as f32 * 0.25 - 1.0).collect();
        let b: Vec<f32> = (0..n * 4).map(|k| k as f32 * 10.0).collect();
        w.push(id, &f, Some(&b)).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn every_truncation_is_a_named_error() {
    let dir = scratch("trunc");
    let (_, bytes) = tiny_store(&dir);
    let cut_path = dir.join("cut.bin");
    for cut in 0..bytes.len() {
        // Files are slow to write here, so most cuts go through the in-memory door (the same
        // validation, named by the path given); the header's cuts and every 16th go to disk.
        let e = if cut <= 64 || cut % 16 == 0 {
            std::fs::write(&cut_path, &bytes[..cut]).unwrap();
            FeatureStore::open(&cut_path).unwrap_err().to_string()
        } else {
            FeatureStore::from_bytes(&bytes[..cut], &cut_path)
                .unwrap_err()
                .to_string()
        };
        assert!(
            e.starts_with(&cut_path.display().to_string()),
            "cut {cut}: {e}"
        );
        if cut >= 64 {
            assert!(
                e.contains(&format!(
                    "truncated: expected {} bytes, found {cut}",
                    bytes.len()
                )),
                "cut {cut}: {e}"
            );
        } else if cut > 0 {
            assert!(e.contains("truncated"), "cut {cut}: {e}");
        }
    }
    // One byte too many is named too.
    let mut long = bytes.clone();
    long.push(0);
    std::fs::write(&cut_path, &long).unwrap();
    let e = FeatureStore::open(&cut_path).unwrap_err().to_string();
    assert!(e.contains("1 unexpected bytes"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_flipped_header_and_index_bit_is_a_named_error() {
    let dir = scratch("flip");
    let (path, bytes) = tiny_store(&dir);
    assert!(FeatureStore::open(&path).is_ok());
    let index_start = bytes.len() - 3 * 24;
    let bad = dir.join("bad.bin");
    let positions = (0..64).chain(index_start..bytes.len());
    for k in positions {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[k] ^= 1 << bit;
            // As above: one bit per byte through a real file, the rest in memory.
            let e = if bit == 0 {
                std::fs::write(&bad, &b).unwrap();
                FeatureStore::open(&bad).unwrap_err().to_string()
            } else {
                FeatureStore::from_bytes(&b, &bad).unwrap_err().to_string()
            };
            assert!(
                e.starts_with(&bad.display().to_string()),
                "byte {k} bit {bit}: {e}"
            );
        }
    }
    // The specific messages a user sees for the common cases.
    let mut b = bytes.clone();
    b[0] = b'X';
    let e = FeatureStore::from_bytes(&b, "x.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an aoanet feature store"), "{e}");
    let mut b = bytes.clone();
    b[20] ^= 1;
    let e = FeatureStore::from_bytes(&b, "x.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("header checksum mismatch"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn duplicate_ids_fail_and_leave_no_file() {
    let dir = scratch("dup");
    let path = dir.join("feats.bin");
    let before = listing(&dir);
    {
        let mut w = FeatureStoreWriter::create(&path, Dtype::F32, 2, false).unwrap();
        w.push(5, &[1.0, 2.0], None).unwrap();
        let e = w.push(5, &[3.0, 4.0], None).unwrap_err().to_string();
        assert!(e.contains("image 5: duplicate image id"), "{e}");
        // The caller gives up: dropping the writer removes its temporary file.
    }
    assert_eq!(listing(&dir), before, "no partial output file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn captions_without_features_are_named() {
    let dir = scratch("missing");
    let world = small_world(Dtype::F32);
    world.dataset.save(&dir).unwrap();
    // A store that lacks image 3.
    let src = &world.dataset.features;
    let mut w =
        FeatureStoreWriter::create(dir.join(FEATURES_FILE), Dtype::F32, src.dim(), false).unwrap();
    for id in src.image_ids().filter(|&id| id != 3) {
        w.push(id, &src.get(id).unwrap().feats.to_f32_vec(), None)
            .unwrap();
    }
    w.finish().unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains(CAPTIONS_FILE)
            && e.contains("image 3 (train split)")
            && e.contains("1 captioned"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_vocabulary_of_the_wrong_size_is_named() {
    let dir = scratch("vocab");
    let world = small_world(Dtype::F32);
    world.dataset.save(&dir).unwrap();
    std::fs::write(dir.join("vocab.txt"), "a\nb\nUNK\n").unwrap();
    let e = Dataset::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("vocabulary of 46 words") && e.contains("has 3"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
