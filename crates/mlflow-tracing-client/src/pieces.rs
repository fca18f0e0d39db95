//! A request body fed a piece at a time ([`fed`]): the connection takes each piece when it can
//! buffer it and frees it once written, and the next piece is made only then. A request that
//! a slow server has not read yet keeps only the few pieces the connection has buffered, not
//! its whole unwritten rest (what the pieces are made from is kept anyway).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Pieces made ahead of the connection, per body.
const AHEAD: usize = 2;

/// A body of exactly `len` bytes and the sender that feeds it its pieces, in order.
pub(crate) fn fed(len: u64) -> (mpsc::Sender<Bytes>, FedBody) {
    let (tx, rx) = mpsc::channel(AHEAD);
    (tx, FedBody { rx, remaining: len })
}

/// The body of [`fed`].
#[derive(Debug)]
pub(crate) struct FedBody {
    rx: mpsc::Receiver<Bytes>,
    remaining: u64,
}

/// The feeder stopped before the body's announced length (its attempt was replaced by
/// another): the attempt fails.
#[derive(Debug, thiserror::Error)]
#[error("the request body ended {0} bytes early")]
pub(crate) struct EndedEarly(u64);

impl Body for FedBody {
    type Data = Bytes;
    type Error = EndedEarly;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EndedEarly>>> {
        let this = self.get_mut();
        this.rx.poll_recv(cx).map(|piece| match piece {
            Some(piece) => {
                this.remaining = this.remaining.saturating_sub(piece.len() as u64);
                Some(Ok(Frame::data(piece)))
            }
            None if this.remaining == 0 => None,
            None => Some(Err(EndedEarly(this.remaining))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    fn poll(body: &mut FedBody) -> Poll<Option<Result<Frame<Bytes>, EndedEarly>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn pieces_are_framed_in_order_with_their_exact_length() {
        let (tx, mut body) = fed(5);
        assert_eq!(body.size_hint().exact(), Some(5));
        // Nothing fed yet: the connection waits.
        assert!(poll(&mut body).is_pending());
        let mut seen = Vec::new();
        for piece in [&b"ab"[..], b"cde"] {
            tx.try_send(Bytes::from_static(piece)).unwrap();
            let Poll::Ready(Some(frame)) = poll(&mut body) else {
                panic!("no frame")
            };
            seen.push(frame.unwrap().into_data().unwrap());
            assert_eq!(
                body.size_hint().exact(),
                Some(5 - seen.iter().map(|b| b.len() as u64).sum::<u64>())
            );
        }
        assert_eq!(seen, ["ab", "cde"]);
        assert!(body.is_end_stream());
        drop(tx);
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn a_feeder_that_stops_early_fails_the_body() {
        let (tx, mut body) = fed(5);
        tx.try_send(Bytes::from_static(b"ab")).unwrap();
        drop(tx);
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        let Poll::Ready(Some(Err(e))) = poll(&mut body) else {
            panic!("no error")
        };
        assert_eq!(e.to_string(), "the request body ended 3 bytes early");
        // It only ever takes `AHEAD` pieces before the connection does.
        let (tx, _body) = fed(10);
        for _ in 0..AHEAD {
            tx.try_send(Bytes::from_static(b"x")).unwrap();
        }
        assert!(tx.try_send(Bytes::from_static(b"x")).is_err());
    }
}
