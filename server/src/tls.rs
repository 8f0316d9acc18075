//! TLS: the gRPC and HTTP listeners' certificates, optional client
//! certificates (mTLS), the client options of c360's own commands, and the
//! start-up check that refuses plaintext over a network.
//!
//! gRPC uses tonic's rustls acceptor; the HTTP listener (health, metrics) an
//! axum [`Listener`] that completes handshakes on tasks of their own, so a
//! slow or silent peer holds up nobody else's connection.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use axum::serve::Listener;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::files::read;

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs rustls' process-wide crypto provider (ring), once. Every TLS
/// client and server in the process (tonic, sqlx, redis) shares it.
pub fn install_crypto_provider() {
    // Fails only when one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the listeners' certificate, key and client CA come from.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsFiles {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA (PEM) whose client certificates gRPC callers must present.
    pub client_ca: Option<PathBuf>,
    /// Callers without a client certificate are accepted too (one they do
    /// present must still verify).
    pub client_auth_optional: bool,
}

/// The listeners' TLS, loaded and checked at start.
#[derive(Clone)]
pub struct ServerTls {
    /// tonic's acceptor settings for gRPC.
    pub grpc: ServerTlsConfig,
    /// The HTTP listener's acceptor (server certificate only: probes and
    /// scrapers rarely present client certificates).
    pub http: TlsAcceptor,
}

impl ServerTls {
    /// Reads and checks the files; a bad file fails here, not at the first
    /// connection.
    pub fn load(files: &ServerTlsFiles) -> anyhow::Result<Self> {
        install_crypto_provider();
        let cert_pem = read(&files.cert, "TLS certificate")?;
        let key_pem = read(&files.key, "TLS key")?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("the TLS certificate {} is not PEM: {e}", files.cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "the TLS certificate file {} holds no certificate", files.cert.display());
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| anyhow::anyhow!("the TLS key {} is not a PEM private key: {e}", files.key.display()))?;
        let mut http = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| anyhow::anyhow!("the TLS certificate and key do not go together: {e}"))?;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut grpc = ServerTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem));
        if let Some(ca) = &files.client_ca {
            let ca_pem = read(ca, "client CA")?;
            anyhow::ensure!(
                CertificateDer::pem_slice_iter(&ca_pem).next().is_some(),
                "the client CA file {} holds no certificate",
                ca.display()
            );
            grpc = grpc.client_ca_root(Certificate::from_pem(ca_pem)).client_auth_optional(files.client_auth_optional);
        }
        Ok(Self { grpc: grpc.timeout(HANDSHAKE_TIMEOUT), http: TlsAcceptor::from(Arc::new(http)) })
    }
}

/// An HTTPS listener for axum: accepts TCP, completes each handshake on a
/// task of its own (bounded by a timeout) and hands over the finished ones.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `listener` with `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (done, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // The server dropped the listener: stop accepting.
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = done.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, handed) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: no connection will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// TLS options of a c360 client (`c360 bench`; the GraphQL facade's
/// upstream): a CA to trust instead of the system's, and a client
/// certificate for servers that ask for one.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFiles {
    /// CA (PEM) that signs the server's certificate; default: the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) and its key, for mTLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Name expected in the server's certificate, when not the target's host.
    pub server_name: Option<String>,
}

impl ClientTlsFiles {
    /// tonic's client settings.
    pub fn config(&self) -> anyhow::Result<ClientTlsConfig> {
        install_crypto_provider();
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read(cert, "client certificate")?, read(key, "client key")?));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(config)
    }
}

/// Whether `host` names this machine: an IP in 127.0.0.0/8 or ::1, or
/// `localhost`. Anything else may cross a network.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One connection that would carry customers' data in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleartext {
    /// What the connection is ("gRPC listener", "PostgreSQL", …).
    pub what: &'static str,
    /// Where it goes.
    pub to: String,
    /// How to protect it.
    pub fix: &'static str,
}

impl std::fmt::Display for Cleartext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} to {} is not encrypted ({})", self.what, self.to, self.fix)
    }
}

/// The host of `host[:port]` or `[v6][:port]`.
fn host_of(host_port: &str) -> String {
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_owned();
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => host_port.to_owned(),
    }
}

/// A PostgreSQL URL that would reach another machine without demanding TLS
/// (`sslmode` or `ssl-mode` `require`, `verify-ca` or `verify-full`, the
/// last one given winning, as sqlx reads them); `None` for other databases.
/// A URL that does not parse counts as remote: the check fails closed.
pub fn postgres_cleartext(raw: &str) -> Option<Cleartext> {
    let scheme = raw.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase())?;
    if scheme != "postgres" && scheme != "postgresql" {
        return None;
    }
    let fix = "add sslmode=verify-full (and sslrootcert=…) to the URL";
    let Ok(url) = url::Url::parse(raw) else {
        return Some(Cleartext { what: "PostgreSQL", to: "an unparsed address".to_owned(), fix });
    };
    let mut hosts: Vec<String> =
        url.host_str().map(|h| vec![h.trim_matches(['[', ']']).to_owned()]).unwrap_or_default();
    let mut sslmode = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" | "ssl-mode" => sslmode = Some(value.to_ascii_lowercase()),
            "host" | "hostaddr" => hosts.push(value.into_owned()),
            _ => {}
        }
    }
    let encrypted = matches!(sslmode.as_deref(), Some("require" | "verify-ca" | "verify-full"));
    // A Unix socket (a path) never leaves the machine.
    let remote: Vec<&String> = hosts.iter().filter(|h| !h.starts_with('/') && !is_loopback_host(h)).collect();
    if encrypted || (remote.is_empty() && !hosts.is_empty()) {
        return None;
    }
    let to = if remote.is_empty() { "the default host".to_owned() } else { hosts.join(",") };
    Some(Cleartext { what: "PostgreSQL", to, fix })
}

/// A Redis URL that would reach another machine without TLS (`redis://`,
/// `valkey://`; `rediss://` and `valkeys://` are TLS, Unix sockets local).
/// A URL that does not parse counts as remote.
pub fn redis_cleartext(raw: &str) -> Option<Cleartext> {
    let fix = "use a rediss:// URL";
    let scheme = raw.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase()).unwrap_or_default();
    match scheme.as_str() {
        "rediss" | "valkeys" | "unix" | "redis+unix" | "valkey+unix" => return None,
        _ => {}
    }
    let host = url::Url::parse(raw).ok().and_then(|url| url.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
    match host {
        Some(host) if is_loopback_host(&host) => None,
        Some(host) => Some(Cleartext { what: "Redis", to: host, fix }),
        None => Some(Cleartext { what: "Redis", to: "an unparsed address".to_owned(), fix }),
    }
}

/// Kafka brokers on other machines reached without TLS.
pub fn kafka_cleartext(brokers: &str, tls: bool) -> Option<Cleartext> {
    if tls {
        return None;
    }
    let remote: Vec<String> = brokers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(host_of)
        .filter(|host| !is_loopback_host(host))
        .collect();
    (!remote.is_empty()).then(|| Cleartext {
        what: "Kafka",
        to: remote.join(","),
        fix: "--kafka-security-protocol ssl or sasl_ssl",
    })
}

/// A listener on a non-loopback address without TLS.
pub fn listener_cleartext(what: &'static str, addr: SocketAddr, tls: bool) -> Option<Cleartext> {
    (!tls && !addr.ip().is_loopback()).then(|| Cleartext {
        what,
        to: addr.to_string(),
        fix: "--tls-cert-file and --tls-key-file",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_are_judged_by_host_and_sslmode() {
        assert_eq!(postgres_cleartext("sqlite://x.db"), None);
        assert_eq!(postgres_cleartext("postgres://root@127.0.0.1/db"), None);
        assert_eq!(postgres_cleartext("postgres://u:p@localhost:5432/db"), None);
        assert_eq!(postgres_cleartext("postgres://u@[::1]:5432/db"), None);
        assert_eq!(postgres_cleartext("postgres://u@db.internal/c360?sslmode=verify-full"), None);
        assert_eq!(postgres_cleartext("postgres://u@db.internal/c360?sslmode=require"), None);
        assert_eq!(postgres_cleartext("postgres:///c360?host=/var/run/postgresql&user=u"), None);
        // Found by review: forms the client libraries accept but a hand-made parser missed.
        assert!(postgres_cleartext("POSTGRES://u@db.internal/x").is_some(), "scheme in capitals");
        assert!(postgres_cleartext("postgres://u@localhost/db?hostaddr=10.0.0.5").is_some(), "hostaddr");
        assert!(postgres_cleartext("postgres://u@db.internal/x?sslmode=require&ssl-mode=disable").is_some());
        assert!(postgres_cleartext("postgres://u@db.internal/x?ssl-mode=verify-full").is_none());
        let plain = postgres_cleartext("postgres://u:secret@db.internal:5432/c360").expect("refused");
        assert_eq!(plain.to, "db.internal");
        assert!(postgres_cleartext("postgres://u@db.internal/c360?sslmode=prefer").is_some(), "prefer may fall back");
        assert!(postgres_cleartext("postgres://u@10.0.0.5/c360?sslmode=disable").is_some());
    }

    #[test]
    fn redis_kafka_and_listeners_are_judged_by_host() {
        assert_eq!(redis_cleartext("redis://127.0.0.1:6379"), None);
        assert_eq!(redis_cleartext("rediss://cache.internal:6380"), None);
        assert_eq!(
            redis_cleartext("redis://:pw@cache.internal:6379/0").map(|c| c.to).as_deref(),
            Some("cache.internal")
        );
        assert_eq!(kafka_cleartext("127.0.0.1:9092,localhost:9093", false), None);
        assert_eq!(kafka_cleartext("kafka-1:9092", true), None);
        assert_eq!(kafka_cleartext("kafka-1:9092,127.0.0.1:9092", false).map(|c| c.to).as_deref(), Some("kafka-1"));
        let any: SocketAddr = "0.0.0.0:50051".parse().expect("addr");
        assert!(listener_cleartext("gRPC listener", any, false).is_some());
        assert_eq!(listener_cleartext("gRPC listener", any, true), None);
        assert_eq!(listener_cleartext("gRPC listener", "127.0.0.1:1".parse().expect("addr"), false), None);
    }
}
