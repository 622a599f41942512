//! One accepted Diameter connection: the sans-IO peer state machine driven
//! by the socket, its timers, the answers of the requests in flight, and the
//! server's shutdown (DPR).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use aaa_proto::diameter::message::Message;
use aaa_proto::diameter::peer::{Action, Peer as PeerMachine, PeerConfig};
use aaa_proto::dictionary::diameter::{DisconnectCause, ResultCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};

use super::dispatch::{self, protocol_error};
use super::peers::Peer;
use super::Diameter;
use crate::core::counters::bump;
use crate::ledger::Ledger;
use crate::mtls::KeyDigest;

/// Requests of one connection processed at once; beyond this the peer gets
/// 3004 DIAMETER_TOO_BUSY and may send elsewhere.
const MAX_IN_FLIGHT: usize = 1024;
/// Answers gathered into one write at most.
const MAX_BATCH: usize = 256;

/// Serves `stream` (plain TCP, or TLS whose peer certificate carried
/// `tls_key`) until the peer or the server ends it; `local` is the address
/// the peer reached.
pub async fn run<L: Ledger, S: AsyncRead + AsyncWrite + Send + 'static>(
    front: Arc<Diameter<L>>,
    stream: S,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    tls_key: Option<KeyDigest>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Host-IP-Address: the address the peer reached us on.
    let mut config: PeerConfig = (*front.peer_config).clone();
    if let Some(local) = local {
        config.local.host_ip_addresses = vec![local.ip()];
    }
    // On the TLS port a valid certificate is only half the check: a CER
    // refused here (3010) is a key nobody registered for that Origin-Host,
    // and counts as a refused TLS peer like a failed handshake.
    let known = {
        let front = front.clone();
        Box::new(move |host: &str, _realm: &str| {
            let found = front.peers.find_on(host, remote.ip(), tls_key.as_ref()).is_some();
            if !found && tls_key.is_some() {
                bump(&front.counters.diameter_tls_refused);
                if front.logs.allow(remote.ip(), "diameter tls key") {
                    warn!(
                        %remote,
                        origin_host = host,
                        "Diameter/TLS peer refused: its certificate's key is not registered for this Origin-Host"
                    );
                }
            }
            found
        })
    };
    let write_deadline = config.timers.tw;
    let mut machine = PeerMachine::responder(Arc::new(config), known, Instant::now(), rand::random());
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (answers, mut answered) = mpsc::channel::<Arc<Message>>(64);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut peer: Option<Peer> = None;
    let mut stopping = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let deadline = machine.poll_timeout();
        let mut answering = false;
        let mut actions = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => {
                    debug!(%remote, "Diameter peer closed the connection");
                    break;
                }
                Ok(n) => machine.handle_bytes(&buf[..n], Instant::now()),
                Err(e) => {
                    debug!(%remote, error = %e, "Diameter read");
                    break;
                }
            },
            () = sleep_until(deadline) => machine.handle_timeout(Instant::now()),
            Some(answer) = answered.recv() => {
                answering = true;
                match machine.send_answer(&answer, Instant::now()) {
                    Ok(actions) => actions,
                    Err(e) => {
                        debug!(%remote, error = %e, "answer not sent");
                        Vec::new()
                    }
                }
            }
            _ = shutdown.changed(), if !stopping => {
                stopping = true;
                machine.disconnect(DisconnectCause::Rebooting.value(), Instant::now())
            }
        };
        // Answers that are ready go out with this batch: one write (over
        // TLS, one record) for many conversations, not one per answer. Under
        // load others are about to be ready: yielding once lets them join
        // (as on the RadSec port, radius/tls.rs).
        if answering {
            tokio::task::yield_now().await;
        }
        for _ in 0..MAX_BATCH {
            let Ok(answer) = answered.try_recv() else { break };
            match machine.send_answer(&answer, Instant::now()) {
                Ok(more) => actions.extend(more),
                Err(e) => debug!(%remote, error = %e, "answer not sent"),
            }
        }
        let mut close = false;
        let mut out = Vec::new();
        for action in actions {
            match action {
                Action::Send(bytes) => out.extend_from_slice(&bytes),
                Action::Open(who) => {
                    peer = front.peers.find_on(&who.origin_host, remote.ip(), tls_key.as_ref()).cloned();
                    info!(%remote, origin_host = %who.origin_host, product = %who.product_name, "Diameter peer open");
                }
                Action::Deliver(message) if message.is_request() => {
                    match (&peer, in_flight.clone().try_acquire_owned()) {
                        (Some(p), Ok(permit)) => {
                            let (front, p, answers) = (front.clone(), p.clone(), answers.clone());
                            tokio::spawn(async move {
                                if let Some(answer) = dispatch::answer(&front, &p, remote.ip(), message).await {
                                    let _ = answers.send(answer).await;
                                }
                                drop(permit);
                            });
                        }
                        // Only an open connection delivers requests, and an open
                        // one has a configured peer; a full one is told to wait.
                        _ => {
                            front.refused(remote.ip(), "too busy", "requests in flight");
                            let busy = protocol_error(&front, &message, ResultCode::TooBusy, None);
                            if let Ok(actions) = machine.send_answer(&busy, Instant::now()) {
                                for a in actions {
                                    if let Action::Send(bytes) = a {
                                        out.extend_from_slice(&bytes);
                                    }
                                }
                            }
                        }
                    }
                }
                Action::Deliver(_) => debug!(%remote, "an answer to a request this server never sent"),
                Action::Close { reason } => {
                    info!(%remote, reason, "Diameter connection closed");
                    close = true;
                }
            }
        }
        // Written before a Close is acted on: a DPA or an error CEA goes out
        // first. A peer that stops reading would stall this connection for
        // ever (its answers, its requests in flight): one watchdog interval
        // to take what is sent, then it is closed like a peer that stopped
        // answering DWR.
        if !out.is_empty() {
            match tokio::time::timeout(write_deadline, writer.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "Diameter write");
                    close = true;
                }
                Err(_) => {
                    front.refused(remote.ip(), "peer not reading", "write stalled for a watchdog interval");
                    close = true;
                }
            }
        }
        if close {
            break;
        }
    }
    bump(&front.counters.diameter_closed);
    let _ = writer.shutdown().await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
