//! A conversation over Diameter EAP (RFC 4072): each round is a DER in one
//! Session-Id with User-Name, Framed-MTU, NAS-Identifier, EAP-Payload,
//! Auth-Request-Type AUTHORIZE_AUTHENTICATE and the payment as Eapay vendor
//! AVPs; the DEA's Result-Code says 1001 (more EAP), 2001 (approved) or
//! anything else (declined or refused).

use aaa_proto::diameter::message::{Message, OwnedAvp};
use aaa_proto::dictionary::diameter::{application, avp, command, AuthRequestType, ResultCode};

use super::{joined, FinalReply, Round, ServerAnswer, Transport, Verdict};
use crate::diameter::DiameterClient;
use crate::payment::{PaymentError, TerminalSettings};

/// One EAP conversation through `client`.
pub struct DiameterConversation<'a> {
    client: &'a DiameterClient,
    settings: &'a TerminalSettings,
    session_id: String,
    /// The server that answered the first round: the conversation lives there.
    server: Option<usize>,
    /// The State of the last DEA, if the server sent one (RFC 4072 §3.1).
    state: Option<Vec<u8>>,
}

impl<'a> DiameterConversation<'a> {
    /// A new conversation with a fresh Session-Id.
    pub fn new(client: &'a DiameterClient, settings: &'a TerminalSettings) -> Self {
        Self { client, settings, session_id: client.new_session_id(), server: None, state: None }
    }

    fn der(&self, round: &Round<'_>) -> Message {
        let vendor = Some(self.settings.vendor_id);
        let mut der = self.client.new_request(command::DIAMETER_EAP, application::EAP, &self.session_id);
        der.push(OwnedAvp::u32(avp::AUTH_APPLICATION_ID, None, true, application::EAP))
            .push(OwnedAvp::u32(avp::AUTH_REQUEST_TYPE, None, true, AuthRequestType::AuthorizeAuthenticate.value()))
            .push(OwnedAvp::utf8(avp::USER_NAME, None, true, round.user_name))
            .push(OwnedAvp::u32(avp::FRAMED_MTU, None, true, self.settings.framed_mtu))
            .push(OwnedAvp::octets(avp::EAP_PAYLOAD, None, true, round.eap));
        if let Some(id) = &self.settings.nas_identifier {
            der.push(OwnedAvp::utf8(avp::NAS_IDENTIFIER, None, true, id));
        }
        if let Some(state) = &self.state {
            der.push(OwnedAvp::octets(avp::STATE, None, true, state));
        }
        if let Some(details) = round.payment {
            for (code, value) in details.attributes() {
                der.push(OwnedAvp::octets(u32::from(code), vendor, false, &value));
            }
        }
        der
    }
}

impl Transport for DiameterConversation<'_> {
    async fn round(&mut self, round: Round<'_>) -> Result<ServerAnswer, PaymentError> {
        let der = self.der(&round);
        // The first round may go to any server; the rest belong to the one
        // holding the conversation.
        let dea = match self.server {
            None => {
                let (dea, server) = self.client.request(der).await?;
                self.server = Some(server);
                dea
            }
            Some(server) => self.client.request_on(server, der).await?,
        };
        let verdict = match dea.result_code() {
            Some(code) if code == ResultCode::MultiRoundAuth.value() => {
                self.state = dea.find(avp::STATE, None).map(|s| s.data.clone());
                Verdict::Challenge
            }
            Some(code) if code == ResultCode::Success.value() => Verdict::Accept,
            // A permanent failure (4xxx, 5xxx: unknown session, malformed
            // EAP) ends the conversation; the Eapay attributes say what the
            // terminal shows.
            Some(code) if (4000..6000).contains(&code) => Verdict::Reject,
            // A protocol error (3xxx: busy, unable to deliver) decided
            // nothing the terminal can rely on: it stays in doubt, as after
            // a RADIUS timeout.
            other => return Err(PaymentError::UnexpectedAnswer(format!("a DEA with Result-Code {other:?}"))),
        };
        let eapay = joined(dea.vendor_pairs(self.settings.vendor_id));
        let eap = dea.find(avp::EAP_PAYLOAD, None).map(|a| a.data.clone());
        Ok(ServerAnswer { verdict, eap, eapay, reply: FinalReply::Diameter(dea) })
    }
}
