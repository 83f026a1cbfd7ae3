//! Data bench: random-access reads of 36×2048 f32 regions from a multi-GB feature store, with
//! the page cache dropped for the file (cold) and warm, and the loader's batches/s.
//!
//! ```sh
//! cargo bench --bench data                       # 3 GB store in the temp dir
//! AOANET_BENCH_STORE_GB=2 AOANET_BENCH_DIR=/mnt/x cargo bench --bench data
//! ```
//!
//! "Cold" uses `posix_fadvise(POSIX_FADV_DONTNEED)` on the whole file (after the store is
//! unmapped, since mapped pages are not dropped) and reports the fraction of the file still
//! resident (`mincore`), so a cache that did not drop is visible. A virtual machine's host
//! may still cache the disk below us: cold here means "not in this kernel's page cache".
//! The store is deleted at the end, also on a panic.

use aoanet::Philox;
use aoanet::data::{
    CaptionsBuilder, Dataset, Dtype, FeatureStore, FeatureStoreWriter, Loader, LoaderConfig, Split,
    Vocab,
};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const REGIONS: usize = 36;
const DIM: usize = 2048;

/// Deletes the store when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn drop_cache(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the
    // duration of the call.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise failed: {rc}");
}

/// Fraction of the file's pages in the page cache.
fn resident(path: &Path) -> f64 {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: read-only map of a file nobody modifies during the bench.
    let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let pages = map.len().div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: the range is exactly the live mapping (page-aligned start) and `vec` has one
    // byte per page, as mincore requires.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr() as *mut libc::c_void,
            map.len(),
            vec.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "mincore failed");
    vec.iter().filter(|&&b| b & 1 == 1).count() as f64 / pages as f64
}

/// Reads `n` random images (all of their values, as f32) and returns images/s; with
/// `will_need`, each image's block is requested in one read first.
fn random_reads(store: &FeatureStore, n: usize, seed: u64, will_need: bool) -> f64 {
    let ids: Vec<u64> = store.image_ids().collect();
    let mut rng = Philox::new(seed);
    let mut buf = vec![0.0f32; REGIONS * DIM];
    let mut sink = 0.0f32;
    let t = Instant::now();
    for _ in 0..n {
        let p = rng.below(ids.len() as u32) as usize;
        if will_need {
            store.will_need(p);
        }
        let r = store.at(p);
        r.feats.copy_to_f32(&mut buf[..r.count * r.dim]);
        sink += buf[r.count * r.dim - 1];
    }
    std::hint::black_box(sink);
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let gb: f64 = std::env::var("AOANET_BENCH_STORE_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 0.05 } else { 3.0 });
    let dir = std::env::var_os("AOANET_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let image_bytes = REGIONS * DIM * 4;
    let images = ((gb * 1e9) as usize / image_bytes).max(100);
    let path = dir.join(format!("aoanet-bench-{}.feats", std::process::id()));
    let _cleanup = Scratch(path.clone());

    // Write the store.
    let t = Instant::now();
    let mut w = FeatureStoreWriter::create(&path, Dtype::F32, DIM, true).unwrap();
    let mut rng = Philox::new(1);
    let mut feats = vec![0.0f32; REGIONS * DIM];
    let boxes = vec![1.0f32; REGIONS * 4];
    for id in 0..images as u64 {
        rng.fill_uniform_f32(&mut feats);
        w.push(id * 3 + 1, &feats, Some(&boxes)).unwrap();
    }
    let store = w.finish().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let size = store.byte_len() as f64;
    println!(
        "store: {images} images × {REGIONS}×{DIM} f32 = {:.2} GB at {}, written in {secs:.1} s \
         ({:.0} MB/s incl. fsync)",
        size / 1e9,
        path.display(),
        size / 1e6 / secs
    );
    drop(store);

    // Cold: nothing of the file in the page cache; page by page, then a block per image.
    let n_cold = if quick { 50 } else { 2000 };
    let mut store = None;
    for will_need in [true, false] {
        drop(store.take());
        drop_cache(&path);
        let before = resident(&path);
        let s = FeatureStore::open(&path).unwrap();
        s.advise_random();
        let cold = random_reads(&s, n_cold, 7 + u64::from(will_need), will_need);
        println!(
            "cold random reads{}: {cold:.0} images/s ({:.0} MB/s), {n_cold} reads; {:.1}% of \
             the file resident before",
            if will_need {
                " (WillNeed per image)"
            } else {
                " (page faults only)"
            },
            cold * image_bytes as f64 / 1e6,
            before * 100.0
        );
        store = Some(s);
    }
    let store = store.unwrap();

    // Warm: read everything once (which also maps every page), then random reads.
    let t = Instant::now();
    let mut buf = vec![0.0f32; REGIONS * DIM];
    for p in 0..store.len() {
        store.will_need(p);
        let r = store.at(p);
        r.feats.copy_to_f32(&mut buf[..r.count * r.dim]);
        std::hint::black_box(&buf);
    }
    let page_in = t.elapsed().as_secs_f64();
    let n_warm = if quick { 500 } else { 50_000 };
    let warm = random_reads(&store, n_warm, 9, false);
    println!(
        "warm random reads: {warm:.0} images/s ({:.2} GB/s); {:.1}% resident; reading the \
         whole file in store order first took {page_in:.1} s",
        warm * image_bytes as f64 / 1e9,
        resident(&path) * 100.0
    );

    // f16 → f32 conversion of one image, in memory (what an f16 store adds to each read).
    let half: Vec<half::f16> = feats.iter().map(|&v| half::f16::from_f32(v)).collect();
    let f16feats = aoanet::data::features::Feats::F16(&half);
    let reps = if quick { 100 } else { 20_000 };
    let t = Instant::now();
    for _ in 0..reps {
        f16feats.copy_to_f32(&mut feats);
        std::hint::black_box(&feats);
    }
    println!(
        "f16 → f32 of one 36×2048 image: {:.0} images/s",
        reps as f64 / t.elapsed().as_secs_f64()
    );

    // The loader over this store: 10 images × 5 captions, as the reference trains.
    let vocab = Vocab::new((1..=100).map(|k| format!("w{k}")).collect()).unwrap();
    let mut c = CaptionsBuilder::new(vocab.len(), 16);
    let mut rng = Philox::new(3);
    for id in store.image_ids() {
        c.add_image(id, Split::Train).unwrap();
        for _ in 0..5 {
            let len = 8 + rng.below(10) as usize;
            let toks: Vec<u32> = (0..len).map(|_| 1 + rng.below(100)).collect();
            c.add_caption(&toks, "x").unwrap();
        }
    }
    let captions = c.finish().unwrap();
    // Every loader gets its own map of the file, and the previous one is gone before the cache
    // is dropped (pages mapped by a live map would stay).
    drop(store);
    let batches = if quick { 5 } else { 2000 };
    for (label, prefetch, cold) in [("warm", 0, false), ("warm", 2, false), ("cold", 2, true)] {
        if cold {
            drop_cache(&path);
        }
        let store = FeatureStore::open(&path).unwrap();
        let data = Arc::new(Dataset::new(store, captions.clone(), vocab.clone()).unwrap());
        let cfg = LoaderConfig {
            shuffle_first_epoch: true,
            prefetch,
            ..LoaderConfig::default()
        };
        let mut l = Loader::new(data, cfg).unwrap();
        let n = if cold { (batches / 10).max(1) } else { batches };
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(l.next_batch().unwrap().unwrap());
        }
        let bps = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "loader ({label} cache, prefetch {prefetch}): {bps:.0} batches/s of 10 images × 5 \
             captions = {:.2} ms/batch, {n} batches",
            1e3 / bps
        );
    }
}
