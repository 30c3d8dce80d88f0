//! Which browsers and host names may reach the gateway. A page on another
//! site, or a DNS-rebinding name that resolves to loopback, must not drive a
//! gateway that trusts its network (auth mode `none`), and no foreign page
//! may open the WebSocket unless the operator lists its origin.

use axum::http::{HeaderMap, header};

use crate::config::{AuthMode, Config};

/// True when the request's `Host` is acceptable: any host with credentials;
/// in mode `none`, a loopback name or one of `gateway.allowedHosts`.
pub fn host_allowed(config: &Config, headers: &HeaderMap) -> bool {
    if config.gateway.auth.mode != AuthMode::None {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 without Host comes from a tool, never from a browser.
        return true;
    };
    let name = host_name(host);
    is_loopback_name(name) || config.gateway.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// True when the request's `Origin` (sent by browsers only) may open the
/// WebSocket: absent, the gateway's own origin (same authority as `Host`,
/// which in mode `none` must be a loopback name), or a configured origin.
pub fn origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.trim_end_matches('/');
    let listed = |list: &[String]| list.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
    if listed(&config.gateway.control_ui.allowed_origins) {
        return true;
    }
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    !authority.is_empty() && authority.eq_ignore_ascii_case(host) && host_allowed(config, headers)
}

/// `localhost:18789` → `localhost`; `[::1]:80` → `::1`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: &str, extra: &str) -> Config {
        let text = format!(r#"{{ gateway: {{ auth: {{ mode: "{mode}", token: "t" }} {extra} }} }}"#);
        Config::parse(&text, std::path::Path::new("t.json5")).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn mode_none_serves_loopback_names_and_listed_hosts_only() {
        let none = config("none", r#", allowedHosts: ["gw.internal"]"#);
        for ok in ["127.0.0.1:18789", "localhost:1", "[::1]:80", "app.localhost", "GW.internal:443"] {
            assert!(host_allowed(&none, &headers(&[("host", ok)])), "{ok}");
        }
        for bad in ["evil.example:18789", "127.0.0.1.evil.example", "10.0.0.1:18789"] {
            assert!(!host_allowed(&none, &headers(&[("host", bad)])), "{bad}");
        }
        assert!(host_allowed(&config("token", ""), &headers(&[("host", "evil.example")])));
    }

    #[test]
    fn browsers_need_the_gateways_own_origin_or_a_listed_one() {
        let none = config("none", r#", controlUi: { allowedOrigins: ["https://ops.example.com"] }"#);
        let at = |origin: &str, host: &str| origin_allowed(&none, &headers(&[("origin", origin), ("host", host)]));
        assert!(origin_allowed(&none, &headers(&[("host", "127.0.0.1:18789")])), "no Origin: not a browser");
        assert!(at("http://127.0.0.1:18789", "127.0.0.1:18789"));
        assert!(at("https://ops.example.com/", "127.0.0.1:18789"));
        assert!(!at("https://evil.example", "127.0.0.1:18789"));
        assert!(!at("http://127.0.0.1:3000", "127.0.0.1:18789"), "another local site is another origin");
        assert!(!at("http://evil.example:18789", "evil.example:18789"), "a rebinding name is not loopback");
        let token = config("token", "");
        assert!(origin_allowed(&token, &headers(&[("origin", "https://gw.example"), ("host", "gw.example")])));
        assert!(!origin_allowed(&token, &headers(&[("origin", "https://evil.example"), ("host", "gw.example")])));
    }
}
