use crate::token::{Action, Role};

/// Why a frame, a token or a request was refused. The messages are safe to show the peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that are not a message of the protocol.
    #[error("malformed message: {0}")]
    Malformed(String),

    /// A read-only peer sent a change.
    #[error("read-only: this token may not change the document")]
    ReadOnly,

    #[error("the document would grow past its limit of {limit} bytes")]
    DocumentTooLarge { limit: usize },

    /// A token that does not check out.
    #[error("invalid token: {0}")]
    Token(String),

    #[error("forbidden: {role} tokens may not {action}")]
    Forbidden { role: Role, action: Action },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
