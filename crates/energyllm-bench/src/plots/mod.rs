//! Every SVG the project writes, drawn by one module: an evaluation's energy–SLO Pareto view,
//! per-method bars and each method's timeline with its SLO misses (here), request-length histograms ([`histogram`]), the
//! training curve ([`training_curve`]) and the routing plots ([`routing`]).
//!
//! Hand-written SVG rather than plotters: plotters lays text out with a font engine (its `ttf`
//! feature loads system fonts through font-kit), which a headless CI machine may not have, while
//! these charts need only rectangles, lines and `<text>`; the output is also byte-for-byte
//! reproducible.

mod histogram;
mod load_curve;
mod routing;
mod training_curve;

pub use histogram::length_histogram_svg;
pub use load_curve::{load_curve_svg, LoadCurvePoint};
pub use routing::{cluster_svg, route_svg};
pub use training_curve::training_curve_svg;

use std::fmt::Write as _;

use crate::eval::MethodResult;
use crate::report::{is_reference, mean_ci95};
use energyllm_sim::simulation::TimelinePoint;

pub(crate) const PALETTE: [&str; 14] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
    "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a",
];

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A plotting area mapping data coordinates onto the page.
pub(crate) struct Frame {
    pub(crate) x: (f64, f64),
    pub(crate) y: (f64, f64),
    pub(crate) left: f64,
    pub(crate) top: f64,
    pub(crate) width: f64,
    pub(crate) height: f64,
}

impl Frame {
    pub(crate) fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.width
    }
    pub(crate) fn py(&self, y: f64) -> f64 {
        self.top + self.height - (y - self.y.0) / (self.y.1 - self.y.0) * self.height
    }
}

/// Round tick positions covering `[lo, hi]`.
pub(crate) fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 6.0).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// Padded range of `values` (a unit range around a single value).
pub(crate) fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-9);
    (lo - pad, hi + pad)
}

pub(crate) fn open(svg: &mut String, width: f64, height: f64, title: &str) {
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        width / 2.0,
        escape(title)
    );
}

pub(crate) fn axes(svg: &mut String, f: &Frame, x_label: &str, y_label: &str) {
    let (x0, x1, y0) = (f.left, f.left + f.width, f.top);
    frame_and_x_ticks(svg, f);
    for t in ticks(f.y.0, f.y.1) {
        let y = f.py(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{x0}\" y2=\"{y:.1}\" stroke=\"#333\"/><line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    x_label_below(svg, f, x_label);
    let _ = writeln!(
        svg,
        "<text transform=\"translate({:.1},{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        x0 - 52.0,
        y0 + f.height / 2.0,
        escape(y_label)
    );
}

/// A frame's box and x ticks, and the x label: a strip of marks, without a value axis.
fn x_axis(svg: &mut String, f: &Frame, x_label: &str) {
    frame_and_x_ticks(svg, f);
    x_label_below(svg, f, x_label);
}

fn frame_and_x_ticks(svg: &mut String, f: &Frame) {
    let y1 = f.top + f.height;
    let _ = writeln!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
        f.left, f.top, f.width, f.height
    );
    for t in ticks(f.x.0, f.x.1) {
        let x = f.px(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{y1}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y1 + 5.0,
            y1 + 18.0,
            fmt_tick(t)
        );
    }
}

fn x_label_below(svg: &mut String, f: &Frame, x_label: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        f.left + f.width / 2.0,
        f.top + f.height + 36.0,
        escape(x_label)
    );
}

fn fmt_tick(t: f64) -> String {
    // Ticks computed as multiples of a step can land on −0.
    let t = if t == 0.0 { 0.0 } else { t };
    if t.abs() >= 100.0 || t.fract().abs() < 1e-9 {
        format!("{t:.0}")
    } else {
        format!("{t:.2}").trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Energy per request against SLO attainment, one point per method (means over runs, with 95%
/// intervals as whiskers): down and to the right is better.
pub fn pareto_svg(results: &[MethodResult]) -> String {
    // (method, SLO attainment mean ± CI, energy per request mean ± CI)
    type Point<'a> = (&'a str, (f64, f64), (f64, f64));
    let pts: Vec<Point> = results
        .iter()
        .map(|m| {
            let slo = mean_ci95(&m.runs.iter().map(|r| r.slo_attainment_pct).collect::<Vec<_>>());
            let energy = mean_ci95(&m.runs.iter().map(|r| r.energy_per_request_j).collect::<Vec<_>>());
            (m.summary.method.as_str(), slo, energy)
        })
        .collect();
    let f = Frame {
        x: range(pts.iter().map(|p| p.1 .0)),
        y: range(pts.iter().flat_map(|p| [p.2 .0 - p.2 .1.max(0.0), p.2 .0 + p.2 .1.max(0.0)])),
        left: 80.0,
        top: 40.0,
        width: 560.0,
        height: 380.0,
    };
    let mut svg = String::new();
    open(&mut svg, 900.0, 480.0, "Energy per request vs SLO attainment (mean ± 95% CI over runs)");
    axes(&mut svg, &f, "SLO attainment (%)", "GPU energy per request (J)");
    for (i, (name, slo, energy)) in pts.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let (x, y) = (f.px(slo.0), f.py(energy.0));
        if energy.1.is_finite() {
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{color}\"/>",
                f.py(energy.0 - energy.1),
                f.py(energy.0 + energy.1)
            );
        }
        let shape = if is_reference(name) {
            format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/>",
                x - 5.0,
                y - 5.0
            )
        } else {
            format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"{color}\"/>")
        };
        let _ = writeln!(
            svg,
            "{shape}<rect x=\"660\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"676\" y=\"{}\">{}</text>",
            48 + 18 * i,
            57 + 18 * i,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Mean energy per request for each method, as bars with 95% interval whiskers.
pub fn energy_bars_svg(results: &[MethodResult]) -> String {
    let stats: Vec<(f64, f64)> = results
        .iter()
        .map(|m| mean_ci95(&m.runs.iter().map(|r| r.energy_per_request_j).collect::<Vec<_>>()))
        .collect();
    let top = stats.iter().map(|s| s.0 + s.1.max(0.0)).fold(0.0, f64::max).max(1e-9) * 1.1;
    let n = results.len().max(1) as f64;
    let f = Frame { x: (0.0, n), y: (0.0, top), left: 80.0, top: 40.0, width: 60.0 * n, height: 320.0 };
    let mut svg = String::new();
    open(&mut svg, 140.0 + 60.0 * n, 520.0, "GPU energy per request by method (mean ± 95% CI)");
    let _ = writeln!(
        svg,
        "<rect x=\"80\" y=\"40\" width=\"{}\" height=\"320\" fill=\"none\" stroke=\"#333\"/>",
        f.width
    );
    for t in ticks(0.0, top) {
        let y = f.py(t);
        let _ = writeln!(
            svg,
            "<line x1=\"80\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"72\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            80.0 + f.width,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = writeln!(
        svg,
        "<text transform=\"translate(28,200) rotate(-90)\" text-anchor=\"middle\">J per request</text>"
    );
    for (i, (m, (mean, ci))) in results.iter().zip(&stats).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let (x0, x1) = (f.px(i as f64 + 0.15), f.px(i as f64 + 0.85));
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
            f.py(*mean),
            x1 - x0,
            f.py(0.0) - f.py(*mean)
        );
        if ci.is_finite() {
            let xm = (x0 + x1) / 2.0;
            let _ = writeln!(
                svg,
                "<line x1=\"{xm:.1}\" y1=\"{:.1}\" x2=\"{xm:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>",
                f.py(mean - ci),
                f.py(mean + ci)
            );
        }
        let xm = (x0 + x1) / 2.0;
        let _ = writeln!(
            svg,
            "<text transform=\"translate({xm:.1},372) rotate(50)\" text-anchor=\"start\">{}</text>",
            escape(&m.summary.method)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One run's clock, batch cap, queue length and power over time, in four stacked panels, over a
/// strip that marks each request that missed its SLO at the instant it ended (`misses_s`, in
/// simulated seconds) out of `requests` that ended in the run.
pub fn timeline_svg(method: &str, timeline: &[TimelinePoint], misses_s: &[f64], requests: usize) -> String {
    type Get = fn(&TimelinePoint) -> f64;
    let panels: [(&str, Get); 4] = [
        ("clock (MHz)", |p| f64::from(p.freq_mhz)),
        ("batch cap", |p| f64::from(p.batch_cap)),
        ("queue length", |p| p.queue_len as f64),
        ("power (W)", |p| p.power_w),
    ];
    const PANEL_H: f64 = 150.0;
    const STRIP_H: f64 = 34.0;
    let t_end = timeline
        .last()
        .map_or(1.0, |p| p.time_s)
        .max(misses_s.iter().copied().filter(|t| t.is_finite()).fold(0.0, f64::max))
        .max(1e-9);
    let mut svg = String::new();
    let strip_top = 40.0 + PANEL_H * panels.len() as f64 + 12.0;
    open(&mut svg, 820.0, strip_top + STRIP_H + 60.0, &format!("Timeline of one run: {method}"));
    for (k, (label, get)) in panels.iter().enumerate() {
        let f = Frame {
            x: (0.0, t_end),
            y: range(timeline.iter().map(get).chain([0.0])),
            left: 90.0,
            top: 40.0 + PANEL_H * k as f64,
            width: 680.0,
            height: 105.0,
        };
        axes(&mut svg, &f, "", label);
        // Piecewise constant between decision epochs.
        let mut d = String::new();
        for (i, p) in timeline.iter().enumerate() {
            let (x, y) = (f.px(p.time_s), f.py(get(p)));
            let _ = if i == 0 { write!(d, "M{x:.1},{y:.1}") } else { write!(d, " H{x:.1} V{y:.1}") };
        }
        let _ =
            writeln!(svg, "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"/>", PALETTE[k]);
    }
    // The SLO strip: one red tick per missed request, so misses line up with the clock and queue
    // above them.
    let f =
        Frame { x: (0.0, t_end), y: (0.0, 1.0), left: 90.0, top: strip_top, width: 680.0, height: STRIP_H };
    x_axis(&mut svg, &f, "time (s)");
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">SLO misses</text>",
        f.left - 8.0,
        f.top + STRIP_H / 2.0 + 4.0
    );
    let mut d = String::new();
    for &t in misses_s.iter().filter(|t| t.is_finite()) {
        let _ = write!(d, "M{:.1},{:.1}V{:.1}", f.px(t), f.top + 3.0, f.top + STRIP_H - 3.0);
    }
    if !d.is_empty() {
        let _ = writeln!(svg, "<path d=\"{d}\" stroke=\"#d62728\" stroke-width=\"1\" opacity=\"0.6\"/>");
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{} of {requests} requests missed the SLO (red: when each ended)</text>",
        f.left + f.width,
        f.top - 3.0,
        misses_s.len()
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(81.3, 90.7);
        assert!(t.first().is_some_and(|&v| v >= 81.3) && t.last().is_some_and(|&v| v <= 90.7), "{t:?}");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(1400.0), "1400");
        assert_eq!(fmt_tick(-0.0), "0");
    }

    #[test]
    fn a_timeline_has_one_path_per_panel() {
        let p = |t: f64, f: u32| TimelinePoint {
            time_s: t,
            freq_mhz: f,
            batch_cap: 8,
            queue_len: 2,
            running: 1,
            power_w: 150.0,
        };
        let svg = timeline_svg("x<y", &[p(0.0, 1410), p(1.0, 810), p(2.0, 1005)], &[], 3);
        assert_eq!(svg.matches("<path").count(), 4);
        assert!(svg.contains("x&lt;y") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("0 of 3 requests missed"), "{svg}");
        // Each miss is one red tick in the strip, all in one path.
        let svg = timeline_svg("m", &[p(0.0, 1410), p(2.0, 810)], &[0.5, 1.5], 3);
        assert_eq!(svg.matches("<path").count(), 5);
        let strip = svg.split("#d62728").next().and_then(|s| s.rsplit("<path d=\"").next()).unwrap_or("");
        assert_eq!(strip.matches('M').count(), 2, "{strip}");
        assert!(svg.contains("2 of 3 requests missed"));
    }
}
