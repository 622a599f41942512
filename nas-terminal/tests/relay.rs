//! The terminal relays a real card's EAP to a real eapay-server over UDP,
//! with the payment attributes in every Access-Request. The card here is
//! e-card's EAP peer driven by hand over the in-process card link, so a test
//! can make it confirm other details than the terminal shows it and read
//! the keys it derived.

use std::time::Duration;

use aaa_proto::card_link::{self, CardLink};
use aaa_proto::dictionary::eapay::{self, CardConfirmation, DeclineCode};
use aaa_proto::dictionary::microsoft;
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{is_approval_code, PaymentDetails, PaymentOutcome, PaymentResult};
use aaa_proto::radius::{decrypt_mppe_key, Code, Packet};
use e_card::card_file::CardFile;
use eap_methods::peer::PeerEvent;
use eapay_tests::{details, Method, Server};
use nas_terminal::client::RadiusClient;
use nas_terminal::payment::{self, Request, TerminalSettings};
use nas_terminal::transport::FinalReply;

/// What one relayed conversation produced.
struct Paid {
    reply: Packet,
    /// MS-MPPE-Recv-Key, decrypted.
    recv_key: Option<Vec<u8>>,
    /// The MSK the card derived, if it accepted the server's EAP-Success.
    msk: Option<[u8; 64]>,
    /// What the server told the card inside the protected channel.
    card_result: Option<Vec<u8>>,
}

/// Relays one payment: the terminal sends `asserted` (None: authentication
/// only), the card confirms `confirmed` (None: nothing) whatever it is shown.
async fn pay(
    server: &Server,
    card: &CardFile,
    asserted: Option<&PaymentDetails>,
    confirmed: Option<&PaymentDetails>,
) -> Paid {
    let mut peer = e_card::peer::session(card, confirmed.map(PaymentDetails::canonical)).expect("card drives a peer");
    let (mut terminal_end, mut card_end) = card_link::channel();
    let card_side = async move {
        let (mut msk, mut card_result) = (None, None);
        while let Ok(frame) = card_end.recv().await {
            let answer = match frame {
                Frame::Payment(PaymentFrame::Details(_)) => {
                    card_end.send(Frame::Payment(PaymentFrame::Consent(true))).await.unwrap();
                    Some(Frame::Start)
                }
                Frame::Eap(eap) => match peer.handle(&eap) {
                    PeerEvent::Send(r) => Some(Frame::Eap(r)),
                    PeerEvent::Success { keys, result } => {
                        msk = Some(keys.msk);
                        card_result = result;
                        None
                    }
                    PeerEvent::Failure(_) => None,
                    PeerEvent::Ignore(why) => panic!("the card ignored a packet: {why}"),
                },
                _ => None,
            };
            if let Some(answer) = answer {
                card_end.send(answer).await.unwrap();
            }
        }
        (msk, card_result)
    };
    let mut client = RadiusClient::new(server.auth, server.secret.as_bytes(), Duration::from_secs(2), 2).await.unwrap();
    let request = asserted.map_or(Request::AuthOnly, Request::Payment);
    let terminal_side = async {
        let finished = payment::run(&mut terminal_end, &mut client, &TerminalSettings::default(), request).await;
        drop(terminal_end);
        finished.expect("the relay reaches a verdict")
    };
    let ((msk, card_result), finished) = tokio::join!(card_side, terminal_side);
    let Some(FinalReply::Radius { packet: reply, authenticator: request_authenticator }) = finished.reply else {
        panic!("no final RADIUS answer");
    };
    let recv_key = reply
        .vendor_attribute(microsoft::VENDOR_ID, microsoft::MS_MPPE_RECV_KEY)
        .unwrap()
        .map(|v| decrypt_mppe_key(v, server.secret.as_bytes(), &request_authenticator).unwrap());
    Paid { reply, recv_key, msk, card_result }
}

fn vendor_u32(reply: &Packet, vendor_type: u8) -> Option<u32> {
    reply.vendor_attribute(eapay::VENDOR_ID, vendor_type).unwrap().map(|v| u32::from_be_bytes(v.try_into().unwrap()))
}

fn vendor_str(reply: &Packet, vendor_type: u8) -> Option<String> {
    reply.vendor_attribute(eapay::VENDOR_ID, vendor_type).unwrap().map(|v| String::from_utf8(v.to_vec()).unwrap())
}

#[tokio::test]
async fn a_card_pays_through_the_terminal() {
    let server = Server::start_default();
    for method in [Method::Aka, Method::AkaPrime] {
        let issued = server.card_with(method, &["--confirmation", "required"]);
        let card = CardFile::load(&issued.json).unwrap();
        let payment = details("relay", 4200);
        let paid = pay(&server, &card, Some(&payment), Some(&payment)).await;
        assert_eq!(paid.reply.code, Code::AccessAccept, "{method:?}: {:?}\n{}", paid.reply, server.stderr());
        let msk = paid.msk.expect("the card accepted the server's EAP-Success");
        // Card and server derived the same MSK; the terminal got its half.
        assert_eq!(paid.recv_key.as_deref(), Some(&msk[..32]));
        assert_eq!(vendor_str(&paid.reply, eapay::AUTH_METHOD).as_deref(), Some(method.arg()));
        assert_eq!(vendor_u32(&paid.reply, eapay::CARD_CONFIRMATION), Some(CardConfirmation::Confirmed.value()));
        let code = vendor_str(&paid.reply, eapay::APPROVAL_CODE).expect("Eapay-Approval-Code");
        assert!(is_approval_code(&code), "{code:?}");
        // The card was told the same approval, out of the terminal's reach.
        let told = PaymentResult::decode(&paid.card_result.expect("a protected result for the card")).unwrap();
        assert_eq!(
            told,
            PaymentResult {
                transaction_id: payment.transaction_id.clone(),
                outcome: PaymentOutcome::Approved { approval_code: code, approved_amount: payment.amount },
            }
        );
    }
}

#[tokio::test]
async fn a_card_with_the_wrong_key_is_declined_63() {
    let server = Server::start_default();
    let issued = server.card(Method::Aka);
    let mut card = CardFile::load(&issued.json).unwrap();
    if let Some(aka) = card.aka.as_mut() {
        aka.k = "00".repeat(16);
    }
    let payment = details("relay-k", 4200);
    let paid = pay(&server, &card, Some(&payment), None).await;
    assert_eq!(paid.reply.code, Code::AccessReject);
    assert_eq!(vendor_u32(&paid.reply, eapay::DECLINE_CODE), Some(DeclineCode::SecurityViolation.value()));
    assert!(paid.msk.is_none() && paid.recv_key.is_none());
}

/// The terminal shows the card 10.00 and asks the server for 100.00: the
/// card's confirmation exposes it.
#[tokio::test]
async fn a_terminal_changing_the_amount_is_declined_59() {
    let server = Server::start_default();
    let issued = server.card_with(Method::AkaPrime, &["--confirmation", "required"]);
    let card = CardFile::load(&issued.json).unwrap();
    let shown = details("relay-tamper", 1000);
    let asserted = PaymentDetails { amount: 10_000, ..shown.clone() };
    let paid = pay(&server, &card, Some(&asserted), Some(&shown)).await;
    assert_eq!(paid.reply.code, Code::AccessReject, "{:?}", paid.reply);
    assert_eq!(vendor_u32(&paid.reply, eapay::DECLINE_CODE), Some(DeclineCode::SuspectedFraud.value()));
    assert_eq!(vendor_u32(&paid.reply, eapay::CARD_CONFIRMATION), Some(CardConfirmation::Mismatch.value()));
    assert!(paid.msk.is_none() && paid.recv_key.is_none());
}

/// Without payment attributes the terminal learns nothing: declined 12, no keys.
#[tokio::test]
async fn authentication_only_is_declined_12() {
    let server = Server::start_default();
    let issued = server.card(Method::Aka);
    let card = CardFile::load(&issued.json).unwrap();
    let paid = pay(&server, &card, None, None).await;
    assert_eq!(paid.reply.code, Code::AccessReject, "{:?}", paid.reply);
    assert_eq!(vendor_u32(&paid.reply, eapay::DECLINE_CODE), Some(DeclineCode::InvalidTransaction.value()));
    assert!(paid.recv_key.is_none());
}
