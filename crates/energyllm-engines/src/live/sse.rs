//! An incremental server-sent-events decoder: bytes in, whole events out.
//!
//! Sans-IO like the rest of the crate's state machines: the adapter and the gateway push the
//! chunks they read and take the events that completed, so the same code is tested on recorded
//! streams. Events end at a blank line; `data:` lines of one event are joined with `\n`; other
//! fields (`event:`, `id:`, comments) are kept only as far as callers need them.

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// A stream that broke the format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line is not valid UTF-8.
    #[error("the event stream is not UTF-8 text")]
    NotUtf8,
    /// A line grew past the limit without ending: the upstream is not sending SSE.
    #[error("an event-stream line is longer than {0} bytes; the upstream is not sending server-sent events")]
    LineTooLong(usize),
}

/// The decoder. Feed it with [`push`](Self::push); call [`finish`](Self::finish) at the end of
/// the stream to get an event that lacked its closing blank line.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

/// The longest line accepted (a completion chunk is well under a kilobyte).
pub const MAX_LINE_BYTES: usize = 1 << 20;

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `chunk` and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?.to_owned();
            start = end + 1;
            if let Some(ev) = self.line(&line) {
                out.push(ev);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong(MAX_LINE_BYTES));
        }
        Ok(out)
    }

    /// Ends the stream: an unterminated last event is returned if it has data.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            let line = std::str::from_utf8(&rest).map_err(|_| SseError::NotUtf8)?.trim_end().to_owned();
            if let Some(ev) = self.line(&line) {
                return Ok(Some(ev));
            }
        }
        Ok(self.line(""))
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_none() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent { event: self.event.take(), data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let stream = b"data: {\"a\":1}\r\n\r\n: keep-alive\n\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]";
        for split in 0..stream.len() {
            let mut d = SseDecoder::new();
            let mut evs = d.push(&stream[..split]).unwrap();
            evs.extend(d.push(&stream[split..]).unwrap());
            evs.extend(d.finish().unwrap());
            let data: Vec<&str> = evs.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, ["{\"a\":1}", "one\ntwo", "[DONE]"], "split at {split}");
            assert_eq!(evs[1].event.as_deref(), Some("x"));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = SseDecoder::new();
        assert_eq!(d.push(b"data: \xff\xfe\n"), Err(SseError::NotUtf8));
        let mut d = SseDecoder::new();
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        assert_eq!(d.push(&long), Err(SseError::LineTooLong(MAX_LINE_BYTES)));
    }
}
