//! Fields of a trace record: CSV columns, token counts, seconds and calendar dates, each
//! refused with the field's name and what was wrong.

use std::path::Path;

use super::{TraceFormat, TraceRecord};
use crate::{Error, MAX_TOKENS_PER_FIELD};

pub(super) fn csv_fatal(path: &Path, line: usize, e: &csv::Error) -> Error {
    Error::WorkloadLine { path: path.to_owned(), line, reason: format!("cannot read CSV: {e}") }
}

/// Column indices of a CSV trace.
pub(super) struct CsvColumns {
    format: TraceFormat,
    time: Option<usize>,
    input: usize,
    output: usize,
    names: [&'static str; 3],
}

impl CsvColumns {
    pub(super) fn find(format: TraceFormat, headers: &csv::ByteRecord) -> Result<Self, String> {
        let names: [&'static str; 3] = match format {
            TraceFormat::Azure => ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
            _ => ["arrived_at", "num_prefill_tokens", "num_decode_tokens"],
        };
        let find = |name: &str| {
            headers.iter().position(|h| {
                String::from_utf8_lossy(h).trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(name)
            })
        };
        let found: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                format!("the {format} header has no column `{name}` (columns: {})", found.join(", "))
            })
        };
        let time = match format {
            // Vidur's length-only files (e.g. the arXiv summarisation lengths) have no time column.
            TraceFormat::Splitwise => find(names[0]),
            _ => Some(need(names[0])?),
        };
        Ok(CsvColumns { format, time, input: need(names[1])?, output: need(names[2])?, names })
    }

    pub(super) fn parse(&self, record: &csv::ByteRecord) -> Result<TraceRecord, String> {
        let field = |i: usize, name: &str| -> Result<&str, String> {
            let raw = record.get(i).ok_or_else(|| format!("missing field `{name}`"))?;
            std::str::from_utf8(raw).map_err(|_| format!("`{name}` is not UTF-8"))
        };
        let arrival_s = match self.time {
            None => None,
            Some(i) => {
                let text = field(i, self.names[0])?;
                let t = match self.format {
                    TraceFormat::Azure => parse_datetime_s(text).ok_or_else(|| {
                        format!(
                            "`{}` = {text:?} is not a date and time like 2023-11-16 18:15:46.6805900",
                            self.names[0]
                        )
                    })?,
                    _ => parse_seconds(text, self.names[0])?,
                };
                Some(t)
            }
        };
        let input_len = parse_tokens(field(self.input, self.names[1])?, self.names[1])?;
        let output_len = parse_tokens(field(self.output, self.names[2])?, self.names[2])?;
        Ok(TraceRecord { arrival_s, input_len, output_len })
    }
}

pub(super) fn parse_seconds(text: &str, name: &str) -> Result<f64, String> {
    let t: f64 = text.parse().map_err(|_| format!("`{name}` = {text:?} is not a number of seconds"))?;
    if !t.is_finite() || t < 0.0 {
        return Err(format!("`{name}` = {text} must be a finite, non-negative time"));
    }
    Ok(t)
}

/// A token count: a non-negative integer (written `12` or `12.0`) no larger than
/// [`MAX_TOKENS_PER_FIELD`].
pub(super) fn parse_tokens(text: &str, name: &str) -> Result<u32, String> {
    let n = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => match text.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 => x as u64,
            _ => return Err(format!("`{name}` must be a non-negative integer, got {text:?}")),
        },
    };
    check_tokens(n, name)
}

pub(super) fn check_tokens(n: u64, name: &str) -> Result<u32, String> {
    if n > MAX_TOKENS_PER_FIELD {
        return Err(format!("`{name}` = {n} tokens is implausibly large (limit {MAX_TOKENS_PER_FIELD})"));
    }
    Ok(n as u32)
}

pub(super) fn json_tokens(o: &serde_json::Map<String, serde_json::Value>, name: &str) -> Result<u32, String> {
    let v = o.get(name).ok_or_else(|| format!("missing field `{name}`"))?;
    let n = v.as_u64().ok_or_else(|| format!("`{name}` must be a non-negative integer, got {v}"))?;
    check_tokens(n, name)
}

pub(super) fn json_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        Ok(other) => Err(format!("not a JSON object: {}", kind_of(&other))),
        Err(e) => Err(format!("not a JSON object: {e}")),
    }
}

pub(super) fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub(super) fn parse_energyllm_line(text: &str) -> Result<TraceRecord, String> {
    let o = json_object(text)?;
    let input_len = json_tokens(&o, "input_len")?;
    let output_len = json_tokens(&o, "output_len")?;
    let arrival_s = match o.get("arrival_s") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Some(t),
            _ => return Err(format!("`arrival_s` must be a non-negative number of seconds, got {v}")),
        },
    };
    Ok(TraceRecord { arrival_s, input_len, output_len })
}

pub(super) fn parse_mooncake_line(text: &str) -> Result<TraceRecord, String> {
    let o = json_object(text)?;
    let v = o.get("timestamp").ok_or("missing field `timestamp`")?;
    let ms = v
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or_else(|| format!("`timestamp` must be a non-negative number of milliseconds, got {v}"))?;
    Ok(TraceRecord {
        arrival_s: Some(ms / 1000.0),
        input_len: json_tokens(&o, "input_length")?,
        output_len: json_tokens(&o, "output_length")?,
    })
}

/// Seconds since 1970-01-01 UTC of `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|±HH:MM]` (the Azure
/// traces' `2023-11-16 18:15:46.6805900`, WildChat's `2023-04-09T00:02:53Z`). `None` if it is not
/// of that form.
pub fn parse_datetime_s(text: &str) -> Option<f64> {
    let s = text.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    // Parquet's row API writes "… 00:02:53 +00:00", with a space before the offset.
    if rest.len() == 7 && rest.starts_with(' ') {
        rest = &rest[1..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        tz if (tz.starts_with('+') || tz.starts_with('-')) && tz.len() == 6 && tz.as_bytes()[3] == b':' => {
            let h: i64 = tz.get(1..3)?.parse().ok()?;
            let m: i64 = tz.get(4..6)?.parse().ok()?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs as f64 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
