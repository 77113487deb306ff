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

    /// An update that would not integrate completely, here and now (see
    /// [`inloop_doc::ZoneIndex`]): it is never kept to integrate later under someone else's
    /// update.
    #[error("update refused: {0}")]
    Unintegrable(#[from] inloop_doc::Unintegrable),

    /// An update carrying items under a client id that another token's peer writes with.
    #[error("forbidden: client id {client} belongs to another peer; use your own")]
    ForeignClient { client: u64 },

    /// One presence state larger than the room takes, or more of them than one peer may have.
    #[error("presence too large: {0}")]
    PresenceTooLarge(String),

    /// Presence sent faster than the room relays it.
    #[error("too much presence: the limit is {bytes_per_second} bytes a second")]
    PresenceFlood { bytes_per_second: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
