//! The Snowball English ("Porter2") stemmer, as METEOR 1.5's stem stage runs it.
//!
//! METEOR calls the Java `org.tartarus.snowball.ext.englishStemmer` bundled in its jar. This is
//! the same algorithm written against the same little machine the Snowball compiler targets: a
//! UTF-16 buffer with a cursor, forward and backward limits and a `[bra, ket)` slice, so every
//! step (and every odd corner such as a `y` after a vowel, or a word of non-ASCII letters)
//! behaves as in the jar. The public entry is [`stem`].

/// Stems one lower-cased word. Words shorter than three code units come back unchanged.
pub(crate) fn stem(word: &str) -> String {
    let mut m = Machine::new(word);
    m.stem();
    String::from_utf16_lossy(&m.s)
}

/// `{a, e, i, o, u, y}`: the vowels.
fn is_v(c: u16) -> bool {
    matches!(c, 0x61 | 0x65 | 0x69 | 0x6f | 0x75 | 0x79)
}

/// The vowels plus `w`, `x` and `Y`: letters that cannot end a short syllable.
fn is_v_wxy(c: u16) -> bool {
    is_v(c) || matches!(c, 0x77 | 0x78 | 0x59)
}

/// Letters that may precede a deletable `li` ending.
fn is_valid_li(c: u16) -> bool {
    matches!(
        c,
        0x63 | 0x64 | 0x65 | 0x67 | 0x68 | 0x6b | 0x6d | 0x6e | 0x72 | 0x74
    )
}

fn u(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// A Snowball "among" table (ASCII entries): candidate strings with the action each selects.
/// A number `<= 0` means "found, no action"; lookup returns the longest matching entry.
type Among = &'static [(&'static str, i32)];

const A_0: Among = &[("arsen", -1), ("commun", -1), ("gener", -1)];
const A_1: Among = &[("'", 1), ("'s'", 1), ("'s", 1)];
const A_2: Among = &[
    ("ied", 2),
    ("s", 3),
    ("ies", 2),
    ("sses", 1),
    ("ss", -1),
    ("us", -1),
];
const A_3: Among = &[
    ("", 3),
    ("bb", 2),
    ("dd", 2),
    ("ff", 2),
    ("gg", 2),
    ("bl", 1),
    ("mm", 2),
    ("nn", 2),
    ("pp", 2),
    ("rr", 2),
    ("at", 1),
    ("tt", 2),
    ("iz", 1),
];
const A_4: Among = &[
    ("ed", 2),
    ("eed", 1),
    ("ing", 2),
    ("edly", 2),
    ("eedly", 1),
    ("ingly", 2),
];
const A_5: Among = &[
    ("anci", 3),
    ("enci", 2),
    ("ogi", 13),
    ("li", 16),
    ("bli", 12),
    ("abli", 4),
    ("alli", 8),
    ("fulli", 14),
    ("lessli", 15),
    ("ousli", 10),
    ("entli", 5),
    ("aliti", 8),
    ("biliti", 12),
    ("iviti", 11),
    ("tional", 1),
    ("ational", 7),
    ("alism", 8),
    ("ation", 7),
    ("ization", 6),
    ("izer", 6),
    ("ator", 7),
    ("iveness", 11),
    ("fulness", 9),
    ("ousness", 10),
];
const A_6: Among = &[
    ("icate", 4),
    ("ative", 6),
    ("alize", 3),
    ("iciti", 4),
    ("ical", 4),
    ("tional", 1),
    ("ational", 2),
    ("ful", 5),
    ("ness", 5),
];
const A_7: Among = &[
    ("ic", 1),
    ("ance", 1),
    ("ence", 1),
    ("able", 1),
    ("ible", 1),
    ("ate", 1),
    ("ive", 1),
    ("ize", 1),
    ("iti", 1),
    ("al", 1),
    ("ism", 1),
    ("ion", 2),
    ("er", 1),
    ("ous", 1),
    ("ant", 1),
    ("ent", 1),
    ("ment", 1),
    ("ement", 1),
];
const A_8: Among = &[("e", 1), ("l", 2)];
const A_9: Among = &[
    ("succeed", -1),
    ("proceed", -1),
    ("exceed", -1),
    ("canning", -1),
    ("inning", -1),
    ("earring", -1),
    ("herring", -1),
    ("outing", -1),
];
const A_10: Among = &[
    ("andes", -1),
    ("atlas", -1),
    ("bias", -1),
    ("cosmos", -1),
    ("dying", 3),
    ("early", 9),
    ("gently", 7),
    ("howe", -1),
    ("idly", 6),
    ("lying", 4),
    ("news", -1),
    ("only", 10),
    ("singly", 11),
    ("skies", 2),
    ("skis", 1),
    ("sky", -1),
    ("tying", 5),
    ("ugly", 8),
];

/// The Snowball machine state (`SnowballProgram` plus the English stemmer's variables).
struct Machine {
    s: Vec<u16>,
    cursor: usize,
    limit: usize,
    limit_backward: usize,
    bra: usize,
    ket: usize,
    y_found: bool,
    p1: usize,
    p2: usize,
}

impl Machine {
    fn new(word: &str) -> Self {
        let s = u(word);
        let limit = s.len();
        Machine {
            s,
            cursor: 0,
            limit,
            limit_backward: 0,
            bra: 0,
            ket: limit,
            y_found: false,
            p1: 0,
            p2: 0,
        }
    }

    // ---- the Snowball runtime -------------------------------------------------------------

    fn in_grouping(&mut self, g: fn(u16) -> bool) -> bool {
        if self.cursor >= self.limit || !g(self.s[self.cursor]) {
            return false;
        }
        self.cursor += 1;
        true
    }

    fn out_grouping(&mut self, g: fn(u16) -> bool) -> bool {
        if self.cursor >= self.limit || g(self.s[self.cursor]) {
            return false;
        }
        self.cursor += 1;
        true
    }

    fn in_grouping_b(&mut self, g: fn(u16) -> bool) -> bool {
        if self.cursor <= self.limit_backward || !g(self.s[self.cursor - 1]) {
            return false;
        }
        self.cursor -= 1;
        true
    }

    fn out_grouping_b(&mut self, g: fn(u16) -> bool) -> bool {
        if self.cursor <= self.limit_backward || g(self.s[self.cursor - 1]) {
            return false;
        }
        self.cursor -= 1;
        true
    }

    fn eq_s(&mut self, lit: u16) -> bool {
        if self.cursor >= self.limit || self.s[self.cursor] != lit {
            return false;
        }
        self.cursor += 1;
        true
    }

    fn eq_s_b(&mut self, lit: u16) -> bool {
        if self.cursor <= self.limit_backward || self.s[self.cursor - 1] != lit {
            return false;
        }
        self.cursor -= 1;
        true
    }

    /// Forward among: the longest entry that is a prefix of `s[cursor..limit]`; moves the
    /// cursor past it and returns its action, or 0 when none matches.
    fn find_among(&mut self, table: Among) -> i32 {
        let rest = &self.s[self.cursor..self.limit];
        let mut best: Option<(usize, i32)> = None;
        for &(entry, action) in table {
            let e = entry.as_bytes();
            let hit = rest.len() >= e.len() && rest.iter().zip(e).all(|(&a, &b)| a == u16::from(b));
            if hit && best.is_none_or(|(len, _)| e.len() > len) {
                best = Some((e.len(), action));
            }
        }
        match best {
            Some((len, action)) => {
                self.cursor += len;
                action
            }
            None => 0,
        }
    }

    /// Backward among: the longest entry that is a suffix of `s[limit_backward..cursor]`.
    fn find_among_b(&mut self, table: Among) -> i32 {
        let rest = &self.s[self.limit_backward..self.cursor];
        let mut best: Option<(usize, i32)> = None;
        for &(entry, action) in table {
            let e = entry.as_bytes();
            let hit = rest.len() >= e.len()
                && rest[rest.len() - e.len()..]
                    .iter()
                    .zip(e)
                    .all(|(&a, &b)| a == u16::from(b));
            if hit && best.is_none_or(|(len, _)| e.len() > len) {
                best = Some((e.len(), action));
            }
        }
        match best {
            Some((len, action)) => {
                self.cursor -= len;
                action
            }
            None => 0,
        }
    }

    /// Replaces `s[c_bra..c_ket]` with `text`, moving the limit and cursor as Snowball does.
    fn replace_s(&mut self, c_bra: usize, c_ket: usize, text: &str) -> isize {
        let new = u(text);
        let adjustment = new.len() as isize - (c_ket - c_bra) as isize;
        self.s.splice(c_bra..c_ket, new);
        self.limit = (self.limit as isize + adjustment) as usize;
        if self.cursor >= c_ket {
            self.cursor = (self.cursor as isize + adjustment) as usize;
        } else if self.cursor > c_bra {
            self.cursor = c_bra;
        }
        adjustment
    }

    fn slice_from(&mut self, text: &str) {
        self.replace_s(self.bra, self.ket, text);
    }

    fn slice_del(&mut self) {
        self.slice_from("");
    }

    fn insert(&mut self, c_bra: usize, c_ket: usize, text: &str) {
        let adjustment = self.replace_s(c_bra, c_ket, text);
        if c_bra <= self.bra {
            self.bra = (self.bra as isize + adjustment) as usize;
        }
        if c_bra <= self.ket {
            self.ket = (self.ket as isize + adjustment) as usize;
        }
    }

    /// `gopast grouping`: advance past the next character in `g`; false at the limit.
    fn gopast(&mut self, g: fn(u16) -> bool) -> bool {
        loop {
            if self.in_grouping(g) {
                return true;
            }
            if self.cursor >= self.limit {
                return false;
            }
            self.cursor += 1;
        }
    }

    /// `gopast non grouping`: advance past the next character not in `g`.
    fn gopast_out(&mut self, g: fn(u16) -> bool) -> bool {
        loop {
            if self.out_grouping(g) {
                return true;
            }
            if self.cursor >= self.limit {
                return false;
            }
            self.cursor += 1;
        }
    }

    /// Backward `gopast grouping`.
    fn gopast_b(&mut self, g: fn(u16) -> bool) -> bool {
        loop {
            if self.in_grouping_b(g) {
                return true;
            }
            if self.cursor <= self.limit_backward {
                return false;
            }
            self.cursor -= 1;
        }
    }

    fn r1(&self) -> bool {
        self.p1 <= self.cursor
    }

    fn r2(&self) -> bool {
        self.p2 <= self.cursor
    }

    // ---- the English rules ----------------------------------------------------------------

    fn prelude(&mut self) {
        self.y_found = false;
        let v1 = self.cursor;
        self.bra = self.cursor;
        if self.eq_s(u16::from(b'\'')) {
            self.ket = self.cursor;
            self.slice_del();
        }
        self.cursor = v1;
        let v2 = self.cursor;
        self.bra = self.cursor;
        if self.eq_s(u16::from(b'y')) {
            self.ket = self.cursor;
            self.slice_from("Y");
            self.y_found = true;
        }
        self.cursor = v2;
        let v3 = self.cursor;
        // repeat ( goto (v [ 'y' ]) <- 'Y' )
        loop {
            let v4 = self.cursor;
            let mut found = false;
            loop {
                let v5 = self.cursor;
                if self.in_grouping(is_v) {
                    self.bra = self.cursor;
                    if self.eq_s(u16::from(b'y')) {
                        self.ket = self.cursor;
                        self.cursor = v5;
                        found = true;
                        break;
                    }
                }
                self.cursor = v5;
                if self.cursor >= self.limit {
                    break;
                }
                self.cursor += 1;
            }
            if !found {
                self.cursor = v4;
                break;
            }
            self.slice_from("Y");
            self.y_found = true;
        }
        self.cursor = v3;
    }

    fn mark_regions(&mut self) {
        self.p1 = self.limit;
        self.p2 = self.limit;
        let v1 = self.cursor;
        'lab0: {
            let v2 = self.cursor;
            if self.find_among(A_0) == 0 {
                self.cursor = v2;
                if !self.gopast(is_v) || !self.gopast_out(is_v) {
                    break 'lab0;
                }
            }
            self.p1 = self.cursor;
            if !self.gopast(is_v) || !self.gopast_out(is_v) {
                break 'lab0;
            }
            self.p2 = self.cursor;
        }
        self.cursor = v1;
    }

    fn shortv(&mut self) -> bool {
        let v1 = self.limit - self.cursor;
        if self.out_grouping_b(is_v_wxy) && self.in_grouping_b(is_v) && self.out_grouping_b(is_v) {
            return true;
        }
        self.cursor = self.limit - v1;
        if !self.out_grouping_b(is_v) || !self.in_grouping_b(is_v) {
            return false;
        }
        self.cursor <= self.limit_backward
    }

    fn step_1a(&mut self) -> bool {
        let v1 = self.limit - self.cursor;
        self.ket = self.cursor;
        if self.find_among_b(A_1) == 0 {
            self.cursor = self.limit - v1;
        } else {
            self.bra = self.cursor;
            self.slice_del();
        }
        self.ket = self.cursor;
        let among = self.find_among_b(A_2);
        if among == 0 {
            return false;
        }
        self.bra = self.cursor;
        match among {
            1 => self.slice_from("ss"),
            2 => {
                let v2 = self.limit - self.cursor;
                // hop 2 backwards
                if self.cursor >= self.limit_backward + 2 && self.cursor - 2 <= self.limit {
                    self.cursor -= 2;
                    self.slice_from("i");
                } else {
                    self.cursor = self.limit - v2;
                    self.slice_from("ie");
                }
            }
            3 => {
                if self.cursor <= self.limit_backward {
                    return false;
                }
                self.cursor -= 1;
                if !self.gopast_b(is_v) {
                    return false;
                }
                self.slice_del();
            }
            _ => {}
        }
        true
    }

    fn step_1b(&mut self) -> bool {
        self.ket = self.cursor;
        let among = self.find_among_b(A_4);
        if among == 0 {
            return false;
        }
        self.bra = self.cursor;
        match among {
            1 => {
                if !self.r1() {
                    return false;
                }
                self.slice_from("ee");
            }
            2 => {
                let v1 = self.limit - self.cursor;
                if !self.gopast_b(is_v) {
                    return false;
                }
                self.cursor = self.limit - v1;
                self.slice_del();
                let v3 = self.limit - self.cursor;
                let among = self.find_among_b(A_3);
                if among == 0 {
                    return false;
                }
                self.cursor = self.limit - v3;
                match among {
                    1 => {
                        let c = self.cursor;
                        self.insert(c, c, "e");
                        self.cursor = c;
                    }
                    2 => {
                        self.ket = self.cursor;
                        if self.cursor <= self.limit_backward {
                            return false;
                        }
                        self.cursor -= 1;
                        self.bra = self.cursor;
                        self.slice_del();
                    }
                    3 => {
                        if self.cursor != self.p1 {
                            return false;
                        }
                        let v4 = self.limit - self.cursor;
                        if !self.shortv() {
                            return false;
                        }
                        self.cursor = self.limit - v4;
                        let c = self.cursor;
                        self.insert(c, c, "e");
                        self.cursor = c;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        true
    }

    fn step_1c(&mut self) -> bool {
        self.ket = self.cursor;
        let v1 = self.limit - self.cursor;
        if !self.eq_s_b(u16::from(b'y')) {
            self.cursor = self.limit - v1;
            if !self.eq_s_b(u16::from(b'Y')) {
                return false;
            }
        }
        self.bra = self.cursor;
        if !self.out_grouping_b(is_v) {
            return false;
        }
        if self.cursor <= self.limit_backward {
            return false;
        }
        self.slice_from("i");
        true
    }

    fn step_2(&mut self) -> bool {
        self.ket = self.cursor;
        let among = self.find_among_b(A_5);
        if among == 0 {
            return false;
        }
        self.bra = self.cursor;
        if !self.r1() {
            return false;
        }
        let to = match among {
            1 => "tion",
            2 => "ence",
            3 => "ance",
            4 => "able",
            5 => "ent",
            6 => "ize",
            7 => "ate",
            8 => "al",
            9 => "ful",
            10 => "ous",
            11 => "ive",
            12 => "ble",
            13 => {
                if !self.eq_s_b(u16::from(b'l')) {
                    return false;
                }
                "og"
            }
            14 => "ful",
            15 => "less",
            16 => {
                if !self.in_grouping_b(is_valid_li) {
                    return false;
                }
                ""
            }
            _ => return true,
        };
        self.slice_from(to);
        true
    }

    fn step_3(&mut self) -> bool {
        self.ket = self.cursor;
        let among = self.find_among_b(A_6);
        if among == 0 {
            return false;
        }
        self.bra = self.cursor;
        if !self.r1() {
            return false;
        }
        let to = match among {
            1 => "tion",
            2 => "ate",
            3 => "al",
            4 => "ic",
            5 => "",
            6 => {
                if !self.r2() {
                    return false;
                }
                ""
            }
            _ => return true,
        };
        self.slice_from(to);
        true
    }

    fn step_4(&mut self) -> bool {
        self.ket = self.cursor;
        let among = self.find_among_b(A_7);
        if among == 0 {
            return false;
        }
        self.bra = self.cursor;
        if !self.r2() {
            return false;
        }
        match among {
            1 => self.slice_del(),
            2 => {
                let v1 = self.limit - self.cursor;
                if !self.eq_s_b(u16::from(b's')) {
                    self.cursor = self.limit - v1;
                    if !self.eq_s_b(u16::from(b't')) {
                        return false;
                    }
                }
                self.slice_del();
            }
            _ => {}
        }
        true
    }

    fn step_5(&mut self) -> bool {
        self.ket = self.cursor;
        let among = self.find_among_b(A_8);
        if among == 0 {
            return false;
        }
        self.bra = self.cursor;
        match among {
            1 => {
                if !self.r2() {
                    if !self.r1() {
                        return false;
                    }
                    let v2 = self.limit - self.cursor;
                    if self.shortv() {
                        return false;
                    }
                    self.cursor = self.limit - v2;
                }
                self.slice_del();
            }
            2 => {
                if !self.r2() || !self.eq_s_b(u16::from(b'l')) {
                    return false;
                }
                self.slice_del();
            }
            _ => {}
        }
        true
    }

    fn exception2(&mut self) -> bool {
        self.ket = self.cursor;
        if self.find_among_b(A_9) == 0 {
            return false;
        }
        self.bra = self.cursor;
        self.cursor <= self.limit_backward
    }

    fn exception1(&mut self) -> bool {
        self.bra = self.cursor;
        let among = self.find_among(A_10);
        if among == 0 {
            return false;
        }
        self.ket = self.cursor;
        if self.cursor < self.limit {
            return false;
        }
        let to = match among {
            1 => "ski",
            2 => "sky",
            3 => "die",
            4 => "lie",
            5 => "tie",
            6 => "idl",
            7 => "gentl",
            8 => "ugli",
            9 => "earli",
            10 => "onli",
            11 => "singl",
            _ => return true,
        };
        self.slice_from(to);
        true
    }

    fn postlude(&mut self) {
        if !self.y_found {
            return;
        }
        // repeat ( goto ([ 'Y' ]) <- 'y' )
        loop {
            let v1 = self.cursor;
            let mut found = false;
            loop {
                let v2 = self.cursor;
                self.bra = self.cursor;
                if self.eq_s(u16::from(b'Y')) {
                    self.ket = self.cursor;
                    self.cursor = v2;
                    found = true;
                    break;
                }
                self.cursor = v2;
                if self.cursor >= self.limit {
                    break;
                }
                self.cursor += 1;
            }
            if !found {
                self.cursor = v1;
                break;
            }
            self.slice_from("y");
        }
    }

    fn stem(&mut self) {
        let v1 = self.cursor;
        if self.exception1() {
            return;
        }
        self.cursor = v1;
        // Words shorter than three code units are left alone.
        if self.cursor + 3 > self.limit {
            return;
        }
        self.cursor = v1;
        let v3 = self.cursor;
        self.prelude();
        self.cursor = v3;
        let v4 = self.cursor;
        self.mark_regions();
        self.cursor = v4;
        // backwards
        self.limit_backward = self.cursor;
        self.cursor = self.limit;
        let v5 = self.limit - self.cursor;
        self.step_1a();
        self.cursor = self.limit - v5;
        let v6 = self.limit - self.cursor;
        if !self.exception2() {
            self.cursor = self.limit - v6;
            let v7 = self.limit - self.cursor;
            self.step_1b();
            self.cursor = self.limit - v7;
            let v8 = self.limit - self.cursor;
            self.step_1c();
            self.cursor = self.limit - v8;
            let v9 = self.limit - self.cursor;
            self.step_2();
            self.cursor = self.limit - v9;
            let v10 = self.limit - self.cursor;
            self.step_3();
            self.cursor = self.limit - v10;
            let v11 = self.limit - self.cursor;
            self.step_4();
            self.cursor = self.limit - v11;
            let v12 = self.limit - self.cursor;
            self.step_5();
            self.cursor = self.limit - v12;
        }
        self.cursor = self.limit_backward;
        let v13 = self.cursor;
        self.postlude();
        self.cursor = v13;
    }
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn stems_like_the_jar() {
        // Outputs of the jar's englishStemmer (run through a small Java harness).
        for (w, s) in [
            ("running", "run"),
            ("generously", "generous"),
            ("skies", "sky"),
            ("yelling", "yell"),
            ("sayyid", "sayyid"),
            ("caresses", "caress"),
            ("a", "a"),
            ("is", "is"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
