//! Request/response previews and trace input/output metadata (`tracing/utils/truncation.py`).

use serde_json::{Map, Value};

/// Cuts `s` to `max_chars` characters: the first `max_chars - 3` followed by `...` when longer.
pub fn truncate_with_ellipsis(s: &str, max_chars: usize) -> String {
    if s.len() <= max_chars {
        return s.to_owned(); // never more characters than bytes
    }
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some(_) => {
            let keep = max_chars.saturating_sub(3);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            // Exactly the size it needs: a trace keeps two previews while it is exported.
            let mut preview = String::with_capacity(end + 3);
            preview.push_str(&s[..end]);
            preview.push_str("...");
            preview
        }
    }
}

/// Which side of a trace a preview is for; decides which chat role is preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewRole {
    /// The request: the last `user` message.
    Request,
    /// The response: the last `assistant` message.
    Response,
}

impl PreviewRole {
    fn role(self) -> &'static str {
        match self {
            PreviewRole::Request => "user",
            PreviewRole::Response => "assistant",
        }
    }
}

/// MLflow's chat-aware preview of a root span's raw JSON inputs or outputs.
///
/// If the JSON is an object holding chat messages (`messages`, `choices[0].message`, Responses
/// API `input`/`output`, or the same under `request`), the preview is the text of the last
/// message with the preferred role (else the last message). Otherwise it is the raw JSON text
/// itself. Either is cut to `max_chars` with a `...` suffix.
pub fn preview(raw_json: &str, role: PreviewRole, max_chars: usize) -> String {
    // Every chat shape holds a message object with a `role` key; without one, skip the parse.
    if !raw_json.contains("\"role\"") {
        return truncate_with_ellipsis(raw_json, max_chars);
    }
    let parsed = crate::json::parse_json::<Value>(raw_json).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| extract_messages(v, 0))
        .and_then(|msgs| {
            let msg = msgs
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some(role.role()))
                .or(msgs.last())?;
            text_of(msg)
        })
        .filter(|t| !t.is_empty());
    truncate_with_ellipsis(text.as_deref().unwrap_or(raw_json), max_chars)
}

fn is_message(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.contains_key("role") && o.contains_key("content"))
}

fn non_empty_list<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Vec<Value>> {
    obj.get(key)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
}

fn messages(list: &[Value]) -> Vec<&Map<String, Value>> {
    list.iter()
        .filter(|m| is_message(m))
        .filter_map(Value::as_object)
        .collect()
}

fn extract_messages(v: &Value, depth: usize) -> Option<Vec<&Map<String, Value>>> {
    let obj = v.as_object()?;
    if let Some(list) = non_empty_list(obj, "messages") {
        return Some(messages(list));
    }
    if let Some(choices) = non_empty_list(obj, "choices")
        && let Some(msg) = choices[0].get("message")
        && is_message(msg)
    {
        return msg.as_object().map(|m| vec![m]);
    }
    if let Some(list) = non_empty_list(obj, "input") {
        return Some(messages(list));
    }
    if let Some(list) = non_empty_list(obj, "output") {
        return Some(messages(list));
    }
    // `depth` bounds the recursion into nested `request` keys (input JSON is already bounded
    // by the parser, this is belt and braces).
    if depth < 8
        && let Some(inner) = obj.get("request")
    {
        return extract_messages(inner, depth + 1);
    }
    None
}

fn text_of(msg: &Map<String, Value>) -> Option<String> {
    match msg.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts.iter().find_map(|p| match p {
            Value::String(s) => Some(s.clone()),
            Value::Object(o)
                if matches!(
                    o.get("type").and_then(Value::as_str),
                    Some("text" | "output_text")
                ) =>
            {
                Some(
                    o.get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value, role: PreviewRole) -> String {
        preview(&crate::json::to_attribute_json(&v).unwrap(), role, 1000)
    }

    #[test]
    fn truncation_lengths() {
        assert_eq!(truncate_with_ellipsis("abc", 3), "abc");
        assert_eq!(truncate_with_ellipsis("abcd", 3), "...");
        let long = "é".repeat(1001);
        let cut = truncate_with_ellipsis(&long, 1000);
        assert_eq!(cut.chars().count(), 1000);
        assert!(cut.ends_with("é..."));
        assert_eq!(truncate_with_ellipsis(&"x".repeat(1000), 1000).len(), 1000);
    }

    #[test]
    fn chat_messages_pick_role() {
        let req = json!({"messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": "second"},
            {"role": "tool"},
        ]});
        assert_eq!(p(req.clone(), PreviewRole::Request), "second");
        assert_eq!(p(req, PreviewRole::Response), "reply");
        // No message with the role: the last message.
        assert_eq!(
            p(
                json!({"messages": [{"role": "system", "content": "sys"}]}),
                PreviewRole::Request
            ),
            "sys"
        );
    }

    #[test]
    fn choices_and_responses_api() {
        let resp = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}}]});
        assert_eq!(p(resp, PreviewRole::Response), "Paris.");
        let input = json!({"input": [{"role": "user", "content": [{"type": "input_image"}, {"type": "text", "text": "hi"}]}]});
        assert_eq!(p(input, PreviewRole::Request), "hi");
        let output = json!({"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]});
        assert_eq!(p(output, PreviewRole::Response), "done");
        let nested = json!({"request": {"input": [{"role": "user", "content": "deep"}]}});
        assert_eq!(p(nested, PreviewRole::Request), "deep");
        let parts = json!({"messages": [{"role": "user", "content": ["plain part", {"type": "text", "text": "x"}]}]});
        assert_eq!(p(parts, PreviewRole::Request), "plain part");
    }

    #[test]
    fn fallbacks_use_raw_json() {
        // A JSON string keeps its quotes.
        assert_eq!(
            preview("\"hello\"", PreviewRole::Request, 1000),
            "\"hello\""
        );
        assert_eq!(
            p(json!({"question": "2+2?"}), PreviewRole::Request),
            "{\"question\": \"2+2?\"}"
        );
        // Empty text content falls back to the raw JSON.
        let empty = json!({"messages": [{"role": "user", "content": ""}]});
        assert_eq!(
            p(empty.clone(), PreviewRole::Request),
            crate::json::to_attribute_json(&empty).unwrap()
        );
        // An empty message list is not a chat.
        assert_eq!(
            p(json!({"messages": []}), PreviewRole::Request),
            "{\"messages\": []}"
        );
        // Not JSON at all.
        assert_eq!(preview("not json", PreviewRole::Request, 1000), "not json");
        // Long chat text is cut to 1000 (997 + ...), Databricks to 10000.
        let long = json!({"messages": [{"role": "user", "content": "y".repeat(20_000)}]});
        assert_eq!(p(long.clone(), PreviewRole::Request).len(), 1000);
        let raw = crate::json::to_attribute_json(&long).unwrap();
        assert_eq!(
            preview(
                &raw,
                PreviewRole::Request,
                crate::keys::PREVIEW_MAX_LENGTH_DATABRICKS
            )
            .len(),
            10_000
        );
    }
}
