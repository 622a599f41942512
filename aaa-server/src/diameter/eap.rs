//! Diameter EAP (RFC 4072): one DER is one EAP round of the conversation
//! that Session-Id and the terminal's Origin-Host name; the DEA carries the
//! next EAP Request (1001), EAP-Success with the MSK and the approval (2001),
//! or EAP-Failure with the decline (4001).

use std::net::IpAddr;
use std::time::Instant;

use aaa_proto::diameter::message::{failed_avp, Message, OwnedAvp};
use aaa_proto::dictionary::diameter::{application, avp, ResultCode};
use aaa_proto::dictionary::eapay;

use super::dispatch::{eapay_pairs, missing, protocol_error, push_eapay, shell};
use super::peers::Peer;
use super::Diameter;
use crate::core::exchange::{self, Refusal, Reply, Turn};
use crate::core::payment::{self, Claim};
use crate::error::ServerError;
use crate::ledger::{Ledger, Outcome as Decision};

/// EAP-Response (RFC 3748 §4) and the Identity type (§5.1).
const EAP_RESPONSE: u8 = 2;
const EAP_IDENTITY: u8 = 1;

/// The DEA for one DER; `None` when the method discarded the EAP packet.
pub async fn answer<L: Ledger>(
    front: &Diameter<L>,
    peer: &Peer,
    source: IpAddr,
    request: &Message,
) -> Result<Option<Message>, ServerError> {
    let core = &front.core;
    let vendor_id = core.vendor_id;
    for code in [avp::AUTH_APPLICATION_ID, avp::AUTH_REQUEST_TYPE, avp::EAP_PAYLOAD] {
        if request.find(code, None).is_none() {
            front.refused(source, "missing AVP", &format!("DER without AVP {code}"));
            let mut answer = dea(front, request, ResultCode::MissingAvp);
            answer.push(failed_avp(&missing(code)));
            return Ok(Some(answer));
        }
    }
    if let Some(app) = request.find(avp::AUTH_APPLICATION_ID, None) {
        if app.as_u32().ok() != Some(application::EAP) {
            front.refused(source, "unsupported application", "Auth-Application-Id is not Diameter EAP");
            return Ok(Some(protocol_error(front, request, ResultCode::ApplicationUnsupported, Some(app.clone()))));
        }
    }
    let payload = request.find(avp::EAP_PAYLOAD, None).map(|a| a.data.as_slice()).unwrap_or_default();
    let session = request.session_id().unwrap_or_default().to_string();
    let key = (session, request.origin_host().unwrap_or_default().to_ascii_lowercase());
    let turn = Turn {
        client: &peer.name,
        source,
        // Session-Id names the conversation from the first round on, so only
        // the shape of the EAP packet tells a start from a continuation.
        continues: (!starts_conversation(payload)).then(|| key.clone()),
        keep_as: key,
        eap: payload,
        claim: Claim::from_attributes(&eapay_pairs(request, vendor_id)),
        framed_mtu: request.find(avp::FRAMED_MTU, None).and_then(|a| a.as_u32().ok()),
        now: Instant::now(),
        now_ms: payment::now_ms(),
    };
    let answer = match exchange::exchange(core, &front.conversations, turn).await? {
        Reply::Challenge(eap) => {
            let mut answer = dea(front, request, ResultCode::MultiRoundAuth);
            answer.push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, &eap));
            answer
        }
        Reply::Accept { eap, keys, method, answer: approval } => {
            let mut answer = dea(front, request, ResultCode::Success);
            answer.push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, &eap));
            answer.push(OwnedAvp::octets(avp::EAP_MASTER_SESSION_KEY, None, true, &keys.msk));
            push_eapay(&mut answer, vendor_id, [(eapay::AUTH_METHOD, method.name().as_bytes().to_vec())]);
            push_eapay(&mut answer, vendor_id, approval.attributes());
            answer
        }
        Reply::Reject { eap, answer: decline } => {
            let mut answer = dea(front, request, ResultCode::AuthenticationRejected);
            answer.push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, &eap));
            if let Decision::Declined(d) = &decline.outcome {
                answer.push(OwnedAvp::utf8(avp::REPLY_MESSAGE, None, true, &d.reason));
            }
            push_eapay(&mut answer, vendor_id, decline.attributes());
            answer
        }
        Reply::Withdrawn(decline) => {
            let mut answer = dea(front, request, ResultCode::AuthenticationRejected);
            answer.push(OwnedAvp::utf8(avp::REPLY_MESSAGE, None, true, Refusal::Busy.text()));
            push_eapay(&mut answer, vendor_id, decline.attributes());
            answer
        }
        Reply::Refused { eap, refusal } => {
            let (code, offending) = match refusal {
                Refusal::MalformedEap => {
                    (ResultCode::InvalidAvpValue, request.find(avp::EAP_PAYLOAD, None).map(failed_avp))
                }
                Refusal::UnknownConversation => (ResultCode::UnknownSessionId, None),
                Refusal::Busy => (ResultCode::TooBusy, None),
            };
            front.refused(source, refusal.text(), "");
            let mut answer = if refusal == Refusal::Busy {
                protocol_error(front, request, code, None)
            } else {
                dea(front, request, code)
            };
            if let Some(failed) = offending {
                answer.push(failed);
            }
            if let Some(eap) = eap {
                answer.push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, &eap));
            }
            push_eapay(&mut answer, vendor_id, refusal.attributes());
            answer
        }
        // A protocol error decides nothing: the terminal stays in doubt and
        // reverses. Uncached, like every 3004.
        Reply::InDoubt => protocol_error(front, request, ResultCode::TooBusy, None),
        Reply::Discard => return Ok(None),
    };
    Ok(Some(answer))
}

/// The DEA skeleton: Session-Id, Result-Code, Origin-Host and -Realm, then
/// Auth-Application-Id and the Auth-Request-Type the client asked for, and
/// the State it sent back (RFC 4072 §3.2).
fn dea<L>(front: &Diameter<L>, request: &Message, code: ResultCode) -> Message {
    let mut answer = shell(front, request, code);
    answer.push(OwnedAvp::u32(avp::AUTH_APPLICATION_ID, None, true, application::EAP));
    if let Some(kind) = request.find(avp::AUTH_REQUEST_TYPE, None) {
        answer.push(kind.clone());
    }
    if let Some(state) = request.find(avp::STATE, None) {
        answer.push(state.clone());
    }
    answer
}

/// An empty EAP-Payload (RFC 4072 §3.1: the client asks the server to
/// start) or an EAP-Response/Identity begins a conversation.
fn starts_conversation(eap: &[u8]) -> bool {
    eap.is_empty() || (eap.first() == Some(&EAP_RESPONSE) && eap.get(4) == Some(&EAP_IDENTITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_responses_and_empty_payloads_start_a_conversation() {
        assert!(starts_conversation(&[]));
        assert!(starts_conversation(&[2, 0, 0, 9, 1, b'a', b'@', b'r', b'x']));
        assert!(!starts_conversation(&[2, 1, 0, 6, 23, 0]), "an AKA response continues");
        assert!(!starts_conversation(&[1, 1, 0, 5, 1]), "a request is no start");
    }
}
