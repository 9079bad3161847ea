//! Errors from loading flag definitions.

use std::fmt;
use std::path::PathBuf;

/// A 1-based `line:column` position in a flag file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn at(location: &Option<Location>) -> String {
    location.map(|l| format!("{l}: ")).unwrap_or_default()
}

/// Why a flag set could not be loaded. Every variant says where, when it is known.
#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    /// The file is not well-formed JSON or YAML.
    #[error("{}syntax error: {message}", at(location))]
    Syntax {
        /// Where the parser stopped.
        location: Option<Location>,
        /// The parser's message.
        message: String,
    },
    /// The document is well-formed but does not follow the flagd schema (or its targeting
    /// does not compile).
    #[error("{}{pointer}: {message}", at(location))]
    Invalid {
        /// JSON pointer of the offending value, e.g. `/flags/new-payment-processor/state`.
        pointer: String,
        /// Where that value starts in the file.
        location: Option<Location>,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read (only [`crate::FlagSet::from_path`] does I/O).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error inside a named file: the same error, prefixed with the file's path.
    #[error("{}:{inner}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The error.
        inner: Box<FlagsError>,
    },
}

/// Why a rollout percentage could not be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RolloutError {
    /// No flag with that key.
    #[error("flag {0:?} not found")]
    NotFound(String),
    /// The percentage is above 100.
    #[error("percentage {0} is out of range 0..=100")]
    OutOfRange(u8),
    /// The flag does not have exactly two variants, or neither can be told to be "on".
    #[error("flag {key:?}: {message}")]
    Unsuitable {
        /// The flag.
        key: String,
        /// Why.
        message: String,
    },
}
