//! Axis scales for the page's SVG charts.

/// Maps a data interval onto a pixel interval, linearly or in log₁₀.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// Data range.
    pub domain: (f64, f64),
    /// Pixel range (may run backwards, as y axes do).
    pub range: (f64, f64),
    /// Logarithmic.
    pub log: bool,
}

impl Scale {
    /// A linear scale.
    pub fn linear(domain: (f64, f64), range: (f64, f64)) -> Self {
        Self {
            domain: widen(domain),
            range,
            log: false,
        }
    }

    /// A log₁₀ scale over whole decades covering `domain` (positive values).
    pub fn log(domain: (f64, f64), range: (f64, f64)) -> Self {
        let lo = domain.0.max(f64::MIN_POSITIVE).log10().floor();
        let hi = domain.1.max(f64::MIN_POSITIVE).log10().ceil();
        Self {
            domain: (10f64.powf(lo), 10f64.powf(if hi > lo { hi } else { lo + 1.0 })),
            range,
            log: true,
        }
    }

    /// Pixel position of `x` (clamped to the range).
    pub fn map(&self, x: f64) -> f64 {
        let (a, b) = if self.log {
            (self.domain.0.log10(), self.domain.1.log10())
        } else {
            self.domain
        };
        let v = if self.log { x.max(f64::MIN_POSITIVE).log10() } else { x };
        let t = ((v - a) / (b - a)).clamp(0.0, 1.0);
        self.range.0 + t * (self.range.1 - self.range.0)
    }

    /// Tick values: each decade for log scales, about `n` round steps for linear ones.
    pub fn ticks(&self, n: usize) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.domain.0.log10().round() as i32,
                self.domain.1.log10().round() as i32,
            );
            return (a..=b).map(|e| 10f64.powi(e)).collect();
        }
        let span = self.domain.1 - self.domain.0;
        let raw = span / n.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let first = (self.domain.0 / step).ceil() as i64;
        let last = (self.domain.1 / step).floor() as i64;
        (first..=last).map(|k| k as f64 * step).collect()
    }
}

fn widen((a, b): (f64, f64)) -> (f64, f64) {
    if !(a.is_finite() && b.is_finite()) {
        (0.0, 1.0)
    } else if b > a {
        (a, b)
    } else {
        (a - 0.5, a + 0.5)
    }
}

/// Short label for a tick value (1e-3, 0.5, 20, 1e4).
pub fn tick_label(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-2) {
        format!("1e{}", x.abs().log10().round() as i32)
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

/// A duration for people: "840 ms", "12.3 s", "2 min 14 s".
pub fn duration_label(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "?".into();
    }
    if ms < 1e3 {
        format!("{ms:.0} ms")
    } else if ms < 60e3 {
        format!("{:.1} s", ms / 1e3)
    } else {
        let s = (ms / 1e3).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// A request's timed steps in one line: "editing 12.3 s · generating after the edit 840 ms".
pub fn phases_label(phases: &[(String, f64)]) -> String {
    phases
        .iter()
        .map(|(name, ms)| format!("{name} {}", duration_label(*ms)))
        .collect::<Vec<_>>()
        .join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_right_unit() {
        assert_eq!(duration_label(840.4), "840 ms");
        assert_eq!(duration_label(12_345.0), "12.3 s");
        assert_eq!(duration_label(133_836.0), "2 min 14 s");
        assert_eq!(duration_label(f64::NAN), "?");
    }

    #[test]
    fn phases_read_in_order_with_their_times() {
        let phases = [
            ("editing".to_string(), 12_345.0),
            ("generating after the edit".to_string(), 840.4),
        ];
        assert_eq!(
            phases_label(&phases),
            "editing 12.3 s · generating after the edit 840 ms"
        );
        assert_eq!(phases_label(&[]), "");
    }

    #[test]
    fn linear_maps_ends_and_middle_and_clamps() {
        let s = Scale::linear((0.0, 100.0), (200.0, 0.0));
        assert_eq!(s.map(0.0), 200.0);
        assert_eq!(s.map(100.0), 0.0);
        assert_eq!(s.map(25.0), 150.0);
        assert_eq!(s.map(-5.0), 200.0);
        assert_eq!(s.ticks(5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        // A degenerate domain still maps (the middle).
        assert_eq!(Scale::linear((3.0, 3.0), (0.0, 10.0)).map(3.0), 5.0);
    }

    #[test]
    fn log_covers_whole_decades() {
        let s = Scale::log((3.0, 2000.0), (0.0, 300.0));
        assert_eq!(s.domain, (1.0, 10000.0));
        assert_eq!(s.ticks(0), vec![1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert!((s.map(100.0) - 150.0).abs() < 1e-9);
        assert_eq!(tick_label(1e4), "1e4");
        assert_eq!(tick_label(100.0), "100");
        assert_eq!(tick_label(0.5), "0.5");
    }
}
