//! Small hand-written SVG line charts for the sweep reports (metric vs batch size or λ, one line
//! per series), readable in any browser without a plotting stack.

use std::fmt::Write;

/// One line of a chart.
pub struct Series {
    pub name: String,
    /// (x, y) points; non-finite y values are skipped.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A line chart with a log₁₀ x axis (batch sizes, λ) and a linear y axis from 0 to `y_max`.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, y_max: f64, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (560.0, 360.0, 60.0, 170.0, 36.0, 48.0);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| *x > 0.0)
        .collect();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min).log10().floor();
    let hi = xs
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let px = |x: f64| left + (x.log10() - lo) / (hi - lo) * (w - left - right);
    let py = |y: f64| top + (1.0 - y / y_max) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        (w - right + left) / 2.0,
        esc(title)
    );
    for k in 0..=4 {
        let y = y_max * k as f64 / 4.0;
        let (x2, yy, tx) = (w - right, py(y), left - 6.0);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{x2}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{tx}" y="{}" text-anchor="end">{y}</text>"##,
            yy + 4.0
        );
    }
    for e in lo as i32..=hi as i32 {
        let x = px(10f64.powi(e));
        let _ = write!(
            s,
            r##"<line x1="{x}" x2="{x}" y1="{top}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
            h - bottom,
            h - bottom + 16.0,
            10f64.powi(e)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (w - right + left) / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (h - bottom + top) / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = ser
            .points
            .iter()
            .copied()
            .filter(|p| p.0 > 0.0 && p.1.is_finite())
            .collect();
        let path: Vec<String> = pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in &pts {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#, px(x), py(y));
        }
        let ly = top + 16.0 * i as f64 + 8.0;
        let _ = write!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            w - right + 10.0,
            w - right + 28.0,
            w - right + 32.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_line_per_series_and_escapes_names() {
        let svg = line_chart(
            "ES vs batch size",
            "batch size",
            "ES",
            100.0,
            &[
                Series {
                    name: "rome <1>".into(),
                    points: vec![(1.0, 100.0), (16.0, 90.0)],
                },
                Series {
                    name: "emmet".into(),
                    points: vec![(1.0, 100.0), (16.0, f64::NAN)],
                },
            ],
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("rome &lt;1&gt;"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
