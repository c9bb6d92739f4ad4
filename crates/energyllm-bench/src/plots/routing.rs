//! The routing plots: the offline ζ sweep (`energyllm route`) and the online router comparison
//! (`energyllm cluster`).

use std::fmt::Write as _;

use energyllm_core::Slo;
use energyllm_models::route::{Assignment, RouteProblem};
use energyllm_sim::cluster::{ClusterRun, RouterResult};

use super::{axes, escape, open, range, Frame, PALETTE};

/// Every query on one system, ignoring shares: the reference points of the plot.
fn single_system_points(problem: &RouteProblem) -> Vec<(String, Assignment)> {
    (0..problem.systems().len())
        .map(|k| {
            let counts = problem
                .classes()
                .iter()
                .map(|c| (0..problem.systems().len()).map(|j| if j == k { c.count } else { 0 }).collect())
                .collect();
            (format!("all on {}", problem.systems()[k].name), problem.evaluate(1.0, counts))
        })
        .collect()
}

/// Energy (kWh) against mean quality: the sweep as a line with ζ labels, single-system
/// assignments as squares.
pub fn route_svg(problem: &RouteProblem, points: &[Assignment]) -> String {
    let singles = single_system_points(problem);
    let all = || points.iter().chain(singles.iter().map(|(_, a)| a));
    let f = Frame {
        x: range(all().map(|a| a.mean_quality)),
        y: range(all().map(|a| a.energy_j / 3.6e6)),
        left: 80.0,
        top: 40.0,
        width: 560.0,
        height: 380.0,
    };
    let mut svg = String::new();
    open(&mut svg, 900.0, 480.0, "Offline routing: predicted energy vs mean quality over ζ");
    axes(&mut svg, &f, "mean quality", "predicted energy (kWh)");
    let path: Vec<String> = points
        .iter()
        .map(|a| format!("{:.1},{:.1}", f.px(a.mean_quality), f.py(a.energy_j / 3.6e6)))
        .collect();
    let _ =
        writeln!(svg, "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\"/>", path.join(" "), PALETTE[0]);
    // Label a point only when it is clear of the last label: the middle of a sweep bunches up.
    let mut last_label = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (i, a) in points.iter().enumerate() {
        let (x, y) = (f.px(a.mean_quality), f.py(a.energy_j / 3.6e6));
        let _ = writeln!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{}\"/>", PALETTE[0]);
        let clear = (x - last_label.0).hypot(y - last_label.1) > 36.0;
        if clear || i + 1 == points.len() {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">ζ={:.1}</text>",
                x + 6.0,
                y - 6.0,
                a.zeta
            );
            last_label = (x, y);
        }
    }
    let _ = writeln!(
        svg,
        "<circle cx=\"665\" cy=\"53\" r=\"5\" fill=\"{}\"/><text x=\"676\" y=\"57\">optimal routing</text>",
        PALETTE[0]
    );
    for (i, (name, a)) in singles.iter().enumerate() {
        let color = PALETTE[(i + 1) % PALETTE.len()];
        let (x, y) = (f.px(a.mean_quality), f.py(a.energy_j / 3.6e6));
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
             <rect x=\"660\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"676\" y=\"{}\">{}</text>",
            x - 5.0,
            y - 5.0,
            66 + 18 * i,
            75 + 18 * i,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Energy per request against SLO attainment, one point per router (means over runs): up and
/// to the left is better.
pub fn cluster_svg(results: &[RouterResult], slo: &Slo) -> String {
    let pts: Vec<(&str, f64, f64)> = results
        .iter()
        .map(|r| {
            let n = r.runs.len().max(1) as f64;
            let energy = r.runs.iter().map(ClusterRun::energy_per_request_j).sum::<f64>() / n;
            let att = r.runs.iter().map(|run| run.slo_attainment_pct(slo)).sum::<f64>() / n;
            (r.router.as_str(), energy, att)
        })
        .collect();
    let f = Frame {
        x: range(pts.iter().map(|p| p.1)),
        y: range(pts.iter().map(|p| p.2)),
        left: 80.0,
        top: 40.0,
        width: 560.0,
        height: 380.0,
    };
    let mut svg = String::new();
    open(&mut svg, 900.0, 480.0, "Cluster routing: energy per request vs SLO attainment");
    axes(&mut svg, &f, "energy per request (J)", "SLO attainment (%)");
    for (i, (name, energy, att)) in pts.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/>\
             <circle cx=\"665\" cy=\"{}\" r=\"5\" fill=\"{color}\"/><text x=\"676\" y=\"{}\">{}</text>",
            f.px(*energy),
            f.py(*att),
            53 + 18 * i,
            57 + 18 * i,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
