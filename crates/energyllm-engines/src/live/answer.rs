//! Reading an engine's answer: a plain JSON body ([`parse_plain`]) or a stream of server-sent
//! events, one at a time ([`StreamAccumulator`]), into a [`Completion`] with its token count and
//! the time of each token. Both take what a server sends, so both are fuzzed.

use serde_json::Value;

use super::upstream::{Completion, EngineKind};

/// Reads a non-streamed answer: OpenAI `choices[0].text`/`message.content` and `usage`, or
/// TGI's `generated_text` and `details.generated_tokens` (an object, or a one-element list as
/// older TGI versions return).
pub fn parse_plain(kind: EngineKind, v: &Value) -> Result<Completion, String> {
    match kind {
        EngineKind::Tgi => {
            let v = if let Some(first) = v.as_array().and_then(|a| a.first()) { first } else { v };
            let text =
                v.get("generated_text").and_then(Value::as_str).ok_or("no `generated_text` in the answer")?;
            let tokens = v
                .pointer("/details/generated_tokens")
                .and_then(Value::as_u64)
                .ok_or("no `details.generated_tokens` in the answer (send parameters.details = true)")?;
            let prompt = v.pointer("/details/prefill").and_then(Value::as_array).map(|p| p.len() as u32);
            Ok(Completion {
                prompt_tokens: prompt.filter(|&n| n > 0),
                output_tokens: tokens.min(u64::from(u32::MAX)) as u32,
                text: text.to_owned(),
                ..Completion::default()
            })
        }
        EngineKind::Vllm | EngineKind::Llamacpp => {
            let choice = v.pointer("/choices/0").ok_or("no `choices` in the answer")?;
            let text = choice
                .get("text")
                .or_else(|| choice.pointer("/message/content"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let tokens = v
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
                .ok_or("no `usage.completion_tokens` in the answer")?;
            Ok(Completion {
                energy_j: v.pointer("/usage/energy_joules").and_then(Value::as_f64),
                prompt_tokens: v.pointer("/usage/prompt_tokens").and_then(Value::as_u64).map(|n| n as u32),
                output_tokens: tokens.min(u64::from(u32::MAX)) as u32,
                text: text.to_owned(),
                ..Completion::default()
            })
        }
    }
}

/// Folds streamed events into a [`Completion`]: OpenAI chunks (`choices[0].text` or
/// `delta.content`, a final `usage`, `[DONE]`) or TGI events (`token`, then `details`).
#[derive(Debug)]
pub struct StreamAccumulator {
    kind: EngineKind,
    first: Option<f64>,
    times: Vec<f64>,
    text: String,
    chunks: u32,
    usage_tokens: Option<u32>,
    prompt_tokens: Option<u32>,
    energy_j: Option<f64>,
    done: bool,
}

impl StreamAccumulator {
    /// A fresh accumulator.
    pub fn new(kind: EngineKind) -> Self {
        StreamAccumulator {
            kind,
            first: None,
            times: Vec::new(),
            text: String::new(),
            chunks: 0,
            usage_tokens: None,
            prompt_tokens: None,
            energy_j: None,
            done: false,
        }
    }

    /// Tokens seen so far (the server's count once it gave one).
    pub fn output_tokens(&self) -> u32 {
        self.usage_tokens.unwrap_or(self.chunks)
    }

    /// Whether the stream said it was finished (`[DONE]` or TGI's `details`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Takes one event's data, seen `t` seconds after sending. Returns whether it carried a token.
    pub fn event(&mut self, data: &str, t: f64) -> Result<bool, String> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(false);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            format!("a streamed event is not JSON ({e}): {:?}", data.chars().take(120).collect::<String>())
        })?;
        if let Some(err) = v.get("error") {
            return Err(format!("the server reported an error mid-stream: {err}"));
        }
        let token_text = match self.kind {
            EngineKind::Tgi => {
                if let Some(n) = v.pointer("/details/generated_tokens").and_then(Value::as_u64) {
                    self.usage_tokens = Some(n as u32);
                    self.done = true;
                }
                let special = v.pointer("/token/special").and_then(Value::as_bool).unwrap_or(false);
                v.pointer("/token/text").and_then(Value::as_str).filter(|_| !special).map(str::to_owned)
            }
            EngineKind::Vllm | EngineKind::Llamacpp => {
                if let Some(n) = v.pointer("/usage/completion_tokens").and_then(Value::as_u64) {
                    self.usage_tokens = Some(n as u32);
                }
                if let Some(n) = v.pointer("/usage/prompt_tokens").and_then(Value::as_u64) {
                    self.prompt_tokens = Some(n as u32);
                }
                if let Some(e) = v.pointer("/usage/energy_joules").and_then(Value::as_f64) {
                    self.energy_j = Some(e);
                }
                let choice = v.pointer("/choices/0");
                // A completions event with empty text and no `finish_reason` is a token that ended
                // inside a multi-byte character, its bytes sent with the next: still a token. The
                // closing event, with its `finish_reason`, is none, and neither is a chat stream's
                // opening role-only delta. (llama.cpp sends no event at all for such a token: the
                // count then comes from `usage`, and that token has no time of its own.)
                let open = choice.is_some_and(|c| c.get("finish_reason").is_none_or(Value::is_null));
                match choice.and_then(|c| c.get("text")).and_then(Value::as_str) {
                    Some("") if open => Some(String::new()),
                    Some("") => None,
                    Some(t) => Some(t.to_owned()),
                    None => choice
                        .and_then(|c| c.pointer("/delta/content"))
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                }
            }
        };
        let Some(tok) = token_text.filter(|t| !t.is_empty() || self.kind != EngineKind::Tgi) else {
            return Ok(false);
        };
        self.chunks += 1;
        self.text.push_str(&tok);
        if self.first.is_none() {
            self.first = Some(t);
        } else {
            self.times.push(t);
        }
        Ok(true)
    }

    /// The stream ended `t` seconds after sending.
    pub fn finish(self, t: f64) -> Result<Completion, String> {
        if self.first.is_none() && self.usage_tokens.is_none() && !self.done {
            return Err("the stream ended before any token or end marker".into());
        }
        Ok(Completion {
            prompt_tokens: self.prompt_tokens,
            output_tokens: self.usage_tokens.unwrap_or(self.chunks),
            ttft_s: self.first.unwrap_or(t),
            token_times_s: self.times,
            e2e_s: t,
            text: self.text,
            energy_j: self.energy_j,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_with_empty_text_counts_and_the_closing_event_does_not() {
        // An event per token; one that ends inside a multi-byte character has empty text, and
        // its bytes come with the next token.
        let mut a = StreamAccumulator::new(EngineKind::Vllm);
        assert!(a.event(r#"{"choices":[{"text":"a","finish_reason":null}]}"#, 0.1).unwrap());
        assert!(a.event(r#"{"choices":[{"text":"","finish_reason":null}]}"#, 0.2).unwrap());
        assert!(a.event(r#"{"choices":[{"text":"é","finish_reason":null}]}"#, 0.3).unwrap());
        assert!(!a.event(r#"{"choices":[{"text":"","finish_reason":"length"}]}"#, 0.4).unwrap());
        // A chat stream's opening delta carries the role and no text: not a token.
        let mut chat = StreamAccumulator::new(EngineKind::Vllm);
        assert!(!chat.event(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#, 0.0).unwrap());
        let c = a.finish(0.5).unwrap();
        assert_eq!((c.output_tokens, c.text.as_str(), c.token_times_s.clone()), (3, "aé", vec![0.2, 0.3]));
    }

    #[test]
    fn openai_stream_with_usage() {
        let mut a = StreamAccumulator::new(EngineKind::Vllm);
        assert!(a.event(r#"{"choices":[{"text":"a"}]}"#, 0.1).unwrap());
        assert!(a.event(r#"{"choices":[{"delta":{"content":"b"}}]}"#, 0.2).unwrap());
        assert!(!a
            .event(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#, 0.3)
            .unwrap());
        assert!(!a.event("[DONE]", 0.3).unwrap());
        let c = a.finish(0.4).unwrap();
        assert_eq!((c.output_tokens, c.prompt_tokens, c.text.as_str()), (7, Some(5), "ab"));
        assert_eq!((c.ttft_s, c.token_times_s.clone(), c.e2e_s), (0.1, vec![0.2], 0.4));
        assert!(StreamAccumulator::new(EngineKind::Vllm).event("{not json", 0.0).is_err());
        assert!(StreamAccumulator::new(EngineKind::Vllm).finish(1.0).is_err());
    }
}
