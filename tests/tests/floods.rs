//! Floods on loopback (issue 16 §3), each bounded in count and time, with
//! real payments running through them: the server keeps approving, its
//! memory stays within a stated bound, and every dropped datagram is
//! counted by reason (read from `/metrics` while the flood runs).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use aaa_proto::radius::Code;
use eapay_tests::metrics::Scrape;
use eapay_tests::{details, eap_access_request, eap_identity_response, section, udp_socket, Method, Server, MERCHANT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Datagrams sent and not yet read by the server, at most: with datagrams
/// of up to 4 KiB this stays within the server socket's default receive
/// buffer (212,992 bytes of kernel accounting), so the kernel never drops
/// what the counters must see, however slow the server runs.
const WINDOW: u64 = 40;

/// Scrapes until `done` says the server has caught up; the last scrape.
/// Panics if nothing moves for 20 s (a lost datagram would otherwise hang
/// the test).
fn wait_for(server: &Server, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = server.scrape();
    let mut since = Instant::now();
    loop {
        if done(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(5));
        let scrape = server.scrape();
        if read(&scrape) != read(&last) || scrape.samples != last.samples {
            since = Instant::now();
        }
        assert!(since.elapsed() < Duration::from_secs(20), "the server stopped making progress:\n{}", scrape.text);
        last = scrape;
    }
}

/// Datagrams the server has read: processed, or dropped for overload.
fn read(s: &Scrape) -> u64 {
    s.count("eapay_radius_datagrams_total") + s.count(r#"eapay_radius_dropped_total{reason="overload"}"#)
}

/// Waits until the server has read `expected` datagrams in all.
fn wait_until_read(server: &Server, expected: u64) -> Scrape {
    wait_for(server, |s| read(s) >= expected)
}

fn dropped(s: &Scrape) -> u64 {
    ["unknown_client", "malformed", "wrong_code", "missing_message_authenticator", "bad_authenticator", "overload"]
        .iter()
        .map(|reason| s.count(&format!(r#"eapay_radius_dropped_total{{reason="{reason}"}}"#)))
        .sum()
}

/// Every kind of datagram the server must drop without an answer.
#[derive(Debug, Clone, Copy)]
enum Junk {
    /// Random bytes of a random length, from a known client.
    Random,
    /// A valid, signed Access-Request with a few bytes changed.
    Mutated,
    /// Signed with another secret.
    WrongSecret,
    /// From an address no client entry covers.
    UnknownClient,
}

fn junk(kind: Junk, valid: &[u8], wrong_secret: &[u8], rng: &mut StdRng) -> Vec<u8> {
    match kind {
        Junk::Random => {
            let len = rng.gen_range(0..=4096);
            (0..len).map(|_| rng.gen()).collect()
        }
        Junk::Mutated => {
            let mut b = valid.to_vec();
            for _ in 0..rng.gen_range(1..=4) {
                let at = rng.gen_range(0..b.len());
                match rng.gen_range(0..3) {
                    0 => b[at] ^= 1 << rng.gen_range(0..8),
                    1 => b[at] = rng.gen(),
                    _ => b.truncate(at.max(20)),
                }
            }
            if b == valid {
                b[4] ^= 1; // the Request Authenticator: still unsigned
            }
            b
        }
        Junk::WrongSecret => wrong_secret.to_vec(),
        Junk::UnknownClient => valid.to_vec(),
    }
}

/// 10^5 malformed datagrams (random, mutated, wrong secret, unknown client)
/// while payments run: every payment is approved, none of the junk gets an
/// answer, the drop counters add up to exactly what was sent, and the
/// server's resident memory grows by less than 32 MiB.
#[test]
fn junk_flood_is_counted_and_payments_go_through() {
    const JUNK: usize = 100_000;
    const PAYMENTS: usize = 12;
    const RSS_BOUND: f64 = 32.0 * 1024.0 * 1024.0;
    let server = Server::start_default();
    let cards: Vec<_> = (0..PAYMENTS).map(|_| server.card_with(Method::Aka, &[])).collect();
    let identity = &cards[0].identity;
    let (_, valid) = eap_access_request(9, identity, &eap_identity_response(0, identity), None, &server.secret);
    let (_, wrong_secret) = eap_access_request(9, identity, &eap_identity_response(0, identity), None, "wrong");
    let known = udp_socket("127.0.0.1:0");
    // 127.0.0.0/8 is all loopback on Linux; the demo client is 127.0.0.1 only.
    let unknown = udp_socket("127.0.0.3:0");
    let before = server.scrape();
    let seed = rand::random::<u64>();
    eprintln!("junk seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let approved = std::thread::scope(|s| {
        let payer = s.spawn(|| {
            let mut approved = 0;
            for (i, card) in cards.iter().enumerate() {
                let d = details(&format!("flood-{i}"), 1_000 + i as u64);
                let run = server.pay(card, &d);
                run.assert_approved(&server, &d);
                approved += 1;
            }
            approved
        });
        // Sent by this thread; the payer's datagrams are read too, so the
        // window only grows more conservative.
        let mut sent = 0usize;
        let first = read(&before);
        while sent < JUNK {
            let s = wait_until_read(&server, (first + sent as u64).saturating_sub(WINDOW / 2));
            let room = (first + sent as u64 + WINDOW).saturating_sub(read(&s).max(first + sent as u64));
            for _ in 0..room.min((JUNK - sent) as u64) {
                let kind = [Junk::Random, Junk::Mutated, Junk::WrongSecret, Junk::UnknownClient][sent % 4];
                let datagram = junk(kind, &valid, &wrong_secret, &mut rng);
                let socket = if matches!(kind, Junk::UnknownClient) { &unknown } else { &known };
                // An empty datagram is legal UDP; the server reads and drops it.
                socket.send_to(&datagram, server.auth).expect("send junk");
                sent += 1;
            }
        }
        payer.join().expect("payer thread")
    });
    assert_eq!(approved, PAYMENTS);

    let after = wait_for(&server, |s| dropped(s) - dropped(&before) >= JUNK as u64);
    let moved = |series: &str| after.count(series) - before.count(series);
    assert_eq!(
        dropped(&after) - dropped(&before),
        JUNK as u64,
        "every junk datagram is counted as dropped:\n{}",
        after.text
    );
    assert_eq!(
        moved(r#"eapay_radius_dropped_total{reason="unknown_client"}"#),
        (JUNK / 4) as u64,
        "unknown client, exactly"
    );
    assert!(
        moved(r#"eapay_radius_dropped_total{reason="bad_authenticator"}"#) >= (JUNK / 4) as u64,
        "at least every wrong-secret datagram is a bad authenticator"
    );
    assert_eq!(moved("eapay_payment_approvals_total"), PAYMENTS as u64);
    assert_eq!(moved(r#"eapay_eap_answers_total{answer="accept"}"#), PAYMENTS as u64, "no junk was accepted");
    for socket in [&known, &unknown] {
        socket.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 4096];
        assert!(socket.recv_from(&mut buf).is_err(), "a junk datagram was answered");
    }
    let grown = after.value("process_resident_memory_bytes") - before.value("process_resident_memory_bytes");
    eprintln!(
        "junk flood: {JUNK} datagrams, {PAYMENTS} payments approved, RSS {:.1} -> {:.1} MiB",
        before.value("process_resident_memory_bytes") / 1048576.0,
        after.value("process_resident_memory_bytes") / 1048576.0
    );
    assert!(grown < RSS_BOUND, "RSS grew by {grown} bytes under the junk flood");
    server.assert_running();
}

/// The issue 16 attack: a terminal (here a second RADIUS client with its own
/// secret) opens conversations with valid Message-Authenticators and never
/// answers. It fills its share of the table (a quarter here), evicting only
/// its own oldest conversations, while the other terminal's payments are
/// approved throughout and the table never exceeds the cap. The resident
/// memory per held conversation is printed (recorded in BENCHMARKS.md).
#[test]
fn half_open_flood_from_one_terminal_does_not_starve_another() {
    const MAX: usize = 4_000;
    const SHARE: usize = 1_000;
    const FLOOD: usize = 6_000;
    // The window also keeps the answers within the flood socket's buffer.
    const BURST: usize = WINDOW as usize;
    let server = Server::start_with("issuer.test", "eapay-test-secret", |config| {
        let eap = section(config, "eap");
        eap.insert("max_sessions".into(), (MAX as i64).into());
        eap.insert("max_sessions_per_client".into(), (SHARE as i64).into());
        let radius = section(config, "radius");
        let clients = radius.get_mut("clients").and_then(|c| c.as_array_mut()).expect("[[radius.clients]]");
        let mut flooder = toml::Table::new();
        flooder.insert("name".into(), "flooder".into());
        flooder.insert("address".into(), "127.0.0.2".into());
        flooder.insert("secret".into(), "flooder-secret".into());
        flooder.insert("merchants".into(), toml::Value::Array(vec![MERCHANT.into()]));
        clients.push(toml::Value::Table(flooder));
    });
    let victim_cards: Vec<_> = (0..6).map(|_| server.card_with(Method::Aka, &[])).collect();
    let bait = server.card_with(Method::Aka, &[]);
    let flood = udp_socket("127.0.0.2:0");
    flood.set_nonblocking(true).expect("nonblocking");
    let idle = server.scrape();

    let mut sent = 0usize;
    let mut approved = 0;
    let mut challenges = 0usize;
    let mut payments = victim_cards.iter().enumerate();
    let mut expected = read(&idle);
    let mut held_at_share = None;
    while sent < FLOOD {
        for _ in 0..BURST {
            let identifier = (sent % 256) as u8;
            let eap = eap_identity_response(identifier, &bait.identity);
            let (_, request) = eap_access_request(identifier, &bait.identity, &eap, None, "flooder-secret");
            flood.send_to(&request, server.auth).expect("flood send");
            sent += 1;
        }
        expected += BURST as u64;
        let s = wait_until_read(&server, expected);
        expected = expected.max(read(&s));
        challenges += drain(&flood);
        let held = s.count(r#"eapay_eap_conversations{front="radius"}"#);
        assert!(held <= MAX as u64, "the table holds {held} > {MAX}");
        if sent == SHARE {
            held_at_share = Some(s.clone());
        }
        // Meanwhile the other terminal pays, and is approved.
        if sent % 1_000 >= BURST {
            continue;
        }
        if let Some((i, card)) = payments.next() {
            let d = details(&format!("victim-{i}"), 700);
            let run = server.pay(card, &d);
            assert_eq!(run.reply.code, Code::AccessAccept, "payment during the flood: {}", run.describe());
            run.assert_approved(&server, &d);
            approved += 1;
        }
    }
    // Read is not yet answered: wait until every identity has its conversation.
    let after = wait_for(&server, |s| {
        s.count(r#"eapay_eap_conversations{front="radius"}"#) + s.count("eapay_eap_conversations_evicted_total")
            >= FLOOD as u64
    });
    challenges += drain(&flood);
    assert_eq!(approved, victim_cards.len());
    let held = after.count(r#"eapay_eap_conversations{front="radius"}"#);
    assert_eq!(held, SHARE as u64, "the flooder holds exactly its share:\n{}", after.text);
    assert_eq!(after.count("eapay_eap_conversations_evicted_total"), (FLOOD - SHARE) as u64, "it evicted its own");
    assert!(challenges >= FLOOD * 9 / 10, "the flood was answered ({challenges} challenges read of {FLOOD})");

    let at_share = held_at_share.expect("a scrape at the share");
    let per_conversation = (at_share.value("process_resident_memory_bytes")
        - idle.value("process_resident_memory_bytes"))
        / at_share.count(r#"eapay_eap_conversations{front="radius"}"#).max(1) as f64;
    eprintln!(
        "half-open flood: {FLOOD} identities from one terminal, table {MAX}, share {SHARE}: \
         {approved} payments of another terminal approved, {held} held, \
         ~{per_conversation:.0} B of RSS per held AKA conversation (debug build)"
    );
    server.assert_running();
}

/// Reads every datagram waiting on `socket`; how many were Access-Challenges.
fn drain(socket: &UdpSocket) -> usize {
    let mut buf = [0u8; 4096];
    let mut challenges = 0;
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        if n > 0 && buf[0] == Code::AccessChallenge as u8 {
            challenges += 1;
        }
    }
    challenges
}
