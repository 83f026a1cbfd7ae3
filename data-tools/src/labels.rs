//! `aoanet-data labels`: captions JSON → `vocab.txt` + `captions.bin`, as the reference's
//! `prepro_labels.py` does it (AOANET.md 5.2):
//!
//! * Karpathy's `dataset_coco.json` / `dataset_flickr30k.json`: its tokens and splits
//!   (`restval` is train), images in file order, image ids from `cocoid` (COCO) or the file
//!   name's number (Flickr30k: `1000092795.jpg`, as its bottom-up features are keyed);
//! * or the official COCO `captions_*2014.json` files: captions tokenised as Karpathy's
//!   (lower-case, ASCII punctuation deleted), images in file order, and a seeded split: all
//!   images sorted by id, shuffled with Philox(`--split-seed`), the first `--val` are val, the
//!   next `--test` test, the rest train.
//!
//! Vocabulary: words of all splits seen more than `--threshold` times, in first-occurrence
//! order, then `UNK` (or `--vocab`, an existing `vocab.txt` or a reference `cocotalk.json`).
//! Token ids are stored full length; the loader truncates to `--max-length` (16).

use aoanet::data::dataset::{CAPTIONS_FILE, VOCAB_FILE};
use aoanet::data::vocab::{WordCounts, for_each_token};
use aoanet::data::{CaptionsBuilder, Split, Vocab};
use aoanet::rng::Philox;
use aoanet::{Error, Result};
use serde::Deserialize;
use std::borrow::Cow;
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

/// Fields of either format's top level; serde skips the rest. Strings borrow from the input
/// text where they can (no escapes), which keeps the full COCO set small in memory.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    images: Option<Vec<ImageJson<'a>>>,
    #[serde(borrow)]
    annotations: Option<Vec<Annotation<'a>>>,
}

#[derive(Deserialize)]
struct ImageJson<'a> {
    // Karpathy
    #[serde(borrow)]
    split: Option<Cow<'a, str>>,
    cocoid: Option<u64>,
    imgid: Option<u64>,
    #[serde(borrow)]
    filename: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sentences: Option<Vec<Sentence<'a>>>,
    // COCO (and Karpathy's fallback id)
    id: Option<u64>,
}

#[derive(Deserialize)]
struct Sentence<'a> {
    #[serde(borrow)]
    tokens: Vec<Word<'a>>,
    #[serde(borrow)]
    raw: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Word<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct Annotation<'a> {
    image_id: u64,
    #[serde(borrow)]
    caption: Cow<'a, str>,
}

/// Images with their captions as word indices of `counts` (flattened).
struct Parsed<'a> {
    counts: WordCounts,
    images: Vec<Image>,
    /// Caption k: its words are `words[start[k]..start[k + 1]]`.
    words: Vec<u32>,
    start: Vec<usize>,
    raw: Vec<Cow<'a, str>>,
    empty: usize,
}

struct Image {
    id: u64,
    split: Split,
    captions: usize,
}

impl<'a> Parsed<'a> {
    fn new() -> Self {
        Parsed {
            counts: WordCounts::new(),
            images: Vec::new(),
            words: Vec::new(),
            start: vec![0],
            raw: Vec::new(),
            empty: 0,
        }
    }

    fn end_caption(&mut self, raw: Cow<'a, str>) {
        self.start.push(self.words.len());
        self.raw.push(raw);
        self.images.last_mut().expect("an image").captions += 1;
    }
}

fn from_karpathy<'a>(path: &Path, images: Vec<ImageJson<'a>>) -> Result<Parsed<'a>> {
    let mut p = Parsed::new();
    for (k, img) in images.into_iter().enumerate() {
        let fail = |m: &str| Error::format(path, format!("images[{k}]: {m}"));
        // Flickr30k has no cocoid; its features are keyed by the file name's number.
        let from_name = img.filename.as_deref().and_then(|f| {
            let stem = f.rsplit_once('.').map_or(f, |(s, _)| s);
            stem.parse::<u64>().ok()
        });
        let id = img
            .cocoid
            .or(img.id)
            .or(from_name)
            .or(img.imgid)
            .ok_or_else(|| fail("no cocoid, id, numeric filename or imgid"))?;
        let split = img.split.as_deref().ok_or_else(|| fail("no split"))?;
        let split = Split::parse(split).map_err(|e| fail(&e.to_string()))?;
        p.images.push(Image {
            id,
            split,
            captions: 0,
        });
        for s in img.sentences.ok_or_else(|| fail("no sentences"))? {
            for w in &s.tokens {
                let i = p.counts.add(&w.0);
                p.words.push(i);
            }
            p.end_caption(s.raw);
        }
    }
    Ok(p)
}

/// Official COCO files: images in file order, captions grouped per image in annotation order,
/// then the seeded split.
fn from_coco<'a>(files: Vec<(&Path, Top<'a>)>, args: &Args) -> Result<Parsed<'a>> {
    let mut p = Parsed::new();
    let mut at: HashMap<u64, (usize, usize)> = HashMap::new(); // id -> (image index, file)
    let mut anns: Vec<(usize, Cow<'a, str>)> = Vec::new();
    for (f, (path, top)) in files.into_iter().enumerate() {
        let list = top
            .images
            .ok_or_else(|| Error::format(path, "no `images` list"))?;
        for (k, img) in list.into_iter().enumerate() {
            let id = img
                .id
                .ok_or_else(|| Error::format(path, format!("images[{k}] has no id")))?;
            if let Some(&(_, g)) = at.get(&id) {
                return Err(Error::format(
                    path,
                    format!("image id {id} appears twice (also in input #{})", g + 1),
                ));
            }
            at.insert(id, (p.images.len(), f));
            p.images.push(Image {
                id,
                split: Split::Train,
                captions: 0,
            });
        }
        let list = top
            .annotations
            .ok_or_else(|| Error::format(path, "no `annotations` list"))?;
        for (k, a) in list.into_iter().enumerate() {
            match at.get(&a.image_id) {
                Some(&(i, g)) if g == f => anns.push((i, a.caption)),
                Some(&(_, g)) => {
                    return Err(Error::format(
                        path,
                        format!(
                            "annotations[{k}] is for image {}, listed in input #{}",
                            a.image_id,
                            g + 1
                        ),
                    ));
                }
                None => {
                    return Err(Error::format(
                        path,
                        format!(
                            "annotations[{k}] is for image {}, which is not listed",
                            a.image_id
                        ),
                    ));
                }
            }
        }
    }
    // Captions in image order (stable: annotation order within an image), then tokenised in
    // that order, so first occurrences follow the output order as in the reference.
    anns.sort_by_key(|a| a.0);
    let mut scratch = String::new();
    // Images left without captions are refused by the caller.
    let mut grouped: Vec<Image> = std::mem::take(&mut p.images);
    for (i, caption) in anns {
        let before = p.words.len();
        for_each_token(&caption, &mut scratch, |t| {
            let w = p.counts.add(t);
            p.words.push(w);
        });
        if p.words.len() == before {
            // Nothing to learn from, and the reference refuses empty labels.
            p.empty += 1;
            continue;
        }
        p.start.push(p.words.len());
        p.raw.push(caption);
        grouped[i].captions += 1;
    }
    p.images = grouped;

    // The split draw: sorted ids, a seeded shuffle, val then test then train.
    if args.val + args.test > p.images.len() {
        return Err(Error::invalid(format!(
            "--val {} + --test {} is more than the {} images",
            args.val,
            args.test,
            p.images.len()
        )));
    }
    let mut ids: Vec<u64> = p.images.iter().map(|i| i.id).collect();
    ids.sort_unstable();
    Philox::new(args.split_seed).shuffle(&mut ids);
    for (k, id) in ids.iter().enumerate() {
        p.images[at[id].0].split = if k < args.val {
            Split::Val
        } else if k < args.val + args.test {
            Split::Test
        } else {
            Split::Train
        };
    }
    Ok(p)
}

/// Runs `labels`.
pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let mut texts = Vec::new();
    for p in &args.inputs {
        texts.push(std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?);
    }
    let mut files: Vec<(&Path, Top)> = Vec::new();
    for (p, text) in args.inputs.iter().zip(&texts) {
        let top: Top =
            serde_json::from_str(text).map_err(|e| Error::format(p, format!("bad JSON: {e}")))?;
        files.push((p, top));
    }
    let karpathy = files[0]
        .1
        .images
        .as_ref()
        .and_then(|l| l.first())
        .is_some_and(|i| i.sentences.is_some());
    let parsed = if karpathy {
        if files.len() != 1 {
            return Err(Error::invalid(
                "labels: give one Karpathy JSON, or official COCO caption files",
            ));
        }
        let (path, top) = files.pop().expect("one file");
        from_karpathy(path, top.images.unwrap_or_default())?
    } else {
        from_coco(files, &args)?
    };
    let Parsed {
        counts,
        images,
        words,
        start,
        raw,
        empty,
    } = parsed;
    if let Some(img) = images.iter().find(|i| i.captions == 0) {
        return Err(Error::invalid(format!(
            "image {} has no captions (the reference refuses such images)",
            img.id
        )));
    }
    let t_read = t0.elapsed().as_secs_f64();

    let vocab = match &args.vocab {
        Some(p) => Vocab::read(p)?,
        None => counts.build_vocab(args.threshold)?,
    };
    let to_id = counts.ids_in(&vocab)?;
    let unk = vocab.unk();
    let mut builder = CaptionsBuilder::new(vocab.len(), args.max_length);
    let (mut n_unk, mut n_long, mut longest) = (0usize, 0usize, 0usize);
    let mut ids = Vec::new();
    let mut k = 0;
    for img in &images {
        builder.add_image(img.id, img.split)?;
        for _ in 0..img.captions {
            ids.clear();
            ids.extend(
                words[start[k]..start[k + 1]]
                    .iter()
                    .map(|&w| to_id[w as usize]),
            );
            n_unk += ids.iter().filter(|&&w| Some(w) == unk).count();
            n_long += usize::from(ids.len() > args.max_length);
            longest = longest.max(ids.len());
            builder.add_caption(&ids, &raw[k])?;
            k += 1;
        }
    }
    let n_tok = words.len();
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
