//! The OpenTelemetry GenAI semantic conventions translated to MLflow's span attributes, as
//! MLflow 3.17.2's server translates spans it receives over OTLP
//! (`mlflow/tracing/otel/translation`: the GenAI translator, with the Traceloop keys and the
//! LiveKit fallbacks that apply to `gen_ai.*` attributes), but on the client, so the trace info
//! (previews, `mlflow.traceInputs`, token usage totals) is computed from them. The span type is
//! set when the span closes ([`span_type_of_fields`]); the rest ([`finish`]) where the span is
//! finished (see `LiveSpan::finish_with`): on the export worker with `init`, so the thread that
//! records the span does not wait for it.

use std::borrow::Cow;

use mlflow_tracing_entities::json::AttributeJson;
use mlflow_tracing_entities::{Span, SpanType, keys};
use serde_json::{Map, Value};

use crate::fields::FieldValue;

/// A GenAI message event (`gen_ai.user.message`, `gen_ai.choice`, …) and its fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct MessageEvent<'a> {
    pub(crate) name: &'a str,
    pub(crate) role: Option<&'a Value>,
    pub(crate) content: Option<&'a Value>,
}

/// What the translation adds to a span: attribute values as JSON text.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Translated {
    pub(crate) inputs: Option<String>,
    pub(crate) outputs: Option<String>,
    pub(crate) token_usage: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) tools: Option<String>,
}

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

/// The span type of a span's fields (the last value of a key wins): the operation's (exact),
/// else `LLM` when there is a request model, else the operation's in lower case (MLflow's
/// GenAI, then LiveKit, rules).
pub(crate) fn span_type_of_fields(fields: &[(&'static str, FieldValue)]) -> Option<SpanType> {
    let op = fields.iter().rev().find_map(|(k, v)| match v {
        FieldValue::Text(t) if *k == "gen_ai.operation.name" => Some(Cow::Borrowed(t.as_str())),
        FieldValue::Json(j) if *k == "gen_ai.operation.name" => as_text(j.as_str()),
        _ => None,
    });
    span_type(op, fields.iter().any(|(k, _)| *k == "gen_ai.request.model"))
}

/// The span type of an operation name and whether there is a request model.
fn span_type(op: Option<Cow<'_, str>>, request_model: bool) -> Option<SpanType> {
    if let Some(t) = op.as_deref().and_then(span_type_of_operation) {
        return Some(t);
    }
    if request_model {
        return Some(SpanType::Llm);
    }
    op.and_then(|o| span_type_of_operation(&o.to_ascii_lowercase()))
}

/// The text of a JSON string value.
fn as_text(json: &str) -> Option<Cow<'_, str>> {
    if !json.starts_with('"') {
        return None;
    }
    match json.get(1..json.len() - 1) {
        // Most strings have no escapes: no parsing.
        Some(inner) if !inner.contains(['\\', '"']) => Some(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// Python's truthiness of a JSON value, read from its (valid) text without parsing it.
fn truthy(json: &str) -> bool {
    let s = json.trim();
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

/// The attributes the translation reads (JSON text), found in one pass over a span's
/// attributes (the last value of a key wins, as in the attribute dict MLflow translates).
#[derive(Default)]
struct Found<'a> {
    /// Whether any key is a `gen_ai.*` or `llm.*` one.
    any: bool,
    operation: Option<&'a str>,
    request_model: Option<&'a str>,
    response_model: Option<&'a str>,
    provider_name: Option<&'a str>,
    system: Option<&'a str>,
    tool_definitions: Option<&'a str>,
    input_messages: Option<&'a str>,
    output_messages: Option<&'a str>,
    tool_call_arguments: Option<&'a str>,
    tool_call_result: Option<&'a str>,
    prompt: Option<&'a str>,
    completion: Option<&'a str>,
    input_tokens: Option<&'a str>,
    output_tokens: Option<&'a str>,
    cache_read_tokens: Option<&'a str>,
    cache_write_tokens: Option<&'a str>,
    cache_creation_tokens: Option<&'a str>,
    prompt_tokens: Option<&'a str>,
    completion_tokens: Option<&'a str>,
    total_tokens: Option<&'a str>,
    /// The first truthy `gen_ai.prompt.<n>.content` (Traceloop's indexed keys), and so on.
    prompt_content: Option<&'a str>,
    completion_content: Option<&'a str>,
    /// The first truthy `gen_ai.completion.<n>.tool_calls.<m>.arguments`.
    completion_arguments: Option<&'a str>,
}

impl<'a> Found<'a> {
    fn of<'k>(attrs: impl IntoIterator<Item = (&'k str, &'a str)>) -> Self {
        let mut f = Found::default();
        for (key, value) in attrs {
            if let Some(rest) = key.strip_prefix("gen_ai.") {
                f.any = true;
                let slot = match rest {
                    "operation.name" => &mut f.operation,
                    "request.model" => &mut f.request_model,
                    "response.model" => &mut f.response_model,
                    "provider.name" => &mut f.provider_name,
                    "system" => &mut f.system,
                    "tool.definitions" => &mut f.tool_definitions,
                    "input.messages" => &mut f.input_messages,
                    "output.messages" => &mut f.output_messages,
                    "tool.call.arguments" => &mut f.tool_call_arguments,
                    "tool.call.result" => &mut f.tool_call_result,
                    "prompt" => &mut f.prompt,
                    "completion" => &mut f.completion,
                    "usage.input_tokens" => &mut f.input_tokens,
                    "usage.output_tokens" => &mut f.output_tokens,
                    "usage.cache_read.input_tokens" => &mut f.cache_read_tokens,
                    "usage.cache_write.input_tokens" => &mut f.cache_write_tokens,
                    "usage.cache_creation.input_tokens" => &mut f.cache_creation_tokens,
                    "usage.prompt_tokens" => &mut f.prompt_tokens,
                    "usage.completion_tokens" => &mut f.completion_tokens,
                    _ => {
                        f.indexed_key(rest, value);
                        continue;
                    }
                };
                *slot = Some(value);
            } else if key.starts_with("llm.") {
                f.any = true;
                if key == "llm.usage.total_tokens" {
                    f.total_tokens = Some(value);
                }
            }
        }
        f
    }

    /// `prompt.<n>.content`, `completion.<n>.content` and
    /// `completion.<n>.tool_calls.<m>.arguments` (after `gen_ai.`): the first truthy of each.
    fn indexed_key(&mut self, rest: &str, value: &'a str) {
        let (slot, middle, tool_calls) = if let Some(r) = rest.strip_prefix("prompt.") {
            match r.strip_suffix(".content") {
                Some(m) => (&mut self.prompt_content, m, false),
                None => return,
            }
        } else if let Some(r) = rest.strip_prefix("completion.") {
            if let Some(m) = r.strip_suffix(".content") {
                (&mut self.completion_content, m, false)
            } else if let Some(m) = r.strip_suffix(".arguments") {
                (&mut self.completion_arguments, m, true)
            } else {
                return;
            }
        } else {
            return;
        };
        if slot.is_none() && indexed(middle, tool_calls) && truthy(value) {
            *slot = Some(value);
        }
    }
}

/// The first truthy value.
fn first_truthy(values: &[Option<&str>]) -> Option<String> {
    values
        .iter()
        .flatten()
        .find(|v| truthy(v))
        .map(|v| (*v).to_owned())
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
fn messages_from_events(events: &[MessageEvent<'_>], outputs: bool) -> Option<String> {
    let messages: Vec<Value> = events
        .iter()
        .filter_map(|e| {
            let role = if outputs {
                if e.name != "gen_ai.choice" {
                    return None;
                }
                e.role
                    .cloned()
                    .map(decode_value)
                    .unwrap_or_else(|| Value::String("assistant".into()))
            } else {
                let role = match e.name {
                    "gen_ai.system.message" => "system",
                    "gen_ai.user.message" => "user",
                    "gen_ai.assistant.message" => "assistant",
                    _ => return None,
                };
                Value::String(role.into())
            };
            let content = e.content.cloned()?;
            let mut m = Map::new();
            m.insert("role".into(), role);
            m.insert("content".into(), decode_value(content));
            Some(Value::Object(m))
        })
        .collect();
    if messages.is_empty() {
        return None;
    }
    AttributeJson::of_ascii(&messages)
        .ok()
        .map(AttributeJson::into_string)
}

/// Python's `try_json_loads`: a string holding JSON becomes that JSON.
fn decode_value(v: Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

/// A token count: a JSON integer, or a string of one.
fn token_count(json: Option<&str>) -> Option<i64> {
    let json = json?;
    match json.parse() {
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
    fn to_json(&self) -> String {
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
        .into_string()
    }
}

fn token_usage(f: &Found<'_>) -> Option<String> {
    let (input, output) = (token_count(f.input_tokens), token_count(f.output_tokens));
    let usage = if input.is_some() || output.is_some() {
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: None,
            cache_read_input_tokens: token_count(f.cache_read_tokens),
            cache_creation_input_tokens: token_count(f.cache_write_tokens)
                .or_else(|| token_count(f.cache_creation_tokens)),
        }
    } else {
        // Traceloop's (older) keys.
        let usage = Usage {
            input_tokens: token_count(f.prompt_tokens),
            output_tokens: token_count(f.completion_tokens),
            total_tokens: token_count(f.total_tokens),
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

/// Translates a span's GenAI attributes (`(key, JSON text)` in the order set; the last value of
/// a key wins) and message events.
pub(crate) fn translate<'k, 'a>(
    attrs: impl IntoIterator<Item = (&'k str, &'a str)>,
    events: &[MessageEvent<'_>],
) -> Translated {
    let f = Found::of(attrs);
    if !f.any && events.is_empty() {
        return Translated::default();
    }
    let inputs = first_truthy(&[
        f.input_messages,
        f.tool_call_arguments,
        f.prompt_content,
        f.completion_arguments,
    ])
    .or_else(|| messages_from_events(events, false))
    // Beyond MLflow's server: the plain prompt text some frameworks (rig) record on their agent
    // span, so the trace gets its request preview.
    .or_else(|| first_truthy(&[f.prompt]));
    let outputs = first_truthy(&[f.output_messages, f.tool_call_result, f.completion_content])
        .or_else(|| messages_from_events(events, true))
        .or_else(|| first_truthy(&[f.completion]));
    Translated {
        inputs,
        outputs,
        token_usage: token_usage(&f),
        model: f.response_model.or(f.request_model).map(str::to_owned),
        provider: f.provider_name.or(f.system).map(str::to_owned),
        tools: f.tool_definitions.map(str::to_owned),
    }
}

/// The translation of a span the layer recorded, run when its trace is finalized (the span's
/// [`finish_with`](mlflow_tracing_manager::LiveSpan::finish_with) hook): its GenAI attributes
/// and message events become MLflow's inputs, outputs, token usage, model, provider and tools,
/// after its other attributes. A key the span already has (a field named after it, or set
/// through the span API) wins.
pub(crate) fn finish(span: &mut Span) {
    let t = {
        let events: Vec<MessageEvent<'_>> = span
            .events()
            .iter()
            .filter(|e| e.name.starts_with("gen_ai."))
            .map(|e| MessageEvent {
                name: &e.name,
                role: e.attributes.get("role"),
                content: e.attributes.get("content"),
            })
            .collect();
        let attrs = span
            .raw_attributes()
            .iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?)));
        translate(attrs, &events)
    };
    let translated = [
        (keys::span::INPUTS, t.inputs),
        (keys::span::OUTPUTS, t.outputs),
        (keys::span::CHAT_USAGE, t.token_usage),
        (keys::span::MODEL, t.model),
        (keys::span::MODEL_PROVIDER, t.provider),
        (keys::span::CHAT_TOOLS, t.tools),
    ]
    .map(|(key, json)| {
        Some((
            key,
            json.filter(|_| !span.raw_attributes().contains_key(key))?,
        ))
    });
    // And one more for the log level the end rules add.
    span.reserve_attributes(translated.iter().flatten().count() + 1);
    for (key, json) in translated.into_iter().flatten() {
        span.set_raw_attribute(key, Value::String(json));
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

    fn pairs<'a>(
        attrs: &'a [(&'static str, AttributeJson)],
    ) -> impl Iterator<Item = (&'static str, &'a str)> {
        attrs.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The span type of fields holding these attributes.
    fn span_type(attrs: &[(&'static str, AttributeJson)]) -> Option<SpanType> {
        let fields: Vec<_> = attrs
            .iter()
            .map(|(k, v)| (*k, FieldValue::Json(v.clone())))
            .collect();
        span_type_of_fields(&fields)
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
        let t = translate(pairs(&a), &[]);
        assert_eq!(
            t.inputs.as_deref(),
            Some("{\"x\":2}"),
            "an empty list is skipped"
        );
        assert_eq!(
            t.outputs.as_deref(),
            Some("[{\"role\":\"assistant\",\"parts\":[]}]"),
            "kept byte for byte"
        );
        assert_eq!(
            t.token_usage.as_deref(),
            Some(
                r#"{"input_tokens": 50, "output_tokens": 10, "total_tokens": 60, "cache_read_input_tokens": 4}"#
            )
        );
        assert_eq!(t.model.as_deref(), Some("\"gpt-4o-mini-2024\""));
        assert_eq!(t.provider.as_deref(), Some("\"openai\""));
        assert_eq!(t.tools.as_deref(), Some("[{\"name\":\"add\"}]"));
    }

    #[test]
    fn message_events_become_inputs_and_outputs() {
        let (sys, user, ok) = (
            Value::String("sys".into()),
            Value::String("[{\"type\":\"text\",\"text\":\"é\"}]".into()),
            Value::String("ok".into()),
        );
        let events = [
            MessageEvent {
                name: "gen_ai.system.message",
                role: None,
                content: Some(&sys),
            },
            MessageEvent {
                name: "gen_ai.user.message",
                role: None,
                content: Some(&user),
            },
            MessageEvent {
                name: "gen_ai.choice",
                role: None,
                content: Some(&ok),
            },
        ];
        let t = translate([], &events);
        assert_eq!(
            t.inputs.as_deref(),
            Some(
                r#"[{"role": "system", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "\u00e9"}]}]"#
            )
        );
        assert_eq!(
            t.outputs.as_deref(),
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
        let t = translate(pairs(&a), &[]);
        assert_eq!(t.inputs.as_deref(), Some("\"hi\""));
        assert_eq!(t.outputs.as_deref(), Some("\"yo\""));
        assert_eq!(
            t.token_usage.as_deref(),
            Some(r#"{"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}"#)
        );
        assert_eq!(t.provider.as_deref(), Some("\"openai\""));
        let rig = attrs(&[
            ("gen_ai.prompt", "\"What is 2 + 5?\""),
            ("gen_ai.completion", "\"7\""),
        ]);
        let t = translate(pairs(&rig), &[]);
        assert_eq!(t.inputs.as_deref(), Some("\"What is 2 + 5?\""));
        assert_eq!(t.outputs.as_deref(), Some("\"7\""));
    }
}
