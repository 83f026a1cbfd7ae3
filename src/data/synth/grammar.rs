//! Captions of the synthetic world: a small grammar with synonyms, counts ("two blue squares")
//! and spatial relations ("a red circle to the left of a big green star").

use super::scene::{Object, Scene, Shape, Size};
use crate::rng::Philox;

/// Every word the grammar can produce, in vocabulary order (UNK is appended after them).
pub const WORDS: [&str; 45] = [
    "a",
    "two",
    "three",
    "four",
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "small",
    "little",
    "large",
    "big",
    "circle",
    "circles",
    "disk",
    "disks",
    "square",
    "squares",
    "box",
    "boxes",
    "triangle",
    "triangles",
    "star",
    "stars",
    "cross",
    "crosses",
    "and",
    "there",
    "is",
    "are",
    "to",
    "the",
    "left",
    "right",
    "of",
    "above",
    "over",
    "below",
    "under",
    "next",
    "picture",
    "image",
    "an",
    "with",
];

fn shape_word(shape: Shape, plural: bool, rng: &mut Philox) -> &'static str {
    let alt = rng.below(2) == 0;
    match (shape, plural, alt) {
        (Shape::Circle, false, false) => "circle",
        (Shape::Circle, false, true) => "disk",
        (Shape::Circle, true, false) => "circles",
        (Shape::Circle, true, true) => "disks",
        (Shape::Square, false, false) => "square",
        (Shape::Square, false, true) => "box",
        (Shape::Square, true, false) => "squares",
        (Shape::Square, true, true) => "boxes",
        (Shape::Triangle, false, _) => "triangle",
        (Shape::Triangle, true, _) => "triangles",
        (Shape::Star, false, _) => "star",
        (Shape::Star, true, _) => "stars",
        (Shape::Cross, false, _) => "cross",
        (Shape::Cross, true, _) => "crosses",
    }
}

fn size_word(size: Size, rng: &mut Philox) -> &'static str {
    match (size, rng.below(2) == 0) {
        (Size::Small, false) => "small",
        (Size::Small, true) => "little",
        (Size::Large, false) => "large",
        (Size::Large, true) => "big",
    }
}

/// Objects of one colour and shape.
struct Group<'a> {
    members: Vec<&'a Object>,
}

/// Groups by (colour, shape), ordered left to right by each group's leftmost member, so the
/// listing order is a function of the picture.
fn groups(scene: &Scene) -> Vec<Group<'_>> {
    let mut gs: Vec<Group> = Vec::new();
    for o in &scene.objects {
        match gs
            .iter_mut()
            .find(|g| g.members[0].colour == o.colour && g.members[0].shape == o.shape)
        {
            Some(g) => g.members.push(o),
            None => gs.push(Group { members: vec![o] }),
        }
    }
    let left = |g: &Group| {
        g.members
            .iter()
            .map(|o| o.centre().0)
            .fold(f32::INFINITY, f32::min)
    };
    gs.sort_by(|a, b| left(a).total_cmp(&left(b)));
    gs
}

/// A noun phrase: "a [size] colour shape" or "two colour shapes".
fn noun_phrase(g: &Group, with_size: bool, rng: &mut Philox, out: &mut Vec<&'static str>) {
    let o = g.members[0];
    match g.members.len() {
        1 => {
            out.push("a");
            if with_size {
                out.push(size_word(o.size, rng));
            }
            out.push(o.colour.word());
            out.push(shape_word(o.shape, false, rng));
        }
        n => {
            out.push(["two", "three", "four"][(n - 2).min(2)]);
            out.push(o.colour.word());
            out.push(shape_word(o.shape, true, rng));
        }
    }
}

/// "there is/are", "a picture of", "an image of", "an image with", or nothing.
fn prefix(plural: bool, rng: &mut Philox, out: &mut Vec<&'static str>) {
    match rng.below(5) {
        0 => out.extend(["there", if plural { "are" } else { "is" }]),
        1 => out.extend(["a", "picture", "of"]),
        2 => out.extend(["an", "image", "of"]),
        3 => out.extend(["an", "image", "with"]),
        _ => {}
    }
}

/// Every group, left to right, joined by "and".
fn listing(gs: &[Group], rng: &mut Philox) -> Vec<&'static str> {
    let mut out = Vec::new();
    // No prefix for four groups, which already take 15 words (labels keep 16).
    if gs.len() < 4 {
        prefix(gs[0].members.len() > 1, rng, &mut out);
    }
    // Sizes only while the caption stays short.
    let with_size = gs.len() <= 2 && rng.below(2) == 0;
    for (k, g) in gs.iter().enumerate() {
        if k > 0 {
            out.push("and");
        }
        noun_phrase(g, with_size, rng, &mut out);
    }
    out
}

/// "A rel B" for two single objects, the relation read off their centres.
fn relation(a: &Object, b: &Object, rng: &mut Philox) -> Vec<&'static str> {
    let (ax, ay) = a.centre();
    let (bx, by) = b.centre();
    let (dx, dy) = (bx - ax, by - ay);
    let rel: &[&'static str] = if dx.abs().max(dy.abs()) < 40.0 {
        &["next", "to"]
    } else if dx.abs() >= dy.abs() {
        match (dx > 0.0, rng.below(2) == 0) {
            (true, true) => &["to", "the", "left", "of"],
            (true, false) => &["left", "of"],
            (false, true) => &["to", "the", "right", "of"],
            (false, false) => &["right", "of"],
        }
    } else {
        // Image y grows downwards: b lower on the canvas means a is above it.
        match (dy > 0.0, rng.below(2) == 0) {
            (true, true) => &["above"],
            (true, false) => &["over"],
            (false, true) => &["below"],
            (false, false) => &["under"],
        }
    };
    let mut out = Vec::new();
    if rng.below(4) == 0 {
        out.extend(["there", "is"]);
    }
    let with_size = rng.below(2) == 0;
    noun_phrase(&Group { members: vec![a] }, with_size, rng, &mut out);
    out.extend_from_slice(rel);
    noun_phrase(&Group { members: vec![b] }, with_size, rng, &mut out);
    out
}

/// `n` captions of `scene` (as word lists): the first lists every object; the others are
/// listings or, when the scene has two objects of different kinds, relations between them.
pub fn captions(scene: &Scene, n: usize, rng: &mut Philox) -> Vec<Vec<&'static str>> {
    let gs = groups(scene);
    let singles: Vec<&Object> = gs
        .iter()
        .filter(|g| g.members.len() == 1)
        .map(|g| g.members[0])
        .collect();
    (0..n)
        .map(|k| {
            if k > 0 && singles.len() >= 2 && rng.below(2) == 0 {
                let i = rng.below(singles.len() as u32) as usize;
                let mut j = rng.below(singles.len() as u32 - 1) as usize;
                if j >= i {
                    j += 1;
                }
                relation(singles[i], singles[j], rng)
            } else {
                listing(&gs, rng)
            }
        })
        .collect()
}

/// A raw reference sentence from words: capitalised, with a full stop, as COCO's are.
pub fn raw_sentence(words: &[&str]) -> String {
    let mut s = words.join(" ");
    if let Some(first) = s.get(..1) {
        let up = first.to_ascii_uppercase();
        s.replace_range(..1, &up);
    }
    s.push('.');
    s
}
