//! ROUGE-L as coco-caption computes it (`rouge.py`): the longest common subsequence with each
//! reference, precision and recall each maximised **separately** over the references, then the
//! F-measure with β = 1.2. Words come from `split(" ")`, so an empty caption is one empty word.

use super::numeric::np_mean;

/// ROUGE-L's β.
pub const BETA: f64 = 1.2;

/// Length of the longest common subsequence of `a` and `b`.
pub fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    // One row of the DP table over the shorter sequence.
    let mut row = vec![0usize; short.len() + 1];
    for &x in long {
        let mut diag = 0;
        for (j, &y) in short.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[short.len()]
}

/// ROUGE-L of one candidate against its references (token ids of `split(" ")`). 0 when either
/// best precision or best recall is 0, or without references. (`split(" ")` never yields an
/// empty list; an empty slice given directly counts as no match rather than 0/0.)
pub fn rouge_l<S: AsRef<[u32]>>(candidate: &[u32], refs: &[S]) -> f64 {
    if candidate.is_empty() {
        return 0.0;
    }
    let mut p_max = f64::NEG_INFINITY;
    let mut r_max = f64::NEG_INFINITY;
    for r in refs {
        let r = r.as_ref();
        let lcs = lcs_len(r, candidate) as f64;
        p_max = p_max.max(lcs / candidate.len() as f64);
        if !r.is_empty() {
            r_max = r_max.max(lcs / r.len() as f64);
        }
    }
    if refs.is_empty() || p_max == 0.0 || r_max == 0.0 {
        return 0.0;
    }
    let b2 = BETA * BETA;
    ((1.0 + b2) * p_max * r_max) / (r_max + b2 * p_max)
}

/// Corpus ROUGE-L: `np.mean` of the per-image scores, and the per-image scores.
pub fn corpus_rouge_l<C, R, S>(candidates: &[C], refs: &[R]) -> (f64, Vec<f64>)
where
    C: AsRef<[u32]>,
    R: AsRef<[S]>,
    S: AsRef<[u32]>,
{
    let per: Vec<f64> = candidates
        .iter()
        .zip(refs)
        .map(|(c, r)| rouge_l(c.as_ref(), r.as_ref()))
        .collect();
    (np_mean(&per), per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_is_symmetric_and_correct() {
        assert_eq!(lcs_len(&[1, 2, 3, 4], &[2, 4]), 2);
        assert_eq!(lcs_len(&[2, 4], &[1, 2, 3, 4]), 2);
        assert_eq!(lcs_len(&[1, 3, 2], &[1, 2, 3]), 2);
        assert_eq!(lcs_len(&[], &[1]), 0);
    }

    #[test]
    fn precision_and_recall_maximised_separately() {
        // ref A = cand exactly a prefix (P=1, R=0.5); ref B has R=1 but P=1/3.
        let cand = [1, 2, 3];
        let a = vec![1, 2, 3, 9, 9, 9];
        let b = vec![1];
        let s = rouge_l(&cand, &[a, b]);
        let (p, r) = (1.0f64, 1.0f64);
        let b2 = BETA * BETA;
        assert_eq!(s, ((1.0 + b2) * p * r) / (r + b2 * p));
        assert_eq!(rouge_l(&[5], &[vec![6]]), 0.0);
    }
}
