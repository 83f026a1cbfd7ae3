//! `aoanet-data bu-features`: the bottom-up-attention TSV files → `feats.bin` (AOANET.md 5.3).
//!
//! Each row is `image_id, image_w, image_h, num_boxes, boxes, features`, tab-separated, the
//! last two base64 of float32 `[num_boxes, 4]` and `[num_boxes, dim]`. Rows are read in chunks,
//! decoded in parallel and written in input order, so memory stays constant however large the
//! input. Missing base64 padding (the test2014 files' "Incorrect padding") is accepted; a bad
//! row is an error naming the file and line, or, with `--skip-bad-rows`, skipped and reported.

use crate::progress::Progress;
use aoanet::data::dataset::FEATURES_FILE;
use aoanet::data::{Dtype, FeatureStoreWriter};
use aoanet::{Error, Result};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// Flags of `bu-features`.
#[derive(clap::Args)]
pub struct Args {
    /// TSV files, read in this order into one store.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The data folder to write feats.bin into.
    #[arg(long)]
    out: PathBuf,
    /// Storage dtype: f32 (exact) or f16 (half the size).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Feature values per region.
    #[arg(long, default_value_t = 2048)]
    dim: usize,
    /// Skip rows that cannot be read (reporting each) instead of stopping at the first.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Decoding threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// Standard alphabet; padding optional; trailing bits tolerated (as Python's b64decode).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// One decoded row.
struct Row {
    id: u64,
    boxes: Vec<f32>,
    feats: Vec<f32>,
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Decodes one TSV line (without its newline); the error says what is wrong with it.
fn decode_row(line: &[u8], dim: usize) -> std::result::Result<Row, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
    if fields.len() != 6 {
        return Err(format!(
            "{} tab-separated fields, expected 6 (image_id, image_w, image_h, num_boxes, \
             boxes, features)",
            fields.len()
        ));
    }
    let text = |k: usize, name: &str| {
        std::str::from_utf8(fields[k])
            .map(str::trim)
            .map_err(|_| format!("field `{name}` is not text"))
    };
    let id: u64 = text(0, "image_id")?
        .parse()
        .map_err(|_| format!("image_id {:?} is not an integer", text(0, "image_id")))?;
    for (k, name) in [(1, "image_w"), (2, "image_h")] {
        let v = text(k, name)?;
        v.parse::<f64>()
            .map_err(|_| format!("{name} {v:?} is not a number"))?;
    }
    let nb = text(3, "num_boxes")?;
    let n: usize = nb
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("num_boxes {nb:?} is not a positive integer"))?;
    let decode = |k: usize, name: &str, values: usize| -> std::result::Result<Vec<f32>, String> {
        let bytes = B64
            .decode(fields[k])
            .map_err(|e| format!("image {id}: bad base64 in field `{name}`: {e}"))?;
        if bytes.len() != values * 4 {
            return Err(format!(
                "image {id}: size mismatch: `{name}` holds {} bytes, but {n} boxes need {}",
                bytes.len(),
                values * 4
            ));
        }
        Ok(floats(&bytes))
    };
    let boxes = decode(4, "boxes", n * 4)?;
    let feats = decode(5, "features", n * dim)?;
    Ok(Row { id, boxes, feats })
}

/// Decodes `lines` on up to `threads` threads, results in input order.
fn decode_chunk(
    lines: &[(u64, Vec<u8>)],
    dim: usize,
    threads: usize,
) -> Vec<std::result::Result<Row, String>> {
    let per = lines.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(_, l)| decode_row(l, dim))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoder thread panicked"))
            .collect::<Vec<_>>()
    })
}

/// Runs `bu-features`.
pub fn run(args: Args) -> Result<()> {
    let dtype = Dtype::parse(&args.dtype)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut total = 0u64;
    for p in &args.inputs {
        total += std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let out = args.out.join(FEATURES_FILE);
    let mut writer = FeatureStoreWriter::create(&out, dtype, args.dim, true)?;
    let mut progress = Progress::bytes("bu-features", total);
    let mut seen: HashMap<u64, (usize, u64)> = HashMap::new();
    let mut skipped: Vec<String> = Vec::new();
    let (mut read, mut regions) = (0u64, 0u64);
    let (mut rmin, mut rmax) = (usize::MAX, 0usize);
    // Chunks of about 64 MB or 256 rows bound the memory in flight.
    const CHUNK_BYTES: usize = 64 << 20;
    const CHUNK_ROWS: usize = 256;
    for (f, path) in args.inputs.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::with_capacity(8 << 20, file);
        let mut line_no = 0u64;
        loop {
            let mut chunk: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut bytes = 0usize;
            while bytes < CHUNK_BYTES && chunk.len() < CHUNK_ROWS {
                let mut line = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| Error::io(path, e))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                read += n as u64;
                bytes += n;
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                if !line.is_empty() {
                    chunk.push((line_no, line));
                }
            }
            if chunk.is_empty() {
                break;
            }
            let rows = decode_chunk(&chunk, args.dim, threads);
            for ((line, _), row) in chunk.iter().zip(rows) {
                let result = row.and_then(|r| {
                    if let Some(&(pf, pl)) = seen.get(&r.id) {
                        return Err(format!(
                            "duplicate image id {} (first at {}:{pl})",
                            r.id,
                            args.inputs[pf].display()
                        ));
                    }
                    writer
                        .push(r.id, &r.feats, Some(&r.boxes))
                        .map_err(|e| e.to_string())?;
                    seen.insert(r.id, (f, *line));
                    Ok(r.boxes.len() / 4)
                });
                match result {
                    Ok(n) => {
                        regions += n as u64;
                        rmin = rmin.min(n);
                        rmax = rmax.max(n);
                    }
                    Err(problem) if args.skip_bad_rows => {
                        skipped.push(format!("{}: line {line}: {problem}", path.display()));
                    }
                    Err(problem) => {
                        return Err(Error::format(path, format!("line {line}: {problem}")));
                    }
                }
            }
            progress.update(read, writer.len() as u64);
        }
    }
    let secs = progress.finish();
    for s in skipped.iter().take(20) {
        eprintln!("skipped {s}");
    }
    if skipped.len() > 20 {
        eprintln!("... and {} more skipped rows", skipped.len() - 20);
    }
    if writer.is_empty() {
        return Err(Error::invalid(
            "bu-features: no row could be read; nothing written",
        ));
    }
    let images = writer.len();
    let store = writer.finish()?;
    println!(
        "wrote {}: {images} images, {regions} regions ({rmin}..={rmax}, mean {:.1}), dim {}, \
         {}, {:.2} GB, {} rows skipped, in {secs:.1} s ({:.0} MB/s of TSV)",
        out.display(),
        regions as f64 / images as f64,
        store.dim(),
        store.dtype().name(),
        store.byte_len() as f64 / 1e9,
        skipped.len(),
        read as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}
