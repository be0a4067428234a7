//! Answers a bodiless `GET` without hyper, event streams included.
//!
//! The request goes through the whole router (sessions, identity,
//! limits); only the response is written here: an event stream as
//! HTTP/1.1 chunks, the frames ready at once gathered into one vectored
//! write, until it ends;
//! anything else with `content-length` when its size is known, chunked
//! otherwise, after which the connection may carry the next request. What
//! this saves against hyper is per-connection state: an open stream holds
//! its socket and body, no read buffer, write buffer or dispatcher.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Request, StatusCode, response::Parts};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tower::ServiceExt;

use super::socket::{SocketEnd, SocketState};

/// Bytes a client may send after the request of an event stream (nothing
/// is expected; a little slack for a stray CRLF or a probe). More closes
/// the connection: reading and discarding without limit would let one
/// client keep a core busy.
pub(super) const STREAM_INPUT_ALLOWANCE: usize = 4 * 1024;

/// What the connection does after a response.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    /// Read the next request.
    KeepAlive,
    Close,
}

/// Routes `request` through `app` and writes the response to `io`.
/// `keep_alive`: the client did not ask to close after this request.
pub(super) async fn serve<IO>(
    io: &mut IO,
    socket: &SocketState,
    request: Request<Body>,
    app: Router,
    keep_alive: bool,
) -> After
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: the router's future is large and only needed until the
    // response exists; the task then keeps only what streaming needs.
    let response = match Box::pin(app.oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    if parts.status.is_informational() {
        // Only hyper's upgrade path may answer 1xx; a client would wait
        // forever for the final response after this one.
        tracing::error!(status = %parts.status, "a handler answered a GET with 1xx; sending 500");
        let _ = io.write_all(INTERNAL_ERROR).await;
        let _ = io.shutdown().await;
        return After::Close;
    }
    if is_event_stream(&parts) {
        // Only the head's bytes outlive this line, not the header map. The
        // connection closes when the stream ends: say so.
        let head = response_head(&parts, Framing::Chunked, false);
        drop(parts);
        if let Err(e) = stream(io, socket, head, body).await {
            tracing::debug!("event stream connection ended: {e}");
        }
        return After::Close;
    }
    let keep_alive = keep_alive && !asks_to_close(&parts.headers);
    match whole(io, &parts, body, keep_alive).await {
        Ok(()) if keep_alive => After::KeepAlive,
        Ok(()) => {
            let _ = io.shutdown().await;
            After::Close
        }
        Err(e) => {
            tracing::debug!("connection ended while answering: {e}");
            After::Close
        }
    }
}

fn is_event_stream(parts: &Parts) -> bool {
    parts.status == StatusCode::OK
        && parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A `connection` header that contains the `close` token.
pub(super) fn asks_to_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

pub(crate) async fn stream<IO>(
    io: &mut IO,
    socket: &SocketState,
    head: Vec<u8>,
    body: Body,
) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(&head).await?;
    drop(head);
    let ended = streaming(io, socket, body).await;
    socket.close_turn();
    ended
}

/// Writes the body's frames until it ends or the connection does. Frames
/// are written either here or, while this task has nothing in flight and
/// leaves its turn open, by a publisher from where it is ([`crate::turn`]):
/// the turn is taken back before the body is polled, so that nothing
/// overtakes what the publisher wrote.
async fn streaming<IO>(io: &mut IO, socket: &SocketState, mut body: Body) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // Reading is how a closed connection is noticed; the few bytes a
    // client may send meanwhile are dropped, more end the connection.
    let mut scratch = [0u8; 64];
    let mut received = 0usize;
    let mut end = BodyEnd::Open;
    loop {
        // A frame that was ready at once (the client is behind) is
        // gathered with the others ready; one that woke the stream goes
        // out alone, without another look at the body first.
        let mut waited = false;
        let next = std::future::poll_fn(|cx| {
            match socket.poll_turn(cx) {
                Poll::Pending => {
                    waited = true;
                    return Poll::Pending;
                }
                Poll::Ready(Some(leftover)) => return Poll::Ready(Some(Ok(Out::Raw(leftover)))),
                Poll::Ready(None) => {}
            }
            let polled = poll_batch(&mut body, cx, &mut end, !waited);
            if polled.is_pending() {
                waited = true;
                socket.open_turn(cx);
            }
            polled.map(|next| next.map(|batch| batch.map(Out::Chunk)))
        });
        tokio::select! {
            out = next => match out {
                Some(Ok(Out::Chunk(batch))) => write_batch(io, &batch).await?,
                Some(Ok(Out::Raw(bytes))) => io.write_all(&bytes).await?,
                Some(Err(e)) => return Err(e),
                None => {
                    io.write_all(b"0\r\n\r\n").await?;
                    return io.shutdown().await;
                }
            },
            read = io.read(&mut scratch) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                received += n;
                if received > STREAM_INPUT_ALLOWANCE {
                    // Before the body (and with it the stream) is dropped,
                    // so that the disconnect is logged with this reason.
                    socket.record(SocketEnd::UnexpectedInput);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("client sent {received} bytes after its request"),
                    ));
                }
            }
        }
    }
}

/// What the stream task writes next.
enum Out {
    Chunk(Batch),
    /// The rest of a chunk a publisher could write only part of.
    Raw(Bytes),
}

/// A chunk (one `writev`) gathers at most this many of a stream's frames,
/// and stops gathering once it holds this many bytes.
const BATCH_FRAMES: usize = 64;
const BATCH_BYTES: usize = 64 * 1024;

/// The frames a stream has ready, written together without being copied:
/// a client that fell behind catches up in few syscalls, and the shared
/// frames stay shared (a copy per client would cost memory exactly when
/// the server is busiest). Only a second ready frame allocates.
struct Batch {
    first: Bytes,
    more: Vec<Bytes>,
}

impl Batch {
    fn len(&self) -> usize {
        self.first.len() + self.more.iter().map(Bytes::len).sum::<usize>()
    }
}

/// How a stream's body finished, once it has: seen behind frames, the
/// end waits until they are written.
#[derive(Default)]
enum BodyEnd {
    #[default]
    Open,
    Ended,
    Failed(io::Error),
}

/// The next [`Batch`]: waits for one frame, then (`gather`) takes those
/// ready at once, until the batch holds [`BATCH_FRAMES`] frames or at
/// least [`BATCH_BYTES`] (so at most that plus one frame). `None` once
/// the body ended, an error once it failed, each after the frames before.
fn poll_batch(
    body: &mut Body,
    cx: &mut Context<'_>,
    end: &mut BodyEnd,
    gather: bool,
) -> Poll<Option<io::Result<Batch>>> {
    match std::mem::take(end) {
        BodyEnd::Open => {}
        BodyEnd::Ended => {
            *end = BodyEnd::Ended;
            return Poll::Ready(None);
        }
        BodyEnd::Failed(e) => return Poll::Ready(Some(Err(e))),
    }
    let mut batch: Option<Batch> = None;
    loop {
        let data = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            Poll::Ready(Some(Err(e))) => {
                *end = BodyEnd::Failed(io::Error::other(e));
                break;
            }
            Poll::Ready(None) => {
                *end = BodyEnd::Ended;
                break;
            }
            Poll::Pending if batch.is_some() => break,
            Poll::Pending => return Poll::Pending,
        };
        match &mut batch {
            None if !gather => {
                return Poll::Ready(Some(Ok(Batch {
                    first: data,
                    more: Vec::new(),
                })));
            }
            None => {
                batch = Some(Batch {
                    first: data,
                    more: Vec::new(),
                })
            }
            Some(b) => {
                b.more.push(data);
                if b.more.len() + 1 >= BATCH_FRAMES || b.len() >= BATCH_BYTES {
                    break;
                }
            }
        }
    }
    match batch {
        Some(batch) => Poll::Ready(Some(Ok(batch))),
        // Nothing gathered: the end (or the error) now.
        None => poll_batch(body, cx, end, gather),
    }
}

/// A batch as one chunk: size line, the frames, CRLF.
async fn write_batch<IO: AsyncWrite + Unpin>(io: &mut IO, batch: &Batch) -> io::Result<()> {
    let frames = std::iter::once(&batch.first[..]).chain(batch.more.iter().map(|b| &b[..]));
    let (mut line, mut inline, mut spill) = ([0u8; 20], [IoSlice::new(&[]); 4], Vec::new());
    match chunk_pieces(&mut line, frames, &mut inline, &mut spill) {
        Some(pieces) => write_all_vectored(io, pieces).await,
        None => Ok(()),
    }
}

/// One chunk's pieces for one `writev`: the size line (written into
/// `line`), the frames (never copied), CRLF; in `inline` while they fit,
/// else in `spill`. `None` for no bytes at all: an empty chunk would end
/// the response. The one place that frames a chunk, for the stream's own
/// writes and for a publisher's ([`crate::turn`]).
pub(crate) fn chunk_pieces<'a, 'f: 'a>(
    line: &'a mut [u8; 20],
    frames: impl Iterator<Item = &'f [u8]>,
    inline: &'a mut [IoSlice<'a>],
    spill: &'a mut Vec<IoSlice<'a>>,
) -> Option<&'a mut [IoSlice<'a>]> {
    let mut count = 1;
    let mut len = 0;
    for frame in frames {
        if spill.is_empty() && count + 1 < inline.len() {
            inline[count] = IoSlice::new(frame);
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline[..count]);
            }
            spill.push(IoSlice::new(frame));
        }
        len += frame.len();
        count += 1;
    }
    if len == 0 {
        return None;
    }
    let pieces: &mut [IoSlice<'a>] = if spill.is_empty() {
        inline[count] = IoSlice::new(b"\r\n");
        &mut inline[..=count]
    } else {
        spill.push(IoSlice::new(b"\r\n"));
        spill
    };
    pieces[0] = IoSlice::new(chunk_size_line(len, line));
    Some(pieces)
}

/// `write_all` for slices: one `writev` unless the socket takes only part.
async fn write_all_vectored<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    mut pieces: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !pieces.is_empty() {
        let written = io.write_vectored(pieces).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut pieces, written);
    }
    Ok(())
}

/// The answer when a handler misbehaves in a way HTTP cannot carry.
const INTERNAL_ERROR: &[u8] =
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Any other response, written to its end: `content-length` framing when
/// the size is known (from the body, else from the handler's own header:
/// error JSON, static files), chunked otherwise (pages rendered as a
/// stream). A body that does not match its announced length is an error:
/// the connection must close rather than fall out of step.
pub(super) async fn whole<IO>(
    io: &mut IO,
    parts: &Parts,
    mut body: Body,
    keep_alive: bool,
) -> io::Result<()>
where
    IO: AsyncWrite + Unpin,
{
    let bodiless =
        parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    let framing = match body
        .size_hint()
        .exact()
        .or_else(|| declared_length(&parts.headers))
    {
        _ if bodiless => Framing::None,
        Some(len) => Framing::Length(len),
        None => Framing::Chunked,
    };
    let announced = match framing {
        Framing::Length(len) => Some(len),
        _ => None,
    };
    let chunked = matches!(framing, Framing::Chunked);
    io.write_all(&response_head(parts, framing, keep_alive))
        .await?;
    if bodiless {
        return Ok(());
    }
    let mut written: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        written += data.len() as u64;
        if let Some(len) = announced
            && written > len
        {
            return Err(io::Error::other(format!(
                "body longer than its content-length {len}"
            )));
        }
        if chunked {
            write_chunk(io, &data).await?;
        } else {
            io.write_all(&data).await?;
        }
    }
    match announced {
        Some(len) if written != len => Err(io::Error::other(format!(
            "body of {written} bytes, content-length {len}"
        ))),
        Some(_) => Ok(()),
        None => io.write_all(b"0\r\n\r\n").await,
    }
}

/// One well-formed `content-length` set by the handler, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

enum Framing {
    Chunked,
    Length(u64),
    /// 204, 304: no body and no framing header.
    None,
}

/// The status line and headers; framing headers are this module's own.
fn response_head(parts: &Parts, framing: Framing, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    write_headers(&mut out, &parts.headers);
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Length(len) => {
            out.extend_from_slice(format!("content-length: {len}\r\n").as_bytes())
        }
        Framing::None => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// One chunk: size line, data, CRLF; one `writev` unless the socket takes
/// only part of it.
async fn write_chunk<IO: AsyncWrite + Unpin>(io: &mut IO, data: &[u8]) -> io::Result<()> {
    let (mut line, mut inline, mut spill) = ([0u8; 20], [IoSlice::new(&[]); 3], Vec::new());
    match chunk_pieces(&mut line, std::iter::once(data), &mut inline, &mut spill) {
        Some(pieces) => write_all_vectored(io, pieces).await,
        None => Ok(()),
    }
}

/// `len` in hex followed by CRLF, in `buf`.
pub(crate) fn chunk_size_line(len: usize, buf: &mut [u8; 20]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut count = 0;
    loop {
        digits[count] = HEX[n & 0xf];
        count += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[i] = digits[count - 1 - i];
    }
    buf[count] = b'\r';
    buf[count + 1] = b'\n';
    &buf[..count + 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hex() {
        let mut buf = [0u8; 20];
        assert_eq!(chunk_size_line(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size_line(1024, &mut buf), b"400\r\n");
        assert_eq!(chunk_size_line(65535, &mut buf), b"ffff\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut buf),
            b"ffffffffffffffff\r\n"
        );
    }

    /// A writer that takes at most 5 bytes per call.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_chunk_survives_partial_writes() {
        let mut out = Trickle(Vec::new());
        write_chunk(&mut out, b"data: hello world\n\n")
            .await
            .unwrap();
        assert_eq!(out.0, b"13\r\ndata: hello world\n\n\r\n");
    }

    /// Frames already queued go out as one chunk, each byte once, and a
    /// partial write resumes where it stopped; the end comes after them.
    #[tokio::test]
    async fn ready_frames_go_out_together() {
        let mut body = streamed(&["data: a\n\n", "data: bb\n\n", "data: ccc\n\n"]);
        let mut end = BodyEnd::Open;
        let batch = std::future::poll_fn(|cx| poll_batch(&mut body, cx, &mut end, true))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch.more.len(), 2);
        assert!(
            matches!(end, BodyEnd::Ended),
            "the end was seen behind the frames"
        );
        let mut out = Trickle(Vec::new());
        write_batch(&mut out, &batch).await.unwrap();
        assert_eq!(out.0, b"1e\r\ndata: a\n\ndata: bb\n\ndata: ccc\n\n\r\n");
        let next = std::future::poll_fn(|cx| poll_batch(&mut body, cx, &mut end, true)).await;
        assert!(next.is_none());
    }

    /// A body that fails behind frames: the frames first, then the error.
    #[tokio::test]
    async fn frames_before_a_failure_are_not_lost() {
        let items: Vec<Result<bytes::Bytes, io::Error>> = vec![
            Ok(bytes::Bytes::from_static(b"data: a\n\n")),
            Err(io::Error::other("boom")),
        ];
        let mut body = Body::from_stream(futures::stream::iter(items));
        let mut end = BodyEnd::Open;
        let first = std::future::poll_fn(|cx| poll_batch(&mut body, cx, &mut end, true)).await;
        assert_eq!(&first.unwrap().unwrap().first[..], b"data: a\n\n");
        let then = std::future::poll_fn(|cx| poll_batch(&mut body, cx, &mut end, true)).await;
        assert!(then.unwrap().is_err());
    }

    /// A long backlog is split at the frame limit, nothing lost.
    #[tokio::test]
    async fn a_batch_has_a_limit() {
        let frames: Vec<&'static str> = vec!["x"; BATCH_FRAMES * 2 + 1];
        let mut body = streamed(&frames);
        let mut end = BodyEnd::Open;
        let mut sizes = Vec::new();
        while let Some(batch) =
            std::future::poll_fn(|cx| poll_batch(&mut body, cx, &mut end, true)).await
        {
            sizes.push(batch.unwrap().len());
        }
        assert_eq!(sizes, vec![BATCH_FRAMES, BATCH_FRAMES, 1]);
    }

    fn streamed(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(bytes::Bytes::from_static(c.as_bytes())))
            .collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    fn parts_with(headers: &[(&str, &str)]) -> Parts {
        let mut builder = axum::http::Response::builder().status(200);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn a_handler_content_length_is_used_and_checked() {
        // A file body: no exact size hint, the handler says the length.
        let parts = parts_with(&[("content-length", "10")]);
        let mut out = Vec::new();
        whole(&mut out, &parts, streamed(&["hello", "world"]), true)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 10\r\n"), "{text}");
        assert!(!text.contains("transfer-encoding"), "{text}");
        assert!(!text.contains("connection: close"), "{text}");
        assert!(text.ends_with("\r\n\r\nhelloworld"), "{text}");

        // Shorter or longer than announced: an error, so the connection
        // closes instead of falling out of step.
        let short = whole(&mut Vec::new(), &parts, streamed(&["hello"]), true).await;
        assert!(short.is_err());
        let long = whole(
            &mut Vec::new(),
            &parts,
            streamed(&["hello", "world", "!"]),
            true,
        )
        .await;
        assert!(long.is_err());
    }

    #[tokio::test]
    async fn an_unknown_length_is_chunked_and_a_known_one_is_not() {
        let mut out = Vec::new();
        whole(&mut out, &parts_with(&[]), streamed(&["ab", "cde"]), false)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        assert!(text.ends_with("2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"), "{text}");

        let mut out = Vec::new();
        whole(&mut out, &parts_with(&[]), Body::from("{}"), true)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 2\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }

    #[test]
    fn the_head_has_the_app_headers_and_its_own_framing() {
        let response = axum::http::Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .header("content-length", "5")
            .header("set-cookie", "sid=abc; Path=/")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let head = String::from_utf8(response_head(&parts, Framing::Chunked, true)).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-type: text/event-stream\r\n"));
        assert!(head.contains("set-cookie: sid=abc; Path=/\r\n"));
        assert!(head.contains("\r\ndate: "));
        assert!(!head.contains("content-length"));
        assert!(head.ends_with("transfer-encoding: chunked\r\n\r\n"));
    }
}
