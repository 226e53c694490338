//! Paths of the origin layout, relative to the origin's root (a directory
//! on disk for the publisher, a base URL for the gateway).
//!
//! ```text
//! catalog.mota                      signed catalog (MOTA kind 5); the only
//!                                   file that changes, written last
//! manifests/<release id>.mota       signed release manifests
//! indexes/<index id>                chunk indexes (MOTA kind 32)
//! patches/<blob id>                 patch indexes (kind 33) and pieces (kind 34)
//! chunks/<first 2 hex>/<chunk id>   chunk content, uncompressed
//! ```
//!
//! Ids are 64 lowercase hex digits. Every file but the catalog and the
//! manifests holds exactly the bytes whose BLAKE3 is its name (check one
//! with `b3sum`); a manifest is named by its document id (BLAKE3 of its
//! signed body). Files never change once written, so they may be cached
//! forever; only `catalog.mota` needs revalidation.

use meshota_manifest::Hash;

/// The catalog's path.
pub const CATALOG: &str = "catalog.mota";

/// Path of the release manifest with document id `release`.
#[must_use]
pub fn manifest(release: &Hash) -> String {
    format!("manifests/{}.mota", release.to_hex())
}

/// Path of the chunk index with id `id`.
#[must_use]
pub fn index(id: &Hash) -> String {
    format!("indexes/{}", id.to_hex())
}

/// Path of the patch blob (index or piece) with id `id`.
#[must_use]
pub fn patch(id: &Hash) -> String {
    format!("patches/{}", id.to_hex())
}

/// Path of the chunk with id `id`.
#[must_use]
pub fn chunk(id: &Hash) -> String {
    let hex = id.to_hex();
    format!("chunks/{}/{hex}", &hex[..2])
}
