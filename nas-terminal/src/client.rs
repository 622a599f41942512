//! RADIUS request/response transactions (RFC 2865 §2.5, RFC 5080 §2.2.1):
//! the same identifier and authenticator on every retransmission to a
//! server, the wait doubling each time, failover to the next server when
//! one stays silent, and a reply accepted only if its Message-Authenticator
//! (required, first: Blast-RADIUS) and Response Authenticator verify.
//!
//! Over UDP each client has a socket per server. Over TLS (RFC 6614,
//! [`crate::radsec`]) a client holds shared [`RadsecLink`]s instead: the
//! link assigns identifiers per connection and a request is not
//! retransmitted but waits `timeout` × (`retries` + 1) for its reply (sent
//! once more on a new connection if its own was lost); failover between
//! servers is the same.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aaa_proto::radius::{self, AuthError, Packet};
use thiserror::Error;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::radsec::{RadsecLink, Unanswered};

/// Why a transaction failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the request: {0}")]
    Encode(#[from] radius::EncodeError),
    #[error("no valid answer from {servers} after {attempts} attempts{dropped}{unreachable}")]
    NoAnswer {
        servers: String,
        attempts: u32,
        dropped: Dropped,
        /// `; ADDR: why` for each server (RADIUS/TLS) that could not be
        /// reached; empty over UDP.
        unreachable: String,
    },
    /// RADIUS/TLS: no server could be connected to, so nothing was sent.
    #[error("no RADIUS/TLS connection: {0}")]
    NoConnection(String),
    #[error("no RADIUS server given")]
    NoServer,
}

impl ClientError {
    /// True if the request certainly never left the terminal.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, Self::NoConnection(_) | Self::NoServer | Self::Encode(_))
    }
}

/// Replies that arrived but were not accepted, by reason: the evidence a
/// "no answer" error gives, since a server with the wrong secret looks
/// silent otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Response Authenticator or Message-Authenticator did not verify.
    pub bad_authenticator: u32,
    /// No Message-Authenticator, or not the first attribute.
    pub no_message_authenticator: u32,
    /// An identifier we are not waiting for.
    pub wrong_identifier: u32,
    /// Not a RADIUS reply at all.
    pub malformed: u32,
    /// From an address that is not the server.
    pub wrong_source: u32,
}

impl Dropped {
    /// Total replies dropped.
    pub fn total(&self) -> u32 {
        self.bad_authenticator
            + self.no_message_authenticator
            + self.wrong_identifier
            + self.malformed
            + self.wrong_source
    }

    pub(crate) fn count(&mut self, e: &AuthError) {
        match e {
            AuthError::BadAuthenticator { .. } | AuthError::BadMessageAuthenticator { .. } => {
                self.bad_authenticator += 1
            }
            AuthError::MissingMessageAuthenticator { .. } | AuthError::MessageAuthenticatorNotFirst { .. } => {
                self.no_message_authenticator += 1
            }
            _ => self.malformed += 1,
        }
    }
}

impl fmt::Display for Dropped {
    /// Empty when nothing was dropped; else `; dropped N replies: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return Ok(());
        }
        let parts: Vec<String> = [
            (self.bad_authenticator, "with a bad authenticator"),
            (self.no_message_authenticator, "without Message-Authenticator first"),
            (self.wrong_identifier, "with a wrong identifier"),
            (self.malformed, "malformed"),
            (self.wrong_source, "from another address"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        write!(f, "; dropped {} replies: {}", self.total(), parts.join(", "))
    }
}

/// Retransmission policy.
#[derive(Debug, Clone, Copy)]
pub struct Retransmit {
    /// The first wait for a reply; it doubles with each retransmission.
    pub timeout: Duration,
    /// Retransmissions to one server before failing over (0 = send once).
    pub retries: u32,
}

struct Server {
    address: SocketAddr,
    link: Link,
}

/// How requests reach one server.
enum Link {
    Udp(UdpSocket),
    Tls(Arc<RadsecLink>),
}

/// One server's failure to answer a request.
struct Silent {
    /// Requests sent (retransmissions included).
    attempts: u32,
    /// Why the server could not be reached, if that was it.
    unreachable: Option<String>,
}

impl Silent {
    fn sent(attempts: u32) -> Self {
        Self { attempts, unreachable: None }
    }
}

/// A RADIUS client for one or more servers of the same service, in order
/// of preference, sharing one secret.
pub struct RadiusClient {
    servers: Vec<Server>,
    secret: Vec<u8>,
    policy: Retransmit,
    /// The server that answered last: new conversations start there.
    current: usize,
    next_id: u8,
    buf: Vec<u8>,
    /// Blast-RADIUS hardening: a reply's Message-Authenticator must be its
    /// first attribute.
    message_authenticator_first: bool,
}

impl RadiusClient {
    /// A client for one server. `timeout` is the first wait; each
    /// retransmission doubles it.
    pub async fn new(server: SocketAddr, secret: &[u8], timeout: Duration, retries: u32) -> Result<Self, ClientError> {
        Self::with_servers(&[server], secret, Retransmit { timeout, retries }).await
    }

    /// A client failing over from `servers[0]` to the next ones.
    pub async fn with_servers(servers: &[SocketAddr], secret: &[u8], policy: Retransmit) -> Result<Self, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::NoServer);
        }
        let mut bound = Vec::with_capacity(servers.len());
        for &address in servers {
            let local = if address.is_ipv4() {
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
            } else {
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
            };
            bound.push(Server { address, link: Link::Udp(UdpSocket::bind(local).await?) });
        }
        Ok(Self {
            servers: bound,
            secret: secret.to_vec(),
            policy,
            current: 0,
            next_id: rand::random(),
            buf: vec![0u8; radius::MAX_PACKET_LEN],
            message_authenticator_first: true,
        })
    }

    /// A client over RADIUS/TLS links (one per server, in order of
    /// preference), which other clients may share; the secret is "radsec"
    /// (RFC 6614 §2.3).
    pub fn over_tls(links: Vec<Arc<RadsecLink>>, policy: Retransmit) -> Result<Self, ClientError> {
        if links.is_empty() {
            return Err(ClientError::NoServer);
        }
        Ok(Self {
            servers: links.into_iter().map(|link| Server { address: link.address(), link: Link::Tls(link) }).collect(),
            secret: crate::radsec::SECRET.to_vec(),
            policy,
            current: 0,
            next_id: 0,
            buf: Vec::new(),
            message_authenticator_first: true,
        })
    }

    /// Another client over the same RADIUS/TLS links (the accounting of a
    /// payment goes over its connection, RFC 6614 §2.1); `None` over UDP,
    /// whose sockets are a client's own.
    pub fn share(&self) -> Option<Self> {
        let links = self
            .servers
            .iter()
            .map(|s| match &s.link {
                Link::Tls(link) => Some(link.clone()),
                Link::Udp(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let mut shared = Self::over_tls(links, self.policy).ok()?;
        shared.current = self.current;
        Some(shared)
    }

    /// RADIUS/TLS: connects to the first server (from the current one, in
    /// order) that takes this terminal, and starts there; why none did
    /// otherwise. Nothing to do over UDP.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        let n = self.servers.len();
        let mut why = Vec::new();
        for step in 0..n {
            let index = (self.current + step) % n;
            let Link::Tls(link) = &self.servers[index].link else { return Ok(()) };
            match link.connect().await {
                Ok(()) => {
                    self.current = index;
                    return Ok(());
                }
                Err(e) => why.push(e),
            }
        }
        Err(ClientError::NoConnection(why.join("; ")))
    }

    /// Closes RADIUS/TLS connections politely (UDP: nothing to do).
    pub async fn close(&self) {
        for server in &self.servers {
            if let Link::Tls(link) = &server.link {
                link.close().await;
            }
        }
    }

    /// Accepts replies whose Message-Authenticator is not the first
    /// attribute (it is still required with EAP and verified). Only for
    /// measuring servers that predate the Blast-RADIUS advice, such as
    /// hostapd 2.10; never for payments.
    pub fn accept_late_message_authenticator(&mut self) {
        self.message_authenticator_first = false;
    }

    /// The server the next conversation starts with.
    pub fn current_server(&self) -> SocketAddr {
        self.servers[self.current].address
    }

    /// Sends `request` (identifier assigned and Message-Authenticator added
    /// here) and returns the verified reply, failing over to the other
    /// servers if the current one stays silent. For the first request of a
    /// conversation, and for accounting.
    pub async fn exchange(&mut self, request: Packet) -> Result<Packet, ClientError> {
        let n = self.servers.len();
        let mut attempts = 0;
        let mut dropped = Dropped::default();
        let mut unreachable = Vec::new();
        for step in 0..n {
            let index = (self.current + step) % n;
            match self.exchange_with(index, request.clone(), &mut dropped).await? {
                Ok(reply) => {
                    self.current = index;
                    return Ok(reply);
                }
                Err(silent) => {
                    attempts += silent.attempts;
                    unreachable.extend(silent.unreachable);
                    if step + 1 < n {
                        warn!(server = %self.servers[index].address, "no answer; failing over");
                    }
                }
            }
        }
        Err(Self::no_answer(self.server_list(), attempts, dropped, unreachable))
    }

    fn no_answer(servers: String, attempts: u32, dropped: Dropped, unreachable: Vec<String>) -> ClientError {
        if attempts == 0 && !unreachable.is_empty() {
            return ClientError::NoConnection(unreachable.join("; "));
        }
        let unreachable = unreachable.iter().map(|why| format!("; {why}")).collect();
        ClientError::NoAnswer { servers, attempts, dropped, unreachable }
    }

    /// Like [`exchange`](Self::exchange) but only with the server that
    /// answered last: the rounds of an EAP conversation belong to the server
    /// holding its State.
    pub async fn exchange_pinned(&mut self, request: Packet) -> Result<Packet, ClientError> {
        let mut dropped = Dropped::default();
        match self.exchange_with(self.current, request, &mut dropped).await? {
            Ok(reply) => Ok(reply),
            Err(silent) => Err(Self::no_answer(
                self.servers[self.current].address.to_string(),
                silent.attempts,
                dropped,
                silent.unreachable.into_iter().collect(),
            )),
        }
    }

    fn server_list(&self) -> String {
        let names: Vec<String> = self.servers.iter().map(|s| s.address.to_string()).collect();
        names.join(", ")
    }

    /// One server: `Ok(Err(_))` if it never answered validly.
    async fn exchange_with(
        &mut self,
        index: usize,
        mut request: Packet,
        dropped: &mut Dropped,
    ) -> Result<Result<Packet, Silent>, ClientError> {
        if !request.has_message_authenticator() {
            request.add_message_authenticator();
        }
        let socket = match &self.servers[index].link {
            Link::Udp(socket) => socket,
            Link::Tls(link) => {
                // No retransmission over TLS: the request has the whole wait.
                let wait = self.policy.timeout.saturating_mul(self.policy.retries.saturating_add(1));
                return Ok(link.exchange(&request, wait, dropped).await?.map_err(|unanswered| match unanswered {
                    Unanswered::NoAnswer { attempts, why } => Silent { attempts, unreachable: why },
                    Unanswered::NoConnection(why) => Silent { attempts: 0, unreachable: Some(why) },
                }));
            }
        };
        let address = self.servers[index].address;
        // A new identifier per server: failing over makes a new request
        // (RFC 5080 §2.2.1); retransmissions to one server repeat it exactly.
        request.identifier = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let bytes = radius::encode_request(&request, &self.secret)?;
        // The authenticator on the wire: an Accounting-Request's is computed
        // by the encoder (RFC 2866 §3), and the reply is checked against it.
        let mut authenticator = request.authenticator;
        if let Some(wire) = bytes.get(4..20) {
            authenticator.copy_from_slice(wire);
        }
        let mut wait = self.policy.timeout;
        for attempt in 0..=self.policy.retries {
            if attempt > 0 {
                debug!(server = %address, id = request.identifier, attempt, "retransmitting");
            }
            socket.send_to(&bytes, address).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut self.buf)).await;
                let Ok(received) = received else { break };
                let (n, from) = received?;
                if from != address {
                    dropped.wrong_source += 1;
                    continue;
                }
                if self.buf.get(1) != Some(&request.identifier) {
                    // A late reply to an earlier request is normal after a
                    // retransmission; anything else is counted.
                    dropped.wrong_identifier += 1;
                    continue;
                }
                match radius::verify_response_to(
                    &self.buf[..n],
                    request.code,
                    &authenticator,
                    &self.secret,
                    self.message_authenticator_first,
                ) {
                    Ok(reply) => return Ok(Ok(reply)),
                    Err(e) => {
                        warn!(server = %address, error = %e, "reply dropped");
                        dropped.count(&e);
                    }
                }
            }
            wait = wait.saturating_mul(2);
        }
        Ok(Err(Silent::sent(self.policy.retries + 1)))
    }
}
