//! `aoanet-data npz-features`: a directory of the reference's per-image feature files
//! (`cocobu_att/<id>.npz` with key `feat`, or `<id>.npy`; optionally `cocobu_box/<id>.npy`)
//! → `feats.bin`, for people who already ran `make_bu_data.py` (AOANET.md 5.3). Features are
//! reshaped to `[-1, dim]` as the reference's loader does. Files are decoded in parallel and
//! written in image-id order.

use crate::npy;
use crate::progress::Progress;
use aoanet::data::dataset::FEATURES_FILE;
use aoanet::data::{Dtype, FeatureStoreWriter};
use aoanet::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Flags of `npz-features`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory of `<image id>.npz` (key `feat`) or `<image id>.npy` region features.
    #[arg(long)]
    att: PathBuf,
    /// Directory of `<image id>.npy` boxes `[regions, 4]` (optional).
    #[arg(long = "box")]
    boxes: Option<PathBuf>,
    /// The data folder to write feats.bin into.
    #[arg(long)]
    out: PathBuf,
    /// Storage dtype: f32 (exact) or f16 (half the size).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Feature values per region.
    #[arg(long, default_value_t = 2048)]
    dim: usize,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Reads a `.npy` file, or the `feat` array of a `.npz` (a zip of `.npy` members).
fn read_att(path: &Path) -> Result<npy::Array> {
    let fail = |p: String| Error::format(path, p);
    let bytes = if path.extension().is_some_and(|e| e == "npz") {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| fail(format!("not a readable npz: {e}")))?;
        let names: Vec<String> = zip.file_names().map(str::to_string).collect();
        let mut member = zip
            .by_name("feat.npy")
            .map_err(|_| fail(format!("no `feat` array (members: {})", names.join(", "))))?;
        let mut buf = Vec::with_capacity(member.size() as usize);
        member
            .read_to_end(&mut buf)
            .map_err(|e| fail(format!("feat.npy: {e}")))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| Error::io(path, e))?
    };
    npy::parse(&bytes).map_err(fail)
}

/// One image's features `[n, dim]` and (optionally) boxes `[n, 4]`.
type Loaded = (Vec<f32>, Option<Vec<f32>>);

/// Reads one image.
fn load(id: u64, att: &Path, boxes: Option<&Path>, dim: usize) -> Result<Loaded> {
    let a = read_att(att)?;
    if a.data.is_empty() || !a.data.len().is_multiple_of(dim) {
        return Err(Error::format(
            att,
            format!(
                "image {id}: shape {:?} is not a whole number of {dim}-value regions",
                a.shape
            ),
        ));
    }
    let n = a.data.len() / dim;
    let b = match boxes {
        None => None,
        Some(dir) => {
            let p = dir.join(format!("{id}.npy"));
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            let b = npy::parse(&bytes).map_err(|e| Error::format(&p, e))?;
            if b.data.len() != n * 4 {
                return Err(Error::format(
                    &p,
                    format!(
                        "boxes of shape {:?} for {n} regions (expected [{n}, 4])",
                        b.shape
                    ),
                ));
            }
            Some(b.data)
        }
    };
    Ok((a.data, b))
}

/// The `<id>.npz` / `<id>.npy` files of `dir`, sorted by id.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    let mut ignored = 0usize;
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = e.map_err(|e| Error::io(dir, e))?.path();
        let id = path
            .extension()
            .filter(|x| *x == "npz" || *x == "npy")
            .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok());
        match id {
            Some(id) => out.push((id, path)),
            None => ignored += 1,
        }
    }
    out.sort();
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::format(
            dir,
            format!(
                "duplicate image id {}: {} and {}",
                w[0].0,
                w[0].1.display(),
                w[1].1.display()
            ),
        ));
    }
    if ignored > 0 {
        eprintln!(
            "npz-features: ignored {ignored} entries of {} not named <image id>.npz/.npy",
            dir.display()
        );
    }
    Ok(out)
}

/// Runs `npz-features`.
pub fn run(args: Args) -> Result<()> {
    let dtype = Dtype::parse(&args.dtype)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let files = list(&args.att)?;
    if files.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no <image id>.npz or .npy files",
            args.att.display()
        )));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let out = args.out.join(FEATURES_FILE);
    let mut writer = FeatureStoreWriter::create(&out, dtype, args.dim, args.boxes.is_some())?;
    let mut progress = Progress::files("npz-features", files.len() as u64);
    let mut regions = 0u64;
    for chunk in files.chunks(16 * threads.max(1)) {
        let per = chunk.len().div_ceil(threads.max(1));
        let loaded: Vec<Result<Loaded>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .chunks(per)
                .map(|part| {
                    let (boxes, dim) = (args.boxes.as_deref(), args.dim);
                    s.spawn(move || {
                        part.iter()
                            .map(|(id, p)| load(*id, p, boxes, dim))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("decoder thread panicked"))
                .collect()
        });
        for ((id, path), r) in chunk.iter().zip(loaded) {
            let (feats, boxes) = r?;
            writer
                .push(*id, &feats, boxes.as_deref())
                .map_err(|e| Error::format(path, e.to_string()))?;
            regions += (feats.len() / args.dim) as u64;
        }
        progress.update(writer.len() as u64, writer.len() as u64);
    }
    let secs = progress.finish();
    let images = writer.len();
    let store = writer.finish()?;
    println!(
        "wrote {}: {images} images, {regions} regions (mean {:.1}), dim {}, {}, boxes {}, \
         {:.2} GB, in {secs:.1} s",
        out.display(),
        regions as f64 / images as f64,
        store.dim(),
        store.dtype().name(),
        if store.has_boxes() { "yes" } else { "no" },
        store.byte_len() as f64 / 1e9
    );
    Ok(())
}
