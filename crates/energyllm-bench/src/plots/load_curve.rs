//! Load curves: energy per request against load for every method, hollow where the method
//! misses the SLO target.

use std::fmt::Write as _;

use super::{axes, escape, open, range, Frame, PALETTE};

/// One method at one load.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadCurvePoint {
    /// The method's name.
    pub method: String,
    /// Load as a share of capacity.
    pub load: f64,
    /// Busy GPU energy per completed request, in joules.
    pub energy_per_request_j: f64,
    /// SLO attainment, in percent.
    pub slo_attainment_pct: f64,
}

/// Energy per request (J) against load (share of capacity), one line per method in the order
/// first seen; a filled marker meets `target_pct`, a hollow one misses it.
pub fn load_curve_svg(title: &str, points: &[LoadCurvePoint], target_pct: f64) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for p in points {
        if !methods.contains(&p.method.as_str()) {
            methods.push(&p.method);
        }
    }
    let f = Frame {
        x: range(points.iter().map(|p| p.load)),
        y: range(points.iter().map(|p| p.energy_per_request_j)),
        left: 80.0,
        top: 40.0,
        width: 560.0,
        height: 380.0,
    };
    let mut svg = String::new();
    open(&mut svg, 900.0, 480.0, title);
    axes(&mut svg, &f, "load (share of capacity)", "energy per request (J)");
    for (i, m) in methods.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut line: Vec<&LoadCurvePoint> = points.iter().filter(|p| p.method == *m).collect();
        line.sort_by(|a, b| a.load.total_cmp(&b.load));
        let path: Vec<String> = line
            .iter()
            .filter(|p| p.energy_per_request_j.is_finite())
            .map(|p| format!("{:.1},{:.1}", f.px(p.load), f.py(p.energy_per_request_j)))
            .collect();
        let _ = writeln!(svg, "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\"/>", path.join(" "));
        for p in line.iter().filter(|p| p.energy_per_request_j.is_finite()) {
            let fill = if p.slo_attainment_pct >= target_pct { color } else { "white" };
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\" stroke=\"{color}\"><title>{}: {:.1} J at \
                 {:.1}% SLO</title></circle>",
                f.px(p.load),
                f.py(p.energy_per_request_j),
                escape(m),
                p.energy_per_request_j,
                p.slo_attainment_pct
            );
        }
        let _ = writeln!(
            svg,
            "<circle cx=\"665\" cy=\"{}\" r=\"5\" fill=\"{color}\"/><text x=\"676\" y=\"{}\">{}</text>",
            53 + 18 * i,
            57 + 18 * i,
            escape(m)
        );
    }
    let y = 57 + 18 * methods.len();
    let _ = writeln!(
        svg,
        "<circle cx=\"665\" cy=\"{}\" r=\"4\" fill=\"white\" stroke=\"#333\"/><text x=\"676\" y=\"{y}\">below the \
         {target_pct}% SLO target</text>",
        y - 4
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_method_and_misses_are_hollow() {
        let p = |method: &str, load: f64, e: f64, slo: f64| LoadCurvePoint {
            method: method.into(),
            load,
            energy_per_request_j: e,
            slo_attainment_pct: slo,
        };
        let svg = load_curve_svg(
            "t",
            &[p("a", 0.2, 10.0, 100.0), p("a", 0.8, 5.0, 98.0), p("b", 0.2, 12.0, 100.0)],
            99.0,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("fill=\"white\" stroke=").count(), 2, "one miss and the legend's marker");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
