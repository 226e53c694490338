//! The static HTTP origin: its layout, the publisher, the HTTP fetcher and
//! the gateway's sync.

pub mod http;
pub mod layout;
mod publish;
mod sync;

pub use publish::{PublishReport, publish};
pub use sync::{SyncOptions, SyncReport, SyncedRelease, sync};
