//! OpenClaw's device identity, as its Control UI and CLI prove it on
//! `connect`: the client holds an ed25519 key, names the device by the hex
//! SHA-256 of the raw public key, and signs
//! `v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce`
//! (or `v3|…|nonce|platform|deviceFamily`) where `nonce` is the one the
//! gateway sent in `connect.challenge`. A proof ties the connect to this
//! connection's challenge, so a recorded connect cannot be replayed.
//!
//! A proven device that connects with a credential is paired: it gets a
//! device token (random, 256 bits) that later connects of the same device may
//! present instead of the credential. The store keeps only [`token_digest`].

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How far `signedAt` may be from now: OpenClaw's clients sign with the
/// challenge's `ts`, so only a clock-skewed or replayed proof is this old.
const MAX_SKEW_MS: u64 = 10 * 60 * 1000;

/// A device whose signature over this connection's challenge checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenDevice {
    /// Hex SHA-256 of the raw public key.
    pub id: String,
    /// The raw public key, base64url as sent.
    pub public_key: String,
}

/// Why a `device` object was refused; the message is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceRefused {
    #[error("device identity malformed: {0}")]
    Malformed(&'static str),
    #[error("device identity mismatch: the device id is not the SHA-256 of its public key")]
    IdMismatch,
    #[error("device nonce mismatch: sign the nonce of this connection's connect.challenge")]
    WrongNonce,
    #[error("device signature expired: signedAt is more than 10 minutes from the gateway's clock")]
    Stale,
    #[error("device signature invalid")]
    BadSignature,
}

impl DeviceRefused {
    /// OpenClaw's `details.code` for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "DEVICE_AUTH_INVALID",
            Self::IdMismatch => "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            Self::WrongNonce => "DEVICE_AUTH_NONCE_MISMATCH",
            Self::Stale => "DEVICE_AUTH_SIGNATURE_EXPIRED",
            Self::BadSignature => "DEVICE_AUTH_SIGNATURE_INVALID",
        }
    }
}

/// What the client claimed on `connect`, besides the `device` object.
pub struct ConnectClaims<'a> {
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub platform: &'a str,
    pub device_family: &'a str,
    pub role: &'a str,
    pub scopes: Vec<&'a str>,
    /// Every secret the client sent (`auth.token`, `auth.deviceToken`, …):
    /// it signs the one it authenticates with, which may be any of them.
    pub tokens: Vec<&'a str>,
}

/// Check `device` (`{id, publicKey, signature, signedAt, nonce}`) against
/// the challenge `nonce` this connection was sent and the claims of `connect`.
pub fn verify(
    device: &Value,
    nonce: &str,
    claims: &ConnectClaims<'_>,
    now_ms: u64,
) -> Result<ProvenDevice, DeviceRefused> {
    let field = |name: &'static str| device[name].as_str().filter(|s| !s.is_empty());
    let id = field("id").ok_or(DeviceRefused::Malformed("id missing"))?;
    let public_key = field("publicKey").ok_or(DeviceRefused::Malformed("publicKey missing"))?;
    let signature = field("signature").ok_or(DeviceRefused::Malformed("signature missing"))?;
    let signed_at = device["signedAt"].as_u64().ok_or(DeviceRefused::Malformed("signedAt missing"))?;
    let key =
        decode(public_key).filter(|k| k.len() == 32).ok_or(DeviceRefused::Malformed("publicKey is not 32 bytes"))?;
    let signature = decode(signature).ok_or(DeviceRefused::Malformed("signature is not base64url"))?;
    if hex::encode(Sha256::digest(&key)) != id.to_ascii_lowercase() {
        return Err(DeviceRefused::IdMismatch);
    }
    if device["nonce"].as_str() != Some(nonce) {
        return Err(DeviceRefused::WrongNonce);
    }
    if signed_at.abs_diff(now_ms) > MAX_SKEW_MS {
        return Err(DeviceRefused::Stale);
    }
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key);
    let scopes = claims.scopes.join(",");
    let tokens = claims.tokens.iter().copied().chain([""]);
    let proven = tokens.into_iter().any(|token| {
        let v2 = [
            "v2",
            id,
            claims.client_id,
            claims.client_mode,
            claims.role,
            &scopes,
            &signed_at.to_string(),
            token,
            nonce,
        ]
        .join("|");
        let v3 = [
            v2.replacen("v2", "v3", 1),
            claims.platform.trim().to_lowercase(),
            claims.device_family.trim().to_lowercase(),
        ]
        .join("|");
        key.verify(v2.as_bytes(), &signature).is_ok() || key.verify(v3.as_bytes(), &signature).is_ok()
    });
    if !proven {
        return Err(DeviceRefused::BadSignature);
    }
    Ok(ProvenDevice { id: id.to_ascii_lowercase(), public_key: public_key.to_string() })
}

/// A fresh device token: 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the system has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a device token: its hex SHA-256.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// base64url with or without padding (browsers strip it; other clients may not).
fn decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    use serde_json::json;

    fn claims<'a>(tokens: Vec<&'a str>) -> ConnectClaims<'a> {
        ConnectClaims {
            client_id: "openclaw-control-ui",
            client_mode: "webchat",
            platform: "Linux x86_64",
            device_family: "",
            role: "operator",
            scopes: vec!["operator.admin", "operator.read"],
            tokens,
        }
    }

    /// A device object signed as the Control UI signs it.
    fn signed(seed: u8, nonce: &str, signed_at: u64, token: &str) -> Value {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let raw = pair.public_key().as_ref();
        let id = hex::encode(Sha256::digest(raw));
        let payload = format!(
            "v2|{id}|openclaw-control-ui|webchat|operator|operator.admin,operator.read|{signed_at}|{token}|{nonce}"
        );
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"id": id, "publicKey": b64(raw), "signature": b64(pair.sign(payload.as_bytes()).as_ref()),
               "signedAt": signed_at, "nonce": nonce})
    }

    #[test]
    fn a_signature_over_this_challenge_proves_the_device() {
        let now = 1_800_000_000_000;
        let device = signed(1, "n-1", now, "secret");
        let proven = verify(&device, "n-1", &claims(vec!["secret"]), now + 5).unwrap();
        assert_eq!(proven.id, device["id"]);
        // Signed without a token (a device token it has not got yet).
        let device = signed(1, "n-1", now, "");
        assert!(verify(&device, "n-1", &claims(vec!["secret"]), now).is_ok());
    }

    #[test]
    fn forged_replayed_stale_or_mismatched_proofs_are_refused() {
        let now = 1_800_000_000_000;
        let device = signed(1, "n-1", now, "secret");
        // Another connection's challenge.
        assert_eq!(verify(&device, "n-2", &claims(vec!["secret"]), now), Err(DeviceRefused::WrongNonce));
        // The nonce field rewritten to this challenge: the signature no longer matches.
        let mut replayed = device.clone();
        replayed["nonce"] = json!("n-2");
        assert_eq!(verify(&replayed, "n-2", &claims(vec!["secret"]), now), Err(DeviceRefused::BadSignature));
        // Claims other than those signed (more scopes).
        let mut wider = claims(vec!["secret"]);
        wider.scopes.push("operator.write");
        assert_eq!(verify(&device, "n-1", &wider, now), Err(DeviceRefused::BadSignature));
        // Another key's signature under this key's id.
        let mut forged = signed(2, "n-1", now, "secret");
        forged["publicKey"] = device["publicKey"].clone();
        forged["id"] = device["id"].clone();
        assert_eq!(verify(&forged, "n-1", &claims(vec!["secret"]), now), Err(DeviceRefused::BadSignature));
        // An id that is not the key's.
        let mut renamed = device.clone();
        renamed["id"] = json!("00".repeat(32));
        assert_eq!(verify(&renamed, "n-1", &claims(vec!["secret"]), now), Err(DeviceRefused::IdMismatch));
        assert_eq!(verify(&device, "n-1", &claims(vec!["secret"]), now + 11 * 60_000), Err(DeviceRefused::Stale));
        assert!(matches!(verify(&json!({}), "n-1", &claims(vec![]), now), Err(DeviceRefused::Malformed(_))));
    }

    #[test]
    fn tokens_are_random_and_only_their_digest_is_kept() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_digest(&a).len(), 64);
        assert!(!token_digest(&a).contains(&a));
    }
}
