//! Hard limits on every decoded format, checked before allocating.
//!
//! A stranger can hand a node any bytes (over the mesh, a radio, a USB
//! stick). Each limit below bounds the memory and work such bytes can cost.
//! Encoded sizes are checked before decoding starts; counts and string
//! lengths are checked right after, before the value is used.

/// Largest encoded trust root accepted (64 keys of 1,952 bytes plus
/// 16 signatures of 3,309 bytes fit with room to spare).
pub const MAX_TRUST_ROOT_BYTES: usize = 256 * 1024;
/// Largest encoded release manifest accepted.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// Largest encoded rollout command accepted.
pub const MAX_ROLLOUT_COMMAND_BYTES: usize = 64 * 1024;
/// Largest encoded node report accepted.
pub const MAX_NODE_REPORT_BYTES: usize = 16 * 1024;
/// Largest encoded origin catalog accepted (1,024 entries of about 220
/// bytes plus 16 signatures).
pub const MAX_CATALOG_BYTES: usize = 512 * 1024;
/// Most releases one origin catalog may list.
pub const MAX_CATALOG_RELEASES: usize = 1024;
/// Largest public key file accepted.
pub const MAX_PUBLIC_KEY_FILE_BYTES: usize = 4 * 1024;
/// Largest secret key file accepted.
pub const MAX_SECRET_KEY_FILE_BYTES: usize = 1024;

/// Most signatures one document may carry.
pub const MAX_SIGNATURES: usize = 16;
/// Most root keys, and most release keys, in one trust root.
pub const MAX_KEYS: usize = 64;
/// Most revoked key ids a trust root may list.
pub const MAX_REVOKED_KEYS: usize = 1024;
/// Most hardware classes or channels in one key scope.
pub const MAX_SCOPE_ENTRIES: usize = 64;
/// Most components in one release.
pub const MAX_COMPONENTS: usize = 16;
/// Most patches listed by one release.
pub const MAX_PATCHES: usize = 256;
/// Most rollout stages in one policy.
pub const MAX_ROLLOUT_STAGES: usize = 16;
/// Longest name, class, channel, version or reason string, in bytes.
pub const MAX_STRING_BYTES: usize = 128;
