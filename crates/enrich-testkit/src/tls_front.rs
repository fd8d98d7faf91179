//! [`TlsFront`]: HTTPS on loopback in front of any plain-HTTP server (a [`FakeOllama`], a
//! wiremock), with a test certificate authority no system trusts ([`test_ca_roots`]).
//!
//! [`FakeOllama`]: crate::FakeOllama

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ProtocolVersion, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The test certificate authority (see `fixtures/tls/README.md`).
const CA: &[u8] = include_bytes!("../fixtures/tls/ca.pem");
/// A certificate for `localhost` and `127.0.0.1` the test CA signed, and its key.
const LEAF: &[u8] = include_bytes!("../fixtures/tls/localhost.pem");
const LEAF_KEY: &[u8] = include_bytes!("../fixtures/tls/localhost.key");

/// What a [`TlsFront`] saw of one completed handshake: the protocol version and the ALPN
/// protocol.
pub type Handshake = (Option<ProtocolVersion>, Option<Vec<u8>>);

/// The test CA as the only trusted root: hand it to
/// [`enrich_backends::tls::client_config`] to trust a [`TlsFront`].
pub fn test_ca_roots() -> RootCertStore {
    // Read as the system's store is read, so the adapters' path for roots is the one tested.
    let mut found = rustls_native_certs::CertificateResult::default();
    found.certs = CertificateDer::pem_slice_iter(CA)
        .filter_map(Result::ok)
        .collect();
    enrich_backends::tls::roots_from(found).expect("the test CA parses")
}

/// A TLS server on a loopback port (rustls with ring, TLS 1.3 and 1.2, HTTP/1.1 by ALPN),
/// certified for `localhost` and `127.0.0.1` by the test CA, that hands each connection's
/// plaintext to a backend address and records every completed handshake. It runs until the
/// runtime stops.
pub struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsFront {
    /// Starts a front for `backend`.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub async fn start(backend: SocketAddr) -> io::Result<Self> {
        let chain = CertificateDer::pem_slice_iter(LEAF)
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let key = PrivateKeyDer::from_pem_slice(LEAF_KEY).map_err(io::Error::other)?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&handshakes);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let handshake = (
                        session.protocol_version(),
                        session.alpn_protocol().map(<[u8]>::to_vec),
                    );
                    seen.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(handshake);
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(Self { addr, handshakes })
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every handshake completed so far, in order.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
