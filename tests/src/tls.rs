//! TLS for the tests: a throwaway certificate authority made in the test
//! (rcgen), and private TLS-only redis-server, PostgreSQL and Kafka-protocol
//! servers signed by it, each on a free port, stopped when dropped.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::{PrivateKafka, free_port, wait_for_port};

/// A certificate authority that lives for one test, with its files in a
/// directory of its own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: tempfile::TempDir,
    /// Its certificate (PEM file).
    pub cert: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).expect("write CA");
        Self { issuer: Issuer::new(params, key), dir, cert: path }
    }

    /// A certificate for `names` (DNS names or IP addresses), written as
    /// `<file>.pem` and `<file>-key.pem`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write cert");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }

    /// tonic's client settings trusting this CA, optionally with a client
    /// certificate.
    pub fn client(&self, identity: Option<&Issued>) -> tonic::transport::ClientTlsConfig {
        let ca = std::fs::read(&self.cert).expect("CA");
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Some(issued) = identity {
            let (cert, key) = (std::fs::read(&issued.cert).expect("cert"), std::fs::read(&issued.key).expect("key"));
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        config
    }
}

/// A private redis-server that speaks TLS only, with a certificate from `ca`.
pub struct TlsRedis {
    /// Its port.
    pub port: u16,
    _child: tokio::process::Child,
}

impl TlsRedis {
    /// Starts one; with `client_ca`, it requires client certificates it signed.
    pub async fn start(ca: &TestCa, client_ca: Option<&TestCa>) -> Self {
        let port = free_port();
        let server = ca.issue("redis", &["localhost", "127.0.0.1"]);
        let client_auth = if client_ca.is_some() { "yes" } else { "no" };
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&server.cert)
            .arg("--tls-key-file")
            .arg(&server.key)
            .arg("--tls-ca-cert-file")
            .arg(&client_ca.unwrap_or(ca).cert)
            .args(["--tls-auth-clients", client_auth, "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (see README.md)");
        wait_for_port(port, "TLS redis-server", Duration::from_secs(10)).await;
        Self { port, _child: child }
    }

    /// Its rediss:// URL.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }
}

/// A private Kafka-protocol broker reachable over TLS only: tansu has no TLS
/// of its own, so socat terminates TLS in front of it with a certificate of
/// the test's CA, and the broker advertises the proxy as its address (every
/// client connection, bootstrap and partition leader alike, goes through it).
pub struct TlsKafka {
    /// The proxy's port.
    pub port: u16,
    _broker: PrivateKafka,
    _proxy: tokio::process::Child,
}

impl TlsKafka {
    /// Starts the broker and its TLS proxy.
    pub async fn start(ca: &TestCa) -> Self {
        let port = free_port();
        let broker = PrivateKafka::start_advertising(Some(port)).await;
        let server = ca.issue("kafka", &["localhost", "127.0.0.1"]);
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            server.cert.display(),
            server.key.display()
        );
        let proxy = tokio::process::Command::new("socat")
            .args([listen, format!("TCP:127.0.0.1:{}", broker.port)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("socat must be installed (see README.md)");
        wait_for_port(port, "socat TLS proxy", Duration::from_secs(10)).await;
        Self { port, _broker: broker, _proxy: proxy }
    }

    /// Its bootstrap address (the name its certificate carries).
    pub fn brokers(&self) -> String {
        format!("localhost:{}", self.port)
    }
}

/// A private PostgreSQL cluster that accepts TLS connections only, with a
/// certificate from the test's CA. Made with the machine's `initdb` and run
/// as the `postgres` user (PostgreSQL refuses to run as root); stopped
/// (immediate mode) when dropped.
pub struct TlsPostgres {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The directory of the machine's PostgreSQL server programs.
fn postgres_bin() -> PathBuf {
    let output = std::process::Command::new("pg_config").arg("--bindir").output();
    if let Ok(output) = output
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("PostgreSQL server programs (initdb, pg_ctl) must be installed")
}

/// Runs a PostgreSQL program as the `postgres` user when this is root.
fn as_postgres(program: &Path) -> std::process::Command {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

impl TlsPostgres {
    /// Creates and starts one.
    pub fn start(ca: &TestCa) -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let server = ca.issue("postgres", &["localhost", "127.0.0.1"]);
        let data = dir.path().join("data");
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server-key.pem"));
        std::fs::copy(&server.cert, &cert).expect("copy cert");
        std::fs::copy(&server.key, &key).expect("copy key");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("key mode");
        }
        // The postgres user must own what it reads and writes.
        let _ = std::process::Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status();
        let status = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "root", "--no-sync", "-D"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n";
        std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off",
            dir.path().display(),
            cert.display(),
            key.display()
        );
        let status = as_postgres(&bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.path().join("log"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(status.success(), "the private PostgreSQL did not start: {log}");
        Self { port, dir, bin }
    }

    /// A URL to its `postgres` database with the given query string.
    pub fn url(&self, query: &str) -> String {
        format!("postgres://root@localhost:{}/postgres?{query}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// `GET path` over HTTPS (HTTP/1.1), trusting `ca`; the whole response.
pub async fn https_get(addr: std::net::SocketAddr, path: &str, ca: &TestCa) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    };
    c360_server::tls::install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca.cert).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("root");
    }
    let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut stream = connector.connect(name, tcp).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    // A server may close without close_notify once it has answered.
    let _ = stream.read_to_string(&mut response).await;
    Ok(response)
}
