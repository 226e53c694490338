//! Provisioning images: one squashfs file per device holding its identity
//! files, its certificate chain and its configuration, for devices whose
//! root filesystem is read-only.
//!
//! - [`contents`]: what the image holds (the file tree and which fields are
//!   immutable), built in one canonical order from the device's registry
//!   entry and the station's inputs.
//! - [`squashfs`]: writes that tree as a byte-for-byte deterministic
//!   squashfs (zstd, fixed times, owners and order) and reads one back
//!   within limits.
//! - [`seal`]: confidential files encrypted to the device's ML-KEM-768 key.
//! - [`signed`]: the signed file (squashfs, then a signed trailer) and its
//!   verification against the trust root's provisioning keys.
//! - [`station`]: gathers a device's inputs from the CA directory and
//!   its registry.
//!
//! The same inputs always give the same bytes: the file list is sorted,
//! every inode has the image's `issued` time, owner root:root, and the
//! compressor and block size are fixed.

pub mod contents;
pub mod seal;
pub mod signed;
pub mod squashfs;
pub mod station;

/// Largest provisioning image accepted or written, in bytes.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest single file in an image, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most files (not counting directories) in an image.
pub const MAX_FILES: usize = 512;
