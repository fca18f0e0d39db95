//! The W3C Trace Context `traceparent` header, parsed as the specification says
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>).

use std::str::FromStr as _;

use mlflow_tracing_entities::{SpanId, TraceId};
use opentelemetry::trace::TraceState;

/// A parent span in another process, as its `traceparent` (and `tracestate`) describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteContext {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) sampled: bool,
    /// The `tracestate` header, when there was a valid one.
    pub(crate) trace_state: Option<String>,
}

/// The `traceparent` value of a span (version `00`).
pub(crate) fn format(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    format!(
        "00-{}-{}-{}",
        trace_id.to_hex(),
        span_id.to_hex(),
        if sampled { "01" } else { "00" }
    )
}

/// The length of a version `00` value: `vv-<32 hex>-<16 hex>-ff`.
const LEN_V00: usize = 55;

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a `traceparent` value (and an optional `tracestate`) into a remote parent.
///
/// Only the optional whitespace HTTP allows around a field value (spaces and tabs) is trimmed;
/// any other control character, uppercase hex, the forbidden version `ff`, an all-zero trace or
/// parent id, or a wrong length makes the value invalid (`None`). A version above `00` may carry
/// more fields after a `-`, which are ignored, as the specification asks of parsers that know
/// only version `00`. An invalid `tracestate` is dropped, never fatal.
pub(crate) fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<RemoteContext> {
    let value = traceparent.trim_matches([' ', '\t']);
    if !value.is_ascii() || value.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let version = value.get(0..2)?;
    if !lower_hex(version) || version == "ff" {
        return None;
    }
    let head = match value.len() {
        LEN_V00 => value,
        n if n > LEN_V00 && version != "00" && value.as_bytes()[LEN_V00] == b'-' => {
            &value[..LEN_V00]
        }
        _ => return None,
    };
    let mut parts = head.split('-');
    let (_, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || trace_id.len() != 32
        || parent_id.len() != 16
        || flags.len() != 2
        || !lower_hex(trace_id)
        || !lower_hex(parent_id)
        || !lower_hex(flags)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(parent_id).ok()?;
    if trace_id.to_int() == 0 || span_id.to_int() == 0 {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let trace_state = tracestate
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.bytes().any(|b| b.is_ascii_control()))
        .and_then(|s| TraceState::from_str(s).ok())
        .map(|s| s.header())
        .filter(|s| !s.is_empty());
    Some(RemoteContext {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
        trace_state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    #[test]
    fn the_specifications_valid_examples_parse() {
        let sc = parse(&format!("00-{TRACE}-{PARENT}-01"), None).unwrap();
        assert_eq!(sc.trace_id.to_hex(), TRACE);
        assert_eq!(sc.span_id.to_hex(), PARENT);
        assert!(sc.sampled);
        assert_eq!(
            format(sc.trace_id, sc.span_id, true),
            format!("00-{TRACE}-{PARENT}-01")
        );
        assert!(
            !parse(&format!("00-{TRACE}-{PARENT}-00"), None)
                .unwrap()
                .sampled
        );
        // Unknown flag bits are ignored; only "sampled" is kept.
        assert!(
            parse(&format!("00-{TRACE}-{PARENT}-09"), None)
                .unwrap()
                .sampled
        );
        // Optional whitespace around the value.
        assert!(parse(&format!(" \t00-{TRACE}-{PARENT}-01\t "), None).is_some());
        // A future version may add fields after a dash.
        assert!(
            parse(
                &format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
                None
            )
            .is_some()
        );
        assert!(parse(&format!("01-{TRACE}-{PARENT}-01"), None).is_some());
    }

    #[test]
    fn the_specifications_invalid_examples_are_rejected() {
        let bad = [
            format!("ff-{TRACE}-{PARENT}-01"),            // forbidden version
            format!("00-{}-{PARENT}-01", "0".repeat(32)), // all-zero trace id
            format!("00-{TRACE}-{}-01", "0".repeat(16)),  // all-zero parent id
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()), // uppercase hex
            format!("00-{TRACE}-{}-01", PARENT.to_uppercase()), // uppercase hex
            format!("0A-{TRACE}-{PARENT}-01"),            // uppercase version
            format!("00-{TRACE}-{PARENT}-0G"),            // not hex
            format!("00-{TRACE}-{PARENT}-01-extra"),      // v00 has 4 fields
            format!("cc-{TRACE}-{PARENT}-01.what"),       // future: dash needed
            format!("00-{TRACE}-{PARENT}-01\r\n"),        // control characters
            format!("00-{TRACE}-{PARENT}-01\0"),
            format!("00-{TRACE}\n-{PARENT}-01"),
            format!("00-{}-{PARENT}-01", &TRACE[1..]), // short trace id
            format!("00-{TRACE}-{}-01", &PARENT[1..]), // short parent id
            format!("00_{TRACE}_{PARENT}_01"),         // wrong separators
            format!("00-{TRACE}-{PARENT}-1"),
            "00-zz-01".to_owned(),
            String::new(),
            "é0-".repeat(20),
        ];
        for v in bad {
            assert!(parse(&v, None).is_none(), "{v:?}");
        }
    }

    #[test]
    fn tracestate_is_kept_when_valid_and_dropped_when_not() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let sc = parse(&tp, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(
            sc.trace_state.as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        let sc = parse(&tp, Some("bad\r\n")).unwrap();
        assert_eq!(sc.trace_state, None);
    }
}
