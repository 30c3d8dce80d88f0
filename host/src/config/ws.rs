//! `gateway.ws.*`: the WebSocket door's limits.

use serde::Deserialize;

/// `gateway.ws.*`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WsConfig {
    /// Idle connections get a `tick` event this often.
    #[serde(default = "default_tick")]
    pub tick_interval_ms: u64,
    /// Largest frame a connection without `operator.admin` may send after
    /// `connect` (OpenClaw's default); admins get room for a component upload.
    #[serde(default = "default_ws_max_payload")]
    pub max_payload_bytes: usize,
    /// Upgraded connections that have not completed `connect` yet; more are
    /// refused with `503` before the upgrade.
    #[serde(default = "default_pending_handshakes")]
    pub max_pending_handshakes: usize,
    /// Of those, at most this many from one client address (IPv6: one /64);
    /// default three quarters, so one address can never take them all.
    #[serde(default)]
    pub max_pending_handshakes_per_client: Option<usize>,
    /// A client that takes no bytes for this long while frames wait for it
    /// is disconnected (reading slowly is fine, not reading is not).
    #[serde(default = "default_send_timeout")]
    pub send_timeout_ms: u64,
    /// Bytes of finished runs' replies kept for `agent.wait` and retries, in
    /// all; beyond it the largest principal's oldest replies are dropped.
    #[serde(default = "default_result_bytes")]
    pub max_result_bytes: usize,
    /// The same, per principal.
    #[serde(default = "default_result_bytes_per_principal")]
    pub max_result_bytes_per_principal: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            tick_interval_ms: default_tick(),
            max_payload_bytes: default_ws_max_payload(),
            max_pending_handshakes: default_pending_handshakes(),
            max_pending_handshakes_per_client: None,
            send_timeout_ms: default_send_timeout(),
            max_result_bytes: default_result_bytes(),
            max_result_bytes_per_principal: default_result_bytes_per_principal(),
        }
    }
}

impl WsConfig {
    /// Pending handshakes one client may hold: as configured, else the most
    /// that still leaves a quarter of the places to everyone else.
    pub fn pending_handshakes_per_client(&self) -> usize {
        let max = self.max_pending_handshakes;
        self.max_pending_handshakes_per_client.unwrap_or(max - max / 4).clamp(1, max.max(1))
    }

    /// Largest frame after connect: room for a base64 component upload.
    pub fn max_payload(&self, max_component_bytes: usize) -> usize {
        (max_component_bytes / 3 + 1) * 4 + (64 << 10)
    }

    /// Largest frame after connect for a client that may (`admin`) or may
    /// not install agents: only installs need room for a component.
    pub fn max_payload_for(&self, admin: bool, max_component_bytes: usize) -> usize {
        if admin { self.max_payload(max_component_bytes).max(self.max_payload_bytes) } else { self.max_payload_bytes }
    }
}

fn default_result_bytes() -> usize {
    64 << 20
}

fn default_result_bytes_per_principal() -> usize {
    16 << 20
}

fn default_tick() -> u64 {
    15_000
}

fn default_ws_max_payload() -> usize {
    2 << 20
}

fn default_pending_handshakes() -> usize {
    128
}

fn default_send_timeout() -> u64 {
    30_000
}
