//! Access-Requests as a RADIUS proxy in front of eapay-server may alter them
//! (issue 14), through whole payments with the real card (e-card's peer):
//!
//! - Message-Authenticator stripped: dropped and counted
//!   (`dropped_missing_message_authenticator`); the next retransmission,
//!   which carries it, continues the conversation;
//! - attributes reordered, the Message-Authenticator recomputed where it now
//!   sits: accepted (RFC 2865 §5: the order of attributes of different types
//!   is not significant; RFC 3579 §3.2 puts no place on the
//!   Message-Authenticator);
//! - Proxy-State added (one, two) with the Message-Authenticator recomputed:
//!   accepted, and every answer echoes them unchanged and in order
//!   (RFC 2865 §5.33); added without recomputing it (now wrong) or with it
//!   removed: dropped and counted (`dropped_bad_authenticator`,
//!   `dropped_missing_message_authenticator`);
//! - EAP-Message split into other sizes than the terminal's 253-octet pieces
//!   (RFC 3579 §3.1 lets any split through, consecutive and in order): the
//!   server reassembles it; EAP-TLS messages are long enough to need several.
//!
//! The proxy keeps the terminal's identifier and Request Authenticator, so
//! a retransmission is recognised as one and the MS-MPPE keys decrypt with
//! the terminal's authenticator. A datagram the server must drop is sent
//! first and waited on for [`NO_REPLY_WAIT`]; the one it must answer comes
//! after it in the same round. Counters are read from the `stopped` line the
//! server logs on SIGTERM and compared exactly with what was sent.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use aaa_proto::dictionary::rfc;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::{encode_request, Attribute, Code, Packet, MAX_ATTR_VALUE_LEN, MAX_PACKET_LEN};
use eap_methods::peer::PeerEvent;
use eapay_tests::{
    details, eap_access_request_packet, hex_dump, last_lines, payment_attributes, recv_within, udp_socket,
    verify_reply, Card, CardSaw, Method, PaymentReply, PaymentRun, Server, NO_REPLY_WAIT, REPLY_TIMEOUT,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// The proxy's relay
// ---------------------------------------------------------------------------

/// What the proxy makes of one Access-Request of the terminal.
struct Forward {
    /// Sent first, in order: the server must drop each one.
    dropped: Vec<Vec<u8>>,
    /// Sent last: the server must answer it.
    answered: Vec<u8>,
    /// The Proxy-State values the answer must carry, exactly and in order.
    proxy_state: Vec<Vec<u8>>,
}

impl Forward {
    /// The proxy passes `datagram` on as it is.
    fn answered(datagram: Vec<u8>) -> Forward {
        Forward { dropped: Vec::new(), answered: datagram, proxy_state: Vec::new() }
    }
}

/// The proxy: `(round, the terminal's packet with its Message-Authenticator
/// placeholder, the terminal's signed datagram) -> what goes to the server`.
type Proxy<'a> = dyn FnMut(usize, &Packet, &[u8]) -> Forward + 'a;

/// One payment relayed through a proxy.
struct Proxied {
    run: PaymentRun,
    /// Datagrams sent to the server, dropped ones included.
    sent: u64,
    /// Datagrams the server dropped (as it had to).
    dropped: u64,
    /// The length of each EAP packet the card sent, by round.
    eap_lengths: Vec<usize>,
    /// The EAP-Message attribute sizes of each forwarded (answered) request.
    eap_splits: Vec<Vec<usize>>,
}

impl Proxied {
    fn rounds(&self) -> u64 {
        self.run.rounds as u64
    }
}

/// The answer with `identifier` from `server` within `timeout`, as received.
/// Answers to earlier rounds (other identifiers) are skipped.
fn answer_with_id(socket: &UdpSocket, server: &Server, identifier: u8, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (reply, from) = recv_within(socket, left)?;
        if from == server.auth && reply.get(1) == Some(&identifier) {
            return Some(reply);
        }
    }
}

/// Relays a payment of `d` by `card` (which confirms it) through `proxy`:
/// the terminal builds each Access-Request as `relay_payment` in the harness
/// does (payment attributes in every round), the proxy turns it into
/// datagrams, and each answer is checked (signature, Message-Authenticator
/// first, the Proxy-State the proxy expects) before the proxy would strip
/// its Proxy-State and the card gets the EAP packet.
fn relay_through(server: &Server, card: &Card, d: &PaymentDetails, proxy: &mut Proxy<'_>) -> Proxied {
    let file = card.file();
    let mut peer = e_card::peer::session(&file, Some(d.canonical())).expect("the card file drives a peer");
    let socket = udp_socket("127.0.0.1:0");
    let attributes = payment_attributes(d);
    let mut eap = peer.identity_response(0);
    let mut state: Option<Vec<u8>> = None;
    let mut identifier: u8 = rand::random();
    let (mut sent, mut dropped) = (0, 0);
    let (mut eap_lengths, mut eap_splits) = (Vec::new(), Vec::new());
    for round in 0..64 {
        let mut p = eap_access_request_packet(identifier, &file.identity, &eap, state.as_deref());
        p.attributes.extend(attributes.iter().cloned());
        let wire = encode_request(&p, server.secret.as_bytes()).expect("encode Access-Request");
        eap_lengths.push(eap.len());
        let forward = proxy(round, &p, &wire);
        for bad in &forward.dropped {
            assert_eq!(&bad[..2], &wire[..2], "round {round}: the proxy keeps code and identifier");
            server.assert_running();
            socket.send_to(bad, server.auth).expect("send_to");
            sent += 1;
            if let Some(reply) = answer_with_id(&socket, server, identifier, NO_REPLY_WAIT) {
                panic!(
                    "round {round}: answered, must be dropped: {}\n  answer: {}\n--- server stderr ---\n{}",
                    hex_dump(bad),
                    hex_dump(&reply),
                    last_lines(&server.stderr(), 30)
                );
            }
            dropped += 1;
        }
        let forwarded = Packet::decode(&forward.answered).expect("the proxy sends a well-formed packet");
        assert_eq!(
            (forwarded.code, forwarded.identifier, forwarded.authenticator),
            (p.code, p.identifier, p.authenticator),
            "round {round}: the proxy keeps code, identifier and Request Authenticator"
        );
        assert_eq!(forwarded.eap_message(), Some(eap.clone()), "round {round}: the proxy keeps the EAP packet");
        eap_splits.push(forwarded.get_all(rfc::EAP_MESSAGE).map(<[u8]>::len).collect());
        // Sent again once, byte for byte, if no answer comes (loaded CI).
        let mut datagram = None;
        for _ in 0..2 {
            socket.send_to(&forward.answered, server.auth).expect("send_to");
            sent += 1;
            datagram = answer_with_id(&socket, server, identifier, REPLY_TIMEOUT);
            if datagram.is_some() {
                break;
            }
        }
        let Some(datagram) = datagram else {
            panic!(
                "round {round}: no answer to {}\n--- server stderr ---\n{}",
                hex_dump(&forward.answered),
                last_lines(&server.stderr(), 40)
            );
        };
        let reply = verify_reply(&datagram, Code::AccessRequest, &p.authenticator, &server.secret);
        let echoed: Vec<Vec<u8>> = reply.get_all(rfc::PROXY_STATE).map(<[u8]>::to_vec).collect();
        assert_eq!(
            echoed, forward.proxy_state,
            "round {round}: the {:?} must echo the request's Proxy-State attributes, unchanged and in order",
            reply.code
        );
        match reply.code {
            Code::AccessChallenge => {
                let challenge =
                    reply.eap_message().unwrap_or_else(|| panic!("round {round}: Access-Challenge without EAP"));
                state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                eap = match peer.handle(&challenge) {
                    PeerEvent::Send(response) => response,
                    other => panic!(
                        "round {round}: the card has no answer to {} ({other:?})\n--- server stderr ---\n{}",
                        hex_dump(&challenge),
                        last_lines(&server.stderr(), 30)
                    ),
                };
            }
            Code::AccessAccept | Code::AccessReject => {
                let card_saw = CardSaw::of_final(&mut peer, &reply);
                let run = PaymentRun {
                    answer: PaymentReply::of(&reply),
                    reply,
                    reply_datagram: datagram,
                    final_request: forward.answered,
                    final_authenticator: p.authenticator,
                    socket,
                    server_auth: server.auth,
                    secret: server.secret.clone(),
                    card: card_saw,
                    card_id: card.card_id.clone(),
                    rounds: round + 1,
                    server_log: server.stderr(),
                };
                return Proxied { run, sent, dropped, eap_lengths, eap_splits };
            }
            other => panic!("round {round}: unexpected {other:?}: {reply:?}"),
        }
        identifier = identifier.wrapping_add(1);
    }
    panic!("no final answer after 64 rounds\n--- server stderr ---\n{}", last_lines(&server.stderr(), 40));
}

// ---------------------------------------------------------------------------
// What a proxy does to a packet
// ---------------------------------------------------------------------------

/// Encodes `p` as a proxy that knows the secret must: the
/// Message-Authenticator recomputed over the packet as it now is, wherever
/// it sits.
fn resigned(p: &Packet, secret: &str) -> Vec<u8> {
    assert_eq!(p.get_all(rfc::MESSAGE_AUTHENTICATOR).count(), 1, "one Message-Authenticator to recompute");
    let wire = encode_request(p, secret.as_bytes()).expect("encode the proxied Access-Request");
    assert!(wire.len() <= MAX_PACKET_LEN, "{} octets", wire.len());
    wire
}

/// `p` without its Message-Authenticator.
fn stripped(p: &Packet) -> Packet {
    let mut q = p.clone();
    q.attributes.retain(|a| a.kind != rfc::MESSAGE_AUTHENTICATOR);
    assert!(!q.has_message_authenticator());
    q
}

/// `p` with Proxy-State attributes appended, in order, as each proxy on the
/// way appends its own (RFC 2865 §5.33).
fn with_proxy_state(p: &Packet, values: &[Vec<u8>]) -> Packet {
    let mut q = p.clone();
    for v in values {
        q.push(rfc::PROXY_STATE, v).expect("Proxy-State value of 1..=253 octets");
    }
    q
}

/// `p` with its attributes sorted (stably) by `rank` of their type: the
/// order of attributes of one type (EAP-Message pieces, Vendor-Specific)
/// is kept, as RFC 2865 §5 requires; the rest moves.
fn reordered(p: &Packet, rank: &dyn Fn(u8) -> u8) -> Packet {
    let mut q = p.clone();
    q.attributes.sort_by_key(|a| rank(a.kind));
    q
}

/// `p` with its EAP packet carried in EAP-Message attributes of the sizes
/// `sizes(n)` returns for the n-th piece (capped by what is left, at most
/// 253), consecutive and where the first EAP-Message was.
fn resplit(p: &Packet, sizes: &mut dyn FnMut(usize) -> usize) -> Packet {
    let eap = p.eap_message().expect("an EAP-Message");
    let at = p.attributes.iter().position(|a| a.kind == rfc::EAP_MESSAGE).expect("an EAP-Message");
    let mut pieces = Vec::new();
    let mut rest = eap.as_slice();
    while !rest.is_empty() {
        let size = sizes(pieces.len()).clamp(1, MAX_ATTR_VALUE_LEN).min(rest.len());
        let (piece, tail) = rest.split_at(size);
        pieces.push(Attribute { kind: rfc::EAP_MESSAGE, value: piece.to_vec() });
        rest = tail;
    }
    let mut q = p.clone();
    q.attributes.retain(|a| a.kind != rfc::EAP_MESSAGE);
    q.attributes.splice(at..at, pieces);
    assert_eq!(q.eap_message(), Some(eap), "the split keeps the EAP packet");
    q
}

/// The types of the attributes, in packet order.
fn kinds(p: &Packet) -> Vec<u8> {
    p.attributes.iter().map(|a| a.kind).collect()
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// The payment was approved in full: Access-Accept, EAP-Success the card
/// accepted, keys equal to its MSK, the receipt signs this payment, and the
/// ledger shows it approved and confirmed.
fn assert_paid(server: &Server, proxied: &Proxied, d: &PaymentDetails, what: &str) {
    if let Err(e) = proxied.run.check_approved(server, d) {
        panic!("{what}: {e}");
    }
    let shown = server.txn_show(&d.merchant_id, &d.transaction_id).to_lowercase();
    assert!(eapay_tests::has_token(&shown, "approved"), "{what}: the ledger says\n{shown}");
}

/// Stops the server and returns the counters of its `stopped` line.
fn stop_and_count(server: &Server) -> Counters {
    let stderr = server.terminate();
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("stopped") && l.contains("counters="))
        .unwrap_or_else(|| panic!("no `stopped counters=...` line:\n{}", last_lines(&stderr, 20)))
        .to_owned();
    Counters { values: eapay_tests::stopped_counters(&stderr), line }
}

/// The counters of a stopped server (counters at 0 are not logged).
struct Counters {
    values: Vec<(String, u64)>,
    line: String,
}

impl Counters {
    fn get(&self, name: &str) -> u64 {
        self.values.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
    }

    /// Each `(name, value)` is exactly so.
    fn assert(&self, want: &[(&str, u64)], what: &str) {
        let got: Vec<(&str, u64)> = want.iter().map(|(k, _)| (*k, self.get(k))).collect();
        assert_eq!(got, want, "{what}: counters in\n{}", self.line);
    }
}

// ---------------------------------------------------------------------------
// 1. Message-Authenticator stripped
// ---------------------------------------------------------------------------

/// A proxy that re-encodes every Access-Request without its
/// Message-Authenticator (same identifier and Request Authenticator): each
/// is dropped silently and counted as missing; the terminal's
/// retransmission, which still carries it, is answered as a new request
/// (nothing was cached for the dropped one) and the payment is approved.
#[test]
fn stripped_message_authenticator_is_dropped_and_counted_and_the_retransmission_completes() {
    let server = Server::start_default();
    let card = server.card(Method::Aka);
    let d = details("proxy-strip", 1250);
    let secret = server.secret.clone();
    let proxied = relay_through(&server, &card, &d, &mut |_, p, wire| {
        let bare = stripped(p).encode_unsigned().expect("encode");
        assert_eq!(&bare[4..20], &wire[4..20], "the same Request Authenticator");
        // What the retransmission carries is exactly the terminal's request.
        assert_eq!(resigned(p, &secret), wire);
        Forward { dropped: vec![bare], ..Forward::answered(wire.to_vec()) }
    });
    assert_paid(&server, &proxied, &d, "after every round was first sent without Message-Authenticator");
    assert_eq!(proxied.dropped, proxied.rounds(), "one stripped copy per round");
    assert!(proxied.rounds() >= 3, "a whole AKA conversation: {} rounds", proxied.rounds());

    let counters = stop_and_count(&server);
    counters.assert(
        &[
            ("requests", proxied.sent),
            ("dropped_missing_message_authenticator", proxied.dropped),
            ("dropped_bad_authenticator", 0),
            ("dropped_malformed", 0),
            ("duplicates_resent", 0),
            ("duplicates_dropped", 0),
            ("challenges", proxied.rounds() - 1),
            ("accepts", 1),
        ],
        "stripped Message-Authenticator",
    );
}

// ---------------------------------------------------------------------------
// 2. Attributes reordered
// ---------------------------------------------------------------------------

/// Message-Authenticator last, everything else as the terminal had it.
fn ma_last(kind: u8) -> u8 {
    u8::from(kind == rfc::MESSAGE_AUTHENTICATOR)
}

/// Vendor-Specific first, then EAP-Message, State, the Message-Authenticator
/// in the middle, User-Name after EAP-Message, NAS-Port-Type last.
fn vendor_first(kind: u8) -> u8 {
    match kind {
        rfc::VENDOR_SPECIFIC => 0,
        rfc::EAP_MESSAGE => 1,
        rfc::STATE => 2,
        rfc::MESSAGE_AUTHENTICATOR => 3,
        rfc::USER_NAME => 4,
        _ => 5,
    }
}

/// The terminal's order of types reversed.
fn reversed(kind: u8) -> u8 {
    match kind {
        rfc::MESSAGE_AUTHENTICATOR => 5,
        rfc::USER_NAME => 4,
        rfc::NAS_PORT_TYPE => 3,
        rfc::EAP_MESSAGE => 2,
        rfc::STATE => 1,
        _ => 0,
    }
}

/// How a proxy ranks attribute types when it reorders them.
type Rank = fn(u8) -> u8;

const ORDERS: [(&str, Rank); 3] =
    [("Message-Authenticator last", ma_last), ("vendor attributes first", vendor_first), ("reversed", reversed)];

/// A proxy that reorders the attributes (keeping the order within each
/// type) and recomputes the Message-Authenticator: every order is accepted
/// and the payment approved, with one order throughout a conversation and
/// with the order changing every round; with AKA and with TLS (several
/// EAP-Message pieces moved as one block).
#[test]
fn reordered_attributes_are_accepted_and_the_payment_approved() {
    let server = Server::start_default();
    let aka = server.card(Method::Aka);
    let tls = server.card(Method::Tls);
    let secret = server.secret.clone();
    let mut payments = 0;
    let mut plans: Vec<(String, &Card, Vec<usize>)> =
        ORDERS.iter().enumerate().map(|(i, (name, _))| (format!("AKA, {name}"), &aka, vec![i])).collect();
    plans.push(("AKA, a new order every round".into(), &aka, vec![0, 1, 2]));
    plans.push(("TLS, a new order every round".into(), &tls, vec![2, 0, 1]));
    for (what, card, rotation) in plans {
        let d = details("proxy-order", 1000 + payments);
        let proxied = relay_through(&server, card, &d, &mut |round, p, _| {
            let (name, rank) = ORDERS[rotation[round % rotation.len()]];
            let q = reordered(p, &rank);
            assert_ne!(kinds(&q), kinds(p), "round {round}: {name} moves something");
            assert_eq!(
                q.get_all(rfc::EAP_MESSAGE).collect::<Vec<_>>(),
                p.get_all(rfc::EAP_MESSAGE).collect::<Vec<_>>()
            );
            Forward::answered(resigned(&q, &secret))
        });
        assert_paid(&server, &proxied, &d, &what);
        if card.method == Method::Tls {
            assert!(
                proxied.eap_splits.iter().any(|s| s.len() >= 2),
                "{what}: no request carried EAP in several attributes: {:?}",
                proxied.eap_splits
            );
        }
        payments += 1;
    }
    let counters = stop_and_count(&server);
    counters.assert(
        &[
            ("accepts", payments),
            ("rejects", 0),
            ("dropped_missing_message_authenticator", 0),
            ("dropped_bad_authenticator", 0),
            ("dropped_malformed", 0),
        ],
        "reordered attributes",
    );
}

// ---------------------------------------------------------------------------
// 3. Proxy-State
// ---------------------------------------------------------------------------

/// The Proxy-State values of `proxies` proxies in a chain for `round`: the
/// first short text naming the round (a proxy's own request key), the
/// second binary with zero octets and of the largest size (253).
fn proxy_states(proxies: usize, round: usize) -> Vec<Vec<u8>> {
    let first = format!("inner-proxy/round-{round}").into_bytes();
    let second: Vec<u8> = (0..MAX_ATTR_VALUE_LEN).map(|i| (i * 31 + round) as u8).collect();
    assert!(second.contains(&0));
    [first, second].into_iter().take(proxies).collect()
}

/// A proxy (or a chain of two) appends Proxy-State and recomputes the
/// Message-Authenticator: accepted, and every Access-Challenge and the
/// Access-Accept echo this round's Proxy-State attributes byte for byte and
/// in order (checked in `relay_through`). Appended without recomputing the
/// Message-Authenticator (now wrong), or with the Message-Authenticator
/// removed instead: dropped, counted as a bad authenticator and as a
/// missing one; the correctly re-signed copy that follows is answered.
#[test]
fn proxy_state_is_echoed_in_order_and_unsigned_additions_are_dropped_and_counted() {
    let server = Server::start_default();
    let aka = server.card(Method::Aka);
    let tls = server.card(Method::Tls);
    let secret = server.secret.clone();
    let mut accepts = 0;

    for (method_card, proxies) in [(&aka, 1), (&aka, 2), (&tls, 2)] {
        let d = details("proxy-state", 700 + accepts);
        let proxied = relay_through(&server, method_card, &d, &mut |round, p, _| {
            let values = proxy_states(proxies, round);
            Forward {
                dropped: Vec::new(),
                answered: resigned(&with_proxy_state(p, &values), &secret),
                proxy_state: values,
            }
        });
        assert_paid(&server, &proxied, &d, &format!("{:?} behind {proxies} proxies", method_card.method));
        assert_eq!(proxied.dropped, 0);
        accepts += 1;
    }

    // Proxies that add Proxy-State but do not sign.
    let d = details("proxy-state-unsigned", 900);
    let proxied = relay_through(&server, &aka, &d, &mut |round, p, wire| {
        let values = proxy_states(2, round);
        // The terminal's datagram with Proxy-State appended: the
        // Message-Authenticator is the terminal's, over other bytes.
        let received = Packet::decode(wire).expect("the terminal's datagram");
        let stale = with_proxy_state(&received, &values).encode_unsigned().expect("encode");
        let absent = with_proxy_state(&stripped(p), &values).encode_unsigned().expect("encode");
        Forward {
            dropped: vec![stale, absent],
            answered: resigned(&with_proxy_state(p, &values), &secret),
            proxy_state: values,
        }
    });
    assert_paid(&server, &proxied, &d, "after unsigned Proxy-State copies were dropped");
    assert_eq!(proxied.dropped, 2 * proxied.rounds());
    accepts += 1;

    let counters = stop_and_count(&server);
    counters.assert(
        &[
            ("accepts", accepts),
            ("dropped_bad_authenticator", proxied.rounds()),
            ("dropped_missing_message_authenticator", proxied.rounds()),
            ("dropped_malformed", 0),
            ("duplicates_resent", 0),
        ],
        "Proxy-State",
    );
}

// ---------------------------------------------------------------------------
// 4. EAP-Message split differently
// ---------------------------------------------------------------------------

/// A proxy that re-splits the EAP packet into EAP-Message attributes of
/// other sizes and recomputes the Message-Authenticator: the server
/// reassembles them in order and the payment is approved. TLS (EAP packets
/// longer than 253 octets): 253, then 10, then the rest in 253-octet
/// pieces; pieces of random sizes 1..=253 (seeded). AKA (shorter
/// packets): three pieces (1, 7, the rest); one octet per attribute.
#[test]
fn eap_message_split_differently_is_reassembled_and_the_payment_approved() {
    let server = Server::start_default();
    let aka = server.card(Method::Aka);
    let tls = server.card(Method::Tls);
    let secret = server.secret.clone();
    let mut rng = StdRng::seed_from_u64(0x3579_0014);

    type Sizes = Box<dyn FnMut(usize) -> usize>;
    let plans: Vec<(&str, &Card, Sizes)> = vec![
        ("TLS: 253, 10, the rest", &tls, Box::new(|n| [253, 10, 253][n.min(2)])),
        ("TLS: random sizes", &tls, Box::new(move |_| rng.gen_range(1..=MAX_ATTR_VALUE_LEN))),
        ("AKA: 1, 7, the rest", &aka, Box::new(|n| [1, 7, 253][n.min(2)])),
        ("AKA: one octet each", &aka, Box::new(|_| 1)),
    ];
    let mut accepts = 0;
    for (what, method_card, mut sizes) in plans {
        let d = details("proxy-split", 500 + accepts);
        let proxied = relay_through(&server, method_card, &d, &mut |_, p, _| {
            Forward::answered(resigned(&resplit(p, &mut *sizes), &secret))
        });
        assert_paid(&server, &proxied, &d, what);
        // The splits were what the plan says, so the case tested something.
        for (len, split) in proxied.eap_lengths.iter().zip(&proxied.eap_splits) {
            assert_eq!(split.iter().sum::<usize>(), *len, "{what}");
            assert!(split.iter().all(|&n| (1..=MAX_ATTR_VALUE_LEN).contains(&n)), "{what}: {split:?}");
        }
        match what {
            "TLS: 253, 10, the rest" => assert!(
                proxied.eap_splits.iter().any(|s| s.len() >= 3 && s[..2] == [253, 10]),
                "{what}: no EAP packet over 263 octets: {:?}",
                proxied.eap_lengths
            ),
            "TLS: random sizes" => assert!(
                proxied.eap_lengths.iter().any(|&n| n > 2 * MAX_ATTR_VALUE_LEN),
                "{what}: no long EAP packet: {:?}",
                proxied.eap_lengths
            ),
            "AKA: 1, 7, the rest" => {
                assert!(proxied.eap_splits.iter().all(|s| s.len() == 3 && s[..2] == [1, 7]), "{what}");
            }
            _ => assert!(proxied.eap_splits.iter().flatten().all(|&n| n == 1), "{what}"),
        }
        accepts += 1;
    }
    let counters = stop_and_count(&server);
    counters.assert(
        &[
            ("accepts", accepts),
            ("rejects", 0),
            ("dropped_malformed", 0),
            ("dropped_bad_authenticator", 0),
            ("eap_discarded", 0),
        ],
        "re-split EAP-Message",
    );
}
