//! reqwest clients for talking to the fakes: the workspace's reqwest has no TLS provider of its
//! own, so a bare `reqwest::Client::new()` panics; these are built with enrich's TLS
//! configuration ([`enrich_backends::tls`]), trusting no root (the fakes speak plain HTTP on
//! loopback).

use enrich_backends::tls;

/// A reqwest builder with enrich's TLS configuration, to add timeouts and the like to.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(tls::RootCertStore::empty()))
}

/// A reqwest client with enrich's TLS configuration and reqwest's defaults otherwise.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("a client with default settings builds")
}
