//! Which protocol revision to speak with a server. Since `2026-07-28` there is
//! no handshake: every request carries its revision (in `params._meta` and the
//! `MCP-Protocol-Version` header) and a server that does not speak it says so
//! with an `UnsupportedProtocolVersionError` listing the ones it does. Older
//! servers only know the `initialize` handshake; the spec's way to tell them
//! apart over HTTP is to try a modern request first and fall back when the
//! answer is not a recognized modern error.

use base64::Engine;
use serde_json::{Value, json};

/// Revisions spoken statelessly (no `initialize`, no `Mcp-Session-Id`), newest first.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// Revisions opened by the `initialize` handshake, newest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The modern error a server answers to a revision it does not speak.
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// Headers that disagree with the body: only modern servers check them.
const HEADER_MISMATCH: i64 = -32020;
/// A client capability the server needs was not declared (modern only).
const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;

/// What the answer to a modern request says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Era {
    /// It speaks the revision asked for (its answer, result or modern error, stands).
    Modern,
    /// A modern server that speaks another modern revision: ask again with it.
    RetryWith(&'static str),
    /// A server of the handshake era: open a session with `initialize`, offering this revision.
    Handshake(&'static str),
    /// A modern server with no revision in common with this client.
    NoCommonVersion(Vec<String>),
}

/// Classify the answer (HTTP status, JSON-RPC message if the body held one)
/// to the first modern request sent to a server.
pub(crate) fn era_of(status: u16, message: Option<&Value>) -> Era {
    let newest_handshake = Era::Handshake(HANDSHAKE_VERSIONS[0]);
    let Some(message) = message else { return newest_handshake };
    let Some(error) = message.get("error") else {
        return if (200..300).contains(&status) && message.get("result").is_some() {
            Era::Modern
        } else {
            newest_handshake
        };
    };
    match error.get("code").and_then(Value::as_i64) {
        Some(UNSUPPORTED_PROTOCOL_VERSION) => {
            let supported: Vec<String> = error
                .pointer("/data/supported")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let common = |ours: &[&'static str]| ours.iter().find(|v| supported.iter().any(|s| s == *v)).copied();
            match (common(MODERN_VERSIONS), common(HANDSHAKE_VERSIONS)) {
                (Some(modern), _) => Era::RetryWith(modern),
                (None, Some(handshake)) => Era::Handshake(handshake),
                (None, None) => Era::NoCommonVersion(supported),
            }
        }
        Some(HEADER_MISMATCH | MISSING_REQUIRED_CLIENT_CAPABILITY) => Era::Modern,
        // Method not found, "not initialized", "missing session id", …: what
        // a handshake-era server answers to a request without a session.
        _ => newest_handshake,
    }
}

/// The revision a server answered to `initialize`, if this client speaks it.
pub(crate) fn handshake_answer(offered: &str, answered: Option<&str>) -> Result<&'static str, String> {
    let answered = answered.unwrap_or(offered);
    HANDSHAKE_VERSIONS.iter().find(|v| **v == answered).copied().ok_or_else(|| {
        format!("initialize answered protocol version {answered:?}; this client speaks {HANDSHAKE_VERSIONS:?}")
    })
}

/// The `_meta` every modern request carries in its params.
pub(crate) fn request_meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "wasmclaw", "version": env!("CARGO_PKG_VERSION")},
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

/// A value for a mirrored header (`Mcp-Name`, `Mcp-Param-*`): as is when it is
/// plain visible ASCII, else in the spec's `=?base64?…?=` form.
pub(crate) fn header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        value.to_string()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: i64, data: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": "m", "data": data}})
    }

    #[test]
    fn a_modern_result_keeps_the_modern_revision() {
        assert_eq!(era_of(200, Some(&json!({"jsonrpc": "2.0", "id": 1, "result": {}}))), Era::Modern);
    }

    #[test]
    fn an_unsupported_version_error_picks_the_newest_revision_in_common() {
        let later = error(-32022, json!({"supported": ["2027-01-01", "2026-07-28"], "requested": "x"}));
        assert_eq!(era_of(400, Some(&later)), Era::RetryWith("2026-07-28"));
        let handshake_only = error(-32022, json!({"supported": ["2025-03-26", "2025-06-18"]}));
        assert_eq!(era_of(400, Some(&handshake_only)), Era::Handshake("2025-06-18"));
        let none = error(-32022, json!({"supported": ["2099-01-01"]}));
        assert_eq!(era_of(400, Some(&none)), Era::NoCommonVersion(vec!["2099-01-01".into()]));
    }

    #[test]
    fn anything_but_a_modern_error_means_a_handshake_server() {
        let newest = Era::Handshake("2025-11-25");
        assert_eq!(era_of(400, None), newest, "a plain-text 400 (missing session id)");
        assert_eq!(era_of(404, None), newest);
        assert_eq!(era_of(200, Some(&error(-32601, Value::Null))), newest, "method not found");
        assert_eq!(era_of(400, Some(&error(-32600, Value::Null))), newest, "bad request: no session");
        assert_eq!(era_of(400, Some(&error(-32020, Value::Null))), Era::Modern, "header mismatch is modern");
    }

    #[test]
    fn the_handshake_accepts_only_revisions_this_client_speaks() {
        assert_eq!(handshake_answer("2025-11-25", Some("2025-06-18")), Ok("2025-06-18"));
        assert_eq!(handshake_answer("2025-11-25", None), Ok("2025-11-25"));
        assert!(handshake_answer("2025-11-25", Some("2026-07-28")).unwrap_err().contains("2026-07-28"));
    }

    #[test]
    fn header_values_outside_plain_ascii_are_base64() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(header_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(header_value("=?base64?literal?="), "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=");
    }
}
