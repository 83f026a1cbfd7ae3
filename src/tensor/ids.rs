//! Row indices (one word id per row) that live on the host, or on a GPU where they were drawn.
//!
//! Scheduled sampling draws some of a step's input words from the model's own previous
//! distribution. On a GPU that draw is a kernel (`kernels/sample.cu`); reading its words back
//! before the next step could be queued made every step wait for the GPU (16 waits per training
//! step). [`Ids`] keeps such words in device memory, where the next step's embedding reads
//! them, and copies them to the host only when a host computation needs them: the
//! embedding's gradient, which groups its rows by word on the host, reads every step's words
//! at once ([`Ids::fetch_all`]: one wait per backward pass).

use crate::Result;
use std::sync::{Arc, OnceLock};

/// One index per row, on the host or on a CUDA device (cheap to clone: shared).
#[derive(Clone)]
pub struct Ids(Arc<Inner>);

struct Inner {
    len: usize,
    /// The host's copy: given at construction, or read from the device once.
    host: OnceLock<Vec<usize>>,
    /// Indices drawn on a device (`i32`, each in `0..classes`).
    #[cfg(feature = "cuda")]
    device: Option<crate::cuda::CudaBuffer<i32>>,
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.host.get() {
            Some(v) => write!(f, "Ids({v:?})"),
            None => write!(f, "Ids([{} on the device])", self.0.len),
        }
    }
}

impl From<Vec<usize>> for Ids {
    fn from(v: Vec<usize>) -> Self {
        Ids(Arc::new(Inner {
            len: v.len(),
            host: OnceLock::from(v),
            #[cfg(feature = "cuda")]
            device: None,
        }))
    }
}

impl From<&[usize]> for Ids {
    fn from(v: &[usize]) -> Self {
        Ids::from(v.to_vec())
    }
}

impl Ids {
    /// Indices held in device memory (read back only when [`Ids::host`] is asked for).
    #[cfg(feature = "cuda")]
    pub(crate) fn from_device(buf: crate::cuda::CudaBuffer<i32>) -> Ids {
        Ids(Arc::new(Inner {
            len: buf.len(),
            host: OnceLock::new(),
            device: Some(buf),
        }))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The indices on the host, without waiting: `None` for device indices not read yet.
    pub fn host_if_known(&self) -> Option<&[usize]> {
        self.0.host.get().map(Vec::as_slice)
    }

    /// The indices on the host; device indices are read back the first time (one wait for
    /// the GPU; [`Ids::fetch_all`] reads many with one).
    pub fn host(&self) -> Result<&[usize]> {
        if let Some(v) = self.0.host.get() {
            return Ok(v);
        }
        Ids::fetch_all([self])?;
        Ok(self.0.host.get().expect("fetched above"))
    }

    /// Records the host's copy of device indices that the caller read from the same device
    /// data by another way (the decoding loop's captions hold every step's inputs), so that
    /// [`Ids::host`] need not read them again. Ignored when the copy is known already.
    #[cfg(feature = "cuda")]
    pub(crate) fn know(&self, values: Vec<usize>) {
        debug_assert_eq!(values.len(), self.0.len);
        let _ = self.0.host.set(values);
    }

    /// The device buffer of indices drawn on a device (`None` for host indices).
    #[cfg(feature = "cuda")]
    pub(crate) fn device_buffer(&self) -> Option<&crate::cuda::CudaBuffer<i32>> {
        self.0.device.as_ref()
    }

    /// Reads every device index list of `all` not read yet, with one wait per device: they
    /// are gathered into one buffer on their device (copies queued on its stream) and copied
    /// back together. A negative index on the device is an error.
    #[cfg(feature = "cuda")]
    pub fn fetch_all<'a>(all: impl IntoIterator<Item = &'a Ids>) -> Result<()> {
        // The lists not read yet, by device.
        let mut by_device: std::collections::BTreeMap<usize, Vec<&Ids>> = Default::default();
        for ids in all {
            if let (None, Some(buf)) = (ids.0.host.get(), &ids.0.device) {
                by_device
                    .entry(buf.device().ordinal())
                    .or_default()
                    .push(ids);
            }
        }
        for group in by_device.values() {
            fetch_group(group)?;
        }
        Ok(())
    }

    /// Reads every device index list of `all` (without CUDA support there are none).
    #[cfg(not(feature = "cuda"))]
    pub fn fetch_all<'a>(_all: impl IntoIterator<Item = &'a Ids>) -> Result<()> {
        Ok(())
    }
}

/// [`Ids::fetch_all`] for lists on one device.
#[cfg(feature = "cuda")]
fn fetch_group(group: &[&Ids]) -> Result<()> {
    use crate::cuda::CudaBuffer;
    let bufs: Vec<&CudaBuffer<i32>> = group
        .iter()
        .map(|i| i.device_buffer().expect("device ids"))
        .collect();
    let values: Vec<i32> = if let [one] = bufs.as_slice() {
        one.to_host()?
    } else {
        let dev = bufs[0].device();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let gathered = dev.alloc::<i32>(total)?;
        let mut at = 0;
        for b in &bufs {
            dev.copy_dtod(
                b.device_ptr(),
                gathered.device_ptr() + (at * 4) as u64,
                b.len() * 4,
            )?;
            at += b.len();
        }
        gathered.to_host()?
    };
    if let Some(&bad) = values.iter().find(|&&w| w < 0) {
        return Err(crate::Error::invalid(format!(
            "ids read from the device: index {bad} (the kernel that drew them wrote no word)"
        )));
    }
    let mut rest = values.as_slice();
    for ids in group {
        let (mine, tail) = rest.split_at(ids.len());
        rest = tail;
        // Another thread may have read the same list meanwhile: the same values.
        let _ = ids.0.host.set(mine.iter().map(|&w| w as usize).collect());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_are_known_without_a_device() {
        let ids = Ids::from(vec![4, 0, 4]);
        assert_eq!(ids.len(), 3);
        assert!(!ids.is_empty());
        assert_eq!(ids.host_if_known(), Some(&[4, 0, 4][..]));
        assert_eq!(ids.host().unwrap(), &[4, 0, 4]);
        // Shared: a clone is the same list, and fetching host lists does nothing.
        let copy = ids.clone();
        Ids::fetch_all([&ids, &copy]).unwrap();
        assert_eq!(copy.host().unwrap(), &[4, 0, 4]);
        assert_eq!(format!("{copy:?}"), "Ids([4, 0, 4])");
        assert!(Ids::from(&[][..]).is_empty());
    }
}
