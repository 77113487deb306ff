//! The relay's HTTP API (create documents, mint tokens, export and import), for native tools
//! such as `inloop run` and `inloop mcp`: one request over plain HTTP/1.1, as the relay speaks
//! it on loopback and behind a TLS-terminating proxy.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// How long one call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `METHOD path` on the relay at `authority` (`host:port`) with `token` as the bearer; the body
/// of a 2xx answer, or [`Error::Http`] saying what failed (the relay's own message included).
pub async fn request(
    authority: &str,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<u8>> {
    let work = async {
        let io = |e: std::io::Error| Error::Http(format!("the relay at {authority}: {e}"));
        let mut stream = TcpStream::connect(authority).await.map_err(io)?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Error::Http("the relay's answer is not HTTP".into()))?;
        let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
        let mut body = answer[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if !(200..300).contains(&status) {
            return Err(Error::Http(format!(
                "{method} {path} on the relay answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok(body)
    };
    tokio::time::timeout(TIMEOUT, work).await.map_err(|_| {
        Error::Http(format!(
            "the relay at {authority} did not answer in {TIMEOUT:?}"
        ))
    })?
}

/// [`request`], with a JSON answer.
pub async fn request_json(
    authority: &str,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<serde_json::Value> {
    let body = request(authority, token, method, path, content_type, body).await?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::Http(format!("{method} {path}: the answer is not JSON: {e}")))
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        body.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_joined() {
        let chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(super::dechunk(chunked), b"hello world");
    }
}
