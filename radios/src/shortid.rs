//! Short node ids: two bytes on the air instead of a 1,952-byte ML-DSA key.
//!
//! # Derivation
//! `ShortId::derive(key, salt)` is the first two bytes (little-endian) of
//! BLAKE3 in derive-key mode, context `"meshota radios short id v1"`, over
//! `salt || device public key`. `0xFFFF` is [`ShortId::BROADCAST`]; a key
//! that derives it gets `0xFFFE` instead.
//!
//! # Collisions
//! Two bytes collide: among 50 neighbours the chance that some pair shares
//! an id is about 2 %. A short id is therefore an **addressing hint, never
//! an identity**: frames are authenticated with the mesh key (any member
//! may send under any short id), and everything that matters is checked
//! above the link (manifests by signature, chunks and coded objects by
//! hash). A collision can at worst mix two senders' fragments of a message;
//! the message's own check then fails and it is fetched again. The mesh
//! layer, which learns neighbours' full keys from signed announcements,
//! resolves a collision it sees between two different keys within two hops
//! by having the node whose key sorts higher re-derive with the next
//! `salt` and announce again (that protocol belongs to the mesh core and is
//! not built yet).

/// A two-byte node id on the air. Invariant: [`ShortId::derive`] never
/// returns [`ShortId::BROADCAST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortId(pub u16);

impl ShortId {
    /// Every node: the destination of broadcast frames.
    pub const BROADCAST: Self = Self(0xFFFF);

    /// The short id of the device whose public key is `device_key`, with a
    /// collision-resolution `salt` (0 unless the mesh layer bumped it).
    #[must_use]
    pub fn derive(device_key: &[u8], salt: u8) -> Self {
        let mut h = blake3::Hasher::new_derive_key("meshota radios short id v1");
        h.update(&[salt]);
        h.update(device_key);
        let bytes = h.finalize();
        let b = bytes.as_bytes();
        let id = u16::from_le_bytes([b[0], b[1]]);
        if id == Self::BROADCAST.0 {
            Self(0xFFFE)
        } else {
            Self(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_stable_and_change_with_key_and_salt() {
        let a = ShortId::derive(b"device key a", 0);
        assert_eq!(a, ShortId::derive(b"device key a", 0));
        assert_ne!(a, ShortId::derive(b"device key a", 1));
        // Over many keys, none is the broadcast id and they spread out.
        let mut seen = std::collections::BTreeSet::new();
        for i in 0u32..2_000 {
            let id = ShortId::derive(&i.to_le_bytes(), 0);
            assert_ne!(id, ShortId::BROADCAST);
            seen.insert(id);
        }
        // 2 000 draws from 65 535 ids: about 30 collide; far fewer distinct
        // ids would mean the derivation ignores its input.
        assert!(seen.len() > 1_900, "{}", seen.len());
    }
}
