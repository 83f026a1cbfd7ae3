//! Headless Chromium renders `report.html` and `curves.svg` (`scripts/render-report`), and the
//! screenshots are not blank. Ignored by default (needs Debian's `chromium`; a few seconds):
//!
//! ```text
//! cargo test --release --test report_render -- --ignored --nocapture
//! ```
//!
//! With `AOANET_REPORT_OUT=DIR` the report, the curves and the screenshots stay in `DIR` for a
//! person to look at; otherwise they go to a temporary folder that is removed.

mod report_support;

use aoanet::report::{curves_svg, write_report};
use flate2::read::ZlibDecoder;
use report_support::{sample_history, sample_report, small_world};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium_installed() -> bool {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| Command::new(b).arg("--version").output().is_ok())
}

/// A decoded PNG: width, height and RGBA pixels (8-bit RGB or RGBA input only, which is what
/// Chromium writes).
struct Png {
    width: usize,
    height: usize,
    rgba: Vec<[u8; 4]>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn decode_png(bytes: &[u8]) -> Png {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = be32(&bytes[i..]) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                width = be32(data) as usize;
                height = be32(&data[4..]) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    c => panic!("colour type {c} not handled"),
                };
                assert_eq!(data[12], 0, "interlaced PNG not handled");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "decoded size");
    let mut prev = vec![0u8; stride];
    let mut rgba = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for x in 0..stride {
            let a = if x >= channels { cur[x - channels] } else { 0 };
            let b = prev[x];
            let c = if x >= channels { prev[x - channels] } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[x] = src[x].wrapping_add(pred);
        }
        for px in cur.chunks_exact(channels) {
            rgba.push([px[0], px[1], px[2], if channels == 4 { px[3] } else { 255 }]);
        }
        prev = cur;
    }
    Png {
        width,
        height,
        rgba,
    }
}

fn render(page: &str, out: &Path, size: &str) -> Png {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/render-report");
    let status = Command::new("bash")
        .arg(&script)
        .arg(page)
        .arg(out)
        .arg(size)
        .status()
        .expect("run scripts/render-report");
    assert!(status.success(), "render-report {page} failed: {status}");
    decode_png(&std::fs::read(out).unwrap())
}

/// How much of the picture is not the page background, and how many colours it has.
fn content(png: &Png, background: [u8; 4]) -> (f64, usize) {
    let busy = png.rgba.iter().filter(|&&p| p != background).count();
    let mut colours: Vec<[u8; 4]> = png.rgba.clone();
    colours.sort_unstable();
    colours.dedup();
    (busy as f64 / png.rgba.len() as f64, colours.len())
}

#[test]
#[ignore = "needs headless Chromium (apt-get install -y chromium); a few seconds"]
fn chromium_renders_the_report_and_the_curves() {
    if !chromium_installed() {
        eprintln!("skipped: no chromium installed (apt-get install -y chromium)");
        return;
    }
    let keep = std::env::var_os("AOANET_REPORT_OUT").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("aoanet-report-render-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).unwrap();
    let world = small_world();
    let data = sample_report(&world);
    let html = dir.join("report.html");
    write_report(&html, &data).unwrap();
    let curves = dir.join("curves.svg");
    std::fs::write(&curves, curves_svg(&sample_history())).unwrap();

    // Tall enough for the whole page: the screenshot shows the window only.
    let height = 1600 + 950 * data.images.len();
    let page = render(
        html.to_str().unwrap(),
        &dir.join("report.png"),
        &format!("1280x{height}"),
    );
    assert_eq!((page.width, page.height), (1280, height));
    // The page background is #f2f3f5; tables, curves, cards and text cover most of it.
    let band = |y0: usize, y1: usize| Png {
        width: page.width,
        height: y1 - y0,
        rgba: page.rgba[y0 * page.width..y1 * page.width].to_vec(),
    };
    let background = [0xf2, 0xf3, 0xf5, 0xff];
    let (busy, colours) = content(&band(0, 1600), background);
    eprintln!(
        "tables and curves: {:.0}% non-background, {colours} colours",
        100.0 * busy
    );
    assert!(busy > 0.3 && colours > 100, "{busy} {colours}");
    let cards = band(1600, height);
    let (busy, colours) = content(&cards, background);
    eprintln!(
        "image cards: {:.0}% non-background, {colours} colours",
        100.0 * busy
    );
    assert!(busy > 0.3 && colours > 100, "{busy} {colours}");
    // The synthetic objects are drawn in their colours (bright where attended, veiled
    // elsewhere): look for pixels close to the world's five colours.
    let near = |p: [u8; 4], c: [u8; 3]| (0..3).all(|k| p[k].abs_diff(c[k]) < 40);
    let objects = [
        [0xd6, 0x27, 0x28],
        [0x2c, 0xa0, 0x2c],
        [0x1f, 0x77, 0xb4],
        [0xe8, 0xc3, 0x1a],
        [0x94, 0x67, 0xbd],
    ];
    let coloured = cards
        .rgba
        .iter()
        .filter(|&&p| objects.iter().any(|&c| near(p, c)))
        .count();
    eprintln!("object-coloured pixels on the cards: {coloured}");
    assert!(
        coloured > 2000,
        "object colours on the cards: {coloured} pixels"
    );

    let svg = render(
        curves.to_str().unwrap(),
        &dir.join("curves.png"),
        "980x1400",
    );
    let (busy, colours) = content(&svg, [0xff, 0xff, 0xff, 0xff]);
    eprintln!(
        "curves.svg: {:.0}% non-white, {colours} colours",
        100.0 * busy
    );
    assert!(busy > 0.05 && colours > 20, "{busy} {colours}");

    if keep.is_some() {
        eprintln!("report, curves and screenshots kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
