//! The RADIUS front end (RFC 2865, 2866, 3579, 5080, 5997) over UDP.
//!
//! Order of checks for every datagram, cheapest and safest first: known
//! client (else silent drop), size and decoding (else drop), the code fits
//! the port, Message-Authenticator and authenticators (else drop), duplicate
//! detection (a retransmission gets the cached reply), and only then the EAP
//! conversation. Every reply carries Message-Authenticator as its first
//! attribute (Blast-RADIUS hardening).

pub mod clients;
pub mod duplicates;
mod settlement;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aaa_proto::dictionary::eapay::{self, DeclineCode};
use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{self, AuthError, Code, Packet};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::counters::{bump, Counters, LogLimiter};
use crate::eap::{self, Conversations, EapPolicy, Outcome, Pending, TableFull};
use crate::ledger::{Ledger, Outcome as Decision};
use crate::payment::{self, Claim, Context, PaymentAnswer};
use clients::{Client, Clients};
use duplicates::{DuplicateCache, RequestKey, Seen};

/// Requests processed at once; beyond this, datagrams are dropped (the NAS
/// retransmits) rather than queued without bound.
const MAX_IN_FLIGHT: usize = 4096;

/// Which port a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Auth,
    Acct,
}

/// Everything the request path shares.
pub struct Shared<L> {
    pub clients: Clients,
    pub ledger: L,
    pub conversations: Conversations,
    pub duplicates: DuplicateCache,
    pub policy: EapPolicy,
    pub counters: Counters,
    pub vendor_id: u32,
    logs: LogLimiter,
    in_flight: Arc<Semaphore>,
}

impl<L: Ledger> Shared<L> {
    /// Assembles the shared state.
    pub fn new(
        clients: Clients,
        ledger: L,
        conversations: Conversations,
        duplicate_window: Duration,
        policy: EapPolicy,
        vendor_id: u32,
    ) -> Self {
        Self {
            clients,
            ledger,
            conversations,
            duplicates: DuplicateCache::new(duplicate_window, 1 << 20),
            policy,
            counters: Counters::default(),
            vendor_id,
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
pub async fn serve<L: Ledger>(socket: Arc<UdpSocket>, port: Port, shared: Arc<Shared<L>>) {
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
pub async fn handle<L: Ledger>(shared: &Shared<L>, port: Port, source: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    let c = &shared.counters;
    bump(&c.requests);
    let Some(client) = shared.clients.find(source.ip()) else {
        shared.drop_with(&c.dropped_unknown_client, source.ip(), "unknown client", "");
        return None;
    };
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
        let code = if port == Port::Auth { Code::AccessAccept } else { Code::AccountingResponse };
        return sign(shared, client, &request, Packet::reply_to(&request, code));
    }
    let key = RequestKey { source, identifier: request.identifier, authenticator: request.authenticator };
    match shared.duplicates.check(key) {
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
        Code::AccessRequest => access_request(shared, client, source.ip(), &request).await,
        _ => accounting_request(shared, client, &request).await,
    };
    match reply {
        Ok(reply) => {
            shared.duplicates.finish(key, reply.clone());
            reply
        }
        Err(e) => {
            // A store failure is ours, not the NAS's: no cached answer, so
            // its retransmission is processed again once the store recovers.
            bump(&c.store_errors);
            warn!(client = %client.name, error = %e, "request failed");
            shared.duplicates.forget(key);
            None
        }
    }
}

fn sign<L>(shared: &Shared<L>, client: &Client, request: &Packet, reply: Packet) -> Option<Vec<u8>> {
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
    shared: &Shared<L>,
    client: &Client,
    request: &Packet,
) -> Result<Option<Vec<u8>>, crate::error::ServerError> {
    let mut reply = Packet::reply_to(request, Code::AccountingResponse);
    // Accounting without a settlement action is ordinary session accounting:
    // acknowledged, nothing to record.
    if let Some(result) = settlement::settlement_of(request, shared.vendor_id, client) {
        let refusal = match result {
            Ok(settlement) => settlement::settle(&shared.ledger, client, settlement).await?,
            Err(refusal) => {
                shared.ledger.audit_refusal(&client.name, &refusal.reason, payment::now_ms()).await?;
                Some(refusal)
            }
        };
        if let Some(decline) = refusal {
            // An Accounting-Response carries no Reply-Message (RFC 2866 §5);
            // the refusal travels in the vendor attributes.
            push_vendor(&mut reply, shared.vendor_id, eapay::DECLINE_CODE, &decline.code.value().to_be_bytes());
            push_vendor(&mut reply, shared.vendor_id, eapay::DECLINE_REASON, decline.reason.as_bytes());
        }
    }
    bump(&shared.counters.accounting_responses);
    Ok(sign(shared, client, request, reply))
}

async fn access_request<L: Ledger>(
    shared: &Shared<L>,
    client: &Client,
    nas: IpAddr,
    request: &Packet,
) -> Result<Option<Vec<u8>>, crate::error::ServerError> {
    let c = &shared.counters;
    let Some(eap_packet) = request.eap_message() else {
        // Only EAP is spoken here; PAP/CHAP outside a TLS tunnel would
        // expose card credentials to the terminal.
        return Ok(reject(shared, client, request, None, DeclineCode::InvalidTransaction, "EAP is required"));
    };
    if !eap_length_matches(&eap_packet) {
        bump(&c.dropped_malformed);
        if shared.logs.allow(nas, "eap length") {
            warn!(client = %client.name, len = eap_packet.len(), "EAP-Message length disagrees with the EAP header");
        }
        return Ok(reject(
            shared,
            client,
            request,
            Some(&eap_packet),
            DeclineCode::InvalidTransaction,
            "malformed EAP-Message",
        ));
    }
    let claim = Claim::from_packet(request, shared.vendor_id);
    let (pending, state) = match request.get(rfc::STATE) {
        Some(state) => match shared.conversations.take(state, nas) {
            Some(mut conv) => {
                conv.pending.claim = std::mem::replace(&mut conv.pending.claim, Claim::AuthOnly).merge(claim);
                (conv.pending, state.try_into().ok())
            }
            None => {
                bump(&c.eap_unknown_state);
                return Ok(reject(
                    shared,
                    client,
                    request,
                    Some(&eap_packet),
                    DeclineCode::InvalidTransaction,
                    "unknown or expired State",
                ));
            }
        },
        None => {
            // Start the server's identifiers after the NAS's identity exchange.
            let first_id = eap_packet.get(1).map_or(1, |id| id.wrapping_add(1));
            let mut pending = Pending::new(first_id, claim);
            // A malformed Framed-MTU is ignored: the configured fragment size applies.
            pending.framed_mtu = request.get_u32(rfc::FRAMED_MTU).ok().flatten();
            (pending, None)
        }
    };
    let ctx = Context { client: &client.name, now_ms: payment::now_ms() };
    match eap::drive(&shared.policy, &shared.ledger, &ctx, pending, &eap_packet).await? {
        Outcome::Challenge(eap_request, pending) => {
            let state = match shared.conversations.put(pending, nas) {
                Ok(state) => state,
                Err(TableFull(mut pending)) => {
                    bump(&c.eap_table_full);
                    if let Some(answer) = pending.withdraw(&shared.ledger, "server busy").await {
                        let mut reply = Packet::reply_to(request, Code::AccessReject);
                        push(&mut reply, rfc::REPLY_MESSAGE, b"server busy");
                        push_answer(&mut reply, shared.vendor_id, &answer);
                        return Ok(sign(shared, client, request, reply));
                    }
                    return Ok(reject(shared, client, request, None, DeclineCode::SystemMalfunction, "server busy"));
                }
            };
            bump(&c.access_challenges);
            let mut reply = Packet::reply_to(request, Code::AccessChallenge);
            reply.push_eap_message(&eap_request);
            push(&mut reply, rfc::STATE, &state);
            Ok(sign(shared, client, request, reply))
        }
        Outcome::Accept { eap, keys, method, identity, answer } => {
            bump(&c.access_accepts);
            info!(client = %client.name, %method, identity, transaction = answer.transaction_id.as_deref().unwrap_or("-"), "approved");
            let mut reply = Packet::reply_to(request, Code::AccessAccept);
            reply.push_eap_message(&eap);
            if let Err(e) = radius::push_mppe_keys(&mut reply, &keys.msk, &client.secret, &request.authenticator) {
                warn!(error = %e, "MPPE keys");
            }
            push_vendor(&mut reply, shared.vendor_id, eapay::AUTH_METHOD, method.name().as_bytes());
            push_answer(&mut reply, shared.vendor_id, &answer);
            Ok(sign(shared, client, request, reply))
        }
        Outcome::Reject { eap, reason, answer } => {
            bump(&c.access_rejects);
            bump(c.failure(&reason));
            let (code, why) = match &answer.outcome {
                Decision::Declined(d) => (d.code.value(), d.reason.as_str()),
                Decision::Approved { .. } => (0, "approved"),
            };
            info!(client = %client.name, %reason, decline = code, why, transaction = answer.transaction_id.as_deref().unwrap_or("-"), "declined");
            let mut reply = Packet::reply_to(request, Code::AccessReject);
            reply.push_eap_message(&eap);
            push(&mut reply, rfc::REPLY_MESSAGE, why.as_bytes());
            push_answer(&mut reply, shared.vendor_id, &answer);
            Ok(sign(shared, client, request, reply))
        }
        Outcome::Discard(why, pending) => {
            bump(&c.eap_discarded);
            debug!(client = %client.name, why, "EAP packet discarded");
            if let Some(state) = state {
                if !pending.session.is_done() {
                    shared.conversations.restore(state, pending, nas);
                }
            }
            Ok(None)
        }
    }
}

/// Access-Reject with EAP-Failure (identifier of the peer's packet, if any),
/// for a request refused before any conversation could decide: nothing is
/// recorded, the terminal still gets a decline code to show.
fn reject<L>(
    shared: &Shared<L>,
    client: &Client,
    request: &Packet,
    eap: Option<&[u8]>,
    code: DeclineCode,
    why: &str,
) -> Option<Vec<u8>> {
    bump(&shared.counters.access_rejects);
    let mut reply = Packet::reply_to(request, Code::AccessReject);
    if let Some(eap) = eap {
        let id = eap.get(1).copied().unwrap_or(0);
        if let Ok(failure) = eap_methods::Packet::failure(id).encode() {
            reply.push_eap_message(&failure);
        }
    }
    push(&mut reply, rfc::REPLY_MESSAGE, why.as_bytes());
    push_vendor(&mut reply, shared.vendor_id, eapay::DECLINE_CODE, &code.value().to_be_bytes());
    push_vendor(&mut reply, shared.vendor_id, eapay::DECLINE_REASON, why.as_bytes());
    sign(shared, client, request, reply)
}

/// The approval or decline attributes (DESIGN.md §3) of an answer.
fn push_answer(reply: &mut Packet, vendor_id: u32, answer: &PaymentAnswer) {
    if let Some(txn) = &answer.transaction_id {
        push_vendor(reply, vendor_id, eapay::TRANSACTION_ID, txn.as_bytes());
    }
    match &answer.outcome {
        Decision::Approved { approval_code, approved_amount, receipt } => {
            push_vendor(reply, vendor_id, eapay::APPROVAL_CODE, approval_code.as_bytes());
            push_vendor(reply, vendor_id, eapay::APPROVED_AMOUNT, &approved_amount.to_be_bytes());
            if let Err(e) = aaa_proto::payment::push_split(reply, vendor_id, eapay::RECEIPT, receipt) {
                warn!(error = %e, "Eapay-Receipt not added");
            }
        }
        Decision::Declined(d) => {
            push_vendor(reply, vendor_id, eapay::DECLINE_CODE, &d.code.value().to_be_bytes());
            push_vendor(reply, vendor_id, eapay::DECLINE_REASON, d.reason.as_bytes());
        }
    }
    push_vendor(reply, vendor_id, eapay::CARD_CONFIRMATION, &answer.confirmation.value().to_be_bytes());
}

fn push_vendor(reply: &mut Packet, vendor_id: u32, kind: u8, value: &[u8]) {
    // Values here are ours and bounded (reasons are short, ids <= 64).
    if let Err(e) = reply.push_vendor(vendor_id, kind, value) {
        warn!(kind, error = %e, "vendor attribute not added");
    }
}

fn push(reply: &mut Packet, kind: u8, value: &[u8]) {
    // Values here are ours and short; a failure would be a bug, logged.
    if let Err(e) = reply.push(kind, value) {
        warn!(kind, error = %e, "attribute not added");
    }
}

/// RFC 3579 §3.1 carries exactly one EAP packet: its Length must equal the
/// reassembled EAP-Message (an empty one is EAP-Start).
fn eap_length_matches(eap: &[u8]) -> bool {
    eap.is_empty() || (eap.len() >= 4 && usize::from(u16::from_be_bytes([eap[2], eap[3]])) == eap.len())
}
