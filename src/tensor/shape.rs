//! Shapes, strides and layouts: how a tensor's elements sit in its storage.
//!
//! A [`Layout`] maps a multi-index `i` to the storage position `offset + Σ i_d·stride_d`.
//! Views (reshape of contiguous data, permute, narrow, broadcast) only change the layout; a
//! broadcast dimension has stride 0.

use crate::{Error, Result};

/// Row-major (C-order) strides for `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc *= shape[d];
    }
    strides
}

/// Number of elements of `shape`.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The shape two shapes broadcast to (NumPy rules: align right, sizes equal or one of them 1).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    &[a, b],
                    "shapes broadcastable to each other",
                ));
            }
        };
    }
    Ok(out)
}

/// Resolves an axis that may be negative (counting from the end) against `rank`.
pub fn resolve_axis(op: &'static str, shape: &[usize], axis: isize) -> Result<usize> {
    let rank = shape.len() as isize;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank {
        return Err(Error::shape(
            op,
            &[shape],
            format!("axis {axis} within rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// Where a tensor's elements live in its storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// A contiguous row-major layout starting at 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// A layout with explicit strides and offset.
    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout {
            shape,
            strides,
            offset,
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The stride of each dimension, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The storage position of element 0.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Whether the elements are row-major and dense (a plain slice of storage).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for d in (0..self.shape.len()).rev() {
            if self.shape[d] != 1 && self.strides[d] != acc {
                return false;
            }
            acc *= self.shape[d];
        }
        true
    }

    /// The storage range of a contiguous layout.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.numel())
    }

    /// One past the largest storage position this layout touches (0 for an empty tensor).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&n, &s)| (n - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// The layout with dimensions permuted: new dimension `i` is old dimension `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.shape.len();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                "permute",
                &[&self.shape, perm],
                format!("a permutation of 0..{rank}"),
            ));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// The layout of `len` elements starting at `start` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Layout> {
        if axis >= self.shape.len() || start + len > self.shape[axis] {
            return Err(Error::shape(
                "narrow",
                &[&self.shape],
                format!("range {start}..{} within axis {axis}", start + len),
            ));
        }
        let mut shape = self.shape.clone();
        shape[axis] = len;
        Ok(Layout {
            shape,
            strides: self.strides.clone(),
            offset: self.offset + start * self.strides[axis],
        })
    }

    /// The layout broadcast to `target` (stride 0 on expanded dimensions).
    pub fn broadcast_to(&self, target: &[usize]) -> Result<Layout> {
        let (n, r) = (target.len(), self.shape.len());
        let err = || {
            Error::shape(
                "broadcast_to",
                &[&self.shape, target],
                "a shape broadcastable to the target",
            )
        };
        if r > n {
            return Err(err());
        }
        let mut strides = vec![0; n];
        for i in 0..n {
            if i < n - r {
                continue;
            }
            let (d, s) = (self.shape[i - (n - r)], self.strides[i - (n - r)]);
            strides[i] = if d == target[i] {
                s
            } else if d == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout {
            shape: target.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// The storage positions of all elements in row-major order of the multi-index.
    pub fn positions(&self) -> Positions<'_> {
        Positions {
            layout: self,
            index: vec![0; self.shape.len()],
            pos: self.offset,
            remaining: self.numel(),
        }
    }
}

/// Iterator over the storage positions of a layout, row-major.
pub struct Positions<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    pos: usize,
    remaining: usize,
}

impl Iterator for Positions<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.pos;
        // Advance the multi-index like an odometer.
        for d in (0..self.index.len()).rev() {
            self.index[d] += 1;
            self.pos += self.layout.strides[d];
            if self.index[d] < self.layout.shape[d] {
                break;
            }
            self.pos -= self.layout.strides[d] * self.index[d];
            self.index[d] = 0;
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Merges adjacent dimensions that are contiguous with each other in every layout, so strided
/// loops run over as few, as long, dimensions as possible. All layouts share `shape`.
/// Returns the merged shape and each layout's merged strides.
pub fn coalesce(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::with_capacity(shape.len()); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !out_shape.is_empty()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| *o.last().unwrap() == s[d] * shape[d]);
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for o in out_strides.iter_mut() {
            o.push(1);
        }
    }
    (out_shape, out_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert_eq!(broadcast_shapes("t", &[], &[2]).unwrap(), vec![2]);
        let e = broadcast_shapes("add", &[3, 2], &[4])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[3, 2]") && e.contains("[4]"), "{e}");
    }

    #[test]
    fn positions_of_a_permuted_narrowed_layout() {
        let l = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
        assert_eq!(l.positions().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
        let n = Layout::contiguous(&[2, 3]).narrow(1, 1, 2).unwrap();
        assert_eq!(n.positions().collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        assert!(!n.is_contiguous());
        assert_eq!(n.storage_extent(), 6);
    }

    #[test]
    fn broadcast_layout_has_zero_strides() {
        let l = Layout::contiguous(&[3]).broadcast_to(&[2, 3]).unwrap();
        assert_eq!(l.strides(), &[0, 1]);
        assert_eq!(l.positions().collect::<Vec<_>>(), vec![0, 1, 2, 0, 1, 2]);
        assert!(Layout::contiguous(&[2]).broadcast_to(&[3]).is_err());
    }

    #[test]
    fn coalesce_merges_dense_dims() {
        let (s, st) = coalesce(&[2, 3, 4], &[&[12, 4, 1], &[0, 0, 1]]);
        assert_eq!(s, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
    }

    #[test]
    fn bad_permutation_is_an_error() {
        assert!(Layout::contiguous(&[2, 3]).permute(&[0, 0]).is_err());
        assert!(Layout::contiguous(&[2, 3]).permute(&[0]).is_err());
    }
}
