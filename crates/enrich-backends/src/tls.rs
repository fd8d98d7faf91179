//! The TLS every adapter's HTTP client speaks: rustls with the **ring** crypto provider, handed
//! over explicitly, and the system's root certificates (feature `tls`).
//!
//! reqwest is built without a provider of its own (its `rustls` feature would bring aws-lc-rs,
//! whose C build costs most of a minute of every cold build on 2 cores, where ring costs a few
//! seconds). A reqwest client built without a configuration from here would need a process-wide
//! default provider, so every client is built with one:
//!
//! ```ignore
//! # fn build(url: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use enrich_backends::tls;
//!
//! let client = reqwest::Client::builder()
//!     .tls_backend_preconfigured(tls::client_config_for(url)?)
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! The system store rather than a bundled copy of Mozilla's roots: it is where users behind a
//! TLS-inspecting proxy, or of a private certificate authority, already added the certificate
//! their traffic is signed with, and it gets the distribution's updates. rustls-native-certs
//! reads `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the distribution's OpenSSL locations.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

pub use rustls::{ClientConfig, RootCertStore};
use rustls_native_certs::CertificateResult;

use crate::error::BackendsError;

/// Makes ring the process-wide default rustls provider, unless a provider is already installed.
///
/// A binary that hosts adapters calls this once at start (the `enrich` binary does), so a
/// third-party adapter that builds a plain `reqwest::Client::new()` instead of using
/// [`client_config_for`] gets ring too rather than a panic for want of a provider. The
/// workspace's own clients never rely on it: they hand their configuration over explicitly.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // `Err` means another thread installed one first, which is the goal as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// rustls with the ring provider, TLS 1.3 and 1.2, trusting `roots`, offering HTTP/1.1 by ALPN.
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring's provider supports TLS 1.3 and 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The configuration for a client of `url`: [`client_config`] trusting the [`system_roots`] for
/// an `https://` URL, and no root for any other (which never speaks TLS, so needs no store).
///
/// # Errors
///
/// [`BackendsError::NoRootCertificates`] for an `https://` URL when the system's store gives no
/// usable certificate.
pub fn client_config_for(url: &str) -> Result<ClientConfig, BackendsError> {
    let https = url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let roots = if https {
        system_roots()?
    } else {
        RootCertStore::empty()
    };
    Ok(client_config(roots))
}

/// The system's root certificates, read now.
///
/// # Errors
///
/// [`BackendsError::NoRootCertificates`] when the store gives no usable certificate, saying
/// what went wrong reading it.
pub fn system_roots() -> Result<RootCertStore, BackendsError> {
    roots_from(rustls_native_certs::load_native_certs())
}

/// The trusted roots from what a certificate store gave: refused when none is usable, naming
/// what went wrong. A readable certificate is enough, whatever else failed.
///
/// # Errors
///
/// [`BackendsError::NoRootCertificates`] when `found` holds no certificate rustls can parse.
pub fn roots_from(found: CertificateResult) -> Result<RootCertStore, BackendsError> {
    let mut roots = RootCertStore::empty();
    let (_, unparsable) = roots.add_parsable_certificates(found.certs);
    if !roots.is_empty() {
        return Ok(roots);
    }
    let mut problems: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    if unparsable > 0 {
        problems.push(format!("{unparsable} certificates could not be parsed"));
    }
    if problems.is_empty() {
        problems.push("the store holds no certificate".to_owned());
    }
    Err(BackendsError::NoRootCertificates {
        problems: problems.join("; "),
    })
}

/// The TLS failure behind a transport error, if it is one: rustls's error, on its own or inside
/// the I/O error that carries it out of the handshake.
pub fn tls_failure<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut source = Some(err);
    while let Some(inner) = source {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An I/O error's `source` skips the error it wraps (which may be another I/O error).
        source = match inner
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
            None => inner.source(),
        };
    }
    None
}

/// Whether a transport error is a TLS certificate that no trusted root vouches for (expired,
/// self-signed, signed by a private certificate authority, for another name).
pub fn is_untrusted_certificate(err: &(dyn StdError + 'static)) -> bool {
    matches!(tls_failure(err), Some(rustls::Error::InvalidCertificate(_)))
}

/// What to do about a certificate [`is_untrusted_certificate`] refused.
pub const UNTRUSTED_CERTIFICATE_FIX: &str = "if the server or a TLS-inspecting proxy uses a \
     private certificate authority, add it to the system's root certificates or set \
     SSL_CERT_FILE to a PEM file holding it";

/// What to do about another failed handshake ([`tls_failure`]): most often an `https://` URL
/// for a server that speaks plain HTTP.
pub const HANDSHAKE_FIX: &str = "check that the server speaks HTTPS at that address (a \
     plain-HTTP server needs an http:// `url`)";

/// What to do about a transport error that is a TLS failure ([`UNTRUSTED_CERTIFICATE_FIX`] or
/// [`HANDSHAKE_FIX`]); `None` for any other error.
pub fn tls_fix(err: &(dyn StdError + 'static)) -> Option<&'static str> {
    match tls_failure(err)? {
        rustls::Error::InvalidCertificate(_) => Some(UNTRUSTED_CERTIFICATE_FIX),
        _ => Some(HANDSHAKE_FIX),
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;

    use super::*;

    #[test]
    fn the_default_provider_is_ring_once_installed_and_an_earlier_one_is_kept() {
        install_default_provider();
        let installed = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(installed), suites(&ring));
        // A second call leaves the installed provider in place.
        install_default_provider();
        let again = rustls::crypto::CryptoProvider::get_default().expect("still installed");
        assert!(Arc::ptr_eq(installed, again));
        // The default path of rustls, which a plain reqwest client takes, now builds.
        let config = ClientConfig::builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn the_store_must_give_at_least_one_root() {
        let check = |found: CertificateResult, expected: Result<usize, &str>| {
            let result = roots_from(found)
                .map(|roots| roots.len())
                .map_err(|err| err.to_string());
            match expected {
                Ok(roots) => assert_eq!(result, Ok(roots)),
                Err(needle) => {
                    let err = result.unwrap_err();
                    assert!(
                        err.starts_with("none of the system's root certificates could be loaded")
                            && err.contains(needle)
                            && err.contains("SSL_CERT_FILE"),
                        "{needle:?} not in {err}"
                    );
                }
            }
        };
        let unreadable = || rustls_native_certs::Error {
            context: "failed to read PEM from file",
            kind: rustls_native_certs::ErrorKind::Io {
                inner: io::Error::from(io::ErrorKind::PermissionDenied),
                path: "/etc/ssl/certs/ca-certificates.crt".into(),
            },
        };

        check(
            CertificateResult::default(),
            Err("(the store holds no certificate)"),
        );
        let mut failed = CertificateResult::default();
        failed.errors.push(unreadable());
        check(failed, Err("/etc/ssl/certs/ca-certificates.crt"));
        let mut garbage = CertificateResult::default();
        garbage.certs.push(CertificateDer::from(vec![1, 2, 3]));
        check(garbage, Err("1 certificates could not be parsed"));
        // A readable certificate is enough, whatever else failed: the OpenAI adapter's TLS tests
        // trust their test CA through `roots_from`.
    }

    #[test]
    fn plain_http_needs_no_store_and_every_client_offers_http_1_1() {
        let config = client_config_for("http://gpu:11434").unwrap();
        assert!(config.alpn_protocols == [b"http/1.1".to_vec()]);
        assert_eq!(
            client_config(RootCertStore::empty()).alpn_protocols.len(),
            1
        );
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = io::Error::other(tls);
        assert!(is_untrusted_certificate(&io));
        let other = io::Error::other(rustls::Error::HandshakeNotComplete);
        assert!(tls_failure(&other).is_some());
        assert!(!is_untrusted_certificate(&other));
        assert!(tls_failure(&io::Error::from(io::ErrorKind::ConnectionRefused)).is_none());
        // The connector wraps the handshake's I/O error once more.
        let twice = io::Error::other(io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired,
        )));
        assert!(is_untrusted_certificate(&twice));
        assert_eq!(tls_fix(&twice), Some(UNTRUSTED_CERTIFICATE_FIX));
        assert_eq!(tls_fix(&other), Some(HANDSHAKE_FIX));
        assert_eq!(
            tls_fix(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            None
        );
    }
}
