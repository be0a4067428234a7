//! The same bytes sent to the server in both transport modes must get the
//! same answers: status, headers (but `date`), framing and body of every
//! response, in order, and the same closing behaviour. The direct path
//! (`server.direct_responses`, on by default) may only differ from hyper
//! in what it costs, never in what a client sees.

use std::time::Duration;

use crate::support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One exchange: the pieces written (with a pause between them), and
/// whether the requests are `HEAD` (responses without a body).
struct Case {
    name: &'static str,
    pieces: Vec<Vec<u8>>,
    head: bool,
    /// Reset the connection after the last piece instead of reading.
    reset: bool,
}

fn case(name: &'static str, bytes: &str) -> Case {
    Case {
        name,
        pieces: vec![bytes.as_bytes().to_vec()],
        head: false,
        reset: false,
    }
}

fn cases() -> Vec<Case> {
    let long_header = format!(
        "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(9000)
    );
    let trickled: Vec<Vec<u8>> = b"GET /api/sse/clients HTTP/1.1\r\nHost: x\r\n\r\n"
        .chunks(3)
        .map(<[u8]>::to_vec)
        .collect();
    let mut all = vec![
        case(
            "401 json",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        case("page", "GET /login HTTP/1.1\r\nHost: x\r\n\r\n"),
        case("redirect", "GET /home HTTP/1.1\r\nHost: x\r\n\r\n"),
        case("404 page", "GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n"),
        case(
            "missing file",
            "GET /pkg/none.js HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        case(
            "asks to close",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        case(
            "pipelined",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\n\r\nGET /login HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        case("http/1.0", "GET /api/sse/clients HTTP/1.0\r\n\r\n"),
        case(
            "body on a GET",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        ),
        case(
            "zero content-length",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ),
        case(
            "post",
            "POST /api/auth/me HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ),
        case(
            "authority-form",
            "GET 127.0.0.1:9 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        case("no host", "GET /api/sse/clients HTTP/1.1\r\n\r\n"),
        case(
            "two hosts",
            "GET /api/sse/clients HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        case(
            "obs-fold",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        ),
        case("bare lf", "GET /api/sse/clients HTTP/1.1\nHost: x\n\n"),
        case("not http", "\x16\x03\x01\x02\x00 hello\r\n\r\n"),
        case(
            "smuggling shape",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        case(
            "expect",
            "GET /api/sse/clients HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        ),
        case("long head", &long_header),
        Case {
            name: "trickled",
            pieces: trickled,
            head: false,
            reset: false,
        },
        Case {
            name: "keep-alive, one after the other",
            pieces: vec![
                b"GET /api/sse/clients HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                b"GET /signup HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ],
            head: false,
            reset: false,
        },
        Case {
            name: "head",
            pieces: vec![b"HEAD /login HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()],
            head: true,
            reset: false,
        },
        Case {
            name: "reset mid-request",
            pieces: vec![b"GET /login HTTP/1.1\r\nHo".to_vec()],
            head: false,
            reset: true,
        },
    ];
    all.retain(|c| !c.pieces.is_empty());
    all
}

/// What a client saw: every response, normalised, and whether the server
/// closed the connection.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    responses: Vec<Response>,
    closed: bool,
    /// Bytes left over that do not parse as a response.
    garbage: usize,
}

#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: String,
    /// Lower-cased `name: value`, sorted, without `date` (and with
    /// `x-request-id`'s value masked).
    headers: Vec<String>,
    framing: &'static str,
    body: String,
}

async fn exchange(addr: &str, case: &Case) -> Seen {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    for (n, piece) in case.pieces.iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        socket.write_all(piece).await.expect("write");
    }
    if case.reset {
        let _ = socket.set_zero_linger();
        drop(socket);
        return Seen {
            responses: Vec::new(),
            closed: true,
            garbage: 0,
        };
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(Duration::from_millis(1500), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let (responses, garbage) = parse(&received, case.head, closed);
    Seen {
        responses,
        closed,
        garbage,
    }
}

fn parse(mut bytes: &[u8], head_only: bool, closed: bool) -> (Vec<Response>, usize) {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default().to_string();
        let mut headers: Vec<String> = lines
            .map(|l| {
                let (name, value) = l.split_once(':').unwrap_or((l, ""));
                format!("{}: {}", name.trim().to_ascii_lowercase(), value.trim())
            })
            .filter(|l| !l.starts_with("date:"))
            // A new id per request, whoever answers it.
            .map(|l| match l.starts_with("x-request-id:") {
                true => "x-request-id: (id)".to_string(),
                false => l,
            })
            .collect();
        headers.sort();
        let mut rest = &bytes[end + 4..];
        let code: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let length = headers
            .iter()
            .find_map(|h| h.strip_prefix("content-length: ")?.parse::<usize>().ok());
        let chunked = headers.iter().any(|h| h == "transfer-encoding: chunked");
        let (framing, body) = if head_only || code / 100 == 1 || code == 204 || code == 304 {
            ("none", Vec::new())
        } else if chunked {
            let mut body = Vec::new();
            while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
                let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
                let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                    break;
                };
                rest = &rest[line_end + 2..];
                if size == 0 {
                    rest = rest.get(2..).unwrap_or_default();
                    break;
                }
                let Some(data) = rest.get(..size) else {
                    break;
                };
                body.extend_from_slice(data);
                rest = rest.get(size + 2..).unwrap_or_default();
            }
            ("chunked", body)
        } else if let Some(len) = length {
            let body = rest.get(..len).unwrap_or(rest).to_vec();
            rest = rest.get(len..).unwrap_or_default();
            ("length", body)
        } else if closed {
            let body = rest.to_vec();
            rest = &[];
            ("close", body)
        } else {
            ("none", Vec::new())
        };
        out.push(Response {
            status,
            headers,
            framing,
            body: without_nonces(&String::from_utf8_lossy(&body)),
        });
        bytes = rest;
    }
    (out, bytes.len())
}

/// Pages carry a fresh nonce per render (scripts' `nonce`, links'
/// `crossorigin`): the only part of a body allowed to differ.
fn without_nonces(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    loop {
        let next = ["nonce=\"", "crossorigin=\""]
            .iter()
            .filter_map(|attr| rest.find(attr).map(|at| (at, attr.len())))
            .min();
        let Some((at, len)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let end = rest.find('"').unwrap_or(rest.len());
        out.push_str("(nonce)");
        rest = &rest[end..];
    }
}

#[tokio::test]
async fn both_transports_answer_every_byte_stream_alike() {
    let direct = TestServer::start(&[("SERVER_DIRECT_RESPONSES", "true")]).await;
    let hyper = TestServer::start(&[("SERVER_DIRECT_RESPONSES", "false")]).await;
    let (direct_addr, hyper_addr) = (direct.addr(), hyper.addr());
    let cases = cases();
    // Every case on its own connections, all at once.
    let seen = futures::future::join_all(cases.iter().map(|case| async {
        tokio::join!(exchange(&direct_addr, case), exchange(&hyper_addr, case))
    }))
    .await;
    let differences: Vec<String> = cases
        .iter()
        .zip(seen)
        .filter(|(_, (a, b))| a != b)
        .map(|(case, (a, b))| format!("{}:\n  direct: {a:?}\n  hyper:  {b:?}", case.name))
        .collect();
    assert!(
        differences.is_empty(),
        "{} cases differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    direct.shutdown().await.expect("clean shutdown");
    hyper.shutdown().await.expect("clean shutdown");
}
