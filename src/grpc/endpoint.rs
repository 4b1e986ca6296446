//! The local endpoint (GRPC.md §4): a Unix socket in the per-user runtime folder
//! (folder 0700, socket 0600), serving `quarry.v1.Quarry`, `grpc.health.v1.Health` and
//! server reflection (v1 and v1alpha) until its shutdown token fires; then health says
//! `NOT_SERVING`, calls in flight get the grace period, and the socket is removed.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use super::proto::{self, quarry_server::QuarryServer};
use super::service::QuarryService;
use tonic::service::interceptor::InterceptedService;

/// The per-user runtime folder: `$XDG_RUNTIME_DIR/quarry`, else `$TMPDIR/quarry-$UID`
/// (`TMPDIR` defaulting to `/tmp`). Created 0700 if missing.
///
/// Errors: it cannot be created, or it exists with other permissions or owner.
pub fn runtime_dir() -> std::io::Result<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(run) => PathBuf::from(run).join("quarry"),
        None => {
            let tmp = std::env::var_os("TMPDIR")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
            tmp.join(format!("quarry-{}", rustix::process::getuid().as_raw()))
        }
    };
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(&dir)?;
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != rustix::process::getuid().as_raw() || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} must be owned by this user with mode 0700 (it is {:o})",
                dir.display(),
                meta.mode() & 0o777
            ),
        ));
    }
    Ok(dir)
}

/// This process's socket: `<runtime folder>/<pid>.sock`.
pub fn socket_path() -> std::io::Result<PathBuf> {
    Ok(runtime_dir()?.join(format!("{}.sock", std::process::id())))
}

/// Largest gRPC message either way, bytes: the stdio default line limit (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A TLS identity for the TCP endpoint: a certificate chain and its private key, PEM.
#[derive(Clone)]
pub struct Tls {
    /// The certificate chain, PEM.
    pub cert: Vec<u8>,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Vec<u8>,
}

impl Tls {
    /// Reads `cert` and `key` (PEM files) and checks that each holds what it should.
    ///
    /// Errors: a file cannot be read, or holds no certificate / no private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Tls, String> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let tls = Tls {
            cert: read(cert)?,
            key: read(key)?,
        };
        let has = |pem: &[u8], what: &str| {
            String::from_utf8_lossy(pem)
                .lines()
                .any(|l| l.starts_with("-----BEGIN ") && l.contains(what))
        };
        if !has(&tls.cert, "CERTIFICATE") {
            return Err(format!(
                "--tls-cert {}: no PEM certificate in it",
                cert.display()
            ));
        }
        if !has(&tls.key, "PRIVATE KEY") {
            return Err(format!(
                "--tls-key {}: no PEM private key in it",
                key.display()
            ));
        }
        Ok(tls)
    }
}

/// A running endpoint: the local Unix socket, or a TCP address.
pub struct Endpoint {
    /// The socket (`None` for TCP).
    pub path: Option<PathBuf>,
    /// The bound TCP address (`None` for the socket).
    pub tcp: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Serves `$service` behind the middleware, with health and reflection, on the
/// listener stream `$incoming` until `$shutdown` fires (health turns `NOT_SERVING`
/// first); then runs `$cleanup`.
macro_rules! serve_on {
    ($service:expr, $token:expr, $tls:expr, $incoming:expr, $shutdown:expr, $cleanup:expr) => {{
        let service: QuarryService = $service;
        let stats = super::stats::StatsLayer::new(service.stats());
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = $tls {
            builder = builder.tls_config(tls).map_err(std::io::Error::other)?;
        }
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<QuarryServer<QuarryService>>().await;
        health.set_service_status("", ServingStatus::Serving).await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(std::io::Error::other)?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(std::io::Error::other)?;
        let (request_id, trace, echo_id, panics) = super::middleware::layers();
        let router = builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(256))
            .layer(request_id)
            .layer(trace)
            .layer(echo_id)
            .layer(stats)
            .layer(panics)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                QuarryServer::new(service)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
                super::middleware::auth($token),
            ));
        let stop: CancellationToken = $shutdown;
        let incoming = $incoming;
        let cleanup = $cleanup;
        tokio::spawn(async move {
            let drained = async move {
                stop.cancelled().await;
                health
                    .set_not_serving::<QuarryServer<QuarryService>>()
                    .await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, drained)
                .await
            {
                tracing::warn!(error = %e, "gRPC endpoint failed");
            }
            cleanup();
        })
    }};
}

impl Endpoint {
    /// Binds `path` (0600; a stale file of a dead process with our pid is replaced) and
    /// serves until [`Endpoint::stop`].
    ///
    /// Errors: the socket cannot be bound.
    pub async fn start(
        service: QuarryService,
        token: Option<Arc<str>>,
        path: PathBuf,
    ) -> std::io::Result<Endpoint> {
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let shutdown = CancellationToken::new();
        let shown = path.clone();
        let task = serve_on!(
            service,
            token,
            None::<tonic::transport::ServerTlsConfig>,
            UnixListenerStream::new(listener),
            shutdown.clone(),
            move || {
                let _ = std::fs::remove_file(&shown);
            }
        );
        tracing::info!(socket = %path.display(), "gRPC endpoint listening");
        Ok(Endpoint {
            path: Some(path),
            tcp: None,
            shutdown,
            task,
        })
    }

    /// Listens on `addr` over TCP (port 0 picks one; see [`Endpoint::tcp`]), with TLS
    /// when `tls` is given. The caller has checked the address and the token (GRPC.md
    /// §4).
    ///
    /// Errors: the address cannot be bound, the TLS identity is unusable.
    pub async fn start_tcp(
        service: QuarryService,
        token: Arc<str>,
        addr: std::net::SocketAddr,
        tls: Option<Tls>,
    ) -> std::io::Result<Endpoint> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        // Small messages go out at once (Nagle with delayed ACKs costs ~40 ms a call).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let shutdown = CancellationToken::new();
        let secure = tls.is_some();
        let tls = tls.map(|t| {
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(t.cert, t.key))
        });
        let task = serve_on!(service, Some(token), tls, incoming, shutdown.clone(), || {});
        tracing::info!(tcp = %bound, tls = secure, "gRPC endpoint listening");
        Ok(Endpoint {
            path: None,
            tcp: Some(bound),
            shutdown,
            task,
        })
    }

    /// Stops taking calls, lets those in flight finish within `grace`, removes the
    /// socket.
    pub async fn stop(self, grace: Duration) {
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `path` is a socket file (for checks and tests).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// A client channel to a local endpoint's socket (for Rust hosts, tests and benches).
///
/// Errors: nothing listens there.
pub async fn connect(socket: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    tonic::transport::Endpoint::from_static("http://quarry.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
}
