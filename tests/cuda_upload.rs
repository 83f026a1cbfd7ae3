//! Large uploads go through the page-locked staging buffer (`src/cuda/staging.rs`): many
//! back-to-back uploads, each freeing its host source right after the call, interleaved
//! with kernels that read the uploaded data, must all arrive intact (the staging buffer is
//! reused only after the device has read it); the buffer grows for a larger upload; small
//! uploads bypass it.
#![cfg(feature = "cuda")]

mod cuda_util;

use aoanet::tensor::{DType, Device, Tensor};
use cuda_util::cuda;

/// `n` floats, distinct per `seed`, exactly representable.
fn data(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 131) % 4093) as f32 - 2046.0)
        .collect()
}

#[test]
fn staged_uploads_arrive_intact_when_issued_back_to_back() {
    let Some(dev) = cuda("staged_uploads_arrive_intact_when_issued_back_to_back") else {
        return;
    };
    // 256 Ki floats = 1 MiB: above the staging threshold (256 KiB); then 3 MiB (the buffer
    // grows), then small ones (pageable path), in one queue.
    let sizes = [
        1 << 18,
        1 << 18,
        1 << 18,
        3 << 18,
        1 << 18,
        1000,
        1 << 18,
        17,
        3 << 18,
    ];
    let mut uploaded = Vec::new();
    let mut doubled = Vec::new();
    let mut host = Vec::new();
    for (seed, &n) in sizes.iter().enumerate() {
        let v = data(seed, n);
        // The host tensor is dropped as soon as the upload returns.
        let t = Tensor::from_vec(v.clone(), &[n])
            .unwrap()
            .to_device(dev)
            .unwrap();
        // A kernel reading the upload, queued right behind it.
        doubled.push(t.mul_scalar(2.0).unwrap());
        uploaded.push(t);
        host.push(v);
    }
    for (i, ((t, d), want)) in uploaded.iter().zip(&doubled).zip(&host).enumerate() {
        assert_eq!(t.device(), dev);
        assert_eq!(t.dtype(), DType::F32);
        let got = t.to_vec_f32();
        assert!(got == *want, "upload {i} ({} floats) corrupted", want.len());
        let twice: Vec<f32> = want.iter().map(|x| 2.0 * x).collect();
        assert!(
            d.to_vec_f32() == twice,
            "kernel after upload {i} read wrong data"
        );
    }
    if dev == Device::Cpu {
        eprintln!("dry run: the CPU has no staging buffer; the data checks ran");
    }
}
