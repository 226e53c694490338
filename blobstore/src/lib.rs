//! Content-addressed chunk store (being built).
