//! `--relay`: each run is also a live document on a relay, created through its HTTP API and
//! written through an [`inloop_client::Client`] as the run goes.

use std::time::Duration;

use inloop_client::{Client, ClientOptions};
use inloop_doc::Notebook;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// How long creating a document and syncing with it may take.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// A relay to publish runs on, and a token that may create documents there (an admin token).
#[derive(Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// `host:port`.
    authority: String,
    token: String,
}

impl std::fmt::Debug for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTarget")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl RelayTarget {
    /// From `ws://HOST:PORT`, `http://HOST:PORT` (a path is ignored), with the token as its
    /// `?token=` or as `token` (which wins).
    pub fn parse(url: &str, token: Option<&str>) -> Result<Self> {
        let rest = if let Some(rest) = url.strip_prefix("ws://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("wss://") || url.starts_with("https://") {
            return Err(Error::Relay(format!(
                "{url}: TLS is not supported yet; reach the relay over ws:// (e.g. through an SSH tunnel)"
            )));
        } else {
            return Err(Error::Relay(format!(
                "{url}: give the relay as ws://HOST:PORT or http://HOST:PORT"
            )));
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = before_query
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if authority.is_empty() {
            return Err(Error::Relay(format!("{url}: no host")));
        }
        let from_query = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(str::to_owned);
        let token = token
            .map(str::to_owned)
            .or(from_query)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Relay(
                    "a token that may create documents is needed: --token or ?token= in the URL"
                        .into(),
                )
            })?;
        Ok(Self { authority, token })
    }

    /// `http://HOST:PORT`.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// Creates a document holding `notebook`, connects to it and returns the client (synced) and
    /// the URL of its page with a read-only token.
    pub(crate) async fn publish(
        &self,
        notebook: &Notebook,
        name: &str,
    ) -> Result<(Client, String)> {
        let work = async {
            let body = notebook.to_ipynb();
            let created = self
                .post("/api/docs", "application/x-ipynb+json", body.as_bytes())
                .await?;
            let id = created["id"]
                .as_str()
                .ok_or_else(|| Error::Relay(format!("no id in the relay's answer: {created}")))?
                .to_owned();
            let viewer = serde_json::json!({"role": "read", "name": format!("watching {name}")});
            let minted = self
                .post(
                    &format!("/api/docs/{id}/tokens"),
                    "application/json",
                    viewer.to_string().as_bytes(),
                )
                .await?;
            let page = match minted["page"].as_str() {
                Some(page) => format!("{}{page}", self.http_base()),
                None => format!("{}/n/{id}", self.http_base()),
            };
            let url = format!(
                "ws://{}/api/docs/{id}/ws?token={}",
                self.authority, self.token
            );
            let client = Client::connect(&url, Notebook::new(), ClientOptions::new());
            client
                .wait_synced(RELAY_TIMEOUT)
                .await
                .map_err(|e| Error::Relay(e.to_string()))?;
            Ok((client, page))
        };
        tokio::time::timeout(RELAY_TIMEOUT, work)
            .await
            .map_err(|_| Error::Relay(format!("{} did not answer in time", self.authority)))?
    }

    /// `POST path` with the token; the JSON answer of a 2xx.
    async fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Value> {
        let io = |e: std::io::Error| Error::Relay(format!("{}: {e}", self.authority));
        let mut stream = TcpStream::connect(&self.authority).await.map_err(io)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            self.token,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| Error::Relay("the relay's answer is not HTTP".into()))?;
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let mut body = answer[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&body);
        if !(200..300).contains(&status) {
            return Err(Error::Relay(format!(
                "POST {path} answered {status}: {}",
                text.trim()
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::Relay(format!("POST {path}: the answer is not JSON: {e}")))
    }
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

/// Waits until the relay has stored everything `client` wrote (or `limit` passes), then closes.
pub(crate) async fn flush_and_close(client: &Client, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while client.unacknowledged() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls() {
        let target = RelayTarget::parse("ws://127.0.0.1:8787?token=abc", None).unwrap();
        assert_eq!(target.http_base(), "http://127.0.0.1:8787");
        assert_eq!(target.token, "abc");
        let target = RelayTarget::parse("http://h:1/", Some("t")).unwrap();
        assert_eq!(
            (target.authority.as_str(), target.token.as_str()),
            ("h:1", "t")
        );
        assert!(RelayTarget::parse("ws://h:1", None).is_err());
        assert!(RelayTarget::parse("wss://h:1?token=x", None).is_err());
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
