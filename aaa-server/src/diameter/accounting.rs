//! Base accounting (RFC 6733 §9): an ACR carrying Eapay-Settlement-Action
//! captures, reverses or refunds, exactly as a RADIUS Accounting-Request
//! does; the ACA is the acknowledgement the terminal's store-and-forward
//! queue waits for. A refused settlement is still acknowledged (2001) with
//! Eapay-Decline-Code and -Reason, so the terminal stops retrying.

use aaa_proto::diameter::message::{failed_avp, Message};
use aaa_proto::dictionary::diameter::{application, avp, ResultCode};

use super::dispatch::{eapay_pairs, missing, push_eapay, shell};
use super::peers::Peer;
use super::Diameter;
use crate::core::payment;
use crate::core::settlement::{self, Terminal};
use crate::error::ServerError;
use crate::ledger::Ledger;

/// The ACA for one ACR.
pub async fn answer<L: Ledger>(
    front: &Diameter<L>,
    peer: &Peer,
    request: &Message,
) -> Result<Option<Message>, ServerError> {
    let core = &front.core;
    let mut answer = shell(front, request, ResultCode::Success);
    for code in [avp::ACCOUNTING_RECORD_TYPE, avp::ACCOUNTING_RECORD_NUMBER] {
        match request.find(code, None) {
            Some(found) => {
                answer.push(found.clone());
            }
            None => {
                let mut refused = shell(front, request, ResultCode::MissingAvp);
                refused.push(failed_avp(&missing(code)));
                return Ok(Some(refused));
            }
        }
    }
    answer.push(aaa_proto::diameter::OwnedAvp::u32(avp::ACCT_APPLICATION_ID, None, true, application::ACCOUNTING));
    let terminal = Terminal { name: &peer.name, merchants: &peer.merchants };
    let now_ms = payment::now_ms();
    let attrs = eapay_pairs(request, core.vendor_id);
    if let Some(decline) = settlement::account(&core.ledger, &core.settlements, Some(&attrs), terminal, now_ms).await? {
        push_eapay(&mut answer, core.vendor_id, payment::decline_attributes(decline.code, &decline.reason));
    }
    Ok(Some(answer))
}
