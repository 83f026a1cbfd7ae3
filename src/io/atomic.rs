//! Atomic file replacement: a reader sees the old file or the complete new one, never a
//! partial write, also when the process dies half way.
//!
//! The content goes to a temporary file in the destination's folder (so the rename stays on
//! one file system), which is flushed and fsynced, then renamed over the destination; the
//! folder is fsynced last so the rename itself survives a crash. On any error the temporary
//! file is removed and the destination is untouched.

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes the file at `path` atomically: `fill` writes the whole content into the given
/// writer (buffered), and the file appears under `path` only if `fill` and every file-system
/// step succeed. Errors name `path`.
pub fn write_atomic(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file name", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Unique per process and call: two writers of the same file never share a temporary.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let result = write_then_sync(file, &tmp, fill)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if let Err(e) = result {
        // Best effort: the write already failed, and that error is the one to report.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir)
}

fn write_then_sync(
    file: File,
    tmp: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    fill(&mut w)?;
    let file = w.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))
}

/// Makes the rename durable. Folders can be opened and fsynced on Unix only.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aoanet-atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = scratch("ok");
        let p = d.join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, |w| {
            w.write_all(b"new content").map_err(|e| Error::io("x", e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        assert_eq!(entries(&d), vec!["out.bin".to_string()]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let d = scratch("fail");
        let p = d.join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(b"partial").map_err(|e| Error::io("x", e))?;
            Err(Error::invalid("conversion failed half way"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("half way"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(&d), vec!["out.bin".to_string()]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_it() {
        let d = scratch("missing");
        let p = d.join("no/such/dir/out.bin");
        let e = write_atomic(&p, |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("no/such/dir"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
