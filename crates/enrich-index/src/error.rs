//! [`IndexError`]: every way an indexing run can fail as a whole.
//!
//! A single file that cannot be read is not an error of the run: it is listed in
//! [`IndexReport::problems`](crate::IndexReport) and the run goes on.

use std::path::PathBuf;

use enrich_db::DbError;

/// An indexing run that could not finish. Batches written before the failure stay written;
/// running the indexer again picks up from there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The repository root cannot be resolved.
    #[error("cannot index {path}: {source}; pass the repository's root directory")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The repository root is not a directory.
    #[error("cannot index {path}: it is not a directory; pass the repository's root directory")]
    NotADirectory {
        /// The root as given.
        path: PathBuf,
    },

    /// An [`IndexOptions`](crate::IndexOptions) value is out of range.
    #[error("invalid index option `{option}`: {reason}")]
    InvalidOption {
        /// The option's field name.
        option: &'static str,
        /// What a valid value is.
        reason: &'static str,
    },

    /// A glob of [`IndexOptions::exclude`](crate::IndexOptions) or `include` does not compile.
    #[error("invalid glob {glob:?} in the index option `{option}`: {reason}")]
    InvalidGlob {
        /// The option's name.
        option: &'static str,
        /// The glob.
        glob: String,
        /// Why it does not compile.
        reason: String,
    },

    /// Reading or writing the index database failed.
    #[error(transparent)]
    Db(#[from] DbError),

    /// A parser thread panicked (a bug: the panic message was printed above).
    #[error(
        "a parser thread panicked while indexing {root}; batches written before it are kept; \
         please report the panic message printed above"
    )]
    WorkerPanicked {
        /// The repository root.
        root: PathBuf,
    },
}
