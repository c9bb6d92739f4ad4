//! What the gateway reads from a completion request's body before it queues it: whether the
//! answer streams, the output tokens asked for (the controller's estimate of the work), and the
//! prompt's size. A pure function of the bytes, so it is fuzzed on its own.

use serde_json::Value;

/// What the gateway takes from a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBody {
    /// `stream: true`.
    pub stream: bool,
    /// `max_tokens` (or `max_completion_tokens`), else 256.
    pub output_tokens: u32,
    /// The prompt's tokens estimated from its text (about 4 characters a token), at least 1.
    pub input_tokens: u32,
}

/// Reads a completion or chat-completion body; the error says what is wrong with it.
pub fn parse_request_body(body: &[u8]) -> Result<RequestBody, String> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err("the body must be a JSON object".into()),
        Err(e) => return Err(format!("the body is not JSON: {e}")),
    };
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let output_tokens = v
        .get("max_tokens")
        .or_else(|| v.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .map_or(256, |n| n.min(u64::from(u32::MAX)) as u32);
    Ok(RequestBody { stream, output_tokens, input_tokens: estimate_input_tokens(&v) })
}

fn estimate_input_tokens(v: &Value) -> u32 {
    let mut chars = 0usize;
    match v.get("prompt") {
        Some(Value::String(p)) => chars += p.len(),
        Some(Value::Array(a)) => chars += a.iter().map(|x| x.as_str().map_or(4, str::len)).sum::<usize>(),
        _ => {}
    }
    if let Some(msgs) = v.get("messages").and_then(Value::as_array) {
        chars +=
            msgs.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).map(str::len).sum::<usize>();
    }
    u32::try_from(chars.div_ceil(4).max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_and_says_what_is_wrong() {
        let b = parse_request_body(br#"{"prompt":"abcdefgh","max_tokens":7,"stream":true}"#).unwrap();
        assert_eq!(b, RequestBody { stream: true, output_tokens: 7, input_tokens: 2 });
        let chat = parse_request_body(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!((chat.output_tokens, chat.input_tokens, chat.stream), (256, 1, false));
        assert!(parse_request_body(b"[1]").unwrap_err().contains("JSON object"));
        assert!(parse_request_body(b"{").unwrap_err().contains("not JSON"));
        let huge = parse_request_body(br#"{"max_tokens":99999999999}"#).unwrap();
        assert_eq!(huge.output_tokens, u32::MAX);
    }
}
