//! `aoanet-data labels`: captions JSON → `vocab.txt` + `captions.bin`, as the reference's
//! `prepro_labels.py` does it (AOANET.md 5.2):
//!
//! * Karpathy's `dataset_coco.json` / `dataset_flickr30k.json`: its tokens and splits
//!   (`restval` is train), images in file order;
//! * or the official COCO `captions_*2014.json` files: captions tokenised as Karpathy's
//!   (lower-case, ASCII punctuation deleted), images in file order, and a seeded split: all
//!   images sorted by id, shuffled with Philox(`--split-seed`), the first `--val` are val, the
//!   next `--test` test, the rest train.
//!
//! Vocabulary: words of all splits seen more than `--threshold` times, in first-occurrence
//! order, then `UNK` (or `--vocab`, an existing `vocab.txt` or a reference `cocotalk.json`).
//! Token ids are stored full length; the loader truncates to `--max-length` (16).

use aoanet::data::dataset::{CAPTIONS_FILE, VOCAB_FILE};
use aoanet::data::vocab::{WordCounts, tokenize};
use aoanet::data::{CaptionsBuilder, Split, Vocab};
use aoanet::rng::Philox;
use aoanet::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `labels`.
#[derive(clap::Args)]
pub struct Args {
    /// One Karpathy JSON (dataset_coco.json), or one or more official COCO captions files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The data folder to write (vocab.txt, captions.bin).
    #[arg(long)]
    out: PathBuf,
    /// Keep words seen more than this many times (the reference's default 5; AoANet used 4).
    #[arg(long, default_value_t = 5)]
    threshold: u64,
    /// Label length the loader truncates captions to.
    #[arg(long, default_value_t = 16)]
    max_length: usize,
    /// Reuse this vocabulary (vocab.txt, or a reference cocotalk.json) instead of building one.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Seed of the val/test draw for official COCO files.
    #[arg(long, default_value_t = 123)]
    split_seed: u64,
    /// Validation images drawn from official COCO files.
    #[arg(long, default_value_t = 5000)]
    val: usize,
    /// Test images drawn from official COCO files.
    #[arg(long, default_value_t = 5000)]
    test: usize,
}

/// Fields of either format's top level; serde skips the rest.
#[derive(Deserialize)]
struct Top {
    images: Option<Vec<ImageJson>>,
    annotations: Option<Vec<Annotation>>,
}

#[derive(Deserialize)]
struct ImageJson {
    // Karpathy
    split: Option<String>,
    cocoid: Option<u64>,
    imgid: Option<u64>,
    sentences: Option<Vec<Sentence>>,
    // COCO (and Karpathy's fallback id)
    id: Option<u64>,
}

#[derive(Deserialize)]
struct Sentence {
    tokens: Vec<String>,
    raw: String,
}

#[derive(Deserialize)]
struct Annotation {
    image_id: u64,
    caption: String,
}

/// One image ready for the vocabulary and the captions file.
struct Image {
    id: u64,
    split: Split,
    /// (tokens, raw)
    captions: Vec<(Vec<String>, String)>,
}

fn read_json(path: &Path) -> Result<Top> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("bad JSON: {e}")))
}

fn from_karpathy(path: &Path, images: Vec<ImageJson>) -> Result<Vec<Image>> {
    images
        .into_iter()
        .enumerate()
        .map(|(k, img)| {
            let fail = |p: &str| Error::format(path, format!("images[{k}]: {p}"));
            let id = img
                .cocoid
                .or(img.id)
                .or(img.imgid)
                .ok_or_else(|| fail("no cocoid, id or imgid"))?;
            let split = img.split.as_deref().ok_or_else(|| fail("no split"))?;
            let split = Split::parse(split).map_err(|e| fail(&e.to_string()))?;
            let captions = img
                .sentences
                .ok_or_else(|| fail("no sentences"))?
                .into_iter()
                .map(|s| (s.tokens, s.raw))
                .collect();
            Ok(Image {
                id,
                split,
                captions,
            })
        })
        .collect()
}

/// Official COCO files: images in file order, captions grouped per image in annotation order.
fn from_coco(files: Vec<(PathBuf, Top)>, args: &Args) -> Result<(Vec<Image>, usize)> {
    let mut images: Vec<Image> = Vec::new();
    let mut at: HashMap<u64, (usize, usize)> = HashMap::new(); // id -> (image index, file)
    let mut empty = 0usize;
    for (f, (path, top)) in files.into_iter().enumerate() {
        let list = top
            .images
            .ok_or_else(|| Error::format(&path, "no `images` list"))?;
        for (k, img) in list.into_iter().enumerate() {
            let id = img
                .id
                .ok_or_else(|| Error::format(&path, format!("images[{k}] has no id")))?;
            if let Some(&(_, g)) = at.get(&id) {
                return Err(Error::format(
                    &path,
                    format!("image id {id} appears twice (also in input #{})", g + 1),
                ));
            }
            at.insert(id, (images.len(), f));
            images.push(Image {
                id,
                split: Split::Train,
                captions: Vec::new(),
            });
        }
        let anns = top
            .annotations
            .ok_or_else(|| Error::format(&path, "no `annotations` list"))?;
        for (k, a) in anns.into_iter().enumerate() {
            let &(i, g) = at.get(&a.image_id).ok_or_else(|| {
                Error::format(
                    &path,
                    format!(
                        "annotations[{k}] is for image {}, which is not listed",
                        a.image_id
                    ),
                )
            })?;
            if g != f {
                return Err(Error::format(
                    &path,
                    format!(
                        "annotations[{k}] is for image {}, listed in input #{}",
                        a.image_id,
                        g + 1
                    ),
                ));
            }
            let tokens = tokenize(&a.caption);
            if tokens.is_empty() {
                // Nothing to learn from, and the reference refuses empty labels.
                empty += 1;
                continue;
            }
            images[i].captions.push((tokens, a.caption));
        }
    }
    // The split draw: sorted ids, a seeded shuffle, val then test then train.
    if args.val + args.test > images.len() {
        return Err(Error::invalid(format!(
            "--val {} + --test {} is more than the {} images",
            args.val,
            args.test,
            images.len()
        )));
    }
    let mut ids: Vec<u64> = images.iter().map(|i| i.id).collect();
    ids.sort_unstable();
    Philox::new(args.split_seed).shuffle(&mut ids);
    for (k, id) in ids.iter().enumerate() {
        let split = if k < args.val {
            Split::Val
        } else if k < args.val + args.test {
            Split::Test
        } else {
            Split::Train
        };
        images[at[id].0].split = split;
    }
    Ok((images, empty))
}

/// Runs `labels`.
pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let mut files = Vec::new();
    for p in &args.inputs {
        files.push((p.clone(), read_json(p)?));
    }
    let karpathy = files[0]
        .1
        .images
        .as_ref()
        .and_then(|l| l.first())
        .is_some_and(|i| i.sentences.is_some());
    let (images, empty) = if karpathy {
        if files.len() != 1 {
            return Err(Error::invalid(
                "labels: give one Karpathy JSON, or official COCO caption files",
            ));
        }
        let (path, top) = files.pop().expect("one file");
        (from_karpathy(&path, top.images.unwrap_or_default())?, 0)
    } else {
        from_coco(files, &args)?
    };
    if let Some(img) = images.iter().find(|i| i.captions.is_empty()) {
        return Err(Error::invalid(format!(
            "image {} has no captions (the reference refuses such images)",
            img.id
        )));
    }
    let t_read = t0.elapsed().as_secs_f64();

    let mut counts = WordCounts::new();
    for img in &images {
        for (tokens, _) in &img.captions {
            for t in tokens {
                counts.add(t);
            }
        }
    }
    let vocab = match &args.vocab {
        Some(p) => Vocab::read(p)?,
        None => counts.build_vocab(args.threshold)?,
    };
    let mut builder = CaptionsBuilder::new(vocab.len(), args.max_length);
    let (mut n_tok, mut n_unk, mut n_long, mut longest) = (0usize, 0usize, 0usize, 0usize);
    let unk = vocab.unk();
    for img in &images {
        builder.add_image(img.id, img.split)?;
        for (tokens, raw) in &img.captions {
            let ids = vocab
                .encode(tokens)
                .map_err(|e| Error::invalid(format!("image {}: {e}", img.id)))?;
            n_tok += ids.len();
            n_unk += ids.iter().filter(|&&w| Some(w) == unk).count();
            n_long += usize::from(ids.len() > args.max_length);
            longest = longest.max(ids.len());
            builder.add_caption(&ids, raw)?;
        }
    }
    let captions = builder.finish()?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    vocab.write(args.out.join(VOCAB_FILE))?;
    captions.write(args.out.join(CAPTIONS_FILE))?;

    let split_counts: Vec<String> = Split::ALL
        .iter()
        .map(|&s| {
            let n = images.iter().filter(|i| i.split == s).count();
            format!("{} {n}", s.name())
        })
        .collect();
    println!(
        "{} images ({}), {} captions{}",
        images.len(),
        split_counts.join(", "),
        captions.num_captions(),
        if empty > 0 {
            format!(" ({empty} empty captions dropped)")
        } else {
            String::new()
        }
    );
    println!(
        "vocabulary: {} words incl. UNK ({}; {} distinct words seen)",
        vocab.len(),
        match &args.vocab {
            Some(p) => format!("from {}", p.display()),
            None => format!("threshold {}", args.threshold),
        },
        counts.distinct()
    );
    println!(
        "tokens: {n_tok}, UNK {:.3}%, longest caption {longest}, {:.2}% longer than {}",
        100.0 * n_unk as f64 / n_tok.max(1) as f64,
        100.0 * n_long as f64 / captions.num_captions().max(1) as f64,
        args.max_length
    );
    println!(
        "wrote {} and {} in {:.2} s (reading {:.2} s)",
        args.out.join(VOCAB_FILE).display(),
        args.out.join(CAPTIONS_FILE).display(),
        t0.elapsed().as_secs_f64(),
        t_read
    );
    Ok(())
}
