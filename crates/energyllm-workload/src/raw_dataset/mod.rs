//! Turning raw conversation datasets into request lengths (`energyllm dataset process`).
//!
//! Inputs: ShareGPT (one JSON array of `{id, conversations: [{from, value}]}`), LMSYS-Chat-1M
//! and WildChat (JSON lines of `{conversation: [{role, content}], language, …}`), and generic
//! JSON lines (`messages`/`conversation`/`conversations`, or `prompt` + `response`). Output: the
//! EnergyLLM JSON-lines schema `{"input_len", "output_len"}`, optionally with `arrival_s` and `id`.
//!
//! Everything streams: JSON lines are read one line at a time, and the ShareGPT array one element
//! at a time (a serde `SeqAccess` visitor over the reader), so memory stays flat however large
//! the file is.

mod conversation;
mod converter;
mod synthetic_sharegpt;

pub use synthetic_sharegpt::write_synthetic_sharegpt;

use conversation::conversation;
use converter::Converter;

use std::io::{BufRead, Write};
use std::path::Path;

use serde::Serialize;

use crate::tokenize::Tokenizer;
use crate::Error;

/// A raw dataset format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    /// ShareGPT: one JSON array of `{"id", "conversations": [{"from", "value"}]}`.
    Sharegpt,
    /// LMSYS-Chat-1M JSON lines: `{"conversation_id", "conversation": [{"role", "content"}], "language"}`.
    Lmsys,
    /// WildChat JSON lines: `{"conversation_hash", "conversation": [{"role", "content", "timestamp"}],
    /// "language", "timestamp"}`.
    Wildchat,
    /// Generic JSON lines: `messages`/`conversation`/`conversations` lists (`role`/`content` or
    /// `from`/`value`), or `prompt` with `response`/`completion`/`output`.
    Jsonl,
}

/// Which user turns become requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Turns {
    /// Only the first user message and its answer (the usual benchmark setting; default).
    #[default]
    First,
    /// Every user message that has an answer.
    All,
}

impl RawFormat {
    /// Every format, in the order the command line lists them.
    pub const ALL: [RawFormat; 4] =
        [RawFormat::Sharegpt, RawFormat::Lmsys, RawFormat::Wildchat, RawFormat::Jsonl];

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RawFormat::Sharegpt => "sharegpt",
            RawFormat::Lmsys => "lmsys",
            RawFormat::Wildchat => "wildchat",
            RawFormat::Jsonl => "jsonl",
        }
    }
}

impl Turns {
    /// Both settings, in the order the command line lists them.
    pub const ALL: [Turns; 2] = [Turns::First, Turns::All];

    /// The setting's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Turns::First => "first",
            Turns::All => "all",
        }
    }
}

impl std::fmt::Display for Turns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Arrival times to write into the output.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum OutputArrivals {
    /// No `arrival_s` (default).
    #[default]
    None,
    /// Poisson arrivals at `rate_rps`, seeded.
    Poisson {
        /// Requests per second.
        rate_rps: f64,
        /// Seed.
        seed: u64,
    },
    /// The dataset's own timestamps (WildChat), as seconds since 1970 — replay shifts the first to 0.
    Timestamps,
}

/// What to keep and how to count.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessOptions {
    /// Input format.
    pub format: RawFormat,
    /// Which turns (default: the first).
    pub turns: Turns,
    /// Count the conversation so far (earlier messages) in each prompt, as a chat server would
    /// send it (default false: the user message alone, plus any system message).
    pub with_history: bool,
    /// Keep only conversations whose `language` field equals this (case-insensitive); default all.
    pub language: Option<String>,
    /// Shortest prompt kept, in tokens (default 1).
    pub min_input: u32,
    /// Longest prompt kept, in tokens (default: no limit).
    pub max_input: Option<u32>,
    /// Shortest answer kept, in tokens (default 1).
    pub min_output: u32,
    /// Longest answer kept, in tokens (default: no limit).
    pub max_output: Option<u32>,
    /// Count and skip bad records instead of stopping at the first (default false).
    pub skip_invalid: bool,
    /// Write an `id` (conversation id and turn number) on each line (default false).
    pub with_id: bool,
    /// Write `arrival_s` on each line (default none).
    pub arrivals: OutputArrivals,
    /// Stop after writing this many requests (default: all).
    pub limit: Option<u64>,
}

impl ProcessOptions {
    /// Defaults for `format`.
    pub fn new(format: RawFormat) -> Self {
        ProcessOptions {
            format,
            turns: Turns::First,
            with_history: false,
            language: None,
            min_input: 1,
            max_input: None,
            min_output: 1,
            max_output: None,
            skip_invalid: false,
            with_id: false,
            arrivals: OutputArrivals::None,
            limit: None,
        }
    }
}

/// What processing did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessReport {
    /// Conversations read (valid ones).
    pub conversations: u64,
    /// Requests written.
    pub written: u64,
    /// Bad records skipped (with `skip_invalid`).
    pub skipped_invalid: u64,
    /// The first skipped record's error.
    pub first_skipped: Option<String>,
    /// Conversations dropped by the language filter (including those with no language field).
    pub dropped_language: u64,
    /// Requests dropped by the length filters.
    pub dropped_length: u64,
    /// User messages with no answer after them.
    pub unanswered: u64,
}

impl std::fmt::Display for ProcessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} conversations read, {} requests written; dropped: {} by language, {} by length; \
             {} unanswered user messages; {} invalid records skipped",
            self.conversations,
            self.written,
            self.dropped_language,
            self.dropped_length,
            self.unanswered,
            self.skipped_invalid
        )?;
        if let Some(first) = &self.first_skipped {
            write!(f, " (first: {first})")?;
        }
        Ok(())
    }
}

/// Reads `input` (named `path` in errors) in `opts.format`, counts tokens with `tokenizer`, and
/// writes JSON lines to `out`.
pub fn process(
    input: impl BufRead,
    path: &Path,
    out: &mut impl Write,
    tokenizer: &Tokenizer,
    opts: &ProcessOptions,
) -> Result<ProcessReport, Error> {
    if let OutputArrivals::Poisson { rate_rps, .. } = opts.arrivals {
        if !(rate_rps.is_finite() && rate_rps > 0.0) {
            return Err(Error::Setting(format!(
                "arrival rate must be a positive number of requests/s, got {rate_rps}"
            )));
        }
    }
    if opts.max_input.is_some_and(|m| m < opts.min_input)
        || opts.max_output.is_some_and(|m| m < opts.min_output)
    {
        return Err(Error::Setting("a maximum length is below its minimum".into()));
    }
    let mut state = Converter::new(path, out, tokenizer, opts);
    match opts.format {
        RawFormat::Sharegpt => state.sharegpt(input)?,
        _ => state.json_lines(input)?,
    }
    state.out.flush().map_err(|source| Error::Io { path: "output".into(), source })?;
    Ok(state.report)
}

/// Reads a file into [`process`], writing to `output`. A `.parquet` file is read row by row
/// (each row as one record of `opts.format`) when the `parquet` feature is on.
///
/// The lengths are written to `output` with `.partial` appended and renamed into place only when
/// the whole input has been read, so a failure never leaves a truncated file where a complete
/// one is expected.
pub fn process_file(
    input: &Path,
    output: &Path,
    tokenizer: &Tokenizer,
    opts: &ProcessOptions,
) -> Result<ProcessReport, Error> {
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let result = if input.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        process_parquet(input, &partial, tokenizer, opts)
    } else {
        std::fs::File::open(input).map_err(|source| Error::Io { path: input.to_owned(), source }).and_then(
            |file| {
                let reader = std::io::BufReader::with_capacity(1 << 16, file);
                let out = std::fs::File::create(&partial)
                    .map_err(|source| Error::Io { path: output.to_owned(), source })?;
                let mut out = std::io::BufWriter::new(out);
                process(reader, input, &mut out, tokenizer, opts)
            },
        )
    };
    match result {
        Ok(report) => {
            std::fs::rename(&partial, output)
                .map_err(|source| Error::Io { path: output.to_owned(), source })?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

#[cfg(not(feature = "parquet"))]
fn process_parquet(
    input: &Path,
    _: &Path,
    _: &Tokenizer,
    _: &ProcessOptions,
) -> Result<ProcessReport, Error> {
    Err(Error::Setting(format!(
        "{}: reading Parquet needs the `parquet` feature; rebuild with `cargo build --features parquet`, \
         or convert the file to JSON lines",
        input.display()
    )))
}

/// Reads a Parquet file row by row (the row iterator decodes one row group's pages at a time,
/// so memory is bounded by the row-group size, not the file size).
#[cfg(feature = "parquet")]
fn process_parquet(
    input: &Path,
    output: &Path,
    tokenizer: &Tokenizer,
    opts: &ProcessOptions,
) -> Result<ProcessReport, Error> {
    use parquet::file::reader::SerializedFileReader;

    let file = std::fs::File::open(input).map_err(|source| Error::Io { path: input.to_owned(), source })?;
    let reader = SerializedFileReader::new(file).map_err(|e| Error::Workload {
        name: input.display().to_string(),
        reason: format!("not a readable Parquet file: {e}"),
    })?;
    let out =
        std::fs::File::create(output).map_err(|source| Error::Io { path: output.to_owned(), source })?;
    let mut out = std::io::BufWriter::new(out);
    let mut state = Converter::new(input, &mut out, tokenizer, opts);
    for (i, row) in reader.into_iter().enumerate() {
        if state.done() {
            break;
        }
        let row_no = i + 1;
        let parsed = row.map_err(|e| format!("row {row_no}: cannot decode: {e}")).and_then(|r| {
            conversation(&r.to_json_value(), opts.format).map_err(|e| format!("row {row_no}: {e}"))
        });
        state.handle(row_no, None, parsed)?;
    }
    state.out.flush().map_err(|source| Error::Io { path: output.to_owned(), source })?;
    Ok(state.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn run(text: &str, opts: &ProcessOptions) -> Result<(Vec<Value>, ProcessReport), Error> {
        let tok = Tokenizer::from_spec("cl100k_base").unwrap();
        let mut out = Vec::new();
        let report = process(text.as_bytes(), Path::new("raw.json"), &mut out, &tok, opts)?;
        let lines =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        Ok((lines, report))
    }

    fn lens(v: &[Value]) -> Vec<(u64, u64)> {
        v.iter().map(|l| (l["input_len"].as_u64().unwrap(), l["output_len"].as_u64().unwrap())).collect()
    }

    const SHAREGPT: &str = r#"[
  {"id": "a", "conversations": [
    {"from": "human", "value": "hello world"},
    {"from": "gpt", "value": "tiktoken is great!"},
    {"from": "human", "value": "hello"},
    {"from": "gpt", "value": "hello world hello world"}]},
  {"id": "b", "conversations": [{"from": "human", "value": "unanswered"}]},
  {"id": "c", "conversations": [
    {"from": "system", "value": "hello world"},
    {"from": "human", "value": "hello world"},
    {"from": "gpt", "value": "hello"}]}
]"#;

    #[test]
    fn sharegpt_first_and_all_turns() {
        let opts = ProcessOptions::new(RawFormat::Sharegpt);
        let (out, rep) = run(SHAREGPT, &opts).unwrap();
        // "hello world" = 2 tokens, "tiktoken is great!" = 6, "hello" = 1.
        assert_eq!(lens(&out), [(2, 6), (4, 1)]);
        assert_eq!((rep.conversations, rep.written, rep.unanswered), (3, 2, 1));

        let all = ProcessOptions { turns: Turns::All, with_id: true, ..opts.clone() };
        let (out, _) = run(SHAREGPT, &all).unwrap();
        assert_eq!(lens(&out), [(2, 6), (1, 4), (4, 1)]);
        assert_eq!(out[1]["id"], "a:2");

        let hist = ProcessOptions { turns: Turns::All, with_history: true, ..opts.clone() };
        let (out, _) = run(SHAREGPT, &hist).unwrap();
        assert_eq!(lens(&out), [(2, 6), (2 + 6 + 1, 4), (4, 1)]);

        let filtered =
            ProcessOptions { turns: Turns::All, min_input: 2, max_output: Some(5), ..opts.clone() };
        let (out, rep) = run(SHAREGPT, &filtered).unwrap();
        assert_eq!(lens(&out), [(4, 1)]);
        assert_eq!(rep.dropped_length, 2);

        let limited = ProcessOptions { turns: Turns::All, limit: Some(2), ..opts };
        assert_eq!(run(SHAREGPT, &limited).unwrap().0.len(), 2);
    }

    #[test]
    fn sharegpt_errors_name_line_and_field() {
        let bad = "[\n{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}]},\n\
                   {\"id\": \"b\", \"conversations\": [{\"from\": \"human\", \"value\": 3}]},\n\
                   {\"id\": \"c\", \"conversations\": [{\"from\": \"human\", \"value\": \"x\"}, {\"from\": \"gpt\", \"value\": \"y\"}]}\n]";
        let opts = ProcessOptions::new(RawFormat::Sharegpt);
        let e = run(bad, &opts).unwrap_err().to_string();
        assert!(
            e.contains("raw.json:3: conversation #2: `conversations[0].value` must be a string, got 3"),
            "{e}"
        );
        let skip = ProcessOptions { skip_invalid: true, ..opts.clone() };
        let (out, rep) = run(bad, &skip).unwrap();
        assert_eq!((out.len(), rep.skipped_invalid), (1, 1));
        assert!(rep.to_string().contains("1 invalid records skipped (first: raw.json:3"), "{rep}");

        for (text, want) in [
            ("{\"conversations\": []}", "raw.json:1: the ShareGPT file must be one JSON array"),
            ("[{\"conversations\": []},\n{\"conversations\": [}]", "raw.json:2:"),
            ("[{\"id\": \"x\"}]", "conversation #1: missing field `conversations`"),
            (
                "[{\"conversations\": [{\"from\": \"alien\", \"value\": \"x\"}]}]",
                "`conversations[0].from` = \"alien\" is not a known role",
            ),
            ("[] trailing", "raw.json:1: the ShareGPT file must be one JSON array"),
        ] {
            let e = run(text, &opts).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn lmsys_and_wildchat_lines_with_language_filter() {
        let lmsys = "{\"conversation_id\": \"x1\", \"language\": \"English\", \"conversation\": [{\"role\": \"user\", \"content\": \"hello world\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n\
                     {\"conversation_id\": \"x2\", \"language\": \"German\", \"conversation\": [{\"role\": \"user\", \"content\": \"hallo\"}, {\"role\": \"assistant\", \"content\": \"hallo\"}]}\n\
                     \n{\"conversation_id\": \"x3\", \"conversation\": [{\"role\": \"user\", \"content\": \"hello\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n";
        let opts = ProcessOptions {
            language: Some("english".into()),
            with_id: true,
            ..ProcessOptions::new(RawFormat::Lmsys)
        };
        let (out, rep) = run(lmsys, &opts).unwrap();
        assert_eq!(lens(&out), [(2, 1)]);
        assert_eq!(out[0]["id"], "x1:1");
        assert_eq!(rep.dropped_language, 2);

        let wild = "{\"conversation_hash\": \"h\", \"language\": \"English\", \"timestamp\": \"2023-04-09 00:02:53+00:00\", \"conversation\": [\
                    {\"role\": \"user\", \"content\": \"hello world\", \"timestamp\": \"2023-04-09T00:02:53Z\"}, {\"role\": \"assistant\", \"content\": \"hello\"},\
                    {\"role\": \"user\", \"content\": \"hello\", \"timestamp\": \"2023-04-09T00:03:03Z\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n";
        let opts = ProcessOptions {
            turns: Turns::All,
            arrivals: OutputArrivals::Timestamps,
            ..ProcessOptions::new(RawFormat::Wildchat)
        };
        let (out, _) = run(wild, &opts).unwrap();
        let t: Vec<f64> = out.iter().map(|l| l["arrival_s"].as_f64().unwrap()).collect();
        assert_eq!(t[1] - t[0], 10.0);

        let bad = "{\"conversation\": [{\"role\": \"user\"}]}\n";
        let e = run(bad, &ProcessOptions::new(RawFormat::Wildchat)).unwrap_err().to_string();
        assert!(e.contains("raw.json:1: missing field `conversation[0].content`"), "{e}");
        let e =
            run("{\"conversation\": 5}\n", &ProcessOptions::new(RawFormat::Lmsys)).unwrap_err().to_string();
        assert!(e.contains("raw.json:1: `conversation` must be a list of messages"), "{e}");
        let e =
            run("{\"conversation\": [}\n", &ProcessOptions::new(RawFormat::Lmsys)).unwrap_err().to_string();
        assert!(e.contains("raw.json:1: not JSON"), "{e}");
    }

    #[cfg(feature = "parquet")]
    #[test]
    fn parquet_rows_are_records() {
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        let schema = parse_message_type(
            "message m { REQUIRED BYTE_ARRAY prompt (UTF8); REQUIRED BYTE_ARRAY response (UTF8); \
             REQUIRED BYTE_ARRAY language (UTF8); }",
        )
        .unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer =
            SerializedFileWriter::new(file, std::sync::Arc::new(schema), Default::default()).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let columns: [&[&str]; 3] =
            [&["hello world", "hello"], &["hello", "tiktoken is great!"], &["English", "French"]];
        for values in columns {
            let mut col = group.next_column().unwrap().unwrap();
            let data: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(*v)).collect();
            col.typed::<ByteArrayType>().write_batch(&data, None, None).unwrap();
            col.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();

        let tok = Tokenizer::from_spec("cl100k_base").unwrap();
        let out = dir.path().join("o.jsonl");
        let rep = process_file(&path, &out, &tok, &ProcessOptions::new(RawFormat::Jsonl)).unwrap();
        assert_eq!(rep.written, 2);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"input_len\":2,\"output_len\":1}\n{\"input_len\":1,\"output_len\":6}\n"
        );
        let english =
            ProcessOptions { language: Some("English".into()), ..ProcessOptions::new(RawFormat::Jsonl) };
        assert_eq!(process_file(&path, &out, &tok, &english).unwrap().written, 1);
        std::fs::write(&path, "not parquet").unwrap();
        let e = process_file(&path, &out, &tok, &english).unwrap_err().to_string();
        assert!(e.contains("not a readable Parquet file"), "{e}");
    }

    #[cfg(not(feature = "parquet"))]
    #[test]
    fn parquet_needs_the_feature() {
        let tok = Tokenizer::from_spec("cl100k_base").unwrap();
        let opts = ProcessOptions::new(RawFormat::Lmsys);
        let e = process_file(Path::new("x.parquet"), Path::new("y"), &tok, &opts).unwrap_err().to_string();
        assert!(e.contains("--features parquet"), "{e}");
    }

    #[test]
    fn the_synthetic_sharegpt_file_processes() {
        let mut buf = Vec::new();
        let n = write_synthetic_sharegpt(&mut buf, 20_000, 1).unwrap();
        assert!(buf.len() >= 20_000);
        let opts = ProcessOptions { turns: Turns::All, ..ProcessOptions::new(RawFormat::Sharegpt) };
        let (out, rep) = run(std::str::from_utf8(&buf).unwrap(), &opts).unwrap();
        assert_eq!(rep.conversations, n);
        assert!(out.len() as u64 > n && rep.skipped_invalid == 0);
    }

    #[test]
    fn generic_jsonl_and_poisson_arrivals() {
        let text = "{\"prompt\": \"hello world\", \"response\": \"hello\"}\n\
                    {\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hello world\"}]}, {\"role\": \"assistant\", \"content\": \"hello world\"}]}\n";
        let opts = ProcessOptions {
            arrivals: OutputArrivals::Poisson { rate_rps: 2.0, seed: 1 },
            ..ProcessOptions::new(RawFormat::Jsonl)
        };
        let (out, _) = run(text, &opts).unwrap();
        assert_eq!(lens(&out), [(2, 1), (2, 2)]);
        let t: Vec<f64> = out.iter().map(|l| l["arrival_s"].as_f64().unwrap()).collect();
        assert!(0.0 < t[0] && t[0] < t[1]);
        assert_eq!(run(text, &opts).unwrap().0, out, "seeded");
        let e = run("{\"text\": \"x\"}\n", &opts).unwrap_err().to_string();
        assert!(e.contains("need `messages`"), "{e}");
    }
}
