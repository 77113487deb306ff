//! The inloop server runtime: a peer of a document that holds its runtime lease and runs the
//! document's `server` executions in Jupyter kernels, with no browser needed.
//!
//! # Features
//!
//! - [`queue`]: which entry runs next (the oldest queued `server` entry, one at a time), and
//!   ending entries a vanished runtime left `running`.
//!
//! The agent (relay connection through `inloop-client`, lease, kernels through `inloop-kernel`)
//! is being built on top of these; see issue 4.

pub mod queue;
