//! The application requests a connection delivers: the checks every request
//! passes (command, application, routing, M-bit AVPs, required AVPs),
//! duplicate detection, then DER or ACR; and the answer skeleton both share.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use aaa_proto::diameter::message::{failed_avp, Message, OwnedAvp, FLAG_ERROR};
use aaa_proto::dictionary::diameter::{self, application, avp, command, ResultCode};
use tracing::warn;

use super::peers::Peer;
use super::{accounting, eap, Diameter};
use crate::core::counters::bump;
use crate::core::duplicates::Seen;
use crate::ledger::Ledger;

/// The answer to one application request; `None` sends nothing (a copy of a
/// request still being processed, or an EAP packet the method discarded).
pub async fn answer<L: Ledger>(
    front: &Diameter<L>,
    peer: &Peer,
    source: IpAddr,
    request: Message,
) -> Option<Arc<Message>> {
    let c = &front.counters;
    bump(&c.diameter_requests);
    if let Err(refusal) = check(front, &request) {
        front.refused(source, refusal.reason, &refusal.detail);
        return Some(Arc::new(refusal.answer));
    }
    // check() made sure of it.
    let origin_host = request.origin_host().unwrap_or_default().to_ascii_lowercase();
    let key = (request.end_to_end, origin_host);
    match front.duplicates.check(key.clone(), Instant::now()) {
        Seen::New => {}
        Seen::InProgress => {
            bump(&c.diameter_duplicates_dropped);
            return None;
        }
        Seen::Answered(answer) => {
            bump(&c.diameter_duplicates_resent);
            // The copy may come over another path: its Hop-by-Hop id, the same answer.
            return answer.map(|a| Arc::new(Message { hop_by_hop: request.hop_by_hop, ..(*a).clone() }));
        }
    }
    let result = if request.command == command::DIAMETER_EAP {
        eap::answer(front, peer, source, &request).await
    } else {
        accounting::answer(front, peer, &request).await
    };
    match result {
        Ok(answer) => {
            let answer = answer.map(|a| Arc::new(finish(&request, a)));
            front.duplicates.finish(key, answer.clone(), Instant::now());
            if answer.is_some() {
                bump(&c.diameter_answers);
            }
            answer
        }
        Err(e) => {
            // A store failure is ours, not the client's: no cached answer, so
            // its retransmission is decided afresh once the store recovers.
            bump(&front.core.counters.store_errors);
            warn!(peer = %peer.name, error = %e, "Diameter request failed");
            front.duplicates.forget(key);
            Some(Arc::new(finish(&request, protocol_error(front, &request, ResultCode::TooBusy, None))))
        }
    }
}

/// A request refused before the application looked at it.
struct Refusal {
    answer: Message,
    reason: &'static str,
    detail: String,
}

/// The checks of RFC 6733 §6.1 and §7 that come before any application logic.
fn check<L>(front: &Diameter<L>, request: &Message) -> Result<(), Refusal> {
    let refuse = |code: ResultCode, offending: Option<OwnedAvp>, reason: &'static str, detail: String| {
        let answer = if code.value() < 4000 {
            protocol_error(front, request, code, offending)
        } else {
            let mut a = shell(front, request, code);
            if let Some(avp) = offending {
                a.push(failed_avp(&avp));
            }
            a
        };
        Err(Refusal { answer: finish(request, answer), reason, detail })
    };
    let expected = match request.command {
        command::DIAMETER_EAP => application::EAP,
        command::ACCOUNTING => application::ACCOUNTING,
        other => return refuse(ResultCode::CommandUnsupported, None, "unsupported command", other.to_string()),
    };
    if request.application != expected {
        let detail = format!("command {} in application {}", request.command, request.application);
        return refuse(ResultCode::ApplicationUnsupported, None, "unsupported application", detail);
    }
    for (code, name) in [
        (avp::SESSION_ID, "Session-Id"),
        (avp::ORIGIN_HOST, "Origin-Host"),
        (avp::ORIGIN_REALM, "Origin-Realm"),
        (avp::DESTINATION_REALM, "Destination-Realm"),
    ] {
        if request.find(code, None).is_none() {
            return refuse(ResultCode::MissingAvp, Some(missing(code)), "missing AVP", name.into());
        }
    }
    if let Some(unknown) =
        request.avps.iter().find(|a| a.is_mandatory() && diameter::find(a.code, a.vendor_id).is_none())
    {
        let detail = format!("AVP {} vendor {:?}", unknown.code, unknown.vendor_id);
        return refuse(ResultCode::AvpUnsupported, Some(unknown.clone()), "unsupported M-bit AVP", detail);
    }
    let local = &front.peer_config.local;
    let realm = request.find(avp::DESTINATION_REALM, None).and_then(|a| a.as_str().ok()).unwrap_or_default();
    if !realm.eq_ignore_ascii_case(&local.origin_realm) {
        return refuse(ResultCode::RealmNotServed, None, "realm not served", realm.to_string());
    }
    if let Some(host) = request.find(avp::DESTINATION_HOST, None).and_then(|a| a.as_str().ok()) {
        if !host.eq_ignore_ascii_case(&local.origin_host) {
            return refuse(ResultCode::UnableToDeliver, None, "not the destination host", host.to_string());
        }
    }
    Ok(())
}

/// An AVP of `code` with empty data: the Failed-AVP example of a missing
/// AVP (RFC 6733 §7.5: "the AVP Data field is empty").
pub fn missing(code: u32) -> OwnedAvp {
    OwnedAvp::octets(code, None, true, &[])
}

/// The answer to `request` with its Session-Id first (RFC 6733 §8.8),
/// Result-Code, Origin-Host and Origin-Realm.
pub fn shell<L>(front: &Diameter<L>, request: &Message, code: ResultCode) -> Message {
    let local = &front.peer_config.local;
    let mut answer = Message::answer_to(request);
    if let Some(session) = request.find(avp::SESSION_ID, None) {
        answer.push(session.clone());
    }
    answer.push(OwnedAvp::u32(avp::RESULT_CODE, None, true, code.value()));
    answer.push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, &local.origin_host));
    answer.push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, &local.origin_realm));
    answer
}

/// A protocol error (3xxx, RFC 6733 §7.1.3): the E bit, and Failed-AVP when
/// one AVP is to blame.
pub fn protocol_error<L>(
    front: &Diameter<L>,
    request: &Message,
    code: ResultCode,
    offending: Option<OwnedAvp>,
) -> Message {
    let mut answer = shell(front, request, code);
    answer.flags |= FLAG_ERROR;
    if let Some(avp) = offending {
        answer.push(failed_avp(&avp));
    }
    answer
}

/// Proxy-Info AVPs go back in the order they came (RFC 6733 §6.2).
fn finish(request: &Message, mut answer: Message) -> Message {
    for proxy in request.find_all(avp::PROXY_INFO, None) {
        answer.push(proxy.clone());
    }
    answer
}

/// The Eapay vendor AVPs of a request as `(vendor type, value)` pairs.
pub fn eapay_pairs(request: &Message, vendor_id: u32) -> Vec<(u8, &[u8])> {
    request.vendor_pairs(vendor_id).collect()
}

/// Appends Eapay attributes as vendor AVPs (V set, M clear: DESIGN.md §3).
pub fn push_eapay(answer: &mut Message, vendor_id: u32, attrs: impl IntoIterator<Item = (u8, Vec<u8>)>) {
    for (code, value) in attrs {
        answer.push(OwnedAvp::octets(u32::from(code), Some(vendor_id), false, &value));
    }
}
