//! The blind EAP relay (RFC 3579): carry the card's EAP packets to the
//! server in Access-Requests, and the server's back, keeping the
//! conversation together with State. The terminal reads only the RADIUS
//! layer; the EAP payload is opaque to it.

use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{Attribute, Code, Packet};
use thiserror::Error;

use crate::client::{ClientError, RadiusClient};

/// Round trips allowed before the terminal gives up on a conversation.
const MAX_ROUNDS: usize = 64;

/// Why a relayed conversation did not reach a verdict.
#[derive(Debug, Error)]
pub enum RelayError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Radius(#[from] ClientError),
    #[error("card link: {0}")]
    Card(#[source] E),
    #[error("the card stopped answering mid-conversation")]
    CardSilent,
    #[error("the server answered with {0}")]
    UnexpectedCode(Code),
    #[error("Access-Challenge without EAP-Message")]
    NoEap,
    #[error("more than {MAX_ROUNDS} round trips")]
    TooManyRounds,
}

/// The server's verdict, as the terminal sees it.
#[derive(Debug)]
pub struct Verdict {
    /// Access-Accept or Access-Reject, with all its attributes.
    pub reply: Packet,
    /// The authenticator of the request it answers: the salt of its
    /// encrypted attributes (MS-MPPE keys).
    pub request_authenticator: [u8; 16],
}

impl Verdict {
    /// True for Access-Accept.
    pub fn accepted(&self) -> bool {
        self.reply.code == Code::AccessAccept
    }
}

/// Relays one EAP conversation. `first` is the card's EAP-Response/Identity;
/// `card` hands an EAP packet to the card and returns its answer (`None` if
/// it has none, e.g. after EAP-Success). `extra` attributes (the payment
/// details) go into every Access-Request.
pub async fn relay<E, F>(
    client: &mut RadiusClient,
    user_name: &str,
    first: Vec<u8>,
    extra: &[Attribute],
    mut card: F,
) -> Result<Verdict, RelayError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, E>,
{
    let mut eap = first;
    let mut state: Option<Vec<u8>> = None;
    for _ in 0..MAX_ROUNDS {
        let mut request = Packet::new_request(Code::AccessRequest, 0);
        request.add_message_authenticator();
        push(&mut request, rfc::USER_NAME, user_name.as_bytes());
        request.push_eap_message(&eap);
        if let Some(s) = &state {
            push(&mut request, rfc::STATE, s);
        }
        request.attributes.extend(extra.iter().cloned());
        let request_authenticator = request.authenticator;
        let reply = client.exchange(request).await?;
        match reply.code {
            Code::AccessChallenge => {
                let challenge = reply.eap_message().ok_or(RelayError::NoEap)?;
                state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                eap = card(&challenge).map_err(RelayError::Card)?.ok_or(RelayError::CardSilent)?;
            }
            Code::AccessAccept | Code::AccessReject => {
                // The card sees the final EAP packet too; it decides for
                // itself whether to believe it.
                if let Some(last) = reply.eap_message() {
                    card(&last).map_err(RelayError::Card)?;
                }
                return Ok(Verdict { reply, request_authenticator });
            }
            other => return Err(RelayError::UnexpectedCode(other)),
        }
    }
    Err(RelayError::TooManyRounds)
}

fn push(p: &mut Packet, kind: u8, value: &[u8]) {
    // User-Name and State come from bounded sources (<= 253 octets); an
    // oversized one is left out and the server rejects the request.
    let _ = p.push(kind, value);
}
