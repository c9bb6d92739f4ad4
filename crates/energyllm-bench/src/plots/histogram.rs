//! Request-length histograms (`energyllm dataset stats --svg`).

use std::fmt::Write as _;

use super::escape;

const BINS_PER_OCTAVE: f64 = 2.0;

/// Two histogram panels (prompt, output) of token counts on log-spaced bins (two per octave;
/// zero-length requests fall in the first bin).
pub fn length_histogram_svg(title: &str, inputs: &[u32], outputs: &[u32]) -> String {
    let (w, h) = (900.0, 340.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Token lengths: {}</text>",
        w / 2.0,
        escape(title)
    );
    let max_len = inputs.iter().chain(outputs).copied().max().unwrap_or(1).max(1);
    let octaves = (f64::from(max_len)).log2().ceil().max(1.0);
    let nbins = (octaves * BINS_PER_OCTAVE).ceil() as usize;
    for (panel, (label, values, color)) in
        [("prompt (input) tokens", inputs, "#4477aa"), ("output tokens", outputs, "#ee6677")]
            .into_iter()
            .enumerate()
    {
        let x0 = 60.0 + panel as f64 * 440.0;
        let (y0, pw, ph) = (290.0, 380.0, 230.0);
        let mut counts = vec![0u64; nbins];
        for &v in values {
            let b = if v <= 1 { 0 } else { ((f64::from(v)).log2() * BINS_PER_OCTAVE).floor() as usize };
            counts[b.min(nbins - 1)] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let bw = pw / nbins as f64;
        let _ = writeln!(s, "<g>");
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label} (n = {})</text>",
            x0 + pw / 2.0,
            y0 - ph - 12.0,
            values.len()
        );
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let bh = ph * c as f64 / top;
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{c}</title></rect>",
                x0 + i as f64 * bw + 0.5,
                y0 - bh,
                (bw - 1.0).max(0.5),
                bh
            );
        }
        let _ =
            writeln!(s, "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>", x0 + pw);
        let _ =
            writeln!(s, "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{}\" stroke=\"black\"/>", y0 - ph);
        // Ticks at powers of ten on the log axis.
        let mut decade = 1u64;
        while decade as f64 <= 2f64.powf(octaves) {
            let x = x0 + (decade as f64).log2() * BINS_PER_OCTAVE * bw;
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{y0}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"black\"/>",
                y0 + 5.0
            );
            let _ =
                writeln!(s, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{decade}</text>", y0 + 18.0);
            decade *= 10;
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            x0 - 4.0,
            y0 - ph + 4.0,
            top as u64
        );
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>", x0 - 4.0, y0 + 4.0);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">tokens (log scale)</text>",
            x0 + pw / 2.0,
            y0 + 36.0
        );
        let _ = writeln!(s, "</g>");
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_an_svg_with_one_bar_per_filled_bin() {
        let svg = length_histogram_svg("a <b>", &[1, 1, 3, 100], &[8]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Token lengths: a &lt;b&gt;"));
        // Prompt bins: {1,1} → bin 0, 3 → bin 3, 100 → bin 13; output: 8 → bin 6.
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains("<title>2</title>"));
        assert_eq!(svg, length_histogram_svg("a <b>", &[1, 1, 3, 100], &[8]), "deterministic");
    }
}
