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
    fn malformed_lines_are_errors_with_line_numbers() {
        for bad in ["x{a=\"1\" 2", "x notanumber", "{a=\"1\"} 2", "x 1 2 3", "x{a=1} 2"] {
            let e = Metrics::parse(&format!("ok 1\n{bad}\n")).unwrap_err();
            assert_eq!(e.line, 2, "{bad}");
        }
    }
}
