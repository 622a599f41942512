//! Running the server: bind, serve, sweep, stop on a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::SslAcceptor;
use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

use eap_methods::tls::{ClientAuth, TlsServerConfig, TlsServerOptions, TlsVersion};

use crate::config::{Config, EapSection};
use crate::core::eap::EapPolicy;
use crate::core::{Conversations, Core};
use crate::diameter::{self, Diameter};
use crate::error::ServerError;
use crate::ledger::SqlLedger;
use crate::metrics;
use crate::pki;
use crate::radius::clients::Clients;
use crate::radius::tls::Radsec;
use crate::radius::{self, Port, Radius};
use crate::seal::Kek;

/// A bound, not yet running server.
pub struct Server {
    core: Arc<Core<SqlLedger>>,
    radius: Arc<Radius<SqlLedger>>,
    auth: Arc<UdpSocket>,
    acct: Arc<UdpSocket>,
    /// The Diameter front end, when `[diameter]` is configured.
    diameter: Option<(Arc<Diameter<SqlLedger>>, TcpListener)>,
    /// Diameter over TLS, when `[diameter.tls]` is configured.
    diameter_tls: Option<(Arc<SslAcceptor>, TcpListener)>,
    /// The metrics endpoint, when `[metrics]` is configured.
    metrics: Option<TcpListener>,
    /// RADIUS over TLS, when `[radius.tls]` is configured.
    radsec: Option<(Arc<Radsec>, TcpListener)>,
}

impl Server {
    /// Binds the sockets of `config`, serving from `ledger`.
    pub async fn bind(config: &Config, ledger: SqlLedger) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| async move {
            UdpSocket::bind(addr)
                .await
                .map(Arc::new)
                .map_err(|e| ServerError::Io { path: format!("bind {addr}"), error: e })
        };
        let auth = bind(config.radius.auth_listen).await?;
        let acct = bind(config.radius.acct_listen).await?;
        let (tls, ttls) = tls_configs(config)?;
        let policy = EapPolicy {
            realm: config.server.realm.clone(),
            result_indication: config.eap.result_indication,
            tls,
            ttls,
            vendor_id: config.server.vendor_id,
            privacy: config.eap.privacy(ledger.kek()),
        };
        let core = Arc::new(Core::new(ledger, policy, config.server.vendor_id));
        let radius = Arc::new(Radius::new(
            core.clone(),
            Clients::new(&config.radius.clients),
            conversations(&config.eap),
            Duration::from_secs(config.radius.duplicate_window_secs),
        ));
        let diameter = match &config.diameter {
            Some(section) => {
                let listener = listen(section.listen).await?;
                Some((Arc::new(Diameter::new(core.clone(), section, conversations(&config.eap))?), listener))
            }
            None => None,
        };
        let diameter_tls = match config.diameter.as_ref().and_then(|d| d.tls.as_ref()) {
            Some(section) => {
                let acceptor = mutual_tls(config, "diameter.tls", &section.min_version)?;
                Some((Arc::new(acceptor), listen(section.listen).await?))
            }
            None => None,
        };
        let metrics = match &config.metrics {
            Some(section) => Some(listen(section.listen).await?),
            None => None,
        };
        let radsec = match &config.radius.tls {
            Some(section) => {
                let acceptor = mutual_tls(config, "radius.tls", &section.min_version)?;
                Some((Arc::new(Radsec::new(section, acceptor)?), listen(section.listen).await?))
            }
            None => None,
        };
        Ok(Self { core, radius, auth, acct, diameter, diameter_tls, metrics, radsec })
    }

    /// The bound authentication address.
    pub fn auth_addr(&self) -> Result<SocketAddr, ServerError> {
        self.auth.local_addr().map_err(|e| ServerError::Io { path: "auth socket".into(), error: e })
    }

    /// The bound accounting address.
    pub fn acct_addr(&self) -> Result<SocketAddr, ServerError> {
        self.acct.local_addr().map_err(|e| ServerError::Io { path: "acct socket".into(), error: e })
    }

    /// The bound Diameter address, if Diameter is served.
    pub fn diameter_addr(&self) -> Result<Option<SocketAddr>, ServerError> {
        bound(self.diameter.as_ref().map(|(_, l)| l), "diameter socket")
    }

    /// The bound metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ServerError> {
        bound(self.metrics.as_ref(), "metrics socket")
    }

    /// The bound Diameter/TLS address, if served.
    pub fn diameter_tls_addr(&self) -> Result<Option<SocketAddr>, ServerError> {
        bound(self.diameter_tls.as_ref().map(|(_, l)| l), "diameter tls socket")
    }

    /// The bound RADIUS/TLS address, if RadSec is served.
    pub fn radsec_addr(&self) -> Result<Option<SocketAddr>, ServerError> {
        bound(self.radsec.as_ref().map(|(_, l)| l), "radius tls socket")
    }

    /// The lines scripts and tests wait for, on stdout: `listening metrics
    /// ADDR`, `listening diameter ADDR`, `listening diameter tls ADDR` and
    /// `listening radius tls ADDR` (when served), then `listening radius auth ADDR` and, last, `listening
    /// radius acct ADDR`.
    pub fn announce(&self) -> Result<(), ServerError> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let io = |e| ServerError::Io { path: "stdout".into(), error: e };
        if let Some(addr) = self.metrics_addr()? {
            writeln!(out, "listening metrics {addr}").map_err(io)?;
        }
        if let Some(addr) = self.diameter_addr()? {
            writeln!(out, "listening diameter {addr}").map_err(io)?;
        }
        if let Some(addr) = self.diameter_tls_addr()? {
            writeln!(out, "listening diameter tls {addr}").map_err(io)?;
        }
        if let Some(addr) = self.radsec_addr()? {
            writeln!(out, "listening radius tls {addr}").map_err(io)?;
        }
        writeln!(out, "listening radius auth {}", self.auth_addr()?).map_err(io)?;
        writeln!(out, "listening radius acct {}", self.acct_addr()?).map_err(io)?;
        out.flush().map_err(io)
    }

    /// Serves until SIGINT or SIGTERM; Diameter peers get DPR before the end.
    pub async fn run(self) -> Result<(), ServerError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let diameter_front = self.diameter.as_ref().map(|(front, _)| front.clone());
        let diameter_tls = match (&diameter_front, self.diameter_tls) {
            (Some(front), Some((acceptor, listener))) => {
                Some(tokio::spawn(diameter::serve(listener, Some(acceptor), front.clone(), stopped.clone())))
            }
            _ => None,
        };
        let diameter =
            self.diameter.map(|(front, listener)| tokio::spawn(diameter::serve(listener, None, front, stopped)));
        let auth = tokio::spawn(radius::serve(self.auth.clone(), Port::Auth, self.radius.clone()));
        let acct = tokio::spawn(radius::serve(self.acct.clone(), Port::Acct, self.radius.clone()));
        let radsec_front = self.radsec.as_ref().map(|(radsec, _)| radsec.clone());
        let radsec = self
            .radsec
            .map(|(radsec, listener)| tokio::spawn(radius::tls::serve(listener, radsec, self.radius.clone())));
        let metrics = self.metrics.map(|listener| {
            let sources = metrics::Sources {
                core: self.core.clone(),
                radius: self.radius.clone(),
                diameter: diameter_front.clone(),
                radsec: radsec_front.clone(),
                started_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            tokio::spawn(metrics::serve(listener, Arc::new(sources)))
        });
        let (core, radius, front) = (self.core.clone(), self.radius.clone(), diameter_front.clone());
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let now = std::time::Instant::now();
                core.sweep(&radius.conversations, now).await;
                let (mut expired, mut evicted) = (radius.conversations.expired(), radius.conversations.evicted());
                if let Some(front) = &front {
                    core.sweep(&front.conversations, now).await;
                    expired += front.conversations.expired();
                    evicted += front.conversations.evicted();
                }
                core.counters.eap_expired.store(expired, std::sync::atomic::Ordering::Relaxed);
                core.counters.eap_evicted.store(evicted, std::sync::atomic::Ordering::Relaxed);
            }
        });
        shutdown_signal().await;
        let _ = stop.send(true);
        if let Some(diameter) = diameter {
            let _ = diameter.await;
        }
        if let Some(diameter_tls) = diameter_tls {
            let _ = diameter_tls.await;
        }
        auth.abort();
        acct.abort();
        sweeper.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        if let Some(radsec) = radsec {
            radsec.abort();
        }
        let counters: Vec<String> = self
            .core
            .counters
            .snapshot()
            .into_iter()
            .chain(self.radius.counters.snapshot())
            .chain(diameter_front.iter().flat_map(|d| d.counters.snapshot()))
            .chain(radsec_front.iter().flat_map(|r| r.counters.snapshot()))
            .chain(self.core.ledger.stats().snapshot())
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        info!(counters = %counters.join(" "), "stopped");
        Ok(())
    }
}

/// The address an optional listener is bound to.
fn bound(listener: Option<&TcpListener>, what: &str) -> Result<Option<SocketAddr>, ServerError> {
    listener.map(|l| l.local_addr().map_err(|e| ServerError::Io { path: what.into(), error: e })).transpose()
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|e| ServerError::Io { path: format!("bind {addr}"), error: e })
}

/// The mutual-TLS context of a terminal-facing transport (`crate::mtls`):
/// the issuer PKI's server certificate, terminals' certificates from its CA.
fn mutual_tls(config: &Config, what: &str, min_version: &str) -> Result<SslAcceptor, ServerError> {
    let data_dir = &config.server.data_dir;
    let kek = Kek::load(data_dir)?;
    let identity = pki::server_identity(data_dir, &kek, &config.server.realm)?;
    let ca = pki::load_ca(data_dir, &kek)?.cert_pem()?;
    crate::mtls::acceptor(what, &identity.chain_pem, &identity.key_pem, ca.as_bytes(), min_version)
}

/// An empty conversation table with the limits of `[eap]`.
fn conversations<K: Eq + std::hash::Hash + Clone>(eap: &EapSection) -> Conversations<K> {
    Conversations::new(Duration::from_secs(eap.session_timeout_secs), eap.max_sessions, eap.max_sessions_per_client())
}

/// The ledger as `serve` needs it: able to sign approvals, and with the
/// merchants of the configuration registered.
pub async fn serving_ledger(config: &Config) -> Result<SqlLedger, ServerError> {
    let signer = crate::admin::load_signer(&config.server.data_dir)?;
    let ledger = crate::admin::open_ledger(config, Some(signer)).await?;
    crate::admin::register_merchants(&ledger, config, "config").await?;
    info!(backend = ?ledger.backend(), durability = %ledger.durability().await?, "ledger open");
    Ok(ledger)
}

/// The TLS family's server contexts, EAP-TLS's (client certificate
/// required) and EAP-TTLS's (none): the issuer PKI's server certificate
/// (created if the data dir predates it) and `[eap.tls]`.
fn tls_configs(config: &Config) -> Result<(TlsServerConfig, TlsServerConfig), ServerError> {
    let kek = Kek::load(&config.server.data_dir)?;
    let identity = pki::server_identity(&config.server.data_dir, &kek, &config.server.realm)?;
    let section = &config.eap.tls;
    let version = |text: &str| -> Result<TlsVersion, ServerError> {
        text.parse().map_err(|_| ServerError::Config(format!("eap.tls: {text:?} is not a TLS version")))
    };
    let options = TlsServerOptions {
        certificate_chain_pem: identity.chain_pem,
        private_key_pem: identity.key_pem,
        min_version: version(&section.min_version)?,
        max_version: version(&section.max_version)?,
        fragment_size: section.fragment_size,
        max_message: section.max_message,
        session_lifetime: Duration::from_secs(section.session_lifetime_secs),
        session_cache_size: section.session_cache_size,
    };
    let build = |client_auth| {
        TlsServerConfig::with_client_auth(&options, client_auth)
            .map_err(|e| ServerError::Config(format!("eap.tls: {e}")))
    };
    Ok((build(ClientAuth::Required)?, build(ClientAuth::None)?))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
