//! The RADIUS front end (RFC 2865, 2866, 3579, 5080, 5997) over UDP: an
//! adapter between the RADIUS wire format and the protocol-neutral
//! [`crate::core`].
//!
//! Order of checks for every datagram, cheapest and safest first: known
//! client (else silent drop), size and decoding (else drop), the code fits
//! the port, Message-Authenticator and authenticators (else drop), duplicate
//! detection (a retransmission gets the cached reply), and only then the EAP
//! conversation. Every reply carries Message-Authenticator as its first
//! attribute (Blast-RADIUS hardening).

pub mod clients;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay::{self, DeclineCode};
use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{self, AuthError, Code, Packet};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::core::counters::{bump, LogLimiter};
use crate::core::duplicates::{DuplicateCache, Seen};
use crate::core::exchange::{self, Reply, Turn};
use crate::core::payment::{self, Claim};
use crate::core::settlement::{self, Terminal};
use crate::core::{Conversations, Core};
use crate::counters;
use crate::ledger::{Ledger, Outcome as Decision};
use clients::{Client, Clients};

/// Requests processed at once; beyond this, datagrams are dropped (the NAS
/// retransmits) rather than queued without bound.
const MAX_IN_FLIGHT: usize = 4096;

/// The value of the RADIUS State attribute: random, opaque to the NAS.
pub type StateId = [u8; 16];

/// A conversation is found by the State the server issued and the NAS it
/// issued it to: another NAS presenting it finds nothing.
pub type ConversationKey = (StateId, IpAddr);

/// One request on the wire (RFC 5080 §2.2.2): client address and port,
/// identifier, Request Authenticator.
pub type RequestKey = (SocketAddr, u8, [u8; 16]);

/// Which port a packet arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Auth,
    Acct,
    /// RADIUS over TLS: one port for authentication and accounting (RFC 6614 §2.1).
    Tls,
}

counters!(
    /// What the RADIUS front end received, answered and dropped.
    RadiusCounters {
        requests,
        accounting_responses,
        status_server,
        duplicates_resent,
        duplicates_dropped,
        dropped_unknown_client,
        dropped_malformed,
        dropped_wrong_code,
        dropped_missing_message_authenticator,
        dropped_bad_authenticator,
        dropped_overload,
    }
);

/// The RADIUS front end's state.
pub struct Radius<L> {
    pub core: Arc<Core<L>>,
    pub clients: Clients,
    pub conversations: Conversations<ConversationKey>,
    pub duplicates: DuplicateCache<RequestKey>,
    pub counters: RadiusCounters,
    logs: LogLimiter,
    in_flight: Arc<Semaphore>,
}

impl<L: Ledger> Radius<L> {
    /// A front end for `clients` over `core`.
    pub fn new(
        core: Arc<Core<L>>,
        clients: Clients,
        conversations: Conversations<ConversationKey>,
        duplicate_window: Duration,
    ) -> Self {
        Self {
            core,
            clients,
            conversations,
            duplicates: DuplicateCache::new(duplicate_window, 1 << 20),
            counters: RadiusCounters::default(),
            logs: LogLimiter::new(Duration::from_secs(10)),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    fn drop_with(&self, counter: &std::sync::atomic::AtomicU64, source: IpAddr, reason: &'static str, detail: &str) {
        bump(counter);
        if self.logs.allow(source, reason) {
            warn!(%source, reason, detail, "dropped RADIUS packet");
        }
    }
}

/// Receives on `socket` forever, one task per datagram.
pub async fn serve<L: Ledger>(socket: Arc<UdpSocket>, port: Port, shared: Arc<Radius<L>>) {
    // One byte more than the largest legal packet, to see oversize ones.
    let mut buf = vec![0u8; radius::MAX_PACKET_LEN + 1];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; not fatal.
                debug!(error = %e, "recv_from");
                continue;
            }
        };
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            shared.drop_with(&shared.counters.dropped_overload, source.ip(), "overload", "too many requests in flight");
            continue;
        };
        let datagram = buf[..n].to_vec();
        let socket = socket.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some(reply) = handle(&shared, port, source, &datagram).await {
                if let Err(e) = socket.send_to(&reply, source).await {
                    debug!(%source, error = %e, "send_to");
                }
            }
            drop(permit);
        });
    }
}

/// Processes one datagram; returns the reply to send, if any.
pub async fn handle<L: Ledger>(shared: &Radius<L>, port: Port, source: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    let c = &shared.counters;
    bump(&c.requests);
    let Some(client) = shared.clients.find(source.ip()) else {
        shared.drop_with(&c.dropped_unknown_client, source.ip(), "unknown client", "");
        return None;
    };
    handle_from(shared, port, source, client, datagram).await
}

/// Processes one packet of a known `client`: the rest of [`handle`]'s
/// checks, then the request. RADIUS over TLS comes in here with the client
/// its certificate names.
pub async fn handle_from<L: Ledger>(
    shared: &Radius<L>,
    port: Port,
    source: SocketAddr,
    client: &Client,
    datagram: &[u8],
) -> Option<Vec<u8>> {
    let c = &shared.counters;
    if datagram.len() > radius::MAX_PACKET_LEN {
        shared.drop_with(&c.dropped_malformed, source.ip(), "oversize", &format!("{} octets", datagram.len()));
        return None;
    }
    let request = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            shared.drop_with(&c.dropped_malformed, source.ip(), "malformed", &e.to_string());
            return None;
        }
    };
    let allowed = match port {
        Port::Auth => matches!(request.code, Code::AccessRequest | Code::StatusServer),
        Port::Acct => matches!(request.code, Code::AccountingRequest | Code::StatusServer),
        Port::Tls => matches!(request.code, Code::AccessRequest | Code::AccountingRequest | Code::StatusServer),
    };
    if !allowed {
        shared.drop_with(&c.dropped_wrong_code, source.ip(), "wrong code for port", request.code.name());
        return None;
    }
    // The per-client requirement is Blast-RADIUS hardening of
    // Access-Request; accounting is authenticated by its MD5 Request
    // Authenticator (RFC 2866 §3) and Status-Server always needs it.
    let require_ma = client.require_message_authenticator && request.code == Code::AccessRequest;
    if let Err(e) = radius::verify_request(datagram, &request, &client.secret, require_ma) {
        let counter = match e {
            AuthError::MissingMessageAuthenticator { .. } => &c.dropped_missing_message_authenticator,
            _ => &c.dropped_bad_authenticator,
        };
        shared.drop_with(counter, source.ip(), "authentication", &e.to_string());
        return None;
    }
    if request.code == Code::StatusServer {
        // RFC 5997 §3: idempotent, answered directly, never cached.
        bump(&c.status_server);
        // RFC 5997 §3: a port that serves authentication answers Access-Accept.
        let code = if port == Port::Acct { Code::AccountingResponse } else { Code::AccessAccept };
        return sign(shared, client, &request, Packet::reply_to(&request, code));
    }
    let key: RequestKey = (source, request.identifier, request.authenticator);
    let now = Instant::now();
    match shared.duplicates.check(key, now) {
        Seen::New => {}
        Seen::InProgress => {
            bump(&c.duplicates_dropped);
            return None;
        }
        Seen::Answered(reply) => {
            bump(&c.duplicates_resent);
            return reply;
        }
    }
    let reply = match request.code {
        Code::AccessRequest => access_request(shared, client, source.ip(), &request)
            .await
            .map(|reply| reply.and_then(|reply| sign(shared, client, &request, reply))),
        _ => accounting_request(shared, client, &request).await,
    };
    match reply {
        Ok(reply) => {
            shared.duplicates.finish(key, reply.clone(), Instant::now());
            reply
        }
        Err(e) => {
            // A store failure is ours, not the NAS's: no cached answer, so
            // its retransmission is processed again once the store recovers.
            bump(&shared.core.counters.store_errors);
            warn!(client = %client.name, error = %e, "request failed");
            shared.duplicates.forget(key);
            None
        }
    }
}

fn sign<L>(shared: &Radius<L>, client: &Client, request: &Packet, reply: Packet) -> Option<Vec<u8>> {
    match radius::encode_response_to(&reply, request.code, &request.authenticator, &client.secret) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            warn!(client = %client.name, error = %e, "could not encode reply");
            bump(&shared.counters.dropped_malformed);
            None
        }
    }
}

async fn accounting_request<L: Ledger>(
    shared: &Radius<L>,
    client: &Client,
    request: &Packet,
) -> Result<Option<Vec<u8>>, crate::error::ServerError> {
    let core = &shared.core;
    let mut reply = Packet::reply_to(request, Code::AccountingResponse);
    let terminal = Terminal { name: &client.name, merchants: &client.merchants };
    let now_ms = payment::now_ms();
    let attrs = request.vendor_attributes(core.vendor_id).ok().map(|attrs| pairs(&attrs));
    if let Some(decline) =
        settlement::account(&core.ledger, &core.settlements, attrs.as_deref(), terminal, now_ms).await?
    {
        // An Accounting-Response carries no Reply-Message (RFC 2866 §5);
        // the refusal travels in the vendor attributes.
        push_vendors(&mut reply, core.vendor_id, payment::decline_attributes(decline.code, &decline.reason));
    }
    bump(&shared.counters.accounting_responses);
    Ok(sign(shared, client, request, reply))
}

/// The RADIUS reply to an Access-Request, unsigned; `None` sends nothing.
async fn access_request<L: Ledger>(
    shared: &Radius<L>,
    client: &Client,
    nas: IpAddr,
    request: &Packet,
) -> Result<Option<Packet>, crate::error::ServerError> {
    let core = &shared.core;
    let vendor_id = core.vendor_id;
    let Some(eap_packet) = request.eap_message() else {
        // Only EAP is spoken here; PAP/CHAP outside a TLS tunnel would
        // expose card credentials to the terminal.
        bump(&core.counters.rejects);
        let mut reply = Packet::reply_to(request, Code::AccessReject);
        let why = "EAP is required";
        push(&mut reply, rfc::REPLY_MESSAGE, why.as_bytes());
        push_vendors(&mut reply, vendor_id, payment::decline_attributes(DeclineCode::InvalidTransaction, why));
        return Ok(Some(reply));
    };
    let claim = match request.vendor_attributes(vendor_id) {
        Ok(attrs) => Claim::from_attributes(&pairs(&attrs)),
        Err(e) => Claim::unreadable(e),
    };
    let continues = request.get(rfc::STATE).map(|state| (<StateId>::try_from(state).unwrap_or_default(), nas));
    let turn = Turn {
        client: &client.name,
        source: nas,
        // A State of the wrong size names no conversation: all-zero is never issued.
        continues,
        keep_as: (rand::random(), nas),
        eap: &eap_packet,
        claim,
        // A malformed Framed-MTU is ignored: the configured fragment size applies.
        framed_mtu: request.get_u32(rfc::FRAMED_MTU).ok().flatten(),
        now: Instant::now(),
        now_ms: payment::now_ms(),
    };
    let keep_as = turn.keep_as;
    let reply = match exchange::exchange(core, &shared.conversations, turn).await? {
        Reply::Challenge(eap) => {
            let mut reply = Packet::reply_to(request, Code::AccessChallenge);
            reply.push_eap_message(&eap);
            push(&mut reply, rfc::STATE, &keep_as.0);
            reply
        }
        Reply::Accept { eap, keys, method, answer } => {
            let mut reply = Packet::reply_to(request, Code::AccessAccept);
            reply.push_eap_message(&eap);
            if let Err(e) = radius::push_mppe_keys(&mut reply, &keys.msk, &client.secret, &request.authenticator) {
                warn!(error = %e, "MPPE keys");
            }
            push_vendors(&mut reply, vendor_id, [(eapay::AUTH_METHOD, method.name().as_bytes().to_vec())]);
            push_vendors(&mut reply, vendor_id, answer.attributes());
            reply
        }
        Reply::Reject { eap, answer } => {
            let mut reply = Packet::reply_to(request, Code::AccessReject);
            reply.push_eap_message(&eap);
            let why = match &answer.outcome {
                Decision::Declined(d) => d.reason.as_str(),
                Decision::Approved { .. } => "approved",
            };
            push(&mut reply, rfc::REPLY_MESSAGE, why.as_bytes());
            push_vendors(&mut reply, vendor_id, answer.attributes());
            reply
        }
        Reply::Withdrawn(answer) => {
            let mut reply = Packet::reply_to(request, Code::AccessReject);
            push(&mut reply, rfc::REPLY_MESSAGE, exchange::Refusal::Busy.text().as_bytes());
            push_vendors(&mut reply, vendor_id, answer.attributes());
            reply
        }
        Reply::Refused { eap, refusal } => {
            if refusal == exchange::Refusal::MalformedEap {
                bump(&shared.counters.dropped_malformed);
            }
            let mut reply = Packet::reply_to(request, Code::AccessReject);
            if let Some(eap) = eap {
                reply.push_eap_message(&eap);
            }
            push(&mut reply, rfc::REPLY_MESSAGE, refusal.text().as_bytes());
            push_vendors(&mut reply, vendor_id, refusal.attributes());
            reply
        }
        // Silence: the terminal times out, stays in doubt and reverses.
        Reply::InDoubt | Reply::Discard => return Ok(None),
    };
    Ok(Some(reply))
}

/// The Eapay Vendor-Specific sub-attributes as `(vendor type, value)` pairs.
fn pairs<'a>(attrs: &[radius::VendorAttribute<'a>]) -> Vec<(u8, &'a [u8])> {
    attrs.iter().map(|a| (a.vendor_type, a.value)).collect()
}

/// Appends Eapay attributes; a value longer than one Vendor-Specific
/// (Eapay-Receipt) is split over several in order.
fn push_vendors(reply: &mut Packet, vendor_id: u32, attrs: impl IntoIterator<Item = (u8, Vec<u8>)>) {
    for (kind, value) in attrs {
        // Values here are ours and bounded (reasons are short, ids <= 64).
        if let Err(e) = aaa_proto::payment::push_split(reply, vendor_id, kind, &value) {
            warn!(kind, error = %e, "vendor attribute not added");
        }
    }
}

fn push(reply: &mut Packet, kind: u8, value: &[u8]) {
    // Values here are ours and short; a failure would be a bug, logged.
    if let Err(e) = reply.push(kind, value) {
        warn!(kind, error = %e, "attribute not added");
    }
}
