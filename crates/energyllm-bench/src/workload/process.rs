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

use std::cell::Cell;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

use super::tokenize::Tokenizer;
use super::trace::parse_datetime_s;
use super::MAX_TOKENS_PER_FIELD;
use crate::Error;

/// A raw dataset format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Turns {
    /// Only the first user message and its answer (the usual benchmark setting; default).
    #[default]
    First,
    /// Every user message that has an answer.
    All,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    System,
    User,
    Assistant,
}

struct Message {
    role: Role,
    text: String,
    timestamp_s: Option<f64>,
}

struct Conversation {
    id: Option<String>,
    language: Option<String>,
    timestamp_s: Option<f64>,
    messages: Vec<Message>,
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
    let mut state = State::new(path, out, tokenizer, opts);
    match opts.format {
        RawFormat::Sharegpt => state.sharegpt(input)?,
        _ => state.json_lines(input)?,
    }
    state.out.flush().map_err(|source| Error::Io { path: "output".into(), source })?;
    Ok(state.report)
}

/// Stops the streaming visitor; carries our error out through serde's.
struct Stop;

struct State<'a, W: Write> {
    path: &'a Path,
    out: &'a mut W,
    tokenizer: &'a Tokenizer,
    opts: &'a ProcessOptions,
    report: ProcessReport,
    rng: Option<ChaCha8Rng>,
    clock_s: f64,
    line_buf: String,
}

impl<'a, W: Write> State<'a, W> {
    fn new(path: &'a Path, out: &'a mut W, tokenizer: &'a Tokenizer, opts: &'a ProcessOptions) -> Self {
        State {
            path,
            out,
            tokenizer,
            opts,
            report: ProcessReport::default(),
            rng: match opts.arrivals {
                OutputArrivals::Poisson { seed, .. } => Some(ChaCha8Rng::seed_from_u64(seed)),
                _ => None,
            },
            clock_s: 0.0,
            line_buf: String::new(),
        }
    }

    fn done(&self) -> bool {
        self.opts.limit.is_some_and(|l| self.report.written >= l)
    }

    fn json_lines(&mut self, mut input: impl BufRead) -> Result<(), Error> {
        let mut buf = Vec::new();
        let mut line = 0usize;
        while !self.done() {
            buf.clear();
            let n = input
                .read_until(b'\n', &mut buf)
                .map_err(|source| Error::Io { path: self.path.to_owned(), source })?;
            if n == 0 {
                break;
            }
            line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = std::str::from_utf8(&buf)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON: {e}")))
                .and_then(|v| conversation(&v, self.opts.format));
            self.handle(line, None, parsed)?;
        }
        Ok(())
    }

    fn sharegpt(&mut self, input: impl BufRead) -> Result<(), Error> {
        let lines = Rc::new(Cell::new(0usize));
        let reader = LineCounter { inner: input, newlines: lines.clone() };
        let mut de = serde_json::Deserializer::from_reader(reader);
        let mut failure: Option<Error> = None;
        let mut stopped = false;
        let visitor = Elements { state: self, lines: &lines, failure: &mut failure, stopped: &mut stopped };
        let result = (&mut de).deserialize_seq(visitor);
        if let Some(e) = failure {
            return Err(e);
        }
        if stopped {
            // --limit reached: the rest of the file is not read.
            return Ok(());
        }
        let syntax = |e: serde_json::Error| Error::WorkloadLine {
            path: self.path.to_owned(),
            line: e.line(),
            reason: format!("the ShareGPT file must be one JSON array of conversations: {e}"),
        };
        result.map_err(syntax)?;
        de.end().map_err(syntax)?;
        Ok(())
    }

    /// One record: counts its requests or handles its error (skip or fail).
    fn handle(
        &mut self,
        line: usize,
        element: Option<u64>,
        parsed: Result<Conversation, String>,
    ) -> Result<(), Error> {
        let result = parsed.and_then(|c| self.emit(&c));
        match result {
            Ok(()) => Ok(()),
            Err(reason) => {
                let reason = match element {
                    Some(i) => format!("conversation #{i}: {reason}"),
                    None => reason,
                };
                let e = Error::WorkloadLine { path: self.path.to_owned(), line, reason };
                if self.opts.skip_invalid {
                    self.report.skipped_invalid += 1;
                    if self.report.first_skipped.is_none() {
                        self.report.first_skipped = Some(e.to_string());
                    }
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    fn count(&self, text: &str) -> Result<u64, String> {
        self.tokenizer.count(text).map(|n| n as u64).map_err(|e| e.to_string())
    }

    fn emit(&mut self, c: &Conversation) -> Result<(), String> {
        self.report.conversations += 1;
        if let Some(want) = &self.opts.language {
            if !c.language.as_deref().is_some_and(|l| l.trim().eq_ignore_ascii_case(want.trim())) {
                self.report.dropped_language += 1;
                return Ok(());
            }
        }
        // Collect the requests first so that a bad turn rejects the whole conversation, never
        // half of it.
        let mut requests: Vec<(usize, u64, u64, Option<f64>)> = Vec::new();
        let mut system = 0u64;
        let mut history = 0u64;
        let mut turn = 0usize;
        let msgs = &c.messages;
        for (i, m) in msgs.iter().enumerate() {
            match m.role {
                Role::System => {
                    let n = self.count(&m.text)?;
                    system += n;
                }
                Role::User => {
                    let answered = msgs.get(i + 1).is_some_and(|n| n.role == Role::Assistant);
                    if !answered {
                        self.report.unanswered += 1;
                        if self.opts.with_history {
                            history += self.count(&m.text)?;
                        }
                        continue;
                    }
                    turn += 1;
                    let first_only = self.opts.turns == Turns::First;
                    if first_only && turn > 1 {
                        break;
                    }
                    let user = self.count(&m.text)?;
                    let answer = &msgs[i + 1];
                    let output = self.count(&answer.text)?;
                    let input = system + if self.opts.with_history { history } else { 0 } + user;
                    if self.opts.with_history {
                        history += user + output;
                    }
                    let t = m.timestamp_s.or(c.timestamp_s);
                    requests.push((turn, input, output, t));
                }
                Role::Assistant => {
                    // Answers are counted with their user message; an answer with no question
                    // before it (a greeting) is context only.
                    let follows_user = i > 0 && msgs[i - 1].role == Role::User;
                    if !follows_user && self.opts.with_history {
                        history += self.count(&m.text)?;
                    }
                }
            }
        }
        for (turn, input, output, t) in requests {
            if self.done() {
                break;
            }
            let fits = |n: u64, min: u32, max: Option<u32>| {
                n >= u64::from(min) && max.is_none_or(|m| n <= u64::from(m))
            };
            if !fits(input, self.opts.min_input, self.opts.max_input)
                || !fits(output, self.opts.min_output, self.opts.max_output)
            {
                self.report.dropped_length += 1;
                continue;
            }
            if input > MAX_TOKENS_PER_FIELD || output > MAX_TOKENS_PER_FIELD {
                return Err(format!("turn {turn} has {input} prompt / {output} answer tokens, above the limit {MAX_TOKENS_PER_FIELD}"));
            }
            let arrival_s = match self.opts.arrivals {
                OutputArrivals::None => None,
                OutputArrivals::Poisson { rate_rps, .. } => {
                    if let Some(rng) = self.rng.as_mut() {
                        self.clock_s += -(1.0 - rng.gen::<f64>()).ln() / rate_rps;
                    }
                    Some(self.clock_s)
                }
                OutputArrivals::Timestamps => Some(t.ok_or(
                    "no timestamp on this conversation or turn; drop --arrival-from-timestamps or use --arrival-rate",
                )?),
            };
            let id = self.opts.with_id.then(|| format!("{}:{turn}", c.id.as_deref().unwrap_or("")));
            self.write_line(input, output, arrival_s, id.as_deref())?;
        }
        Ok(())
    }

    fn write_line(
        &mut self,
        input: u64,
        output: u64,
        arrival_s: Option<f64>,
        id: Option<&str>,
    ) -> Result<(), String> {
        use std::fmt::Write as _;
        let s = &mut self.line_buf;
        s.clear();
        let _ = write!(s, "{{\"input_len\":{input},\"output_len\":{output}");
        if let Some(t) = arrival_s {
            let _ = write!(s, ",\"arrival_s\":{t}");
        }
        if let Some(id) = id {
            let _ = write!(s, ",\"id\":{}", Value::String(id.to_owned()));
        }
        s.push_str("}\n");
        self.out.write_all(s.as_bytes()).map_err(|e| format!("cannot write the output: {e}"))?;
        self.report.written += 1;
        Ok(())
    }
}

/// Streams the elements of the top-level JSON array.
struct Elements<'s, 'a, W: Write> {
    state: &'s mut State<'a, W>,
    lines: &'s Rc<Cell<usize>>,
    failure: &'s mut Option<Error>,
    stopped: &'s mut bool,
}

impl<'de, W: Write> Visitor<'de> for Elements<'_, '_, W> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of conversations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        while let Some(v) = seq.next_element::<Value>()? {
            index += 1;
            // The reader has consumed the element and at most one byte after it.
            let line = self.lines.get() + 1;
            let parsed = conversation(&v, RawFormat::Sharegpt);
            drop(v);
            if let Err(e) = self.state.handle(line, Some(index), parsed) {
                *self.failure = Some(e);
                return Err(serde::de::Error::custom(Stop.to_string()));
            }
            if self.state.done() {
                *self.stopped = true;
                return Err(serde::de::Error::custom(Stop.to_string()));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

/// Counts the newlines that pass through, so that errors can name a line.
struct LineCounter<R> {
    inner: R,
    newlines: Rc<Cell<usize>>,
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let nl = buf[..n].iter().filter(|&&b| b == b'\n').count();
        self.newlines.set(self.newlines.get() + nl);
        Ok(n)
    }
}

fn conversation(v: &Value, format: RawFormat) -> Result<Conversation, String> {
    let o = v.as_object().ok_or_else(|| "not a JSON object".to_owned())?;
    let string_field = |keys: &[&str]| -> Result<Option<String>, String> {
        for k in keys {
            match o.get(*k) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => return Ok(Some(s.clone())),
                Some(Value::Number(n)) => return Ok(Some(n.to_string())),
                Some(other) => return Err(format!("`{k}` must be a string, got {other}")),
            }
        }
        Ok(None)
    };
    let (list_keys, id_keys): (&[&str], &[&str]) = match format {
        RawFormat::Sharegpt => (&["conversations"], &["id"]),
        RawFormat::Lmsys => (&["conversation"], &["conversation_id"]),
        RawFormat::Wildchat => (&["conversation"], &["conversation_hash", "conversation_id"]),
        RawFormat::Jsonl => (&["messages", "conversation", "conversations"], &["id", "conversation_id"]),
    };
    let id = string_field(id_keys)?;
    let language = string_field(&["language", "lang"])?;
    let timestamp_s = timestamp(o.get("timestamp"), "timestamp")?;
    let list = list_keys.iter().find_map(|k| o.get(*k).map(|v| (*k, v)));
    let messages = match list {
        Some((key, Value::Array(items))) => {
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                messages.push(message(item, key, i)?);
            }
            messages
        }
        Some((key, other)) => {
            return Err(format!("`{key}` must be a list of messages, got {}", short(other)))
        }
        None if format == RawFormat::Jsonl => {
            let prompt = string_field(&["prompt", "instruction", "input"])?;
            let answer = string_field(&["response", "completion", "output"])?;
            match (prompt, answer) {
                (Some(p), Some(a)) => vec![
                    Message { role: Role::User, text: p, timestamp_s: None },
                    Message { role: Role::Assistant, text: a, timestamp_s: None },
                ],
                _ => {
                    return Err(
                        "missing field: need `messages`, `conversation` or `conversations`, or `prompt` \
                                with `response`/`completion`/`output`"
                            .into(),
                    )
                }
            }
        }
        None => return Err(format!("missing field `{}`", list_keys[0])),
    };
    Ok(Conversation { id, language, timestamp_s, messages })
}

fn message(item: &Value, list: &str, i: usize) -> Result<Message, String> {
    let at = |field: &str| format!("{list}[{i}].{field}");
    let o =
        item.as_object().ok_or_else(|| format!("`{list}[{i}]` must be an object, got {}", short(item)))?;
    let (role_key, role) = match (o.get("role"), o.get("from")) {
        (Some(r), _) => ("role", r),
        (None, Some(r)) => ("from", r),
        (None, None) => return Err(format!("missing field `{}` (or `from`)", at("role"))),
    };
    let role_name =
        role.as_str().ok_or_else(|| format!("`{}` must be a string, got {}", at(role_key), short(role)))?;
    let role = match role_name.to_ascii_lowercase().as_str() {
        "user" | "human" => Role::User,
        "assistant" | "gpt" | "chatgpt" | "bard" | "bing" | "model" | "bot" => Role::Assistant,
        "system" => Role::System,
        other => {
            return Err(format!(
                "`{}` = {other:?} is not a known role (user/human, assistant/gpt, system)",
                at(role_key)
            ))
        }
    };
    let (text_key, text) = match (o.get("content"), o.get("value")) {
        (Some(t), _) => ("content", t),
        (None, Some(t)) => ("value", t),
        (None, None) => return Err(format!("missing field `{}` (or `value`)", at("content"))),
    };
    let text = match text {
        Value::String(s) => s.clone(),
        // OpenAI's list of content parts: concatenate the text parts.
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        other => return Err(format!("`{}` must be a string, got {}", at(text_key), short(other))),
    };
    let timestamp_s = timestamp(o.get("timestamp"), &at("timestamp"))?;
    Ok(Message { role, text, timestamp_s })
}

/// A timestamp given as a date-time string or as a number of seconds (or milliseconds, if it is
/// too large to be seconds) since 1970.
fn timestamp(v: Option<&Value>, name: &str) -> Result<Option<f64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_datetime_s(s)
            .map(Some)
            .ok_or_else(|| format!("`{name}` = {s:?} is not a date and time like 2023-04-09T00:02:53Z")),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(if x > 1e11 { x / 1000.0 } else { x })),
            _ => Err(format!("`{name}` = {n} is not a time")),
        },
        Some(other) => Err(format!("`{name}` must be a date-time string, got {}", short(other))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        let cut = (0..=40).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Reads a file into [`process`], writing to `output`. A `.parquet` file is read row by row
/// (each row as one record of `opts.format`) when the `parquet` feature is on.
pub fn process_file(
    input: &Path,
    output: &Path,
    tokenizer: &Tokenizer,
    opts: &ProcessOptions,
) -> Result<ProcessReport, Error> {
    if input.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        return process_parquet(input, output, tokenizer, opts);
    }
    let file = std::fs::File::open(input).map_err(|source| Error::Io { path: input.to_owned(), source })?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    let out =
        std::fs::File::create(output).map_err(|source| Error::Io { path: output.to_owned(), source })?;
    let mut out = std::io::BufWriter::new(out);
    process(reader, input, &mut out, tokenizer, opts)
}

/// Writes a synthetic ShareGPT file of about `target_bytes` bytes (a JSON array of multi-turn
/// conversations of English-like words), for benchmarking [`process`] on large inputs. Returns the
/// number of conversations written. Deterministic for a given seed.
pub fn write_synthetic_sharegpt(out: &mut impl Write, target_bytes: u64, seed: u64) -> std::io::Result<u64> {
    const WORDS: &[&str] = &[
        "the",
        "model",
        "energy",
        "request",
        "token",
        "latency",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "frequency",
        "batch",
        "serving",
        "GPU",
        "power",
        "we",
        "that",
        "for",
        "with",
        "can",
        "explain",
        "how",
        "why",
        "data",
        "function",
        "return",
        "value",
        "example",
        "please",
        "write",
        "code",
        "python",
        "rust",
        "system",
        "memory",
        "cache",
        "throughput",
        "question",
        "answer",
        "because",
        "however",
        "therefore",
        "result",
        "time",
        "queue",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut written = 0u64;
    let mut conversations = 0u64;
    let mut text = String::new();
    out.write_all(b"[\n")?;
    while written < target_bytes {
        if conversations > 0 {
            out.write_all(b",\n")?;
        }
        let turns = rng.gen_range(1..=4) * 2;
        let mut conv = format!("{{\"id\": \"c{conversations}\", \"conversations\": [");
        for t in 0..turns {
            text.clear();
            // Prompts short, answers longer; both with a heavy-ish tail.
            let words = if t % 2 == 0 { rng.gen_range(3..80) } else { rng.gen_range(20..400) };
            for w in 0..words {
                if w > 0 {
                    text.push(if rng.gen_range(0..12) == 0 { '\n' } else { ' ' });
                }
                text.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
            }
            let from = if t % 2 == 0 { "human" } else { "gpt" };
            if t > 0 {
                conv.push_str(", ");
            }
            conv.push_str(&format!("{{\"from\": \"{from}\", \"value\": {}}}", Value::String(text.clone())));
        }
        conv.push_str("]}");
        out.write_all(conv.as_bytes())?;
        written += conv.len() as u64 + 2;
        conversations += 1;
    }
    out.write_all(b"\n]\n")?;
    Ok(conversations)
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
    let mut state = State::new(input, &mut out, tokenizer, opts);
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
