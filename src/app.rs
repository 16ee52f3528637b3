//! Putting it together: `Gateway::prepare` does everything that can fail because of the
//! configuration (certificates generated or loaded, TLS configurations built) before any
//! port is bound; `bind` takes the ports; `Bound::serve` runs until the shutdown future
//! resolves, then drains connections for the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminContext};
use crate::audit::Audit;
use crate::config::{Config, ConfigError};
use crate::dicom::inbound::{self, DicomContext};
use crate::dicom::outbound::{self, OutboundContext};
use crate::http::policy::{self, Policy, PolicyHandle};
use crate::http::{self, forward::Forwarder, HttpContext};
use crate::reload::Reloader;
use crate::server::Shutdown;
use crate::tls::acme::http01::{self, Challenges};
use crate::tls::acme::Acme;
use crate::tls::material::Material;
use crate::tls::reload::TlsReloader;
use crate::tls::{self, Profile, ReloadableServer};

/// How long shutdown waits for the audit writer to write what is queued (a full disk is
/// retried until then; what is left is counted as lost).
const AUDIT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Gateway {
    config: Config,
    audit: Arc<Audit>,
    reloader: Option<Arc<TlsReloader>>,
    http: Option<Arc<HttpContext>>,
    dicom: Option<Arc<DicomContext>>,
    outbound: Vec<Arc<OutboundContext>>,
    admin: Option<Arc<AdminContext>>,
    /// Pending HTTP-01 challenges when `[tls.acme]` is configured.
    acme: Option<Challenges>,
}

impl Gateway {
    pub fn prepare(config: Config) -> Result<Self, ConfigError> {
        let audit = Arc::new(
            Audit::open(&config.audit, config.run_as.as_ref()).map_err(|e| {
                ConfigError::new(
                    "audit.path",
                    e.to_string(),
                    "point it at a writable file (its directory must exist)",
                )
            })?,
        );
        let cluster = config
            .cluster
            .as_ref()
            .map(crate::limit::cluster::Cluster::new)
            .transpose()?;
        if let Some(c) = &config.cluster {
            tracing::info!("{}", crate::limit::cluster::Cluster::describe(c));
        }
        let provider = tls::server::provider();
        let mut servers = Vec::new();
        let (mut http, mut dicom) = (None, None);
        if config.http.is_some() || config.dicom.is_some() {
            for written in tls::self_signed::ensure(&config.tls)? {
                tracing::info!(cert = %written.cert.display(), "generated a self-signed certificate");
                crate::privileges::hand_over(&config, &[&written.cert, &written.key]);
            }
            let material = Material::load(&config.tls, &provider)?;
            tls::expiry::observe(&material, config.tls.expiry_warning);
            for key in &material.keys {
                tracing::info!(
                    cert = %key.cert_path.display(),
                    algorithm = ?key.algorithm,
                    fingerprint = %key.fingerprint,
                    "serving certificate"
                );
            }
            if let Some(cfg) = &config.http {
                let profile = Profile {
                    name: "https",
                    alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                    client_auth: cfg.client_auth,
                    min_version: config.tls.min_version,
                };
                let server = ReloadableServer::new(profile, provider.clone(), &material)?;
                servers.push(server.clone());
                let upstream = Forwarder::new(cfg).map_err(|e| {
                    ConfigError::new("http.upstream", e.to_string(), "use a plain HOST:PORT")
                })?;
                // After the certificates, so the announcement's curl example can name them.
                let hint = policy::admin::Hint {
                    cert: &config.tls.primary.cert,
                    listen: cfg.listen,
                };
                let admin = cfg
                    .policy
                    .generated_admin
                    .as_deref()
                    .map(|path| policy::admin::start(path, &hint))
                    .transpose()?;
                let policy = Policy::build(&cfg.policy, admin.as_ref())?;
                policy::warn_if_open(&cfg.policy);
                http = Some(HttpContext::new(
                    cfg.clone(),
                    server,
                    upstream,
                    audit.clone(),
                    PolicyHandle::new(policy, admin, cluster.clone()),
                ));
            }
            if let Some(cfg) = &config.dicom {
                let profile = Profile {
                    name: "dicom",
                    alpn: Vec::new(),
                    client_auth: cfg.client_auth,
                    min_version: config.tls.min_version,
                };
                let server = ReloadableServer::new(profile, provider.clone(), &material)?;
                servers.push(server.clone());
                dicom = Some(DicomContext::new(
                    cfg.clone(),
                    server,
                    audit.clone(),
                    cluster.clone(),
                ));
            }
        }
        let outbound = config
            .outbound
            .iter()
            .map(|o| {
                let client = tls::client::build(o, &provider)?;
                OutboundContext::new(o.clone(), client, audit.clone()).ok_or_else(|| {
                    ConfigError::new(format!("{}.server_name", o.name), "is not a valid name", "")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reloader = (!servers.is_empty())
            .then(|| Arc::new(TlsReloader::new(config.tls.clone(), provider, servers)));
        let admin = AdminContext::new(&config);
        let acme = config
            .tls
            .acme
            .as_ref()
            .filter(|_| reloader.is_some())
            .map(|_| Challenges::default());
        Ok(Self {
            config,
            audit,
            reloader,
            http,
            dicom,
            outbound,
            admin,
            acme,
        })
    }

    fn reloader(&self) -> Reloader {
        Reloader {
            config_path: self.config.source.clone(),
            tls: self.reloader.clone(),
            watch_tls: self.config.tls.watch,
            audit: self.audit.clone(),
            parts: self
                .dicom
                .iter()
                .map(|d| d.clone() as Arc<dyn crate::reload::Reloadable>)
                .chain(
                    self.http
                        .iter()
                        .map(|h| h.policy.clone() as Arc<dyn crate::reload::Reloadable>),
                )
                .collect(),
        }
    }

    /// Start issuing and renewing with ACME, if configured.
    fn acme_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        let (challenges, config, reloader) = (
            self.acme.clone()?,
            self.config.tls.acme.clone()?,
            self.reloader.clone()?,
        );
        let acme = Acme {
            config,
            pair: self.config.tls.primary.clone(),
            challenges,
            reloader,
        };
        Some(tokio::spawn(acme.run()))
    }

    pub fn worker_threads(&self) -> usize {
        self.config.worker_threads
    }

    pub fn run_as(&self) -> Option<&crate::config::RunAs> {
        self.config.run_as.as_ref()
    }

    /// Bind every configured listener; the error names the address that could not be
    /// bound.
    pub async fn bind(self) -> Result<Bound, BindError> {
        let listeners = Listeners::bind(&self.config).await?;
        Ok(self.with_listeners(listeners)?)
    }

    /// Serve on listeners bound by the caller (tests bind `127.0.0.1:0`; a supervisor may
    /// pass inherited sockets): one for each listener the configuration enables, whose
    /// `listen` addresses are then not used. A configured listener without a socket, or a
    /// socket for a listener the configuration does not enable, is an error.
    pub fn with_listeners(self, mut given: Listeners) -> Result<Bound, MissingListener> {
        let mut listeners = Vec::new();
        let take = |slot: &mut Option<TcpListener>, name: &'static str| {
            slot.take().ok_or(MissingListener(name))
        };
        if let Some(ctx) = &self.http {
            listeners.push((Listener::Http(ctx.clone()), take(&mut given.http, "http")?));
        }
        if let Some(ctx) = &self.dicom {
            listeners.push((
                Listener::Dicom(ctx.clone()),
                take(&mut given.dicom, "dicom")?,
            ));
        }
        if given.outbound.len() != self.outbound.len() {
            return Err(MissingListener("dicom.outbound"));
        }
        for (ctx, listener) in self.outbound.iter().zip(given.outbound.drain(..)) {
            listeners.push((Listener::Outbound(ctx.clone()), listener));
        }
        if let Some(ctx) = &self.admin {
            listeners.push((
                Listener::Admin(ctx.clone()),
                take(&mut given.admin, "admin")?,
            ));
        }
        if let Some(challenges) = &self.acme {
            let listener = take(&mut given.acme_http01, "tls.acme.http01_listen")?;
            listeners.push((Listener::AcmeHttp01(challenges.clone()), listener));
        }
        for (slot, name) in [
            (&given.http, "http"),
            (&given.dicom, "dicom"),
            (&given.admin, "admin"),
            (&given.acme_http01, "tls.acme.http01_listen"),
        ] {
            if slot.is_some() {
                return Err(MissingListener(name));
            }
        }
        Ok(Bound {
            gateway: self,
            listeners,
        })
    }

    /// Serve on the given listeners until `shutdown` resolves, then drain: the in-process
    /// entry point (no privilege drop; the caller owns the sockets).
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MissingListener> {
        self.with_listeners(listeners)?.serve(shutdown).await;
        Ok(())
    }
}

/// Sockets for the listeners a configuration enables, in the configuration's order.
#[derive(Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub dicom: Option<TcpListener>,
    /// One per `[[dicom.outbound]]`, in order.
    pub outbound: Vec<TcpListener>,
    pub admin: Option<TcpListener>,
    pub acme_http01: Option<TcpListener>,
}

impl Listeners {
    /// Bind the configured addresses.
    pub async fn bind(config: &Config) -> Result<Self, BindError> {
        let mut out = Listeners::default();
        if let Some(http) = &config.http {
            out.http = Some(bind(http.listen).await?);
        }
        if let Some(dicom) = &config.dicom {
            out.dicom = Some(bind(dicom.listen).await?);
        }
        for tunnel in &config.outbound {
            out.outbound.push(bind(tunnel.listen).await?);
        }
        if let Some(admin) = &config.admin {
            out.admin = Some(bind(admin.listen).await?);
        }
        if let Some(acme) = &config.tls.acme {
            out.acme_http01 = Some(bind(acme.http01_listen).await?);
        }
        Ok(out)
    }
}

/// A listener the configuration enables was not handed over (or one it does not enable
/// was): names the configuration section.
#[derive(Debug, thiserror::Error)]
#[error(
    "no socket given for the `{0}` listener, or one given that the configuration does not enable"
)]
pub struct MissingListener(pub &'static str);

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {addr}: {source}")]
    Address {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `bind` binds exactly what the configuration enables, so this means a bug.
    #[error(transparent)]
    Missing(#[from] MissingListener),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Address { addr, source })
}

enum Listener {
    Http(Arc<HttpContext>),
    Dicom(Arc<DicomContext>),
    Outbound(Arc<OutboundContext>),
    Admin(Arc<AdminContext>),
    AcmeHttp01(Challenges),
}

pub struct Bound {
    gateway: Gateway,
    listeners: Vec<(Listener, TcpListener)>,
}

impl Bound {
    /// Switch to `server.user` now that the ports are bound (no-op if not root).
    pub fn drop_privileges(&self) -> Result<(), crate::privileges::DropError> {
        crate::privileges::drop_root(self.gateway.run_as())
    }

    /// Run until `shutdown` resolves, then stop accepting and let in-flight requests and
    /// associations finish for `server.shutdown_grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let sd = Shutdown::default();
        let tracker = TaskTracker::new();
        let mut accept_loops = JoinSet::new();
        for (kind, listener) in self.listeners {
            let local = listener.local_addr().ok();
            let (sd, tracker) = (sd.clone(), tracker.clone());
            let name = match kind {
                Listener::Http(ctx) => {
                    accept_loops.spawn(http::serve(listener, ctx, sd, tracker));
                    "https"
                }
                Listener::Dicom(ctx) => {
                    accept_loops.spawn(inbound::serve(listener, ctx, sd, tracker));
                    "dicom"
                }
                Listener::Outbound(ctx) => {
                    accept_loops.spawn(outbound::serve(listener, ctx, sd, tracker));
                    "outbound"
                }
                Listener::Admin(ctx) => {
                    accept_loops.spawn(admin::serve(listener, ctx, sd, tracker));
                    "admin"
                }
                Listener::AcmeHttp01(challenges) => {
                    accept_loops.spawn(http01::serve(listener, challenges, sd, tracker));
                    "acme-http01"
                }
            };
            if let Some(addr) = local {
                tracing::info!(listener = name, %addr, "listening");
            }
        }
        let reload = tokio::spawn(self.gateway.reloader().run());
        let acme = self.gateway.acme_task();
        if let Some(admin) = &self.gateway.admin {
            admin.set_listening();
        }
        tracing::info!("pacsgate ready");
        crate::notify::ready();
        shutdown.await;
        crate::notify::stopping();
        let grace = self.gateway.config.shutdown_grace;
        tracing::info!(
            in_flight = tracker.len(),
            grace_s = grace.as_secs_f64(),
            "shutting down: no new connections"
        );
        sd.stop_accepting.cancel();
        while accept_loops.join_next().await.is_some() {}
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                left = tracker.len(),
                "grace period over; closing the remaining connections"
            );
            sd.abort.cancel();
            tracker.wait().await;
        }
        reload.abort();
        if let Some(task) = acme {
            task.abort();
        }
        // Every connection has ended: the records of the last requests are in the queue.
        let audit = self.gateway.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close(AUDIT_DRAIN)).await;
        tracing::info!("stopped");
    }
}
