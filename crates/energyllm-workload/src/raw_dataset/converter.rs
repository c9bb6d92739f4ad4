//! The streaming converter: records in, one JSON line of lengths out per kept turn.

use std::cell::Cell;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::Value;

use crate::tokenize::Tokenizer;
use crate::Error;
use crate::MAX_TOKENS_PER_FIELD;

use super::conversation::{Conversation, Role};
use super::{conversation, OutputArrivals, ProcessOptions, ProcessReport, RawFormat, Turns};

/// Stops the streaming visitor; carries our error out through serde's.
struct Stop;

/// Reads records of one format, counts their tokens, applies the filters and writes the kept
/// turns, counting what it skipped and why.
pub(super) struct Converter<'a, W: Write> {
    path: &'a Path,
    pub(super) out: &'a mut W,
    tokenizer: &'a Tokenizer,
    opts: &'a ProcessOptions,
    pub(super) report: ProcessReport,
    rng: Option<ChaCha8Rng>,
    clock_s: f64,
    line_buf: String,
}

impl<'a, W: Write> Converter<'a, W> {
    pub(super) fn new(
        path: &'a Path,
        out: &'a mut W,
        tokenizer: &'a Tokenizer,
        opts: &'a ProcessOptions,
    ) -> Self {
        Converter {
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

    pub(super) fn done(&self) -> bool {
        self.opts.limit.is_some_and(|l| self.report.written >= l)
    }

    pub(super) fn json_lines(&mut self, mut input: impl BufRead) -> Result<(), Error> {
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

    pub(super) fn sharegpt(&mut self, input: impl BufRead) -> Result<(), Error> {
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
    pub(super) fn handle(
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
    state: &'s mut Converter<'a, W>,
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
