//! Durability (DESIGN.md §8, issue 3 item 8): an answer leaves the server
//! only after its ledger change is committed. Each test gets an answer,
//! SIGKILLs the server at once (no shutdown code, nothing flushed), and
//! checks the change with the admin CLI and a restarted server.

use aaa_proto::dictionary::eapay::{DeclineCode, SettlementAction};
use aaa_proto::dictionary::rfc;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::{encode_request, Code, Packet};
use eap_methods::peer::{PeerEvent, PeerSession};
use eapay_tests::{
    details, eap_access_request_packet, has_token, payment_attributes, recv_within, udp_socket, verify_reply, Card,
    Method, PaymentReply, Server, DEFAULT_LIMIT, MERCHANT, NO_REPLY_WAIT, REPLY_TIMEOUT,
};

/// Access-Accept, SIGKILL: `txn show` has the approval with its code; the
/// restarted server answers the identical request with the original
/// approval, and has charged the card once.
#[test]
fn approval_survives_sigkill_right_after_the_access_accept() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let d = details("kill", 300_000);
    let run = server.pay(&card, &d);
    server.kill9();
    let code = run.assert_approved(&server, &d);

    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(
        text.contains(&code) && has_token(&text, "approved"),
        "after SIGKILL, txn show lacks approval {code}:\n{text}"
    );

    server.restart();
    let again = server.pay(&card, &d);
    assert_eq!(again.assert_approved(&server, &d), code, "after restart, the repeat got another code");
    // Charged once: exactly the rest is available.
    let rest = details("rest", DEFAULT_LIMIT - 300_000);
    server.pay(&card, &rest).assert_approved(&server, &rest);
    let one = details("one", 1);
    server.pay(&card, &one).assert_declined(DeclineCode::InsufficientFunds, Some(&one.transaction_id));
}

/// Several approvals in flight at once (group commit), SIGKILL after the
/// last answer: every approved transaction is in the ledger.
#[test]
fn concurrent_approvals_survive_sigkill() {
    let server = Server::start_default();
    let cards: Vec<_> = (0..4).map(|_| server.card_with(Method::Aka, &[])).collect();
    let payments: Vec<_> = cards.iter().map(|_| details("group", 1000)).collect();
    let codes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cards
            .iter()
            .zip(&payments)
            .map(|(card, d)| {
                let server = &server;
                s.spawn(move || server.pay(card, d))
            })
            .collect();
        let runs: Vec<_> = handles.into_iter().map(|h| h.join().expect("payment thread")).collect();
        server.kill9();
        runs.iter().zip(&payments).map(|(run, d)| run.assert_approved(&server, d)).collect()
    });
    for (d, code) in payments.iter().zip(&codes) {
        let text = server.txn_show(MERCHANT, &d.transaction_id);
        assert!(text.contains(code.as_str()), "after SIGKILL, {} lacks approval {code}:\n{text}", d.transaction_id);
    }
}

/// A decline is recorded before the Access-Reject too.
#[test]
fn decline_survives_sigkill() {
    let server = Server::start_default();
    let card = server.card_with(Method::Aka, &["--limit", "1000"]);
    let d = details("kill-decline", 1001);
    let run = server.pay(&card, &d);
    server.kill9();
    run.assert_declined(DeclineCode::ExceedsLimit, Some(&d.transaction_id));
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(has_token(&text, "declined") && has_token(&text, "61"), "after SIGKILL:\n{text}");
}

/// The Accounting-Response to a reversal is sent after the reversal is
/// durable: SIGKILL, then the ledger says reversed and the restarted
/// server has the amount back.
#[test]
fn reversal_survives_sigkill_right_after_the_accounting_response() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let d = details("kill-rev", DEFAULT_LIMIT);
    server.pay(&card, &d).assert_approved(&server, &d);
    let settled = server.settle_demo(SettlementAction::Reverse, &d.transaction_id);
    server.kill9();
    settled.assert_done("reverse");
    let text = server.txn_show(MERCHANT, &d.transaction_id);
    assert!(has_token(&text, "reversed"), "after SIGKILL, txn show does not say reversed:\n{text}");

    server.restart();
    let all = details("after", DEFAULT_LIMIT);
    server.pay(&card, &all).assert_approved(&server, &all);
}

/// A tombstone (reversal of an unknown transaction) is durable too: after
/// SIGKILL and restart, the late original is still declined 12.
#[test]
fn tombstone_survives_sigkill() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::Aka, &[]);
    let late = details("kill-tomb", 1000);
    let settled = server.settle_demo(SettlementAction::Reverse, &late.transaction_id);
    server.kill9();
    settled.assert_done("reverse of an unknown transaction");
    server.restart();
    server.pay(&card, &late).assert_declined(DeclineCode::InvalidTransaction, Some(&late.transaction_id));
}

/// `card block` takes effect on a running server and survives a restart.
#[test]
fn blocked_card_stays_blocked_after_restart() {
    let mut server = Server::start_default();
    let card = server.card_with(Method::AkaPrime, &[]);
    server.block(&card);
    server.kill9();
    server.restart();
    let d = details("blocked", 1000);
    server.pay(&card, &d).assert_declined(DeclineCode::RestrictedCard, Some(&d.transaction_id));
}

/// A terminal's side of one payment over raw RADIUS, one round at a time,
/// so a test can kill the server between two rounds.
struct Terminal {
    peer: PeerSession,
    socket: std::net::UdpSocket,
    details: PaymentDetails,
    identity: String,
    eap: Vec<u8>,
    state: Option<Vec<u8>>,
    identifier: u8,
}

impl Terminal {
    fn new(card: &Card, details: PaymentDetails) -> Terminal {
        let file = card.file();
        let mut peer = e_card::peer::session(&file, Some(details.canonical())).expect("the card drives a peer");
        let eap = peer.identity_response(0);
        let socket = udp_socket("127.0.0.1:0");
        Terminal { peer, socket, details, identity: file.identity, eap, state: None, identifier: rand::random() }
    }

    /// Sends the card's last EAP packet with the payment attributes; the
    /// verified answer, or None if none comes within `wait`. An
    /// Access-Challenge is handed to the card, whose answer is next.
    fn round(&mut self, server: &Server, wait: std::time::Duration) -> Option<Packet> {
        self.identifier = self.identifier.wrapping_add(1);
        let mut p = eap_access_request_packet(self.identifier, &self.identity, &self.eap, self.state.as_deref());
        p.attributes.extend(payment_attributes(&self.details));
        let wire = encode_request(&p, server.secret.as_bytes()).expect("encode");
        self.socket.send_to(&wire, server.auth).expect("send_to");
        let deadline = std::time::Instant::now() + wait;
        let datagram = loop {
            let (datagram, _) =
                recv_within(&self.socket, deadline.saturating_duration_since(std::time::Instant::now()))?;
            if datagram.get(1) == Some(&self.identifier) {
                break datagram;
            }
        };
        let reply = verify_reply(&datagram, Code::AccessRequest, &p.authenticator, &server.secret);
        if reply.code == Code::AccessChallenge {
            self.state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
            let challenge = reply.eap_message().expect("EAP in the Access-Challenge");
            match self.peer.handle(&challenge) {
                PeerEvent::Send(response) => self.eap = response,
                other => panic!("the card has no answer to the challenge: {other:?}"),
            }
        }
        Some(reply)
    }
}

/// Issue 16 §2, found by tests/tests/faults_under_load.rs: the server is
/// SIGKILLed after it approved a payment and sent the AKA result
/// notification, before the card's answer to it arrived. The restarted
/// server no longer has the conversation. It used to decline the terminal's
/// next request 12 ("unknown or expired State"), so the terminal showed
/// DECLINED and reversed nothing, while the ledger kept the approval and the
/// card's money stayed held. Now it does not answer: the terminal stays in
/// doubt and its timeout reversal releases the money. A payment the ledger
/// never approved is still declined 12.
#[test]
fn a_restart_that_loses_an_approved_conversation_leaves_the_terminal_in_doubt() {
    let mut server = Server::start_default();
    server.pin_ports();
    let card = server.card_with(Method::Aka, &[]);
    let d = details("lost-conversation", 4000);
    let mut terminal = Terminal::new(&card, d.clone());
    let txn = format!("{MERCHANT}:{}", d.transaction_id);
    // Rounds until the ledger holds the approval: the answer that reached
    // the terminal then is the challenge carrying the result to the card.
    let mut rounds = 0;
    while !server.try_admin(&["txn", "show", &txn]).stdout.contains("approved") {
        let reply = terminal.round(&server, REPLY_TIMEOUT).expect("an answer");
        assert_eq!(reply.code, Code::AccessChallenge, "round {rounds}: {:?}", PaymentReply::of(&reply));
        rounds += 1;
        assert!(rounds < 8, "no approval in the ledger after {rounds} rounds");
    }
    server.kill9();
    server.restart();
    if let Some(reply) = terminal.round(&server, NO_REPLY_WAIT) {
        panic!(
            "the restarted server answered a conversation it lost whose payment is approved: {:?} {:?}",
            reply.code,
            PaymentReply::of(&reply)
        );
    }
    assert!(has_token(&server.txn_show(MERCHANT, &d.transaction_id), "approved"));
    // The terminal's timeout reversal gives the money back.
    server.settle_demo(SettlementAction::Reverse, &d.transaction_id).assert_done("the terminal's reversal");
    assert_eq!(server.card_amounts(&card), (DEFAULT_LIMIT, DEFAULT_LIMIT));

    // Killed before the decision: nothing was approved, so the lost
    // conversation is declined 12 as before.
    let early = details("lost-before-decision", 4000);
    let mut terminal = Terminal::new(&card, early.clone());
    let reply = terminal.round(&server, REPLY_TIMEOUT).expect("the AKA challenge");
    assert_eq!(reply.code, Code::AccessChallenge);
    server.kill9();
    server.restart();
    let reply = terminal.round(&server, REPLY_TIMEOUT).expect("a decline");
    assert_eq!(reply.code, Code::AccessReject);
    assert_eq!(PaymentReply::of(&reply).decline_code, Some(DeclineCode::InvalidTransaction.value()));
    let shown = server.try_admin(&["txn", "show", &format!("{MERCHANT}:{}", early.transaction_id)]);
    assert!(!shown.success(), "nothing recorded: {}", shown.stdout);
}
