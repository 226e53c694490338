//! USB sneakernet bundles.
//!
//! **Not built yet.** A bundle will be one streaming, content-addressed file
//! carrying a trust root, manifests, chunk indexes, patches and chunks;
//! import verifies everything before it commits atomically; want lists carry
//! what the field needs back to the operator; bundles may be encrypted to
//! recipients' ML-KEM-768 keys.
//!
//! Until it is built it exports nothing.
