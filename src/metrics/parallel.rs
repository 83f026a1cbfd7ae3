//! A minimal data-parallel map over a slice with scoped threads, order preserved. The metrics'
//! per-sentence and per-image work is independent, and results are combined in input order, so
//! scores do not depend on the thread count.

/// Threads to use: the machine's parallelism, at most 8, and about one per `min_chunk` items.
fn threads_for(items: usize, min_chunk: usize) -> usize {
    let hw = std::thread::available_parallelism().map_or(1, |n| n.get());
    hw.min(8).min(items.div_ceil(min_chunk.max(1))).max(1)
}

/// `items.iter().map(f).collect()`, split into contiguous chunks over threads.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads_for(items.len(), min_chunk);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("metrics worker thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order() {
        let v: Vec<u64> = (0..10_000).collect();
        assert_eq!(
            par_map(&v, 100, |x| x * 2),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(par_map(&[] as &[u8], 1, |x| *x).is_empty());
    }
}
