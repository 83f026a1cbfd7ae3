//! METEOR's `-norm` text normalisation for English (`edu.cmu.meteor.util.Normalizer`).
//!
//! A Moses-style tokenizer written as a chain of regular-expression replacements. Each Java
//! `replaceAll` of a fixed-width pattern scans left to right and never re-reads what it has
//! replaced, so `a-b-c` becomes `a b-c`; we copy that with [`replace3`], which is exact for the
//! three-character patterns used here. The result is then lower-cased, as the scorer does.

use super::java;

/// Whether a non-breaking prefix keeps its dot always or only before a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrefixKind {
    /// `Mr.` and the like: the dot never splits off.
    Any,
    /// `No.` and the like: the dot stays only before a number.
    NumericOnly,
}

/// The letters of METEOR's `alpha` class: ASCII, Latin-1 and Latin Extended-A letters,
/// Cyrillic and the phonetic extensions.
fn is_alpha(c: char) -> bool {
    matches!(c,
        'A'..='Z' | 'a'..='z'
        | '\u{160}' | '\u{17D}' | '\u{161}' | '\u{17E}' | '\u{178}'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{17E}'
        | '\u{400}'..='\u{4FF}' | '\u{500}'..='\u{527}'
        | '\u{A640}'..='\u{A66E}' | '\u{A67E}'..='\u{A697}' | '\u{1D00}'..='\u{1D7F}')
}

/// `\p{Digit}` in a Java pattern without `UNICODE_CHARACTER_CLASS`: ASCII digits.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_alnum(c: char) -> bool {
    is_digit(c) || is_alpha(c)
}

/// `\s` in a Java pattern: `[ \t\n\x0B\f\r]`.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

/// The characters METEOR's final white-space pattern collapses (no tab: tokens are already
/// rebuilt with single spaces by then).
fn is_norm_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{A0}'
    )
}

/// `replaceAll` of the pattern `([a])[mid]([b])` with `format(a, b)`, scanning left to right
/// without overlap, exactly as `java.util.regex.Matcher` does for a fixed-width pattern.
fn replace3(
    s: &[char],
    a: impl Fn(char) -> bool,
    mid: char,
    b: impl Fn(char) -> bool,
    out_mid: &str,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < s.len() {
        if i + 2 < s.len() && a(s[i]) && s[i + 1] == mid && b(s[i + 2]) {
            out.push(s[i]);
            out.extend(out_mid.chars());
            out.push(s[i + 2]);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

fn string(s: &[char]) -> String {
    s.iter().collect()
}

/// Normalises one line as `-norm -l en` does (punctuation kept), then lower-cases it.
/// `prefix` looks a word up in the English non-breaking prefix list.
pub(crate) fn normalize(line: &str, prefix: impl Fn(&str) -> Option<PrefixKind>) -> String {
    // Wrap in spaces and separate every character that is not alphanumeric, white space or one
    // of . ' ` , - ‘ ’.
    let mut w: Vec<char> = Vec::with_capacity(line.len() + 16);
    w.push(' ');
    for c in line.chars() {
        let keep = is_alnum(c)
            || is_regex_space(c)
            || matches!(c, '.' | '\'' | '`' | ',' | '-' | '\u{2018}' | '\u{2019}');
        if keep {
            w.push(c);
        } else {
            w.extend([' ', c, ' ']);
        }
    }
    w.push(' ');

    // Escape runs of dots: `\.([\.]+)` -> " DOTMULTI$1".
    let mut e = Vec::with_capacity(w.len());
    let mut i = 0;
    while i < w.len() {
        if w[i] == '.' && i + 1 < w.len() && w[i + 1] == '.' {
            let mut j = i + 1;
            while j < w.len() && w[j] == '.' {
                j += 1;
            }
            e.extend(" DOTMULTI".chars());
            e.extend_from_slice(&w[i + 1..j]);
            i = j;
        } else {
            e.push(w[i]);
            i += 1;
        }
    }
    let mut s = string(&e);
    while s.contains("DOTMULTI.") {
        s = replace_dotmulti_dot(&s);
        s = s.replace("DOTMULTI.", "DOTDOTMULTI");
    }

    // Separate commas except inside numbers.
    let mut w = chars(&s);
    let not_digit = |c: char| !is_digit(c);
    w = replace3(&w, not_digit, ',', not_digit, " , ");
    w = replace3(&w, is_digit, ',', not_digit, " , ");
    w = replace3(&w, not_digit, ',', is_digit, " , ");

    // Quotes: ` ‘ ’ become ', and “ ” '' become a spaced double quote.
    for c in w.iter_mut() {
        if matches!(*c, '`' | '\u{2018}' | '\u{2019}') {
            *c = '\'';
        }
    }
    let mut q = Vec::with_capacity(w.len() + 8);
    let mut i = 0;
    while i < w.len() {
        if matches!(w[i], '\u{201C}' | '\u{201D}') {
            q.extend([' ', '"', ' ']);
            i += 1;
        } else if w[i] == '\'' && i + 1 < w.len() && w[i + 1] == '\'' {
            q.extend([' ', '"', ' ']);
            i += 2;
        } else {
            q.push(w[i]);
            i += 1;
        }
    }

    // Dashes: – and -- become -, and a dash between alphanumerics (or after a dot) a space.
    let s = string(&q).replace('\u{2013}', "-").replace("--", "-");
    let w = chars(&s);
    let w = replace3(&w, |c| is_alnum(c) || c == '.', '-', is_alnum, " ");

    // English apostrophes: contractions split to the right.
    let not_alpha = |c: char| !is_alpha(c);
    let w = replace3(&w, not_alpha, '\'', not_alpha, " ' ");
    let w = replace3(&w, |c| !is_alpha(c) && !is_digit(c), '\'', is_alpha, " ' ");
    let w = replace3(&w, is_alpha, '\'', not_alpha, " ' ");
    let w = replace3(&w, is_alpha, '\'', is_alpha, " '");
    let w = replace3(&w, is_digit, '\'', |c| c == 's', " '");
    let s = string(&w);

    // Rebuild from tokens, splitting a final dot unless the word is a non-breaking prefix.
    let words: Vec<&str> = java::tokenize(&s).collect();
    let mut sb = String::with_capacity(s.len() + 8);
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).and_then(|n| n.chars().next());
        if java::utf16_len(word) > 1 && word.ends_with('.') {
            let pre = &word[..word.len() - 1];
            let kind = prefix(pre);
            if pre.contains('.') && pre.chars().any(is_alpha) {
                // A dotted abbreviation such as U.S. loses its dots.
                sb.push_str(&word.replace('.', ""));
            } else if kind == Some(PrefixKind::Any)
                || next.is_some_and(|c| c.is_ascii_lowercase())
                || (kind == Some(PrefixKind::NumericOnly) && next.is_some_and(is_digit))
            {
                // Always non-breaking, or followed by a lower-case word (an unlisted
                // abbreviation), or numeric-only before a number: the dot stays.
                sb.push_str(word);
            } else {
                sb.push_str(pre);
                sb.push_str(" .");
            }
        } else {
            sb.push_str(word);
        }
        sb.push(' ');
    }

    // Unescape the dot runs.
    let mut s = sb;
    while s.contains("DOTDOTMULTI") {
        s = s.replace("DOTDOTMULTI", "DOTMULTI.");
    }
    let s = s.replace("DOTMULTI", ".");

    // Collapse white space, trim, lower-case.
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if is_norm_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    java::trim(&out).to_lowercase()
}

/// `DOTMULTI\.([^\.])` -> `DOTDOTMULTI $1`, left to right without overlap.
fn replace_dotmulti_dot(s: &str) -> String {
    const PAT: &str = "DOTMULTI.";
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(pos) = rest.find(PAT) {
        let after = &rest[pos + PAT.len()..];
        match after.chars().next() {
            Some(c) if c != '.' => {
                out.push_str(&rest[..pos]);
                out.push_str("DOTDOTMULTI ");
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
            _ => {
                // No match here; the scan resumes one character later.
                let step = pos + 1;
                out.push_str(&rest[..step]);
                rest = &rest[step..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s, |w| match w {
            "Mr" | "e.g" => Some(PrefixKind::Any),
            "No" => Some(PrefixKind::NumericOnly),
            _ => None,
        })
    }

    #[test]
    fn matches_the_jar_on_ptb_output() {
        // Outputs of the jar's Normalizer.normalizeLine(.., en, true).toLowerCase().
        assert_eq!(
            norm("a man 's hat is n't close-up u.s. st. 3.5 -lrb- 1,000"),
            "a man ' s hat is n 't close up us st . 3.5 -lrb- 1,000"
        );
        assert_eq!(
            norm("hello...world  a,b,c \"q\" x--y"),
            "hello ... world a , b,c \" q \" x y"
        );
    }

    #[test]
    fn dash_removal_does_not_overlap() {
        assert_eq!(norm("a-b-c"), "a b-c");
    }

    #[test]
    fn prefixes_keep_their_dot() {
        assert_eq!(norm("Mr. Smith"), "mr. smith");
        assert_eq!(norm("No. 5"), "no. 5");
        assert_eq!(norm("No. X"), "no . x");
        assert_eq!(norm("end."), "end .");
    }
}
