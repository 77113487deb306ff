use thiserror::Error;

/// Everything that can go wrong reading or changing a notebook document.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An `.ipynb` file (or a cell handed to the API) is not a valid notebook. `path` is a JSON
    /// path such as `$.cells[3].outputs[0].name`.
    #[error("{path}: {problem}")]
    InvalidNotebook { path: String, problem: String },

    /// The document is inside a transaction (an observer callback tried to subscribe).
    #[error("the document is busy with a transaction; subscribe outside observer callbacks")]
    Busy,

    /// A Yrs update could not be decoded or applied.
    #[error("not a valid Yrs update: {0}")]
    Update(String),

    #[error("no cell with id {0:?}")]
    CellNotFound(String),

    #[error("cell index {index} is out of range: the notebook has {len} cells")]
    CellIndexOutOfRange { index: u32, len: u32 },

    #[error("cell {0:?} is not a code cell")]
    NotACodeCell(String),

    #[error(
        "edit of cell {cell_id:?} reaches offset {offset}, past the end of its source ({len} UTF-16 units)"
    )]
    EditOutOfRange {
        cell_id: String,
        offset: u32,
        len: u32,
    },

    /// Offsets count UTF-16 code units; one between the two halves of a character (an emoji)
    /// would break it.
    #[error("edit of cell {cell_id:?} at offset {offset} splits a character in two")]
    EditSplitsCharacter { cell_id: String, offset: u32 },

    #[error("no execution with id {0:?}")]
    ExecutionNotFound(String),

    /// The execution state machine refused a step; the entry is as it was.
    #[error("execution {id:?}: {refusal}")]
    Refused {
        id: String,
        refusal: crate::execution::Refusal,
    },

    #[error("no runtime with session id {0:?}")]
    RuntimeNotFound(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
