//! The synthetic world: deterministic from its seed, captions that say what the scene holds,
//! features from which the objects can be read region by region (and far less well from the
//! mean of all regions, so a model must attend), the shuffled-features control, SVG.

use aoanet::data::synth::scene::{Region, Scene, Shape, Size};
use aoanet::data::synth::{self, SynthConfig, World};
use aoanet::data::{Dtype, Split};
use std::collections::HashMap;
use std::time::Instant;

fn config(train: usize, dim: usize) -> SynthConfig {
    SynthConfig {
        train,
        val: 200,
        test: 20,
        dim,
        ..SynthConfig::default()
    }
}

#[test]
fn the_default_world_is_fast_deterministic_and_as_specified() {
    let t = Instant::now();
    let a = World::generate(&SynthConfig::default()).unwrap();
    let secs = t.elapsed().as_secs_f64();
    eprintln!("default synthetic world generated in {secs:.2} s");
    let b = World::generate(&SynthConfig::default()).unwrap();
    let d = &a.dataset;
    assert_eq!(
        [Split::Train, Split::Val, Split::Test].map(|s| d.split_len(s)),
        [4000, 250, 250]
    );
    assert_eq!(d.features.dim(), 128);
    assert!(d.features.has_boxes());
    // Same seed, same bytes.
    assert_eq!(d.captions.to_bytes(), b.dataset.captions.to_bytes());
    for id in [1u64, 2000, 4500] {
        let (x, y) = (
            d.features.get(id).unwrap(),
            b.dataset.features.get(id).unwrap(),
        );
        assert_eq!(x.feats.to_f32_vec(), y.feats.to_f32_vec());
    }
    // Region counts span the range; 5 captions each; a few dozen words; labels fit 16.
    let counts: Vec<usize> = d
        .features
        .image_ids()
        .map(|id| d.features.get(id).unwrap().count)
        .collect();
    assert_eq!(*counts.iter().min().unwrap(), 10);
    assert_eq!(*counts.iter().max().unwrap(), 40);
    assert!(d.captions.iter().all(|i| i.len() == 5));
    assert!((30..=60).contains(&d.vocab.len()), "{}", d.vocab.len());
    let longest = (0..d.captions.num_captions())
        .map(|k| d.captions.image(k / 5).tokens(k % 5).len())
        .max()
        .unwrap();
    assert!(longest <= 16, "{longest}");
    // Another seed, another world.
    let c = World::generate(&SynthConfig {
        seed: 7,
        ..config(50, 16)
    })
    .unwrap();
    let e = World::generate(&config(50, 16)).unwrap();
    assert_ne!(c.dataset.captions.to_bytes(), e.dataset.captions.to_bytes());
}

fn shape_of(word: &str) -> Option<Shape> {
    Some(match word {
        "circle" | "circles" | "disk" | "disks" => Shape::Circle,
        "square" | "squares" | "box" | "boxes" => Shape::Square,
        "triangle" | "triangles" => Shape::Triangle,
        "star" | "stars" => Shape::Star,
        "cross" | "crosses" => Shape::Cross,
        _ => return None,
    })
}

#[test]
fn captions_name_exactly_what_the_scene_holds() {
    let w = World::generate(&config(300, 16)).unwrap();
    let d = &w.dataset;
    let mut relations = 0;
    let mut counted = 0;
    for (p, scene) in w.scenes.iter().enumerate() {
        let img = d.captions.image(p);
        for c in 0..img.len() {
            let words: Vec<&str> = img
                .tokens(c)
                .iter()
                .map(|&t| d.vocab.word(t).unwrap())
                .collect();
            assert_eq!(
                synth::grammar::raw_sentence(&words).to_lowercase(),
                img.raw(c).to_lowercase()
            );
            // Each noun phrase's colour + shape is an object of the scene, and a count word
            // matches how many objects share that colour and shape.
            for k in 0..words.len() {
                if let Some(shape) = shape_of(words[k]) {
                    let colour = words[k - 1];
                    let n = scene
                        .objects
                        .iter()
                        .filter(|o| o.shape == shape && o.colour.word() == colour)
                        .count();
                    assert!(n >= 1, "{words:?} vs {scene:?}");
                    let num = match words.get(k.wrapping_sub(2)).copied() {
                        Some("two") => 2,
                        Some("three") => 3,
                        Some("four") => 4,
                        _ => 1,
                    };
                    assert_eq!(num, n, "{words:?}");
                    counted += usize::from(num > 1);
                }
            }
            relations += usize::from(
                words
                    .iter()
                    .any(|w| ["left", "right", "above", "below", "over", "under"].contains(w)),
            );
        }
    }
    assert!(
        relations > 100 && counted > 100,
        "relations {relations}, counts {counted}"
    );
}

/// Solves the ridge regression `min |X W - Y|² + λ|W|²` by Cholesky (rows of `x` are
/// features with a trailing 1; `y` rows are targets).
// Index loops read like the matrix algebra they implement.
#[allow(clippy::needless_range_loop)]
fn ridge(x: &[Vec<f64>], y: &[Vec<f64>], lambda: f64) -> Vec<Vec<f64>> {
    let (d, k) = (x[0].len(), y[0].len());
    let mut a = vec![vec![0.0; d]; d];
    let mut b = vec![vec![0.0; k]; d];
    for (xr, yr) in x.iter().zip(y) {
        for i in 0..d {
            for j in 0..=i {
                a[i][j] += xr[i] * xr[j];
            }
            for t in 0..k {
                b[i][t] += xr[i] * yr[t];
            }
        }
    }
    for i in 0..d {
        a[i][i] += lambda;
        for j in 0..i {
            a[j][i] = a[i][j];
        }
    }
    // Cholesky A = L Lᵀ.
    let mut l = vec![vec![0.0; d]; d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = a[i][j] - (0..j).map(|m| l[i][m] * l[j][m]).sum::<f64>();
            l[i][j] = if i == j { s.sqrt() } else { s / l[j][j] };
        }
    }
    let mut w = vec![vec![0.0; k]; d];
    for t in 0..k {
        let mut z = vec![0.0; d];
        for i in 0..d {
            z[i] = (b[i][t] - (0..i).map(|m| l[i][m] * z[m]).sum::<f64>()) / l[i][i];
        }
        for i in (0..d).rev() {
            w[i][t] = (z[i] - (i + 1..d).map(|m| l[m][i] * w[m][t]).sum::<f64>()) / l[i][i];
        }
    }
    w
}

fn predict(w: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    (0..w[0].len())
        .map(|t| x.iter().zip(w).map(|(a, r)| a * r[t]).sum())
        .collect()
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

fn colour_index(s: &Scene, k: usize) -> usize {
    synth::scene::Colour::ALL
        .iter()
        .position(|c| *c == s.objects[k].colour)
        .unwrap()
}

/// The left object's colour in two-object images (two colours), read two ways: by linear
/// probes on each region (objectness, colour, horizontal centre: pick the two object regions,
/// read the left one's colour; what attention can do) and by a linear probe on the mean of all
/// regions (what a model without attention sees: both colours, but not which is where).
#[test]
fn binding_is_readable_per_region_but_not_from_the_mean() {
    let w = World::generate(&SynthConfig {
        val: 600,
        ..config(1500, 32)
    })
    .unwrap();
    let d = &w.dataset;
    let feats = |p: usize| -> Vec<Vec<f64>> {
        let r = d.features.get(d.captions.image(p).id).unwrap();
        r.feats
            .to_f32_vec()
            .chunks(r.dim)
            .map(|c| c.iter().map(|&v| f64::from(v)).chain([1.0]).collect())
            .collect()
    };
    let mean = |f: &[Vec<f64>]| -> Vec<f64> {
        let n = f.len() as f64;
        (0..f[0].len())
            .map(|j| f.iter().map(|v| v[j]).sum::<f64>() / n)
            .collect()
    };
    // Two objects of different colours; the left one is the target.
    let two = |s: &Scene| s.objects.len() == 2 && s.objects[0].colour != s.objects[1].colour;
    let left = |s: &Scene| usize::from(s.objects[1].centre().0 < s.objects[0].centre().0);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let (mut xm, mut ym) = (Vec::new(), Vec::new());
    for &p in &d.captions.split_positions(Split::Train) {
        let s = &w.scenes[p];
        let f = feats(p);
        for (r, reg) in s.regions.iter().enumerate() {
            let mut t = vec![0.0; 7];
            let bbox = match *reg {
                Region::Object(k) => {
                    t[0] = 1.0;
                    t[1 + colour_index(s, k)] = 1.0;
                    s.objects[k].bbox
                }
                Region::Distractor(k) => s.distractors[k].bbox,
            };
            t[6] = f64::from((bbox[0] + bbox[2]) / 2.0);
            x.push(f[r].clone());
            y.push(t);
        }
        if two(s) {
            xm.push(mean(&f));
            let mut t = vec![0.0; 5];
            t[colour_index(s, left(s))] = 1.0;
            ym.push(t);
        }
    }
    let wr = ridge(&x, &y, 1e-3);
    let wm = ridge(&xm, &ym, 1e-3);
    let (mut by_region, mut by_mean, mut total) = (0, 0, 0);
    let (mut flag_ok, mut regions) = (0, 0);
    for &p in &d.captions.split_positions(Split::Val) {
        let s = &w.scenes[p];
        let f = feats(p);
        let preds: Vec<Vec<f64>> = f.iter().map(|v| predict(&wr, v)).collect();
        for (r, reg) in s.regions.iter().enumerate() {
            regions += 1;
            flag_ok += usize::from((preds[r][0] > 0.5) == matches!(reg, Region::Object(_)));
        }
        if !two(s) {
            continue;
        }
        total += 1;
        let want = colour_index(s, left(s));
        let mut order: Vec<usize> = (0..f.len()).collect();
        order.sort_by(|&a, &b| preds[b][0].total_cmp(&preds[a][0]));
        let (a, b) = (order[0], order[1]);
        let l = if preds[a][6] < preds[b][6] { a } else { b };
        by_region += usize::from(argmax(&preds[l][1..6]) == want);
        by_mean += usize::from(argmax(&predict(&wm, &mean(&f))) == want);
    }
    let (acc_r, acc_m) = (
        by_region as f64 / total as f64,
        by_mean as f64 / total as f64,
    );
    let acc_flag = flag_ok as f64 / regions as f64;
    eprintln!(
        "objectness {acc_flag:.3} over {regions} regions; left object's colour in {total} \
         two-object images: per region {acc_r:.3}, from the mean {acc_m:.3}"
    );
    assert!(total > 40, "{total}");
    assert!(acc_flag > 0.99, "{acc_flag}");
    assert!(acc_r > 0.95, "{acc_r}");
    assert!(acc_m < acc_r - 0.25, "{acc_m} vs {acc_r}");
}

#[test]
fn the_control_moves_every_image_to_another_of_its_split() {
    let w = World::generate(&config(60, 8)).unwrap();
    let c = w.shuffled_control(5).unwrap();
    let d = &w.dataset;
    assert_eq!(c.captions, d.captions);
    let mut multiset: HashMap<Split, Vec<Vec<u32>>> = HashMap::new();
    for img in d.captions.iter() {
        let mine = d.features.get(img.id).unwrap().feats.to_f32_vec();
        let given = c.features.get(img.id).unwrap().feats.to_f32_vec();
        assert_ne!(mine, given, "image {} kept its own features", img.id);
        let e = multiset.entry(img.split).or_default();
        e.push(mine.iter().map(|v| v.to_bits()).collect());
        e.push(given.iter().map(|v| v.to_bits()).collect());
    }
    // Within each split the features are a permutation: every vector appears twice.
    for (_, mut v) in multiset {
        v.sort();
        assert!(v.chunks(2).all(|p| p[0] == p[1]));
    }
}

#[test]
fn svg_draws_every_object_and_region() {
    let w = World::generate(&SynthConfig {
        dtype: Dtype::F16,
        ..config(10, 8)
    })
    .unwrap();
    for id in 1..=10u64 {
        let s = w.svg(id).unwrap();
        let scene = w.scene(id).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        let shapes = s.matches("<circle").count() + s.matches("<polygon").count();
        let rects = s.matches("<rect").count();
        let squares = scene
            .objects
            .iter()
            .filter(|o| o.shape == Shape::Square)
            .count();
        assert_eq!(shapes + squares, scene.objects.len());
        assert_eq!(rects, 1 + squares + scene.distractors.len());
        // Large objects are drawn larger than small ones.
        for o in &scene.objects {
            let r = (o.bbox[2] - o.bbox[0]) / 2.0;
            assert!(if o.size == Size::Large {
                r > 50.0
            } else {
                r < 35.0
            });
        }
    }
    assert!(w.svg(10 + 200 + 20 + 1).is_none());
}
