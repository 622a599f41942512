//! A conversation over RADIUS (RFC 3579): each round is an Access-Request
//! with User-Name, NAS-Identifier, Framed-MTU, EAP-Message,
//! Message-Authenticator, the conversation's State and the payment
//! attributes; the answer is Access-Challenge, -Accept or -Reject.

use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{Code, Packet};

use super::{joined, FinalReply, Round, ServerAnswer, Transport, Verdict};
use crate::client::RadiusClient;
use crate::payment::{PaymentError, TerminalSettings};

/// One EAP conversation through `client`.
pub struct RadiusConversation<'a> {
    client: &'a mut RadiusClient,
    settings: &'a TerminalSettings,
    /// The State of the last Access-Challenge.
    state: Option<Vec<u8>>,
}

impl<'a> RadiusConversation<'a> {
    /// A new conversation (no State yet).
    pub fn new(client: &'a mut RadiusClient, settings: &'a TerminalSettings) -> Self {
        Self { client, settings, state: None }
    }
}

impl Transport for RadiusConversation<'_> {
    async fn round(&mut self, round: Round<'_>) -> Result<ServerAnswer, PaymentError> {
        let mut packet = Packet::new_request(Code::AccessRequest, 0);
        packet.add_message_authenticator();
        push(&mut packet, rfc::USER_NAME, round.user_name.as_bytes());
        if let Some(id) = &self.settings.nas_identifier {
            push(&mut packet, rfc::NAS_IDENTIFIER, id.as_bytes());
        }
        packet.push_u32(rfc::FRAMED_MTU, self.settings.framed_mtu);
        packet.push_eap_message(round.eap);
        if let Some(s) = &self.state {
            push(&mut packet, rfc::STATE, s);
        }
        if let Some(details) = round.payment {
            details.push_to(&mut packet, self.settings.vendor_id).map_err(|e| PaymentError::Details(e.to_string()))?;
        }
        let authenticator = packet.authenticator;
        // The first round may go to any server; the rest belong to the one
        // holding the conversation's State.
        let reply = if round.number == 0 {
            self.client.exchange(packet).await?
        } else {
            self.client.exchange_pinned(packet).await?
        };
        let verdict = match reply.code {
            Code::AccessChallenge => {
                self.state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                Verdict::Challenge
            }
            Code::AccessAccept => Verdict::Accept,
            Code::AccessReject => Verdict::Reject,
            other => return Err(PaymentError::UnexpectedAnswer(other.name().to_string())),
        };
        // Vendor-Specific attributes that do not parse yield nothing to trust.
        let eapay = reply
            .vendor_attributes(self.settings.vendor_id)
            .map(|attrs| joined(attrs.iter().map(|a| (a.vendor_type, a.value))))
            .unwrap_or_default();
        Ok(ServerAnswer {
            verdict,
            eap: reply.eap_message(),
            eapay,
            reply: FinalReply::Radius { packet: reply, authenticator },
        })
    }
}

fn push(p: &mut Packet, kind: u8, value: &[u8]) {
    // User-Name, NAS-Identifier and State come from bounded sources (at
    // most 253 octets, checked by the payment or the codec); an oversized
    // one is left out and the server rejects the request.
    let _ = p.push(kind, value);
}
