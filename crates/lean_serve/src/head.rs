//! A request head, read before any HTTP machinery exists, to decide who
//! answers it: [`super::direct`] for a bodiless `GET`, hyper otherwise.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Request heads are read in steps of this many bytes.
const READ_STEP: usize = 1024;
/// Most headers a direct request may have; more go to hyper.
const MAX_HEADERS: usize = 48;

/// What the next bytes of a connection turned out to be.
#[derive(Debug)]
pub(super) enum Head {
    /// `GET` over HTTP/1.1 with no body and nothing sent after it: served
    /// without hyper. `keep_alive`: no `Connection: close`.
    Direct {
        request: Box<Request<Body>>,
        keep_alive: bool,
    },
    /// Anything else: hyper serves it, starting with these bytes.
    Other(Vec<u8>),
    /// The peer closed or failed before sending a complete head.
    Gone,
}

/// Reads until a complete head, the end of the stream, or `max_bytes`.
pub(super) async fn read_head<R: AsyncRead + Unpin>(io: &mut R, max_bytes: usize) -> Head {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_STEP);
    loop {
        if buf.capacity() - buf.len() < READ_STEP / 2 {
            buf.reserve(READ_STEP);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(_) => {}
        }
        match classify(&buf) {
            Parsed::Direct(request) => {
                let keep_alive = !super::direct::asks_to_close(request.headers());
                return Head::Direct {
                    request,
                    keep_alive,
                };
            }
            Parsed::Hyper => return Head::Other(buf),
            Parsed::Incomplete if buf.len() >= max_bytes => return Head::Other(buf),
            Parsed::Incomplete => {}
        }
    }
}

/// What the bytes read so far hold.
enum Parsed {
    Incomplete,
    Direct(Box<Request<Body>>),
    Hyper,
}

fn classify(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        // Malformed or too many headers: hyper gives the proper answer.
        Err(_) => return Parsed::Hyper,
    };
    let direct = len == buf.len()
        && head.method == Some("GET")
        && head.version == Some(1)
        && head.headers.iter().all(|h| allowed(h));
    if !direct {
        return Parsed::Hyper;
    }
    build(head.path.unwrap_or("/"), head.headers).map_or(Parsed::Hyper, Parsed::Direct)
}

/// Headers that would need HTTP machinery this path does not have (a
/// request body, an upgrade, a non-persistent HTTP/1.1 connection is fine).
fn allowed(header: &httparse::Header<'_>) -> bool {
    let name = header.name;
    if name.eq_ignore_ascii_case("content-length") {
        return header.value.trim_ascii() == b"0";
    }
    !(name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("upgrade")
        || name.eq_ignore_ascii_case("expect"))
}

fn build(target: &str, headers: &[httparse::Header<'_>]) -> Option<Box<Request<Body>>> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(Version::HTTP_11)
        .body(Body::empty())
        .ok()?;
    let map = request.headers_mut();
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        map.append(name, value);
    }
    Some(Box::new(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn first(bytes: &[u8]) -> Head {
        let mut io = bytes;
        read_head(&mut io, 8192).await
    }

    #[tokio::test]
    async fn a_bodiless_get_is_served_directly() {
        let got = first(b"GET /api/sse?tag=a:b HTTP/1.1\r\nHost: x\r\nCookie: sid=1\r\n\r\n").await;
        let Head::Direct {
            request,
            keep_alive: true,
        } = got
        else {
            panic!("expected a direct request, got {got:?}");
        };
        assert_eq!(request.uri().path(), "/api/sse");
        assert_eq!(request.uri().query(), Some("tag=a:b"));
        assert_eq!(request.headers()["cookie"], "sid=1");
        assert_eq!(request.headers()["host"], "x");

        let got = first(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").await;
        assert!(
            matches!(
                got,
                Head::Direct {
                    keep_alive: false,
                    ..
                }
            ),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn everything_else_goes_to_hyper_with_the_bytes_read() {
        for raw in [
            &b"POST /api/sse HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /api/sse HTTP/1.0\r\nHost: x\r\n\r\n",
            b"GET /api/sse HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /api/sse HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET /api/sse HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            // A pipelined second request.
            b"GET /api/sse HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01 not http at all\r\n\r\n",
        ] {
            match first(raw).await {
                Head::Other(bytes) => assert_eq!(bytes, raw),
                got => panic!(
                    "{:?}: expected hyper, got {got:?}",
                    String::from_utf8_lossy(raw)
                ),
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_head_goes_to_hyper_and_a_cut_one_is_gone() {
        let mut long = b"GET /api/sse HTTP/1.1\r\nX-Pad: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9000));
        assert!(matches!(first(&long).await, Head::Other(b) if b.len() >= 8192));
        assert!(matches!(
            first(b"GET /api/sse HTTP/1.1\r\nHo").await,
            Head::Gone
        ));
        assert!(matches!(first(b"").await, Head::Gone));
    }
}
