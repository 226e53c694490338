//! The meshota gateway.
//!
//! **Not built yet.** A gateway is a mesh node that also syncs releases from
//! an HTTP origin (static files), publishes fleet status to and takes
//! triggers from an MQTT broker, runs a USB station, and serves a web
//! console.
//!
//! Until it is built it exports nothing.
