//! How a command fails: an exit code and a message for a human.
//!
//! Exit codes are part of the interface operators script against:
//! 0 success, 1 verification failed or input rejected, 2 usage error.

use std::fmt;
use std::path::Path;

/// Exit code: verification failed or input was rejected.
pub(crate) const EXIT_REJECTED: u8 = 1;
/// Exit code: the command line was wrong.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A failed command: what to print and which code to exit with.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Input rejected; the message names the file when there is one.
    pub(crate) fn rejected(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_REJECTED,
            message: message.to_string(),
        }
    }

    /// The command line asks for something impossible.
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.to_string(),
        }
    }

    /// A problem with `path`.
    pub(crate) fn file(path: &Path, err: impl fmt::Display) -> Self {
        Self::rejected(format!("{}: {err}", path.display()))
    }
}

impl From<meshota_manifest::fs::FileError> for Failure {
    fn from(e: meshota_manifest::fs::FileError) -> Self {
        Self::rejected(e)
    }
}

/// The result type of every command.
pub(crate) type CmdResult<T = ()> = Result<T, Failure>;

/// Adds the file name to an error.
pub(crate) trait AtPath<T> {
    /// Maps the error to a [`Failure`] naming `path`.
    fn at(self, path: &Path) -> CmdResult<T>;
}

impl<T, E: fmt::Display> AtPath<T> for Result<T, E> {
    fn at(self, path: &Path) -> CmdResult<T> {
        self.map_err(|e| Failure::file(path, e))
    }
}
