//! A loader [`Batch`] as the tensors and index lists the model and the losses take.

use crate::Result;
use crate::data::Batch;
use crate::tensor::{DType, Device, Tensor};

/// The model's view of a batch (`B` images, `S` captions each, `T` label columns).
pub struct BatchTensors {
    /// Region features `[B, N, F]`.
    pub att_feats: Tensor,
    /// `[B, N]` (1 = real region), `None` when every image has `N` regions; on the host
    /// ([`crate::model::AoaModel::encode`] uploads it without reading anything back).
    pub att_masks: Option<Tensor>,
    /// The labels `[B·S × T]`, row-major.
    pub labels: Vec<usize>,
    /// `T`.
    pub width: usize,
    /// The targets `labels[:, 1:]`, `[B·S × (T−1)]`.
    pub targets: Vec<usize>,
    /// The loss mask `masks[:, 1:]`, `[B·S, T−1]`, in `dtype` on the host: the losses read
    /// it there (reading it back from a GPU would wait for every kernel queued before).
    pub mask: Tensor,
}

impl BatchTensors {
    /// Converts `batch`: features in `dtype` on `device`, masks in `dtype` on the host.
    pub fn new(batch: &Batch, dtype: DType, device: Device) -> Result<BatchTensors> {
        let b = batch.images();
        let att_feats = Tensor::from_slice(&batch.att_feats, &[b, batch.max_regions, batch.dim])?
            .to_dtype(dtype)?
            .to_device(device)?;
        let att_masks = batch
            .att_masks
            .as_ref()
            .map(|m| Tensor::from_slice(m, &[b, batch.max_regions])?.to_dtype(dtype))
            .transpose()?;
        let width = batch.label_width();
        let rows = batch.rows();
        let labels: Vec<usize> = batch.labels.iter().map(|&x| x as usize).collect();
        let mut targets = Vec::with_capacity(rows * (width - 1));
        let mut mask = Vec::with_capacity(rows * (width - 1));
        for r in 0..rows {
            targets.extend_from_slice(&labels[r * width + 1..(r + 1) * width]);
            mask.extend_from_slice(&batch.masks[r * width + 1..(r + 1) * width]);
        }
        Ok(BatchTensors {
            att_feats,
            att_masks,
            labels,
            width,
            targets,
            mask: Tensor::from_vec(mask, &[rows, width - 1])?.to_dtype(dtype)?,
        })
    }

    /// Features and masks with each image's row repeated `n` times (image `i` → rows
    /// `i·n .. i·n + n`): the reference's replicating loader.
    pub fn replicated(&self, n: usize) -> Result<(Tensor, Option<Tensor>)> {
        let b = self.att_feats.shape()[0];
        let rows: Vec<usize> = (0..b).flat_map(|i| std::iter::repeat_n(i, n)).collect();
        Ok((
            self.att_feats.index_select(0, &rows)?,
            self.att_masks
                .as_ref()
                .map(|m| m.index_select(0, &rows))
                .transpose()?,
        ))
    }
}
