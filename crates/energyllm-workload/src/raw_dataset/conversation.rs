//! One conversation of a raw dataset, whatever its format: who said what, and when.

use serde_json::Value;

use super::RawFormat;
use crate::trace::parse_datetime_s;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    System,
    User,
    Assistant,
}

pub(super) struct Message {
    pub(super) role: Role,
    pub(super) text: String,
    pub(super) timestamp_s: Option<f64>,
}

pub(super) struct Conversation {
    pub(super) id: Option<String>,
    pub(super) language: Option<String>,
    pub(super) timestamp_s: Option<f64>,
    pub(super) messages: Vec<Message>,
}

pub(super) fn conversation(v: &Value, format: RawFormat) -> Result<Conversation, String> {
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
