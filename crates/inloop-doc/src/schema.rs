//! The names of the document's root types and map keys. This module is the only place in inloop
//! that spells them: every other crate goes through [`crate::Notebook`].
//!
//! The cells part follows jupyter_ydoc 4.x, the schema of JupyterLab's real-time collaboration, so
//! pycrdt and Yjs-based Jupyter clients read and edit our documents. `executions` and `runtimes`
//! are ours and ignored by Jupyter clients.

/// Root `Y.Map`: `dirty`, `path`, `hash`, `document_id`.
pub(crate) const STATE: &str = "state";
/// Root `Y.Map`: `nbformat`, `nbformat_minor`, `metadata` (a `Y.Map`).
pub(crate) const META: &str = "meta";
/// Root `Y.Array<Y.Map>`: the cells, in order.
pub(crate) const CELLS: &str = "cells";
/// Root `Y.Map<exec_id, Y.Map>`: the execution queue and its history.
pub(crate) const EXECUTIONS: &str = "executions";
/// Root `Y.Map<session_id, Y.Map>`: who can execute.
pub(crate) const RUNTIMES: &str = "runtimes";

pub(crate) mod meta {
    pub(crate) const NBFORMAT: &str = "nbformat";
    pub(crate) const NBFORMAT_MINOR: &str = "nbformat_minor";
    pub(crate) const METADATA: &str = "metadata";
}

pub(crate) mod cell {
    pub(crate) const ID: &str = "id";
    pub(crate) const CELL_TYPE: &str = "cell_type";
    pub(crate) const SOURCE: &str = "source";
    pub(crate) const METADATA: &str = "metadata";
    pub(crate) const EXECUTION_COUNT: &str = "execution_count";
    pub(crate) const EXECUTION_STATE: &str = "execution_state";
    pub(crate) const OUTPUTS: &str = "outputs";
    pub(crate) const ATTACHMENTS: &str = "attachments";
}

pub(crate) mod output {
    pub(crate) const OUTPUT_TYPE: &str = "output_type";
    pub(crate) const NAME: &str = "name";
    pub(crate) const TEXT: &str = "text";
    pub(crate) const DATA: &str = "data";
    pub(crate) const METADATA: &str = "metadata";
    pub(crate) const EXECUTION_COUNT: &str = "execution_count";
    pub(crate) const ENAME: &str = "ename";
    pub(crate) const EVALUE: &str = "evalue";
    pub(crate) const TRACEBACK: &str = "traceback";
    /// Kernel-message data that is not saved to files (nbformat strips it on write); we keep
    /// `transient.display_id` in the document so `update_display_data` can find its display.
    pub(crate) const TRANSIENT: &str = "transient";
    pub(crate) const DISPLAY_ID: &str = "display_id";
}

pub(crate) mod execution {
    pub(crate) const CELL_ID: &str = "cell_id";
    pub(crate) const CODE: &str = "code";
    pub(crate) const TARGET: &str = "target";
    pub(crate) const REQUESTED_BY: &str = "requested_by";
    pub(crate) const REQUESTED_AT: &str = "requested_at";
    pub(crate) const STATUS: &str = "status";
    pub(crate) const RUNTIME: &str = "runtime";
    pub(crate) const LEASE_EPOCH: &str = "lease_epoch";
    pub(crate) const STARTED_AT: &str = "started_at";
    pub(crate) const FINISHED_AT: &str = "finished_at";
    pub(crate) const EXECUTION_COUNT: &str = "execution_count";
    pub(crate) const MESSAGE: &str = "message";
    pub(crate) const INTERRUPT_REQUESTED_AT: &str = "interrupt_requested_at";
}

pub(crate) mod runtime {
    pub(crate) const KIND: &str = "kind";
    pub(crate) const NAME: &str = "name";
    pub(crate) const KERNELS: &str = "kernels";
    pub(crate) const GPU: &str = "gpu";
    pub(crate) const CONTAINER_IMAGE: &str = "container_image";
    pub(crate) const STATUS: &str = "status";
    pub(crate) const HEARTBEAT_AT: &str = "heartbeat_at";
    pub(crate) const LEASE_EPOCH: &str = "lease_epoch";
    pub(crate) const RESTART_REQUESTED_AT: &str = "restart_requested_at";
    pub(crate) const RESTARTED_AT: &str = "restarted_at";
    /// The kernel's variables as JSON text (a list of {name, type, repr, shape?, len?}), and
    /// when they were read: one string replaced whole, so each reading is one small update.
    pub(crate) const VARIABLES: &str = "variables";
    pub(crate) const VARIABLES_AT: &str = "variables_at";
}
