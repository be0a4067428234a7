//! The direct path's response writer. Input: a status, a declared
//! `content-length` (or none), body chunks. Whatever it writes must be a
//! response a client can frame: 204/304 without a body, the announced
//! length exactly, or well-formed chunks; a body that does not match its
//! announced length must be an error (the connection then closes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use lean_serve::fuzzing::write_response;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let status = 200 + u16::from(data[0]) % 400;
    let declared = match data[1] % 3 {
        0 => None,
        1 => Some(u64::from(data[2])),
        _ => Some(u64::from(data[2]) * 37),
    };
    let keep_alive = data[3] & 1 == 1;
    let chunks: Vec<Vec<u8>> = data[4..]
        .split(|b| *b == b'|')
        .map(<[u8]>::to_vec)
        .collect();
    let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let mut headers = Vec::new();
    if let Some(len) = declared {
        headers.push(("content-length".to_string(), len.to_string()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (result, out) =
        runtime.block_on(write_response(status, headers, chunks.clone(), keep_alive));
    let bodiless = status == 204 || status == 304;

    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut slots);
    let Ok(httparse::Status::Complete(end)) = head.parse(&out) else {
        panic!("no complete head in {:?}", String::from_utf8_lossy(&out));
    };
    assert_eq!(head.code, Some(status));
    let get = |name: &str| {
        head.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
            .collect::<Vec<_>>()
    };
    let lengths = get("content-length");
    let chunked = get("transfer-encoding");
    assert!(lengths.len() <= 1 && chunked.len() <= 1);
    assert!(lengths.is_empty() || chunked.is_empty(), "both framings");
    assert_eq!(get("connection").is_empty(), keep_alive);
    let body = &out[end..];
    if bodiless {
        assert!(lengths.is_empty() && chunked.is_empty() && body.is_empty());
        return;
    }
    if let Some(len) = lengths.first() {
        let len: u64 = len.parse().expect("numeric content-length");
        if result.is_ok() {
            assert_eq!(len, total);
            assert_eq!(body.len() as u64, len);
        } else {
            assert_ne!(len, total, "an error although the length matched");
            assert!(body.len() as u64 <= len, "wrote past the announced length");
        }
        return;
    }
    assert_eq!(chunked.first().map(String::as_str), Some("chunked"));
    assert!(result.is_ok());
    // De-chunk: must end with the last chunk and give back every byte.
    let mut rest = body;
    let mut decoded = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").expect("size line");
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).expect("hex"), 16)
            .expect("hex size");
        rest = &rest[line + 2..];
        if size == 0 {
            assert_eq!(rest, b"\r\n");
            break;
        }
        assert!(size > 0);
        decoded.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
    }
    assert_eq!(decoded, chunks.concat());
});
