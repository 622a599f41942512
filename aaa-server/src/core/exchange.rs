//! One EAP packet from a terminal, whatever carried it: find or start its
//! conversation, drive it, keep it for the next round, and say what to answer.
//!
//! This is the conversation lifecycle both front ends share: the claim of a
//! later round is merged into the conversation's, the first round's
//! Framed-MTU bounds EAP-TLS fragments, a full table withdraws an approval
//! rather than lose it, and a discarded packet does not cost the terminal its
//! conversation.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

use aaa_proto::dictionary::eapay::DeclineCode;
use eap_methods::{EapType, FailureReason, Keys};
use tracing::{debug, info, warn};

use super::conversations::{Conversations, TableFull};
use super::counters::bump;
use super::eap::{self, Outcome, Pending};
use super::payment::{decline_attributes, Claim, Context, PaymentAnswer};
use super::Core;
use crate::error::ServerError;
use crate::ledger::{Ledger, Outcome as Decision};

/// One EAP packet and what came with it.
pub struct Turn<'a, K> {
    /// The terminal's name (RADIUS client, Diameter peer), as the ledger records it.
    pub client: &'a str,
    /// Where the packet came from, for rate-limited logs.
    pub source: IpAddr,
    /// The conversation this packet continues; `None` starts one.
    pub continues: Option<K>,
    /// Where the conversation waits if it needs the peer again.
    pub keep_as: K,
    /// The EAP packet (empty: EAP-Start).
    pub eap: &'a [u8],
    /// What this request asserts about the payment.
    pub claim: Claim,
    /// The NAS's Framed-MTU, read from the first request only.
    pub framed_mtu: Option<u32>,
    /// The conversation clock.
    pub now: Instant,
    /// The wall clock, Unix ms, for the ledger.
    pub now_ms: u64,
}

/// What the front end answers.
pub enum Reply {
    /// Send this EAP Request; the conversation waits under `keep_as`.
    Challenge(Vec<u8>),
    /// EAP-Success, the MSK and the approval.
    Accept { eap: Vec<u8>, keys: Keys, method: EapType, answer: PaymentAnswer },
    /// EAP-Failure and the decline.
    Reject { eap: Vec<u8>, answer: PaymentAnswer },
    /// Refused before a conversation could decide: nothing was recorded.
    /// `eap` is the EAP-Failure to send when the request held an EAP packet.
    Refused { eap: Option<Vec<u8>>, refusal: Refusal },
    /// The request continues a conversation this server no longer has (a
    /// restart lost it, answer and all) and names a payment the ledger
    /// holds approved for this terminal. Neither a decline (the approval
    /// stands) nor the approval (the card never completed it, or this is a
    /// late copy of a request already answered) is the truth the terminal
    /// can act on: it must stay in doubt and send its timeout reversal. RADIUS
    /// answers nothing; Diameter answers 3004 (any 3xxx leaves the terminal
    /// in doubt).
    InDoubt,
    /// The table was full after an approval: it was withdrawn, and this is
    /// the decline to send instead (without EAP: the conversation is gone).
    Withdrawn(PaymentAnswer),
    /// Send nothing.
    Discard,
}

/// Why a request was refused before a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The EAP packet's Length disagrees with what arrived.
    MalformedEap,
    /// The request names a conversation that is not (or no longer) here.
    UnknownConversation,
    /// The conversation table is full.
    Busy,
}

impl Refusal {
    /// The decline code the terminal shows.
    pub fn code(self) -> DeclineCode {
        match self {
            Self::MalformedEap | Self::UnknownConversation => DeclineCode::InvalidTransaction,
            Self::Busy => DeclineCode::SystemMalfunction,
        }
    }

    /// One line for the terminal and the log.
    pub fn text(self) -> &'static str {
        match self {
            Self::MalformedEap => "malformed EAP-Message",
            Self::UnknownConversation => "unknown or expired State",
            Self::Busy => "server busy",
        }
    }

    /// Eapay-Decline-Code and -Reason as `(vendor type, value)` pairs.
    pub fn attributes(self) -> [(u8, Vec<u8>); 2] {
        decline_attributes(self.code(), self.text())
    }
}

/// Runs one EAP packet through its conversation in `table`.
pub async fn exchange<L: Ledger, K: Eq + Hash + Clone>(
    core: &Core<L>,
    table: &Conversations<K>,
    turn: Turn<'_, K>,
) -> Result<Reply, ServerError> {
    let reply = converse(core, table, turn).await?;
    if let Reply::Accept { answer, .. } | Reply::Reject { answer, .. } | Reply::Withdrawn(answer) = &reply {
        if answer.transaction_id.is_some() {
            core.answers.record(&answer.outcome);
        }
    }
    Ok(reply)
}

async fn converse<L: Ledger, K: Eq + Hash + Clone>(
    core: &Core<L>,
    table: &Conversations<K>,
    turn: Turn<'_, K>,
) -> Result<Reply, ServerError> {
    let c = &core.counters;
    if !eap_length_matches(turn.eap) {
        if core.logs.allow(turn.source, "eap length") {
            warn!(client = turn.client, len = turn.eap.len(), "EAP packet length disagrees with the EAP header");
        }
        return Ok(refuse(core, turn.eap, Refusal::MalformedEap));
    }
    let pending = match &turn.continues {
        Some(key) => match table.take(key, turn.now) {
            Some(mut pending) => {
                pending.claim = std::mem::replace(&mut pending.claim, Claim::AuthOnly).merge(turn.claim);
                pending
            }
            None => {
                bump(&c.eap_unknown_conversation);
                if approved_in_ledger(core, &turn).await? {
                    bump(&c.eap_unknown_conversation_approved);
                    if core.logs.allow(turn.source, "unknown conversation, approved payment") {
                        warn!(
                            client = turn.client,
                            transaction = turn.claim.transaction_id().unwrap_or("-"),
                            "a request continues a conversation this server does not have, and its payment is \
                             approved in the ledger: no answer, so the terminal stays in doubt and reverses it"
                        );
                    }
                    return Ok(Reply::InDoubt);
                }
                return Ok(refuse(core, turn.eap, Refusal::UnknownConversation));
            }
        },
        None => {
            // Start the server's identifiers after the NAS's identity exchange.
            let first_id = turn.eap.get(1).map_or(1, |id| id.wrapping_add(1));
            Pending::new(first_id, turn.claim, turn.framed_mtu)
        }
    };
    let ctx = Context { client: turn.client, source: turn.source, now_ms: turn.now_ms };
    let c = &core.counters;
    Ok(match eap::drive(core, &ctx, pending, turn.eap).await? {
        Outcome::Challenge(eap_request, pending) => match table.put(turn.keep_as, turn.client, pending, turn.now) {
            Ok(()) => {
                bump(&c.challenges);
                Reply::Challenge(eap_request)
            }
            Err(TableFull(mut pending)) => {
                bump(&c.eap_table_full);
                bump(&c.rejects);
                match pending.withdraw(&core.ledger, Refusal::Busy.text(), turn.now_ms).await {
                    Some(answer) => Reply::Withdrawn(answer),
                    None => Reply::Refused { eap: None, refusal: Refusal::Busy },
                }
            }
        },
        Outcome::Accept { eap, keys, method, identity, answer } => {
            bump(&c.accepts);
            info!(client = turn.client, %method, identity, transaction = answer.transaction_id.as_deref().unwrap_or("-"), "approved");
            Reply::Accept { eap, keys, method, answer }
        }
        Outcome::Reject { eap, reason, answer } => {
            bump(&c.rejects);
            bump(c.failure(&reason));
            log_decline(turn.client, &reason, &answer);
            Reply::Reject { eap, answer }
        }
        Outcome::Discard(why, pending) => {
            bump(&c.eap_discarded);
            debug!(client = turn.client, why, "EAP packet discarded");
            if let Some(key) = turn.continues {
                if !pending.session.is_done() {
                    table.restore(key, turn.client, pending, turn.now);
                }
            }
            Reply::Discard
        }
    })
}

/// Whether the payment of a request whose conversation is unknown here is
/// approved in the ledger for this terminal. A decline 12 ("unknown State")
/// would then tell the terminal a lie it does not reverse: after a restart
/// the approval would stay, holding the card's money for a sale the
/// terminal showed as declined. A request without payment attributes (a
/// terminal that sends them in the first round only) cannot be looked up
/// and is declined as before.
async fn approved_in_ledger<L: Ledger, K>(core: &Core<L>, turn: &Turn<'_, K>) -> Result<bool, ServerError> {
    let Claim::Payment(details) = &turn.claim else { return Ok(false) };
    core.ledger.holds_approval(turn.client, &details.merchant_id, &details.transaction_id).await
}

fn refuse<L>(core: &Core<L>, eap: &[u8], refusal: Refusal) -> Reply {
    bump(&core.counters.rejects);
    Reply::Refused { eap: eap_failure_to(eap), refusal }
}

fn log_decline(client: &str, reason: &FailureReason, answer: &PaymentAnswer) {
    let (code, why) = match &answer.outcome {
        Decision::Declined(d) => (d.code.value(), d.reason.as_str()),
        Decision::Approved { .. } => (0, "approved"),
    };
    info!(client, %reason, decline = code, why, transaction = answer.transaction_id.as_deref().unwrap_or("-"), "declined");
}

/// EAP-Failure with the identifier of the peer's packet (0 for EAP-Start).
fn eap_failure_to(eap: &[u8]) -> Option<Vec<u8>> {
    let id = eap.get(1).copied().unwrap_or(0);
    eap_methods::Packet::failure(id).encode().ok()
}

/// RFC 3579 §3.1 (and RFC 4072 §4.1.1) carry exactly one EAP packet: its
/// Length must equal what arrived (an empty one is EAP-Start).
fn eap_length_matches(eap: &[u8]) -> bool {
    eap.is_empty() || (eap.len() >= 4 && usize::from(u16::from_be_bytes([eap[2], eap[3]])) == eap.len())
}
