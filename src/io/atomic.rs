//! Atomic file replacement: a reader sees the old file or the complete new one, never a
//! partial write, also when the process dies half way.
//!
//! The content goes to a hidden temporary file in the destination's folder (so the rename
//! stays on one file system), which is flushed and fsynced, then renamed over the
//! destination; the folder is fsynced last so the rename itself survives a crash. On any
//! error, and when an [`AtomicFile`] is dropped without [`AtomicFile::commit`], the temporary
//! file is removed and the destination is untouched. Every writer of aoanet goes through here.

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of one process (several writers may target one folder).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name; see the module docs.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `dest`: creates `.<name>.<pid>-<n>.tmp` beside it (hidden, and
    /// recognisable by its `.tmp` ending, so a leftover from a killed process can be found).
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{}: not a file name", dest.display())))?
            .to_string_lossy()
            .into_owned();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dest.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            dest,
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes all of `bytes` (an I/O error names the destination).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("AtomicFile used after commit");
        out.write_all(bytes).map_err(|e| Error::io(&self.dest, e))
    }

    /// Overwrites `bytes` at absolute position `at` (e.g. a header finished last), then returns
    /// to the end of the file.
    pub fn write_at(&mut self, at: u64, bytes: &[u8]) -> Result<()> {
        let dest = &self.dest;
        let out = self.out.as_mut().expect("AtomicFile used after commit");
        let io = |e| Error::io(dest, e);
        out.flush().map_err(io)?;
        let f = out.get_mut();
        f.seek(SeekFrom::Start(at)).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(())
    }

    /// Flushes, syncs to disk, renames the file to its destination and syncs the folder.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("AtomicFile committed twice");
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.dest, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.dest, e))?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.tmp, &self.dest) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::io(&self.dest, e));
        }
        let dir = match self.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sync_dir(&dir)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Not committed: the partial file must not stay behind. Nothing useful can be done
            // if removal fails (the error that got us here is the one to report).
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes the file at `path` atomically: `fill` writes the whole content into the given
/// writer (buffered), and the file appears under `path` only if `fill` and every file-system
/// step succeed. Errors name `path`.
pub fn write_atomic(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    let dest = f.dest.clone();
    {
        let out = f.out.as_mut().expect("fresh AtomicFile");
        fill(out)?;
        out.flush().map_err(|e| Error::io(&dest, e))?;
    }
    f.commit()
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
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

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let d = scratch("a");
        let dest = d.join("out.bin");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"hello world").unwrap();
        f.write_at(0, b"J").unwrap();
        assert!(!dest.exists(), "nothing under the final name before commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"Jello world");

        let dest2 = d.join("other.bin");
        {
            let mut f = AtomicFile::create(&dest2).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!dest2.exists());
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1, "only the committed file remains: {left:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
