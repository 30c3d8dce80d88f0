//! Keeping an injected credential out of what a guest reads: a server that
//! reflects the request (an echo endpoint, an error page quoting the header)
//! hands it back, spelled as sent or encoded. Every spelling of the secret
//! below is replaced, in the body, in header values (any bytes, UTF-8 or
//! not), and a header whose name carries it is dropped:
//!
//! - as sent;
//! - percent-encoded, any mix of encoded and plain characters, hex in either
//!   case, `+` for a space;
//! - JSON-escaped, any mix: `\uXXXX` for any character (a surrogate pair past
//!   the BMP), `\/`, `\"`, `\\` and the short control escapes.
//!
//! Compressed bodies are not searched: requests that carry a credential ask
//! for `identity`, and `send` refuses a compressed answer to them.

/// What replaces a credential's value wherever it shows up in a response.
pub(super) const REDACTED: &str = "[REDACTED]";

/// Replace every spelling of `secret` in header values and the body; drop
/// headers whose name carries it.
pub(super) fn redact(headers: &mut http::HeaderMap, body: &mut Vec<u8>, secret: &str) {
    if secret.is_empty() {
        return;
    }
    let named: Vec<http::HeaderName> =
        headers.keys().filter(|n| replaced(n.as_str().as_bytes(), secret).is_some()).cloned().collect();
    for name in named {
        headers.remove(name);
    }
    for value in headers.values_mut() {
        if let Some(clean) = replaced(value.as_bytes(), secret) {
            // The bytes kept were a valid value and the marker is plain text,
            // so this holds; an empty value is the safe fallback.
            *value = http::HeaderValue::from_bytes(&clean).unwrap_or_else(|_| http::HeaderValue::from_static(""));
        }
    }
    if let Some(clean) = replaced(body, secret) {
        *body = clean;
    }
}

/// `text` with each spelling of `secret` replaced, or `None` when it has none.
fn replaced(text: &[u8], secret: &str) -> Option<Vec<u8>> {
    let first = secret.chars().next()?;
    let mut first_bytes = [0u8; 4];
    let lead = first.encode_utf8(&mut first_bytes).as_bytes()[0];
    let mut out: Option<Vec<u8>> = None;
    let mut scratch = (Vec::new(), Vec::new());
    let (mut i, mut copied) = (0, 0);
    while i < text.len() {
        // Only these bytes can start a spelling: skip the rest cheaply.
        let maybe = matches!(text[i], b'%' | b'\\' | b'+') || text[i] == lead;
        match maybe.then(|| spelled_at(text, i, secret, &mut scratch)).flatten() {
            Some(end) => {
                let out = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
                out.extend_from_slice(&text[copied..i]);
                out.extend_from_slice(REDACTED.as_bytes());
                (i, copied) = (end, end);
            }
            None => i += 1,
        }
    }
    out.map(|mut out| {
        out.extend_from_slice(&text[copied..]);
        out
    })
}

/// Where the longest spelling of `secret` that starts at `at` ends.
/// `scratch`: two buffers reused from call to call (this runs at many
/// positions of a body of megabytes).
fn spelled_at(text: &[u8], at: usize, secret: &str, scratch: &mut (Vec<usize>, Vec<usize>)) -> Option<usize> {
    // Every place a spelling of the characters so far can end (forms of one
    // character can differ in length, and `%` is both plain and an escape).
    let (ends, next) = scratch;
    ends.clear();
    ends.push(at);
    for c in secret.chars() {
        next.clear();
        for &p in ends.iter() {
            char_spellings(text, p, c, next);
        }
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            return None;
        }
        std::mem::swap(ends, next);
    }
    ends.iter().copied().max()
}

/// Push where each spelling of `c` that starts at `at` ends.
fn char_spellings(text: &[u8], at: usize, c: char, ends: &mut Vec<usize>) {
    let mut buf = [0u8; 4];
    let plain = c.encode_utf8(&mut buf).as_bytes();
    if text[at..].starts_with(plain) {
        ends.push(at + plain.len());
    }
    // Percent-encoded, byte by byte of its UTF-8.
    let mut p = at;
    if plain.iter().all(|b| {
        let ok = text.get(p) == Some(&b'%') && hex(text, p + 1, 2) == Some(u32::from(*b));
        p += 3;
        ok
    }) {
        ends.push(p);
    }
    if c == ' ' && text.get(at) == Some(&b'+') {
        ends.push(at + 1);
    }
    // `\uXXXX`, one per UTF-16 unit.
    let mut units = [0u16; 2];
    let mut p = at;
    if c.encode_utf16(&mut units).iter().all(|u| {
        let ok = text.get(p..p + 2) == Some(b"\\u") && hex(text, p + 2, 4) == Some(u32::from(*u));
        p += 6;
        ok
    }) {
        ends.push(p);
    }
    let short = match c {
        '"' => Some(b'"'),
        '\\' => Some(b'\\'),
        '/' => Some(b'/'),
        '\u{8}' => Some(b'b'),
        '\u{c}' => Some(b'f'),
        '\n' => Some(b'n'),
        '\r' => Some(b'r'),
        '\t' => Some(b't'),
        _ => None,
    };
    if let Some(e) = short
        && text.get(at) == Some(&b'\\')
        && text.get(at + 1) == Some(&e)
    {
        ends.push(at + 2);
    }
}

/// The `digits` hex digits (either case) at `text[at..]`.
fn hex(text: &[u8], at: usize, digits: usize) -> Option<u32> {
    let s = std::str::from_utf8(text.get(at..at + digits)?).ok()?;
    s.bytes().all(|b| b.is_ascii_hexdigit()).then(|| u32::from_str_radix(s, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &[u8], secret: &str) -> String {
        let mut body = text.to_vec();
        redact(&mut http::HeaderMap::new(), &mut body, secret);
        String::from_utf8_lossy(&body).into_owned()
    }

    #[test]
    fn a_secret_is_redacted_from_headers_and_body() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-echo", "Bearer s3cret-value".parse().unwrap());
        headers.insert("x-raw", http::HeaderValue::from_bytes(b"\xff s3cret-value \xfe").unwrap());
        headers.insert("x-s3cret-value", "1".parse().unwrap());
        let mut body = br#"{"auth":"Bearer s3cret-value","again":"s3cret-value"}"#.to_vec();
        redact(&mut headers, &mut body, "s3cret-value");
        assert_eq!(headers["x-echo"], "Bearer [REDACTED]");
        assert_eq!(headers["x-raw"].as_bytes(), b"\xff [REDACTED] \xfe", "a value that is not UTF-8");
        assert!(!headers.contains_key("x-s3cret-value"), "a header named after the secret is dropped");
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"auth":"Bearer [REDACTED]","again":"[REDACTED]"}"#);
    }

    #[test]
    fn encoded_spellings_are_redacted() {
        let secret = "sk/a+b c\"é😀";
        for spelled in [
            // JSON: every character escaped (upper and lower case hex), and mixes.
            r#"\u0073\u006B\u002f\u0061\u002b\u0062\u0020\u0063\u0022\u00e9\ud83d\ude00"#,
            r#"sk\/a+b c\"\u00e9\uD83D\uDE00"#,
            r#"s\u006b\/a+b\u0020c\"é😀"#,
            // Percent-encoding: all, mixed, lower case, `+` for the space.
            "%73%6B%2F%61%2B%62%20%63%22%C3%A9%F0%9F%98%80",
            "sk%2fa%2bb+c%22%c3%a9%f0%9f%98%80",
            "sk/a+b c\"é😀",
        ] {
            let out = body(format!("<{spelled}>").as_bytes(), secret);
            assert_eq!(out, "<[REDACTED]>", "{spelled}");
        }
        assert_eq!(body(b"100% sure", "100%"), "[REDACTED] sure", "a plain `%` in the secret");
        assert_eq!(body(b"100%25 sure", "100%"), "[REDACTED] sure", "the longest spelling wins");
        assert_eq!(body(b"100%2525", "100%25"), "[REDACTED]", "`%` and `%25` both spell `%`");
        assert_eq!(body(b"sk/a+b", secret), "sk/a+b", "a prefix alone stays");
        assert_eq!(body(b"nothing here", ""), "nothing here");
    }

    #[test]
    fn a_body_of_near_misses_is_scanned_to_its_end() {
        // Every position starts a spelling that fails late: the worst case.
        let secret = "sk-test-9f8e7d6c5b4a";
        let mut text = Vec::new();
        while text.len() < 2 << 20 {
            text.extend_from_slice(b"sk-test-9f8e7d6c5b4%\\u0073k-tes");
        }
        text.extend_from_slice(secret.as_bytes());
        let started = std::time::Instant::now();
        let out = body(&text, secret);
        eprintln!("scanned {} MiB in {:?}", text.len() >> 20, started.elapsed());
        assert!(out.ends_with("[REDACTED]") && out.matches("[REDACTED]").count() == 1);
    }
}
