//! `aoanet-data inspect PATH`: says what a file is (feature store, captions, vocabulary,
//! document frequencies) and
//! prints counts, dims, dtype and an example; a damaged file is an error naming the problem.
//! Given a data folder, it inspects each file and then checks that they agree (every
//! captioned image has features, the vocabulary fits the captions), as `aoanet train` will.

use aoanet::data::dataset::{CAPTIONS_FILE, DF_FILE, FEATURES_FILE, VOCAB_FILE};
use aoanet::data::{Captions, Dataset, FeatureStore, Split, Vocab, captions, features};
use aoanet::metrics::df::DocumentFrequencies;
use aoanet::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Flags of `inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The file (or data folder) to inspect.
    path: PathBuf,
}

fn fmt_values(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    format!("[{}]", parts.join(", "))
}

fn store(path: &Path) -> Result<()> {
    let s = FeatureStore::open(path)?;
    let (min, max) = s
        .image_ids()
        .map(|id| s.get(id).expect("listed").count)
        .fold((usize::MAX, 0), |(a, b), n| (a.min(n), b.max(n)));
    println!(
        "{}: feature store (version {}): {} images, {} regions ({min}..={max}, mean {:.1}), \
         dim {}, {}, boxes {}, {:.3} GB",
        path.display(),
        features::VERSION,
        s.len(),
        s.total_regions(),
        s.total_regions() as f64 / s.len().max(1) as f64,
        s.dim(),
        s.dtype().name(),
        if s.has_boxes() { "yes" } else { "no" },
        s.byte_len() as f64 / 1e9
    );
    if let Some(id) = s.image_ids().next() {
        let r = s.get(id).expect("listed");
        let first = r.feats.to_f32_vec();
        println!(
            "example: image {id}: {} regions; region 0 starts {}{}",
            r.count,
            fmt_values(&first[..r.dim.min(6)]),
            r.boxes
                .map(|b| format!(", box {}", fmt_values(&b[..4])))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn captions_file(path: &Path) -> Result<()> {
    let c = Captions::read(path)?;
    let per: Vec<String> = Split::ALL
        .iter()
        .map(|&s| format!("{} {}", s.name(), c.split_positions(s).len()))
        .collect();
    println!(
        "{}: captions (version {}): {} images ({}), {} captions, {} tokens, vocabulary of {} \
         words, labels of {} tokens",
        path.display(),
        captions::VERSION,
        c.len(),
        per.join(", "),
        c.num_captions(),
        c.num_tokens(),
        c.vocab_size(),
        c.max_length()
    );
    // Decode the example with the vocabulary beside the file, if it is there and fits.
    let vocab = path
        .parent()
        .map(|d| d.join(VOCAB_FILE))
        .filter(|p| p.exists())
        .and_then(|p| Vocab::read(p).ok())
        .filter(|v| v.len() == c.vocab_size());
    if !c.is_empty() {
        let img = c.image(0);
        println!(
            "example: image {} ({}), {} captions; first: {:?} = {:?}{}",
            img.id,
            img.split.name(),
            img.len(),
            img.raw(0),
            img.tokens(0),
            vocab
                .map(|v| format!(" = \"{}\"", v.decode(img.tokens(0))))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn frequencies(path: &Path) -> Result<()> {
    let df = DocumentFrequencies::read(path)?;
    println!(
        "{}: CIDEr-D document frequencies: {} n-grams over {} images (ref_len {:.4}); \
         e.g. EOS (0) is in {} images",
        path.display(),
        df.len(),
        df.num_images(),
        df.ref_len(),
        df.get(&[0])
    );
    Ok(())
}

fn vocabulary(path: &Path) -> Result<()> {
    let v = Vocab::read(path)?;
    let first: Vec<&str> = v.words().iter().take(8).map(String::as_str).collect();
    println!(
        "{}: vocabulary: {} words (ids 1..={}), UNK {}; first: {}; last: {}",
        path.display(),
        v.len(),
        v.len(),
        v.unk().map_or("absent".to_string(), |u| format!("= {u}")),
        first.join(" "),
        v.words().last().map_or("", String::as_str)
    );
    Ok(())
}

/// Inspects every file of a data folder, then checks them together.
fn folder(dir: &Path) -> Result<()> {
    for name in [FEATURES_FILE, CAPTIONS_FILE, VOCAB_FILE] {
        file(&dir.join(name))?;
    }
    if dir.join(DF_FILE).exists() {
        file(&dir.join(DF_FILE))?;
    }
    let d = Dataset::open(dir)?;
    println!(
        "{}: a consistent data folder: {} captioned images, all with features",
        dir.display(),
        d.captions.len()
    );
    Ok(())
}

/// The first bytes of a document-frequency file (the metrics module's format).
const DF_MAGIC: &[u8; 8] = b"AOANETDF";

/// Runs `inspect`.
pub fn run(args: Args) -> Result<()> {
    if args.path.is_dir() {
        folder(&args.path)
    } else {
        file(&args.path)
    }
}

fn file(path: &Path) -> Result<()> {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .map_err(|e| Error::io(path, e))?
        .take(8)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    // A magic's prefix counts, so a truncated file is named as what it was meant to be.
    let is = |magic: &[u8; 8]| !head.is_empty() && magic.starts_with(&head);
    if is(&features::MAGIC) {
        store(path)
    } else if is(&captions::MAGIC) {
        captions_file(path)
    } else if is(DF_MAGIC) {
        frequencies(path)
    } else if !head.is_empty() && std::str::from_utf8(&head).is_ok_and(|t| !t.contains('\0')) {
        vocabulary(path)
    } else {
        Err(Error::format(
            path,
            "unknown kind of file (not a feature store, captions file, vocabulary or document \
             frequencies)",
        ))
    }
}
