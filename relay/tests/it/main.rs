//! Integration tests of the relay: the real server on 127.0.0.1:0 with SQLite in a temporary
//! folder, real WebSocket clients (ours, and a stock Yjs one under Node). The harness is
//! `inloop-testing`'s.

mod auth;
mod bad_input;
mod hardening;
mod http;
mod lease;
mod presence;
mod storage;
mod sync;
mod tokens;

pub(crate) use inloop_client::{Client, ClientOptions, Status};
pub(crate) use inloop_testing::{
    TestRelay, connect, connect_with, ended, eventually, http_exchange, http_request, source,
    until, until_some,
};
