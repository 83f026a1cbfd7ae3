//! The scanner: every rule of [`super::rules`] compiled into one NFA, run as a lazily built DFA
//! over UTF-16 code units with JFlex's longest-match / first-rule semantics, and the rules'
//! actions (pushback, normalisations).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::regex::{CharSet, Grammar, NState, Nfa, Scratch};
use super::rules::{Action, MACROS, RULES};

/// "No rule accepts" in a DFA state / "transition not built yet" / "no transition".
const NONE: u32 = u32::MAX;
const UNKNOWN: u32 = u32::MAX;
const DEAD: u32 = u32::MAX - 1;

/// One token the scanner produced: its text (before lower-casing) or a line end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lexeme<'a> {
    Word(&'a str),
    Newline,
}

/// Where a trailing-context rule's token ends within its match.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// `main` always matches this many units.
    FixedMain(usize),
    /// `context` always matches this many units.
    FixedContext(usize),
    /// Entry states of `main` and `context` in the `parts` NFA: the longest `main` prefix
    /// whose rest `context` accepts.
    General(u32, u32),
}

/// The compiled rules: immutable, built once per process and shared.
struct Compiled {
    nfa: Nfa,
    /// Per rule with trailing context: how to find where its token ends.
    split_parts: Vec<Option<Split>>,
    parts: Nfa,
    /// Equivalence class of every UTF-16 code unit.
    class_of: Vec<u16>,
    num_classes: usize,
    /// Per charset id: bit set of the classes it contains.
    set_classes: Vec<Vec<u64>>,
}

/// The lazily built DFA: states are sets of NFA states, transitions filled on first use.
#[derive(Clone, Default)]
struct DfaCache {
    states: Vec<(Box<[u32]>, u32)>,
    index: HashMap<Box<[u32]>, u32>,
    /// `trans[state * num_classes + class]`.
    trans: Vec<u32>,
}

/// The most complete DFA cache any lexer of this process has built; new lexers start from it.
static WARM_DFA: Mutex<Option<DfaCache>> = Mutex::new(None);

fn compiled() -> &'static Arc<Compiled> {
    static COMPILED: OnceLock<Arc<Compiled>> = OnceLock::new();
    COMPILED.get_or_init(|| Arc::new(Compiled::new()))
}

/// A lexer: the shared compiled rules plus its own DFA cache (which grows as inputs need new
/// states) and scratch space.
pub(super) struct Lexer {
    c: Arc<Compiled>,
    dfa: DfaCache,
    seen: Vec<bool>,
    parts_scratch: Scratch,
}

impl Compiled {
    fn new() -> Self {
        let grammar = Grammar::new(MACROS, true);
        let mut nfa = Nfa::default();
        let mut parts = Nfa::default();
        let mut entries = Vec::with_capacity(RULES.len());
        let mut split_parts = Vec::with_capacity(RULES.len());
        for (i, rule) in RULES.iter().enumerate() {
            let main = grammar.parse(rule.main);
            let accept = nfa.accept(i as u32);
            match rule.context {
                Some(ctx) => {
                    let ctx = grammar.parse(ctx);
                    let after = nfa.compile(&ctx, accept);
                    entries.push(nfa.compile(&main, after));
                    let split = match (main.fixed_len(), ctx.fixed_len()) {
                        (Some(n), _) => Split::FixedMain(n),
                        (None, Some(n)) => Split::FixedContext(n),
                        (None, None) => {
                            let pa = parts.accept(0);
                            let m = parts.compile(&main, pa);
                            let pb = parts.accept(0);
                            let c = parts.compile(&ctx, pb);
                            Split::General(m, c)
                        }
                    };
                    split_parts.push(Some(split));
                }
                None => {
                    entries.push(nfa.compile(&main, accept));
                    split_parts.push(None);
                }
            }
        }
        // The start state is the last one pushed.
        nfa.split(entries);
        let (class_of, num_classes, set_classes) = partition(&nfa.sets);
        Compiled {
            nfa,
            split_parts,
            parts,
            class_of,
            num_classes,
            set_classes,
        }
    }

    /// The NFA's start state (an epsilon split to every rule).
    fn start(&self) -> u32 {
        (self.nfa.states.len() - 1) as u32
    }
}

impl Drop for Lexer {
    fn drop(&mut self) {
        // Offer this cache to later lexers if it knows more states than the current one.
        if let Ok(mut warm) = WARM_DFA.lock()
            && warm
                .as_ref()
                .is_none_or(|w| w.states.len() < self.dfa.states.len())
        {
            *warm = Some(std::mem::take(&mut self.dfa));
        }
    }
}

impl Lexer {
    pub(super) fn new() -> Self {
        let c = Arc::clone(compiled());
        let warm = WARM_DFA.lock().ok().and_then(|g| g.clone());
        let mut lexer = Lexer {
            seen: vec![false; c.nfa.states.len()],
            dfa: warm.unwrap_or_default(),
            parts_scratch: Scratch::default(),
            c,
        };
        if lexer.dfa.states.is_empty() {
            let mut init = Vec::new();
            let start = lexer.c.start();
            lexer.c.nfa.closure(&[start], &mut lexer.seen, &mut init);
            lexer.intern(init);
        }
        lexer
    }

    /// The DFA state for a set of NFA states (closure already taken), creating it if new.
    fn intern(&mut self, mut states: Vec<u32>) -> u32 {
        states.sort_unstable();
        states.dedup();
        if let Some(&id) = self.dfa.index.get(states.as_slice()) {
            return id;
        }
        let accept = states
            .iter()
            .filter_map(|&s| match self.c.nfa.states[s as usize] {
                NState::Accept(r) => Some(r),
                _ => None,
            })
            .min()
            .unwrap_or(NONE);
        let id = self.dfa.states.len() as u32;
        let key: Box<[u32]> = states.into_boxed_slice();
        self.dfa.index.insert(key.clone(), id);
        self.dfa.states.push((key, accept));
        self.dfa
            .trans
            .extend(std::iter::repeat_n(UNKNOWN, self.c.num_classes));
        id
    }

    fn step(&mut self, state: u32, class: usize) -> u32 {
        let at = state as usize * self.c.num_classes + class;
        let t = self.dfa.trans[at];
        if t != UNKNOWN {
            return t;
        }
        let (word, bit) = (class / 64, 1u64 << (class % 64));
        let nexts: Vec<u32> = self.dfa.states[state as usize]
            .0
            .iter()
            .filter_map(|&s| match self.c.nfa.states[s as usize] {
                NState::Char { set, next } if self.c.set_classes[set as usize][word] & bit != 0 => {
                    Some(next)
                }
                _ => None,
            })
            .collect();
        let target = if nexts.is_empty() {
            DEAD
        } else {
            let mut closed = Vec::new();
            self.seen.iter_mut().for_each(|x| *x = false);
            self.c.nfa.closure(&nexts, &mut self.seen, &mut closed);
            self.intern(closed)
        };
        self.dfa.trans[at] = target;
        target
    }

    /// The longest match at `pos`: `(rule, end)`; on a tie the earliest rule. Also whether the
    /// search ran into the end of `input` (more input could have changed the answer).
    fn longest_match(&mut self, input: &[u16], pos: usize) -> (Option<(usize, usize)>, bool) {
        let mut state = 0u32;
        let mut best = None;
        for (i, &c) in input.iter().enumerate().skip(pos) {
            state = self.step(state, usize::from(self.c.class_of[usize::from(c)]));
            if state == DEAD {
                return (best, false);
            }
            let accept = self.dfa.states[state as usize].1;
            if accept != NONE {
                best = Some((accept as usize, i + 1));
            }
        }
        (best, true)
    }

    /// For a trailing-context rule matched over `input[pos..end]`: the end of the token, the
    /// longest prefix `main` accepts such that `context` accepts the rest.
    fn split(&mut self, rule: usize, input: &[u16], pos: usize, end: usize) -> usize {
        let (main, ctx) = match self.c.split_parts[rule].expect("rule has trailing context") {
            Split::FixedMain(n) => return pos + n,
            Split::FixedContext(n) => return end - n,
            Split::General(main, ctx) => (main, ctx),
        };
        let text = &input[pos..end];
        let mut ends = Vec::new();
        self.c
            .parts
            .accepting_prefixes(main, text, &mut self.parts_scratch, |k| ends.push(k));
        ends.into_iter()
            .rev()
            .find(|&k| {
                self.c
                    .parts
                    .accepts(ctx, &text[k..], &mut self.parts_scratch)
            })
            .map_or(end, |k| pos + k)
    }

    /// Scans all of `input`, calling `emit(lexeme, start, end)` for every token and line end.
    /// Returns the start of the first token whose match search reached the end of `input`
    /// (whose result could change if more input followed), if any.
    pub(super) fn scan(
        &mut self,
        input: &[u16],
        mut emit: impl FnMut(Lexeme<'_>, usize, usize),
    ) -> Option<usize> {
        let mut pos = 0;
        let mut eof_dependent = None;
        // The common actions decode straight into this buffer: no allocation per token.
        let mut buf = String::new();
        while pos < input.len() {
            let (found, hit_end) = self.longest_match(input, pos);
            if hit_end && eof_dependent.is_none() {
                eof_dependent = Some(pos);
            }
            let Some((rule, end)) = found else {
                // Unreachable: `.` and NEWLINE cover every unit. Skip one to stay total.
                pos += 1;
                continue;
            };
            let r = &RULES[rule];
            let tok_end = if r.context.is_some() {
                self.split(rule, input, pos, end)
            } else {
                end
            };
            let text = &input[pos..tok_end];
            let mut next = tok_end;
            buf.clear();
            let word: Option<String> = match r.action {
                Action::Plain => {
                    decode_into(&mut buf, text, false);
                    None
                }
                Action::SoftHyphen => {
                    decode_into(&mut buf, text, true);
                    if buf.is_empty() {
                        buf.push('-'); // never an empty token
                    }
                    None
                }
                Action::Pushback(n) => {
                    next = tok_end - n;
                    decode_into(&mut buf, &text[..text.len() - n], false);
                    None
                }
                Action::Nbsp => Some(utf16(text).replace(' ', "\u{a0}")),
                Action::Const(s) => {
                    buf.push_str(s);
                    None
                }
                Action::Amp => Some(normalize_amp(&utf16(text))),
                Action::QuoteLeft => Some(latex_quotes(&utf16(text), true)),
                Action::QuoteRight => Some(latex_quotes(&utf16(text), false)),
                Action::Fraction => Some(normalize_fractions(&utf16(text))),
                Action::Currency => Some(normalize_currency(&utf16(text))),
                Action::Acronym => {
                    let keep = if text.len() == 2 {
                        next = pos + 1;
                        &text[..1]
                    } else {
                        next = tok_end - 1;
                        text
                    };
                    decode_into(&mut buf, keep, false);
                    None
                }
                Action::PeriodAgain => {
                    next = tok_end - 1;
                    decode_into(&mut buf, text, false);
                    None
                }
                Action::Phone => Some(parens(&utf16(text).replace(' ', "\u{a0}"))),
                Action::Parens => Some(parens(&utf16(text))),
                Action::Dashes => {
                    if (3..=4).contains(&text.len()) {
                        buf.push_str("--");
                    } else {
                        decode_into(&mut buf, text, false);
                    }
                    None
                }
                Action::Skip | Action::Untokenizable => {
                    pos = next;
                    continue;
                }
                Action::Newline => {
                    emit(Lexeme::Newline, pos, tok_end);
                    pos = next;
                    continue;
                }
            };
            match &word {
                Some(w) => emit(Lexeme::Word(w), pos, tok_end),
                None => emit(Lexeme::Word(&buf), pos, tok_end),
            }
            pos = next;
        }
        eof_dependent
    }
}

/// Splits the code-unit space into classes that every charset of the NFA treats alike.
fn partition(sets: &[CharSet]) -> (Vec<u16>, usize, Vec<Vec<u64>>) {
    let mut bounds: Vec<u32> = vec![0, 0x1_0000];
    for s in sets {
        for &(a, b) in s.ranges() {
            bounds.push(u32::from(a));
            bounds.push(u32::from(b) + 1);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut class_of = vec![0u16; 0x1_0000];
    let mut signature_ids: HashMap<Vec<bool>, u16> = HashMap::new();
    let mut representatives: Vec<u16> = Vec::new();
    for w in bounds.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let sig: Vec<bool> = sets.iter().map(|s| s.contains(lo as u16)).collect();
        let next = signature_ids.len() as u16;
        let id = *signature_ids.entry(sig).or_insert_with(|| {
            representatives.push(lo as u16);
            next
        });
        for c in lo..hi {
            class_of[c as usize] = id;
        }
    }
    let n = representatives.len();
    let words = n.div_ceil(64);
    let set_classes = sets
        .iter()
        .map(|s| {
            let mut bits = vec![0u64; words];
            for (k, &rep) in representatives.iter().enumerate() {
                if s.contains(rep) {
                    bits[k / 64] |= 1 << (k % 64);
                }
            }
            bits
        })
        .collect();
    (class_of, n, set_classes)
}

/// Appends UTF-16 `units` to `out` (a lone surrogate as `?`), optionally without soft hyphens.
fn decode_into(out: &mut String, units: &[u16], drop_soft_hyphens: bool) {
    if units.iter().all(|&u| u < 0x80) {
        out.extend(units.iter().map(|&u| char::from(u as u8)));
    } else {
        out.extend(
            char::decode_utf16(units.iter().copied())
                .map(|r| r.unwrap_or('?'))
                .filter(|&c| !(drop_soft_hyphens && c == '\u{ad}')),
        );
    }
}

/// UTF-16 to `String`, a lone surrogate written as `?` (what Java's UTF-8 encoder prints).
pub(super) fn utf16(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or('?'))
        .collect()
}

/// `(?i:&amp;)` → `&`.
fn normalize_amp(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.len() >= 5 && tail.is_char_boundary(5) && tail[..5].eq_ignore_ascii_case("&amp;") {
            out.push('&');
            rest = &tail[5..];
        } else {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// CoreNLP's `latexQuotes`: ASCII quotes by their guessed side, then the curly and angle
/// quotes by theirs. (Its patterns are case-sensitive: `&APOS;` stays.)
fn latex_quotes(s: &str, probably_left: bool) -> String {
    let (single, double) = if probably_left {
        ("`", "``")
    } else {
        ("'", "''")
    };
    let mut out = String::with_capacity(s.len() + 2);
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let (piece, used) = if rest.starts_with("&apos;") {
            (single, 6)
        } else if rest.starts_with("&quot;") {
            (double, 6)
        } else {
            let piece = match c {
                '\'' => single,
                '"' => double,
                '\u{91}' | '\u{2018}' | '\u{201B}' | '\u{2039}' => "`",
                '\u{92}' | '\u{2019}' | '\u{203A}' => "'",
                '\u{93}' | '\u{201C}' | '\u{AB}' => "``",
                '\u{94}' | '\u{201D}' | '\u{BB}' => "''",
                _ => "",
            };
            if piece.is_empty() {
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            (piece, c.len_utf8())
        };
        out.push_str(piece);
        rest = &rest[used..];
    }
    out
}

fn normalize_fractions(s: &str) -> String {
    s.replace('\u{BC}', "1/4")
        .replace('\u{BD}', "1/2")
        .replace('\u{BE}', "3/4")
        .replace('\u{2153}', "1/3")
        .replace('\u{2154}', "2/3")
}

fn normalize_currency(s: &str) -> String {
    s.replace('\u{A2}', "cents")
        .replace('\u{A3}', "#")
        .replace(['\u{80}', '\u{A4}', '\u{20A0}', '\u{20AC}'], "$")
}

fn parens(s: &str) -> String {
    s.replace('(', "-LRB-").replace(')', "-RRB-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisations() {
        assert_eq!(normalize_amp("AT&AMP;T&x"), "AT&T&x");
        assert_eq!(latex_quotes("\"", true), "``");
        assert_eq!(latex_quotes("'s", false), "'s");
        assert_eq!(latex_quotes("&apos;", true), "`");
        assert_eq!(latex_quotes("\u{201C}", false), "``");
        let mut b = String::new();
        decode_into(&mut b, &[0x61, 0xad, 0x62], true);
        assert_eq!(b, "ab");
        assert_eq!(normalize_currency("\u{20AC}5\u{A2}"), "$5cents");
        assert_eq!(utf16(&[0x61, 0xD800]), "a?");
    }
}
