//! Request traces and length files in the formats people share, read as a stream of records.
//!
//! | format | file | time | lengths |
//! |---|---|---|---|
//! | `energyllm` | JSON lines | `arrival_s` (seconds, optional) | `input_len`, `output_len` |
//! | `mooncake` | JSON lines | `timestamp` (milliseconds) | `input_length`, `output_length` |
//! | `azure` | CSV | `TIMESTAMP` (date and time) | `ContextTokens`, `GeneratedTokens` |
//! | `splitwise` | CSV (Splitwise/Vidur) | `arrived_at` (seconds, optional column) | `num_prefill_tokens`, `num_decode_tokens` |
//!
//! The format is detected from the first non-blank line (JSON keys or CSV header) unless the caller
//! names it. Every bad line is reported with the file, line and field; with `skip_invalid` it is
//! counted and skipped instead. Records reach the caller one at a time, so a reader never holds
//! more than one line.

mod fields;
mod replay;

pub use fields::parse_datetime_s;
use fields::*;
pub use replay::Replay;

use std::io::{BufRead, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::{LengthDataset, LengthSample};

/// One request as a trace or length file gives it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Arrival time in seconds, in the file's own time base (not yet shifted to start at 0);
    /// `None` when the file has no time column.
    pub arrival_s: Option<f64>,
    /// Prompt tokens.
    pub input_len: u32,
    /// Output tokens.
    pub output_len: u32,
}

/// A trace or length file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceFormat {
    /// EnergyLLM JSON lines: `{"input_len", "output_len"}`, optional `arrival_s` (seconds).
    Energyllm,
    /// Mooncake JSON lines: `{"timestamp" (ms), "input_length", "output_length"}`.
    Mooncake,
    /// Azure LLM inference CSV: `TIMESTAMP,ContextTokens,GeneratedTokens`.
    Azure,
    /// Splitwise/Vidur CSV: `arrived_at` (s, optional), `num_prefill_tokens`, `num_decode_tokens`.
    Splitwise,
}

impl TraceFormat {
    /// Every format, in the order the command line lists them.
    pub const ALL: [TraceFormat; 4] =
        [TraceFormat::Energyllm, TraceFormat::Mooncake, TraceFormat::Azure, TraceFormat::Splitwise];

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Energyllm => "energyllm",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::Azure => "azure",
            TraceFormat::Splitwise => "splitwise",
        }
    }

    /// Guesses the format from the first non-blank line of a file: JSON keys for the JSON-lines
    /// formats, the header for the CSV ones.
    pub fn detect(first_line: &str) -> Option<TraceFormat> {
        let line = first_line.trim_start_matches('\u{feff}').trim();
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let o = v.as_object()?;
            if o.contains_key("input_length") || o.contains_key("timestamp") {
                return Some(TraceFormat::Mooncake);
            }
            if o.contains_key("input_len") || o.contains_key("output_len") {
                return Some(TraceFormat::Energyllm);
            }
            return None;
        }
        let header: Vec<String> =
            line.split(',').map(|h| h.trim().trim_matches('"').to_ascii_lowercase()).collect();
        let has = |name: &str| header.iter().any(|h| h == name);
        if has("contexttokens") || has("generatedtokens") {
            Some(TraceFormat::Azure)
        } else if has("num_prefill_tokens") || has("num_decode_tokens") {
            Some(TraceFormat::Splitwise)
        } else {
            None
        }
    }
}

impl std::fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to read a trace or length file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The format; `None` (the default) detects it from the content.
    pub format: Option<TraceFormat>,
    /// Count and skip bad lines instead of failing on the first one (default false).
    pub skip_invalid: bool,
}

/// What reading a file found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadReport {
    /// The format read (detected or given).
    pub format: Option<TraceFormat>,
    /// Records accepted.
    pub records: u64,
    /// Bad lines skipped (only with `skip_invalid`).
    pub skipped: u64,
    /// The first skipped line's error, to show the user what was wrong.
    pub first_skipped: Option<String>,
}

impl ReadReport {
    /// A one-line note about skipped lines, or `None` when nothing was skipped.
    pub fn skipped_note(&self) -> Option<String> {
        (self.skipped > 0).then(|| {
            format!(
                "skipped {} invalid line(s); the first: {}",
                self.skipped,
                self.first_skipped.as_deref().unwrap_or("?")
            )
        })
    }
}

/// Reads records from `reader` (whose name in errors is `path`) and hands each to `sink` with its
/// 1-based line number. `sink` returns `Err(reason)` to reject a record (for example a timestamp
/// that goes back); the rejection is treated like any other bad line.
pub fn read_records(
    mut reader: impl BufRead,
    path: &Path,
    opts: &ReadOptions,
    mut sink: impl FnMut(TraceRecord, usize) -> Result<(), String>,
) -> Result<ReadReport, Error> {
    let io_err = |source| Error::Io { path: path.to_owned(), source };
    // Find the first non-blank line to detect the format; keep it to parse as data or header.
    let mut first = Vec::new();
    let mut first_line_no = 0usize;
    loop {
        first.clear();
        if reader.read_until(b'\n', &mut first).map_err(io_err)? == 0 {
            break;
        }
        first_line_no += 1;
        if !first.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    if first.is_empty() || first.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Workload {
            name: path.display().to_string(),
            reason: "no requests in the file".into(),
        });
    }
    let first_text = String::from_utf8_lossy(&first).into_owned();
    let format = match opts.format {
        Some(f) => f,
        None => TraceFormat::detect(&first_text).ok_or_else(|| Error::WorkloadLine {
            path: path.to_owned(),
            line: first_line_no,
            reason: "cannot tell the format from this line: expected JSON lines with `input_len`/`output_len` \
                     (energyllm) or `timestamp`/`input_length`/`output_length` (mooncake), or a CSV header with \
                     `ContextTokens` (azure) or `num_prefill_tokens` (splitwise); name the format (`eval --trace-format`, \
                     `dataset stats --format`)"
                .into(),
        })?,
    };
    let mut report = ReadReport { format: Some(format), ..ReadReport::default() };
    let mut accept =
        |line: usize, parsed: Result<TraceRecord, String>, report: &mut ReadReport| -> Result<(), Error> {
            let result = parsed.and_then(|r| sink(r, line));
            match result {
                Ok(()) => {
                    report.records += 1;
                    Ok(())
                }
                Err(reason) => {
                    let e = Error::WorkloadLine { path: path.to_owned(), line, reason };
                    if opts.skip_invalid {
                        report.skipped += 1;
                        if report.first_skipped.is_none() {
                            report.first_skipped = Some(e.to_string());
                        }
                        Ok(())
                    } else {
                        Err(e)
                    }
                }
            }
        };
    match format {
        TraceFormat::Energyllm | TraceFormat::Mooncake => {
            let parse = |bytes: &[u8]| -> Result<TraceRecord, String> {
                let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
                if format == TraceFormat::Energyllm {
                    parse_energyllm_line(text)
                } else {
                    parse_mooncake_line(text)
                }
            };
            accept(first_line_no, parse(&first), &mut report)?;
            let mut line_no = first_line_no;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
                    break;
                }
                line_no += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                accept(line_no, parse(&buf), &mut report)?;
            }
        }
        TraceFormat::Azure | TraceFormat::Splitwise => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(false)
                .trim(csv::Trim::All)
                .from_reader(std::io::Cursor::new(first).chain(reader));
            let headers = csv.byte_headers().map_err(|e| csv_fatal(path, first_line_no, &e))?.clone();
            let columns = CsvColumns::find(format, &headers).map_err(|reason| Error::WorkloadLine {
                path: path.to_owned(),
                line: first_line_no,
                reason,
            })?;
            let mut record = csv::ByteRecord::new();
            loop {
                match csv.read_byte_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = first_line_no - 1 + record.position().map_or(0, |p| p.line() as usize);
                        accept(line, columns.parse(&record), &mut report)?;
                    }
                    Err(e) => {
                        let line = first_line_no - 1 + e.position().map_or(0, |p| p.line() as usize);
                        match e.kind() {
                            csv::ErrorKind::Io(_) => return Err(csv_fatal(path, line, &e)),
                            _ => accept(line, Err(format!("malformed CSV row: {e}")), &mut report)?,
                        }
                    }
                }
            }
        }
    }
    if report.records == 0 {
        let mut reason = "no requests in the file".to_owned();
        if let Some(note) = report.skipped_note() {
            reason = format!("no valid requests ({note})");
        }
        return Err(Error::Workload { name: path.display().to_string(), reason });
    }
    Ok(report)
}

/// One request of a trace, its arrival shifted so that the trace starts at 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Seconds since the trace's first arrival.
    pub arrival_s: f64,
    /// Prompt tokens.
    pub input_len: u32,
    /// Output tokens.
    pub output_len: u32,
}

/// A request trace: arrival times and lengths, in arrival order, starting at 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// File path or built-in name, for reports.
    pub name: String,
    /// The requests, arrival times non-decreasing, the first at 0.
    pub entries: Vec<TraceEntry>,
}

impl Trace {
    /// Reads a trace file; every record must have a time and times must not go back.
    pub fn load(path: &Path, opts: &ReadOptions) -> Result<(Self, ReadReport), Error> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::parse(std::io::BufReader::new(file), path, opts)
    }

    /// Parses a trace from `reader`; `path` names it in errors.
    pub fn parse(reader: impl BufRead, path: &Path, opts: &ReadOptions) -> Result<(Self, ReadReport), Error> {
        let mut raw: Vec<(f64, u32, u32)> = Vec::new();
        let mut last: Option<(f64, usize)> = None;
        let report = read_records(reader, path, opts, |r, line| {
            let t = r.arrival_s.ok_or(
                "no arrival time: this file has lengths only; use it with --dataset, or add `arrival_s` to each line",
            )?;
            if let Some((prev, prev_line)) = last {
                if t < prev {
                    return Err(format!(
                        "arrival time goes back: {t} s after {prev} s on line {prev_line}; a trace must be sorted by time"
                    ));
                }
            }
            last = Some((t, line));
            raw.push((t, r.input_len, r.output_len));
            Ok(())
        })?;
        let t0 = raw.first().map_or(0.0, |r| r.0);
        let entries = raw
            .into_iter()
            .map(|(t, input_len, output_len)| TraceEntry { arrival_s: t - t0, input_len, output_len })
            .collect();
        Ok((Trace { name: path.display().to_string(), entries }, report))
    }

    /// Time from the first to the last arrival, in seconds.
    pub fn span_s(&self) -> f64 {
        self.entries.last().map_or(0.0, |e| e.arrival_s)
    }

    /// The trace's lengths, as a dataset to draw from.
    pub fn lengths(&self) -> LengthDataset {
        LengthDataset {
            name: self.name.clone(),
            samples: self
                .entries
                .iter()
                .map(|e| LengthSample { input_len: e.input_len, output_len: e.output_len })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use energyllm_core::Timestamp;

    fn read(text: &str, opts: ReadOptions) -> Result<(Vec<TraceRecord>, ReadReport), Error> {
        let mut out = Vec::new();
        let report = read_records(text.as_bytes(), Path::new("t.txt"), &opts, |r, _| {
            out.push(r);
            Ok(())
        })?;
        Ok((out, report))
    }

    fn err(text: &str) -> String {
        read(text, ReadOptions::default()).unwrap_err().to_string()
    }

    #[test]
    fn formats_are_detected_from_content() {
        let cases = [
            ("{\"input_len\": 1, \"output_len\": 2}", Some(TraceFormat::Energyllm)),
            (
                "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 2, \"hash_ids\": [1]}",
                Some(TraceFormat::Mooncake),
            ),
            ("TIMESTAMP,ContextTokens,GeneratedTokens", Some(TraceFormat::Azure)),
            ("\u{feff}\"TIMESTAMP\",\"ContextTokens\",\"GeneratedTokens\"", Some(TraceFormat::Azure)),
            ("arrived_at,num_prefill_tokens,num_decode_tokens", Some(TraceFormat::Splitwise)),
            ("num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio", Some(TraceFormat::Splitwise)),
            ("a,b,c", None),
            ("{\"prompt\": \"hi\"}", None),
        ];
        for (line, want) in cases {
            assert_eq!(TraceFormat::detect(line), want, "{line}");
        }
    }

    #[test]
    fn each_reader_parses_its_fixture() {
        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                     2023-11-16 18:15:46.6805900,374,44\n\
                     2023-11-16 18:15:50.9951690,396,109\n";
        let (r, rep) = read(azure, ReadOptions::default()).unwrap();
        assert_eq!(rep.format, Some(TraceFormat::Azure));
        assert_eq!((r[0].input_len, r[0].output_len, r[1].input_len, r[1].output_len), (374, 44, 396, 109));
        let gap = r[1].arrival_s.unwrap() - r[0].arrival_s.unwrap();
        assert!((gap - 4.314579).abs() < 1e-5, "{gap}");

        let mooncake = "{\"timestamp\": 0, \"input_length\": 6758, \"output_length\": 500, \"hash_ids\": [0, 1]}\n\
                        \n{\"timestamp\": 1500, \"input_length\": 10, \"output_length\": 2, \"hash_ids\": []}\n";
        let (r, _) = read(mooncake, ReadOptions::default()).unwrap();
        assert_eq!(r[1], TraceRecord { arrival_s: Some(1.5), input_len: 10, output_len: 2 });

        let splitwise = "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,20\n0.25,\"7\",3\n";
        let (r, _) = read(splitwise, ReadOptions::default()).unwrap();
        assert_eq!(r[1], TraceRecord { arrival_s: Some(0.25), input_len: 7, output_len: 3 });

        let vidur = "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n3772,54,3826,69.8\n";
        let (r, _) = read(vidur, ReadOptions::default()).unwrap();
        assert_eq!(r[0], TraceRecord { arrival_s: None, input_len: 3772, output_len: 54 });

        let ours = "{\"input_len\": 3, \"output_len\": 4, \"arrival_s\": 0.5, \"id\": \"a\"}\n";
        let (r, _) = read(ours, ReadOptions::default()).unwrap();
        assert_eq!(r[0], TraceRecord { arrival_s: Some(0.5), input_len: 3, output_len: 4 });
    }

    #[test]
    fn broken_files_name_file_line_and_field() {
        let cases = [
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,4\n2023-11-16 18:15:47,x,4\n",
                "t.txt:3: `ContextTokens` must be a non-negative integer",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,3,4\n",
                "t.txt:2: `TIMESTAMP` = \"yesterday\" is not a date",
            ),
            (
                "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3\n",
                "t.txt:2: malformed CSV row",
            ),
            ("TIMESTAMP,ContextTokens\n", "no column `GeneratedTokens`"),
            (
                "arrived_at,num_prefill_tokens,num_decode_tokens\n-1,3,4\n",
                "t.txt:2: `arrived_at` = -1 must be a finite, non-negative time",
            ),
            (
                "arrived_at,num_prefill_tokens,num_decode_tokens\n1,3,-4\n",
                "t.txt:2: `num_decode_tokens` must be a non-negative integer",
            ),
            ("{\"timestamp\": 0, \"input_length\": 3}\n", "t.txt:1: missing field `output_length`"),
            (
                "{\"timestamp\": -5, \"input_length\": 3, \"output_length\": 1}\n",
                "t.txt:1: `timestamp` must be a non-negative",
            ),
            (
                "\n{\"input_len\": 3, \"output_len\": 2000000}\n",
                "t.txt:2: `output_len` = 2000000 tokens is implausibly large",
            ),
            ("{\"input_len\": 3, \"output_len\": 4}\n[1, 2]\n", "t.txt:2: not a JSON object: an array"),
            ("\n\n", "no requests"),
            ("hello\n", "t.txt:1: cannot tell the format"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn skip_invalid_counts_and_reports() {
        let text = "{\"input_len\": 3, \"output_len\": 4}\nnot json\n{\"input_len\": 5}\n{\"input_len\": 6, \"output_len\": 7}\n";
        let (r, rep) = read(text, ReadOptions { format: None, skip_invalid: true }).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((rep.records, rep.skipped), (2, 2));
        assert!(
            rep.skipped_note().unwrap().contains("t.txt:2: not a JSON object"),
            "{:?}",
            rep.first_skipped
        );
        let all_bad = read(
            "{\"input_len\": 1}\n",
            ReadOptions { format: Some(TraceFormat::Energyllm), skip_invalid: true },
        );
        assert!(all_bad.unwrap_err().to_string().contains("no valid requests (skipped 1"));
    }

    #[test]
    fn a_forced_format_overrides_detection() {
        let e = read(
            "{\"input_len\": 1, \"output_len\": 2}\n",
            ReadOptions { format: Some(TraceFormat::Mooncake), skip_invalid: false },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.txt:1: missing field `timestamp`"), "{e}");
    }

    #[test]
    fn traces_must_not_go_back_in_time() {
        let text = "arrived_at,num_prefill_tokens,num_decode_tokens\n5,1,1\n6,1,1\n4,1,1\n7,1,1\n";
        let e = Trace::parse(text.as_bytes(), Path::new("t.csv"), &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv:4: arrival time goes back: 4 s after 6 s on line 3"), "{e}");
        let (t, rep) = Trace::parse(
            text.as_bytes(),
            Path::new("t.csv"),
            &ReadOptions { format: None, skip_invalid: true },
        )
        .unwrap();
        assert_eq!(rep.skipped, 1);
        assert_eq!(t.entries.iter().map(|e| e.arrival_s).collect::<Vec<_>>(), [0.0, 1.0, 2.0]);
        let lengths_only = "num_prefill_tokens,num_decode_tokens\n1,1\n";
        let e =
            Trace::parse(lengths_only.as_bytes(), Path::new("l.csv"), &ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("l.csv:2: no arrival time"), "{e}");
    }

    #[test]
    fn replay_keeps_order_and_scales_gaps() {
        let text = "{\"timestamp\": 1000, \"input_length\": 1, \"output_length\": 1}\n\
                    {\"timestamp\": 1000, \"input_length\": 2, \"output_length\": 1}\n\
                    {\"timestamp\": 1250, \"input_length\": 3, \"output_length\": 1}\n\
                    {\"timestamp\": 4000, \"input_length\": 4, \"output_length\": 1}\n";
        let (trace, _) = Trace::parse(text.as_bytes(), Path::new("m"), &ReadOptions::default()).unwrap();
        let base: Vec<f64> = trace.entries.iter().map(|e| e.arrival_s).collect();
        assert_eq!(base, [0.0, 0.0, 0.25, 3.0]);
        for (time_scale, rate_scale) in [(1.0, 1.0), (2.0, 1.0), (1.0, 4.0), (3.0, 2.0)] {
            let replay = Replay { time_scale, rate_scale, ..Replay::new(trace.clone()) };
            let reqs = replay.requests(None, 0).unwrap();
            assert_eq!(reqs.iter().map(|r| r.input_tokens).collect::<Vec<_>>(), [1, 2, 3, 4]);
            let f = time_scale / rate_scale;
            for (r, b) in reqs.iter().zip(&base) {
                assert_eq!(r.arrival, Timestamp::from_secs_f64(b * f));
            }
            assert!((replay.arrivals_end_s().unwrap() - 3.0 * f).abs() < 1e-6);
        }
        let windowed = Replay { window_s: Some(1.0), ..Replay::new(trace.clone()) };
        assert_eq!(windowed.requests(None, 0).unwrap().len(), 3);
        assert!(Replay { rate_scale: 0.0, ..Replay::new(trace.clone()) }.requests(None, 0).is_err());
        let lengths =
            LengthDataset { name: "d".into(), samples: vec![LengthSample { input_len: 9, output_len: 8 }] };
        let drawn = Replay::new(trace).requests(Some(&lengths), 0).unwrap();
        assert!(drawn.iter().all(|r| r.input_tokens == 9 && r.output_tokens == 8));
    }

    #[test]
    fn datetimes_parse_to_epoch_seconds() {
        assert_eq!(parse_datetime_s("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(parse_datetime_s("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(parse_datetime_s("2023-04-09T02:02:53+02:00"), parse_datetime_s("2023-04-09 00:02:53"));
        assert_eq!(parse_datetime_s("2023-04-09 00:02:53 +00:00"), parse_datetime_s("2023-04-09 00:02:53"));
        let t = parse_datetime_s("2023-11-16 18:15:46.6805900").unwrap();
        assert!((t - 1_700_158_546.680_59).abs() < 1e-5, "{t}");
        for bad in [
            "2023-13-01 00:00:00",
            "2023-11-16",
            "2023-11-16 18:15:46.",
            "2023/11/16 18:15:46",
            "2023-11-16 18:15:46 UTC",
        ] {
            assert_eq!(parse_datetime_s(bad), None, "{bad}");
        }
    }
}
