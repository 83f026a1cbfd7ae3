//! A small regular-expression compiler with the semantics of the JFlex 1.4.3 scanner generator,
//! enough to run the PTB lexer's rules ([`super::rules`]) as the generated Java scanner does.
//!
//! * The alphabet is UTF-16 code units, as the Java scanner reads `char`s.
//! * Syntax: `|`, concatenation, `*` `+` `?` `{n}` `{n,m}`, `( )`, `{MACRO}`, `[...]` classes
//!   with ranges, `[^...]` negation (`[^]` is any unit), `[:letter:]` `[:digit:]`
//!   `[:uppercase:]`, `.` (any unit but `\n`), escapes `\uXXXX`, `\xXX`, `\t \n \r \f \0` and
//!   `\c` for a literal `c`. A `]` outside a class is a literal.
//! * `%caseless`: every literal outside a class also matches its other case; classes are taken
//!   as written (JFlex's documented behaviour, which the PTB rules rely on: `[A]bout` matches only
//!   a capital A).
//!
//! Patterns compile to a Thompson NFA over character-set transitions.

use std::collections::HashMap;

use super::unicode_tables::{DIGIT, LETTER, UPPERCASE};

/// A set of UTF-16 code units: sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(super) struct CharSet(Vec<(u16, u16)>);

impl CharSet {
    pub(super) fn from_ranges(ranges: impl IntoIterator<Item = (u16, u16)>) -> Self {
        let mut v: Vec<(u16, u16)> = ranges.into_iter().collect();
        v.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        CharSet(out)
    }

    pub(super) fn single(c: u16) -> Self {
        CharSet(vec![(c, c)])
    }

    pub(super) fn negate(&self) -> Self {
        let mut out = Vec::new();
        let mut next: u32 = 0;
        for &(a, b) in &self.0 {
            if u32::from(a) > next {
                out.push((next as u16, a - 1));
            }
            next = u32::from(b) + 1;
        }
        if next <= u32::from(u16::MAX) {
            out.push((next as u16, u16::MAX));
        }
        CharSet(out)
    }

    pub(super) fn contains(&self, c: u16) -> bool {
        match self.0.binary_search_by(|&(a, _)| a.cmp(&c)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => self.0[i - 1].1 >= c,
        }
    }

    pub(super) fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

/// A parsed regular expression.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Set(CharSet),
    Cat(Vec<Node>),
    Alt(Vec<Node>),
    /// `(node){min,max}`; `max == None` is unbounded.
    Repeat(Box<Node>, u32, Option<u32>),
}

impl Node {
    /// The length of every match, if all matches have the same length.
    pub(super) fn fixed_len(&self) -> Option<usize> {
        match self {
            Node::Set(_) => Some(1),
            Node::Cat(items) => items.iter().map(Node::fixed_len).sum(),
            Node::Alt(alts) => {
                let first = alts.first()?.fixed_len()?;
                alts.iter()
                    .all(|a| a.fixed_len() == Some(first))
                    .then_some(first)
            }
            Node::Repeat(inner, min, max) => match (inner.fixed_len()?, max) {
                (0, _) => Some(0),
                (n, Some(max)) if max == min => Some(n * *min as usize),
                _ => None,
            },
        }
    }
}

/// Named macros plus the caseless flag; parses patterns that may refer to the macros.
pub(super) struct Grammar {
    macros: HashMap<&'static str, &'static str>,
    caseless: bool,
}

impl Grammar {
    pub(super) fn new(macros: &[(&'static str, &'static str)], caseless: bool) -> Self {
        Grammar {
            macros: macros.iter().copied().collect(),
            caseless,
        }
    }

    /// Parses `pattern`. Panics on a syntax error or an unknown macro: the patterns are
    /// constants of this crate, and a test parses every one.
    pub(super) fn parse(&self, pattern: &str) -> Node {
        let units: Vec<char> = pattern.chars().collect();
        let mut p = Parser {
            g: self,
            s: &units,
            i: 0,
            depth: 0,
        };
        let node = p.alt();
        assert!(
            p.i == units.len(),
            "pattern {pattern:?}: unexpected {:?} at {}",
            units.get(p.i),
            p.i
        );
        node
    }

    fn literal(&self, c: char) -> CharSet {
        let mut units = Vec::new();
        let mut push = |ch: char| {
            let mut buf = [0u16; 2];
            let enc = ch.encode_utf16(&mut buf);
            assert!(enc.len() == 1, "literal {ch:?} outside the BMP");
            units.push((enc[0], enc[0]));
        };
        push(c);
        if self.caseless {
            // JFlex adds the simple lower- and upper-case mappings of the character.
            for m in [single_case(c.to_lowercase()), single_case(c.to_uppercase())]
                .into_iter()
                .flatten()
            {
                if (m as u32) <= 0xFFFF {
                    push(m);
                }
            }
        }
        CharSet::from_ranges(units)
    }
}

fn single_case(mut it: impl Iterator<Item = char>) -> Option<char> {
    let c = it.next()?;
    if it.next().is_some() { None } else { Some(c) }
}

struct Parser<'a> {
    g: &'a Grammar,
    s: &'a [char],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) -> char {
        let c = self.s[self.i];
        self.i += 1;
        c
    }

    fn alt(&mut self) -> Node {
        let mut alts = vec![self.cat()];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.cat());
        }
        if alts.len() == 1 {
            alts.pop().expect("one")
        } else {
            Node::Alt(alts)
        }
    }

    fn cat(&mut self) -> Node {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || (c == ')' && self.depth > 0) {
                break;
            }
            let atom = self.atom();
            items.push(self.postfix(atom));
        }
        if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Node::Cat(items)
        }
    }

    fn postfix(&mut self, mut node: Node) -> Node {
        loop {
            match self.peek() {
                Some('*') => {
                    self.i += 1;
                    node = Node::Repeat(Box::new(node), 0, None);
                }
                Some('+') => {
                    self.i += 1;
                    node = Node::Repeat(Box::new(node), 1, None);
                }
                Some('?') => {
                    self.i += 1;
                    node = Node::Repeat(Box::new(node), 0, Some(1));
                }
                Some('{') if self.s.get(self.i + 1).is_some_and(char::is_ascii_digit) => {
                    self.i += 1;
                    let min = self.number();
                    let max = if self.peek() == Some(',') {
                        self.i += 1;
                        Some(self.number())
                    } else {
                        Some(min)
                    };
                    assert_eq!(self.bump(), '}', "repetition not closed");
                    node = Node::Repeat(Box::new(node), min, max);
                }
                _ => return node,
            }
        }
    }

    fn number(&mut self) -> u32 {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.s[start..self.i]
            .iter()
            .collect::<String>()
            .parse()
            .expect("repetition count")
    }

    fn atom(&mut self) -> Node {
        match self.bump() {
            '(' => {
                self.depth += 1;
                let inner = self.alt();
                self.depth -= 1;
                assert_eq!(self.bump(), ')', "group not closed");
                inner
            }
            '[' if self.at_predefined(self.i - 1) => {
                self.i -= 1;
                Node::Set(self.predefined())
            }
            '[' => Node::Set(self.class()),
            '.' => Node::Set(CharSet::single(u16::from(b'\n')).negate()),
            '"' => {
                let mut items = Vec::new();
                while self.peek() != Some('"') {
                    let c = match self.bump() {
                        '\\' => self.escape(),
                        c => c,
                    };
                    items.push(Node::Set(self.g.literal(c)));
                }
                self.i += 1;
                Node::Cat(items)
            }
            '{' => {
                let start = self.i;
                while self.peek() != Some('}') {
                    self.i += 1;
                }
                let name: String = self.s[start..self.i].iter().collect();
                self.i += 1;
                let body = self
                    .g
                    .macros
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("unknown macro {name}"));
                self.g.parse(body)
            }
            '\\' => {
                let c = self.escape();
                Node::Set(self.g.literal(c))
            }
            c => Node::Set(self.g.literal(c)),
        }
    }

    /// After a backslash: the escaped character.
    fn escape(&mut self) -> char {
        let hex = |p: &mut Self, n: usize| {
            let digits: String = p.s[p.i..p.i + n].iter().collect();
            p.i += n;
            char::from_u32(u32::from_str_radix(&digits, 16).expect("hex escape"))
                .expect("escape is a char")
        };
        match self.bump() {
            'u' => hex(self, 4),
            'x' => hex(self, 2),
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\u{c}',
            '0' => '\0',
            c => c,
        }
    }

    /// Whether `[:name:]` (name in lower-case letters) starts at `at`.
    fn at_predefined(&self, at: usize) -> bool {
        let rest = &self.s[at..];
        if rest.len() < 4 || rest[0] != '[' || rest[1] != ':' {
            return false;
        }
        let name_len = rest[2..]
            .iter()
            .take_while(|c| c.is_ascii_lowercase())
            .count();
        name_len > 0 && rest[2 + name_len..].starts_with(&[':', ']'])
    }

    /// At `[:name:]`: JFlex's predefined class `name`.
    fn predefined(&mut self) -> CharSet {
        let start = self.i + 2;
        while self.peek() != Some(']') {
            self.i += 1;
        }
        let name: String = self.s[start..self.i - 1].iter().collect();
        self.i += 1;
        let table = match name.as_str() {
            "letter" => LETTER,
            "digit" => DIGIT,
            "uppercase" => UPPERCASE,
            other => panic!("unknown class [:{other}:]"),
        };
        CharSet::from_ranges(table.iter().copied())
    }

    /// After `[`: the class up to and including its `]`.
    fn class(&mut self) -> CharSet {
        let negated = self.peek() == Some('^');
        if negated {
            self.i += 1;
        }
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        loop {
            let c = self.bump();
            if c == ']' {
                break;
            }
            if c == '[' && self.at_predefined(self.i - 1) {
                self.i -= 1;
                ranges.extend_from_slice(self.predefined().ranges());
                continue;
            }
            let lo = if c == '\\' { self.escape() } else { c };
            let lo = bmp(lo);
            // `a-b` is a range unless the dash ends the class.
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                self.i += 1;
                let hi = match self.bump() {
                    '\\' => self.escape(),
                    h => h,
                };
                ranges.push((lo, bmp(hi)));
            } else {
                ranges.push((lo, lo));
            }
        }
        let set = CharSet::from_ranges(ranges);
        if negated { set.negate() } else { set }
    }
}

fn bmp(c: char) -> u16 {
    u16::try_from(c as u32).unwrap_or_else(|_| panic!("class member {c:?} outside the BMP"))
}

/// One NFA state.
#[derive(Clone, Debug)]
pub(super) enum NState {
    /// On a unit in charset `set`, go to `next`.
    Char { set: u32, next: u32 },
    /// Epsilon moves.
    Split(Vec<u32>),
    /// Accepting state of rule `rule`.
    Accept(u32),
}

/// A Thompson NFA; charsets are interned so equal classes share an id.
#[derive(Clone, Debug, Default)]
pub(super) struct Nfa {
    pub(super) states: Vec<NState>,
    pub(super) sets: Vec<CharSet>,
    set_ids: HashMap<CharSet, u32>,
}

impl Nfa {
    fn push(&mut self, s: NState) -> u32 {
        self.states.push(s);
        (self.states.len() - 1) as u32
    }

    fn set_id(&mut self, cs: &CharSet) -> u32 {
        if let Some(&id) = self.set_ids.get(cs) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(cs.clone());
        self.set_ids.insert(cs.clone(), id);
        id
    }

    /// Adds `node` followed by `next`; returns its entry state.
    pub(super) fn compile(&mut self, node: &Node, next: u32) -> u32 {
        match node {
            Node::Set(cs) => {
                let set = self.set_id(cs);
                self.push(NState::Char { set, next })
            }
            Node::Cat(items) => items
                .iter()
                .rev()
                .fold(next, |after, item| self.compile(item, after)),
            Node::Alt(alts) => {
                let entries = alts.iter().map(|a| self.compile(a, next)).collect();
                self.push(NState::Split(entries))
            }
            Node::Repeat(inner, min, max) => {
                let mut tail = match max {
                    None => {
                        let hub = self.push(NState::Split(Vec::new()));
                        let body = self.compile(inner, hub);
                        self.states[hub as usize] = NState::Split(vec![body, next]);
                        hub
                    }
                    Some(max) => {
                        let mut t = next;
                        for _ in *min..*max {
                            let body = self.compile(inner, t);
                            t = self.push(NState::Split(vec![body, next]));
                        }
                        t
                    }
                };
                for _ in 0..*min {
                    tail = self.compile(inner, tail);
                }
                tail
            }
        }
    }

    /// A new accepting state for `rule`.
    pub(super) fn accept(&mut self, rule: u32) -> u32 {
        self.push(NState::Accept(rule))
    }

    /// A new epsilon state to `targets`.
    pub(super) fn split(&mut self, targets: Vec<u32>) -> u32 {
        self.push(NState::Split(targets))
    }

    /// The non-epsilon states reachable from `from` by epsilon moves, added to `out` (sorted,
    /// deduplicated by the caller); `seen` is scratch of `states.len()`.
    pub(super) fn closure(&self, from: &[u32], seen: &mut [bool], out: &mut Vec<u32>) {
        let mut stack: Vec<u32> = from.to_vec();
        while let Some(s) = stack.pop() {
            if std::mem::replace(&mut seen[s as usize], true) {
                continue;
            }
            match &self.states[s as usize] {
                NState::Split(t) => stack.extend(t.iter().rev()),
                _ => out.push(s),
            }
        }
    }

    /// Whether the NFA starting at `start` accepts exactly `text` (any accepting state).
    pub(super) fn accepts(&self, start: u32, text: &[u16], scratch: &mut Scratch) -> bool {
        let mut last = None;
        self.accepting_prefixes(start, text, scratch, |k| last = Some(k));
        last == Some(text.len())
    }

    /// Calls `found(k)` for every `k` (ascending) for which the NFA starting at `start`
    /// accepts `text[..k]`.
    pub(super) fn accepting_prefixes(
        &self,
        start: u32,
        text: &[u16],
        scratch: &mut Scratch,
        mut found: impl FnMut(usize),
    ) {
        scratch.fit(self.states.len());
        let Scratch { seen, cur, next } = scratch;
        cur.clear();
        seen.clear();
        self.closure_into(&[start], seen, cur);
        for i in 0..=text.len() {
            if cur
                .iter()
                .any(|&s| matches!(self.states[s as usize], NState::Accept(_)))
            {
                found(i);
            }
            if i == text.len() || cur.is_empty() {
                break;
            }
            let c = text[i];
            next.clear();
            next.extend(cur.iter().filter_map(|&s| match self.states[s as usize] {
                NState::Char { set, next } if self.sets[set as usize].contains(c) => Some(next),
                _ => None,
            }));
            seen.clear();
            cur.clear();
            self.closure_into(next, seen, cur);
        }
    }

    /// [`closure`](Self::closure) with a generation-stamped visited set.
    fn closure_into(&self, from: &[u32], seen: &mut Stamps, out: &mut Vec<u32>) {
        let mut stack: Vec<u32> = from.to_vec();
        while let Some(s) = stack.pop() {
            if !seen.insert(s) {
                continue;
            }
            match &self.states[s as usize] {
                NState::Split(t) => stack.extend(t.iter().rev()),
                _ => out.push(s),
            }
        }
    }
}

/// A set of small integers cleared in O(1) by bumping a generation counter.
#[derive(Clone, Debug, Default)]
pub(super) struct Stamps {
    stamp: Vec<u32>,
    generation: u32,
}

impl Stamps {
    fn fit(&mut self, n: usize) {
        if self.stamp.len() < n {
            self.stamp.resize(n, 0);
        }
    }

    /// Empties the set.
    pub(super) fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
    }

    /// Adds `i`; false if it was already present.
    fn insert(&mut self, i: u32) -> bool {
        let slot = &mut self.stamp[i as usize];
        if *slot == self.generation {
            false
        } else {
            *slot = self.generation;
            true
        }
    }
}

/// Reusable buffers for NFA simulation.
#[derive(Clone, Debug, Default)]
pub(super) struct Scratch {
    seen: Stamps,
    cur: Vec<u32>,
    next: Vec<u32>,
}

impl Scratch {
    fn fit(&mut self, n: usize) {
        self.seen.fit(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: &str, caseless: bool) -> impl Fn(&str) -> bool {
        let g = Grammar::new(&[("D", "[0-9]")], caseless);
        let mut nfa = Nfa::default();
        let acc = nfa.accept(0);
        let start = nfa.compile(&g.parse(pattern), acc);
        move |s: &str| {
            let mut scratch = Scratch::default();
            nfa.accepts(start, &s.encode_utf16().collect::<Vec<_>>(), &mut scratch)
        }
    }

    #[test]
    fn caseless_literals_but_classes_as_written() {
        let m = matcher("[A]bout", true);
        assert!(m("About") && m("ABOUT") && !m("about"));
        let m = matcher("about", false);
        assert!(m("about") && !m("About"));
    }

    #[test]
    fn repetitions_macros_classes() {
        let m = matcher("{D}{1,2}-{D}{2}x*", false);
        assert!(m("1-23") && m("12-34xx") && !m("123-45") && !m("1-2"));
        let m = matcher("[^ \t,-_$]+", false);
        assert!(m("abc") && !m("aBc") && !m("a1") && !m("a$"));
        let m = matcher("[-_]+|a]", false);
        assert!(m("-_-") && m("a]"));
        let m = matcher("[^][^]", false);
        assert!(m("\n\n") && !m("x"));
        let m = matcher(".", false);
        assert!(m("\r") && !m("\n"));
        let m = matcher("[:letter:]\\u00e9", false);
        assert!(m("xé"));
    }

    #[test]
    fn fixed_lengths() {
        let g = Grammar::new(&[("D", "[0-9]")], false);
        assert_eq!(g.parse("ab{D}{2}").fixed_len(), Some(4));
        assert_eq!(g.parse("a|bc").fixed_len(), None);
        assert_eq!(g.parse("(ab|cd)x").fixed_len(), Some(3));
        assert_eq!(g.parse("a+").fixed_len(), None);
    }

    #[test]
    fn charset_negation_and_membership() {
        let s = CharSet::from_ranges([(5, 9), (10, 12), (20, 20)]);
        assert_eq!(s.ranges(), &[(5, 12), (20, 20)]);
        let n = s.negate();
        assert!(n.contains(0) && n.contains(13) && !n.contains(7) && n.contains(u16::MAX));
        assert_eq!(n.negate(), s);
    }
}
