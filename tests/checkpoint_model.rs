//! A model written to a safetensors checkpoint and read back gives bit-identical outputs;
//! truncated or mismatched checkpoints are clear errors and load nothing.

use aoanet::autograd::no_grad;
use aoanet::io::{load_named, save_named};
use aoanet::model::{AoaConfig, AoaModel, DecodeOptions, sample};
use aoanet::nn::{Ctx, Module};
use aoanet::rng::Philox;
use aoanet::tensor::{DType, Tensor};

fn config(rnn: usize) -> AoaConfig {
    let mut c = AoaConfig::small(11, 12);
    c.rnn_size = rnn;
    c.input_encoding_size = rnn;
    c.refiner_layers = 2;
    c
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("aoanet-ckpt-model-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Teacher-forced log-probabilities and a greedy decode of fixed inputs.
fn outputs(m: &AoaModel) -> (Vec<f32>, Vec<usize>) {
    let feats = Tensor::uniform(&[2, 5, 12], 0.0, 1.0, DType::F32, &mut Philox::new(1));
    let mut rng = Philox::new(2);
    no_grad(|| {
        let enc = m
            .encode(&feats, None, None, &mut Ctx::eval(&mut rng), None)
            .unwrap();
        let labels = [0, 3, 4, 0, 0, 0, 5, 6, 7, 0];
        let lp = m
            .forward_xe(&enc, &labels, 5, 0.0, &mut Ctx::eval(&mut rng))
            .unwrap();
        let greedy = sample(
            m,
            &enc,
            &DecodeOptions::greedy(8),
            &mut Ctx::eval(&mut rng),
            false,
        )
        .unwrap();
        (lp.to_vec_f32(), greedy.seq)
    })
}

#[test]
fn write_then_read_gives_bit_identical_outputs() {
    let dir = tmpdir("roundtrip");
    let a = AoaModel::new(config(32), DType::F32, 1).unwrap();
    let path = dir.join("model.safetensors");
    save_named(&path, &a.named_parameters(), None, &[("format", "aoanet")]).unwrap();
    let b = AoaModel::new(config(32), DType::F32, 2).unwrap();
    assert_ne!(
        outputs(&a).0,
        outputs(&b).0,
        "different seeds must differ before loading"
    );
    load_named(&path, &b.named_parameters()).unwrap();
    let (oa, ob) = (outputs(&a), outputs(&b));
    assert_eq!(
        oa.0.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        ob.0.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(oa.1, ob.1);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn half_precision_checkpoints_round_to_nearest() {
    let dir = tmpdir("half");
    let a = AoaModel::new(config(16), DType::F32, 3).unwrap();
    for (dtype, name) in [(DType::F16, "f16"), (DType::BF16, "bf16")] {
        let path = dir.join(format!("model-{name}.safetensors"));
        save_named(&path, &a.named_parameters(), Some(dtype), &[]).unwrap();
        let b = AoaModel::new(config(16), DType::F32, 4).unwrap();
        load_named(&path, &b.named_parameters()).unwrap();
        for ((n, pa), (_, pb)) in a.named_parameters().iter().zip(b.named_parameters()) {
            let want = pa.to_dtype(dtype).unwrap().to_vec_f32();
            assert_eq!(
                pb.to_vec_f32(),
                want,
                "{name}: {n} is not the rounded value"
            );
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn truncated_or_mismatched_checkpoints_load_nothing() {
    let dir = tmpdir("bad");
    let a = AoaModel::new(config(32), DType::F32, 5).unwrap();
    let path = dir.join("model.safetensors");
    save_named(&path, &a.named_parameters(), None, &[]).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let b = AoaModel::new(config(32), DType::F32, 6).unwrap();
    let before = outputs(&b);
    for cut in [7, 100, bytes.len() / 2, bytes.len() - 1] {
        let t = dir.join(format!("cut{cut}.safetensors"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let e = load_named(&t, &b.named_parameters())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("cut{cut}.safetensors")), "{e}");
        assert_eq!(outputs(&b), before, "a failed load changed the model");
    }
    // A different width: every mismatched tensor is named and nothing is loaded.
    let c = AoaModel::new(config(16), DType::F32, 7).unwrap();
    let before = outputs(&c);
    let e = load_named(&path, &c.named_parameters())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("embed.0.weight") && e.contains("core.att_lstm.weight_ih"),
        "{e}"
    );
    assert_eq!(outputs(&c), before);
    // A different structure (LSTM context cell): missing and unexpected names.
    let mut cfg = config(32);
    cfg.decoder_type = aoanet::model::DecoderType::Lstm;
    let d = AoaModel::new(cfg, DType::F32, 8).unwrap();
    let e = load_named(&path, &d.named_parameters())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("core.att2ctx.weight_ih") && e.contains("core.att2ctx.0.weight"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).ok();
}
