//! Entry points for the fuzz targets in `fuzz/` (`make fuzz`): the head
//! reader and the response writer, driven with in-memory bytes. Not an
//! API: hidden from the docs, stable only as far as the targets need.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};

use super::direct;
use super::head::{self, Head};

/// What `head::read_head` made of some bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadOutcome {
    /// Served directly: the request as the router would see it.
    Direct {
        target: String,
        headers: Vec<(String, Vec<u8>)>,
        keep_alive: bool,
        /// Bytes taken from the input; the rest stays for the next request.
        consumed: usize,
    },
    /// Handed to hyper with these bytes.
    Other(Vec<u8>),
    Gone,
}

/// Reads a head from `pieces`, delivered one read at a time (the way a
/// socket splits them), with the direct path's head limit `max`.
pub async fn read_head(pieces: Vec<Vec<u8>>, max: usize) -> HeadOutcome {
    let total: usize = pieces.iter().map(Vec::len).sum();
    let mut reader = Pieces(pieces.into());
    let outcome = head::read_head(&mut reader, max).await;
    let consumed = total - reader.0.iter().map(Vec::len).sum::<usize>();
    match outcome {
        Head::Direct {
            request,
            keep_alive,
        } => HeadOutcome::Direct {
            consumed,
            target: request.uri().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            keep_alive,
        },
        Head::Other(bytes) => HeadOutcome::Other(bytes),
        Head::Gone => HeadOutcome::Gone,
    }
}

/// Writes a non-stream response the way the direct path does; returns
/// whether it succeeded and the bytes written.
pub async fn write_response(
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    keep_alive: bool,
) -> (io::Result<()>, Vec<u8>) {
    let mut builder = axum::http::Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let Ok(response) = builder.body(()) else {
        return (Ok(()), Vec::new());
    };
    let (parts, ()) = response.into_parts();
    let body = Body::from_stream(futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(c))),
    ));
    let mut out = Vec::new();
    let result = direct::whole(&mut out, &parts, body, keep_alive).await;
    (result, out)
}

struct Pieces(VecDeque<Vec<u8>>);

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                piece.drain(..n);
                self.0.push_front(piece);
            }
        }
        Poll::Ready(Ok(()))
    }
}
