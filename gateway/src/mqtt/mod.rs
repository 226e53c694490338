//! MQTT: node reports and a fleet summary out, release notifications in.
//!
//! Topics ([`topics`]): `meshota/<fleet>/<node>/report` (one message per
//! node report, QoS 1), `meshota/<fleet>/summary` (QoS 1, retained: the
//! latest fleet summary), and `meshota/<fleet>/releases` (subscribed, QoS
//! 1: any message triggers an origin sync at once).
//!
//! Delivery is **at least once**: a message is written to the on-disk
//! [`Outbox`] (a redb commit, durable) before it is handed to the client,
//! and removed only when the broker's PUBACK for it arrives. While the
//! broker is unreachable messages accumulate on disk (bounded, oldest
//! dropped and counted past the limit); after a reconnect, or a restart of
//! the gateway, every message still in the outbox is sent again, in order.
//! A crash between a PUBACK and its removal sends that message twice:
//! consumers deduplicate reports by (`node`, `counter`).

mod link;
mod outbox;
pub mod payload;
pub mod topics;

pub use link::{Link, LinkStatus, MAX_IN_FLIGHT, MAX_PACKET_BYTES, MqttConfig};
pub use outbox::{Key, Message, Outbox};
