//! TLS to PostgreSQL, as libpq configures it: `sslmode` and `sslrootcert`
//! in `database.url`, over rustls. tokio-postgres knows only `disable`,
//! `prefer` and `require` (and no root certificates), so [`parse`] takes
//! both options out of the connection string, hands the rest to
//! tokio-postgres, and builds the one connector every connection of the
//! process uses (the pool's and the control connection).
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked; checked like `verify-ca` when `sslrootcert` is given (as libpq does) |
//! | `verify-ca` | always | signed by a root of `sslrootcert` |
//! | `verify-full` | always | signed by a root, and issued for the host name in the URL |
//!
//! `sslrootcert` is a PEM file, or `system` for the Mozilla roots bundled
//! with the gateway (also used by `verify-*` when `sslrootcert` is absent).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values the gateway honours (`allow` is refused: it
/// tries plaintext first, which no deployment should want).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// A PEM file.
    File(String),
    /// The bundled Mozilla roots (`sslrootcert=system`).
    System,
}

/// The TLS options taken out of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    mode: SslMode,
    roots: Option<Roots>,
}

/// Parse `url` into the driver's config (with the matching driver `sslmode`)
/// and the connector for every connection. `Err` says which option is wrong
/// and never repeats the URL (it may hold a password).
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    let (rest, options) = split(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // The driver's causes name the option, never its value.
        let cause = std::error::Error::source(&e).map_or_else(String::new, |c| format!(" ({c})"));
        format!("the database URL is not a valid PostgreSQL connection string{cause}")
    })?;
    config.ssl_mode(match options.mode {
        SslMode::Disable => DriverMode::Disable,
        SslMode::Prefer => DriverMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
    });
    Ok((config, MakeRustlsConnect::new(client_config(&options)?)))
}

/// The rustls client configuration for `options`.
fn client_config(options: &Options) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS for the database: {e}"))?;
    let check = match (options.mode, &options.roots) {
        (SslMode::VerifyFull, _) => Check::Full,
        (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Check::Chain,
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Check::Nothing,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(AnyCertificate(provider)),
        Check::Chain | Check::Full => {
            let roots = Arc::new(roots(options.roots.as_ref().unwrap_or(&Roots::System))?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if check == Check::Full { webpki } else { Arc::new(ChainOnly(webpki)) }
        }
    };
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    Full,
}

fn roots(roots: &Roots) -> Result<RootCertStore, String> {
    match roots {
        Roots::System => Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
        Roots::File(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| format!("sslrootcert: cannot read certificates from {path}: {e}"))?;
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("sslrootcert: {path} holds no usable PEM certificate"));
            }
            Ok(store)
        }
    }
}

/// `prefer` and `require` without roots: encrypted, the certificate taken as
/// it is (libpq's meaning). The handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// checked. webpki checks the chain before the name, so a name error means
/// the chain already passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Take `sslmode` and `sslrootcert` out of a connection string, in either
/// of libpq's forms (`postgres://…?k=v&…` or `k=v k='v v'`).
fn split(url: &str) -> Result<(String, Options), String> {
    let mut mode = None;
    let mut roots = None;
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = Some(match value.as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    "allow" => return Err("sslmode=allow is not supported; use prefer or require".into()),
                    other => {
                        return Err(format!(
                            "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                        ));
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                roots = Some(if value == "system" { Roots::System } else { Roots::File(value) });
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let rest = if let Some((base, query)) = url.split_once('?').filter(|_| is_url) {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
            if !take(key, value)? {
                kept.push(pair);
            }
        }
        if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) }
    } else if is_url {
        url.to_string()
    } else {
        let mut kept = Vec::new();
        for (key, value, raw) in key_values(url)? {
            if !take(key, value)? {
                kept.push(raw);
            }
        }
        kept.join(" ")
    };
    let mode = mode.unwrap_or(SslMode::Prefer);
    Ok((rest, Options { mode, roots }))
}

/// The `key=value` pairs of libpq's keyword form, each with its raw text:
/// values may be single-quoted, with `\'` and `\\` escapes.
fn key_values(text: &str) -> Result<Vec<(&str, String, &str)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let eq = rest.find('=').ok_or("the database URL has a keyword without `=`")?;
        let key = rest[..eq].trim();
        rest = rest[eq + 1..].trim_start();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = rest.len();
        let mut closed = !quoted;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    closed = true;
                    end = i + 1;
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = i;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            return Err("the database URL has an unterminated quoted value".into());
        }
        let raw = &start[..start.len() - rest.len() + end];
        pairs.push((key, value, raw.trim()));
        rest = rest[end..].trim_start();
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: SslMode, roots: Option<Roots>) -> Options {
        Options { mode, roots }
    }

    #[test]
    fn url_options_are_taken_out_and_the_rest_is_kept() {
        let (rest, got) =
            split("postgres://u:p@db:5432/x?sslmode=verify-full&application_name=a&sslrootcert=%2Fetc%2Fca%20x.pem")
                .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/x?application_name=a");
        assert_eq!(got, options(SslMode::VerifyFull, Some(Roots::File("/etc/ca x.pem".into()))));
        let (rest, got) = split("postgres://u@db/x?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), got), ("postgres://u@db/x", options(SslMode::Require, None)));
        let (rest, got) = split("postgresql://u@db/x").unwrap();
        assert_eq!((rest.as_str(), got), ("postgresql://u@db/x", options(SslMode::Prefer, None)));
        assert_eq!(split("postgres://db/x?sslrootcert=system").unwrap().1.roots, Some(Roots::System));
    }

    #[test]
    fn keyword_options_are_taken_out_with_quotes_and_escapes() {
        let (rest, got) =
            split("host=db  sslmode=verify-ca password='it\\'s' sslrootcert='/a b/c\\'d.pem' dbname=x").unwrap();
        assert_eq!(rest, "host=db password='it\\'s' dbname=x");
        assert_eq!(got, options(SslMode::VerifyCa, Some(Roots::File("/a b/c'd.pem".into()))));
        assert!(split("host=db sslrootcert='/open").is_err());
    }

    #[test]
    fn unknown_modes_are_refused_by_name() {
        let err = split("postgres://u:hunter2@db/x?sslmode=verify").unwrap_err();
        assert!(err.contains("sslmode") && !err.contains("hunter2"), "{err}");
        assert!(split("postgres://db/x?sslmode=allow").unwrap_err().contains("allow"));
    }

    #[test]
    fn modes_reach_the_driver_and_roots_must_be_readable() {
        let (config, _) = parse("postgres://u@db/x?sslmode=verify-full&sslrootcert=system").unwrap();
        assert_eq!(config.get_ssl_mode(), DriverMode::Require);
        let (config, _) = parse("postgres://u@db/x?sslmode=disable").unwrap();
        assert_eq!(config.get_ssl_mode(), DriverMode::Disable);
        let (config, _) = parse("postgres://u@db/x").unwrap();
        assert_eq!(config.get_ssl_mode(), DriverMode::Prefer);
        let err = parse("postgres://u@db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").err().unwrap();
        assert!(err.contains("sslrootcert") && err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = parse(&format!("postgres://u@db/x?sslmode=verify-full&sslrootcert={}", empty.display())).err();
        assert!(err.unwrap().contains("no usable PEM certificate"));
    }
}
