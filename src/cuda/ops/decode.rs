//! The decoding loop's words on the device (`model::decode::sample` on a GPU): each step's
//! picked words (arg-max or drawn), the next step's inputs, the captions so far and the count
//! of unfinished rows stay in device memory, so the loop queues step after step; the host
//! reads one count per step a step late ([`LaterRead`]) and the captions once at the end.

use std::sync::Arc;

use super::device_of;
use crate::Result;
use crate::cuda::kernels::sample as k;
use crate::cuda::{CudaBuffer, CudaDevice, LaterRead};
use crate::tensor::{Ids, Tensor};

/// The device state of one decoding loop over `rows` rows and at most `len` steps.
pub(crate) struct DeviceWords {
    dev: Arc<CudaDevice>,
    /// 1 while a row has not emitted EOS.
    unfinished: CudaBuffer<i32>,
    /// The captions `[rows, len]`, zeros where no step wrote.
    seq: CudaBuffer<i32>,
    /// Per step, the rows still unfinished after it.
    alive: CudaBuffer<i32>,
    len: usize,
}

impl DeviceWords {
    /// A loop over `rows` rows on `like`'s device: every row unfinished, no word yet.
    pub(crate) fn new(like: &Tensor, rows: usize, len: usize) -> Result<DeviceWords> {
        let dev = device_of(like)?;
        Ok(DeviceWords {
            unfinished: dev.htod(&vec![1i32; rows])?,
            seq: dev.zeros::<i32>(rows * len)?,
            alive: dev.zeros::<i32>(len)?,
            dev,
            len,
        })
    }

    /// The index of each row's first maximum of `x [rows, cols]` (the first NaN in a row
    /// with one; `cols ≥ 1`), left on the device.
    pub(crate) fn argmax(&self, x: &Tensor) -> Result<Ids> {
        let cols = x.shape().last().copied().unwrap_or(0);
        if cols == 0 {
            return Err(crate::Error::shape(
                "argmax_last",
                &[x.shape()],
                "rows of at least one entry",
            ));
        }
        super::reduce::argmax_rows(x, x.numel() / cols, cols).map(Ids::from_device)
    }

    /// One word per row of the f32 log-probabilities `lp [rows, classes]`, drawn with
    /// `uniforms` (each in `[0, 1)`, so that every row is drawn; as [`super::sample_rows`]),
    /// left on the device.
    pub(crate) fn sample(&self, lp: &Tensor, uniforms: &[f64]) -> Result<Ids> {
        let words = self.dev.alloc::<i32>(uniforms.len())?;
        super::reduce::draw_rows(lp, uniforms, words).map(Ids::from_device)
    }

    /// Step `t`'s bookkeeping from its picked `words` (device words of this loop): the next
    /// step's inputs (`words` where the row is still unfinished, else 0) and a later read of
    /// the number of rows still unfinished.
    pub(crate) fn advance(&mut self, words: &Ids, t: usize) -> Result<(Ids, LaterRead<i32>)> {
        let picked = words.device_buffer().ok_or_else(|| {
            crate::Error::invalid("decoding on the device: words that are not on the device")
        })?;
        let mut it = self.dev.alloc::<i32>(words.len())?;
        k::advance_words(
            &self.dev,
            it.view_mut(),
            self.unfinished.view_mut(),
            self.seq.view_mut(),
            self.alive.view_mut(),
            picked.view(),
            self.len,
            t,
        )?;
        let count = self.dev.read_later(self.alive.slice(t..t + 1)?)?;
        Ok((Ids::from_device(it), count))
    }

    /// The captions `[rows × len]`, row-major (one wait).
    pub(crate) fn seq(&self) -> Result<Vec<usize>> {
        Ok(self
            .seq
            .to_host()?
            .into_iter()
            .map(|w| w.max(0) as usize)
            .collect())
    }
}
