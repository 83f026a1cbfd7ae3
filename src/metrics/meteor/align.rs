//! METEOR 1.5's aligner (`edu.cmu.meteor.aligner.Aligner`): the four matching stages and the
//! beam search that picks one alignment.
//!
//! Line 1 is the candidate ("test"), line 2 the reference. Every stage appends the pairs it
//! finds to a list per reference position, in a fixed loop order; the search then walks the
//! reference left to right keeping the 40 best partial alignments. Both the order of the lists
//! and the search's quirks decide which of several equal alignments wins, so they are copied:
//!
//! * the search ranks partial alignments by `matches1 + matches2`, Java `int`s that grow by
//!   `length × weight` truncated at every addition, with weights 1.0 (exact) and 0.5 (others),
//!   so a one-word stem, synonym or paraphrase match adds nothing there;
//! * then by fewer chunks, then by a smaller "distance", which the jar adds to the path that
//!   *skips* a match instead of to the path that takes it;
//! * ties keep insertion order (Java's sort is stable);
//! * words are compared by `String.hashCode()`.

use super::MeteorStats;
use super::data::MeteorData;
use super::java;
use super::stemmer;
use std::collections::HashMap;

/// METEOR's English beam width.
const BEAM: usize = 40;
/// The weights the search uses, per stage (exact, stem, synonym, paraphrase).
const SEARCH_WEIGHTS: [f64; 4] = [1.0, 0.5, 0.5, 0.5];

/// What the stages need to know about one word, the same wherever it occurs.
struct WordInfo {
    hash: i32,
    stem_hash: i32,
    synsets: Box<[u32]>,
    para_id: i32,
    function: bool,
}

/// Word look-ups already made: captions repeat their words, and each look-up costs a few
/// binary searches and a stemming.
#[derive(Default)]
pub(crate) struct WordCache {
    ids: HashMap<String, u32>,
    infos: Vec<WordInfo>,
}

impl WordCache {
    fn id(&mut self, word: &str, data: &MeteorData) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        // The jar lower-cases a word before the function-word look-up; after normalisation
        // that changes nothing, but it costs little to do the same.
        let info = WordInfo {
            hash: java::hash_code(word),
            stem_hash: java::hash_code(&stemmer::stem(word)),
            synsets: word_synsets(data, word).into_boxed_slice(),
            para_id: data.vocab_id(word),
            function: data.is_function_word(&word.to_lowercase()),
        };
        let id = self.infos.len() as u32;
        self.infos.push(info);
        self.ids.insert(word.to_string(), id);
        id
    }

    fn synsets(&self, id: u32) -> &[u32] {
        &self.infos[id as usize].synsets
    }
}

/// A normalised sentence with what each matching stage needs, computed once per sentence.
pub(crate) struct Sentence {
    ids: Vec<u32>,
    hashes: Vec<i32>,
    stem_hashes: Vec<i32>,
    para_ids: Vec<i32>,
    function: Vec<bool>,
    /// Per position, the paraphrases of the table phrases starting there: (length, phrase).
    paraphrases: Vec<Vec<(usize, u32)>>,
}

impl Sentence {
    /// Splits an already normalised, lower-cased line into words and looks each word up.
    pub(crate) fn new(line: &str, data: &MeteorData, cache: &mut WordCache) -> Sentence {
        let ids: Vec<u32> = java::tokenize(line).map(|w| cache.id(w, data)).collect();
        let info = |f: fn(&WordInfo) -> i32| -> Vec<i32> {
            ids.iter().map(|&i| f(&cache.infos[i as usize])).collect()
        };
        let hashes = info(|w| w.hash);
        let stem_hashes = info(|w| w.stem_hash);
        let para_ids = info(|w| w.para_id);
        let function = ids
            .iter()
            .map(|&i| cache.infos[i as usize].function)
            .collect();
        let paraphrases = (0..ids.len())
            .map(|j| {
                let mut v = Vec::new();
                data.paraphrases_at(&para_ids, j, &mut v);
                v
            })
            .collect();
        Sentence {
            ids,
            hashes,
            stem_hashes,
            para_ids,
            function,
            paraphrases,
        }
    }

    /// The number of words.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// `SynonymDictionary.getSynSets(w) ∪ getStemSynSets(w)`, sorted and deduplicated.
fn word_synsets(data: &MeteorData, word: &str) -> Vec<u32> {
    let mut set: Vec<u32> = Vec::new();
    if let Some(i) = data.synonym_word(word) {
        set.extend_from_slice(data.synsets(i));
    }
    match data.base_forms(word) {
        Some(bases) => {
            for &b in bases {
                set.extend_from_slice(data.synsets(b as usize));
            }
        }
        None => {
            if let Some(i) = morph(data, word).and_then(|m| data.synonym_word(&m)) {
                set.extend_from_slice(data.synsets(i));
            }
        }
    }
    set.sort_unstable();
    set.dedup();
    set
}

/// WordNet's `morph()` suffix rules as `SynonymDictionary.morph` applies them: the first rule
/// (in table order) whose result is a WordNet word wins. `None` stands for the jar's `""`.
fn morph(data: &MeteorData, word: &str) -> Option<String> {
    const RULES: [(&str, &str); 20] = [
        // nouns
        ("s", ""),
        ("ses", "s"),
        ("xes", "x"),
        ("zes", "z"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("men", "man"),
        ("ies", "y"),
        // verbs
        ("s", ""),
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
        // adjectives
        ("er", ""),
        ("est", ""),
        ("er", "e"),
        ("est", "e"),
    ];
    // The jar remembers a "ful" ending to put back, but no rule applies to such a word.
    let end = if word.ends_with("ful") { "ful" } else { "" };
    if word.ends_with("ss") || java::utf16_len(word) <= 2 {
        return Some(word.to_string());
    }
    for (suffix, add) in RULES {
        if let Some(stem) = word.strip_suffix(suffix) {
            let candidate = format!("{stem}{add}");
            if data.synonym_word(&candidate).is_some() {
                return Some(candidate + end);
            }
        }
    }
    None
}

/// One matched span: reference words `start..start+length` with candidate words
/// `match_start..match_start+match_length`, found by stage `module`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Match {
    start: usize,
    length: usize,
    match_start: usize,
    match_length: usize,
    module: usize,
}

/// All candidate matches, listed by reference start position, and how many matches cover
/// each word.
struct Stage {
    matches: Vec<Vec<Match>>,
    cov1: Vec<u32>,
    cov2: Vec<u32>,
}

impl Stage {
    fn add(&mut self, m: Match) {
        for k in 0..m.match_length {
            self.cov1[m.match_start + k] += 1;
        }
        for k in 0..m.length {
            self.cov2[m.start + k] += 1;
        }
        self.matches[m.start].push(m);
    }

    fn one_to_one(&mut self, i: usize, j: usize, module: usize) {
        self.add(Match {
            start: j,
            length: 1,
            match_start: i,
            match_length: 1,
            module,
        });
    }
}

/// A partial alignment of the beam search (`PartialAlignment`).
#[derive(Clone)]
struct Path {
    matches: Vec<Option<Match>>,
    used1: Vec<bool>,
    used2: Vec<bool>,
    matches1: i32,
    matches2: i32,
    chunks: i32,
    idx: usize,
    last_match_end: Option<usize>,
    distance: i32,
}

impl Path {
    fn is_used(&self, m: &Match) -> bool {
        self.used2[m.start..m.start + m.length].iter().any(|&u| u)
            || self.used1[m.match_start..m.match_start + m.match_length]
                .iter()
                .any(|&u| u)
    }

    fn set_used(&mut self, m: &Match) {
        self.used2[m.start..m.start + m.length].fill(true);
        self.used1[m.match_start..m.match_start + m.match_length].fill(true);
    }

    /// Counts `m` into the search statistics, as both the fixed-match and the new-path branch
    /// of `Aligner.resolve` do.
    fn take(&mut self, m: &Match) {
        let w = SEARCH_WEIGHTS[m.module];
        // Java: `int += int * double`, i.e. (int)(matches1 + length * weight).
        self.matches1 = (f64::from(self.matches1) + m.match_length as f64 * w) as i32;
        self.matches2 = (f64::from(self.matches2) + m.length as f64 * w) as i32;
        if self.last_match_end.is_some_and(|e| e != m.match_start) {
            self.chunks += 1;
        }
        self.idx = m.start + m.length;
        self.last_match_end = Some(m.match_start + m.match_length);
    }
}

/// `PARTIAL_COMPARE_TOTAL`: more weighted matches first, then fewer chunks, then less distance.
fn compare(a: &Path, b: &Path) -> std::cmp::Ordering {
    (b.matches1 + b.matches2)
        .cmp(&(a.matches1 + a.matches2))
        .then(a.chunks.cmp(&b.chunks))
        .then(a.distance.cmp(&b.distance))
}

/// Runs the stages and the search for one candidate/reference pair and returns the pair's
/// sufficient statistics.
pub(crate) fn align(
    test: &Sentence,
    reference: &Sentence,
    data: &MeteorData,
    cache: &WordCache,
) -> MeteorStats {
    let (n1, n2) = (test.len(), reference.len());
    let mut stage = Stage {
        matches: vec![Vec::new(); n2],
        cov1: vec![0; n1],
        cov2: vec![0; n2],
    };
    // Identical sentences need only the exact stage ("prevents beam search errors").
    let stages = if test.hashes == reference.hashes {
        1
    } else {
        4
    };
    for module in 0..stages {
        match module {
            0 => {
                for j in 0..n2 {
                    for i in 0..n1 {
                        if test.hashes[i] == reference.hashes[j] {
                            stage.one_to_one(i, j, module);
                        }
                    }
                }
            }
            1 => {
                for j in 0..n2 {
                    for i in 0..n1 {
                        if test.stem_hashes[i] == reference.stem_hashes[j]
                            && test.hashes[i] != reference.hashes[j]
                        {
                            stage.one_to_one(i, j, module);
                        }
                    }
                }
            }
            2 => {
                for j in 0..n2 {
                    for i in 0..n1 {
                        if test.hashes[i] != reference.hashes[j]
                            && shares_any(
                                cache.synsets(test.ids[i]),
                                cache.synsets(reference.ids[j]),
                            )
                        {
                            stage.one_to_one(i, j, module);
                        }
                    }
                }
            }
            _ => paraphrase_stage(&mut stage, test, reference, data, module),
        }
    }

    // One-to-one matches that nothing else competes for are fixed before the search.
    let mut start = Path {
        matches: vec![None; n2],
        used1: vec![false; n1],
        used2: vec![false; n2],
        matches1: 0,
        matches2: 0,
        chunks: 0,
        idx: 0,
        last_match_end: None,
        distance: 0,
    };
    for i in 0..n2 {
        if let [m] = stage.matches[i][..] {
            let free2 = (0..m.length).all(|j| stage.cov2[i + j] == 1);
            let free1 = (0..m.match_length).all(|j| stage.cov1[m.match_start + j] == 1);
            if free1 && free2 {
                start.matches[i] = Some(m);
                start.set_used(&m);
            }
        }
    }

    let best = resolve(&stage, start);
    stats_of(test, reference, &best.matches)
}

/// Whether two sorted synset lists intersect.
fn shares_any(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// `ParaphraseMatcher.match`: phrases of the reference found as paraphrases in the candidate,
/// then phrases of the candidate found as paraphrases in the reference.
fn paraphrase_stage(
    stage: &mut Stage,
    test: &Sentence,
    reference: &Sentence,
    data: &MeteorData,
    module: usize,
) {
    let (line1, line2) = (&test.para_ids, &reference.para_ids);
    let occurs_at = |line: &[i32], at: usize, words: &[u16]| {
        words
            .iter()
            .enumerate()
            .all(|(k, &w)| line.get(at + k) == Some(&i32::from(w)))
    };
    for j in 0..line2.len() {
        for &(len, p) in &reference.paraphrases[j] {
            let words = data.phrase(p);
            for i in 0..line1.len() {
                if occurs_at(line1, i, words) {
                    stage.add(Match {
                        start: j,
                        length: len,
                        match_start: i,
                        match_length: words.len(),
                        module,
                    });
                }
            }
        }
    }
    for i in 0..line1.len() {
        for &(len, p) in &test.paraphrases[i] {
            let words = data.phrase(p);
            for j in 0..line2.len() {
                if occurs_at(line2, j, words) {
                    stage.add(Match {
                        start: j,
                        length: words.len(),
                        match_start: i,
                        match_length: len,
                        module,
                    });
                }
            }
        }
    }
}

/// `Aligner.resolve`: the left-to-right beam search over reference positions.
fn resolve(stage: &Stage, start: Path) -> Path {
    let n = stage.matches.len();
    let mut next = vec![start];
    for current in 0..=n {
        let mut paths = std::mem::take(&mut next);
        paths.sort_by(compare);
        paths.truncate(BEAM);
        let mut fallback = None;
        for (rank, mut path) in paths.into_iter().enumerate() {
            if current == n {
                // Complete: close the last chunk.
                if path.last_match_end.is_some() {
                    path.chunks += 1;
                }
                next.push(path);
                continue;
            }
            if path.used2[current] {
                if current < path.idx {
                    // Inside a match taken earlier.
                    next.push(path);
                } else if let Some(m) = path.matches[path.idx] {
                    // A match fixed before the search starts here.
                    path.take(&m);
                    path.distance += (m.start as i32 - m.match_start as i32).abs();
                    next.push(path);
                } else if rank == 0 {
                    // The jar drops such a path, but falls back on the best one if nothing
                    // is left.
                    fallback = Some(path);
                }
                continue;
            }
            for m in &stage.matches[current] {
                if path.is_used(m) {
                    continue;
                }
                let mut np = path.clone();
                np.set_used(m);
                np.matches[current] = Some(*m);
                np.take(m);
                // The jar adds the distance to the path being extended, not the new one.
                path.distance += (m.start as i32 - m.match_start as i32).abs();
                next.push(np);
            }
            // Or skip this reference word.
            if path.last_match_end.take().is_some() {
                path.chunks += 1;
            }
            path.idx += 1;
            next.push(path);
        }
        if next.is_empty() {
            next.extend(fallback);
        }
    }
    next.sort_by(compare);
    next.swap_remove(0)
}

/// The sufficient statistics of the chosen alignment (`Aligner.align`'s totals and
/// `MeteorScorer.getMeteorStats`).
fn stats_of(test: &Sentence, reference: &Sentence, matches: &[Option<Match>]) -> MeteorStats {
    let mut s = MeteorStats {
        test_len: test.len() as u32,
        ref_len: reference.len() as u32,
        test_function: test.function.iter().filter(|&&f| f).count() as u32,
        ref_function: reference.function.iter().filter(|&&f| f).count() as u32,
        ..MeteorStats::default()
    };
    for m in matches.iter().flatten() {
        let stage = &mut s.stages[m.module];
        for k in 0..m.match_length {
            if test.function[m.match_start + k] {
                stage.test_function += 1;
            } else {
                stage.test_content += 1;
            }
        }
        for k in 0..m.length {
            if reference.function[m.start + k] {
                stage.ref_function += 1;
            } else {
                stage.ref_content += 1;
            }
        }
    }
    // Chunks and totals, walking the matches as `getCountAndChunks` does.
    let (mut idx, mut last_end, mut chunks) = (0usize, None, 0u32);
    let (mut m1, mut m2) = (0u32, 0u32);
    while idx < matches.len() {
        match matches[idx] {
            None => {
                if last_end.take().is_some() {
                    chunks += 1;
                }
                idx += 1;
            }
            Some(m) => {
                m1 += m.match_length as u32;
                m2 += m.length as u32;
                if last_end.is_some_and(|e| e != m.match_start) {
                    chunks += 1;
                }
                idx = m.start + m.length;
                last_end = Some(m.match_start + m.match_length);
            }
        }
    }
    if last_end.is_some() {
        chunks += 1;
    }
    s.chunks = chunks;
    s.test_word_matches = m1;
    s.ref_word_matches = m2;
    s
}
