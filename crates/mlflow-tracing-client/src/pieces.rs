//! A request body sent once, in pieces: the connection frees each piece as soon as it is
//! written, so a request a slow server has not read yet keeps only its unwritten part in the
//! process (the kernel's socket buffers hold the rest).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The pieces of one body, in order, with their total length (sent as `Content-Length`).
#[derive(Debug)]
pub(crate) struct Pieces {
    pieces: VecDeque<Bytes>,
    remaining: u64,
}

impl Pieces {
    pub(crate) fn new(pieces: impl IntoIterator<Item = Bytes>) -> Self {
        let pieces: VecDeque<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        let remaining = pieces.iter().map(|p| p.len() as u64).sum();
        Pieces { pieces, remaining }
    }

    /// The pieces joined, for a body sent more than once (a redirect is followed with it).
    pub(crate) fn concat(self) -> Bytes {
        if self.pieces.len() == 1 {
            return self.pieces.into_iter().next().unwrap_or_default();
        }
        let mut all = Vec::with_capacity(usize::try_from(self.remaining).unwrap_or(0));
        for piece in self.pieces {
            all.extend_from_slice(&piece);
        }
        all.into()
    }
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.pieces.pop_front().map(|piece| {
            this.remaining -= piece.len() as u64;
            Ok(Frame::data(piece))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    #[test]
    fn pieces_are_framed_in_order_with_their_exact_length() {
        let pieces = Pieces::new([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ]);
        assert_eq!(pieces.size_hint().exact(), Some(5));
        assert_eq!(
            Pieces::new([Bytes::from_static(b"ab"), Bytes::from_static(b"cde")]).concat(),
            "abcde"
        );
        let mut pieces = pieces;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut seen = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut pieces).poll_frame(&mut cx) {
            seen.push(frame.unwrap().into_data().unwrap());
            assert_eq!(
                pieces.size_hint().exact(),
                Some(5 - seen.iter().map(|b| b.len() as u64).sum::<u64>())
            );
        }
        assert_eq!(seen, ["ab", "cde"]);
        assert!(pieces.is_end_stream());
    }
}
