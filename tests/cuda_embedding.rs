//! GPU embedding gather and scatter-add vs CPU.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::cuda::kernels::embedding;
use cuda_util::{gpu, rand_vec};

#[test]
fn embedding_fwd_f32_gathers_and_poisons_bad_ids() {
    let Some(dev) = gpu("embedding_fwd_f32_gathers_and_poisons_bad_ids") else {
        return;
    };
    let (vocab, dim) = (37usize, 33usize);
    let table = rand_vec(1, vocab * dim, -1.0, 1.0);
    let ids: Vec<i32> = vec![0, 36, 5, 5, 17, -1, 37];
    let (td, idd) = (dev.htod(&table).unwrap(), dev.htod(&ids).unwrap());
    let mut out = dev.alloc::<f32>(ids.len() * dim).unwrap();
    embedding::forward(&dev, out.view_mut(), td.view(), idd.view(), vocab, dim).unwrap();
    let got = out.to_host().unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let row = &got[t * dim..(t + 1) * dim];
        if (0..vocab as i32).contains(&id) {
            assert_eq!(row, &table[id as usize * dim..(id as usize + 1) * dim]);
        } else {
            assert!(row.iter().all(|v| v.is_nan()), "id {id} must give NaN");
        }
    }
}

/// 17 pieces of 50 ids (an embedding at every decoding step), ids repeated within and across
/// pieces, one piece empty, rows of 300 (not a multiple of a block): one launch, the bits of
/// the sequential CPU loop over the pieces' rows; untouched rows unchanged.
fn scatter_rows_matches<T>(test: &str)
where
    T: aoanet::cuda::CudaFloat
        + Copy
        + PartialEq
        + std::fmt::Debug
        + std::ops::AddAssign
        + From<f32>,
{
    let Some(dev) = gpu(test) else {
        return;
    };
    let (vocab, dim) = (97usize, 300usize);
    let ids: Vec<Vec<usize>> = (0..17)
        .map(|p| {
            let n = if p == 5 { 0 } else { 50 };
            (0..n)
                .map(|t| (t * 7 + p * 11) % 23 + (t % 4) * 19)
                .collect()
        })
        .collect();
    let cast = |v: Vec<f32>| -> Vec<T> { v.into_iter().map(T::from).collect() };
    let values: Vec<Vec<T>> = ids
        .iter()
        .enumerate()
        .map(|(p, i)| cast(rand_vec(10 + p as u64, i.len() * dim, -1.0, 1.0)))
        .collect();
    let init: Vec<T> = cast(rand_vec(4, vocab * dim, -1.0, 1.0));
    let on_dev: Vec<_> = values.iter().map(|v| dev.htod(v).unwrap()).collect();

    // One launch for all pieces.
    let mut many = dev.htod(&init).unwrap();
    let pieces: Vec<embedding::RowsPiece<'_, T>> = ids
        .iter()
        .zip(&on_dev)
        .map(|(i, v)| embedding::RowsPiece {
            ids: i,
            values: v.view(),
        })
        .collect();
    let before = aoanet::cuda::launches_on_this_thread();
    embedding::scatter_rows(&dev, many.view_mut(), vocab, dim, &pieces).unwrap();
    assert_eq!(
        aoanet::cuda::launches_on_this_thread() - before,
        1,
        "one launch for every piece"
    );

    let got = many.to_host().unwrap();

    // The sequential CPU loop in the same order; untouched rows keep their values.
    let mut cpu = init.clone();
    for (i, v) in ids.iter().zip(&values) {
        for (t, &id) in i.iter().enumerate() {
            for d in 0..dim {
                cpu[id * dim + d] += v[t * dim + d];
            }
        }
    }
    assert_eq!(got, cpu);
    assert!(
        (0..vocab).any(|r| !ids.iter().flatten().any(|&i| i == r)),
        "some rows untouched"
    );
}

#[test]
fn scatter_rows_f32_sums_many_pieces_in_one_launch_with_the_bits_of_one_per_piece() {
    scatter_rows_matches::<f32>(
        "scatter_rows_f32_sums_many_pieces_in_one_launch_with_the_bits_of_one_per_piece",
    );
}

#[test]
fn scatter_rows_f64_sums_many_pieces_in_one_launch_with_the_bits_of_one_per_piece() {
    scatter_rows_matches::<f64>(
        "scatter_rows_f64_sums_many_pieces_in_one_launch_with_the_bits_of_one_per_piece",
    );
}

#[test]
fn scatter_rows_refuses_bad_rows_and_sizes() {
    let Some(dev) = gpu("scatter_rows_refuses_bad_rows_and_sizes") else {
        return;
    };
    let (vocab, dim) = (4usize, 3usize);
    let mut out = dev.htod(&vec![0.0f32; vocab * dim]).unwrap();
    let v = dev.htod(&vec![1.0f32; 2 * dim]).unwrap();
    let bad_id = [embedding::RowsPiece {
        ids: &[1, 4],
        values: v.view(),
    }];
    let err = embedding::scatter_rows(&dev, out.view_mut(), vocab, dim, &bad_id).unwrap_err();
    assert!(err.to_string().contains("row 4 out of range"), "{err}");
    let short = [embedding::RowsPiece {
        ids: &[1, 2, 3],
        values: v.view(),
    }];
    assert!(embedding::scatter_rows(&dev, out.view_mut(), vocab, dim, &short).is_err());
    assert_eq!(
        out.to_host().unwrap(),
        vec![0.0f32; vocab * dim],
        "nothing written"
    );
}
