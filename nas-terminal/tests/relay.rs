//! The terminal relays a real card's EAP to a real eapay-server over UDP.

use std::time::Duration;

use aaa_proto::dictionary::{eapay, microsoft};
use aaa_proto::radius::{decrypt_mppe_key, Packet};
use e_card::card_file::CardFile;
use eap_methods::peer::PeerEvent;
use eapay_tests::{Method, Server};
use nas_terminal::client::RadiusClient;
use nas_terminal::relay::relay;

#[derive(Debug, thiserror::Error)]
#[error("card: {0}")]
struct CardError(String);

/// Relays one authentication of `card`; returns the server's verdict and
/// the MSK the card derived (if it accepted the server's Success).
async fn authenticate(server: &Server, card: &CardFile) -> (Packet, Option<Vec<u8>>, Option<[u8; 64]>) {
    let mut peer = e_card::peer::session(card, None).expect("card drives a peer");
    let first = peer.identity_response(0);
    let mut client = RadiusClient::new(server.auth, server.secret.as_bytes(), Duration::from_secs(2), 2).await.unwrap();
    let mut msk = None;
    let verdict = relay(&mut client, &card.identity, first, &[], |eap| match peer.handle(eap) {
        PeerEvent::Send(r) => Ok(Some(r)),
        PeerEvent::Success { keys, .. } => {
            msk = Some(keys.msk);
            Ok(None)
        }
        PeerEvent::Failure(_) => Ok(None),
        PeerEvent::Ignore(why) => Err(CardError(why.to_string())),
    })
    .await
    .expect("relay reaches a verdict");
    let recv_key = verdict
        .reply
        .vendor_attribute(microsoft::VENDOR_ID, microsoft::MS_MPPE_RECV_KEY)
        .unwrap()
        .map(|v| decrypt_mppe_key(v, server.secret.as_bytes(), &verdict.request_authenticator).unwrap());
    (verdict.reply, recv_key, msk)
}

#[tokio::test]
async fn a_card_authenticates_through_the_terminal() {
    let server = Server::start_default();
    for method in [Method::Aka, Method::AkaPrime] {
        let issued = server.card(method);
        let card = CardFile::load(&issued.json).unwrap();
        let (reply, recv_key, msk) = authenticate(&server, &card).await;
        assert_eq!(reply.code, aaa_proto::radius::Code::AccessAccept, "{method:?}: {}", server.stderr());
        let msk = msk.expect("the card accepted the server's EAP-Success");
        // Card and server derived the same MSK; the terminal got its half.
        assert_eq!(recv_key.as_deref(), Some(&msk[..32]));
        assert_eq!(
            reply.vendor_attribute(eapay::VENDOR_ID, eapay::AUTH_METHOD).unwrap(),
            Some(method.arg().as_bytes())
        );
    }
}

#[tokio::test]
async fn a_card_with_the_wrong_key_is_rejected() {
    let server = Server::start_default();
    let issued = server.card(Method::Aka);
    let mut card = CardFile::load(&issued.json).unwrap();
    if let Some(aka) = card.aka.as_mut() {
        aka.k = "00".repeat(16);
    }
    let (reply, recv_key, msk) = authenticate(&server, &card).await;
    assert_eq!(reply.code, aaa_proto::radius::Code::AccessReject);
    assert!(msk.is_none() && recv_key.is_none());
}
