//! Typed values read from and written to the document.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::output as ok;

/// A JSON object, as nbformat metadata and mime bundles are.
pub type JsonMap = serde_json::Map<String, Value>;

/// A closed set of string values stored in the document, with their spelling in one place.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The spelling stored in the document.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        concat!("{:?} is not one of ", $("`", $text, "` "),+),
                        other
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The kind of a cell.
    CellType { Code = "code", Markdown = "markdown", Raw = "raw" }
);

string_enum!(
    /// Whether a code cell is running right now (jupyter_ydoc's `execution_state`).
    ExecutionState { Idle = "idle", Running = "running" }
);

string_enum!(
    /// The stream a `stream` output came from.
    StreamName { Stdout = "stdout", Stderr = "stderr" }
);

string_enum!(
    /// Where an execution entry stands. `Queued` and `Running` are live; the rest are final.
    ExecutionStatus {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Error = "error",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
);

impl ExecutionStatus {
    /// Whether an entry in this state is finished and will not change again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// The moves an entry may make: queued to running, cancelled, or error (its runtime has no
    /// kernel to run it); running to any final state. Who may make each is
    /// [`crate::execution`]'s.
    pub fn can_become(self, next: Self) -> bool {
        match self {
            Self::Queued => matches!(next, Self::Running | Self::Cancelled | Self::Error),
            Self::Running => next.is_final(),
            _ => false,
        }
    }
}

string_enum!(
    /// What kind of peer a runtime is.
    RuntimeKind { Browser = "browser", Server = "server" }
);

string_enum!(
    /// A runtime's state, as it reports it.
    RuntimeStatus {
        Starting = "starting",
        Idle = "idle",
        Busy = "busy",
        Restarting = "restarting",
        Gone = "gone",
    }
);

/// A cell as read from the document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub id: String,
    pub cell_type: CellType,
    pub source: String,
    pub metadata: JsonMap,
    /// Code cells only.
    pub execution_count: Option<i64>,
    /// Code cells only.
    pub execution_state: Option<ExecutionState>,
    /// Code cells only; empty for the others.
    pub outputs: Vec<Output>,
    /// Markdown and raw cells only, and only when it has entries.
    pub attachments: Option<JsonMap>,
}

/// A cell output, in nbformat's shape. `update_display_data` is not an output of its own: it is
/// applied to the display it names with [`crate::Notebook::update_display`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "output_type", rename_all = "snake_case")]
pub enum Output {
    Stream {
        name: StreamName,
        text: String,
    },
    DisplayData {
        data: JsonMap,
        #[serde(default)]
        metadata: JsonMap,
        /// Kept in the document (as nbformat's `transient.display_id`) so later updates find
        /// this display; not written to `.ipynb` files.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_id: Option<String>,
    },
    ExecuteResult {
        execution_count: Option<i64>,
        data: JsonMap,
        #[serde(default)]
        metadata: JsonMap,
    },
    Error {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
}

/// Where an execution is to run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ExecutionTarget {
    /// The browser peer with this client id runs it in its own Pyodide kernel.
    Browser(String),
    /// The server runtime that holds the document's runtime lease runs it.
    Server,
}

impl ExecutionTarget {
    const BROWSER_PREFIX: &'static str = "browser:";
    const SERVER: &'static str = "server";
}

impl fmt::Display for ExecutionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Browser(client) => write!(f, "{}{client}", Self::BROWSER_PREFIX),
            Self::Server => f.write_str(Self::SERVER),
        }
    }
}

impl FromStr for ExecutionTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == Self::SERVER {
            Ok(Self::Server)
        } else if let Some(client) = s.strip_prefix(Self::BROWSER_PREFIX) {
            Ok(Self::Browser(client.to_owned()))
        } else {
            Err(format!("{s:?} is not `server` or `browser:<client>`"))
        }
    }
}

impl From<ExecutionTarget> for String {
    fn from(target: ExecutionTarget) -> String {
        target.to_string()
    }
}

impl TryFrom<String> for ExecutionTarget {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// An entry of the execution queue. Times are seconds since the Unix epoch (fractional, as Python's
/// `time.time()`), as the caller supplied them: the document model does no I/O, not even the clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub cell_id: String,
    /// The cell's source when the run was requested: later edits do not change what runs.
    pub code: String,
    pub target: ExecutionTarget,
    pub requested_by: String,
    pub requested_at: f64,
    pub status: ExecutionStatus,
    /// The session id of the runtime that ran it.
    pub runtime: Option<String>,
    pub lease_epoch: Option<u64>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub execution_count: Option<i64>,
    /// Why it ended the way it did, for entries that did not end `done`.
    pub message: Option<String>,
    /// When a peer asked the runtime running it to interrupt it.
    pub interrupt_requested_at: Option<f64>,
}

/// A runtime's entry in `runtimes`: who can execute, and how it is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    pub session_id: String,
    pub kind: RuntimeKind,
    pub name: String,
    /// Kernel names it can run, e.g. `python3`.
    pub kernels: Vec<String>,
    /// The GPU it saw, e.g. `NVIDIA A100 80GB`.
    pub gpu: Option<String>,
    pub container_image: Option<String>,
    pub status: RuntimeStatus,
    pub heartbeat_at: f64,
    pub lease_epoch: Option<u64>,
    /// When a peer last asked for the kernel to restart; handled once `restarted_at` is later.
    pub restart_requested_at: Option<f64>,
    pub restarted_at: Option<f64>,
}

impl Execution {
    /// The order entries run and are listed in: by request time, ties broken by id.
    pub fn request_order(&self, other: &Self) -> std::cmp::Ordering {
        self.requested_at
            .total_cmp(&other.requested_at)
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl Runtime {
    /// Whether a peer asked this runtime to restart its kernel and it has not done so since.
    pub fn restart_pending(&self) -> bool {
        self.restart_requested_at > self.restarted_at
    }
}

/// A text edit in the Quill/Yjs delta form. Lengths and offsets count UTF-16 code units, as
/// Yjs, CodeMirror and the browser do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextDelta {
    Retain(u32),
    Insert(String),
    Delete(u32),
}

impl Output {
    /// The output as nbformat JSON (a display's id under `transient`, as Jupyter sends it).
    pub fn to_json(&self) -> JsonMap {
        let value = match self {
            Output::DisplayData {
                data,
                metadata,
                display_id,
            } => {
                let mut output = serde_json::json!({
                    "output_type": "display_data",
                    "data": data,
                    "metadata": metadata,
                });
                if let Some(id) = display_id {
                    output[ok::TRANSIENT] = serde_json::json!({ ok::DISPLAY_ID: id });
                }
                output
            }
            other => serde_json::to_value(other).unwrap_or_default(),
        };
        match value {
            Value::Object(map) => map,
            _ => JsonMap::new(),
        }
    }

    /// Reads an nbformat output; `None` for output types this model does not know.
    pub fn from_json(output: &JsonMap) -> Option<Output> {
        let mut parsed: Output = serde_json::from_value(Value::Object(output.clone())).ok()?;
        if let Output::DisplayData { display_id, .. } = &mut parsed {
            *display_id = output
                .get(ok::TRANSIENT)
                .and_then(|t| t.get(ok::DISPLAY_ID))
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Some(parsed)
    }
}
