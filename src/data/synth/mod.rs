//! The synthetic world: a deterministic captioning task that only a model attending to the
//! right regions can solve, generated in memory in about a second (`aoanet demo` trains on it;
//! `aoanet-data synth` writes it as a data folder).
//!
//! Each image holds 1–4 salient objects (shape × colour × size, with a position) among
//! distractor regions (backgrounds, textures, object fragments), `min_regions..=max_regions`
//! regions in all, in random order. A region's feature is a fixed random projection of its
//! attributes (one-hot shape, colour, size, an objectness flag, the distractor kind) and its box
//! geometry, plus uniform noise. Distractors carry a weaker colour and shape signal of their own
//! (fragments: their object's), so pooling every region equally blurs what the captions name;
//! attending to the object regions recovers it. Five captions per image come from a small
//! grammar with synonyms, counts and spatial relations ([`grammar`]).
//!
//! Everything is a function of [`SynthConfig`]: the projection comes from stream 0 of the seed,
//! image `i` (0-based over train, val, test) from streams `2i + 2` (scene and captions) and
//! `2i + 3` (feature noise), so images can be generated in parallel with identical results.

pub mod grammar;
pub mod scene;
pub mod svg;

use super::captions::{CaptionsBuilder, Split};
use super::dataset::Dataset;
use super::features::{Dtype, FeatureStoreWriter};
use super::vocab::{UNK, Vocab};
use crate::rng::Philox;
use crate::{Error, Result};
use scene::{Clutter, Colour, HEIGHT, Region, Scene, Shape, Size, WIDTH};

/// Parameters of a synthetic world.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// Everything derives from this seed.
    pub seed: u64,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// Fewest regions per image (at least 4, so every object fits).
    pub min_regions: usize,
    /// Most regions per image.
    pub max_regions: usize,
    /// Feature values per region.
    pub dim: usize,
    /// Captions per image.
    pub captions_per_image: usize,
    /// Half-width of the uniform noise added to every feature value.
    pub noise: f32,
    /// Storage dtype of the features.
    pub dtype: Dtype,
}

impl Default for SynthConfig {
    /// The demo's world: 4000/250/250 images, 10–40 regions of 128 values, 5 captions each.
    fn default() -> Self {
        SynthConfig {
            seed: 2019,
            train: 4000,
            val: 250,
            test: 250,
            min_regions: 10,
            max_regions: 40,
            dim: 128,
            captions_per_image: 5,
            noise: 0.5,
            dtype: Dtype::F32,
        }
    }
}

impl SynthConfig {
    fn check(&self) -> Result<()> {
        if self.min_regions < 4 || self.min_regions > self.max_regions {
            return Err(Error::invalid(format!(
                "synth: region range {}..={} (need 4 <= min <= max)",
                self.min_regions, self.max_regions
            )));
        }
        if self.dim == 0 || self.captions_per_image == 0 || self.train + self.val + self.test == 0 {
            return Err(Error::invalid(
                "synth: dim, captions per image and the image count must be positive",
            ));
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::invalid("synth: noise must be finite and >= 0"));
        }
        Ok(())
    }

    fn split_of(&self, i: usize) -> Split {
        if i < self.train {
            Split::Train
        } else if i < self.train + self.val {
            Split::Val
        } else {
            Split::Test
        }
    }
}

/// Columns of the attribute vector that the projection maps to features.
mod attr {
    pub const SHAPE: usize = 0; // 5
    pub const COLOUR: usize = 5; // 5
    pub const SIZE: usize = 10; // 2
    pub const OBJECT: usize = 12; // 1
    pub const KIND: usize = 13; // 3
    pub const GEOMETRY: usize = 16; // 4
    pub const BIAS: usize = 20; // 1
    pub const COUNT: usize = 21;
}

/// Gain of the box geometry in the attribute vector.
const GEOMETRY_GAIN: f32 = 2.0;

/// Strength of the colour/shape signal a distractor carries (objects: 1).
const CLUTTER_SIGNAL: f32 = 0.45;

fn index_of<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|y| y == x).expect("listed")
}

/// The attribute vector of one region (see [`attr`]).
fn attributes(scene: &Scene, region: Region) -> [f32; attr::COUNT] {
    let mut a = [0.0; attr::COUNT];
    let bbox = match region {
        Region::Object(k) => {
            let o = &scene.objects[k];
            a[attr::SHAPE + index_of(&Shape::ALL, &o.shape)] = 1.0;
            a[attr::COLOUR + index_of(&Colour::ALL, &o.colour)] = 1.0;
            a[attr::SIZE + usize::from(o.size == Size::Large)] = 1.0;
            a[attr::OBJECT] = 1.0;
            o.bbox
        }
        Region::Distractor(k) => {
            let d = &scene.distractors[k];
            a[attr::SHAPE + index_of(&Shape::ALL, &d.shape)] = CLUTTER_SIGNAL;
            a[attr::COLOUR + index_of(&Colour::ALL, &d.colour)] = CLUTTER_SIGNAL;
            a[attr::KIND + index_of(&Clutter::ALL, &d.kind)] = 1.0;
            d.bbox
        }
    };
    let [x1, y1, x2, y2] = bbox;
    // Centre in [-1, 1] and extent, amplified: relations ("left of") must be readable
    // through the noise.
    let g = [
        (x1 + x2) / WIDTH - 1.0,
        (y1 + y2) / HEIGHT - 1.0,
        (x2 - x1) / WIDTH,
        (y2 - y1) / HEIGHT,
    ];
    for (k, v) in g.iter().enumerate() {
        a[attr::GEOMETRY + k] = GEOMETRY_GAIN * v;
    }
    a[attr::BIAS] = 1.0;
    a
}

/// The fixed projection: `cols[k]` is the feature direction of attribute `k`.
fn projection(cfg: &SynthConfig) -> Vec<Vec<f32>> {
    let mut rng = Philox::with_stream(cfg.seed, 0);
    // Scaled so a region's values have roughly unit variance (about 5 active attributes
    // of weight 1 plus the geometry).
    let scale = 1.0 / 6.0f64.sqrt();
    (0..attr::COUNT)
        .map(|_| {
            (0..cfg.dim)
                .map(|_| (rng.next_normal() * scale) as f32)
                .collect()
        })
        .collect()
}

/// One generated image before it goes into the stores.
struct Generated {
    scene: Scene,
    captions: Vec<Vec<&'static str>>,
    feats: Vec<f32>,
    boxes: Vec<f32>,
}

fn generate_image(cfg: &SynthConfig, proj: &[Vec<f32>], i: usize) -> Generated {
    let mut rng = Philox::with_stream(cfg.seed, 2 * i as u64 + 2);
    let span = (cfg.max_regions - cfg.min_regions + 1) as u32;
    let regions = cfg.min_regions + rng.below(span) as usize;
    let scene = scene::generate(&mut rng, regions);
    let captions = grammar::captions(&scene, cfg.captions_per_image, &mut rng);

    let dim = cfg.dim;
    let mut feats = vec![0.0f32; regions * dim];
    let mut noise = Philox::with_stream(cfg.seed, 2 * i as u64 + 3);
    noise.fill_uniform_f32(&mut feats);
    let mut boxes = Vec::with_capacity(regions * 4);
    for (r, &region) in scene.regions.iter().enumerate() {
        let f = &mut feats[r * dim..(r + 1) * dim];
        for v in f.iter_mut() {
            *v = (2.0 * *v - 1.0) * cfg.noise;
        }
        for (k, &w) in attributes(&scene, region).iter().enumerate() {
            if w != 0.0 {
                for (v, p) in f.iter_mut().zip(&proj[k]) {
                    *v += w * p;
                }
            }
        }
        boxes.extend_from_slice(&match region {
            Region::Object(k) => scene.objects[k].bbox,
            Region::Distractor(k) => scene.distractors[k].bbox,
        });
    }
    Generated {
        scene,
        captions,
        feats,
        boxes,
    }
}

/// A generated world: its scenes (for drawing and analysis) and its dataset.
#[derive(Debug)]
pub struct World {
    /// What it was generated from.
    pub config: SynthConfig,
    /// Scene of the image at each caption position (image id = position + 1).
    pub scenes: Vec<Scene>,
    /// Features, captions and vocabulary, in memory.
    pub dataset: Dataset,
}

/// The grammar's vocabulary: its words in a fixed order, then UNK.
pub fn vocabulary() -> Vocab {
    let mut words: Vec<String> = grammar::WORDS.iter().map(|w| w.to_string()).collect();
    words.push(UNK.to_string());
    Vocab::new(words).expect("the grammar's words are distinct")
}

impl World {
    /// Generates the world of `cfg` (in parallel; the result does not depend on the threads).
    pub fn generate(cfg: &SynthConfig) -> Result<World> {
        cfg.check()?;
        let total = cfg.train + cfg.val + cfg.test;
        let proj = projection(cfg);
        let vocab = vocabulary();
        let mut caps = CaptionsBuilder::new(vocab.len(), 16);
        let mut store = FeatureStoreWriter::in_memory("synthetic world", cfg.dtype, cfg.dim, true)?;
        let mut scenes = Vec::with_capacity(total);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        // Chunks bound the memory held at once when features are large.
        const CHUNK: usize = 256;
        for start in (0..total).step_by(CHUNK) {
            let end = (start + CHUNK).min(total);
            let per = (end - start).div_ceil(threads);
            let parts: Vec<Vec<Generated>> = std::thread::scope(|s| {
                let handles: Vec<_> = (start..end)
                    .step_by(per)
                    .map(|a| {
                        let b = (a + per).min(end);
                        let proj = &proj;
                        s.spawn(move || (a..b).map(|i| generate_image(cfg, proj, i)).collect())
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("synth worker panicked"))
                    .collect()
            });
            for (k, g) in parts.into_iter().flatten().enumerate() {
                let i = start + k;
                let id = i as u64 + 1;
                store.push(id, &g.feats, Some(&g.boxes))?;
                caps.add_image(id, cfg.split_of(i))?;
                for words in &g.captions {
                    let ids = vocab.encode(words)?;
                    caps.add_caption(&ids, &grammar::raw_sentence(words))?;
                }
                scenes.push(g.scene);
            }
        }
        let dataset = Dataset::new(store.finish()?, caps.finish()?, vocab)?;
        Ok(World {
            config: cfg.clone(),
            scenes,
            dataset,
        })
    }

    /// The scene of image `image_id`.
    pub fn scene(&self, image_id: u64) -> Option<&Scene> {
        let p = self.dataset.captions.position(image_id)?;
        self.scenes.get(p)
    }

    /// The image `image_id` drawn as SVG, its id as title.
    pub fn svg(&self, image_id: u64) -> Option<String> {
        self.scene(image_id)
            .map(|s| svg::scene_svg(s, &format!("synthetic image {image_id}")))
    }

    /// The control: the same captions, but each image gets the features of another image of
    /// its split (a random cyclic derangement, from `seed`). A model that truly reads the
    /// regions scores far lower on it.
    pub fn shuffled_control(&self, seed: u64) -> Result<Dataset> {
        let d = &self.dataset;
        let mut source = vec![0u64; d.captions.len()];
        for (s, split) in Split::ALL.iter().enumerate() {
            let mut pos = d.captions.split_positions(*split);
            Philox::with_stream(seed, s as u64).shuffle(&mut pos);
            for k in 0..pos.len() {
                source[pos[k]] = d.captions.image(pos[(k + 1) % pos.len()]).id;
            }
        }
        let f = &d.features;
        let mut w =
            FeatureStoreWriter::in_memory("synthetic world (shuffled)", f.dtype(), f.dim(), true)?;
        for (p, &src) in source.iter().enumerate() {
            let r = f.get(src).expect("every synthetic image has features");
            w.push(d.captions.image(p).id, &r.feats.to_f32_vec(), r.boxes)?;
        }
        Dataset::new(w.finish()?, d.captions.clone(), d.vocab.clone())
    }
}
