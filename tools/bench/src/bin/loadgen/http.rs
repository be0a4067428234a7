//! The generator's HTTP client side: plain requests over fresh sockets,
//! sign-in, and sockets bound to spread source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::Target;

const PASSWORD: &str = "bench password 1";
/// No request of the generator's own may take longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A connection from 127.0.0.(2..=251), so that one generator is not
/// limited by one source address's ports.
pub async fn connect_from(addr: SocketAddr, n: usize) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let source = Ipv4Addr::new(127, 0, 0, 2 + (n % 250) as u8);
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A tiny HTTP/1.1 request on its own connection; returns the status and
/// the whole response text.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            body.len()
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        stream
            .read_to_end(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&out).to_string())
    };
    let text = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer in {REQUEST_TIMEOUT:?}"))??;
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response: {text:.80}"))?;
    Ok((status, text))
}

/// The body of a response returned by [`request`].
pub fn body_of(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Signs up (or in) `name`; returns its `sid=…` cookie.
pub async fn session(addr: SocketAddr, name: &str) -> Result<String, String> {
    let form = format!("username={name}&password={}", PASSWORD.replace(' ', "+"));
    let ct = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (mut status, mut text) = request(addr, "POST", "/api/auth/signup", ct, &form).await?;
    if status == 409 {
        (status, text) = request(addr, "POST", "/api/auth/login", ct, &form).await?;
    }
    if status != 200 {
        return Err(format!("sign-in of {name}: {status}: {text:.200}"));
    }
    text.lines()
        .find_map(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with("set-cookie: sid=").then(|| {
                l["set-cookie: ".len()..]
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .ok_or_else(|| "no session cookie".to_string())
}

/// Open streams as the server counts them: ours from the admin listing's
/// stats, the baseline from `GET /count`, Nchan from its channel's info.
pub async fn server_count(
    addr: SocketAddr,
    target: Target,
    admin_cookie: Option<&str>,
) -> Result<u64, String> {
    if target == Target::Nchan {
        let accept = "Accept: text/json\r\n";
        let (status, text) = request(addr, "GET", target.publish_path(), accept, "").await?;
        // A channel with no subscriber and no message left is gone.
        if status == 404 {
            return Ok(0);
        }
        if status != 200 {
            return Err(format!("channel info: {status}: {text:.200}"));
        }
        let json: serde_json::Value = serde_json::from_str(chunked_body(body_of(&text)).trim())
            .map_err(|e| format!("channel info: {e}"))?;
        return json["subscribers"]
            .as_u64()
            .ok_or_else(|| format!("no subscribers in {json}"));
    }
    if target == Target::Ours {
        let headers = format!("Cookie: {}\r\n", admin_cookie.unwrap_or_default());
        // A filter that matches no client keeps the listing small.
        let path = "/api/sse/clients?clientIds=00000000-0000-4000-8000-000000000000";
        let (status, text) = request(addr, "GET", path, &headers, "").await?;
        if status != 200 {
            return Err(format!("client listing: {status}: {text:.200}"));
        }
        let json: serde_json::Value = serde_json::from_str(chunked_body(body_of(&text)).trim())
            .map_err(|e| format!("client listing: {e}"))?;
        json["stats"]["totalClients"]
            .as_u64()
            .ok_or_else(|| format!("no totalClients in {json}"))
    } else {
        let (status, text) = request(addr, "GET", "/count", "", "").await?;
        if status != 200 {
            return Err(format!("count: {status}"));
        }
        chunked_body(body_of(&text))
            .trim()
            .parse()
            .map_err(|e| format!("count: {e}"))
    }
}

/// The payload of a body that may be chunked: the longest line, which is
/// enough for the one-line JSON and number bodies read here.
fn chunked_body(body: &str) -> &str {
    body.lines().max_by_key(|l| l.len()).unwrap_or("")
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
