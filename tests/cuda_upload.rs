//! Large uploads go through the page-locked staging buffer (`src/cuda/staging.rs`): many
//! back-to-back uploads, each freeing its host source right after the call, interleaved
//! with kernels that read the uploaded data, must all arrive intact (the staging buffer is
//! reused only after the device has read it); the buffer grows for a larger upload; small
//! uploads go through a ring of page-locked memory instead, reused in turn once read.
//! Also the device's other event plumbing: per-launch timing (`CudaDevice::time_kernels`).
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
    // grows), then small ones (the ring of page-locked slots), in one queue.
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

/// Uploads under 256 KiB go through the 8 MiB page-locked ring: 200 of them (about 10 MiB in
/// all, so the ring wraps and earlier uploads are waited for before their bytes are reused)
/// behind a long product, so that the device lags; sizes from 4 bytes to the largest the ring
/// takes (65535 floats) and the smallest it does not (65536: the large staging buffer), each
/// read by a kernel queued right behind it; then the same with the ring switched off.
#[test]
fn small_uploads_through_the_page_locked_ring_arrive_intact() {
    let Some(dev) = cuda("small_uploads_through_the_page_locked_ring_arrive_intact") else {
        return;
    };
    let sizes: Vec<usize> = (0..200)
        .map(|i| match i % 6 {
            0 => 1,
            1 => 250,
            2 => 65535,
            3 => 65536,
            4 => 16 * 1024 + 1,
            _ => 1 + (i * 37) % 5000,
        })
        .collect();
    for ring in [true, false] {
        aoanet::cuda::set_small_upload_staging(ring);
        // A product of a few milliseconds queued first: the uploads land behind it.
        let big = Tensor::ones(&[1024, 1024], DType::F32)
            .to_device(dev)
            .unwrap();
        let slow = big.matmul(&big).unwrap().matmul(&big).unwrap();
        let mut checks = Vec::new();
        for (seed, &n) in sizes.iter().enumerate() {
            let v = data(seed, n);
            let t = Tensor::from_vec(v.clone(), &[n])
                .unwrap()
                .to_device(dev)
                .unwrap();
            checks.push((t.add_scalar(1.0).unwrap(), t, v));
        }
        for (i, (plus, t, want)) in checks.iter().enumerate() {
            assert!(
                t.to_vec_f32() == *want,
                "ring {ring}: upload {i} ({} floats) corrupted",
                want.len()
            );
            let plus_one: Vec<f32> = want.iter().map(|x| x + 1.0).collect();
            assert!(
                plus.to_vec_f32() == plus_one,
                "ring {ring}: the kernel after upload {i} read wrong data"
            );
        }
        assert_eq!(slow.to_vec_f32()[0], 1024.0 * 1024.0);
    }
    aoanet::cuda::set_small_upload_staging(true);
}

/// With the kernel clock on, every launch gets one record, in launch order, named after its
/// kernel with its launch shape and a GPU time; reading the records empties them; off, no
/// launch is recorded. (Other tests of this binary may launch while the clock is on: their
/// launches are recorded too, so the counts are lower bounds and ours are found in order.)
#[test]
fn kernel_times_give_one_record_per_launch_in_order() {
    let Some(dev) = cuda_util::gpu("kernel_times_give_one_record_per_launch_in_order") else {
        return;
    };
    let device = Device::Cuda(dev.ordinal());
    let on_gpu = |seed| {
        let t = Tensor::from_vec(data(seed, 300 * 70), &[300, 70]).unwrap();
        t.to_device(device).unwrap()
    };
    let (a, b) = (on_gpu(1), on_gpu(2));
    dev.kernel_times().unwrap();
    let untimed = a.add(&b).unwrap();
    assert!(
        dev.kernel_times().unwrap().is_empty(),
        "clock off: no records"
    );
    dev.time_kernels(true);
    let before = aoanet::cuda::launches_on_this_thread();
    let sum = a.add(&b).unwrap();
    let positive = sum.relu().unwrap();
    let product = positive.mul(&a).unwrap();
    let ours = aoanet::cuda::launches_on_this_thread() - before;
    dev.time_kernels(false);
    let times = dev.kernel_times().unwrap();
    assert_eq!(ours, 3, "add, relu, mul: one launch each");
    assert!(times.len() >= 3, "{} records for 3 launches", times.len());
    let want = ["binary_f32", "unary_f32", "binary_f32"];
    let mut next = 0;
    for t in &times {
        assert!(t.ms.is_finite() && t.ms >= 0.0, "{t:?}");
        assert!(t.grid.0 * t.grid.1 * t.grid.2 > 0 && t.block.0 * t.block.1 * t.block.2 > 0);
        if next < want.len() && t.kernel == want[next] {
            next += 1;
        }
    }
    assert_eq!(next, 3, "our launches in order among {times:?}");
    assert!(
        dev.kernel_times().unwrap().is_empty(),
        "records are read once"
    );
    // The timed launches computed what the untimed one did.
    assert_eq!(sum.to_vec_f32(), untimed.to_vec_f32());
    let want: Vec<f32> = (sum.to_vec_f32().iter())
        .zip(a.to_vec_f32())
        .map(|(s, a)| s.max(0.0) * a)
        .collect();
    assert_eq!(product.to_vec_f32(), want);
}
