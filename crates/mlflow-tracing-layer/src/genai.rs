//! The OpenTelemetry GenAI semantic conventions translated to MLflow's span attributes, as
//! MLflow 3.17.2's server translates spans it receives over OTLP
//! (`mlflow/tracing/otel/translation`: the GenAI translator, with the Traceloop keys and the
//! LiveKit fallbacks that apply to `gen_ai.*` attributes), but on the client, so the trace info
//! (previews, `mlflow.traceInputs`, token usage totals) is computed from them.

use mlflow_tracing_entities::SpanType;
use mlflow_tracing_entities::json::to_python_json;
use serde_json::{Map, Value};

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

/// The span type of a span's GenAI attributes: the operation's (exact), else `LLM` when it has
/// a request model, else the operation's in lower case (MLflow's GenAI, then LiveKit, rules).
pub(crate) fn span_type(attrs: &[(&str, String)]) -> Option<SpanType> {
    let op = get(attrs, "gen_ai.operation.name").and_then(decode);
    let op = op.as_ref().and_then(Value::as_str);
    if let Some(t) = op.and_then(span_type_of_operation) {
        return Some(t);
    }
    if get(attrs, "gen_ai.request.model").is_some() {
        return Some(SpanType::Llm);
    }
    op.and_then(|o| span_type_of_operation(&o.to_ascii_lowercase()))
}

fn get<'a>(attrs: &'a [(&str, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

fn decode(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// Python's truthiness of the JSON value.
fn truthy(text: &str) -> bool {
    match decode(text) {
        None => !text.is_empty(),
        Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// A key pattern: `prefix<n>suffix`, or `prefix<n>.tool_calls.<m>suffix`.
type Pattern = (&'static str, &'static str, bool);

/// The first of `keys` whose value is truthy, then the first key matching a pattern, in order.
fn first_truthy(attrs: &[(&str, String)], keys: &[&str], patterns: &[Pattern]) -> Option<String> {
    for key in keys {
        if let Some(v) = get(attrs, key).filter(|v| truthy(v)) {
            return Some(v.to_owned());
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
fn messages_from_events(events: &[MessageEvent], outputs: bool) -> Option<String> {
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
    to_python_json(&messages).ok()
}

/// Python's `try_json_loads`: a string holding JSON becomes that JSON.
fn decode_value(v: Value) -> Value {
    match v {
        Value::String(s) => decode(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

/// A token count: a JSON integer, or a string of one.
fn token_count(attrs: &[(&str, String)], key: &str) -> Option<i64> {
    match decode(get(attrs, key)?)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn token_usage(attrs: &[(&str, String)]) -> Option<String> {
    let genai = (
        token_count(attrs, "gen_ai.usage.input_tokens"),
        token_count(attrs, "gen_ai.usage.output_tokens"),
        None,
    );
    let (input, output, total, cache_read, cache_creation) =
        if genai.0.is_some() || genai.1.is_some() {
            (
                genai.0,
                genai.1,
                genai.2,
                token_count(attrs, "gen_ai.usage.cache_read.input_tokens"),
                token_count(attrs, "gen_ai.usage.cache_write.input_tokens")
                    .or_else(|| token_count(attrs, "gen_ai.usage.cache_creation.input_tokens")),
            )
        } else {
            // Traceloop's (older) keys.
            let input = token_count(attrs, "gen_ai.usage.prompt_tokens");
            let output = token_count(attrs, "gen_ai.usage.completion_tokens");
            let total = token_count(attrs, "llm.usage.total_tokens");
            if input.is_none() && output.is_none() && total.is_none() {
                return None;
            }
            (input, output, total, None, None)
        };
    let total = total.or_else(|| Some(input? + output?));
    let mut usage = Map::new();
    let mut put = |k: &str, v: Option<i64>| {
        if let Some(v) = v {
            usage.insert(k.into(), Value::from(v));
        }
    };
    put("input_tokens", input);
    put("output_tokens", output);
    put("total_tokens", total);
    put("cache_read_input_tokens", cache_read);
    put("cache_creation_input_tokens", cache_creation);
    to_python_json(&Value::Object(usage)).ok()
}

/// Translates a span's GenAI attributes (`(key, attribute JSON text)`, in the order recorded;
/// the last value of a key wins) and message events.
pub(crate) fn translate(attrs: &[(&str, String)], events: &[MessageEvent]) -> Translated {
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
    let first = |keys: &[&str]| keys.iter().find_map(|k| get(attrs, k)).map(str::to_owned);
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

    fn attrs(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
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
            assert_eq!(span_type(&attrs(&[("gen_ai.operation.name", op)])), t, "{op}");
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
            ("gen_ai.output.messages", "[{\"role\":\"assistant\",\"parts\":[]}]"),
            ("gen_ai.usage.input_tokens", "50"),
            ("gen_ai.usage.output_tokens", "\"10\""),
            ("gen_ai.usage.cache_read.input_tokens", "4"),
            ("gen_ai.request.model", "\"gpt-4o-mini\""),
            ("gen_ai.response.model", "\"gpt-4o-mini-2024\""),
            ("gen_ai.provider.name", "\"openai\""),
            ("gen_ai.tool.definitions", "[{\"name\":\"add\"}]"),
        ]);
        let t = translate(&a, &[]);
        assert_eq!(t.inputs.as_deref(), Some("{\"x\":2}"), "an empty list is skipped");
        assert_eq!(
            t.outputs.as_deref(),
            Some("[{\"role\":\"assistant\",\"parts\":[]}]"),
            "kept byte for byte"
        );
        assert_eq!(
            t.token_usage.as_deref(),
            Some(r#"{"input_tokens": 50, "output_tokens": 10, "total_tokens": 60, "cache_read_input_tokens": 4}"#)
        );
        assert_eq!(t.model.as_deref(), Some("\"gpt-4o-mini-2024\""));
        assert_eq!(t.provider.as_deref(), Some("\"openai\""));
        assert_eq!(t.tools.as_deref(), Some("[{\"name\":\"add\"}]"));
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
            t.inputs.as_deref(),
            Some(r#"[{"role": "system", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "\u00e9"}]}]"#)
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
        let t = translate(&a, &[]);
        assert_eq!(t.inputs.as_deref(), Some("\"hi\""));
        assert_eq!(t.outputs.as_deref(), Some("\"yo\""));
        assert_eq!(
            t.token_usage.as_deref(),
            Some(r#"{"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}"#)
        );
        assert_eq!(t.provider.as_deref(), Some("\"openai\""));
        let rig = attrs(&[("gen_ai.prompt", "\"What is 2 + 5?\""), ("gen_ai.completion", "\"7\"")]);
        let t = translate(&rig, &[]);
        assert_eq!(t.inputs.as_deref(), Some("\"What is 2 + 5?\""));
        assert_eq!(t.outputs.as_deref(), Some("\"7\""));
    }
}
