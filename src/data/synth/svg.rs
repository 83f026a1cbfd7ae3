//! Draws a synthetic scene as SVG (for reports): objects filled in their colours, distractor
//! regions as faint dashed boxes.

use super::scene::{BBox, Clutter, HEIGHT, Scene, Shape, WIDTH};
use std::fmt::Write as _;

fn polygon(points: &[(f32, f32)]) -> String {
    let mut s = String::new();
    for (k, (x, y)) in points.iter().enumerate() {
        let _ = write!(s, "{}{x:.1},{y:.1}", if k == 0 { "" } else { " " });
    }
    s
}

fn shape_element(shape: Shape, b: BBox, fill: &str) -> String {
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let r = (b[2] - b[0]) / 2.0;
    match shape {
        Shape::Circle => format!(r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r:.1}" fill="{fill}"/>"#),
        Shape::Square => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
            b[0],
            b[1],
            2.0 * r,
            2.0 * r
        ),
        Shape::Triangle => format!(
            r#"<polygon points="{}" fill="{fill}"/>"#,
            polygon(&[(cx, b[1]), (b[2], b[3]), (b[0], b[3])])
        ),
        Shape::Star => {
            let pts: Vec<(f32, f32)> = (0..10)
                .map(|k| {
                    let a = std::f32::consts::PI * (k as f32 / 5.0 - 0.5);
                    let rr = if k % 2 == 0 { r } else { r * 0.45 };
                    (cx + rr * a.cos(), cy + rr * a.sin())
                })
                .collect();
            format!(r#"<polygon points="{}" fill="{fill}"/>"#, polygon(&pts))
        }
        Shape::Cross => {
            let t = r / 3.0;
            let pts = [
                (cx - t, b[1]),
                (cx + t, b[1]),
                (cx + t, cy - t),
                (b[2], cy - t),
                (b[2], cy + t),
                (cx + t, cy + t),
                (cx + t, b[3]),
                (cx - t, b[3]),
                (cx - t, cy + t),
                (b[0], cy + t),
                (b[0], cy - t),
                (cx - t, cy - t),
            ];
            format!(r#"<polygon points="{}" fill="{fill}"/>"#, polygon(&pts))
        }
    }
}

/// The scene as a standalone SVG document, `WIDTH × HEIGHT` pixels; `title` becomes its
/// `<title>` (escaped).
pub fn scene_svg(scene: &Scene, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">"#
    );
    let esc = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let _ = write!(s, "<title>{esc}</title>");
    let _ = write!(
        s,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#fafafa" stroke="#999"/>"##
    );
    for d in &scene.distractors {
        let (stroke, dash) = match d.kind {
            Clutter::Background => ("#ccc", "8 6"),
            Clutter::Texture => ("#bbb", "3 3"),
            Clutter::Fragment => ("#888", "2 4"),
        };
        let b = d.bbox;
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{stroke}" stroke-dasharray="{dash}"/>"#,
            b[0],
            b[1],
            b[2] - b[0],
            b[3] - b[1]
        );
    }
    for o in &scene.objects {
        s.push_str(&shape_element(o.shape, o.bbox, o.colour.css()));
    }
    s.push_str("</svg>\n");
    s
}
