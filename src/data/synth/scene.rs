//! Scenes of the synthetic world: salient objects and distractor regions on a canvas.

use crate::rng::Philox;
use rand::RngCore;

/// Canvas width in pixels (boxes are in pixels, like bottom-up features).
pub const WIDTH: f32 = 640.0;
/// Canvas height in pixels.
pub const HEIGHT: f32 = 480.0;

/// Object shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A circle ("circle" / "disk").
    Circle,
    /// A square ("square" / "box").
    Square,
    /// A triangle.
    Triangle,
    /// A five-pointed star.
    Star,
    /// A plus-shaped cross.
    Cross,
}

/// Object colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
}

/// Object sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// Small ("small" / "little").
    Small,
    /// Large ("large" / "big").
    Large,
}

impl Shape {
    /// All shapes, in feature-code order.
    pub const ALL: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
    ];
}

impl Colour {
    /// All colours, in feature-code order.
    pub const ALL: [Colour; 5] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
    ];

    /// The word for the colour.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
        }
    }

    /// An SVG fill colour.
    pub fn css(self) -> &'static str {
        match self {
            Colour::Red => "#d62728",
            Colour::Green => "#2ca02c",
            Colour::Blue => "#1f77b4",
            Colour::Yellow => "#e8c31a",
            Colour::Purple => "#9467bd",
        }
    }
}

/// A box `[x1, y1, x2, y2]` in pixels.
pub type BBox = [f32; 4];

/// A salient object: what the captions talk about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    /// Its shape.
    pub shape: Shape,
    /// Its colour.
    pub colour: Colour,
    /// Its size.
    pub size: Size,
    /// Its bounding box.
    pub bbox: BBox,
}

impl Object {
    /// Centre `(x, y)`.
    pub fn centre(&self) -> (f32, f32) {
        (
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        )
    }
}

/// Kinds of distractor region (never mentioned in captions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clutter {
    /// A large background area (sky, floor).
    Background,
    /// A small textured patch.
    Texture,
    /// A piece of an object's outline: overlaps a salient object, weakly shares its look.
    Fragment,
}

impl Clutter {
    /// All kinds, in feature-code order.
    pub const ALL: [Clutter; 3] = [Clutter::Background, Clutter::Texture, Clutter::Fragment];
}

/// A distractor region. It carries a weak, random colour and shape signal (fragments: their
/// object's), so a model that pools all regions equally confuses it with the objects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distractor {
    /// What it is.
    pub kind: Clutter,
    /// Its box.
    pub bbox: BBox,
    /// Colour signal it carries.
    pub colour: Colour,
    /// Shape signal it carries.
    pub shape: Shape,
}

/// One region of an image, in feature order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Region {
    /// Salient object `k` of the scene.
    Object(usize),
    /// Distractor `k` of the scene.
    Distractor(usize),
}

/// One synthetic image.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// 1 to 4 salient objects.
    pub objects: Vec<Object>,
    /// The distractor regions.
    pub distractors: Vec<Distractor>,
    /// The regions in feature order (objects and distractors interleaved at random).
    pub regions: Vec<Region>,
}

fn uniform(rng: &mut Philox, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * crate::rng::u32_to_unit_f32(rng.next_u32())
}

fn pick<T: Copy>(rng: &mut Philox, items: &[T]) -> T {
    items[rng.below(items.len() as u32) as usize]
}

/// Object radius in pixels for a size.
fn radius(size: Size) -> f32 {
    match size {
        Size::Small => 28.0,
        Size::Large => 62.0,
    }
}

/// Draws a scene with `regions` regions in total (at least the object count).
pub fn generate(rng: &mut Philox, regions: usize) -> Scene {
    // 1-4 objects, weighted towards 2.
    let n_obj = [1, 2, 2, 3, 3, 4][rng.below(6) as usize].min(regions);
    let mut objects: Vec<Object> = Vec::with_capacity(n_obj);
    while objects.len() < n_obj {
        let (shape, colour) = match objects.last() {
            // Repeats make counts ("two blue squares") common enough to learn.
            Some(prev) if rng.below(10) < 3 => (prev.shape, prev.colour),
            _ => (pick(rng, &Shape::ALL), pick(rng, &Colour::ALL)),
        };
        let size = if rng.below(2) == 0 {
            Size::Small
        } else {
            Size::Large
        };
        // Rejection-sample a centre clear of the other objects (bounded tries; a rare overlap
        // after that is harmless).
        let r = radius(size) * uniform(rng, 0.85, 1.15);
        let mut best = (0.0, 0.0);
        for _ in 0..32 {
            let c = (uniform(rng, r, WIDTH - r), uniform(rng, r, HEIGHT - r));
            best = c;
            let clear = objects.iter().all(|o| {
                let (x, y) = o.centre();
                let rr = (o.bbox[2] - o.bbox[0]) / 2.0 + r + 8.0;
                (x - c.0).powi(2) + (y - c.1).powi(2) > rr * rr
            });
            if clear {
                break;
            }
        }
        objects.push(Object {
            shape,
            colour,
            size,
            bbox: [best.0 - r, best.1 - r, best.0 + r, best.1 + r],
        });
    }
    let mut distractors = Vec::with_capacity(regions - n_obj);
    for _ in n_obj..regions {
        let kind = pick(rng, &Clutter::ALL);
        let (bbox, colour, shape) = match kind {
            Clutter::Background => {
                let w = uniform(rng, 0.5, 1.0) * WIDTH;
                let h = uniform(rng, 0.3, 0.7) * HEIGHT;
                let x = uniform(rng, 0.0, WIDTH - w);
                let y = uniform(rng, 0.0, HEIGHT - h);
                let b = [x, y, x + w, y + h];
                (b, pick(rng, &Colour::ALL), pick(rng, &Shape::ALL))
            }
            Clutter::Texture => {
                let s = uniform(rng, 12.0, 60.0);
                let x = uniform(rng, 0.0, WIDTH - s);
                let y = uniform(rng, 0.0, HEIGHT - s);
                let b = [x, y, x + s, y + s];
                (b, pick(rng, &Colour::ALL), pick(rng, &Shape::ALL))
            }
            Clutter::Fragment => {
                let o = objects[rng.below(n_obj as u32) as usize];
                let (w, h) = (o.bbox[2] - o.bbox[0], o.bbox[3] - o.bbox[1]);
                let x = o.bbox[0] + uniform(rng, 0.0, 0.5) * w;
                let y = o.bbox[1] + uniform(rng, 0.0, 0.5) * h;
                let b = [x, y, x + w * 0.5, y + h * 0.5];
                (b, o.colour, o.shape)
            }
        };
        distractors.push(Distractor {
            kind,
            bbox,
            colour,
            shape,
        });
    }
    let mut order: Vec<Region> = (0..n_obj)
        .map(Region::Object)
        .chain((0..regions - n_obj).map(Region::Distractor))
        .collect();
    rng.shuffle(&mut order);
    Scene {
        objects,
        distractors,
        regions: order,
    }
}
