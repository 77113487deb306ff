//! `--relay`: each run is also a live document on a relay, created through its HTTP API and
//! written through an [`inloop_client::Client`] as the run goes.

use std::time::Duration;

use inloop_client::{Client, ClientOptions};
use inloop_doc::Notebook;
use serde_json::Value;

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
                .request_json(
                    "POST",
                    "/api/docs",
                    "application/x-ipynb+json",
                    body.as_bytes(),
                )
                .await?;
            let id = created["id"]
                .as_str()
                .ok_or_else(|| Error::Relay(format!("no id in the relay's answer: {created}")))?
                .to_owned();
            let viewer = serde_json::json!({"role": "read", "name": format!("watching {name}")});
            let minted = self
                .request_json(
                    "POST",
                    &format!("/api/docs/{id}/tokens"),
                    "application/json",
                    viewer.to_string().as_bytes(),
                )
                .await?;
            let page = match minted["page"].as_str() {
                Some(page) => format!("{}{page}", self.http_base()),
                None => format!("{}/n/{id}", self.http_base()),
            };
            let client = Client::connect(
                &self.document_url(&id),
                Notebook::new(),
                ClientOptions::new(),
            );
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

    /// The WebSocket URL of document `doc_id`, with the token.
    pub fn document_url(&self, doc_id: &str) -> String {
        format!(
            "ws://{}/api/docs/{doc_id}/ws?token={}",
            self.authority, self.token
        )
    }

    /// `METHOD path` of the relay's HTTP API with the token; the JSON answer of a 2xx.
    pub async fn request_json(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value> {
        inloop_client::api::request_json(
            &self.authority,
            &self.token,
            method,
            path,
            content_type,
            body,
        )
        .await
        .map_err(|e| Error::Relay(e.to_string()))
    }
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
    }
}
