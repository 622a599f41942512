//! The Diameter front end: RFC 6733 base protocol over TCP with the Diameter
//! EAP application (RFC 4072, DER/DEA) and base accounting (ACR/ACA), an
//! adapter between the Diameter wire format and the protocol-neutral
//! [`crate::core`].
//!
//! Each accepted connection is driven by the sans-IO
//! [`aaa_proto::diameter::peer::Peer`] (capabilities exchange, watchdog,
//! disconnect); the application requests it delivers are answered here:
//! - a request for another realm gets 3003 (this server is no relay), for
//!   another host 3002, for an application other than EAP or accounting 3007,
//!   an unknown command 3001, an AVP with the M bit that this server does not
//!   understand 5001, a missing required AVP 5005; each with Failed-AVP;
//! - a retransmission (same End-to-End id and Origin-Host, RFC 6733 §6.3)
//!   gets the cached answer, never a second decision;
//! - a DER runs one EAP round through [`crate::core::exchange`], keyed by
//!   Session-Id and the Origin-Host that owns the session;
//! - an ACR carries Eapay-Settlement-Action like RADIUS accounting.
//!
//! Decisions (RFC 4072 leaves room): DEA 1001 carries no State (Session-Id
//! keeps the conversation together; a State the client sent is echoed);
//! a DER that continues no live conversation and is not an
//! EAP-Response/Identity gets 5002 DIAMETER_UNKNOWN_SESSION_ID; an EAP
//! packet whose Length disagrees gets 5004 with Failed-AVP; a full table
//! 3004 DIAMETER_TOO_BUSY; a ledger failure 3004 too, uncached, so the
//! client's retransmission is decided afresh.

mod accounting;
mod connection;
mod dispatch;
mod eap;
pub mod peers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aaa_proto::diameter::message::{Limits, Message};
use aaa_proto::diameter::peer::{LocalPeer, PeerConfig, Timers};
use aaa_proto::dictionary::diameter::application;
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_openssl::SslStream;
use tracing::{debug, warn};

use crate::config::DiameterSection;
use crate::core::counters::{bump, LogLimiter};
use crate::core::duplicates::DuplicateCache;
use crate::core::{Conversations, Core};
use crate::counters;
use crate::error::ServerError;
use crate::ledger::Ledger;
use crate::mtls::{self, KeyDigest};
use peers::Peers;

/// A conversation is found by Session-Id and the Origin-Host of the
/// terminal that owns the session (a relay keeps both).
pub type SessionKey = (String, String);

/// A request on the wire (RFC 6733 §6.3): End-to-End id and Origin-Host.
pub type RequestKey = (u32, String);

/// Connections served at once; beyond this, new ones are closed at once.
const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake must be over within this.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections from one address at once. A terminal or relay needs one (a
/// few while it fails over); more is a peer that opens and stalls.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 16;

counters!(
    /// What the Diameter front end received, answered and refused.
    DiameterCounters {
        diameter_connections,
        diameter_requests,
        diameter_answers,
        diameter_duplicates_resent,
        diameter_duplicates_dropped,
        diameter_protocol_errors,
        diameter_closed,
        diameter_connections_refused,
        diameter_tls_refused,
    }
);

/// The Diameter front end's state.
pub struct Diameter<L> {
    pub core: Arc<Core<L>>,
    pub peers: Peers,
    pub conversations: Conversations<SessionKey>,
    /// Answers shared with the connection that sends them, not copied.
    pub duplicates: DuplicateCache<RequestKey, Arc<Message>>,
    pub counters: DiameterCounters,
    /// What this server says of itself in CEA, DWA and every answer.
    pub peer_config: Arc<PeerConfig>,
    pub(crate) logs: LogLimiter,
    /// Open connections by source address, for the per-address cap.
    connections: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl<L: Ledger> Diameter<L> {
    /// A front end for `section` over `core`; `conversations` is its own table.
    pub fn new(
        core: Arc<Core<L>>,
        section: &DiameterSection,
        conversations: Conversations<SessionKey>,
    ) -> Result<Self, ServerError> {
        let local = LocalPeer {
            origin_host: section.origin_host.clone(),
            origin_realm: section.origin_realm.clone(),
            // Overwritten per connection with the address it was accepted on.
            host_ip_addresses: vec![section.listen.ip()],
            vendor_id: core.vendor_id,
            product_name: "eapay".into(),
            firmware_revision: None,
            origin_state_id: origin_state_id(),
            auth_applications: vec![application::EAP],
            acct_applications: vec![application::ACCOUNTING],
        };
        let timers = Timers {
            tw: Duration::from_secs(section.watchdog_secs),
            cer_timeout: Duration::from_secs(section.cer_timeout_secs),
            ..Timers::default()
        };
        let limits = Limits { max_message: section.max_message, ..Limits::default() };
        Ok(Self {
            core,
            peers: Peers::new(&section.peers)?,
            conversations,
            duplicates: DuplicateCache::new(Duration::from_secs(section.duplicate_window_secs), 1 << 20),
            counters: DiameterCounters::default(),
            peer_config: Arc::new(PeerConfig { local, timers, limits }),
            logs: LogLimiter::new(Duration::from_secs(10)),
            connections: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Admits a new connection from `source`, or says why not: only the
    /// address blocks of configured peers may connect at all, and each
    /// address holds at most [`MAX_CONNECTIONS_PER_ADDRESS`], so a peer that
    /// opens connections and stalls in them never takes another's place.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Result<ConnectionSlot<L>, &'static str> {
        if !self.peers.admits(source) {
            return Err("address of no configured peer");
        }
        let mut open = self.connections.lock().map_err(|_| "connection table unavailable")?;
        let held = open.entry(source).or_insert(0);
        if *held >= MAX_CONNECTIONS_PER_ADDRESS {
            return Err("too many connections from this address");
        }
        *held += 1;
        Ok(ConnectionSlot { front: self.clone(), source })
    }

    /// Counts a connection closed at once and logs it, rate-limited.
    fn refuse_connection(&self, source: IpAddr, why: &'static str) {
        bump(&self.counters.diameter_connections_refused);
        if self.logs.allow(source, why) {
            warn!(%source, reason = why, "Diameter connection refused");
        }
    }

    /// Counts a refused or dropped message and logs it, rate-limited.
    pub(crate) fn refused(&self, source: IpAddr, reason: &'static str, detail: &str) {
        bump(&self.counters.diameter_protocol_errors);
        if self.logs.allow(source, reason) {
            warn!(%source, reason, detail, "Diameter request refused");
        }
    }
}

/// One admitted connection's place in the per-address count, given back
/// when the connection ends.
struct ConnectionSlot<L> {
    front: Arc<Diameter<L>>,
    source: IpAddr,
}

impl<L> Drop for ConnectionSlot<L> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.front.connections.lock() {
            if let Some(held) = open.get_mut(&self.source) {
                *held -= 1;
                if *held == 0 {
                    open.remove(&self.source);
                }
            }
        }
    }
}

/// The server side of a TLS handshake within [`TLS_HANDSHAKE_DEADLINE`]:
/// the stream and the digest of the key the peer's certificate carries.
async fn handshake(
    acceptor: &SslAcceptor,
    stream: tokio::net::TcpStream,
) -> Result<(SslStream<tokio::net::TcpStream>, KeyDigest), String> {
    let ssl = Ssl::new(acceptor.context()).map_err(|e| e.to_string())?;
    let mut tls = SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
    match tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, std::pin::Pin::new(&mut tls).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("handshake timed out".into()),
    }
    let key = mtls::peer_key(tls.ssl()).ok_or("no peer certificate")?;
    Ok((tls, key))
}

/// Origin-State-Id (RFC 6733 §8.16): changes whenever the server restarts,
/// so peers learn that its state was lost. The start time serves.
fn origin_state_id() -> u32 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    u32::try_from(secs & u64::from(u32::MAX)).unwrap_or(1)
}

/// Accepts connections until `shutdown` turns true, then lets each
/// connection say goodbye (DPR) before returning. With `tls`, each
/// connection starts with a TLS handshake (RFC 6733 §13.1: a port where TLS
/// starts at once) and its peer is checked against the key of its
/// certificate as well as its CER.
pub async fn serve<L: Ledger>(
    listener: TcpListener,
    tls: Option<Arc<SslAcceptor>>,
    front: Arc<Diameter<L>>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(error = %e, "accept");
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    front.refuse_connection(remote.ip(), "too many connections");
                    continue;
                };
                let place = match front.admit(remote.ip()) {
                    Ok(place) => place,
                    Err(why) => {
                        front.refuse_connection(remote.ip(), why);
                        continue;
                    }
                };
                bump(&front.counters.diameter_connections);
                let (front, shutdown, tls) = (front.clone(), shutdown.clone(), tls.clone());
                tasks.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok();
                    match tls {
                        None => connection::run(front.clone(), stream, remote, local, None, shutdown).await,
                        Some(acceptor) => match handshake(&acceptor, stream).await {
                            Ok((stream, key)) => {
                                connection::run(front.clone(), stream, remote, local, Some(key), shutdown).await
                            }
                            Err(why) => {
                                bump(&front.counters.diameter_tls_refused);
                                if front.logs.allow(remote.ip(), "diameter tls") {
                                    warn!(%remote, why, "Diameter/TLS handshake refused");
                                }
                            }
                        },
                    }
                    drop(place);
                    drop(slot);
                });
            }
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Each connection sees the same signal and sends DPR; wait for them.
    let _ = tokio::time::timeout(Duration::from_secs(6), async { while tasks.join_next().await.is_some() {} }).await;
}
