//! One OTLP protobuf request of spans ([`TrackingClient::send_otlp`]): each attempt's body is
//! encoded span by span as its connection takes the pieces ([`feed`], alongside the request),
//! so a request that a slow server has not read yet keeps a few pieces in the process, not its
//! whole unwritten rest; the spans it is made from are kept anyway.

use std::convert::Infallible;

use bytes::Bytes;
use mlflow_tracing_entities::{Span, otlp};
use reqwest::Method;
use tokio::sync::mpsc;

use crate::client::{SDK_VERSION, TrackingClient};
use crate::error::ClientError;
use crate::pieces::{FedBody, fed};
use crate::transport::{Call, ProtobufBody};

/// About how large each piece of an OTLP request is. Over HTTP/1.1 hyper buffers up to 16
/// pieces and frees each once written, and [`feed`] makes up to 3 ahead, so a request the
/// server has not read keeps at most about 19 pieces in the process (over HTTP/2, the stream's
/// flow-control window bounds what is buffered instead).
const OTLP_PIECE: usize = 4 * 1024;

/// Each attempt's feeder, sent by [`OtlpBody`] to [`feed`].
type Attempts = mpsc::UnboundedReceiver<mpsc::Sender<Bytes>>;

impl TrackingClient {
    /// One OTLP protobuf request of `spans` (nothing is sent for none) with a routing header.
    pub(crate) async fn send_otlp<'a>(
        &self,
        path: &'static str,
        header: (&'static str, String),
        spans: impl IntoIterator<Item = &'a Span>,
    ) -> Result<(), ClientError> {
        let resource = otlp::sdk_resource(SDK_VERSION);
        let Some(request) = otlp::ExportRequestEncoder::new(&resource, spans) else {
            return Ok(());
        };
        let (attempts, mut to_feed) = mpsc::unbounded_channel();
        let body = OtlpBody {
            request: &request,
            attempts,
        };
        let mut call = Call::new(Method::POST, path);
        call.headers.push(header);
        // The bodies `send_with` makes are fed here, in the same task, as long as it runs.
        tokio::select! {
            biased;
            sent = self.send_with(call, Some(&body)) => sent.map(drop),
            never = feed(&request, &mut to_feed) => match never {},
        }
    }
}

/// The body of an OTLP request: each attempt's is fed by [`feed`].
struct OtlpBody<'r, 's> {
    request: &'r otlp::ExportRequestEncoder<'s>,
    /// Each attempt's feeder, for [`feed`].
    attempts: mpsc::UnboundedSender<mpsc::Sender<Bytes>>,
}

impl ProtobufBody for OtlpBody<'_, '_> {
    fn streamed(&self) -> FedBody {
        let (feeder, body) = fed(self.request.encoded_len() as u64);
        // `feed` runs as long as the request does; were it gone, the body would end early and
        // the attempt fail.
        let _ = self.attempts.send(feeder);
        body
    }

    fn whole(&self) -> Bytes {
        // An attempt with nothing to feed: `feed` stops feeding the one before.
        let (nothing, _) = fed(0);
        let _ = self.attempts.send(nothing);
        Bytes::from(self.request.to_vec())
    }
}

/// Feeds each attempt's body the request's pieces as its connection takes them; a newer
/// attempt replaces the one being fed (a connection that failed may never take the rest).
/// Never ends: the request's future does, and drops it.
async fn feed(request: &otlp::ExportRequestEncoder<'_>, attempts: &mut Attempts) -> Infallible {
    let mut next = attempts.recv().await;
    while let Some(feeder) = next.take() {
        let mut pieces = request.pieces(OTLP_PIECE);
        next = loop {
            let Some(piece) = pieces.next() else {
                // All fed: the body ends when the connection has taken them.
                drop(feeder);
                break attempts.recv().await;
            };
            tokio::select! {
                biased;
                newer = attempts.recv() => break newer,
                sent = feeder.send(Bytes::from(piece)) => if sent.is_err() {
                    // The attempt is over (its body dropped).
                    break attempts.recv().await;
                },
            }
        };
    }
    // No attempt can come any more: wait to be dropped.
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
    use std::pin::Pin;
    use std::task::Context;

    use http_body::Body as _;
    use mlflow_tracing_entities::{SpanId, TraceId};
    use serde_json::Value;

    use super::*;

    /// The next frame's bytes, or its error's text; a body with nothing fed fails the test.
    fn frame(body: &mut FedBody) -> Option<Result<Bytes, String>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            std::task::Poll::Ready(f) => {
                f.map(|f| f.map(|f| f.into_data().unwrap()).map_err(|e| e.to_string()))
            }
            std::task::Poll::Pending => panic!("the body waits: nothing fed it"),
        }
    }

    #[test]
    fn a_newer_attempt_gets_the_whole_request_and_the_older_one_ends_early() {
        let spans: Vec<Span> = (0..20u64)
            .map(|i| {
                Span::builder(TraceId::from_int(7), SpanId::from_int(i + 1), "s")
                    .raw_attribute("mlflow.spanInputs", Value::String("x".repeat(3000)))
                    .build()
            })
            .collect();
        let resource = otlp::sdk_resource("1.2.3");
        let request = otlp::ExportRequestEncoder::new(&resource, &spans).unwrap();
        let expected = request.to_vec();
        let (attempts, mut to_feed) = mpsc::unbounded_channel();
        let body = OtlpBody {
            request: &request,
            attempts,
        };
        let feeding = feed(&request, &mut to_feed);
        tokio::pin!(feeding);
        let mut run_feed = || {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(feeding.as_mut().poll(&mut cx).is_pending());
        };
        // The first attempt's connection takes one piece, then stalls (its body kept, not
        // read): the feeder waits on it.
        let mut first = body.streamed();
        run_feed();
        let head = frame(&mut first).unwrap().unwrap();
        assert!(expected.starts_with(&head));
        run_feed();
        // A retry: the feeder moves to it, and it gets the whole request from the start.
        let mut second = body.streamed();
        run_feed();
        let mut got = Vec::new();
        loop {
            run_feed();
            match frame(&mut second) {
                Some(piece) => got.extend_from_slice(&piece.unwrap()),
                None => break,
            }
        }
        assert_eq!(got, expected);
        // The first body is left short: its attempt fails instead of waiting.
        let mut rest = Vec::new();
        let ended = loop {
            match frame(&mut first) {
                Some(Ok(piece)) => rest.extend_from_slice(&piece),
                Some(Err(e)) => break e,
                None => panic!("the stale body ended as if whole"),
            }
        };
        assert!(ended.contains("bytes early"), "{ended}");
        assert!(head.len() + rest.len() < expected.len());
        // A redirect's whole body: the same bytes.
        assert_eq!(body.whole(), expected);
    }
}
