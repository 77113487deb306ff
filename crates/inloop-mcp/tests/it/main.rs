//! Integration tests of `inloop mcp`'s tools: the real server, called by rmcp's client over an
//! in-process stream.

mod root;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use serde_json::Value;

/// An MCP client session with a server serving `config`.
pub(crate) struct Session {
    client: RunningService<rmcp::RoleClient, ()>,
    server: tokio::task::JoinHandle<inloop_mcp::Result<()>>,
}

/// A tool's answer: its JSON, or the message of its error.
pub(crate) type Answer = Result<Value, String>;

impl Session {
    pub(crate) async fn start(config: inloop_mcp::Config) -> Self {
        let (server_end, client_end) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(inloop_mcp::serve(config, server_end));
        let client = ().serve(client_end).await.expect("the MCP session starts");
        Self { client, server }
    }

    /// Calls `tool` with `arguments` (a JSON object).
    pub(crate) async fn call(&self, tool: &'static str, arguments: Value) -> Answer {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object: {arguments}");
        };
        let result = self
            .client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
            .await
            .unwrap_or_else(|error| panic!("{tool}: the call itself failed: {error}"));
        let text: String = result
            .content
            .iter()
            .filter_map(|content| content.as_text().map(|t| t.text.clone()))
            .collect();
        if result.is_error == Some(true) {
            Err(text)
        } else {
            Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool}: {e}: {text}")))
        }
    }

    /// Closes the session; the server returns.
    pub(crate) async fn close(self) {
        self.client.cancel().await.expect("the client closes");
        self.server
            .await
            .expect("the server task")
            .expect("the server ends cleanly");
    }
}
