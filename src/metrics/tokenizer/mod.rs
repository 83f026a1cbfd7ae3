//! The coco-caption tokenizer: Stanford CoreNLP 3.4.1's `PTBTokenizer -preserveLines
//! -lowerCase`, then the toolkit's punctuation filter (`ptbtokenizer.py`, METRICS.md §1),
//! reimplemented so no JVM is needed and the output is the same.
//!
//! The Java lexer scans all captions as one text, one caption a line, and some of its rules look
//! ahead past a line end (an abbreviation's period is kept or split depending on whether the next
//! line starts with a capital). [`PtbTokenizer::tokenize_all`] therefore scans its captions as one
//! stream in the given order, as the toolkit does, so the result equals the toolkit's for the
//! same caption order. Unlike the toolkit it never moves a caption to another image: a `\r`,
//! form feed, U+2028 or other line break inside a caption, which make the Java tool emit an extra
//! output line (shifting every later caption onto the wrong image), only separates words here.
//! Likewise, in the one case where a Java token can run across captions (an SGML tag whose
//! quoted attribute spans lines), the captions involved are tokenized one by one instead.
//!
//! Files: `rules.rs` holds the lexer's rules, `regex.rs` compiles them, `lexer.rs` scans,
//! `unicode_tables` holds Java's letter/digit/upper-case classes.

mod lexer;
mod regex;
mod rules;
mod unicode_tables;

use super::numeric::py_rstrip;
use lexer::{Lexeme, Lexer};

/// Tokens the toolkit drops after tokenizing (`ptbtokenizer.py`'s `PUNCTUATIONS`). The bracket
/// entries are upper case while the tokens are already lower-cased, so brackets stay
/// (`-lrb-` and friends), as in the toolkit.
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// The PTB tokenizer with the toolkit's punctuation filter. Building it compiles the lexer
/// (milliseconds); it then caches scanner states, so reuse one value for many captions.
pub struct PtbTokenizer {
    lexer: Lexer,
}

impl Default for PtbTokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl PtbTokenizer {
    /// Compiles the lexer.
    pub fn new() -> Self {
        PtbTokenizer {
            lexer: Lexer::new(),
        }
    }

    /// Tokenizes `captions` as the toolkit tokenizes one dict of captions: one stream, one
    /// caption a line, in this order; each result is the caption's lower-cased tokens without
    /// punctuation, joined by single spaces (`""` if nothing is left). Always one result per
    /// caption.
    pub fn tokenize_all<S: AsRef<str>>(&mut self, captions: &[S]) -> Vec<String> {
        self.tokenize_prefix(captions, captions.len()).0
    }

    /// Tokenizes one caption on its own (as the first and only line of a stream).
    pub fn tokenize(&mut self, caption: &str) -> String {
        self.tokenize_all(&[caption]).pop().unwrap_or_default()
    }

    /// Scans `captions` as one stream and returns the results of the first `own` of them, and
    /// whether those are final: false if a token of theirs was decided by running into the end
    /// of the text given (more captions after it could change it).
    fn tokenize_prefix<S: AsRef<str>>(
        &mut self,
        captions: &[S],
        own: usize,
    ) -> (Vec<String>, bool) {
        // The toolkit replaces '\n' inside a caption by a space and joins captions with '\n'.
        let mut input: Vec<u16> = Vec::new();
        let mut separators: Vec<usize> = Vec::with_capacity(captions.len());
        for (i, c) in captions.iter().enumerate() {
            if i > 0 {
                separators.push(input.len());
                input.push(u16::from(b'\n'));
            }
            input.extend(c.as_ref().encode_utf16().map(|u| {
                if u == u16::from(b'\n') {
                    u16::from(b' ')
                } else {
                    u
                }
            }));
        }
        // Tokens of the own captions start before this position (the separator after them).
        let own_end = separators
            .get(own.saturating_sub(1))
            .copied()
            .unwrap_or(input.len());
        let mut out = Vec::with_capacity(captions.len());
        // The current caption's lower-cased tokens joined by spaces, as Java prints the line.
        let mut line = String::new();
        let mut next_sep = 0;
        // Captions a token ran across (only SGML attribute quotes can): redone alone below.
        let mut broken: Vec<usize> = Vec::new();
        let eof_dependent = self.lexer.scan(&input, |lexeme, start, end| {
            // Separators inside [start, end) end captions here.
            let mut crossed = 0;
            while next_sep < separators.len() && separators[next_sep] < end {
                if separators[next_sep] >= start {
                    crossed += 1;
                }
                next_sep += 1;
                out.push(filter_line(&line));
                line.clear();
            }
            match lexeme {
                Lexeme::Word(w) => {
                    if crossed > 0 {
                        // A word spanning captions: the Java tool would merge lines here.
                        broken.extend(out.len() - crossed..=out.len());
                    } else {
                        if !line.is_empty() {
                            line.push(' ');
                        }
                        if w.is_ascii() {
                            line.extend(w.bytes().map(|b| char::from(b.to_ascii_lowercase())));
                        } else {
                            line.push_str(&java_lowercase(w));
                        }
                    }
                }
                // Other line breaks inside a caption only separate words.
                Lexeme::Newline => {}
            }
        });
        out.push(filter_line(&line));
        out.truncate(captions.len());
        for i in broken {
            if i < captions.len() {
                out[i] = self.tokenize(captions[i].as_ref());
            }
        }
        let exact = own == captions.len() || eof_dependent.is_none_or(|p| p > own_end);
        out.truncate(own);
        (out, exact)
    }
}

/// Tokenizes `captions` as [`PtbTokenizer::tokenize_all`] does, on several threads: each takes
/// a contiguous run of captions plus a few following ones as look-ahead, and a run whose result
/// depended on where its text ended is redone with more look-ahead, so the result is exactly
/// that of one stream.
pub fn tokenize_all_parallel<S: AsRef<str> + Sync>(captions: &[S]) -> Vec<String> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(captions.len() / 2048)
        .max(1);
    if threads == 1 {
        return PtbTokenizer::new().tokenize_all(captions);
    }
    let chunk = captions.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..captions.len())
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || {
                    let mut t = PtbTokenizer::new();
                    let end = (start + chunk).min(captions.len());
                    let mut lookahead = 4;
                    loop {
                        let stop = (end + lookahead).min(captions.len());
                        let (out, exact) = t.tokenize_prefix(&captions[start..stop], end - start);
                        if exact || stop == captions.len() {
                            return out;
                        }
                        lookahead *= 4;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("tokenizer thread panicked"))
            .collect()
    })
}

/// Java's `String.toLowerCase(Locale.ENGLISH)` of one token. It equals Rust's `to_lowercase`
/// except for capital sigma, whose final form `ς` Java chooses with its own word segmentation:
/// final when a cased letter precedes it and none follows it within the same word, where a
/// word runs over letters, digits and `_` (not CJK ideographs), and over one mid-word character (a dash, `.`, `'`,
/// `"`, soft hyphen, U+2027) between two letters. So `ΑΒΣ-ΑΒ` gives `αβσ-αβ` but `ΑΒΣ-4` gives
/// `αβς-4`, where Rust's Unicode rule would give `ς` in both.
fn java_lowercase(token: &str) -> String {
    if !token.contains('\u{3a3}') {
        return token.to_lowercase();
    }
    let chars: Vec<char> = token.chars().collect();
    let mut out = String::with_capacity(token.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '\u{3a3}' {
            let before = cased_in_word(chars[..i].iter().rev().copied(), c);
            let after = cased_in_word(chars[i + 1..].iter().copied(), c);
            out.push(if before && !after {
                '\u{3c2}'
            } else {
                '\u{3c3}'
            });
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Walking away from a sigma (`from`) through `chars`: whether a cased character comes before
/// Java's word boundary.
fn cased_in_word(chars: impl Iterator<Item = char>, from: char) -> bool {
    let mut prev = from;
    let mut chars = chars.peekable();
    while let Some(c) = chars.next() {
        // Java segments CJK ideographs and kana as words of their own.
        let ideographic = matches!(c, '\u{2e80}'..='\u{9fff}' | '\u{f900}'..='\u{faff}');
        if (c.is_alphanumeric() || c == '_') && !ideographic {
            if c.is_lowercase() || c.is_uppercase() {
                return true;
            }
        } else if is_mid_word(c)
            && prev.is_alphabetic()
            && chars.peek().is_some_and(|n| n.is_alphabetic())
        {
            // One mid-word character between two letters stays inside the word.
        } else {
            return false;
        }
        prev = c;
    }
    false
}

fn is_mid_word(c: char) -> bool {
    matches!(
        c,
        '-' | '.'
            | '\''
            | '"'
            | '\u{ad}'
            | '\u{2027}'
            | '\u{58a}'
            | '\u{5be}'
            | '\u{1400}'
            | '\u{1806}'
            | '\u{2010}'
            ..='\u{2015}'
                | '\u{2e17}'
                | '\u{2e1a}'
                | '\u{2e3a}'
                | '\u{2e3b}'
                | '\u{2e40}'
                | '\u{301c}'
                | '\u{3030}'
                | '\u{30a0}'
                | '\u{fe31}'
                | '\u{fe32}'
                | '\u{fe58}'
                | '\u{fe63}'
                | '\u{ff0d}'
    )
}

/// What `ptbtokenizer.py` does with one output line: `' '.join(w for w in
/// line.rstrip().split(' ') if w not in PUNCTUATIONS)`.
fn filter_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut first = true;
    for w in py_rstrip(line).split(' ') {
        if !PUNCTUATIONS.contains(&w) {
            if !first {
                out.push(' ');
            }
            first = false;
            out.push_str(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_parses_and_the_lexer_builds() {
        let mut t = PtbTokenizer::new();
        assert_eq!(
            t.tokenize("He's in the U.S. now, isn't he?"),
            "he 's in the u.s. now is n't he"
        );
    }

    /// Cases checked against Java 17's `toLowerCase(Locale.ENGLISH)`.
    #[test]
    fn sigma_lowercases_as_java() {
        for (input, java) in [
            ("αβΣ-αβ", "αβσ-αβ"),
            ("αβΣ4-by", "αβς4-by"),
            ("αβΣ-4", "αβς-4"),
            ("αβΣ4b", "αβσ4b"),
            ("αβΣ.αβ", "αβσ.αβ"),
            ("αβΣ:αβ", "αβς:αβ"),
            ("αβΣ--αβ", "αβς--αβ"),
            ("-Σ", "-σ"),
            ("α-Σ", "α-ς"),
            ("α4Σ", "α4ς"),
            ("αβΣ_αβ", "αβσ_αβ"),
        ] {
            assert_eq!(java_lowercase(input), java, "{input}");
        }
        assert_eq!(
            java_lowercase("\u{3b1}\u{3b2}\u{3a3}-\u{3b1}\u{3a3}"),
            "\u{3b1}\u{3b2}\u{3c3}-\u{3b1}\u{3c2}"
        );
        assert_eq!(java_lowercase("\u{3a3}"), "\u{3c3}");
        assert_eq!(java_lowercase("ABC"), "abc");
    }

    #[test]
    fn captions_never_shift_between_images() {
        let mut t = PtbTokenizer::new();
        let out = t.tokenize_all(&["a\rb", "c\u{2028}d\u{c}e", "", "f\r", "g"]);
        assert_eq!(out, ["a b", "c d e", "", "f", "g"]);
        assert!(t.tokenize_all::<&str>(&[]).is_empty());
        // An SGML attribute quote runs across captions: each is then tokenized alone.
        let out = t.tokenize_all(&["x <a b='1", "2'> y", "z"]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], "z");
        assert_eq!(out[0], t.tokenize("x <a b='1"));
    }

    #[test]
    fn parallel_equals_one_stream() {
        // Captions whose tokens depend on the next line ("S." before "A ...", a final ":-)").
        let base = [
            "Ave S.",
            "A man.",
            "a city :-)",
            "",
            "   ",
            "The End.",
            "etc.",
            "U.S.",
            "x",
        ];
        let captions: Vec<String> = (0..20_000)
            .map(|i| base[i * 7 % base.len()].to_string())
            .collect();
        let one = PtbTokenizer::new().tokenize_all(&captions);
        assert_eq!(tokenize_all_parallel(&captions), one);
    }
}
