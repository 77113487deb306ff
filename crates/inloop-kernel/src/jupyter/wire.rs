//! Reading kernel messages off the sockets and handing each to the request that caused it.
//!
//! Messages are read as raw frames and their content kept as JSON rather than through
//! `Connection::read`, which parses every content into jupyter-protocol's typed structs: those
//! re-type mime bundles (an `application/vnd.dataresource+json` table loses the fields its
//! schema does not know) and reject a whole message, an `execute_reply` included, when one
//! part does not fit (an unknown payload `source`). Outputs must reach the notebook as the
//! kernel sent them, and a lost reply would hang an execution.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jupyter_protocol::{ClearOutput, ErrorOutput, ExecuteInput, Status, StreamContent, Transient};
use jupyter_zmq_client::{Connection, RawMessage};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::SocketRecv;

use crate::{ExecEvent, ExecuteReply, KernelInfo, ReplyStatus};
use inloop_doc::{JsonMap, Output, StreamName};

/// The socket a message came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Channel {
    Shell,
    IoPub,
    Control,
}

/// A kernel message, reduced to what routing and mapping need.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) channel: Channel,
    pub(super) msg_type: String,
    pub(super) content: Value,
}

/// Who waits for the messages of which request, by the request's `msg_id`.
#[derive(Clone, Debug, Default)]
pub(super) struct Router {
    waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>,
}

impl Router {
    /// Starts collecting the messages whose parent is `msg_id`; they stop when the returned
    /// [`Pending`] is dropped. Register before sending the request, so nothing is missed.
    pub(super) fn register(&self, msg_id: String) -> Pending {
        let (sender, messages) = mpsc::unbounded_channel();
        self.lock().insert(msg_id.clone(), sender);
        Pending {
            router: self.clone(),
            msg_id,
            messages,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Message>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads `connection` until its socket fails, routing each message by its parent.
    pub(super) fn spawn_reader<S>(
        &self,
        mut connection: Connection<S>,
        channel: Channel,
    ) -> JoinHandle<()>
    where
        S: SocketRecv + Send + 'static,
    {
        let router = self.clone();
        tokio::spawn(async move {
            loop {
                let (parent, message) = match read(&mut connection, channel).await {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::debug!(?channel, %error, "kernel socket closed");
                        return;
                    }
                };
                // Replies to requests nobody waits for any more (and messages caused by other
                // clients) are dropped.
                if let Some(sender) = parent.and_then(|id| router.lock().get(&id).cloned()) {
                    let _ = sender.send(message);
                }
            }
        })
    }
}

/// The messages caused by one request, in arrival order.
#[derive(Debug)]
pub(super) struct Pending {
    router: Router,
    msg_id: String,
    messages: mpsc::UnboundedReceiver<Message>,
}

impl Pending {
    pub(super) async fn recv(&mut self) -> Option<Message> {
        self.messages.recv().await
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.router.lock().remove(&self.msg_id);
    }
}

#[derive(Deserialize)]
struct HeaderIds {
    msg_id: String,
    msg_type: String,
}

/// The next message on `connection` and its parent's `msg_id`. Fails only when the socket
/// does; a message that does not decode (a bad signature, broken JSON) is logged and skipped.
pub(super) async fn read<S: SocketRecv>(
    connection: &mut Connection<S>,
    channel: Channel,
) -> jupyter_zmq_client::Result<(Option<String>, Message)> {
    loop {
        let frames = connection.socket.recv().await?;
        match decode(frames, connection, channel) {
            Ok(decoded) => return Ok(decoded),
            Err(error) => tracing::warn!(?channel, %error, "dropped an undecodable kernel message"),
        }
    }
}

/// Checks the signature and reads the header, the parent's `msg_id` and the content.
fn decode<S>(
    frames: zeromq::ZmqMessage,
    connection: &Connection<S>,
    channel: Channel,
) -> jupyter_zmq_client::Result<(Option<String>, Message)> {
    let raw = RawMessage::from_multipart(frames, &connection.mac)?;
    let header: HeaderIds = serde_json::from_slice(&raw.jparts[0])?;
    // An empty parent (`{}`) is no parent.
    let parent = serde_json::from_slice::<HeaderIds>(&raw.jparts[1])
        .ok()
        .map(|p| p.msg_id);
    let content = serde_json::from_slice(&raw.jparts[3])?;
    Ok((
        parent,
        Message {
            channel,
            msg_type: header.msg_type,
            content,
        },
    ))
}

/// What an iopub message means to the execution that caused it.
#[derive(Debug, PartialEq)]
pub(super) enum IoPub {
    /// `execute_input`: the kernel took the code.
    Input { execution_count: Option<i64> },
    /// An event for the caller.
    Event(ExecEvent),
    /// `status: idle`: every output of the request has been sent.
    Idle,
    /// Anything else (busy, comms, ...).
    Other,
}

/// `display_data`, `execute_result` and `update_display_data`, mime bundles kept as sent.
#[derive(Deserialize)]
struct Rich {
    data: JsonMap,
    #[serde(default)]
    metadata: JsonMap,
    #[serde(default)]
    transient: Option<Transient>,
    #[serde(default)]
    execution_count: Option<i64>,
}

impl Rich {
    fn display_id(&self) -> Option<String> {
        self.transient.as_ref()?.display_id.clone()
    }
}

impl Message {
    /// Maps an iopub message to what it means for the execution it belongs to.
    pub(super) fn iopub(self) -> serde_json::Result<IoPub> {
        let content = self.content;
        let output = |output| Ok(IoPub::Event(ExecEvent::Output(output)));
        match self.msg_type.as_str() {
            "status" => {
                let status: Status = serde_json::from_value(content)?;
                Ok(match status.execution_state {
                    jupyter_protocol::ExecutionState::Idle => IoPub::Idle,
                    _ => IoPub::Other,
                })
            }
            "execute_input" => {
                let input: ExecuteInput = serde_json::from_value(content)?;
                Ok(IoPub::Input {
                    execution_count: i64::try_from(input.execution_count.value()).ok(),
                })
            }
            "stream" => {
                let stream: StreamContent = serde_json::from_value(content)?;
                let name = match stream.name {
                    jupyter_protocol::Stdio::Stdout => StreamName::Stdout,
                    jupyter_protocol::Stdio::Stderr => StreamName::Stderr,
                };
                output(Output::Stream {
                    name,
                    text: stream.text,
                })
            }
            "display_data" => {
                let rich: Rich = serde_json::from_value(content)?;
                let display_id = rich.display_id();
                output(Output::DisplayData {
                    data: rich.data,
                    metadata: rich.metadata,
                    display_id,
                })
            }
            "execute_result" => {
                let rich: Rich = serde_json::from_value(content)?;
                output(Output::ExecuteResult {
                    execution_count: rich.execution_count,
                    data: rich.data,
                    metadata: rich.metadata,
                })
            }
            "error" => {
                let error: ErrorOutput = serde_json::from_value(content)?;
                output(Output::Error {
                    ename: error.ename,
                    evalue: error.evalue,
                    traceback: error.traceback,
                })
            }
            "update_display_data" => {
                let rich: Rich = serde_json::from_value(content)?;
                Ok(match rich.display_id() {
                    Some(display_id) => IoPub::Event(ExecEvent::UpdateDisplay {
                        display_id,
                        data: rich.data,
                        metadata: rich.metadata,
                    }),
                    None => IoPub::Other,
                })
            }
            "clear_output" => {
                let clear: ClearOutput = serde_json::from_value(content)?;
                Ok(IoPub::Event(ExecEvent::ClearOutput { wait: clear.wait }))
            }
            _ => Ok(IoPub::Other),
        }
    }

    /// The `execute_reply`'s status and count.
    pub(super) fn execute_reply(&self) -> ExecuteReply {
        let status = match self.content.get("status").and_then(Value::as_str) {
            Some("ok") => ReplyStatus::Ok,
            Some("aborted") => ReplyStatus::Aborted,
            _ => ReplyStatus::Error,
        };
        ExecuteReply {
            status,
            execution_count: self.content.get("execution_count").and_then(Value::as_i64),
        }
    }

    /// The `kernel_info_reply`'s description of the kernel.
    pub(super) fn kernel_info(&self) -> KernelInfo {
        let text =
            |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_owned();
        let language_info = self
            .content
            .get("language_info")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        KernelInfo {
            language: text(language_info.get("name")),
            language_version: text(language_info.get("version")),
            implementation: text(self.content.get("implementation")),
            implementation_version: text(self.content.get("implementation_version")),
            banner: text(self.content.get("banner")),
            protocol_version: text(self.content.get("protocol_version")),
            language_info,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn iopub(msg_type: &str, content: Value) -> IoPub {
        Message {
            channel: Channel::IoPub,
            msg_type: msg_type.into(),
            content,
        }
        .iopub()
        .unwrap()
    }

    #[test]
    fn mime_bundles_are_kept_as_the_kernel_sent_them() {
        // A table schema with fields jupyter-protocol's typed struct does not know.
        let table = json!({"schema": {"fields": [{"name": "a", "type": "integer", "extDtype": "Int64"}],
                                      "pandas_version": "1.4.0"}, "data": [{"a": 1}]});
        let event = iopub(
            "display_data",
            json!({"data": {"application/vnd.dataresource+json": table, "text/plain": "t"},
                   "metadata": {"isolated": true}, "transient": {"display_id": "x"}}),
        );
        let IoPub::Event(ExecEvent::Output(Output::DisplayData {
            data,
            metadata,
            display_id,
        })) = event
        else {
            panic!("{event:?}")
        };
        assert_eq!(data["application/vnd.dataresource+json"], table);
        assert_eq!(metadata["isolated"], true);
        assert_eq!(display_id.as_deref(), Some("x"));
    }

    #[test]
    fn replies_with_unknown_parts_still_give_status_and_count() {
        let reply = Message {
            channel: Channel::Shell,
            msg_type: "execute_reply".into(),
            content: json!({"status": "ok", "execution_count": 3,
                            "payload": [{"source": "something_new"}]}),
        };
        assert_eq!(
            reply.execute_reply(),
            ExecuteReply {
                status: ReplyStatus::Ok,
                execution_count: Some(3)
            }
        );
        assert_eq!(
            iopub(
                "update_display_data",
                json!({"data": {}, "metadata": {}, "transient": {}})
            ),
            IoPub::Other,
            "an update without a display id has nothing to update"
        );
    }
}
