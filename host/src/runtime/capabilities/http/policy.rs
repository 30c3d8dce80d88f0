//! Which requests an agent may send: allow rules, credentials and limits,
//! parsed once from its `http` config block. Deny by default.

use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use super::oauth::TokenSource;
use crate::config::Secret;

/// One allow rule: `scheme://host[:port][/path-prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// The rule as written, for logs.
    pub text: String,
    scheme: String,
    host: HostPattern,
    /// `None`: the scheme's default port.
    port: Option<u16>,
    /// Empty or starting with `/`, without a trailing `/`.
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// The host named literally (a name or an address).
    Exact(String),
    /// `*.example.com`: any subdomain (stored as `.example.com`).
    Subdomains(String),
    /// `*`: any host.
    Any,
}

/// The parts of a request URL a rule is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: String,
    /// Lower case; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    pub path: String,
    /// The URL as parsed: what the sender sends (parsed once, so what was
    /// checked is what goes out).
    pub url: reqwest::Url,
}

impl Target {
    /// From a request URI, as the sending client reads it; `None` without
    /// scheme or host. URL parsing turns `2130706433` or `127.1` into
    /// `127.0.0.1` and drops `..` segments, so rules and the internal-address
    /// check must see that form, not the one the guest wrote.
    pub fn of(uri: &http::Uri) -> Option<Self> {
        let url = reqwest::Url::parse(&uri.to_string()).ok()?;
        let scheme = url.scheme().to_string();
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port().or_else(|| default_port(&scheme))?;
        Some(Self { scheme, host, port, path: url.path().to_string(), url })
    }

    /// `scheme://host:port`, for logs and metrics.
    pub fn origin(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowRule {
    /// Parse a rule; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text.split_once("://").ok_or("expected scheme://host[:port][/path]")?;
        let scheme = scheme.to_ascii_lowercase();
        if default_port(&scheme).is_none() {
            return Err(format!("scheme {scheme:?} is not http or https"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty() => {
                (host, Some(port.parse::<u16>().map_err(|_| format!("port {port:?} is out of range"))?))
            }
            _ => (authority, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let host = match host.as_str() {
            "" => return Err("the host is empty".into()),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Subdomains(h[1..].to_string()),
            h if h.contains('*') => return Err("`*` may only stand alone or start the host (`*.example.com`)".into()),
            h => HostPattern::Exact(h.to_string()),
        };
        Ok(Self { text: text.to_string(), scheme, host, port, path: path.to_string() })
    }

    /// True when `target` is inside this rule.
    pub fn matches(&self, target: &Target) -> bool {
        self.matches_origin(target) && self.matches_path(target)
    }

    /// True when `target`'s scheme, host and port are this rule's, whatever its path.
    pub fn matches_origin(&self, target: &Target) -> bool {
        let host = match &self.host {
            HostPattern::Exact(h) => *h == target.host,
            HostPattern::Subdomains(suffix) => target.host.ends_with(suffix.as_str()),
            HostPattern::Any => true,
        };
        let port = self.port.or_else(|| default_port(&self.scheme)) == Some(target.port);
        self.scheme == target.scheme && host && port
    }

    /// True when the path is inside the prefix both as sent and as a server
    /// that decodes and normalises it would read it: `/public/..%2fsecret`
    /// is `/public/..%2fsecret` to the sender and `/secret` to such a server.
    fn matches_path(&self, target: &Target) -> bool {
        let inside = |path: &str| {
            self.path.is_empty()
                || path == self.path
                || path.strip_prefix(self.path.as_str()).is_some_and(|rest| rest.starts_with('/'))
        };
        self.path.is_empty() || (inside(&target.path) && inside(&decoded_path(&target.path)))
    }

    /// `scheme://host:port` as the rule writes it (`*` and `*.example.com`
    /// stay patterns): a metric label the configuration bounds.
    pub fn origin(&self) -> String {
        let host = match &self.host {
            HostPattern::Exact(h) if h.contains(':') => format!("[{h}]"),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Subdomains(suffix) => format!("*{suffix}"),
            HostPattern::Any => "*".to_string(),
        };
        let port = self.port.or_else(|| default_port(&self.scheme)).unwrap_or_default();
        format!("{}://{host}:{port}", self.scheme)
    }

    /// The path prefix (empty: any path), for logs.
    pub fn path_prefix(&self) -> &str {
        &self.path
    }

    /// True when the rule names its host literally: only then may it reach a
    /// loopback, private or link-local address.
    pub fn literal(&self) -> bool {
        matches!(self.host, HostPattern::Exact(_))
    }
}

/// `path` percent-decoded until nothing is left to decode (a double-decoding
/// server reads `%252f` as `/`), backslashes read as slashes, empty and `.`
/// segments dropped, `..` (also `..;x`, as Tomcat reads it) resolved.
fn decoded_path(path: &str) -> String {
    let mut decoded = path.to_string();
    // Each round shortens the text, so this ends; the cap bounds the work.
    for _ in 0..8 {
        let next = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

/// A header the host adds to requests a rule matches.
#[derive(Clone)]
pub struct Credential {
    pub rule: AllowRule,
    pub header: http::HeaderName,
    pub value: CredentialValue,
}

/// Where a credential's value comes from.
#[derive(Clone)]
pub enum CredentialValue {
    /// From the environment, read at load.
    Static {
        /// `prefix` + the variable's value.
        value: Secret,
        /// The variable's value alone, redacted wherever it shows up.
        secret: Secret,
    },
    /// An OAuth access token the host fetches and refreshes (`Bearer` + token).
    OAuth(Arc<TokenSource>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("rule", &self.rule.text).field("header", &self.header).finish()
    }
}

/// Per-run limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_requests: u32,
    pub max_response_bytes: usize,
    pub timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_requests: 32, max_response_bytes: 8 << 20, timeout: Duration::from_secs(30) }
    }
}

/// An agent's whole outbound HTTP policy.
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    pub allow: Vec<AllowRule>,
    pub credentials: Vec<Credential>,
    pub limits: HttpLimits,
    /// `http.propagateTrace`: requests carry the run's `traceparent`.
    pub propagate_trace: bool,
}

impl HttpPolicy {
    /// The first rule that allows `target`.
    pub fn allowed(&self, target: &Target) -> Option<&AllowRule> {
        self.allow.iter().find(|r| r.matches(target))
    }

    /// True when a rule names `target`'s origin but no rule's path prefix
    /// holds its path: the denial then says the path did not match.
    pub fn path_outside(&self, target: &Target) -> Option<Vec<&str>> {
        let prefixes: Vec<&str> =
            self.allow.iter().filter(|r| r.matches_origin(target)).map(AllowRule::path_prefix).collect();
        (!prefixes.is_empty()).then_some(prefixes)
    }

    /// Credentials for `target`.
    pub fn credentials_for(&self, target: &Target) -> impl Iterator<Item = &Credential> {
        self.credentials.iter().filter(move |c| c.rule.matches(target))
    }
}

/// Addresses an agent may reach only through a rule that names them:
/// loopback, private, link-local (cloud metadata lives there), unspecified,
/// shared (CGNAT) and IPv6 unique-local ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::of(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn rules_match_scheme_host_port_and_path_prefix() {
        let rule = AllowRule::parse("https://api.example.com").unwrap();
        assert!(rule.matches(&target("https://api.example.com/v1/x?q=1")));
        assert!(rule.matches(&target("https://API.example.com:443/")));
        assert!(!rule.matches(&target("http://api.example.com/")), "scheme");
        assert!(!rule.matches(&target("https://api.example.com:8443/")), "port");
        assert!(!rule.matches(&target("https://api.example.com.evil.net/")), "host");
        let mcp = AllowRule::parse("http://127.0.0.1:9100/mcp").unwrap();
        assert!(mcp.matches(&target("http://127.0.0.1:9100/mcp")));
        assert!(mcp.matches(&target("http://127.0.0.1:9100/mcp/x")));
        assert!(!mcp.matches(&target("http://127.0.0.1:9100/mcpx")));
        assert!(!mcp.matches(&target("http://127.0.0.1:9100/")));
        let sub = AllowRule::parse("https://*.example.com").unwrap();
        assert!(sub.matches(&target("https://a.b.example.com/")));
        assert!(!sub.matches(&target("https://example.com/")));
        assert!(!sub.literal());
        assert!(AllowRule::parse("https://*:8080").unwrap().matches(&target("https://anything:8080/")));
        let local = AllowRule::parse("http://127.0.0.1:9100/mcp").unwrap();
        for other in ["http://2130706433:9100/mcp", "http://127.1:9100/mcp", "http://0x7f.0.0.1:9100/mcp"] {
            assert_eq!(target(other).host, "127.0.0.1", "{other}");
            assert!(local.matches(&target(other)), "{other}");
        }
        assert_eq!(target("http://127.0.0.1:9100/mcp/../admin").path, "/admin");
        assert_eq!(target("http://127.0.0.1:9100/mcp/%2e%2e/admin").path, "/admin");
        assert!(!local.matches(&target("http://127.0.0.1:9100/mcp/../admin")));
        let v6 = AllowRule::parse("http://[::1]:9000").unwrap();
        assert!(v6.matches(&target("http://[::1]:9000/")) && v6.literal());
        for bad in ["api.example.com", "ftp://x", "https://", "https://a*b.com", "https://x:99999"] {
            assert!(AllowRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoded_slashes_and_dots_do_not_leave_a_path_prefix() {
        let rule = AllowRule::parse("http://host/public").unwrap();
        for escape in [
            "http://host/public/..%2fsecret.txt",
            "http://host/public/..%2Fsecret.txt",
            "http://host/public/%2e%2E%2fsecret.txt",
            "http://host/public/.%2e%5csecret.txt",
            "http://host/public/..%5Csecret.txt",
            "http://host/public/%252e%252e%252fsecret.txt",
            "http://host/public/..;/secret.txt",
            "http://host/public/%2f..%2f..%2fsecret.txt",
        ] {
            assert!(!rule.matches(&target(escape)), "{escape} is {:?}", decoded_path(&target(escape).path));
        }
        for inside in ["http://host/public/a%2fb.txt", "http://host/public/x/..%2fy", "http://host/public"] {
            assert!(rule.matches(&target(inside)), "{inside}");
        }
        assert!(AllowRule::parse("http://host").unwrap().matches(&target("http://host/a/..%2f..%2fb")), "no prefix");
        let policy = HttpPolicy { allow: vec![rule], ..Default::default() };
        assert_eq!(policy.path_outside(&target("http://host/private")), Some(vec!["/public"]));
        assert_eq!(policy.path_outside(&target("http://other/public")), None);
    }

    #[test]
    fn a_rule_names_its_origin_as_written() {
        for (rule, origin) in [
            ("https://api.example.com/v1", "https://api.example.com:443"),
            ("http://*.example.com:8080", "http://*.example.com:8080"),
            ("https://*", "https://*:443"),
            ("http://[::1]:9000/mcp", "http://[::1]:9000"),
        ] {
            assert_eq!(AllowRule::parse(rule).unwrap().origin(), origin);
        }
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
