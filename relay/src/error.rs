/// What can go wrong inside the relay. Client-facing answers never carry these texts: they are
/// logged, and the client gets a generic message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("document {0:?} does not exist")]
    NotFound(String),
    #[error("the storage thread has stopped")]
    StorageStopped,
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Doc(#[from] inloop_doc::Error),
    #[error(transparent)]
    Sync(#[from] inloop_sync::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
