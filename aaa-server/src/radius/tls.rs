//! RADIUS over TLS (RFC 6614, "RadSec"): the same RADIUS front end behind a
//! TLS listener with mutual certificate authentication.
//!
//! - A terminal is known by its certificate: it must chain to the issuer CA
//!   (`ca.pem`), be valid now, and carry a key that a `[[radius.tls.clients]]`
//!   entry registers (SHA-256 of the SubjectPublicKeyInfo). The entry's name
//!   is the client the ledger records and the merchant links follow, exactly
//!   as for a UDP client; a card certificate, also from the issuer CA, has no
//!   such entry and is refused.
//! - The shared secret is "radsec" (RFC 6614 §2.3) and Message-Authenticator
//!   is still required; the duplicate cache is per connection (its key holds
//!   the connection's address and port); Status-Server is answered and keeps
//!   the connection alive; a connection idle for `idle_timeout_secs` is closed.
//! - Framing is the RADIUS Length field (RFC 6613 §2.2): a length outside
//!   20..=4096 loses the stream, so the connection is closed; a packet must
//!   arrive whole within [`PACKET_DEADLINE`] of its first octet.
//! - Requests of one connection run concurrently (at most
//!   [`MAX_IN_FLIGHT_PER_CONNECTION`]); replies go out in completion order,
//!   as RFC 6613 §2.5 allows.
//!
//! RFC 9765 (RADIUS/1.1, ALPN `radius/1.1`) is not offered: without MD5 it
//! replaces the Request Authenticator by a token, which the shared request
//! path, the duplicate cache and the MPPE key encryption would each have to
//! learn; a terminal asking for it falls back to RFC 6614.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aaa_proto::radius;
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_openssl::SslStream;
use tracing::{debug, info, warn};

use super::clients::Client;
use super::{handle_from, Port, Radius};
use crate::config::RadsecSection;
use crate::core::counters::bump;
use crate::counters;
use crate::error::ServerError;
use crate::ledger::Ledger;
use crate::mtls;

/// The shared secret of RADIUS over TLS (RFC 6614 §2.3).
pub const SECRET: &[u8] = b"radsec";
/// A started packet must be complete within this.
pub const PACKET_DEADLINE: Duration = Duration::from_secs(10);
/// The TLS handshake must be over within this.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections at once, in all.
const MAX_CONNECTIONS: usize = 1024;
/// Requests of one connection processed at once; beyond this the
/// connection is not read until one finishes (TCP pushes back).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Bytes of the stream read ahead.
const READ_BUFFER: usize = 16 * 1024;
/// Replies gathered into one write at most, in bytes.
const WRITE_BATCH: usize = 32 * 1024;

counters!(
    /// What the RADIUS-over-TLS listener accepted and closed.
    RadsecCounters {
        radsec_connections,
        radsec_closed,
        radsec_refused_handshake,
        radsec_refused_certificate,
        radsec_refused_busy,
        radsec_closed_framing,
        radsec_closed_stalled,
        radsec_closed_idle,
    }
);

/// The listener's configuration, resolved: the TLS context and the
/// terminals by key.
pub struct Radsec {
    acceptor: SslAcceptor,
    clients: Vec<(mtls::KeyDigest, Client)>,
    idle: Duration,
    pub counters: RadsecCounters,
}

impl Radsec {
    /// From `[radius.tls]` and its TLS context (`crate::mtls::acceptor`).
    pub fn new(section: &RadsecSection, acceptor: SslAcceptor) -> Result<Self, ServerError> {
        let clients = section
            .clients
            .iter()
            .map(|c| {
                let key = mtls::parse_key(&format!("radius.tls.clients {}", c.name), &c.key_sha256)?;
                Ok((key, Client::radsec(&c.name, &c.merchants)))
            })
            .collect::<Result<_, ServerError>>()?;
        Ok(Self {
            acceptor,
            clients,
            idle: Duration::from_secs(section.idle_timeout_secs),
            counters: RadsecCounters::default(),
        })
    }

    /// The terminal whose certificate carries the peer's key, if registered.
    fn client_for(&self, ssl: &openssl::ssl::SslRef) -> Option<&Client> {
        let digest = mtls::peer_key(ssl)?;
        // Keys are public: a plain comparison leaks nothing worth a constant-time one.
        self.clients.iter().find(|(key, _)| *key == digest).map(|(_, client)| client)
    }

    fn close(&self, counter: &std::sync::atomic::AtomicU64, remote: SocketAddr, why: &str) {
        bump(counter);
        debug!(%remote, why, "RADIUS/TLS connection closed");
    }
}

/// Accepts RADIUS/TLS connections on `listener` until the task is aborted.
pub async fn serve<L: Ledger>(listener: TcpListener, radsec: Arc<Radsec>, shared: Arc<Radius<L>>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "RADIUS/TLS accept");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            bump(&radsec.counters.radsec_refused_busy);
            if shared.logs.allow(remote.ip(), "radsec busy") {
                warn!(%remote, "RADIUS/TLS connection refused: too many connections");
            }
            continue;
        };
        bump(&radsec.counters.radsec_connections);
        let (radsec, shared) = (radsec.clone(), shared.clone());
        tokio::spawn(async move {
            connection(&radsec, &shared, stream, remote).await;
            bump(&radsec.counters.radsec_closed);
            drop(slot);
        });
    }
}

async fn connection<L: Ledger>(radsec: &Arc<Radsec>, shared: &Arc<Radius<L>>, stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(ssl) = Ssl::new(radsec.acceptor.context()) else { return };
    let Ok(mut tls) = SslStream::new(ssl, stream) else { return };
    match tokio::time::timeout(HANDSHAKE_DEADLINE, Pin::new(&mut tls).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            bump(&radsec.counters.radsec_refused_handshake);
            if shared.logs.allow(remote.ip(), "radsec handshake") {
                warn!(%remote, error = %e, "RADIUS/TLS handshake failed (plain RADIUS, unknown CA, expired certificate, ...)");
            }
            return;
        }
        Err(_) => return radsec.close(&radsec.counters.radsec_refused_handshake, remote, "handshake timed out"),
    }
    let client = match radsec.client_for(tls.ssl()) {
        Some(client) => client.clone(),
        None => {
            bump(&radsec.counters.radsec_refused_certificate);
            if shared.logs.allow(remote.ip(), "radsec certificate") {
                warn!(%remote, "RADIUS/TLS certificate is valid but its key is no registered terminal's");
            }
            let _ = tls.shutdown().await;
            return;
        }
    };
    info!(%remote, client = %client.name, version = tls.ssl().version_str(), "RADIUS/TLS terminal connected");
    let client = Arc::new(client);
    let (reader, mut writer) = tokio::io::split(tls);
    // Buffered: a terminal that multiplexes sends many packets per TLS
    // record, and each read of the stream is a trip through OpenSSL.
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER, reader);
    let (replies, mut outgoing) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
    // Replies are written by their own task, so a slow reader on the other
    // side holds back only this connection's requests. Replies ready
    // together go out in one write: a TLS record and a system call each
    // were a fifth of the server's CPU under load.
    let write = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        while let Some(reply) = outgoing.recv().await {
            batch.extend_from_slice(&reply);
            // Under load other requests of the connection are about to
            // answer: let them, and write theirs too.
            tokio::task::yield_now().await;
            while batch.len() < WRITE_BATCH {
                match outgoing.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if writer.write_all(&batch).await.is_err() {
                break;
            }
            batch.clear();
        }
        let _ = writer.shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    loop {
        let packet = match read_packet(&mut reader, radsec.idle).await {
            Ok(packet) => packet,
            Err(Ending::Closed) => break,
            Err(Ending::Idle) => {
                radsec.close(&radsec.counters.radsec_closed_idle, remote, "idle");
                break;
            }
            Err(Ending::Stalled) => {
                radsec.close(&radsec.counters.radsec_closed_stalled, remote, "packet incomplete within the deadline");
                break;
            }
            Err(Ending::BadLength(len)) => {
                bump(&shared.counters.dropped_malformed);
                radsec.close(&radsec.counters.radsec_closed_framing, remote, "RADIUS length outside 20..=4096");
                if shared.logs.allow(remote.ip(), "radsec framing") {
                    warn!(%remote, client = %client.name, len, "RADIUS/TLS framing lost: connection closed");
                }
                break;
            }
        };
        bump(&shared.counters.requests);
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let (shared, client, replies) = (shared.clone(), client.clone(), replies.clone());
        tokio::spawn(async move {
            if let Some(reply) = handle_from(&shared, Port::Tls, remote, &client, &packet).await {
                let _ = replies.send(reply).await;
            }
            drop(permit);
        });
    }
    drop(replies);
    let _ = write.await;
}

/// Why a connection stops being read.
enum Ending {
    Closed,
    Idle,
    Stalled,
    BadLength(usize),
}

/// One RADIUS packet from the stream: its header within `idle`, the rest
/// within [`PACKET_DEADLINE`].
async fn read_packet<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, idle: Duration) -> Result<Vec<u8>, Ending> {
    let mut header = [0u8; radius::STREAM_HEADER_LEN];
    match tokio::time::timeout(idle, reader.read_exact(&mut header[..1])).await {
        Err(_) => return Err(Ending::Idle),
        Ok(Err(_)) => return Err(Ending::Closed),
        Ok(Ok(_)) => {}
    }
    let rest = async {
        reader.read_exact(&mut header[1..]).await?;
        let len = match radius::stream_packet_len(&header) {
            Ok(len) => len,
            Err(len) => return Ok(Err(Ending::BadLength(len))),
        };
        let mut packet = vec![0u8; len];
        packet[..header.len()].copy_from_slice(&header);
        reader.read_exact(&mut packet[header.len()..]).await?;
        Ok::<_, std::io::Error>(Ok(packet))
    };
    match tokio::time::timeout(PACKET_DEADLINE, rest).await {
        Err(_) => Err(Ending::Stalled),
        Ok(Err(_)) => Err(Ending::Closed),
        Ok(Ok(result)) => result,
    }
}
