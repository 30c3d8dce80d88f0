//! Who a `connect` authenticates as: the gateway's credential, or a paired
//! device's token (OpenClaw's device identity, `auth/device.rs`). A device
//! that proves its key with a credential is paired here and its token goes
//! back in `hello-ok`; the pairing is stored in the sessions database, so any
//! instance accepts the token and a revocation holds on all of them at once.

use serde_json::{Value, json};

use super::frames::{WsError, codes, now_ms};
use crate::auth::device::{self, ConnectClaims, DeviceRefused, ProvenDevice};
use crate::auth::{Principal, Scope};
use crate::config::AuthMode;
use crate::gateway::{DeviceGone, Gateway};
use crate::sessions::{PairedDevice, StoreError};

/// Devices one principal may have paired at once (revoked ones count until removed).
pub const MAX_DEVICES_PER_PRINCIPAL: usize = 256;

/// A connect that authenticated.
pub struct Authenticated {
    pub principal: Principal,
    /// The device that proved its key on this connect, if any.
    pub device: Option<ProvenDevice>,
    /// True when the device's token (not a credential) let it in.
    pub by_device_token: bool,
}

/// The device a connection came in with.
#[derive(Debug, Clone)]
pub struct ConnectedDevice {
    pub id: String,
    /// True when its device token (not a credential) let it in.
    pub by_device_token: bool,
}

/// Whether `device` may stay connected as the store has it now: not once
/// revoked; once removed, only if a credential (not its token) let it in.
async fn still_allowed(gw: &Gateway, device: &ConnectedDevice) -> Result<bool, StoreError> {
    let devices = gw.agents.sessions().devices().await?;
    Ok(allowed(devices.iter().find(|d| d.id == device.id), device.by_device_token))
}

fn allowed(paired: Option<&PairedDevice>, by_device_token: bool) -> bool {
    match paired {
        Some(paired) => paired.revoked_at.is_none(),
        None => !by_device_token,
    }
}

/// What an announcement on [`Gateway::devices_gone`] means for one connection's device.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// This device was revoked or removed.
    Gone,
    /// Another device, or nothing.
    NotMine,
    /// Announcements were missed: ask the store.
    Missed,
}

fn heard(device_id: &str, gone: Result<DeviceGone, tokio::sync::broadcast::error::RecvError>) -> Heard {
    use tokio::sync::broadcast::error::RecvError;
    match gone {
        Ok(DeviceGone::Device(id)) if id == device_id => Heard::Gone,
        Ok(DeviceGone::Device(_)) | Err(RecvError::Closed) => Heard::NotMine,
        Ok(DeviceGone::Unknown) | Err(RecvError::Lagged(_)) => Heard::Missed,
    }
}

/// The close for a connection of `device` after `gone`, if it must close.
/// A missed announcement (the receiver lagged, or the database connection
/// came back) is not taken on trust: the store is asked, and a store that
/// cannot answer closes the connection (a reconnect is checked afresh), so
/// no revoked device stays connected because a message was lost.
pub(super) async fn close_for(
    gw: &Gateway,
    device: &ConnectedDevice,
    gone: Result<DeviceGone, tokio::sync::broadcast::error::RecvError>,
) -> Option<super::Outgoing> {
    let removed = || {
        tracing::info!(device = %device.id, "websocket closed: the device was revoked or removed");
        Some(super::Outgoing::Close { code: super::close::DEVICE_REMOVED, reason: "device removed".into() })
    };
    match heard(&device.id, gone) {
        Heard::Gone => removed(),
        Heard::NotMine => None,
        Heard::Missed => match still_allowed(gw, device).await {
            Ok(true) => None,
            Ok(false) => removed(),
            Err(e) => {
                tracing::warn!(device = %device.id, error = %e, "websocket closed: device revocations may have been missed and the sessions database could not be asked");
                Some(super::Outgoing::Close {
                    code: super::close::TRY_AGAIN,
                    reason: "device not re-checked; reconnect".into(),
                })
            }
        },
    }
}

/// Why a connect was refused: the error to send, and whether it counts as a
/// failed attempt for the lock-out (a wrong secret or a forged proof does).
pub struct Refused {
    pub error: WsError,
    pub counts: bool,
}

/// Authenticate `params` of a `connect` answered to the challenge `nonce`.
pub async fn authenticate(gw: &Gateway, params: &Value, nonce: &str) -> Result<Authenticated, Refused> {
    let auth = &params["auth"];
    fn text(v: &Value) -> Option<&str> {
        v.as_str().map(str::trim).filter(|s| !s.is_empty())
    }
    let secret = text(&auth["token"]).or_else(|| text(&auth["password"]));
    let device_token = text(&auth["deviceToken"]);
    let proven = match &params["device"] {
        Value::Null => None,
        proof => Some(prove(proof, params, nonce).map_err(|e| {
            tracing::info!(client = %params["client"]["id"], reason = %e, "websocket connect refused: device proof");
            let mut error = WsError::invalid(e.to_string());
            error.details = Some(json!({"code": e.code()}));
            Refused { error, counts: true }
        })?),
    };
    if let Some(principal) = gw.auth.authenticate(secret.unwrap_or_default()) {
        return Ok(Authenticated { principal, device: proven, by_device_token: false });
    }
    if let (None, Some(token), Some(proven)) = (secret, device_token, &proven)
        && gw.auth.mode() != AuthMode::None
    {
        let principal = by_device_token(gw, token, proven).await?;
        return Ok(Authenticated { principal, device: Some(proven.clone()), by_device_token: true });
    }
    let (message, detail) = match (secret, device_token, gw.auth.mode()) {
        (None, Some(_), _) => (
            "unauthorized: device token mismatch (pair the device again with the gateway token)",
            "AUTH_DEVICE_TOKEN_MISMATCH",
        ),
        (_, _, AuthMode::Password) => ("unauthorized: gateway password mismatch", "AUTH_PASSWORD_MISMATCH"),
        _ => ("unauthorized: gateway token mismatch", "AUTH_TOKEN_MISMATCH"),
    };
    let mut error = WsError::invalid(message);
    error.details = Some(json!({"code": detail}));
    tracing::info!(client = %params["client"]["id"], code = detail, "websocket connect refused: wrong credentials");
    Err(Refused { error, counts: true })
}

fn prove(proof: &Value, params: &Value, nonce: &str) -> Result<ProvenDevice, DeviceRefused> {
    fn text(v: &Value) -> &str {
        v.as_str().unwrap_or_default()
    }
    let auth = &params["auth"];
    let claims = ConnectClaims {
        client_id: text(&params["client"]["id"]),
        client_mode: text(&params["client"]["mode"]),
        platform: text(&params["client"]["platform"]),
        device_family: text(&params["client"]["deviceFamily"]),
        role: params["role"].as_str().unwrap_or("operator"),
        scopes: params["scopes"].as_array().map(|s| s.iter().filter_map(Value::as_str).collect()).unwrap_or_default(),
        tokens: ["token", "deviceToken", "bootstrapToken", "password"]
            .iter()
            .filter_map(|k| auth[*k].as_str())
            .collect(),
    };
    device::verify(proof, nonce, &claims, now_ms())
}

/// The principal a device token stands for: the one that paired the device,
/// as the config has it now, with no more than the scopes it paired with.
async fn by_device_token(gw: &Gateway, token: &str, proven: &ProvenDevice) -> Result<Principal, Refused> {
    let store = gw.agents.sessions();
    let paired = store
        .device_by_token(&device::token_digest(token))
        .await
        .map_err(|e| Refused { error: unavailable(&e), counts: false })?;
    let mismatch = || {
        let mut error =
            WsError::invalid("unauthorized: device token mismatch (pair the device again with the gateway token)");
        error.details = Some(json!({"code": "AUTH_DEVICE_TOKEN_MISMATCH"}));
        Refused { error, counts: true }
    };
    // A token is bound to the key that was paired with it.
    let paired = paired.filter(|d| d.id == proven.id).ok_or_else(mismatch)?;
    let Some(principal) = gw.auth.principal_named(&paired.principal) else {
        tracing::info!(
            device = %paired.id, principal = %paired.principal,
            "device token refused: its token is no longer in gateway.auth.tokens"
        );
        return Err(mismatch());
    };
    let scopes: Vec<Scope> = paired.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    Ok(principal.narrowed(&scopes))
}

fn unavailable(e: &StoreError) -> WsError {
    tracing::warn!(error = %e, "device token not checked: the sessions database is unavailable");
    WsError { retryable: true, ..WsError::new(codes::UNAVAILABLE, "device tokens are unavailable; retry shortly") }
}

/// Pair `device` to `principal` and return its new token; `None` (logged)
/// when the store cannot keep it: the connect still succeeds, without one.
pub async fn pair(gw: &Gateway, device: &ProvenDevice, principal: &Principal, client_id: &str) -> Option<String> {
    if gw.auth.mode() == AuthMode::None {
        return None;
    }
    let store = gw.agents.sessions();
    // A credential may pair only so many devices: the table stays bounded.
    match store.devices().await {
        Ok(devices) => {
            let known = devices.iter().any(|d| d.id == device.id);
            let held = devices.iter().filter(|d| d.principal == principal.name()).count();
            if !known && held >= MAX_DEVICES_PER_PRINCIPAL {
                tracing::warn!(
                    principal = principal.name(),
                    limit = MAX_DEVICES_PER_PRINCIPAL,
                    "device not paired (no device token issued): this credential has paired the most devices it may; \
                     forget old ones with device.pair.remove"
                );
                return None;
            }
        }
        Err(e) => {
            tracing::warn!(device = %device.id, error = %e, "device not paired (no device token issued): sessions database failed");
            return None;
        }
    }
    let token = device::new_token();
    let paired = PairedDevice {
        id: device.id.clone(),
        public_key: device.public_key.clone(),
        principal: principal.name().to_string(),
        scopes: principal.scopes().iter().map(|s| s.name().to_string()).collect(),
        client_id: client_id.to_string(),
        token_digest: Some(device::token_digest(&token)),
        created_at: now_ms(),
        revoked_at: None,
    };
    match store.pair_device(paired).await {
        Ok(()) => Some(token),
        Err(e) => {
            tracing::warn!(device = %device.id, error = %e, "device not paired (no device token issued): sessions database failed");
            None
        }
    }
}

/// One paired device as `device.pair.list` shows it (never its token or digest).
fn device_json(d: &PairedDevice) -> Value {
    let token =
        json!({"role": "operator", "scopes": d.scopes, "createdAtMs": d.created_at, "revokedAtMs": d.revoked_at});
    json!({"deviceId": d.id, "publicKey": d.public_key, "clientId": d.client_id, "principal": d.principal,
           "role": "operator", "roles": ["operator"], "scopes": d.scopes, "createdAtMs": d.created_at,
           "approvedAtMs": d.created_at, "revoked": d.revoked_at.is_some(), "tokens": [token]})
}

/// `device.pair.list`: every paired device (pairing needs no approval here, so none is pending).
pub async fn pair_list(call: super::methods::Call) -> super::methods::Answer {
    let devices = call.gw.agents.sessions().devices().await.map_err(super::methods::store_error)?;
    Ok(Some(json!({"pending": [], "paired": devices.iter().map(device_json).collect::<Vec<_>>()})))
}

fn device_param(params: &Value) -> Result<&str, WsError> {
    params["deviceId"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| WsError::invalid("missing deviceId"))
}

/// `device.token.revoke {deviceId}`: its token stops working on every instance at its next connect.
pub async fn token_revoke(call: super::methods::Call) -> super::methods::Answer {
    let id = device_param(&call.params)?;
    let revoked = call.gw.agents.sessions().revoke_device(id).await.map_err(super::methods::store_error)?;
    tracing::info!(device = id, by = call.principal.name(), revoked, "device token revoked");
    // No receiver (no connection of any device) is not an error.
    let _ = call.gw.devices_gone.send(DeviceGone::Device(id.to_string()));
    Ok(Some(json!({"deviceId": id, "role": "operator", "revoked": revoked, "revokedAtMs": now_ms()})))
}

/// `device.pair.remove {deviceId}`: forget the device (and so its token).
pub async fn pair_remove(call: super::methods::Call) -> super::methods::Answer {
    let id = device_param(&call.params)?;
    let removed = call.gw.agents.sessions().remove_device(id).await.map_err(super::methods::store_error)?;
    tracing::info!(device = id, by = call.principal.name(), removed, "device removed");
    let _ = call.gw.devices_gone.send(DeviceGone::Device(id.to_string()));
    Ok(Some(json!({"deviceId": id, "removed": removed})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_fell_behind_asks_the_store_rather_than_staying_open() {
        let (tx, mut rx) = tokio::sync::broadcast::channel(2);
        for i in 0..5 {
            tx.send(DeviceGone::Device(format!("other-{i}"))).unwrap();
        }
        // The revocation of this device may be among the dropped ones.
        let lagged = rx.recv().await;
        assert!(lagged.is_err(), "the channel dropped the oldest: {lagged:?}");
        assert_eq!(heard("mine", lagged), Heard::Missed);
        assert_eq!(heard("mine", Ok(DeviceGone::Unknown)), Heard::Missed);
        assert_eq!(heard("mine", Ok(DeviceGone::Device("mine".into()))), Heard::Gone);
        assert_eq!(heard("mine", Ok(DeviceGone::Device("other".into()))), Heard::NotMine);
    }

    #[test]
    fn the_store_decides_a_missed_announcement_revoked_or_removed_closes() {
        let mut paired = PairedDevice {
            id: "d".into(),
            public_key: "pk".into(),
            principal: "p".into(),
            scopes: vec![],
            client_id: "c".into(),
            token_digest: Some("t".into()),
            created_at: 1,
            revoked_at: None,
        };
        assert!(allowed(Some(&paired), true));
        paired.revoked_at = Some(2);
        assert!(!allowed(Some(&paired), true), "revoked: its token connection closes");
        assert!(
            !allowed(Some(&paired), false),
            "revoked: a credential connection of it closes too, as on the announcement"
        );
        assert!(!allowed(None, true), "removed: its token lets nothing in any more");
        assert!(allowed(None, false), "removed or never stored: the credential that let it in still holds");
    }
}
