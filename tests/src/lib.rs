//! Workspace integration tests for meshota.
//!
//! The tests live in `tests/tests/`; this library holds only the helpers they
//! share (locating the built `meshota` binary, temporary work directories).
