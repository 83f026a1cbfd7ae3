//! A progress line on stderr: done / total, rate and ETA. Rewritten in place on a terminal;
//! one line every 10 s otherwise (logs stay short).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a job measured in bytes read or in files done.
pub struct Progress {
    what: &'static str,
    total: u64,
    bytes: bool,
    start: Instant,
    last: Instant,
    every: Duration,
    tty: bool,
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn human_time(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Progress {
    /// Starts a progress line for `total` bytes of input.
    pub fn bytes(what: &'static str, total: u64) -> Self {
        Self::new(what, total, true)
    }

    /// Starts a progress line for `total` input files.
    pub fn files(what: &'static str, total: u64) -> Self {
        Self::new(what, total, false)
    }

    fn new(what: &'static str, total: u64, bytes: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            what,
            total,
            bytes,
            start: now,
            last: now,
            every: Duration::from_secs(if tty { 1 } else { 10 }),
            tty,
        }
    }

    /// Reports `done` bytes (or files) and `items` images so far (at most once per interval).
    pub fn update(&mut self, done: u64, items: u64) {
        if self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
        let amount = |x: f64| {
            if self.bytes {
                human_bytes(x)
            } else {
                format!("{x:.0} files")
            }
        };
        let line = format!(
            "[{}] {items} images, {} of {} ({}/s, {:.0} images/s), ETA {}",
            self.what,
            amount(done as f64),
            amount(self.total as f64),
            amount(rate),
            items as f64 / secs.max(1e-9),
            human_time(eta)
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Ends the line (on a terminal) and returns the elapsed seconds.
    pub fn finish(&self) -> f64 {
        if self.tty && self.last != self.start {
            eprintln!();
        }
        self.start.elapsed().as_secs_f64()
    }
}
