//! Hostile input, one table: each case is an input a user, a peer service or a server may
//! hand the SDK, with the outcome expected of it: a clear error, escaped output, or a counted
//! drop. Never a panic, never a blocked caller. Every case runs (a failing or panicking case
//! does not hide the others) and the test fails listing those that did not hold.
#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use mlflow_tracing::display::{DisplayConfig, TraceRef, iframe_html};
use mlflow_tracing::distributed::continue_trace;
use mlflow_tracing::entities::{SpanId, Trace, TraceId};
use mlflow_tracing::server::{ClientConfig, ClientError, TrackingClient};
use mlflow_tracing::testing::Capture;
use mlflow_tracing::{Span, TraceUpdate, start_span, update_current_trace};
use mlflow_tracing_tests::fake_server;
use serde_json::{Value, json};

type Outcome = Result<(), String>;

fn check(ok: bool, what: impl Into<String>) -> Outcome {
    if ok { Ok(()) } else { Err(what.into()) }
}

fn raw(span: &Span, key: &str) -> Option<String> {
    span.raw_attributes()
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// One span made by `f` in a fresh capture: the span and the capture (for its counters).
fn one_span(f: impl FnOnce(&mlflow_tracing::LiveSpan)) -> (Span, Capture) {
    let capture = Capture::new();
    capture.run(|| {
        let span = start_span("hostile").start();
        f(&span);
    });
    let span = capture.traces()[0].data.spans[0].clone();
    (span, capture)
}

/// `[[[…1…]]]`, `depth` arrays deep, produced while serializing (a `Value` that deep would
/// overflow the test's own stack when dropped).
struct Deep(usize);

impl serde::Serialize for Deep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        if self.0 == 0 {
            return s.serialize_u8(1);
        }
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(&Deep(self.0 - 1))?;
        seq.end()
    }
}

fn client(url: &str) -> TrackingClient {
    TrackingClient::new(ClientConfig::new(url).with_retries(0, 0.0, 0.0)).unwrap()
}

/// A server that answers every request 200 with a chunked body of `total` bytes (no length
/// announced), written as long as the client reads.
fn endless_server(total: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    let frame = format!("{:x}\r\n", chunk.len());
                    if stream.write_all(frame.as_bytes()).is_err()
                        || stream.write_all(&chunk).is_err()
                        || stream.write_all(b"\r\n").is_err()
                    {
                        return;
                    }
                    sent += chunk.len();
                }
                let _ = stream.write_all(b"0\r\n\r\n");
            });
        }
    });
    url
}

type Case = (&'static str, Box<dyn FnOnce() -> Outcome>);

fn value_cases() -> Vec<Case> {
    vec![
        (
            "NaN attribute is null",
            Box::new(|| {
                let (span, _) = one_span(|s| s.set_attribute("x", &f64::NAN));
                check(
                    raw(&span, "x").as_deref() == Some("null"),
                    format!("{:?}", raw(&span, "x")),
                )
            }),
        ),
        (
            "+inf and -inf outputs are null",
            Box::new(|| {
                let (span, _) = one_span(|s| {
                    s.set_outputs(&json!({"a": f64::INFINITY, "b": [f64::NEG_INFINITY]}))
                });
                check(
                    span.outputs() == Some(json!({"a": null, "b": [null]})),
                    format!("{:?}", span.outputs()),
                )
            }),
        ),
        (
            "u128::MAX is written exactly",
            Box::new(|| {
                let (span, _) = one_span(|s| s.set_attribute("x", &u128::MAX));
                check(
                    raw(&span, "x").as_deref() == Some("340282366920938463463374607431768211455"),
                    format!("{:?}", raw(&span, "x")),
                )
            }),
        ),
        (
            "i128::MIN is written exactly",
            Box::new(|| {
                let (span, _) = one_span(|s| s.set_attribute("x", &i128::MIN));
                check(
                    raw(&span, "x").as_deref() == Some("-170141183460469231731687303715884105728"),
                    format!("{:?}", raw(&span, "x")),
                )
            }),
        ),
        (
            "10,000-deep nesting is replaced and counted",
            Box::new(|| {
                let (span, capture) = one_span(|s| s.set_outputs(&Deep(10_000)));
                let text = span
                    .outputs()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                check(
                    text.starts_with("<unserializable outputs:")
                        && capture.tracer().stats().serialization_errors == 1,
                    text,
                )
            }),
        ),
        (
            "a map with non-string keys is replaced and counted",
            Box::new(|| {
                let map = std::collections::BTreeMap::from([((1, 2), "v")]);
                let (span, capture) = one_span(|s| s.set_attribute("m", &map));
                check(
                    raw(&span, "m").is_some_and(|t| t.contains("unserializable"))
                        && capture.tracer().stats().serialization_errors == 1,
                    format!("{:?}", raw(&span, "m")),
                )
            }),
        ),
        (
            "a 50 MB output is kept whole",
            Box::new(|| {
                let big = "z".repeat(50 * 1024 * 1024);
                let (span, _) = one_span(|s| s.set_outputs(&big));
                check(
                    raw(&span, "mlflow.spanOutputs").is_some_and(|t| t.len() == big.len() + 2),
                    "length",
                )
            }),
        ),
        (
            "NUL and CRLF in a span name survive a JSON round trip",
            Box::new(|| {
                let capture = Capture::new();
                capture.run(|| drop(start_span("a\0b\r\nc").start()));
                let trace = &capture.traces()[0];
                let back = Trace::from_json(&trace.to_json().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                check(
                    back.data.spans[0].name() == "a\0b\r\nc",
                    back.data.spans[0].name().to_owned(),
                )
            }),
        ),
        (
            "CRLF and NUL in tag values are kept as data",
            Box::new(|| {
                let capture = Capture::new();
                capture.run(|| {
                    let _root = start_span("root").start();
                    update_current_trace(TraceUpdate::new().tag("t", "x\r\nSet-Cookie: y\0"))
                        .unwrap();
                });
                let info = &capture.traces()[0].info;
                let body = info.start_trace_v3_body().map_err(|e| e.to_string())?;
                check(
                    info.tags.get("t").map(String::as_str) == Some("x\r\nSet-Cookie: y\0")
                        && body.contains(r"x\r\nSet-Cookie: y\u0000"),
                    body,
                )
            }),
        ),
        (
            "100,000 attributes: 128 kept, the rest counted, outputs kept",
            Box::new(|| {
                let (span, capture) = one_span(|s| {
                    for i in 0..100_000 {
                        s.set_attribute(format!("a{i}"), &i);
                    }
                    s.set_outputs(&"answer");
                });
                let user = span
                    .raw_attributes()
                    .keys()
                    .filter(|k| !k.starts_with("mlflow."))
                    .count();
                check(
                    user == 128
                        && span.outputs() == Some(json!("answer"))
                        && capture.tracer().stats().attributes_dropped == 99_872,
                    format!("{user} kept, {:?}", capture.tracer().stats()),
                )
            }),
        ),
        (
            "10,000 events: 128 kept, the rest counted",
            Box::new(|| {
                let (span, capture) = one_span(|s| {
                    for i in 0..10_000 {
                        s.add_event(mlflow_tracing::entities::SpanEvent::new(format!("e{i}"), 1));
                    }
                });
                check(
                    span.events().len() == 128 && capture.tracer().stats().events_dropped == 9_872,
                    format!("{}", span.events().len()),
                )
            }),
        ),
        (
            "a 10,000-span trace is complete",
            Box::new(|| {
                let capture = Capture::new();
                capture.run(|| {
                    let root = start_span("root").start();
                    let _in = root.enter();
                    for _ in 1..10_000 {
                        drop(start_span("child").start());
                    }
                });
                check(capture.traces()[0].data.spans.len() == 10_000, "spans")
            }),
        ),
    ]
}

fn parser_cases() -> Vec<Case> {
    let bad_traceparent = |header: &'static str| -> Box<dyn FnOnce() -> Outcome> {
        Box::new(move || {
            let continued = continue_trace([("traceparent", header)]);
            check(continued.is_err(), format!("{header} was accepted"))
        })
    };
    vec![
        (
            "traceparent with version ff is refused",
            bad_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ),
        (
            "traceparent with non-hex flags is refused",
            bad_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz"),
        ),
        (
            "traceparent with an all-zero trace id is refused",
            bad_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
        ),
        (
            "traceparent with an all-zero span id is refused",
            bad_traceparent("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"),
        ),
        (
            "traceparent of version 00 with extra fields is refused",
            bad_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"),
        ),
        (
            "traceparent of 10,000 characters is refused",
            Box::new(|| {
                let long = format!("00-{}-b7ad6b7169203331-01", "a".repeat(10_000));
                check(
                    continue_trace([("traceparent", long.as_str())]).is_err(),
                    "accepted",
                )
            }),
        ),
        (
            "trace and span ids of bad hex are errors",
            Box::new(|| {
                check(
                    TraceId::from_hex("xyz").is_err()
                        && SpanId::from_hex("../../etc").is_err()
                        && TraceId::from_hex(&"f".repeat(33)).is_err(),
                    "accepted",
                )
            }),
        ),
        (
            "a lone surrogate in trace JSON (Python writes them) becomes U+FFFD",
            Box::new(|| {
                let trace = Trace::from_json(
                    r#"{"info": {"trace_id": "tr-\ud800x"}, "data": {"spans": []}}"#,
                )
                .map_err(|e| e.to_string())?;
                check(trace.info.trace_id == "tr-\u{fffd}x", trace.info.trace_id)
            }),
        ),
        (
            "trace JSON bytes of invalid UTF-8 name the offset",
            Box::new(|| {
                let err = Trace::from_json_bytes(b"{\"info\": \xff}")
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                check(err.contains('8') || err.to_lowercase().contains("utf"), err)
            }),
        ),
        (
            "trace JSON nested 100,000 deep is an error, not a stack overflow",
            Box::new(|| {
                let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
                check(Trace::from_json(&text).is_err(), "accepted")
            }),
        ),
        (
            "empty and truncated trace JSON are errors",
            Box::new(|| {
                check(
                    Trace::from_json("").is_err()
                        && Trace::from_json("{}").is_err()
                        && Trace::from_json(r#"{"info": {"#).is_err(),
                    "accepted",
                )
            }),
        ),
    ]
}

fn display_and_client_cases() -> Vec<Case> {
    vec![
        (
            "script in the tracking URI never reaches the notebook HTML raw",
            Box::new(|| {
                let config =
                    DisplayConfig::for_tracking_uri("http://h/\"><script>alert(1)</script>");
                let traces = [TraceRef {
                    trace_id: "tr-1\"><img src=x onerror=alert(1)>".into(),
                    experiment_id: Some("<b>1</b>".into()),
                }];
                let html = iframe_html(&traces, &config).unwrap_or_default();
                check(
                    !html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"),
                    html,
                )
            }),
        ),
        (
            "a javascript: tracking URI gives no HTML",
            Box::new(|| {
                let config = DisplayConfig::for_tracking_uri("javascript:alert(1)");
                let traces = [TraceRef {
                    trace_id: "tr-1".into(),
                    experiment_id: None,
                }];
                check(iframe_html(&traces, &config).is_none(), "HTML made")
            }),
        ),
        (
            "user info in MLFLOW_TRACKING_URI never shows in Debug or errors",
            Box::new(|| {
                let config = ClientConfig::new("ftp://alice:s3cret@host/");
                let err = config
                    .validate()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let debug = format!("{:?}", ClientConfig::new("http://alice:s3cret@host/"));
                check(
                    !err.contains("s3cret") && !debug.contains("s3cret") && !err.is_empty(),
                    format!("{err} / {debug}"),
                )
            }),
        ),
        (
            "CRLF in a token is refused, never sent as a header",
            Box::new(|| {
                crate::live::block_on(async {
                    let (url, seen) =
                        fake_server::scripted(vec![fake_server::answer(200, "{}")]).await;
                    let config = ClientConfig::new(url.as_str())
                        .with_retries(0, 0.0, 0.0)
                        .with_token("abc\r\nX-Evil: 1");
                    let result = match TrackingClient::new(config) {
                        Ok(c) => c.version().await.map(drop),
                        Err(e) => Err(e),
                    };
                    let injected = seen
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|s| s.header("X-Evil").is_some());
                    check(
                        result.is_err() && !injected,
                        format!("{result:?}, injected: {injected}"),
                    )
                })
            }),
        ),
        (
            "path tricks in a trace id stay inside one path segment",
            Box::new(|| {
                crate::live::block_on(async {
                    let (url, seen) = fake_server::scripted(vec![fake_server::answer(
                        404,
                        r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}"#,
                    )])
                    .await;
                    let c = client(&url);
                    let a = c
                        .get_trace_info("../../api/2.0/mlflow/experiments/delete")
                        .await;
                    let b = c.get_trace_info("tr-1%2F..%2Fx").await;
                    let paths: Vec<String> = seen
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|s| s.path.clone())
                        .collect();
                    // Each id is one percent-encoded path segment: no raw `/` after the prefix.
                    let clean = paths.iter().all(|p| {
                        p.split('?')
                            .next()
                            .and_then(|path| path.strip_prefix("/api/3.0/mlflow/traces/"))
                            .is_some_and(|id| !id.contains('/'))
                    });
                    check(
                        a.is_err() && b.is_err() && clean && paths.len() == 2,
                        format!("{paths:?}"),
                    )
                })
            }),
        ),
        (
            "control characters in a trace id are refused before sending",
            Box::new(|| {
                crate::live::block_on(async {
                    let (url, seen) =
                        fake_server::scripted(vec![fake_server::answer(200, "{}")]).await;
                    let r = client(&url).get_trace_info("tr-1\r\nHost: evil").await;
                    check(
                        matches!(r, Err(ClientError::InvalidArgument { .. }))
                            && seen.lock().unwrap().is_empty(),
                        format!("{r:?}"),
                    )
                })
            }),
        ),
        (
            "an experiment id with a slash is refused before sending",
            Box::new(|| {
                crate::live::block_on(async {
                    let (url, seen) =
                        fake_server::scripted(vec![fake_server::answer(200, "{}")]).await;
                    let r = client(&url).log_spans("1/../2", std::iter::empty()).await;
                    check(
                        matches!(r, Err(ClientError::InvalidArgument { .. }))
                            && seen.lock().unwrap().is_empty(),
                        format!("{r:?}"),
                    )
                })
            }),
        ),
        (
            "a 2xx announcing more than the answer limit is refused unread",
            Box::new(|| {
                crate::live::block_on(async {
                    let body = format!(
                        "{{\"mlflow_version\": \"{}\"}}",
                        "x".repeat(2 * 1024 * 1024)
                    );
                    let (url, _) =
                        fake_server::scripted(vec![fake_server::answer(200, &body)]).await;
                    let mut config = ClientConfig::new(url.as_str()).with_retries(0, 0.0, 0.0);
                    config.max_answer_bytes = 1024 * 1024;
                    let r = TrackingClient::new(config).unwrap().version().await;
                    check(
                        matches!(&r, Err(ClientError::Decode { message, .. }) if message.contains("more than")),
                        format!("{r:?}"),
                    )
                })
            }),
        ),
        (
            "a 2xx streaming 1 GB is cut at the answer limit, quickly",
            Box::new(|| {
                let url = endless_server(1024 * 1024 * 1024);
                crate::live::block_on(async {
                    let mut config = ClientConfig::new(url.as_str()).with_retries(0, 0.0, 0.0);
                    config.max_answer_bytes = 8 * 1024 * 1024;
                    let started = Instant::now();
                    let r = TrackingClient::new(config).unwrap().version().await;
                    check(
                        matches!(&r, Err(ClientError::Decode { message, .. }) if message.contains("more than"))
                            && started.elapsed() < Duration::from_secs(20),
                        format!("{r:?} in {:?}", started.elapsed()),
                    )
                })
            }),
        ),
        (
            "a 2xx of garbage is a decode error",
            Box::new(|| {
                crate::live::block_on(async {
                    let (url, _) = fake_server::scripted(vec![fake_server::answer(
                        200,
                        "<html>\0\u{1}not json",
                    )])
                    .await;
                    let r = client(&url).get_trace_info("tr-1").await;
                    check(
                        matches!(r, Err(ClientError::Decode { .. })),
                        format!("{r:?}"),
                    )
                })
            }),
        ),
        (
            "an error answer of 10 MB keeps only the start of its message",
            Box::new(|| {
                crate::live::block_on(async {
                    let body = "e".repeat(10 * 1024 * 1024);
                    let (url, _) =
                        fake_server::scripted(vec![fake_server::answer(400, &body)]).await;
                    let r = client(&url).get_trace_info("tr-1").await;
                    let len = r.as_ref().err().map_or(0, |e| e.to_string().len());
                    check(
                        matches!(r, Err(ClientError::Http { status: 400, .. })) && len < 100 * 1024,
                        format!("{len} bytes"),
                    )
                })
            }),
        ),
    ]
}

#[test]
fn hostile_inputs_get_a_clear_error_escaped_output_or_a_counted_drop() {
    let cases: Vec<Case> = value_cases()
        .into_iter()
        .chain(parser_cases())
        .chain(display_and_client_cases())
        .collect();
    let total = cases.len();
    let mut failed = Vec::new();
    for (name, case) in cases {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(case)) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failed.push(format!(
                "{name}: {}",
                why.chars().take(300).collect::<String>()
            )),
            Err(_) => failed.push(format!("{name}: PANICKED")),
        }
    }
    assert!(total >= 30, "{total} cases");
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A 10,000-span trace through the exporter into the real server: every span stored (the
/// exporter's requests carry at most 1,000 spans of several traces, a single trace's spans in
/// one request).
#[test]
fn a_10000_span_trace_reaches_the_real_server_whole() {
    let experiment = crate::live::experiment("hostile-10000-spans");
    let tracer = crate::live::sync_tracer(&experiment);
    tracer.in_scope(|| {
        let root = start_span("wide").start();
        let _in = root.enter();
        for i in 1..10_000 {
            let child = start_span("leaf").start();
            child.set_outputs(&i);
        }
    });
    let stats = tracer.stats();
    let found = crate::live::python_json(
        r#"
import json, sys, mlflow
traces = mlflow.search_traces(locations=[sys.argv[1]], return_type="list")
print(json.dumps([len(t.data.spans) for t in traces]))
"#,
        &[&experiment],
    );
    assert_eq!(found, json!([10_000]), "{stats:?}");
}
