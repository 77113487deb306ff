//! The inloop notebook document: a [Yrs](yrs) CRDT in the schema JupyterLab's real-time
//! collaboration uses (jupyter_ydoc 4.x), plus inloop's execution queue and runtime registry,
//! behind a typed API that the relay, the runtimes, the browser engine and the CLI all share.
//!
//! # Features
//!
//! - **One owner of the schema.** Root types (`state`, `meta`, `cells`, `executions`,
//!   `runtimes`) and map keys are spelled only inside this crate. pycrdt/jupyter_ydoc and Yjs
//!   clients read and edit the same documents.
//! - **Typed edits.** Insert, move, delete and retype cells; edit source by deltas (UTF-16
//!   offsets, as Yjs and CodeMirror count); set metadata; append outputs (consecutive stream text
//!   appends to one `Y.Text`); update displays in place by `display_id`; set execution counts.
//! - **Execution queue.** Request a run with a snapshot of the code; the [`execution`] state
//!   machine (one owner, sans-IO) moves it through `queued`, `running` and a final state: who may
//!   take each step, the lease-epoch rule, and what an interrupt, an abort or a dead kernel makes
//!   of an entry.
//! - **Typed observers.** [`Notebook::observe`] reports cell inserts, moves and deletes, source
//!   deltas, output, execution and runtime changes, local or remote.
//! - **`.ipynb` in and out.** nbformat 4.0 to 4.5 in, 4.5 out, laid out byte for byte as
//!   `nbformat.write` does; bad input gets an error naming its JSON path, never a panic.
//! - **No I/O, no clock, no async**: builds for `wasm32-unknown-unknown` as well as native.
//!
//! # Quick start
//!
//! ```
//! use inloop_doc::execution::{Actor, Outcome, Reply, Step};
//! use inloop_doc::{CellType, ExecutionTarget, Notebook, Output, StreamName};
//!
//! # fn main() -> inloop_doc::Result<()> {
//! let notebook = Notebook::from_ipynb(r##"{
//!     "nbformat": 4, "nbformat_minor": 5, "metadata": {},
//!     "cells": [{"id": "intro", "cell_type": "markdown", "metadata": {}, "source": ["# Hi\n"]}]
//! }"##)?;
//! let cell = notebook.push_cell(CellType::Code, "print('hello')")?;
//!
//! // Someone asks the server to run it; a runtime picks the entry up and writes back.
//! let run = notebook.request_execution(&cell, &ExecutionTarget::Server, "ada", 0.0)?;
//! notebook.start_execution(&run, "runtime-1", Some(1), 1.0)?;
//! notebook.append_output(&cell, &Output::Stream { name: StreamName::Stdout, text: "hello\n".into() })?;
//! notebook.set_execution_count(&cell, Some(1))?;
//! let replied = Outcome::Replied { reply: Reply::Ok, execution_count: Some(1) };
//! let done = notebook.advance_execution(
//!     &run, &Actor::runtime("runtime-1", Some(1)), &Step::Finish(replied), 2.0)?;
//! assert_eq!(done.status, inloop_doc::ExecutionStatus::Done);
//!
//! // A second replica catches up from one update and sees the same notebook.
//! let replica = Notebook::from_update_v1(&notebook.encode_update_v1())?;
//! assert_eq!(replica.cells(), notebook.cells());
//! assert!(replica.to_ipynb().contains("\"hello\\n\""));
//! # Ok(())
//! # }
//! ```

mod error;
pub mod execution;
mod ids;
mod ipynb;
mod json;
mod model;
mod node;
mod notebook;
mod observe;
mod path;
pub mod placement;
mod pyjson;
mod schema;
pub mod structs;
mod undo;
mod zones;

pub use error::{Error, Result};
pub use model::{
    Cell, CellType, Execution, ExecutionState, ExecutionStatus, ExecutionTarget, JsonMap, Output,
    Runtime, RuntimeKind, RuntimeStatus, StreamName, TextDelta,
};
pub use notebook::{FORGET_GONE_AFTER_S, FORGET_SILENT_AFTER_S, Notebook, last_error};
pub use observe::{CellField, Change, ChangeBatch, ChangeOrigin, Subscription, UpdateSubscription};
pub use zones::{Inspection, Unintegrable, Zone, ZoneIndex, Zones};
