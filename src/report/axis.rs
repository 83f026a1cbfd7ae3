//! Plot axes: a data range rounded out to "nice" tick steps (1, 2 or 5 times a power of ten)
//! and tick labels that show just the digits the step needs.

use super::markup::num;

/// A linear axis from `lo` to `hi` with ticks every `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    /// Lower end (a multiple of `step`).
    pub lo: f64,
    /// Upper end (a multiple of `step`), above `lo`.
    pub hi: f64,
    /// Distance between ticks.
    pub step: f64,
}

impl Axis {
    /// The axis covering `[lo, hi]` with about `target` ticks. A degenerate range (one value)
    /// is widened around the value; a non-finite range becomes `[0, 1]`. `integer` axes
    /// (iterations) never step below 1.
    pub fn nice(lo: f64, hi: f64, target: usize, integer: bool) -> Axis {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo.min(hi), lo.max(hi))
        } else {
            (0.0, 1.0)
        };
        let scale = lo.abs().max(hi.abs());
        if hi - lo <= 1e-9 * scale || hi == lo {
            let pad = if integer {
                1.0
            } else if scale > 0.0 {
                0.1 * scale
            } else {
                1.0
            };
            lo -= pad;
            hi += pad;
        }
        let raw = (hi - lo) / target.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let nice = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .find(|&n| n >= f * (1.0 - 1e-9))
            .unwrap_or(10.0);
        let mut step = nice * mag;
        if integer {
            step = step.max(1.0);
        }
        // The small slack keeps a value sitting on a tick from adding a whole extra step.
        let lo_t = (lo / step + 1e-9).floor() * step;
        let hi_t = (hi / step - 1e-9).ceil() * step;
        Axis {
            lo: lo_t,
            hi: if hi_t > lo_t { hi_t } else { lo_t + step },
            step,
        }
    }

    /// The tick values from `lo` to `hi`.
    pub fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round() as usize;
        (0..=n)
            .map(|k| {
                let v = self.lo + k as f64 * self.step;
                // Snap rounding noise (0.30000000000000004, 1e-17) to the intended value.
                let v = (v / self.step).round() * self.step;
                if v.abs() < self.step * 1e-9 { 0.0 } else { v }
            })
            .collect()
    }

    /// Maps `v` from the axis onto `[a, b]` (pixels; `b < a` for a y axis pointing up).
    pub fn map(&self, v: f64, a: f64, b: f64) -> f64 {
        a + (v - self.lo) / (self.hi - self.lo) * (b - a)
    }

    /// The label of tick `v`: as many decimals as the step needs, thousands as `k` on large
    /// integer axes (`30k`), and exponent form for tiny values such as learning rates (`2e-4`).
    pub fn label(&self, v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        let top = self.lo.abs().max(self.hi.abs());
        if self.step < 1e-3 {
            return exp_label(v, self.step);
        }
        if top >= 1e4 && self.step >= 1000.0 {
            return format!("{}k", num(v / 1000.0, decimals(self.step / 1000.0)));
        }
        num(v, decimals(self.step))
    }
}

/// Decimals needed to tell ticks `step` apart.
fn decimals(step: f64) -> usize {
    (-step.log10() - 1e-9).ceil().max(0.0) as usize
}

/// `v` as `m e x` with the mantissa digits a tick step of `step` needs, trailing zeros trimmed.
fn exp_label(v: f64, step: f64) -> String {
    let ev = v.abs().log10().floor();
    let es = step.log10().floor();
    let digits = (ev - es).max(0.0) as usize;
    let s = format!("{v:.digits$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = if m.contains('.') {
                m.trim_end_matches('0').trim_end_matches('.')
            } else {
                m
            };
            format!("{m}e{e}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ranges_cover_the_data_with_round_steps() {
        let a = Axis::nice(0.13, 0.87, 5, false);
        assert_eq!((a.lo, a.hi, a.step), (0.0, 1.0, 0.2));
        assert_eq!(a.ticks().len(), 6);
        assert_eq!(a.label(a.ticks()[3]), "0.6");

        let b = Axis::nice(0.0, 29_000.0, 8, true);
        assert_eq!((b.lo, b.hi, b.step), (0.0, 30_000.0, 5000.0));
        assert_eq!(b.label(15_000.0), "15k");

        let lr = Axis::nice(2e-5, 2e-4, 5, false);
        assert!(lr.lo <= 2e-5 && lr.hi >= 2e-4);
        let labels: Vec<String> = lr.ticks().iter().map(|&v| lr.label(v)).collect();
        assert_eq!(labels, ["0", "5e-5", "1e-4", "1.5e-4", "2e-4"]);
    }

    #[test]
    fn degenerate_and_non_finite_ranges_still_make_an_axis() {
        let one = Axis::nice(2.5, 2.5, 5, false);
        assert!(one.lo < 2.5 && one.hi > 2.5, "{one:?}");
        let zero = Axis::nice(0.0, 0.0, 5, false);
        assert!(zero.lo < 0.0 && zero.hi > 0.0);
        let it = Axis::nice(7.0, 7.0, 5, true);
        assert!(it.step >= 1.0 && it.lo <= 6.0 && it.hi >= 8.0, "{it:?}");
        let nan = Axis::nice(f64::NAN, 1.0, 5, false);
        assert_eq!((nan.lo, nan.hi), (0.0, 1.0));
        let neg = Axis::nice(-0.3, 0.2, 5, false);
        assert!(neg.ticks().contains(&0.0));
        assert_eq!(neg.label(-0.2), "-0.2");
    }

    #[test]
    fn map_is_linear_and_flips_for_y() {
        let a = Axis::nice(0.0, 10.0, 5, false);
        assert_eq!(a.map(0.0, 100.0, 0.0), 100.0);
        assert_eq!(a.map(10.0, 100.0, 0.0), 0.0);
        assert_eq!(a.map(5.0, 0.0, 200.0), 100.0);
    }
}
