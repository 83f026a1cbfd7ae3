//! The few `java.lang` string behaviours METEOR's results depend on, reproduced exactly.
//!
//! METEOR compares words by `String.hashCode()`, splits words with `StringTokenizer`, trims with
//! `String.trim()` and splits its input protocol with `String.split`. Each differs from the
//! obvious Rust call in an edge case (UTF-16 code units, which characters count as white space,
//! dropped trailing empty parts), so they live here, named after what they copy.

/// `String.hashCode()`: `h = 31·h + c` over the UTF-16 code units, wrapping in `i32`.
///
/// METEOR's exact and stem stages compare these hashes, not the strings, so two different
/// words with the same hash count as equal there; we copy that.
pub(crate) fn hash_code(s: &str) -> i32 {
    let mut h: i32 = 0;
    let mut buf = [0u16; 2];
    for c in s.chars() {
        for &unit in c.encode_utf16(&mut buf).iter() {
            h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
        }
    }
    h
}

/// The length of `s` in UTF-16 code units (`String.length()`).
pub(crate) fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The delimiters of a default `java.util.StringTokenizer`: `" \t\n\r\f"`.
pub(crate) fn is_tokenizer_delim(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}')
}

/// The tokens a default `StringTokenizer` yields for `s`.
pub(crate) fn tokenize(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_tokenizer_delim).filter(|t| !t.is_empty())
}

/// `String.trim()`: strips every character `<= U+0020` from both ends.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// `String.split(regex)` for a literal separator: non-overlapping left-to-right pieces, with
/// trailing empty pieces removed (and a single `[""]` for an empty input, as Java returns).
pub(crate) fn split_literal<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts: Vec<&str> = s.split(sep).collect();
    if s.is_empty() {
        return parts;
    }
    while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    if parts.len() == 1 && parts[0].is_empty() {
        // Java returns an empty array when every piece is empty (e.g. "|||").
        parts.clear();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_code_matches_java() {
        // Values printed by `"...".hashCode()` on OpenJDK 17.
        assert_eq!(hash_code(""), 0);
        assert_eq!(hash_code("a"), 97);
        assert_eq!(hash_code("hello"), 99_162_322);
        // The classic collision: "Aa" and "BB" share a hash.
        assert_eq!(hash_code("Aa"), hash_code("BB"));
        // A character outside the BMP hashes as its two surrogates.
        assert_eq!(hash_code("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn split_drops_trailing_empties_like_java() {
        assert_eq!(split_literal("a|||b|||", "|||"), vec!["a", "b"]);
        assert_eq!(split_literal("a||||||b", "|||"), vec!["a", "", "b"]);
        assert_eq!(split_literal("", "|||"), vec![""]);
        assert!(split_literal("||||||", "|||").is_empty());
        assert_eq!(split_literal("x ||| ", "|||"), vec!["x ", " "]);
    }

    #[test]
    fn trim_and_tokenize_use_java_whitespace() {
        assert_eq!(trim("\u{1} a b\t"), "a b");
        assert_eq!(trim("\u{a0}a"), "\u{a0}a");
        let toks: Vec<&str> = tokenize(" a\tb\u{b}c \u{c}d ").collect();
        assert_eq!(toks, vec!["a", "b\u{b}c", "d"]);
    }
}
