//! Who may use the streamable HTTP endpoint: a bearer token (required on an address other
//! machines reach), and, against DNS rebinding (the MCP spec's security warning for streamable
//! HTTP), the `Host` and browser `Origin` a request may come with.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;

use crate::{Error, Result};

/// Who may use `serve_http`'s endpoint.
#[derive(Clone, Default)]
pub struct HttpAccess {
    /// Every request must carry `Authorization: Bearer TOKEN`. Required unless the address is a
    /// loopback one.
    pub token: Option<String>,
    /// Browser origins allowed besides the loopback ones, e.g. `https://app.example.com` or
    /// `http://devbox:*` (any port). A request whose `Origin` is neither is refused (403).
    pub allowed_origins: Vec<String>,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

/// The hosts a loopback origin may name; browsers write IPv6 ones in brackets.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

impl HttpAccess {
    /// Refuses to serve `addr` unprotected: another machine could run code through the tools.
    pub(crate) fn check(&self, addr: SocketAddr) -> Result<()> {
        match self.token.as_deref() {
            Some("") => Err(Error::EmptyToken),
            None if !is_loopback(addr) => Err(Error::TokenRequired(addr)),
            _ => Ok(()),
        }
    }

    /// rmcp's `Host` and `Origin` checks for a server listening on `addr`.
    ///
    /// On loopback, rmcp accepts loopback `Host`s only and we add loopback origins to the
    /// allowed ones, so a web page elsewhere cannot reach the server through a rebound name.
    /// Elsewhere the token is the guard (a page cannot know it, and browsers never add it by
    /// themselves): any `Host`, and `Origin` checked only against the origins given.
    pub(crate) fn rmcp_config(
        &self,
        addr: SocketAddr,
        config: StreamableHttpServerConfig,
    ) -> StreamableHttpServerConfig {
        if !is_loopback(addr) {
            return config
                .disable_allowed_hosts()
                .with_allowed_origins(self.allowed_origins.clone());
        }
        let loopback = ["http", "https"]
            .into_iter()
            .flat_map(|scheme| LOOPBACK_HOSTS.map(|host| format!("{scheme}://{host}:*")));
        config.with_allowed_origins(loopback.chain(self.allowed_origins.iter().cloned()))
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization: Bearer …` header.
    NoToken,
    WrongToken,
}

/// Whether `headers` carry `Authorization: Bearer <expected>`.
fn authorize(headers: &HeaderMap, expected: &str) -> Result<(), Refusal> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(Refusal::NoToken)?;
    if same_secret(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

/// Compares in constant time: every byte is looked at whatever the first difference, so how
/// long a refusal takes says nothing of how much of a guess was right (only the length shows).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let differences = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    given.len() == expected.len() && std::hint::black_box(differences) == 0
}

impl IntoResponse for Refusal {
    /// 401 with the RFC 6750 challenge, and a body saying what to send.
    fn into_response(self) -> Response {
        let (challenge, error, description) = match self {
            Refusal::NoToken => (
                r#"Bearer realm="inloop mcp""#,
                "missing_token",
                "this MCP server needs a bearer token: send `Authorization: Bearer TOKEN` with \
                 the token it was started with (inloop mcp --http-token or INLOOP_MCP_TOKEN)",
            ),
            Refusal::WrongToken => (
                r#"Bearer realm="inloop mcp", error="invalid_token""#,
                "invalid_token",
                "the bearer token is not this server's: send the token inloop mcp was started \
                 with (--http-token or INLOOP_MCP_TOKEN)",
            ),
        };
        let body = axum::Json(serde_json::json!({
            "error": error,
            "error_description": description,
        }));
        let challenge = [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )];
        (StatusCode::UNAUTHORIZED, challenge, body).into_response()
    }
}

/// The middleware that lets through requests carrying the token.
pub(crate) async fn require_token(
    State(token): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(request.headers(), &token) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(?refusal, uri = %request.uri(), "refused an MCP request");
            refusal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`authorize`] against the token `s3cret-token`, with this `Authorization` header.
    fn authorize_with(authorization: Option<&str>) -> Result<(), Refusal> {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        authorize(&headers, "s3cret-token")
    }

    #[test]
    fn only_the_bearer_token_is_let_through() {
        for right in ["Bearer s3cret-token", "bearer s3cret-token "] {
            assert_eq!(authorize_with(Some(right)), Ok(()), "{right}");
        }
        for no_token in [None, Some("Basic czNjcmV0LXRva2Vu"), Some("Bearer")] {
            assert_eq!(
                authorize_with(no_token),
                Err(Refusal::NoToken),
                "{no_token:?}"
            );
        }
        for wrong in [
            "Bearer s3cret-tokem",
            "Bearer s3cret",
            "Bearer s3cret-token-and-more",
        ] {
            assert_eq!(
                authorize_with(Some(wrong)),
                Err(Refusal::WrongToken),
                "{wrong}"
            );
        }
    }

    #[test]
    fn secrets_compare_by_every_byte_and_the_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
    }

    #[test]
    fn a_refusal_is_a_401_with_a_bearer_challenge() {
        for refusal in [Refusal::NoToken, Refusal::WrongToken] {
            let response = refusal.into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap();
            assert!(challenge.starts_with("Bearer "), "{challenge}");
        }
    }

    #[test]
    fn a_token_is_required_off_loopback() {
        let open = HttpAccess::default();
        let locked = HttpAccess {
            token: Some("t".into()),
            ..HttpAccess::default()
        };
        for loopback in ["127.0.0.1:0", "[::1]:8080", "[::ffff:127.0.0.1]:1"] {
            open.check(loopback.parse().unwrap()).unwrap();
        }
        for exposed in ["0.0.0.0:0", "[::]:0", "192.168.1.5:8080"] {
            let addr: SocketAddr = exposed.parse().unwrap();
            let error = open.check(addr).unwrap_err();
            assert!(matches!(error, Error::TokenRequired(_)), "{exposed}");
            assert!(error.to_string().contains("--http-token"), "{error}");
            locked.check(addr).unwrap();
        }
        let empty = HttpAccess {
            token: Some(String::new()),
            ..HttpAccess::default()
        };
        assert!(matches!(
            empty.check("127.0.0.1:0".parse().unwrap()),
            Err(Error::EmptyToken)
        ));
    }

    #[test]
    fn loopback_origins_are_allowed_on_loopback_and_given_ones_everywhere() {
        let access = HttpAccess {
            token: Some("t".into()),
            allowed_origins: vec!["https://app.example.com".into()],
        };
        let base = StreamableHttpServerConfig::default;
        let local = access.rmcp_config("127.0.0.1:0".parse().unwrap(), base());
        assert!(
            local
                .allowed_origins
                .contains(&"http://localhost:*".to_owned())
        );
        assert!(local.allowed_origins.contains(&"http://[::1]:*".to_owned()));
        assert!(
            local
                .allowed_origins
                .contains(&"https://app.example.com".to_owned())
        );
        assert_eq!(local.allowed_hosts, base().allowed_hosts);
        let exposed = access.rmcp_config("0.0.0.0:0".parse().unwrap(), base());
        assert_eq!(exposed.allowed_origins, ["https://app.example.com"]);
        assert!(exposed.allowed_hosts.is_empty(), "any Host");
    }
}

/// The whole stack: `serve_http` on loopback with a token, asked over TCP.
#[cfg(test)]
mod served {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{Config, HttpAccess, serve_http};

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

    /// POSTs an `initialize` with `headers` (and `Host: ADDR` unless they have a `Host`); the
    /// answer's status line and headers.
    async fn initialize(addr: std::net::SocketAddr, headers: &[&str]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
             Connection: close\r\n",
            INITIALIZE.len()
        );
        if !headers.iter().any(|h| h.starts_with("Host:")) {
            request.push_str(&format!("Host: {addr}\r\n"));
        }
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(INITIALIZE);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let mut read = 0;
        while !String::from_utf8_lossy(&answer[..read]).contains("\r\n\r\n") {
            let n = stream.read(&mut answer[read..]).await.unwrap();
            assert!(n > 0, "the connection closed early");
            read += n;
        }
        String::from_utf8_lossy(&answer[..read]).into_owned()
    }

    #[tokio::test]
    async fn the_token_and_the_origin_are_checked() {
        let root = tempfile::tempdir().unwrap();
        let access = HttpAccess {
            token: Some("right-token".into()),
            allowed_origins: vec!["https://app.example.com".into()],
        };
        let (bound_tx, bound) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(
            Config::new(root.path()),
            "127.0.0.1:0".parse().unwrap(),
            access,
            move |addr| bound_tx.send(addr).unwrap(),
            async move {
                let _ = stopped.await;
            },
        ));
        let addr = bound.await.unwrap();
        let right = "Authorization: Bearer right-token";

        let none = initialize(addr, &[]).await;
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(
            none.to_lowercase().contains("www-authenticate: bearer"),
            "{none}"
        );
        let wrong = initialize(addr, &["Authorization: Bearer wrong-token"]).await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        assert!(wrong.contains("invalid_token"), "{wrong}");

        assert!(initialize(addr, &[right]).await.starts_with("HTTP/1.1 200"));
        for origin in [
            "http://localhost:5173",
            "http://127.0.0.1",
            "https://app.example.com",
        ] {
            let answer = initialize(addr, &[right, &format!("Origin: {origin}")]).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{origin}: {answer}");
        }
        for origin in [
            "http://evil.example",
            "https://app.example.com.evil.example",
        ] {
            let answer = initialize(addr, &[right, &format!("Origin: {origin}")]).await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{origin}: {answer}");
        }
        let rebound = initialize(addr, &[right, "Host: evil.example"]).await;
        assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
