//! The toolkit's numerics, reproduced bit for bit: numpy's pairwise summation (what `np.mean`
//! does) and Python's `str.split()` whitespace.

/// `np.mean` of a float64 array: numpy's pairwise sum of all elements (added to an initial 0.0),
/// divided by the count. NaN for an empty slice, as numpy returns (with a warning).
pub fn np_mean(xs: &[f64]) -> f64 {
    pairwise_sum(xs) / xs.len() as f64
}

/// numpy's `pairwise_sum` for float64 (`numpy/_core/src/umath/loops_utils.h.src`), which
/// `np.add.reduce` uses on a contiguous array (METRICS.md §6): below 8 elements a plain loop;
/// up to 128, eight interleaved accumulators combined as `((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))`
/// and then the remainder in order; above 128, the two halves split at a multiple of 8.
pub fn pairwise_sum(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in xs {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&xs[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += xs[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &xs[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&xs[..n2]) + pairwise_sum(&xs[n2..])
    }
}

/// Whether Python's `str.isspace()` holds for `c`: the separators of `str.split()`. This is
/// Unicode `White_Space` plus U+001C..U+001F, which Python counts and Rust does not.
#[inline]
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: runs of whitespace separate words; no empty words.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `s.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Summing in a different association order must give a different result for these inputs,
    /// or the pairwise test below would prove nothing.
    #[test]
    fn pairwise_differs_from_a_naive_loop_where_numpy_does() {
        // 1e16 swamps the ones in a left-to-right loop, not in the 8-accumulator blocks.
        let mut xs = vec![1.0; 300];
        xs[0] = 1e16;
        let naive: f64 = xs.iter().fold(0.0, |a, &b| a + b);
        assert_ne!(pairwise_sum(&xs), naive);
        // Exact answer is 1e16 + 299; pairwise keeps most of the ones.
        assert!((pairwise_sum(&xs) - (1e16 + 299.0)).abs() <= 64.0);
    }

    #[test]
    fn small_sums_are_a_plain_loop() {
        let xs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
        let mut s = 0.0;
        for x in xs {
            s += x;
        }
        assert_eq!(pairwise_sum(&xs), s);
        assert!(np_mean(&[]).is_nan());
    }

    #[test]
    fn python_whitespace() {
        let s = "a\u{a0}b\u{1c}c  d\u{3000}";
        assert_eq!(py_split(s).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(py_rstrip("x \u{a0}\u{1f}"), "x");
        assert_eq!(py_split("").count(), 0);
    }
}
