//! The OpenTelemetry GenAI semantic conventions translated to MLflow's span attributes, as
//! MLflow 3.17.2's server translates spans it receives over OTLP
//! (`mlflow/tracing/otel/translation`: the GenAI translator, with the Traceloop keys and the
//! LiveKit fallbacks that apply to `gen_ai.*` attributes), but on the client, so the trace info
//! (previews, `mlflow.traceInputs`, token usage totals) is computed from them.

use std::borrow::Cow;

use mlflow_tracing_entities::SpanType;
use mlflow_tracing_entities::json::AttributeJson;
use serde_json::{Map, Value};

use crate::fields::FieldValue;

/// A GenAI message event (`gen_ai.user.message`, `gen_ai.choice`, …) and its fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct MessageEvent {
    pub(crate) name: String,
    pub(crate) role: Option<Value>,
    pub(crate) content: Option<Value>,
}

/// What the translation adds to a span.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Translated {
    pub(crate) span_type: Option<SpanType>,
    pub(crate) inputs: Option<AttributeJson>,
    pub(crate) outputs: Option<AttributeJson>,
    pub(crate) token_usage: Option<AttributeJson>,
    pub(crate) model: Option<AttributeJson>,
    pub(crate) provider: Option<AttributeJson>,
    pub(crate) tools: Option<AttributeJson>,
}

/// A span's attributes as the translation reads them: `(key, stored JSON)`.
pub(crate) type Attrs = [(&'static str, AttributeJson)];

/// MLflow's `gen_ai.operation.name` → span type table.
pub(crate) fn span_type_of_operation(op: &str) -> Option<SpanType> {
    Some(match op {
        "chat" => SpanType::ChatModel,
        "create_agent" | "invoke_agent" => SpanType::Agent,
        "embeddings" => SpanType::Embedding,
        "execute_tool" => SpanType::Tool,
        "generate_content" | "text_completion" | "response" => SpanType::Llm,
        _ => return None,
    })
}

/// The span type of a span's GenAI attributes: the operation's (exact), else `LLM` when it has
/// a request model, else the operation's in lower case (MLflow's GenAI, then LiveKit, rules).
pub(crate) fn span_type(attrs: &Attrs) -> Option<SpanType> {
    let op = get(attrs, "gen_ai.operation.name").and_then(as_text);
    if let Some(t) = op.as_deref().and_then(span_type_of_operation) {
        return Some(t);
    }
    if get(attrs, "gen_ai.request.model").is_some() {
        return Some(SpanType::Llm);
    }
    op.and_then(|o| span_type_of_operation(&o.to_ascii_lowercase()))
}

/// The span type from the fields a span was created with, when they name the operation or the
/// request model.
pub(crate) fn span_type_at_start(fields: &[(&'static str, FieldValue)]) -> Option<SpanType> {
    let text = |key: &str| {
        fields.iter().find_map(|(k, v)| match v {
            FieldValue::Text(t) if *k == key => Some(Cow::Borrowed(t.as_str())),
            FieldValue::Json(j) if *k == key => as_text(j),
            _ => None,
        })
    };
    let op = text("gen_ai.operation.name");
    let op = op.as_deref();
    if let Some(t) = op.and_then(span_type_of_operation) {
        return Some(t);
    }
    if fields.iter().any(|(k, _)| *k == "gen_ai.request.model") {
        return Some(SpanType::Llm);
    }
    op.and_then(|o| span_type_of_operation(&o.to_ascii_lowercase()))
}

fn get<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a AttributeJson> {
    attrs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The text of a JSON string value.
fn as_text(json: &AttributeJson) -> Option<Cow<'_, str>> {
    let s = json.as_str();
    if !s.starts_with('"') {
        return None;
    }
    match s.get(1..s.len() - 1) {
        // Most strings have no escapes: no parsing.
        Some(inner) if !inner.contains(['\\', '"']) => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(s).ok().map(Cow::Owned),
    }
}

/// Python's truthiness of a JSON value, read from its (valid) text without parsing it.
fn truthy(json: &AttributeJson) -> bool {
    let s = json.as_str().trim();
    let after_open = || s[1..].trim_start();
    match s.as_bytes().first() {
        None | Some(b'n' | b'f') => false,
        Some(b't') => true,
        Some(b'"') => s.len() > 2,
        Some(b'[') => !after_open().starts_with(']'),
        Some(b'{') => !after_open().starts_with('}'),
        Some(_) => s.parse::<f64>().is_ok_and(|f| f != 0.0),
    }
}

/// A key pattern: `prefix<n>suffix`, or `prefix<n>.tool_calls.<m>suffix`.
type Pattern = (&'static str, &'static str, bool);

/// The first of `keys` whose value is truthy, then the first key matching a pattern, in order.
fn first_truthy(attrs: &Attrs, keys: &[&str], patterns: &[Pattern]) -> Option<AttributeJson> {
    for key in keys {
        if let Some(v) = get(attrs, key).filter(|v| truthy(v)) {
            return Some(v.clone());
        }
    }
    for (prefix, suffix, tool_calls) in patterns {
        let found = attrs.iter().find(|(k, v)| {
            k.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
                .is_some_and(|middle| indexed(middle, *tool_calls))
                && truthy(v)
        });
        if let Some((_, v)) = found {
            return Some(v.clone());
        }
    }
    None
}

/// `<digits>`, or with `tool_calls`, `<digits>.tool_calls.<digits>`.
fn indexed(middle: &str, tool_calls: bool) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (middle.split_once(".tool_calls."), tool_calls) {
        (Some((a, b)), true) => digits(a) && digits(b),
        (None, false) => digits(middle),
        _ => false,
    }
}

/// Messages from GenAI events, as `json.dumps` writes them (MLflow's LiveKit translator).
fn messages_from_events(events: &[MessageEvent], outputs: bool) -> Option<AttributeJson> {
    let messages: Vec<Value> = events
        .iter()
        .filter_map(|e| {
            let role = if outputs {
                if e.name != "gen_ai.choice" {
                    return None;
                }
                e.role
                    .clone()
                    .map(decode_value)
                    .unwrap_or_else(|| Value::String("assistant".into()))
            } else {
                let role = match e.name.as_str() {
                    "gen_ai.system.message" => "system",
                    "gen_ai.user.message" => "user",
                    "gen_ai.assistant.message" => "assistant",
                    _ => return None,
                };
                Value::String(role.into())
            };
            let content = e.content.clone()?;
            let mut m = Map::new();
            m.insert("role".into(), role);
            m.insert("content".into(), decode_value(content));
            Some(Value::Object(m))
        })
        .collect();
    if messages.is_empty() {
        return None;
    }
    AttributeJson::of_ascii(&messages).ok()
}

/// Python's `try_json_loads`: a string holding JSON becomes that JSON.
fn decode_value(v: Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

/// A token count: a JSON integer, or a string of one.
fn token_count(attrs: &Attrs, key: &str) -> Option<i64> {
    let json = get(attrs, key)?;
    match json.as_str().parse() {
        Ok(n) => Some(n),
        Err(_) => as_text(json)?.trim().parse().ok(),
    }
}

/// `mlflow.chat.tokenUsage`, its keys in MLflow's order.
struct Usage {
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    total_tokens: Option<i64>,
    cache_read_input_tokens: Option<i64>,
    cache_creation_input_tokens: Option<i64>,
}

impl Usage {
    /// `json.dumps` of the dict of the counts that are set.
    fn to_json(&self) -> AttributeJson {
        AttributeJson::int_object(
            [
                ("input_tokens", self.input_tokens),
                ("output_tokens", self.output_tokens),
                ("total_tokens", self.total_tokens),
                ("cache_read_input_tokens", self.cache_read_input_tokens),
                (
                    "cache_creation_input_tokens",
                    self.cache_creation_input_tokens,
                ),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?))),
        )
    }
}

fn token_usage(attrs: &Attrs) -> Option<AttributeJson> {
    let (input, output) = (
        token_count(attrs, "gen_ai.usage.input_tokens"),
        token_count(attrs, "gen_ai.usage.output_tokens"),
    );
    let usage = if input.is_some() || output.is_some() {
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: None,
            cache_read_input_tokens: token_count(attrs, "gen_ai.usage.cache_read.input_tokens"),
            cache_creation_input_tokens: token_count(
                attrs,
                "gen_ai.usage.cache_write.input_tokens",
            )
            .or_else(|| token_count(attrs, "gen_ai.usage.cache_creation.input_tokens")),
        }
    } else {
        // Traceloop's (older) keys.
        let usage = Usage {
            input_tokens: token_count(attrs, "gen_ai.usage.prompt_tokens"),
            output_tokens: token_count(attrs, "gen_ai.usage.completion_tokens"),
            total_tokens: token_count(attrs, "llm.usage.total_tokens"),
            cache_read_input_tokens: None,
            cache_creation_input_tokens: None,
        };
        if usage.input_tokens.is_none()
            && usage.output_tokens.is_none()
            && usage.total_tokens.is_none()
        {
            return None;
        }
        usage
    };
    let total = usage
        .total_tokens
        .or_else(|| usage.input_tokens?.checked_add(usage.output_tokens?));
    Some(
        Usage {
            total_tokens: total,
            ..usage
        }
        .to_json(),
    )
}

/// Translates a span's GenAI attributes (in the order recorded; the last value of a key wins)
/// and message events.
pub(crate) fn translate(attrs: &Attrs, events: &[MessageEvent]) -> Translated {
    if events.is_empty()
        && !attrs
            .iter()
            .any(|(k, _)| k.starts_with("gen_ai.") || k.starts_with("llm."))
    {
        return Translated::default();
    }
    let inputs = first_truthy(
        attrs,
        &["gen_ai.input.messages", "gen_ai.tool.call.arguments"],
        &[
            ("gen_ai.prompt.", ".content", false),
            ("gen_ai.completion.", ".arguments", true),
        ],
    )
    .or_else(|| messages_from_events(events, false))
    // Beyond MLflow's server: the plain prompt text some frameworks (rig) record on their agent
    // span, so the trace gets its request preview.
    .or_else(|| first_truthy(attrs, &["gen_ai.prompt"], &[]));
    let outputs = first_truthy(
        attrs,
        &["gen_ai.output.messages", "gen_ai.tool.call.result"],
        &[("gen_ai.completion.", ".content", false)],
    )
    .or_else(|| messages_from_events(events, true))
    .or_else(|| first_truthy(attrs, &["gen_ai.completion"], &[]));
    let first = |keys: &[&str]| keys.iter().find_map(|k| get(attrs, k)).cloned();
    Translated {
        span_type: span_type(attrs),
        inputs,
        outputs,
        token_usage: token_usage(attrs),
        model: first(&["gen_ai.response.model", "gen_ai.request.model"]),
        provider: first(&["gen_ai.provider.name", "gen_ai.system"]),
        tools: first(&["gen_ai.tool.definitions"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, AttributeJson)> {
        pairs
            .iter()
            .map(|(k, v)| (*k, AttributeJson::parse((*v).to_owned()).unwrap()))
            .collect()
    }

    #[test]
    fn operations_map_to_span_types_as_on_the_server() {
        for (op, t) in [
            ("\"chat\"", Some(SpanType::ChatModel)),
            ("\"invoke_agent\"", Some(SpanType::Agent)),
            ("\"execute_tool\"", Some(SpanType::Tool)),
            ("\"embeddings\"", Some(SpanType::Embedding)),
            ("\"text_completion\"", Some(SpanType::Llm)),
            ("\"Chat\"", Some(SpanType::ChatModel)),
            ("\"retrieval\"", None),
        ] {
            assert_eq!(
                span_type(&attrs(&[("gen_ai.operation.name", op)])),
                t,
                "{op}"
            );
        }
        // An unknown operation with a request model is an LLM call.
        let a = attrs(&[
            ("gen_ai.operation.name", "\"retrieval\""),
            ("gen_ai.request.model", "\"m\""),
        ]);
        assert_eq!(span_type(&a), Some(SpanType::Llm));
    }

    #[test]
    fn messages_usage_model_and_tools_are_translated() {
        let a = attrs(&[
            ("gen_ai.operation.name", "\"chat\""),
            ("gen_ai.input.messages", "[]"),
            ("gen_ai.tool.call.arguments", "{\"x\":2}"),
            (
                "gen_ai.output.messages",
                "[{\"role\":\"assistant\",\"parts\":[]}]",
            ),
            ("gen_ai.usage.input_tokens", "50"),
            ("gen_ai.usage.output_tokens", "\"10\""),
            ("gen_ai.usage.cache_read.input_tokens", "4"),
            ("gen_ai.request.model", "\"gpt-4o-mini\""),
            ("gen_ai.response.model", "\"gpt-4o-mini-2024\""),
            ("gen_ai.provider.name", "\"openai\""),
            ("gen_ai.tool.definitions", "[{\"name\":\"add\"}]"),
        ]);
        let t = translate(&a, &[]);
        assert_eq!(
            t.inputs.as_ref().map(AttributeJson::as_str),
            Some("{\"x\":2}"),
            "an empty list is skipped"
        );
        assert_eq!(
            t.outputs.as_ref().map(AttributeJson::as_str),
            Some("[{\"role\":\"assistant\",\"parts\":[]}]"),
            "kept byte for byte"
        );
        assert_eq!(
            t.token_usage.as_ref().map(AttributeJson::as_str),
            Some(
                r#"{"input_tokens": 50, "output_tokens": 10, "total_tokens": 60, "cache_read_input_tokens": 4}"#
            )
        );
        assert_eq!(
            t.model.as_ref().map(AttributeJson::as_str),
            Some("\"gpt-4o-mini-2024\"")
        );
        assert_eq!(
            t.provider.as_ref().map(AttributeJson::as_str),
            Some("\"openai\"")
        );
        assert_eq!(
            t.tools.as_ref().map(AttributeJson::as_str),
            Some("[{\"name\":\"add\"}]")
        );
    }

    #[test]
    fn message_events_become_inputs_and_outputs() {
        let events = [
            MessageEvent {
                name: "gen_ai.system.message".into(),
                role: None,
                content: Some(Value::String("sys".into())),
            },
            MessageEvent {
                name: "gen_ai.user.message".into(),
                role: None,
                content: Some(Value::String("[{\"type\":\"text\",\"text\":\"é\"}]".into())),
            },
            MessageEvent {
                name: "gen_ai.choice".into(),
                role: None,
                content: Some(Value::String("ok".into())),
            },
        ];
        let t = translate(&[], &events);
        assert_eq!(
            t.inputs.as_ref().map(AttributeJson::as_str),
            Some(
                r#"[{"role": "system", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "\u00e9"}]}]"#
            )
        );
        assert_eq!(
            t.outputs.as_ref().map(AttributeJson::as_str),
            Some(r#"[{"role": "assistant", "content": "ok"}]"#)
        );
    }

    #[test]
    fn old_keys_and_plain_prompts_are_read_too() {
        let a = attrs(&[
            ("gen_ai.prompt.0.content", "\"hi\""),
            ("gen_ai.completion.0.content", "\"yo\""),
            ("gen_ai.usage.prompt_tokens", "3"),
            ("gen_ai.usage.completion_tokens", "4"),
            ("gen_ai.system", "\"openai\""),
        ]);
        let t = translate(&a, &[]);
        assert_eq!(t.inputs.as_ref().map(AttributeJson::as_str), Some("\"hi\""));
        assert_eq!(
            t.outputs.as_ref().map(AttributeJson::as_str),
            Some("\"yo\"")
        );
        assert_eq!(
            t.token_usage.as_ref().map(AttributeJson::as_str),
            Some(r#"{"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}"#)
        );
        assert_eq!(
            t.provider.as_ref().map(AttributeJson::as_str),
            Some("\"openai\"")
        );
        let rig = attrs(&[
            ("gen_ai.prompt", "\"What is 2 + 5?\""),
            ("gen_ai.completion", "\"7\""),
        ]);
        let t = translate(&rig, &[]);
        assert_eq!(
            t.inputs.as_ref().map(AttributeJson::as_str),
            Some("\"What is 2 + 5?\"")
        );
        assert_eq!(t.outputs.as_ref().map(AttributeJson::as_str), Some("\"7\""));
    }
}
