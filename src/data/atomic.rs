//! Output files that appear whole or not at all.
//!
//! [`AtomicFile`] writes to a hidden temporary file in the destination's directory and renames
//! it over the destination only on [`AtomicFile::commit`]; dropped without a commit (an error,
//! a panic, a `?`), it deletes the temporary file. A reader therefore never sees a partial
//! output file under the final name.

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of one process (several writers may target one directory).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name; see the module docs.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `dest`: creates `.<name>.tmp-<pid>-<n>` beside it.
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{}: not a file name", dest.display())))?
            .to_string_lossy()
            .into_owned();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
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

    /// Flushes, syncs to disk and renames the file to its destination.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("AtomicFile committed twice");
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.dest, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.dest, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        Ok(())
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

/// Writes `bytes` to `dest` atomically.
pub fn write_file(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes)?;
    f.commit()
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
