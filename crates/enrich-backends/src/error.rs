//! The crate's error for everything that is not one attempt's failure.

use crate::failure::BackendError;

/// Setting up backends failed (per-attempt failures are [`BackendError`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum BackendsError {
    /// A backend names a provider no registered adapter serves.
    #[error(
        "backend '{backend}' in chain '{chain}' uses provider '{provider}', which no adapter \
         provides; known providers: {known}; fix its `provider` key"
    )]
    UnknownProvider {
        /// The backend entry's name.
        backend: String,
        /// The chain the entry belongs to.
        chain: String,
        /// The provider it names.
        provider: String,
        /// The registered providers, comma-separated (or "none").
        known: String,
    },
    /// The provider's factory refused the backend entry (bad URL, missing API key, …).
    #[error(
        "cannot set up backend '{backend}' in chain '{chain}' (provider '{provider}'): {source}"
    )]
    Build {
        /// The backend entry's name.
        backend: String,
        /// The chain the entry belongs to.
        chain: String,
        /// The provider whose factory failed.
        provider: String,
        /// What the factory said.
        #[source]
        source: Box<BackendError>,
    },
    /// The system's certificate store gave no usable root certificate, so no `https://` backend
    /// can be reached ([`tls::system_roots`](crate::tls), feature `tls`).
    #[error(
        "none of the system's root certificates could be loaded ({problems}); install the \
         system's CA certificates (Debian and Ubuntu: the ca-certificates package), or set \
         SSL_CERT_FILE to a PEM file of trusted certificates"
    )]
    NoRootCertificates {
        /// What went wrong reading the store.
        problems: String,
    },
}
