//! The terminal's Diameter client transport (RFC 6733 over TCP, tokio), built
//! on the sans-IO [`Peer`].
//!
//! One background task per configured server owns that server's
//! [`TcpStream`] and its [`Peer`] (initiator, Auth-Application-Id 5 Diameter
//! EAP and Acct-Application-Id 3 base accounting). The task feeds the Peer
//! what it reads and the timeouts it asks for, writes what it says to write,
//! and takes requests from the client over a bounded channel; answers are
//! matched to their callers by the Hop-by-Hop id the Peer assigned. The
//! watchdog (DWR/DWA, RFC 3539) is entirely the Peer's: the task only tells
//! the client that a connection is open, suspect (a DWR went unanswered for
//! Tw) or down.
//!
//! When a connection goes down (the Peer says Close, or the socket fails)
//! every request waiting on it fails at once, so the caller moves on without
//! waiting out its timeout; the task then waits Tc ([`DiameterSettings::reconnect`],
//! RFC 6733 §2.1) and connects again with a fresh Peer. A connection that
//! becomes suspect hands its unanswered requests back the same way
//! ([`Peer::take_unanswered`]), and new requests prefer open connections.
//!
//! Failover (RFC 6733 §5.5.4): [`DiameterClient::request`] sends a request
//! to the most preferred open connection; if that connection goes down or
//! no answer comes within [`DiameterSettings::timeout`], the same request
//! (same End-to-End id) is sent again with the T flag over the next open
//! connection, [`DiameterSettings::attempts`] times in all. Should only one
//! connection be open, the retransmission goes over it again (with T): a
//! relay such as freeDiameterd, or the eapay server's duplicate detection,
//! answers it once. [`DiameterClient::request_on`] keeps a request on one
//! server, for the rounds of an EAP conversation that server holds.
//!
//! Identity: Origin-State-Id is the Unix time the client started; each CER
//! carries the local address of its own connection as Host-IP-Address, the
//! configured Vendor-Id and Product-Name. Session-Ids (RFC 6733 §8.8) and
//! End-to-End ids (§3) both put the start time in their high part and a
//! counter starting at a random value in their low part, so they stay
//! unique over restarts.
//!
//! Transport: plain TCP, or TLS (RFC 6733 §13.1: TLS on a dedicated port
//! from the first byte, then the CER; Inband-Security-Id stays 0) with the
//! terminal's certificate ([`crate::tls`]) when [`DiameterSettings::tls`]
//! is set. Over TLS 1.3 the server judges the certificate after the
//! client's half of the handshake, so a refused terminal learns of it as a
//! connection closed before the CEA; the reason then says so.
//!
//! Memory stays bounded: each connection's command channel holds at most
//! [`COMMAND_QUEUE`] requests, and the requests in flight on a connection
//! are those its Peer accepted (at most [`aaa_proto::diameter::peer::MAX_PENDING`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aaa_proto::diameter::message::{Limits, Message, MessageError, OwnedAvp, FLAG_ERROR, FLAG_RETRANSMIT};
use aaa_proto::diameter::peer::{Action, LocalPeer, Peer, PeerConfig, PeerError, State, Timers};
use aaa_proto::dictionary::diameter::{application, avp, command, DisconnectCause, ResultCode};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::tls::{TlsContext, TlsSettings, TlsSetupError};

/// Requests queued for one connection's task before callers wait to queue more.
pub const COMMAND_QUEUE: usize = 64;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// A write that makes no progress for this long (at least) means the server is gone.
const MIN_WRITE_TIMEOUT: Duration = Duration::from_secs(6);
/// `close` waits this much beyond the DPA timeout for the tasks to finish.
const CLOSE_SLACK: Duration = Duration::from_secs(1);
/// Queued requests gathered into one write at most.
const MAX_BATCH: usize = 256;
/// How the Peer words a CEA with 3010 DIAMETER_UNKNOWN_PEER.
const UNKNOWN_PEER_CEA: &str = "CEA Result-Code 3010";
/// Over TLS a server knows its peer by its certificate's key as well as by
/// its Origin-Host: what a refusal most likely means.
const TLS_PEER_HINT: &str = " (over TLS the server knows a terminal by its certificate's key: is it the key_sha256 \
                             of the [[diameter.peers]] entry for this Origin-Host?)";

/// How the terminal talks Diameter.
#[derive(Debug, Clone)]
pub struct DiameterSettings {
    /// Origin-Host: the terminal's Diameter identity (FQDN).
    pub origin_host: String,
    /// Origin-Realm.
    pub origin_realm: String,
    /// Destination-Realm of requests built by [`DiameterClient::new_request`] (the issuer realm).
    pub destination_realm: String,
    /// Destination-Host of requests built by [`DiameterClient::new_request`], if set.
    pub destination_host: Option<String>,
    /// In order of preference; one long-lived TCP connection per server (a
    /// server may be a relay agent such as freeDiameterd).
    pub servers: Vec<SocketAddr>,
    /// How long one request waits for its answer before it is sent again,
    /// with the T flag, over the next open connection (RFC 6733 §5.5.4
    /// failover). Also how long [`DiameterClient::connect`] waits for a
    /// first capabilities exchange.
    pub timeout: Duration,
    /// Attempts per request over all connections before giving up (0 counts as 1).
    pub attempts: u32,
    /// The Peer's timers: Tw (the watchdog), the CEA wait (also the TCP
    /// connect timeout) and the DPA wait.
    pub timers: Timers,
    /// Wait before reconnecting a connection that went down (Tc, RFC 6733
    /// §2.1: 30 s by default; tests use less).
    pub reconnect: Duration,
    /// Vendor-Id in the CER: the product's vendor, eapay's Private Enterprise Number.
    pub vendor_id: u32,
    /// Product-Name in the CER.
    pub product_name: String,
    /// Diameter over TLS with these credentials (every server's port is
    /// then a TLS port); plain TCP if `None`.
    pub tls: Option<TlsSettings>,
}

impl DiameterSettings {
    /// Settings with the defaults: a 5 s answer timeout, 3 attempts, the
    /// Peer's default timers (Tw 30 s), Tc 30 s, Vendor-Id 32473 (eapay) and
    /// Product-Name `eapay-terminal`.
    pub fn new(origin_host: &str, origin_realm: &str, destination_realm: &str, servers: Vec<SocketAddr>) -> Self {
        DiameterSettings {
            origin_host: origin_host.to_string(),
            origin_realm: origin_realm.to_string(),
            destination_realm: destination_realm.to_string(),
            destination_host: None,
            servers,
            timeout: Duration::from_secs(5),
            attempts: 3,
            timers: Timers::default(),
            reconnect: Duration::from_secs(30),
            vendor_id: aaa_proto::dictionary::eapay::VENDOR_ID,
            product_name: "eapay-terminal".to_string(),
            tls: None,
        }
    }
}

/// Why a Diameter exchange failed. One line each.
#[derive(Debug, Error)]
pub enum DiameterError {
    /// The settings list no server.
    #[error("no Diameter server given")]
    NoServer,
    /// `request_on` was given an index past the configured servers.
    #[error("no Diameter server {index}: {count} are configured")]
    NoSuchServer { index: usize, count: usize },
    /// No connection was open to send on, nor opened in time.
    #[error("no open Diameter connection: {servers}")]
    NoOpenPeer { servers: String },
    /// Every attempt went unanswered or lost its connection.
    #[error("no Diameter answer after {attempts} attempts (last: {last})")]
    Timeout { attempts: u32, last: String },
    /// [`DiameterClient::close`] was called.
    #[error("the Diameter client is closed")]
    Closed,
    /// The request cannot be encoded.
    #[error("cannot encode the Diameter request: {0}")]
    Encode(#[from] MessageError),
    /// The message is not an application request this client may send.
    #[error("cannot send this Diameter message: {0}")]
    Invalid(PeerError),
    /// The TLS credentials cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// No capabilities exchange succeeded with any server; says why for each.
    #[error("no Diameter connection could be opened: {0}")]
    Connect(String),
}

/// Where one server's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// TCP connect or capabilities exchange under way.
    Connecting,
    /// Capabilities exchanged; the watchdog is content.
    Open,
    /// Open, but a DWR went unanswered: used only when nothing is open.
    Suspect,
    /// Down, waiting Tc to reconnect.
    Down,
    /// The task has ended (closed, or the client was dropped).
    Finished,
}

/// What the client knows of one server's connection, published by its task.
#[derive(Debug, Clone)]
struct ConnStatus {
    link: Link,
    /// Connections (or attempts) that ended, for `connect` to tell when every server failed once.
    failures: u32,
    /// Why the last connection (or attempt) ended.
    last_error: Option<String>,
    /// The server's Origin-Host while open.
    remote: Option<String>,
}

impl ConnStatus {
    fn usable(&self) -> bool {
        matches!(self.link, Link::Open | Link::Suspect)
    }

    fn describe(&self) -> String {
        match (self.link, &self.last_error) {
            (Link::Open, _) => format!("open to {}", self.remote.as_deref().unwrap_or("?")),
            (Link::Suspect, _) => "suspect (no answer to a watchdog request)".to_string(),
            (Link::Finished, _) => "closed".to_string(),
            (Link::Connecting, None) => "connecting".to_string(),
            (Link::Connecting | Link::Down, Some(e)) => e.clone(),
            (Link::Down, None) => "down".to_string(),
        }
    }
}

/// One server's statuses, "addr: status; addr: status".
fn describe_all(servers: &[SocketAddr], statuses: &[ConnStatus]) -> String {
    servers.iter().zip(statuses).map(|(addr, s)| format!("{addr}: {}", s.describe())).collect::<Vec<_>>().join("; ")
}

/// What the client asks of a connection's task.
enum Command {
    /// Send this request; the answer, or why there will be none, goes back on `reply`.
    Request { message: Message, reply: oneshot::Sender<Result<Message, String>> },
    /// DPR (REBOOTING), wait for the DPA, end the task; `done` when it has.
    Disconnect { done: oneshot::Sender<()> },
}

struct Inner {
    settings: DiameterSettings,
    /// One per server; dropping them (the last client clone) ends the tasks.
    commands: Vec<mpsc::Sender<Command>>,
    status: Arc<watch::Sender<Vec<ConnStatus>>>,
    closed: AtomicBool,
    /// Unix time of the start: Origin-State-Id and the high part of the ids.
    origin_state_id: u32,
    session_low: AtomicU32,
    end_to_end_low: AtomicU32,
}

/// A Diameter client for one or more servers; cheap to clone (all clones
/// share the connections). The connections' tasks end when the last clone
/// is dropped (without DPR: call [`DiameterClient::close`] for an orderly
/// shutdown).
#[derive(Clone)]
pub struct DiameterClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DiameterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let statuses = self.inner.status.borrow();
        f.debug_struct("DiameterClient")
            .field("origin_host", &self.inner.settings.origin_host)
            .field("servers", &describe_all(&self.inner.settings.servers, &statuses))
            .finish_non_exhaustive()
    }
}

/// How one failed attempt failed.
enum Failure {
    /// The connection went down (or was not open); the request may or may not have arrived.
    Down(String),
    /// No answer within the timeout.
    Timeout,
}

impl DiameterClient {
    /// Connects to every server and waits until at least one capabilities
    /// exchange succeeded. Fails with one error naming each server's
    /// problem (e.g. `CEA Result-Code 3010 DIAMETER_UNKNOWN_PEER`, connection
    /// refused) once every server failed once, or after `timeout`. The
    /// servers not open yet keep trying in the background.
    pub async fn connect(settings: DiameterSettings) -> Result<Self, DiameterError> {
        if settings.servers.is_empty() {
            return Err(DiameterError::NoServer);
        }
        let tls = match &settings.tls {
            Some(tls) => Some(Arc::new(TlsContext::new(tls)?)),
            None => None,
        };
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Seconds since 1970 fit 32 bits until 2106; the truncation only needs to change on restart.
        let origin_state_id = started as u32;
        let local = LocalPeer {
            origin_host: settings.origin_host.clone(),
            origin_realm: settings.origin_realm.clone(),
            host_ip_addresses: Vec::new(),
            vendor_id: settings.vendor_id,
            product_name: settings.product_name.clone(),
            firmware_revision: None,
            origin_state_id,
            auth_applications: vec![application::EAP],
            acct_applications: vec![application::ACCOUNTING],
        };
        let initial = ConnStatus { link: Link::Connecting, failures: 0, last_error: None, remote: None };
        let (status, mut watcher) = watch::channel(vec![initial; settings.servers.len()]);
        let status = Arc::new(status);
        let mut commands = Vec::with_capacity(settings.servers.len());
        for (index, &addr) in settings.servers.iter().enumerate() {
            let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
            commands.push(tx);
            let conn = Conn {
                index,
                addr,
                local: local.clone(),
                timers: settings.timers,
                reconnect: settings.reconnect,
                status: Arc::clone(&status),
                tls: tls.clone(),
            };
            tokio::spawn(conn.run(rx));
        }
        let client = DiameterClient {
            inner: Arc::new(Inner {
                commands,
                status,
                closed: AtomicBool::new(false),
                origin_state_id,
                session_low: AtomicU32::new(rand::random()),
                end_to_end_low: AtomicU32::new(rand::random()),
                settings,
            }),
        };
        let deadline = tokio::time::Instant::now() + client.inner.settings.timeout;
        let settled = |v: &Vec<ConnStatus>| v.iter().any(ConnStatus::usable) || v.iter().all(|s| s.failures > 0);
        let timed_out = wait_for(&mut watcher, deadline, settled).await.is_none();
        let statuses = watcher.borrow().clone();
        if statuses.iter().any(ConnStatus::usable) {
            return Ok(client);
        }
        let mut why = describe_all(&client.inner.settings.servers, &statuses);
        if timed_out {
            why.push_str(&format!(" (no capabilities exchange within {:?})", client.inner.settings.timeout));
        }
        // Dropping `client` ends the tasks.
        Err(DiameterError::Connect(why))
    }

    /// A fresh Session-Id (RFC 6733 §8.8): `<origin_host>;<high 32 bits>;<low
    /// 32 bits>`, the high part the client's start time (Unix seconds), the
    /// low part a counter that starts at a random value: unique over restarts.
    pub fn new_session_id(&self) -> String {
        let low = self.inner.session_low.fetch_add(1, Ordering::Relaxed);
        format!("{};{};{}", self.inner.settings.origin_host, self.inner.origin_state_id, low)
    }

    /// A fresh End-to-End id (RFC 6733 §3: the start time's low 12 bits
    /// above a 20-bit counter that starts at a random value). Keep it for
    /// every retransmission of the same request.
    pub fn next_end_to_end(&self) -> u32 {
        let low = self.inner.end_to_end_low.fetch_add(1, Ordering::Relaxed) & 0x000f_ffff;
        (self.inner.origin_state_id & 0xfff) << 20 | low
    }

    /// A request (R and P set) with a fresh End-to-End id and the AVPs
    /// every routed request starts with: Session-Id (first, RFC 6733 §8.8),
    /// Origin-Host, Origin-Realm, Destination-Realm and, if configured,
    /// Destination-Host. The caller adds the application's AVPs.
    pub fn new_request(&self, command: u32, application: u32, session_id: &str) -> Message {
        let settings = &self.inner.settings;
        let mut m = Message::request(command, application, 0, self.next_end_to_end());
        m.push(OwnedAvp::utf8(avp::SESSION_ID, None, true, session_id))
            .push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, &settings.origin_host))
            .push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, &settings.origin_realm))
            .push(OwnedAvp::utf8(avp::DESTINATION_REALM, None, true, &settings.destination_realm));
        if let Some(host) = &settings.destination_host {
            m.push(OwnedAvp::utf8(avp::DESTINATION_HOST, None, true, host));
        }
        m
    }

    /// Sends `request` (the caller set command, application, End-to-End id
    /// and AVPs; the Peer assigns the Hop-by-Hop id) over the preferred open
    /// connection and returns its answer (whatever its Result-Code) and the
    /// index of the server that answered. If the connection goes down or the
    /// answer does not come within `timeout`, the same request (same
    /// End-to-End id) is sent with the T flag over the next open connection,
    /// `attempts` times in all. With no connection open it waits for one
    /// within the time the attempts would take.
    pub async fn request(&self, request: Message) -> Result<(Message, usize), DiameterError> {
        self.send(request, None).await
    }

    /// Like [`request`](Self::request) but only over server `index` (the
    /// rounds of one EAP conversation belong to the server holding it):
    /// retransmitted with the T flag over that server's connection (after it
    /// reconnects, if it went down, within the time the attempts would
    /// take), never elsewhere.
    pub async fn request_on(&self, index: usize, request: Message) -> Result<Message, DiameterError> {
        let count = self.inner.settings.servers.len();
        if index >= count {
            return Err(DiameterError::NoSuchServer { index, count });
        }
        self.send(request, Some(index)).await.map(|(answer, _)| answer)
    }

    /// The attempts of [`request`](Self::request) (`only` None: any
    /// connection, the next one after a failure) and of
    /// [`request_on`](Self::request_on) (`only`: that server's).
    async fn send(&self, request: Message, only: Option<usize>) -> Result<(Message, usize), DiameterError> {
        check(&request)?;
        let settings = &self.inner.settings;
        let attempts = settings.attempts.max(1);
        let budget = tokio::time::Instant::now() + settings.timeout.saturating_mul(attempts);
        let mut message = request;
        let mut last: Option<String> = None;
        let mut previous = None;
        for attempt in 0..attempts {
            self.check_open()?;
            let index = match self.choose(only, previous) {
                Some(index) => index,
                None => {
                    let mut watcher = self.inner.status.subscribe();
                    let usable = |v: &Vec<ConnStatus>| match only {
                        Some(index) => v.get(index).is_some_and(ConnStatus::usable),
                        None => v.iter().any(ConnStatus::usable),
                    };
                    if wait_for(&mut watcher, budget, usable).await.is_none() {
                        return Err(self.no_open_peer(attempt, last));
                    }
                    self.check_open()?;
                    match self.choose(only, previous) {
                        Some(index) => index,
                        None => continue,
                    }
                }
            };
            if attempt > 0 {
                message.flags |= FLAG_RETRANSMIT;
            }
            let deadline = (tokio::time::Instant::now() + settings.timeout).min(budget);
            match self.exchange(index, message.clone(), deadline).await {
                Ok(answer) => return Ok((answer, index)),
                Err(failure) => last = Some(self.note_failure(index, attempt, &message, failure)),
            }
            previous = Some(index);
        }
        Err(DiameterError::Timeout { attempts, last: last.unwrap_or_else(|| "no connection open".to_string()) })
    }

    /// Where the next attempt goes: `only`, when its connection is usable;
    /// otherwise (with no `only`) the connection [`pick`](Self::pick) picks.
    fn choose(&self, only: Option<usize>, previous: Option<usize>) -> Option<usize> {
        match only {
            Some(index) => self.inner.status.borrow().get(index).is_some_and(ConnStatus::usable).then_some(index),
            None => self.pick(previous),
        }
    }

    /// Orderly shutdown: DPR (Disconnect-Cause REBOOTING) on every open
    /// connection, wait for the DPAs (at most the DPA timeout and a second),
    /// close. Requests after this fail with [`DiameterError::Closed`].
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.inner.settings.timers.dpa_timeout + CLOSE_SLACK;
        let mut pending = Vec::with_capacity(self.inner.commands.len());
        for tx in &self.inner.commands {
            let (done, finished) = oneshot::channel();
            if let Ok(Ok(())) = tokio::time::timeout_at(deadline, tx.send(Command::Disconnect { done })).await {
                pending.push(finished);
            }
        }
        for finished in pending {
            let _ = tokio::time::timeout_at(deadline, finished).await;
        }
    }

    /// The servers with an open connection now (suspect ones included: the
    /// transport is up, the watchdog has doubts), for logs and tests.
    pub fn open_servers(&self) -> Vec<SocketAddr> {
        let statuses = self.inner.status.borrow();
        self.inner.settings.servers.iter().zip(statuses.iter()).filter(|(_, s)| s.usable()).map(|(a, _)| *a).collect()
    }

    fn check_open(&self) -> Result<(), DiameterError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(DiameterError::Closed)
        } else {
            Ok(())
        }
    }

    /// The first open connection after `previous` (in preference order from
    /// the start if none), else the first suspect one; `previous` itself last.
    fn pick(&self, previous: Option<usize>) -> Option<usize> {
        let statuses = self.inner.status.borrow();
        let n = statuses.len();
        let order: Vec<usize> = match previous {
            None => (0..n).collect(),
            Some(p) => (p + 1..n).chain(0..=p.min(n.saturating_sub(1))).collect(),
        };
        let with = |link: Link| order.iter().copied().find(|&i| statuses.get(i).is_some_and(|s| s.link == link));
        with(Link::Open).or_else(|| with(Link::Suspect))
    }

    fn no_open_peer(&self, attempt: u32, last: Option<String>) -> DiameterError {
        match last {
            Some(last) if attempt > 0 => DiameterError::Timeout { attempts: attempt, last },
            _ => {
                let statuses = self.inner.status.borrow();
                DiameterError::NoOpenPeer { servers: describe_all(&self.inner.settings.servers, &statuses) }
            }
        }
    }

    fn note_failure(&self, index: usize, attempt: u32, message: &Message, failure: Failure) -> String {
        let addr = self.inner.settings.servers.get(index).map_or_else(|| "?".to_string(), ToString::to_string);
        let why = match failure {
            Failure::Down(reason) => reason,
            Failure::Timeout => format!("no answer within {:?}", self.inner.settings.timeout),
        };
        debug!(server = %addr, attempt = attempt + 1, end_to_end = message.end_to_end, "Diameter request failed: {why}");
        format!("{addr}: {why}")
    }

    /// One attempt over connection `index`, until `deadline`.
    async fn exchange(
        &self,
        index: usize,
        message: Message,
        deadline: tokio::time::Instant,
    ) -> Result<Message, Failure> {
        let gone = || Failure::Down("the connection's task has ended".to_string());
        let tx = self.inner.commands.get(index).ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout_at(deadline, tx.send(Command::Request { message, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(gone()),
            Err(_) => return Err(Failure::Timeout),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(reason))) => Err(Failure::Down(reason)),
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

/// What the Peer would refuse, refused before any attempt is spent on it.
fn check(request: &Message) -> Result<(), DiameterError> {
    if !request.is_request() || request.is_error() {
        return Err(DiameterError::Invalid(PeerError::NotARequest));
    }
    if matches!(request.command, command::CAPABILITIES_EXCHANGE | command::DEVICE_WATCHDOG | command::DISCONNECT_PEER) {
        return Err(DiameterError::Invalid(PeerError::BaseProtocol(request.command)));
    }
    request.encode()?;
    Ok(())
}

/// Waits until `ready` holds for the statuses, or `deadline`: `None` then.
async fn wait_for(
    watcher: &mut watch::Receiver<Vec<ConnStatus>>,
    deadline: tokio::time::Instant,
    mut ready: impl FnMut(&Vec<ConnStatus>) -> bool,
) -> Option<()> {
    loop {
        if ready(&watcher.borrow_and_update()) {
            return Some(());
        }
        match tokio::time::timeout_at(deadline, watcher.changed()).await {
            Ok(Ok(())) => {}
            // The sender lives in the client; gone means there is nothing to wait for.
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

/// How a connection (attempt) ended.
enum End {
    /// Closed on purpose (`close`, with its `done`; or the client dropped): the task ends.
    Shutdown(Option<oneshot::Sender<()>>),
    /// Went down (status already marked): reconnect after Tc.
    Down(String),
}

/// What one turn of a connection's loop came to.
enum Step {
    /// The Peer's actions, to carry out.
    Act(Vec<Action>),
    /// The socket failed.
    Down(String),
    /// Every client clone is gone.
    Dropped,
}

/// One server's connection task.
struct Conn {
    index: usize,
    addr: SocketAddr,
    /// This host, without Host-IP-Address: each connection adds its local address.
    local: LocalPeer,
    timers: Timers,
    reconnect: Duration,
    status: Arc<watch::Sender<Vec<ConnStatus>>>,
    /// Diameter over TLS: the terminal's TLS client.
    tls: Option<Arc<TlsContext>>,
}

/// The two directions of a connection, plain TCP or TLS alike.
type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// An open connection: its halves and this end's address (the CER's Host-IP-Address).
struct Opened {
    reader: Reader,
    writer: Writer,
    local_ip: std::net::IpAddr,
}

impl Conn {
    fn set(&self, update: impl FnOnce(&mut ConnStatus)) {
        self.status.send_modify(|v| {
            if let Some(s) = v.get_mut(self.index) {
                update(s);
            }
        });
    }

    /// Marks the connection down; the caller then fails what waited on it,
    /// so a failing-over request finds the status already changed.
    fn mark_down(&self, reason: &str) {
        warn!(server = %self.addr, "Diameter connection down: {reason}; reconnecting in {:?}", self.reconnect);
        self.set(|s| {
            s.link = Link::Down;
            s.failures = s.failures.saturating_add(1);
            s.last_error = Some(reason.to_string());
            s.remote = None;
        });
    }

    /// Marks the task finished and tells `close`, if it asked, that it is.
    fn mark_finished(&self, done: Option<oneshot::Sender<()>>) {
        self.set(|s| {
            s.link = Link::Finished;
            s.remote = None;
        });
        debug!(server = %self.addr, "Diameter connection task finished");
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Connect, serve, wait Tc, again; until closed or the client is dropped.
    async fn run(self, mut commands: mpsc::Receiver<Command>) {
        loop {
            self.set(|s| s.link = Link::Connecting);
            let reason = match self.connection(&mut commands).await {
                End::Shutdown(done) => return self.mark_finished(done),
                End::Down(reason) => reason,
            };
            let until = tokio::time::Instant::now() + self.reconnect;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    command = commands.recv() => match command {
                        None => return self.mark_finished(None),
                        Some(Command::Request { reply, .. }) => {
                            let _ = reply.send(Err(format!("connection down ({reason})")));
                        }
                        Some(Command::Disconnect { done }) => return self.mark_finished(Some(done)),
                    },
                }
            }
        }
    }

    /// Connects (TCP, then the TLS handshake if configured), answering
    /// commands meanwhile.
    async fn open_stream(&self, commands: &mut mpsc::Receiver<Command>) -> Result<Opened, End> {
        let connect_timeout = self.timers.cer_timeout;
        let connecting = tokio::time::timeout(connect_timeout, self.open());
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                r = &mut connecting => return match r {
                    Ok(Ok(opened)) => Ok(opened),
                    Ok(Err(e)) => Err(End::Down(e)),
                    Err(_) => Err(End::Down(format!("cannot connect within {connect_timeout:?}"))),
                },
                command = commands.recv() => match command {
                    None => return Err(End::Shutdown(None)),
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err("connection not open yet".to_string()));
                    }
                    Some(Command::Disconnect { done }) => return Err(End::Shutdown(Some(done))),
                },
            }
        }
    }

    async fn open(&self) -> Result<Opened, String> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| format!("cannot connect: {e}"))?;
        // RFC 3539 §3.2: no Nagle delay on AAA traffic.
        let _ = stream.set_nodelay(true);
        let local_ip = stream.local_addr().map_err(|e| format!("local address: {e}"))?.ip();
        match &self.tls {
            None => {
                let (reader, writer) = stream.into_split();
                Ok(Opened { reader: Box::new(reader), writer: Box::new(writer), local_ip })
            }
            Some(tls) => {
                let stream = tls.handshake(stream).await?;
                debug!(server = %self.addr, version = stream.ssl().version_str(), "Diameter/TLS handshake done");
                let (reader, writer) = tokio::io::split(stream);
                Ok(Opened { reader: Box::new(reader), writer: Box::new(writer), local_ip })
            }
        }
    }

    /// One TCP connection, from connect to close. Marks the status down (not finished) itself.
    async fn connection(&self, commands: &mut mpsc::Receiver<Command>) -> End {
        let Opened { mut reader, writer, local_ip } = match self.open_stream(commands).await {
            Ok(opened) => opened,
            Err(End::Down(reason)) => {
                self.mark_down(&reason);
                return End::Down(reason);
            }
            Err(end) => return end,
        };
        let config = Arc::new(PeerConfig {
            local: LocalPeer { host_ip_addresses: vec![local_ip], ..self.local.clone() },
            timers: self.timers,
            limits: Limits::default(),
        });
        let mut session = Session {
            peer: Peer::initiator(config, Instant::now(), rand::random()),
            writer,
            write_timeout: self.timers.tw.max(MIN_WRITE_TIMEOUT),
            waiters: HashMap::new(),
            done: None,
            suspect: false,
        };
        let actions = session.peer.handle_connected(Instant::now());
        if let Some(reason) = session.execute(self, actions).await {
            return session.finish(self, reason).await;
        }
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let wake = session.peer.poll_timeout().map(tokio::time::Instant::from_std);
            let step = tokio::select! {
                r = reader.read(&mut buf) => match r {
                    Ok(0) if session.peer.state() == State::WaitCea && self.tls.is_some() => {
                        Step::Down(format!("the server closed the connection before its CEA{TLS_PEER_HINT}"))
                    }
                    Ok(0) if session.peer.state() == State::WaitCea => {
                        Step::Down("the server closed the connection before its CEA".to_string())
                    }
                    Ok(0) => Step::Down("the server closed the connection".to_string()),
                    Ok(n) => Step::Act(session.peer.handle_bytes(buf.get(..n).unwrap_or_default(), Instant::now())),
                    Err(e) => Step::Down(format!("read: {e}")),
                },
                _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                    Step::Act(session.peer.handle_timeout(Instant::now()))
                }
                command = commands.recv(), if session.done.is_none() => match command {
                    None => Step::Dropped,
                    Some(Command::Request { message, reply }) => {
                        // Requests that are already queued go out in the same
                        // write (over TLS, the same record): many conversations
                        // share one connection. Under load others are about to
                        // queue theirs: yielding once lets them join.
                        let mut actions = session.request(message, reply);
                        tokio::task::yield_now().await;
                        for _ in 0..MAX_BATCH {
                            match commands.try_recv() {
                                Ok(Command::Request { message, reply }) => actions.extend(session.request(message, reply)),
                                Ok(Command::Disconnect { done }) => {
                                    session.done = Some(done);
                                    actions.extend(session.peer.disconnect(DisconnectCause::Rebooting.value(), Instant::now()));
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        Step::Act(actions)
                    }
                    Some(Command::Disconnect { done }) => {
                        session.done = Some(done);
                        Step::Act(session.peer.disconnect(DisconnectCause::Rebooting.value(), Instant::now()))
                    }
                },
            };
            let outcome = match step {
                Step::Act(actions) => session.execute(self, actions).await,
                Step::Down(reason) => Some(reason),
                // Nobody is left to wait for a DPA: just close.
                Step::Dropped => return End::Shutdown(None),
            };
            if let Some(reason) = outcome {
                return session.finish(self, reason).await;
            }
            session.watch_suspect(self);
        }
    }
}

/// One open (or opening) connection: its Peer and what waits on it.
struct Session {
    peer: Peer,
    writer: Writer,
    write_timeout: Duration,
    /// Callers waiting for answers, by the Hop-by-Hop id the Peer assigned.
    /// Bounded by the Peer's own cap on requests in flight.
    waiters: HashMap<u32, oneshot::Sender<Result<Message, String>>>,
    /// `close` asked for a DPR: told when the connection is closed.
    done: Option<oneshot::Sender<()>>,
    /// The Peer was last seen [`State::Suspect`].
    suspect: bool,
}

impl Session {
    fn request(&mut self, message: Message, reply: oneshot::Sender<Result<Message, String>>) -> Vec<Action> {
        if reply.is_closed() {
            // The caller gave up while the request sat in the queue.
            return Vec::new();
        }
        match self.peer.send_request(message, Instant::now()) {
            Ok((hop_by_hop, actions)) => {
                self.waiters.insert(hop_by_hop, reply);
                actions
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                Vec::new()
            }
        }
    }

    /// Carries out the Peer's actions in order, its messages in one write;
    /// the reason if the connection must go.
    async fn execute(&mut self, conn: &Conn, actions: Vec<Action>) -> Option<String> {
        let mut queue = VecDeque::from(actions);
        let mut out = Vec::new();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(bytes) => out.extend_from_slice(&bytes),
                Action::Deliver(message) if message.is_request() => {
                    // A server-initiated request (ASR, RAR, ...): nothing here serves one.
                    debug!(server = %conn.addr, command = message.command, "Diameter request from the server: 3001");
                    let answer = unsupported(&conn.local, &message);
                    match self.peer.send_answer(&answer, Instant::now()) {
                        Ok(actions) => queue.extend(actions),
                        Err(e) => debug!(server = %conn.addr, "cannot answer the server's request: {e}"),
                    }
                }
                Action::Deliver(answer) => match self.waiters.remove(&answer.hop_by_hop) {
                    Some(waiter) => {
                        let _ = waiter.send(Ok(answer));
                    }
                    None => debug!(server = %conn.addr, hop_by_hop = answer.hop_by_hop, "late Diameter answer dropped"),
                },
                Action::Open(remote) => {
                    info!(
                        server = %conn.addr,
                        "Diameter connection open to {} (realm {}, {})",
                        remote.origin_host, remote.origin_realm, remote.product_name
                    );
                    conn.set(|s| {
                        s.link = Link::Open;
                        s.remote = Some(remote.origin_host.clone());
                    });
                }
                // What was to be sent before the Close (a DPA) goes first.
                Action::Close { reason } => {
                    let reason = match &conn.tls {
                        Some(_) if reason.starts_with(UNKNOWN_PEER_CEA) => format!("{reason}{TLS_PEER_HINT}"),
                        _ => reason,
                    };
                    return Some(self.write(&out).await.unwrap_or(reason));
                }
            }
        }
        self.write(&out).await
    }

    /// Writes `out` (if anything); the reason if the connection must go.
    async fn write(&mut self, out: &[u8]) -> Option<String> {
        if out.is_empty() {
            return None;
        }
        match tokio::time::timeout(self.write_timeout, self.writer.write_all(out)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("write: {e}")),
            Err(_) => Some(format!("write stalled for {:?}", self.write_timeout)),
        }
    }

    /// RFC 3539: a suspect connection fails over what it carries; when the
    /// peer shows life again it is open once more.
    fn watch_suspect(&mut self, conn: &Conn) {
        match (self.peer.state(), self.suspect) {
            (State::Suspect, false) => {
                self.suspect = true;
                warn!(server = %conn.addr, "Diameter connection suspect: no answer to the watchdog");
                conn.set(|s| s.link = Link::Suspect);
                for request in self.peer.take_unanswered() {
                    if let Some(waiter) = self.waiters.remove(&request.hop_by_hop) {
                        let _ = waiter.send(Err("the watchdog suspects the connection".to_string()));
                    }
                }
            }
            (State::Open, true) => {
                self.suspect = false;
                info!(server = %conn.addr, "Diameter connection open again");
                conn.set(|s| s.link = Link::Open);
            }
            _ => {}
        }
    }

    fn fail_all(&mut self, reason: &str) {
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(Err(format!("connection down ({reason})")));
        }
    }

    /// The connection is over: mark it down (unless `close` asked for it,
    /// which also closes the stream politely: FIN, or TLS close_notify),
    /// then fail what waits.
    async fn finish(mut self, conn: &Conn, reason: String) -> End {
        match self.done.take() {
            Some(done) => {
                let _ = tokio::time::timeout(CLOSE_SLACK, self.writer.shutdown()).await;
                info!(server = %conn.addr, "Diameter connection closed: {reason}");
                self.fail_all(&reason);
                End::Shutdown(Some(done))
            }
            None => {
                conn.mark_down(&reason);
                self.fail_all(&reason);
                End::Down(reason)
            }
        }
    }
}

/// RFC 6733 §7.1.3: 3001 DIAMETER_COMMAND_UNSUPPORTED (E bit) for a request we do not serve.
fn unsupported(local: &LocalPeer, request: &Message) -> Message {
    let mut answer = Message::answer_to(request);
    answer.flags |= FLAG_ERROR;
    if let Some(session_id) = request.find(avp::SESSION_ID, None) {
        answer.push(session_id.clone());
    }
    answer
        .push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, &local.origin_host))
        .push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, &local.origin_realm))
        .push(OwnedAvp::u32(avp::RESULT_CODE, None, true, ResultCode::CommandUnsupported.value()));
    answer
}
