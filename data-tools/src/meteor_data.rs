//! `aoanet-data meteor-data`: METEOR's English resources from the pycocoevalcap wheel into one
//! `meteor.bin` that `aoanet` memory-maps.
//!
//! The wheel (`pip download pycocoevalcap==1.2 --no-deps`) holds `pycocoevalcap/meteor/
//! meteor-1.5.jar` (the function words, non-breaking prefixes and WordNet synonym files are
//! entries of that jar) and `pycocoevalcap/meteor/data/paraphrase-en.gz`. `--from` takes the
//! wheel, an unpacked package folder, or the jar and the paraphrase table as two `--from`s.

use aoanet::metrics::meteor::{BuildSummary, MeteorData, MeteorSources, build_meteor_data};
use aoanet::{Error, Result};
use clap::Args as ClapArgs;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

const JAR_NAME: &str = "meteor-1.5.jar";
const PARA_NAME: &str = "paraphrase-en.gz";
/// The jar entries we need, in `MeteorSources` order.
const JAR_ENTRIES: [&str; 4] = [
    "function/english.words",
    "nonbreaking/english.prefixes",
    "synonym/english.synsets",
    "synonym/english.exceptions",
];

/// Arguments of `meteor-data`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The pycocoevalcap wheel (.whl), an unpacked package folder, or (given twice) the jar
    /// `meteor-1.5.jar` and the table `paraphrase-en.gz`.
    #[arg(long, required = true, num_args = 1..=2, action = clap::ArgAction::Append)]
    pub from: Vec<PathBuf>,
    /// The file to write (replaced atomically), e.g. ~/.local/share/aoanet/meteor.bin.
    #[arg(long)]
    pub out: PathBuf,
}

/// Where the two inputs come from.
enum Source {
    /// Both inside a wheel (zip): entry names of the jar and of the table.
    Wheel {
        wheel: PathBuf,
        jar: String,
        para: String,
    },
    /// Two files on disk.
    Files { jar: PathBuf, para: PathBuf },
}

fn starts_with_magic(path: &Path, magic: &[u8]) -> Result<bool> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = vec![0u8; magic.len()];
    match f.read_exact(&mut head) {
        Ok(()) => Ok(head == magic),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

fn locate(from: &[PathBuf]) -> Result<Source> {
    match from {
        [dir] if dir.is_dir() => {
            // The package folder itself, its `meteor/` folder, or a folder holding the package.
            let candidates = [
                dir.join(JAR_NAME),
                dir.join("meteor").join(JAR_NAME),
                dir.join("pycocoevalcap").join("meteor").join(JAR_NAME),
            ];
            let jar = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                Error::invalid(format!(
                    "{}: no {JAR_NAME} in it, its meteor/ or its pycocoevalcap/meteor/",
                    dir.display()
                ))
            })?;
            // The jar looks for its table in data/ beside itself.
            let para = jar.with_file_name("data").join(PARA_NAME);
            if !para.is_file() {
                return Err(Error::invalid(format!(
                    "{}: missing (the paraphrase table beside {JAR_NAME})",
                    para.display()
                )));
            }
            Ok(Source::Files {
                jar: jar.clone(),
                para,
            })
        }
        [wheel] => {
            if !starts_with_magic(wheel, ZIP_MAGIC)? {
                return Err(Error::format(
                    wheel,
                    "not a wheel (zip) or a folder; give the pycocoevalcap wheel, its unpacked folder, or --from JAR --from paraphrase-en.gz",
                ));
            }
            let file = File::open(wheel).map_err(|e| Error::io(wheel, e))?;
            let zip = zip::ZipArchive::new(BufReader::new(file))
                .map_err(|e| Error::format(wheel, format!("cannot read the zip: {e}")))?;
            let find = |suffix: &str| {
                zip.file_names()
                    .find(|n| n.ends_with(suffix))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Error::format(wheel, format!("no entry ending in {suffix} in this wheel"))
                    })
            };
            Ok(Source::Wheel {
                wheel: wheel.clone(),
                jar: find(&format!("meteor/{JAR_NAME}"))?,
                para: find(&format!("meteor/data/{PARA_NAME}"))?,
            })
        }
        [a, b] => {
            let (mut jar, mut para) = (None, None);
            for p in [a, b] {
                if starts_with_magic(p, GZIP_MAGIC)? {
                    para = Some(p.clone());
                } else if starts_with_magic(p, ZIP_MAGIC)? {
                    jar = Some(p.clone());
                } else {
                    return Err(Error::format(p, "neither a jar (zip) nor a gzip file"));
                }
            }
            match (jar, para) {
                (Some(jar), Some(para)) => Ok(Source::Files { jar, para }),
                _ => Err(Error::invalid(
                    "with two --from, give the jar meteor-1.5.jar and the table paraphrase-en.gz",
                )),
            }
        }
        _ => Err(Error::invalid("--from takes one or two paths")),
    }
}

/// Reads the four text files out of the jar's bytes.
fn jar_texts(jar_bytes: Vec<u8>, jar_name: &Path) -> Result<[String; 4]> {
    let mut zip = zip::ZipArchive::new(Cursor::new(jar_bytes))
        .map_err(|e| Error::format(jar_name, format!("cannot read the jar: {e}")))?;
    let mut out: [String; 4] = Default::default();
    for (slot, entry) in out.iter_mut().zip(JAR_ENTRIES) {
        let mut f = zip.by_name(entry).map_err(|e| {
            Error::format(
                jar_name,
                format!("{entry}: {e} (is this METEOR 1.5's jar?)"),
            )
        })?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::format(jar_name, format!("{entry}: {e}")))?;
        // The jar decodes these as UTF-8 (synonym files are ASCII either way).
        *slot = String::from_utf8_lossy(&bytes).into_owned();
    }
    Ok(out)
}

fn build(
    texts: &[String; 4],
    para: &mut dyn Read,
    para_name: &Path,
    out: &Path,
) -> Result<BuildSummary> {
    let sources = MeteorSources {
        function_words: &texts[0],
        prefixes: &texts[1],
        synsets: &texts[2],
        exceptions: &texts[3],
    };
    let mut reader = BufReader::with_capacity(1 << 20, MultiGzDecoder::new(para));
    build_meteor_data(&sources, &mut reader, para_name, out)
}

/// Runs `meteor-data`.
pub fn run(args: &Args) -> Result<()> {
    let started = std::time::Instant::now();
    // The default location (~/.local/share/aoanet/) usually does not exist yet.
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let summary = match locate(&args.from)? {
        Source::Files { jar, para } => {
            let bytes = std::fs::read(&jar).map_err(|e| Error::io(&jar, e))?;
            let texts = jar_texts(bytes, &jar)?;
            let mut f = File::open(&para).map_err(|e| Error::io(&para, e))?;
            build(&texts, &mut f, &para, &args.out)?
        }
        Source::Wheel { wheel, jar, para } => {
            let file = File::open(&wheel).map_err(|e| Error::io(&wheel, e))?;
            let mut zip = zip::ZipArchive::new(BufReader::new(file))
                .map_err(|e| Error::format(&wheel, format!("cannot read the zip: {e}")))?;
            let jar_path = wheel.join(&jar);
            let mut bytes = Vec::new();
            zip.by_name(&jar)
                .and_then(|mut f| f.read_to_end(&mut bytes).map_err(Into::into))
                .map_err(|e| Error::format(&wheel, format!("{jar}: {e}")))?;
            let texts = jar_texts(bytes, &jar_path)?;
            let mut entry = zip
                .by_name(&para)
                .map_err(|e| Error::format(&wheel, format!("{para}: {e}")))?;
            build(&texts, &mut entry, &wheel.join(&para), &args.out)?
        }
    };
    // Read the result back through the library's own validation before saying it worked.
    MeteorData::open(&args.out)?;
    eprintln!(
        "meteor-data: wrote {} ({:.1} MB) in {:.1} s: {} function words, {} prefixes, {} WordNet words, {} irregular forms, {} paraphrase entries ({} phrases, {} words)",
        args.out.display(),
        summary.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        summary.function_words,
        summary.prefixes,
        summary.synonym_words,
        summary.irregular_forms,
        summary.paraphrase_entries,
        summary.phrases,
        summary.paraphrase_words,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aoanet::metrics::meteor::Meteor;
    use std::io::Write;

    const TOY: [(&str, &str); 4] = [
        ("function/english.words", "a\nthe\n"),
        ("nonbreaking/english.prefixes", "Mr\n"),
        (
            "synonym/english.synsets",
            "big\n00000002\nlarge\n00000002\n",
        ),
        ("synonym/english.exceptions", "mouse\nmice\n"),
    ];
    const PARA: &str = "0.5\nlarge dog\nbig hound\n";

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("zip entry");
            w.write_all(bytes).expect("zip write");
        }
        w.finish().expect("zip finish").into_inner()
    }

    fn gz_of(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).expect("gz");
        e.finish().expect("gz")
    }

    /// The output scores a synonym and a paraphrase as the toy resources say.
    fn check(out: &Path) {
        let m = Meteor::open(out).expect("open");
        let s = m.score_segment("a big dog", &["a large dog"]);
        assert_eq!(s.stages[2].test_content, 1, "synonym big/large");
        let s = m.score_segment("a big hound", &["a large dog"]);
        assert_eq!(
            s.stages[3].test_content, 2,
            "paraphrase large dog/big hound"
        );
    }

    #[test]
    fn reads_a_wheel_a_folder_and_two_files() {
        let dir = std::env::temp_dir().join(format!("aoanet-meteor-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pkg = dir.join("pkg").join("pycocoevalcap").join("meteor");
        std::fs::create_dir_all(pkg.join("data")).expect("dirs");
        let entries: Vec<(&str, &[u8])> = TOY.iter().map(|(n, t)| (*n, t.as_bytes())).collect();
        let jar = zip_of(&entries);
        let gz = gz_of(PARA);
        std::fs::write(pkg.join(JAR_NAME), &jar).expect("jar");
        std::fs::write(pkg.join("data").join(PARA_NAME), &gz).expect("gz");
        let wheel = dir.join("toy.whl");
        std::fs::write(
            &wheel,
            zip_of(&[
                ("pycocoevalcap/meteor/meteor-1.5.jar", &jar),
                ("pycocoevalcap/meteor/data/paraphrase-en.gz", &gz),
            ]),
        )
        .expect("wheel");

        let out = dir.join("new").join("out.bin");
        for from in [
            vec![wheel.clone()],
            vec![dir.join("pkg")],
            vec![pkg.clone()],
            vec![pkg.join("data").join(PARA_NAME), pkg.join(JAR_NAME)],
        ] {
            let _ = std::fs::remove_file(&out);
            run(&Args {
                from: from.clone(),
                out: out.clone(),
            })
            .unwrap_or_else(|e| panic!("{from:?}: {e}"));
            check(&out);
        }

        let text = dir.join("notes.txt");
        std::fs::write(&text, "hello").expect("text");
        let e = run(&Args {
            from: vec![text],
            out: out.clone(),
        })
        .expect_err("not a wheel");
        assert!(e.to_string().contains("not a wheel"), "{e}");
        let e = run(&Args {
            from: vec![dir.join("nowhere")],
            out,
        })
        .expect_err("missing");
        assert!(e.to_string().contains("nowhere"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
