//! The Prometheus text exposition format, read just far enough to find an engine's state.
//!
//! Written here rather than taken from a crate: `prometheus-parse` silently drops every metric
//! whose name has a colon (all of vLLM's `vllm:…` and llama.cpp's `llamacpp:…`), and
//! `openmetrics-parser`, which accepts them, is LGPL-3.0 — linking it would put the gateway
//! binary under the LGPL for the sake of a sixty-line line parser. Comment lines (`# HELP`,
//! `# TYPE`) are skipped; each sample line is `name{label="value",…} value [timestamp]`.

use std::collections::BTreeMap;

/// One sample: a metric name, its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, colons included (`vllm:num_requests_running`).
    pub name: String,
    /// Label pairs, in the order given.
    pub labels: Vec<(String, String)>,
    /// The value (`NaN`, `+Inf` and `-Inf` are read as such).
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    samples: Vec<Sample>,
}

/// A line of the page that is not a valid sample.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the metrics page is not `name{{labels}} value`: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line (cut at 200 characters).
    pub text: String,
}

impl Metrics {
    /// Parses a page. A malformed sample line is an error rather than skipped, so that a
    /// format change upstream shows up instead of reading as zeros.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut samples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = || ParseError { line: i + 1, text: line.chars().take(200).collect() };
            samples.push(parse_sample(line).ok_or_else(err)?);
        }
        Ok(Metrics { samples })
    }

    /// Every sample.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The sum over every label set of `name`, or `None` if the page has no such metric.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            *found.get_or_insert(0.0) += s.value;
        }
        found
    }

    /// The first of `names` that the page has, summed over label sets.
    pub fn first_of(&self, names: &[&str]) -> Option<f64> {
        names.iter().find_map(|n| self.sum(n))
    }

    /// Sums per metric name (label sets added up), for a quick look.
    pub fn totals(&self) -> BTreeMap<&str, f64> {
        let mut m = BTreeMap::new();
        for s in &self.samples {
            *m.entry(s.name.as_str()).or_insert(0.0) += s.value;
        }
        m
    }
}

/// A Prometheus histogram (`NAME_bucket{le=…}`, `NAME_sum`, `NAME_count`), its label sets
/// other than `le` added together. Bucket counts are cumulative, as exposed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound, observations ≤ bound)`, by increasing bound; the last bound is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Histogram {
    /// The observations made after `earlier` (a previous scrape of the same histogram): what a
    /// window between two scrapes saw. `None` if the bucket layouts differ or a counter went
    /// down (the server restarted). An empty `earlier` (no buckets) gives the whole histogram.
    pub fn since(&self, earlier: &Histogram) -> Option<Histogram> {
        if earlier.buckets.is_empty() {
            return Some(self.clone());
        }
        if self.buckets.len() != earlier.buckets.len() || self.count < earlier.count {
            return None;
        }
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (&(le, n), &(le0, n0)) in self.buckets.iter().zip(&earlier.buckets) {
            if le != le0 || n < n0 {
                return None;
            }
            buckets.push((le, n - n0));
        }
        Some(Histogram { buckets, sum: self.sum - earlier.sum, count: self.count - earlier.count })
    }

    /// Mean observation, if there is any.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile (0–1), interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does; the lower edge of the first bucket is 0, and a quantile that
    /// falls in the `+Inf` bucket is the largest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        // The +Inf bucket is the total as the buckets count it; `_count` may lag or be missing.
        let total = self.buckets.last().map_or(0.0, |b| b.1);
        if !(0.0..=1.0).contains(&q) || total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lo, mut below, mut finite) = (0.0, 0.0, false);
        for &(le, n) in &self.buckets {
            if n >= rank && n > below {
                if le.is_infinite() {
                    // Only a +Inf bucket (totals, no distribution): no quantile to tell.
                    return finite.then_some(lo);
                }
                return Some(lo + (le - lo) * (rank - below) / (n - below));
            }
            if le.is_finite() {
                lo = le;
                finite = true;
            }
            below = n;
        }
        Some(lo)
    }
}

impl Metrics {
    /// The histogram `name`, or `None` if the page has no `name_bucket` samples.
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let bucket = format!("{name}_bucket");
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let le = s.labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| parse_value(v))?;
            // f64 bounds as ordered keys: every bound is ≥ 0 here, where the bit pattern orders.
            let entry = by_le.entry(le.max(0.0).to_bits()).or_insert((le, 0.0));
            entry.1 += s.value;
        }
        if by_le.is_empty() {
            return None;
        }
        let buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        Some(Histogram {
            buckets,
            sum: self.sum(&format!("{name}_sum")).unwrap_or(0.0),
            count: self.sum(&format!("{name}_count")).unwrap_or(total),
        })
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional timestamp; anything more is malformed.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample { name: name.to_owned(), labels, value })
}

/// Parses `k="v",…}` and returns the labels and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(is_name_char) {
            return None;
        }
        let mut chars = s[eq + 1..].trim_start().char_indices();
        let quoted = &s[eq + 1..].trim_start();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => (value.push('\n'), escaped = false).1,
                (true, c) => (value.push(c), escaped = false).1,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let end = end?;
        labels.push((key.to_owned(), value));
        s = quoted[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colons_labels_escapes_and_specials() {
        let page = "# HELP vllm:num_requests_running Number of requests.\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{model_name=\"m\",engine=\"0\"} 3.0\n\
                    vllm:num_requests_running{model_name=\"m\",engine=\"1\"} 2\n\
                    weird{a=\"x\\\"y,}\" , b=\"z\"} +Inf 1700000000\n\
                    plain 1e-3\n";
        let m = Metrics::parse(page).unwrap();
        assert_eq!(m.sum("vllm:num_requests_running"), Some(5.0));
        assert_eq!(m.samples()[2].labels, vec![("a".into(), "x\"y,}".into()), ("b".into(), "z".into())]);
        assert_eq!(m.sum("weird"), Some(f64::INFINITY));
        assert_eq!(m.sum("plain"), Some(0.001));
        assert_eq!(m.sum("absent"), None);
        assert_eq!(m.first_of(&["absent", "plain"]), Some(0.001));
    }

    #[test]
    fn histograms_merge_label_sets_and_give_quantiles() {
        let page = "vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"a\"} 2\n\
                    vllm:time_to_first_token_seconds_bucket{le=\"0.5\",model_name=\"a\"} 6\n\
                    vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"a\"} 8\n\
                    vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"b\"} 0\n\
                    vllm:time_to_first_token_seconds_bucket{le=\"0.5\",model_name=\"b\"} 2\n\
                    vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"b\"} 2\n\
                    vllm:time_to_first_token_seconds_sum{model_name=\"a\"} 3.0\n\
                    vllm:time_to_first_token_seconds_sum{model_name=\"b\"} 0.6\n\
                    vllm:time_to_first_token_seconds_count{model_name=\"a\"} 8\n\
                    vllm:time_to_first_token_seconds_count{model_name=\"b\"} 2\n";
        let h = Metrics::parse(page).unwrap().histogram("vllm:time_to_first_token_seconds").unwrap();
        assert_eq!(h.buckets, vec![(0.1, 2.0), (0.5, 8.0), (f64::INFINITY, 10.0)]);
        assert_eq!(h.count, 10.0);
        assert!((h.mean().unwrap() - 0.36).abs() < 1e-12);
        // Rank 5 of 10 lies in (0.1, 0.5] with 2 below and 6 inside: 0.1 + 0.4 × 3/6.
        assert!((h.quantile(0.5).unwrap() - 0.3).abs() < 1e-12);
        assert!((h.quantile(0.1).unwrap() - 0.05).abs() < 1e-12);
        // In the +Inf bucket: the largest finite bound.
        assert_eq!(h.quantile(0.99), Some(0.5));
        assert_eq!(h.quantile(1.5), None);

        let earlier =
            Histogram { buckets: vec![(0.1, 2.0), (0.5, 4.0), (f64::INFINITY, 4.0)], sum: 0.8, count: 4.0 };
        let window = h.since(&earlier).unwrap();
        assert_eq!(window.buckets, vec![(0.1, 0.0), (0.5, 4.0), (f64::INFINITY, 6.0)]);
        assert!((window.mean().unwrap() - 2.8 / 6.0).abs() < 1e-12);
        // A restarted server (counts went down) gives no window.
        assert_eq!(earlier.since(&h), None);
        assert_eq!(Metrics::parse("x 1\n").unwrap().histogram("x"), None);
        let totals_only = Histogram { buckets: vec![(f64::INFINITY, 4.0)], sum: 2.0, count: 4.0 };
        assert_eq!((totals_only.mean(), totals_only.quantile(0.5)), (Some(0.5), None));
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        for bad in ["x{a=\"1\" 2", "x notanumber", "{a=\"1\"} 2", "x 1 2 3", "x{a=1} 2"] {
            let e = Metrics::parse(&format!("ok 1\n{bad}\n")).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
        }
    }
}
