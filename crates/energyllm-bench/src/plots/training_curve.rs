//! The training curve: stacked panels of PPO's progress against environment steps.

use std::fmt::Write as _;

/// Stacked panels, one per `(title, points)` series, against training steps from 0 to
/// `xmax_steps`: the training curve of `cargo xtask train`. Each panel scales its own y axis.
pub fn training_curve_svg(panels: &[(&str, Vec<(f64, f64)>)], xmax_steps: f64) -> String {
    let (w, ph, pad) = (640.0, 160.0, 48.0);
    let height = panels.len() as f64 * (ph + pad) + pad;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" \
         font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let xmax = xmax_steps;
    for (k, (title, pts)) in panels.iter().enumerate() {
        let top = pad + k as f64 * (ph + pad);
        let (lo, hi) =
            pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |m, p| (m.0.min(p.1), m.1.max(p.1)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
        let x = |v: f64| pad + v / xmax * (w - 2.0 * pad);
        let y = |v: f64| top + ph - (v - lo) / (hi - lo) * ph;
        let _ = writeln!(
            s,
            "<text x=\"{pad}\" y=\"{:.1}\">{title} (steps 0–{xmax:.0}; {lo:.3} – {hi:.3})</text>\n\
             <rect x=\"{pad}\" y=\"{top}\" width=\"{:.1}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>",
            top - 6.0,
            w - 2.0 * pad
        );
        let path: Vec<String> = pts.iter().map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b))).collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}
