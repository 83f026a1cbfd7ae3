//! Escaping and a tiny element writer shared by the SVG and HTML output.
//!
//! Everything a user can influence (captions, references, stage labels, metric names, titles)
//! reaches the output only through [`escape`], which replaces the five XML-special characters,
//! so the files are well-formed XML as well as HTML and no caption can open a tag. The writer
//! keeps a stack of open elements and closes them itself, so tags are balanced by construction.

use std::fmt::Write as _;

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by character references, safe both as element
/// text and inside a double- or single-quoted attribute value. Control characters other than
/// tab, newline and carriage return (not allowed in XML 1.0) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// A number for an attribute or label: at most `decimals` decimals, trailing zeros dropped,
/// never `-0`, and `0` for a non-finite value (callers filter those first; this only keeps the
/// output valid if one slips through).
pub fn num(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return "0".into();
    }
    let mut s = format!("{x:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// Coordinates: two decimals are far below a pixel.
pub fn px(x: f64) -> String {
    num(x, 2)
}

/// Writes elements into a string; see the module docs.
#[derive(Debug, Default)]
pub struct Markup {
    out: String,
    open: Vec<&'static str>,
}

impl Markup {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(tag);
        for (k, v) in attrs {
            let _ = write!(self.out, " {k}=\"{}\"", escape(v));
        }
    }

    /// Opens `<tag attrs…>`; [`Markup::close`] closes it.
    pub fn open(&mut self, tag: &'static str, attrs: &[(&str, &str)]) {
        self.start(tag, attrs);
        self.out.push('>');
        self.open.push(tag);
    }

    /// Writes `<tag attrs…/>`: for SVG elements and HTML void elements only (HTML reads
    /// `<div/>` as an open tag).
    pub fn leaf(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.start(tag, attrs);
        self.out.push_str("/>");
    }

    /// Writes `<tag attrs…>text</tag>`, the text escaped.
    pub fn text(&mut self, tag: &'static str, attrs: &[(&str, &str)], text: &str) {
        self.open(tag, attrs);
        self.out.push_str(&escape(text));
        self.close();
    }

    /// Writes escaped text into the open element.
    pub fn chars(&mut self, text: &str) {
        self.out.push_str(&escape(text));
    }

    /// Writes markup as is: only for markup this crate generated (nested documents, CSS).
    pub fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) {
        let tag = self
            .open
            .pop()
            .expect("Markup::close without an open element");
        let _ = write!(self.out, "</{tag}>");
    }

    /// Closes whatever is still open and returns the text.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_markup_characters_and_controls() {
        assert_eq!(
            escape(r#"<script>alert("x & 'y'")</script>"#),
            "&lt;script&gt;alert(&quot;x &amp; &#39;y&#39;&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\td"), "a\u{fffd}b\u{fffd}c\td");
        assert_eq!(escape("déjà vu 猫"), "déjà vu 猫");
    }

    #[test]
    fn numbers_are_short_and_never_negative_zero() {
        assert_eq!(num(1.5, 2), "1.5");
        assert_eq!(num(2.0, 2), "2");
        assert_eq!(num(-0.001, 2), "0");
        assert_eq!(num(f64::NAN, 2), "0");
        assert_eq!(num(1234.5678, 1), "1234.6");
        assert_eq!(num(10.0, 0), "10");
    }

    #[test]
    fn markup_balances_and_escapes_attributes() {
        let mut m = Markup::new();
        m.open("g", &[("class", "a\"b")]);
        m.text("text", &[], "x<y");
        m.leaf("rect", &[("width", "3")]);
        assert_eq!(
            m.finish(),
            r#"<g class="a&quot;b"><text>x&lt;y</text><rect width="3"/></g>"#
        );
    }
}
