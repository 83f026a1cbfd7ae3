//! A tiny data-parallel helper over `std::thread::scope`, shared by the GEMM and by the
//! elementwise ops and reductions.
//!
//! There is no thread pool: each parallel call spawns its workers in a scope and joins them
//! before returning, so borrowed data can be used freely. Spawning costs a few tens of
//! microseconds, so callers pass a `min_chunk` below which work is not split; small problems
//! then run on the calling thread and pay nothing.
//!
//! The thread count is [`num_threads`]: `AOANET_NUM_THREADS` when set to a positive integer,
//! else the machine's available parallelism.

use std::ops::Range;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Thread count
// ---------------------------------------------------------------------------------------------

/// The number of threads CPU kernels use at most: `AOANET_NUM_THREADS` if it is set to a
/// positive integer, else [`std::thread::available_parallelism`] (1 if that is unknown).
///
/// Read once per process; an unusable value of `AOANET_NUM_THREADS` (not a number, or 0) is
/// reported once on stderr and ignored.
pub fn num_threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        let default = std::thread::available_parallelism().map_or(1, |n| n.get());
        match std::env::var("AOANET_NUM_THREADS") {
            Err(_) => default,
            Ok(s) => match s.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    eprintln!(
                        "aoanet: ignoring AOANET_NUM_THREADS={s:?} (expected a positive integer); \
                         using {default} threads"
                    );
                    default
                }
            },
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Splitting work
// ---------------------------------------------------------------------------------------------

/// The `i`-th of `parts` balanced contiguous ranges covering `0..n`: the first `n % parts`
/// ranges are one longer than the others. `parts` must be at least 1 and `i < parts`.
pub fn chunk_range(n: usize, parts: usize, i: usize) -> Range<usize> {
    debug_assert!(parts >= 1 && i < parts);
    let base = n / parts;
    let extra = n % parts;
    let start = i * base + i.min(extra);
    let len = base + usize::from(i < extra);
    start..start + len
}

/// How many chunks `n` items split into on `threads` threads when no chunk may be shorter
/// than `min_chunk` items (at least 1 when `n > 0`, 0 when `n == 0`).
pub fn chunk_count(n: usize, min_chunk: usize, threads: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (n / min_chunk.max(1)).clamp(1, threads.max(1))
}

/// Runs `f` over balanced contiguous ranges that cover `0..n`, in parallel on up to
/// [`num_threads`] threads, each range at least `min_chunk` long (so `n < 2 * min_chunk`
/// runs `f(0..n)` on the calling thread without spawning anything).
///
/// The calling thread works on the first range; a panic in any range propagates.
pub fn parallel_for<F>(n: usize, min_chunk: usize, f: F)
where
    F: Fn(Range<usize>) + Sync,
{
    parallel_for_with(num_threads(), n, min_chunk, f);
}

/// [`parallel_for`] with an explicit thread count instead of [`num_threads`].
pub fn parallel_for_with<F>(threads: usize, n: usize, min_chunk: usize, f: F)
where
    F: Fn(Range<usize>) + Sync,
{
    let parts = chunk_count(n, min_chunk, threads);
    match parts {
        0 => {}
        1 => f(0..n),
        _ => std::thread::scope(|s| {
            let f = &f;
            for i in 1..parts {
                let range = chunk_range(n, parts, i);
                s.spawn(move || f(range));
            }
            f(chunk_range(n, parts, 0));
        }),
    }
}

/// Splits `data` into balanced contiguous chunks (each at least `min_chunk` long, on up to
/// [`num_threads`] threads) and runs `f(start, chunk)` on each in parallel, where `start` is
/// the chunk's index in `data`. The natural shape for elementwise ops writing an output.
pub fn parallel_chunks_mut<T, F>(data: &mut [T], min_chunk: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let n = data.len();
    let parts = chunk_count(n, min_chunk, num_threads());
    if parts <= 1 {
        if n > 0 {
            f(0, data);
        }
        return;
    }
    std::thread::scope(|s| {
        let f = &f;
        let mut rest = data;
        let mut first = None;
        for i in 0..parts {
            let range = chunk_range(n, parts, i);
            let (chunk, tail) = rest.split_at_mut(range.len());
            rest = tail;
            if i == 0 {
                first = Some((range.start, chunk));
            } else {
                s.spawn(move || f(range.start, chunk));
            }
        }
        if let Some((start, chunk)) = first {
            f(start, chunk);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn chunk_ranges_cover_exactly_once() {
        for n in [0, 1, 2, 7, 33, 100] {
            for parts in 1..6 {
                let mut next = 0;
                for i in 0..parts {
                    let r = chunk_range(n, parts, i);
                    assert_eq!(r.start, next, "n={n} parts={parts} i={i}");
                    assert!(r.len() == n / parts || r.len() == n / parts + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn chunk_count_respects_min_chunk_and_threads() {
        assert_eq!(chunk_count(0, 4, 8), 0);
        assert_eq!(chunk_count(3, 4, 8), 1);
        assert_eq!(chunk_count(9, 4, 8), 2);
        assert_eq!(chunk_count(1000, 4, 3), 3);
        assert_eq!(chunk_count(10, 0, 2), 2);
    }

    #[test]
    fn parallel_for_visits_every_index_once() {
        let hits: Vec<AtomicUsize> = (0..1001).map(|_| AtomicUsize::new(0)).collect();
        parallel_for_with(3, hits.len(), 10, |r| {
            for i in r {
                hits[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn parallel_chunks_mut_writes_every_element() {
        let mut v = vec![0usize; 777];
        parallel_chunks_mut(&mut v, 5, |start, chunk| {
            for (i, x) in chunk.iter_mut().enumerate() {
                *x = start + i;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| i == x));
    }
}
