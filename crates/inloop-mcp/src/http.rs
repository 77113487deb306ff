//! The few calls of the relay's HTTP API the tools need, over plain HTTP/1.1.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::RelayConfig;

/// `METHOD path` with the token; the body of a 2xx answer, or a message saying what failed.
pub(crate) async fn call(
    relay: &RelayConfig,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let work = async {
        let io = |e: std::io::Error| format!("the relay at {}: {e}", relay.authority);
        let mut stream = TcpStream::connect(&relay.authority).await.map_err(io)?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            relay.authority,
            relay.token,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("the relay's answer is not HTTP")?;
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
            return Err(format!(
                "{method} {path} on the relay answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        Ok(body)
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), work)
        .await
        .map_err(|_| format!("the relay at {} did not answer in 30 s", relay.authority))?
}

/// [`call`], with a JSON answer.
pub(crate) async fn call_json(
    relay: &RelayConfig,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Value, String> {
    let body = call(relay, method, path, content_type, body).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{method} {path}: not JSON: {e}"))
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
