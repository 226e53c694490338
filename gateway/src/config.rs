//! The `[gateway]` table of a node config (`gateway.toml` is a node config
//! with `[mesh]` and `[gateway]`): the origin to poll and the MQTT broker.
//! Format and example: `docs/gateway.md`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::origin::http::OriginConfig;

/// Smallest poll interval accepted, in seconds (a typo of 0 must not turn
/// a gateway into a load generator against its origin).
pub const MIN_POLL_INTERVAL_SECS: u64 = 1;

fn default_poll() -> u64 {
    300
}
fn default_request_timeout() -> u64 {
    120
}
fn default_connect_timeout() -> u64 {
    15
}

/// The `[gateway]` table. Invariant after [`GatewayConfig::validate`]: the
/// origin is an `http://` or `https://` URL, the interval and timeouts are
/// at least one second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Base URL of the static origin (`https://updates.example.com/fleet/`).
    pub origin: String,
    /// Seconds between polls of the origin's catalog (default 300).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Longest one HTTP request may take, body included, in seconds
    /// (default 120); a cut transfer is resumed at the next poll.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Longest a connection may take to open, in seconds (default 15).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// PEM CA certificates for an `https` origin (default: the system
    /// bundle). Relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The MQTT broker for reports, the summary and release notifications
    /// (`[gateway.mqtt]`); none when absent.
    #[serde(default)]
    pub mqtt: Option<crate::mqtt::MqttConfig>,
}

impl GatewayConfig {
    /// Checks the values a parser cannot.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.origin.starts_with("http://") && !self.origin.starts_with("https://") {
            return Err(format!(
                "field `gateway.origin`: {:?} is not an http:// or https:// URL",
                self.origin
            ));
        }
        for (field, v) in [
            ("gateway.poll_interval_secs", self.poll_interval_secs),
            ("gateway.request_timeout_secs", self.request_timeout_secs),
            ("gateway.connect_timeout_secs", self.connect_timeout_secs),
        ] {
            if v < MIN_POLL_INTERVAL_SECS {
                return Err(format!("field `{field}` is {v}; it must be at least 1"));
            }
        }
        if let Some(m) = &self.mqtt {
            m.validate()?;
        }
        Ok(())
    }

    /// The HTTP client settings.
    #[must_use]
    pub fn origin_config(&self) -> OriginConfig {
        OriginConfig {
            base_url: self.origin.clone(),
            ca_file: self.ca_file.clone(),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
        }
    }

    /// The poll interval.
    #[must_use]
    pub const fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }
}
