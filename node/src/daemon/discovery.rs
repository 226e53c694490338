//! LAN discovery over mDNS/DNS-SD (RFC 6762, RFC 6763).
//!
//! A node with `[mesh.mdns]` in its config registers the service
//! `_meshota._udp.local.` with its QUIC port and a TXT record naming its
//! device key id and fleet, and browses for the same service. Each
//! resolved instance of the same fleet becomes a dial target.
//!
//! Discovery is a hint, never a credential: what an mDNS answer says is
//! unauthenticated, and a discovered address is admitted only by the same
//! QUIC handshake, ML-DSA channel binding and allow-list as a static peer.
//! A lying answer can at worst make the node dial an address that then
//! fails the handshake.
//!
//! To keep one connection per pair, only the node with the smaller device
//! key id (as its TXT record claims) dials; the other waits to be dialled.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use meshota_manifest::KeyId;
use tokio::sync::mpsc;

use crate::config::MdnsConfig;

/// The DNS-SD service type every meshota node registers and browses.
pub(crate) const SERVICE_TYPE: &str = "_meshota._udp.local.";
/// Version of the TXT record layout (`v`).
const TXT_VERSION: &str = "1";

/// A peer some mDNS answer announced, already filtered: another node, of
/// this node's fleet, with a larger key id than ours (so ours dials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// An instance resolved to these addresses (all usable ones).
    Up {
        /// The instance's DNS-SD full name, the key for `Down`.
        instance: String,
        /// The node id its TXT record claims.
        node: KeyId,
        /// Where to dial it.
        addrs: Vec<SocketAddr>,
    },
    /// An instance said goodbye or expired.
    Down {
        /// The instance's DNS-SD full name.
        instance: String,
    },
}

/// A running mDNS responder and browser. Dropping it unregisters and stops
/// the responder thread.
pub(crate) struct Discovery {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Discovery {
    /// Registers this node and starts browsing; resolved peers are sent on
    /// `found` (from a background thread) until the receiver is dropped.
    ///
    /// # Errors
    /// A text naming what failed: the responder could not start, an
    /// interface name was refused, or registration failed.
    pub(crate) fn start(
        config: &MdnsConfig,
        me: KeyId,
        listen: SocketAddr,
        found: mpsc::Sender<Found>,
    ) -> Result<Self, String> {
        let daemon = ServiceDaemon::new_with_port(config.port).map_err(|e| {
            format!(
                "cannot start the mDNS responder on port {}: {e}",
                config.port
            )
        })?;
        if !config.interfaces.is_empty() {
            daemon
                .disable_interface(IfKind::All)
                .map_err(|e| format!("mDNS: {e}"))?;
            let names: Vec<IfKind> = config
                .interfaces
                .iter()
                .map(|n| IfKind::Name(n.clone()))
                .collect();
            daemon
                .enable_interface(names)
                .map_err(|e| format!("mDNS: {e}"))?;
        }
        let instance = instance_name(&me);
        let host = format!("{instance}.local.");
        let id_hex = me.to_hex();
        let props = [
            ("v", TXT_VERSION),
            ("id", id_hex.as_str()),
            ("fleet", config.fleet.as_str()),
        ];
        // An unspecified listen address means every interface: let the
        // responder fill in each interface's own addresses.
        let info = if listen.ip().is_unspecified() {
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                "",
                listen.port(),
                &props[..],
            )
            .map(ServiceInfo::enable_addr_auto)
        } else {
            ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &host,
                listen.ip(),
                listen.port(),
                &props[..],
            )
        }
        .map_err(|e| format!("mDNS service record: {e}"))?;
        let fullname = info.get_fullname().to_string();
        daemon
            .register(info)
            .map_err(|e| format!("cannot register {fullname} over mDNS: {e}"))?;
        let events = daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| format!("cannot browse {SERVICE_TYPE} over mDNS: {e}"))?;
        let fleet = config.fleet.clone();
        let own = fullname.clone();
        std::thread::Builder::new()
            .name("mdns-browse".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    let Some(f) = filter(event, &own, me, &fleet, listen.ip()) else {
                        continue;
                    };
                    if found.blocking_send(f).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the mDNS browser thread: {e}"))?;
        Ok(Self { daemon, fullname })
    }

    /// This node's DNS-SD instance full name.
    pub(crate) fn fullname(&self) -> &str {
        &self.fullname
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        // Say goodbye (TTL 0) so peers drop us at once, then stop.
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_millis(500));
        }
        let _ = self.daemon.shutdown();
    }
}

/// The DNS-SD instance label of a node: `meshota-` and the first 16 hex
/// digits of its key id (a label is at most 63 bytes; the full id is in
/// the TXT record).
pub(crate) fn instance_name(id: &KeyId) -> String {
    format!("meshota-{}", &id.to_hex()[..16])
}

/// What an event means for this node, if anything.
fn filter(
    event: ServiceEvent,
    own: &str,
    me: KeyId,
    fleet: &str,
    listen_ip: IpAddr,
) -> Option<Found> {
    match event {
        ServiceEvent::ServiceResolved(s) => {
            if s.fullname == own {
                return None;
            }
            let txt = &s.txt_properties;
            if txt.get_property_val_str("v") != Some(TXT_VERSION)
                || txt.get_property_val_str("fleet") != Some(fleet)
            {
                return None;
            }
            let node = parse_id(txt.get_property_val_str("id")?)?;
            // The smaller id dials; the larger one waits.
            if node <= me {
                return None;
            }
            let addrs = usable_addrs(
                s.addresses.iter().map(mdns_sd::ScopedIp::to_ip_addr),
                s.port,
                listen_ip,
            );
            (!addrs.is_empty()).then_some(Found::Up {
                instance: s.fullname,
                node,
                addrs,
            })
        }
        ServiceEvent::ServiceRemoved(_, fullname) if fullname != own => {
            Some(Found::Down { instance: fullname })
        }
        _ => None,
    }
}

/// The addresses worth dialling, in a stable order: of the same family as
/// our listen address (our one UDP socket is either IPv4 or IPv6), and
/// loopback ones only when we listen on loopback.
fn usable_addrs(
    ips: impl Iterator<Item = IpAddr>,
    port: u16,
    listen_ip: IpAddr,
) -> Vec<SocketAddr> {
    let set: BTreeSet<IpAddr> = ips
        .filter(|ip| {
            let family_ok = ip.is_ipv4() == listen_ip.is_ipv4();
            let scope_ok = !ip.is_loopback() || listen_ip.is_loopback();
            family_ok && scope_ok && !ip.is_unspecified() && !ip.is_multicast()
        })
        .collect();
    let mut v: Vec<SocketAddr> = set
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    v.sort_by_key(|a| (a.is_ipv6(), *a));
    v
}

fn parse_id(hex_id: &str) -> Option<KeyId> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut out).ok()?;
    Some(KeyId(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_fit_a_dns_label() {
        let name = instance_name(&KeyId([0xab; 32]));
        assert_eq!(name, "meshota-abababababababab");
        assert!(name.len() <= 63);
    }

    #[test]
    fn loopback_addresses_are_dialled_only_by_a_node_listening_on_loopback() {
        let ips = [
            "127.0.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            "::1".parse().unwrap(),
        ];
        let lo = usable_addrs(ips.into_iter(), 7, "127.0.0.1".parse().unwrap());
        assert_eq!(
            lo,
            vec![
                "127.0.0.1:7".parse().unwrap(),
                "198.18.0.2:7".parse().unwrap()
            ]
        );
        let lan = usable_addrs(ips.into_iter(), 7, "198.18.0.1".parse().unwrap());
        assert_eq!(lan, vec!["198.18.0.2:7".parse().unwrap()]);
        let any = usable_addrs(ips.into_iter(), 7, "0.0.0.0".parse().unwrap());
        assert_eq!(any, vec!["198.18.0.2:7".parse().unwrap()]);
    }

    #[test]
    fn a_bad_id_in_a_txt_record_is_ignored() {
        assert_eq!(parse_id("zz"), None);
        assert_eq!(parse_id(&"ab".repeat(31)), None);
        assert_eq!(parse_id(&"ab".repeat(32)), Some(KeyId([0xab; 32])));
    }
}
