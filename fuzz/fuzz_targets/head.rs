//! The direct path's head reader against hyper. Input: one byte that
//! decides how the rest is split into reads, then the bytes a client
//! sends. Whatever the direct path takes must be exactly one complete,
//! bodiless GET head (what follows stays unread, for the next request)
//! that hyper parses to the same request; whatever it hands on must be
//! the bytes read so far, unchanged.

#![no_main]

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use lean_serve::fuzzing::{HeadOutcome, read_head};
use tokio::io::AsyncWriteExt;

/// The request hyper made of `bytes`: target, headers, and whether it
/// has no body; `None` if hyper refused it.
type Parsed = (String, Vec<(String, Vec<u8>)>, bool, hyper::Method, hyper::Version);

async fn hyper_parse(bytes: Vec<u8>) -> Option<Parsed> {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let parsed = (
            request.uri().to_string(),
            request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect(),
            request.body().is_end_stream(),
            request.method().clone(),
            request.version(),
        );
        let _ = tx.send(parsed);
        async { Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new())) }
    });
    let connection = tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service),
    );
    let _ = client.write_all(&bytes).await;
    let mut rx = rx;
    let got = tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .ok()
        .flatten();
    connection.abort();
    got
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, bytes)) = data.split_first() else {
        return;
    };
    // Reads of 1..=shape+1 bytes, cycling: from byte-by-byte to whole.
    let step = usize::from(shape) + 1;
    let pieces: Vec<Vec<u8>> = bytes.chunks(step).map(<[u8]>::to_vec).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let max = 8 * 1024;
        match read_head(pieces, max).await {
            HeadOutcome::Direct {
                target,
                headers,
                consumed,
                ..
            } => {
                let bytes = &bytes[..consumed];
                let parsed = hyper_parse(bytes.to_vec()).await;
                let Some((h_target, h_headers, h_empty, h_method, h_version)) = parsed else {
                    panic!("taken directly, refused by hyper: {:?}", String::from_utf8_lossy(bytes));
                };
                assert_eq!(h_method, hyper::Method::GET);
                assert_eq!(h_version, hyper::Version::HTTP_11);
                assert!(h_empty, "hyper sees a body");
                assert_eq!(target, h_target);
                assert_eq!(headers, h_headers);
                // Exactly one complete head, nothing after it.
                let mut slots = [httparse::EMPTY_HEADER; 64];
                let mut head = httparse::Request::new(&mut slots);
                assert_eq!(head.parse(bytes), Ok(httparse::Status::Complete(bytes.len())));
            }
            HeadOutcome::Other(read) => {
                assert!(bytes.starts_with(&read), "handed on bytes that were not read");
                assert!(!read.is_empty());
            }
            HeadOutcome::Gone => {}
        }
    });
});
