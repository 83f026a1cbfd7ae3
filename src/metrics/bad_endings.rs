//! The share of captions that end in a "bad ending" word (`bad_count_rate` of the reference's
//! `language_eval`, AOANET.md §4.3): a caption cut short after an article or preposition.

/// The reference's `bad_endings` (AOANET.md §4.3; `AttModel.bad_endings`).
pub const BAD_ENDINGS: [&str; 17] = [
    "a", "an", "the", "in", "for", "at", "of", "with", "before", "after", "on", "upon", "near",
    "to", "is", "are", "am",
];

/// Whether the last word of `caption` (split on single spaces, as the reference's `count_bad`)
/// is a bad ending.
pub fn has_bad_ending(caption: &str) -> bool {
    caption
        .rsplit(' ')
        .next()
        .is_some_and(|w| BAD_ENDINGS.contains(&w))
}

/// Fraction of `captions` with a bad ending; NaN for none (the reference divides by the count).
pub fn bad_ending_rate<S: AsRef<str>>(captions: &[S]) -> f64 {
    let bad = captions
        .iter()
        .filter(|c| has_bad_ending(c.as_ref()))
        .count();
    bad as f64 / captions.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_captions_ending_in_a_function_word() {
        let caps = [
            "a man riding a",
            "a dog on the grass",
            "two cats on",
            "",
            "a man with ",
        ];
        assert!(has_bad_ending(caps[0]) && !has_bad_ending(caps[1]) && has_bad_ending(caps[2]));
        // A trailing space leaves an empty last word, as `split(' ')` does.
        assert!(!has_bad_ending(caps[4]));
        assert_eq!(bad_ending_rate(&caps), 2.0 / 5.0);
    }
}
