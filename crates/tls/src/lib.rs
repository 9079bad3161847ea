//! `serin-tls`: Serin's TLS, inbound and outbound, on rustls with the `ring`
//! provider only.
//!
//! - [`server_config`]: a rustls [`ServerConfig`] from PEM certificate-chain
//!   and key files; every error names the file and what is wrong with it.
//! - [`TlsListener`]: a TCP listener whose accepted connections come out
//!   TLS-handshaken (handshakes run off the accept path, with a deadline, so a
//!   slow or plain-HTTP client never holds up the next one).
//! - [`https_connector`] / [`client`]: a hyper-util connector (hyper-rustls,
//!   HTTP/1.1) that speaks both `http://` and `https://`, trusting the
//!   system's roots plus optional extra CA files ([`ClientOptions`]).
//! - [`ProbeTlsConnector`]: TLS for Kubernetes `httpGet` probes and hooks with
//!   `scheme: HTTPS` only. Like the kubelet it does not verify the server's
//!   certificate; nothing else may use it.
//!
//! The crypto provider is passed to every builder (never installed as the
//! process default), so nothing here depends on global state and no crate can
//! pull aws-lc-rs in behind our back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

pub use hyper_rustls::HttpsConnector;
pub use rustls::ServerConfig;
pub use tokio_rustls::client::TlsStream as ClientTlsStream;
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

/// A TLS file or setting Serin cannot use. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{path}: not a valid PEM file: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// No `CERTIFICATE` block in a file that should hold certificates.
    #[error("{path}: no PEM CERTIFICATE block found{hint}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// A hint when the file holds a private key instead.
        hint: &'static str,
    },
    /// No private key in the key file.
    #[error(
        "{path}: no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block){hint}"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// A hint when the file holds a certificate instead.
        hint: &'static str,
    },
    /// A certificate could not be used as a trust anchor.
    #[error("{path}: certificate #{index} cannot be trusted as a CA: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The key does not fit the certificate, or rustls refused the pair.
    #[error("{cert} with {key}: {source}")]
    Pair {
        /// Certificate-chain file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What rustls said (e.g. the key does not match the certificate).
        source: rustls::Error,
    },
    /// A server name that is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// rustls refused the protocol versions of the provider (a build problem).
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The one crypto provider Serin uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in order (a chain: leaf first; or a CA
/// bundle). Errors when the file holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        let hint = if PrivateKeyDer::from_pem_slice(&bytes).is_ok() {
            " (this file holds a private key: are cert and key swapped?)"
        } else {
            ""
        };
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            hint,
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => Ok(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            let hint = if CertificateDer::pem_slice_iter(&bytes).any(|c| c.is_ok()) {
                " (this file holds a certificate: are cert and key swapped?)"
            } else {
                ""
            };
            Err(TlsError::NoKey {
                path: path.to_path_buf(),
                hint,
            })
        }
        Err(e) => Err(TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// A server configuration from a PEM certificate chain (leaf first) and its
/// PEM private key. HTTP/1.1 is offered over ALPN; TLS 1.2 and 1.3.
pub fn server_config(cert_chain: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert_chain)?;
    let key_der = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        // Also checks that the key is the certificate's.
        .with_single_cert(certs, key_der)
        .map_err(|source| TlsError::Pair {
            cert: cert_chain.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the first certificate of a PEM file is valid for `name` (a DNS
/// name or an IP address), e.g. to pick the name local clients verify.
pub fn cert_valid_for(cert_chain: &Path, name: &str) -> Result<bool, TlsError> {
    let certs = load_certs(cert_chain)?;
    let server_name =
        ServerName::try_from(name).map_err(|_| TlsError::ServerName(name.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Ok(false);
    };
    let parsed =
        rustls::server::ParsedCertificate::try_from(leaf).map_err(|source| TlsError::BadCa {
            path: cert_chain.to_path_buf(),
            index: 1,
            source,
        })?;
    Ok(rustls::client::verify_server_name(&parsed, &server_name).is_ok())
}

/// The operating system's trust store, loaded once per process.
///
/// rustls-native-certs rather than webpki-roots: Serin runs on the user's own
/// machine, so it should trust what that machine trusts — CAs added by the
/// administrator (corporate proxies, internal PKI), distribution updates and
/// removals, and `SSL_CERT_FILE` / `SSL_CERT_DIR` — instead of a Mozilla list
/// frozen at build time. Unreadable entries are logged and skipped; a machine
/// with no store at all still reaches hosts signed by an extra CA.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "system trust store: skipped an entry");
        }
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        if ignored > 0 {
            tracing::debug!(added, ignored, "system trust store: unparsable certificates ignored");
        }
        if added == 0 {
            tracing::warn!(
                "no system CA certificates found (install ca-certificates or set SSL_CERT_FILE); https:// works only with an extra CA"
            );
        }
        store
    })
}

/// What an outbound client trusts and how it names the server.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Extra PEM files of CA certificates (each may hold several), trusted
    /// besides the system roots.
    pub extra_cas: Vec<PathBuf>,
    /// Do not trust the system roots (only `extra_cas`).
    pub no_system_roots: bool,
    /// Verify the server's certificate against this name instead of the
    /// URL's host (e.g. `localhost` while connecting to 127.0.0.1).
    pub server_name: Option<String>,
}

impl ClientOptions {
    /// System roots plus the CAs in these files.
    pub fn with_cas<P: AsRef<Path>>(cas: impl IntoIterator<Item = P>) -> Self {
        ClientOptions {
            extra_cas: cas.into_iter().map(|p| p.as_ref().to_path_buf()).collect(),
            ..ClientOptions::default()
        }
    }
}

/// A rustls client configuration: system roots (unless turned off) plus the
/// extra CAs; TLS 1.2 and 1.3. No ALPN: [`https_connector`] sets it (and
/// hyper-rustls insists on doing so itself).
pub fn client_config(options: &ClientOptions) -> Result<ClientConfig, TlsError> {
    let mut roots = if options.no_system_roots {
        RootCertStore::empty()
    } else {
        system_roots().clone()
    };
    for path in &options.extra_cas {
        for (i, cert) in load_certs(path)?.into_iter().enumerate() {
            roots.add(cert).map_err(|source| TlsError::BadCa {
                path: path.clone(),
                index: i + 1,
                source,
            })?;
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP/1.1 connector for both `http://` and `https://` URLs.
pub fn https_connector(options: &ClientOptions) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let config = client_config(options)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match &options.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.as_str())
                .map_err(|_| TlsError::ServerName(name.clone()))?
                .to_owned();
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_http1().wrap_connector(http_connector()))
}

/// A pooling hyper client over [`https_connector`]. Build it once and clone
/// it: clones share the connection pool.
pub fn client<B>(
    options: &ClientOptions,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, TlsError>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    Ok(Client::builder(TokioExecutor::new()).build(https_connector(options)?))
}

/// [`client`] trusting the system roots only. Infallible: building fails only
/// on unreadable extra CA files, and there are none.
pub fn system_client<B>() -> Client<HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        // ring implements TLS 1.2 and 1.3: no error is possible here.
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(system_roots().clone())
        .with_no_client_auth();
    Client::builder(TokioExecutor::new()).build(connector(config))
}

fn connector(config: ClientConfig) -> HttpsConnector<HttpConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http_connector())
}

fn http_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    // hyper-rustls needs the connector to accept https:// URIs.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http
}

/// TLS for Kubernetes `httpGet` probes and lifecycle hooks with `scheme:
/// HTTPS`, and for nothing else.
///
/// The kubelet probes with `InsecureSkipVerify: true`: a probe asks "is this
/// container up?", not "is this server who it claims to be?", and containers
/// usually serve self-signed or internally issued certificates for names that
/// do not match the address the kubelet dials. Manifests rely on that, so a
/// verifying probe would keep working pods unready forever. This connector
/// does the same: any certificate chain is accepted, for any name, expired or
/// not. The handshake itself is still checked (the server must prove it holds
/// the key of the certificate it sent), as Go's `crypto/tls` does.
///
/// As in the kubelet (Go's HTTP client): SNI is the host the probe dials (its
/// `host` field) unless that is an IP address, in which case no SNI is sent;
/// a `Host` header only changes the HTTP `Host`. TLS 1.2 and 1.3, ALPN
/// `http/1.1`, and no session resumption, so every probe is a full handshake
/// on a fresh connection as the kubelet's are.
#[derive(Clone)]
pub struct ProbeTlsConnector {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for ProbeTlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTlsConnector").finish_non_exhaustive()
    }
}

impl ProbeTlsConnector {
    /// Builds the connector (ring provider, no certificate verification).
    pub fn new() -> Result<Self, TlsError> {
        let provider = provider();
        let verifier = Arc::new(ProbeCertificatesUnverified(Arc::clone(&provider)));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(ProbeTlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the TLS handshake over `tcp`. `host` is what the probe dialled:
    /// a DNS name is sent as SNI; an IP address (or a name rustls cannot
    /// send) means no SNI.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<ClientTlsStream<TcpStream>> {
        let name = match ServerName::try_from(host.to_string()) {
            Ok(n) => n,
            // rustls sends no SNI for an IP address: the peer's stands in.
            Err(_) => ServerName::IpAddress(tcp.peer_addr()?.ip().into()),
        };
        self.connector.connect(name, tcp).await
    }
}

/// Accepts every server certificate: see [`ProbeTlsConnector`] for why this
/// is right for probes (and for nothing else). Handshake signatures are still
/// verified with the provider's algorithms.
#[derive(Debug)]
struct ProbeCertificatesUnverified(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ProbeCertificatesUnverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// Accepts TCP connections and hands them out after a successful TLS
/// handshake. Failed handshakes (plain HTTP, unknown CA on the client side,
/// timeouts) are logged at debug level and dropped. Dropping the listener
/// stops accepting.
pub struct TlsListener {
    rx: mpsc::Receiver<(ServerTlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` (call inside a tokio runtime).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            drop(permit);
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local_addr,
            task,
        })
    }

    /// The next handshaken connection and its peer address.
    pub async fn accept(&mut self) -> (ServerTlsStream<TcpStream>, SocketAddr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A throwaway PKI for tests: a CA and a server certificate it signed.
#[cfg(feature = "test-pki")]
pub mod testing {
    use std::path::{Path, PathBuf};

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    /// PEM files written by [`TestPki::new`].
    #[derive(Clone, Debug)]
    pub struct TestPki {
        /// The CA certificate (trust this).
        pub ca: PathBuf,
        /// The server certificate, signed by the CA.
        pub cert: PathBuf,
        /// The server's private key (PKCS#8).
        pub key: PathBuf,
    }

    impl TestPki {
        /// Writes `<prefix>-ca.pem`, `<prefix>-cert.pem` and `<prefix>-key.pem`
        /// into `dir`: a fresh CA and a server certificate for `names` (DNS
        /// names or IP addresses). Panics on failure: tests only.
        pub fn new(dir: &Path, prefix: &str, names: &[&str]) -> TestPki {
            let ca_key = KeyPair::generate().expect("CA key");
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(DnType::CommonName, format!("Serin test CA {prefix}"));
            let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
            let issuer = Issuer::new(ca_params, ca_key);
            let key = KeyPair::generate().expect("server key");
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(names).expect("server params");
            params
                .distinguished_name
                .push(DnType::CommonName, "serin test server");
            let cert = params.signed_by(&key, &issuer).expect("server cert");
            let pki = TestPki {
                ca: dir.join(format!("{prefix}-ca.pem")),
                cert: dir.join(format!("{prefix}-cert.pem")),
                key: dir.join(format!("{prefix}-key.pem")),
            };
            std::fs::create_dir_all(dir).expect("test dir");
            std::fs::write(&pki.ca, ca_cert.pem()).expect("write CA");
            std::fs::write(&pki.cert, cert.pem()).expect("write cert");
            std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
            pki
        }
    }

    /// A self-signed (non-CA) certificate for `names` and its key, as PEM.
    pub fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).expect("self-signed cert");
        (c.cert.pem(), c.signing_key.serialize_pem())
    }
}
