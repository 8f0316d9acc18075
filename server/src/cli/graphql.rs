//! `c360 graphql --upstream URL`: the GraphQL facade alone, calling a
//! remote c360 over gRPC (TLS for an https:// upstream). It holds no data and
//! no keys: each caller's token is forwarded, and the upstream decides.

use std::{io::Write, net::SocketAddr, path::PathBuf};

use clap::Parser;
use tokio::net::TcpListener;

use crate::{
    config::{GraphqlArgs, TlsArgs},
    tls::{Cleartext, ClientTlsFiles, TlsListener, is_loopback_host, listener_cleartext},
};

/// Options of `c360 graphql`.
#[derive(Debug, Parser)]
pub struct GraphqlServeArgs {
    /// The c360 to call: its gRPC address, http://host:port or https://host:port.
    #[arg(long, env = "C360_UPSTREAM")]
    upstream: String,
    /// HTTP listen address of /graphql (port 0 picks a free port).
    #[arg(long, env = "C360_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// CA (PEM) that signs the upstream's certificate; default: the system's roots.
    #[arg(long, env = "C360_UPSTREAM_CA_FILE")]
    upstream_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for an upstream that requires one (mTLS).
    #[arg(long, env = "C360_UPSTREAM_CERT_FILE", requires = "upstream_key_file")]
    upstream_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "C360_UPSTREAM_KEY_FILE", requires = "upstream_cert_file")]
    upstream_key_file: Option<PathBuf>,
    /// Name expected in the upstream's certificate, when not the URL's host.
    #[arg(long, env = "C360_UPSTREAM_SERVER_NAME")]
    upstream_server_name: Option<String>,
    /// The facade's listener TLS.
    #[command(flatten)]
    tls: TlsArgs,
    /// Guards and CORS.
    #[command(flatten)]
    graphql: GraphqlArgs,
}

impl GraphqlServeArgs {
    /// The connections that would carry tokens and personal data in the clear.
    fn cleartext(&self) -> Vec<Cleartext> {
        let mut found: Vec<Cleartext> =
            listener_cleartext("GraphQL listener", self.http_addr, self.tls.tls_cert_file.is_some())
                .into_iter()
                .collect();
        let host =
            url::Url::parse(&self.upstream).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        if !self.upstream.starts_with("https://") && !is_loopback_host(&host) {
            found.push(Cleartext { what: "upstream c360", to: self.upstream.clone(), fix: "an https:// upstream" });
        }
        found
    }
}

/// A bound facade, not yet serving.
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    listener: TcpListener,
    tls: Option<crate::tls::ServerTls>,
    router: axum::Router,
}

impl Started {
    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        match self.tls {
            Some(tls) => {
                let listener = TlsListener::new(self.listener, tls.http)?;
                axum::serve(listener, self.router).with_graceful_shutdown(shutdown).await?;
            }
            None => axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await?,
        }
        Ok(())
    }
}

/// Checks the options, connects (lazily) to the upstream and binds.
pub async fn start(args: &GraphqlServeArgs) -> anyhow::Result<Started> {
    let cleartext = args.cleartext();
    if !cleartext.is_empty() {
        let list: Vec<String> = cleartext.iter().map(|c| format!("  - {c}")).collect();
        anyhow::ensure!(
            args.tls.allow_cleartext_personal_data,
            "refusing to carry tokens and customers' personal data in the clear over a network:\n{}\n\
             Protect each connection, or accept the risk with --allow-cleartext-personal-data; docs/security.md",
            list.join("\n")
        );
    }
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.upstream.clone())
        .map_err(|e| anyhow::anyhow!("--upstream {}: {e}", args.upstream))?
        .tcp_nodelay(true)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if args.upstream.starts_with("https://") {
        let files = ClientTlsFiles {
            ca: args.upstream_ca_file.clone(),
            identity: args.upstream_cert_file.clone().zip(args.upstream_key_file.clone()),
            server_name: args.upstream_server_name.clone(),
        };
        endpoint = endpoint.tls_config(files.config()?)?;
    }
    // Lazily: the facade starts (and answers UNAVAILABLE) while the upstream is down.
    let channel = endpoint.connect_lazy();
    let facade = c360_graphql::Facade::new(c360_graphql::Upstream::new(channel), args.graphql.options());
    let listener = TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (HTTP): {e}", args.http_addr))?;
    let addr = listener.local_addr()?;
    let router = facade.router().merge(crate::http::liveness_router());
    Ok(Started { addr, listener, tls: args.tls.server()?, router })
}

/// Serves the facade until `shutdown`.
pub async fn run(args: GraphqlServeArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let started = start(&args).await?;
    let scheme = if started.tls.is_some() { "https" } else { "http" };
    let banner = format!(
        "c360 GraphQL facade on {scheme}://{}/graphql (GraphiQL in a browser), calling {}\n",
        started.addr, args.upstream
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
    drop(stdout);
    started.serve(shutdown).await
}
