//! SIM/AKA privacy end to end (RFC 4186/4187 §4-5): the real terminal, the
//! real card (in process, its state in its card file) and the real server.
//!
//! A terminal must not be able to link a card's payments: every identity it
//! relays (User-Name, EAP-Response/Identity, AT_IDENTITY) is a pseudonym or a
//! fast re-authentication identity used once, the permanent identity only on
//! the card's first payment. And an identity that is forged, replayed or
//! from a card's past falls back to a full authentication, never to an
//! approval without one: each case here is approved only after the card
//! proved itself again, and the server logs and counts it.

use std::collections::HashSet;
use std::path::Path;

use aaa_proto::radius::{Code, Packet};
use e_card::card_file::CardFile;
use eap_methods::packet::{Code as EapCode, EapType, Packet as EapPacket};
use eap_methods::sim_aka::attributes::{at, Message};
use eap_methods::sim_aka::identity::{classify, IdentityKind};
use eapay_tests::proxy::{Mode, RadiusProxy};
use eapay_tests::terminal::{pay_args, terminal, word_after};
use eapay_tests::{has_token, section, stopped_counter, Method, Server, ToolOutput, MERCHANT};

const KINDS: [(Method, EapType); 3] =
    [(Method::Sim, EapType::SIM), (Method::Aka, EapType::AKA), (Method::AkaPrime, EapType::AKA_PRIME)];

/// A server whose cards re-authenticate at most `limit` times in a row.
fn server_with_reauth_limit(limit: i64) -> Server {
    Server::start_with("issuer.test", "eapay-test-secret", |config| {
        section(config, "eap").insert("fast_reauth_limit".into(), toml::Value::Integer(limit));
    })
}

/// `pay` of `amount` with the card played in process from `card`, through `auth`.
fn pay(server: &Server, auth: std::net::SocketAddr, card: &Path, amount: &str, txn: &str) -> ToolOutput {
    let reversals = server.scratch("reversals.json");
    let mut args = pay_args(server, auth, server.acct, &reversals);
    args.extend(["--amount", amount, "--currency", "USD", "--card"].map(String::from));
    args.push(card.display().to_string());
    args.extend(["--transaction-id".into(), txn.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    terminal(&args)
}

fn assert_approved(out: &ToolOutput, server: &Server, what: &str) -> String {
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(
        out.status.code() == Some(0) && first.starts_with("APPROVED"),
        "{what}: not approved:\n{}\n--- server ---\n{}",
        out.all(),
        server.stderr()
    );
    word_after(first, "code").expect("approval code")
}

/// Every identity in the terminal's Access-Requests: User-Name, the
/// EAP-Response/Identity, and AT_IDENTITY of SIM/AKA responses.
fn identities_relayed(datagrams: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for d in datagrams {
        let Ok(p) = Packet::decode(d) else { continue };
        if p.code != Code::AccessRequest {
            continue;
        }
        if let Ok(Some(name)) = p.get_string(1) {
            out.push(name.to_string());
        }
        let Some(eap) = p.eap_message() else { continue };
        let Ok(packet) = EapPacket::decode(&eap) else { continue };
        if packet.code != EapCode::Response {
            continue;
        }
        match packet.kind {
            Some(EapType::IDENTITY) => out.push(String::from_utf8_lossy(&packet.data).into_owned()),
            Some(EapType::SIM | EapType::AKA | EapType::AKA_PRIME) => {
                let Ok(m) = Message::decode(&eap, "test") else { continue };
                if let Some(id) = m.get(at::IDENTITY).and_then(|a| a.with_actual_length()) {
                    out.push(String::from_utf8_lossy(id).into_owned());
                }
            }
            _ => {}
        }
    }
    out
}

/// Ten payments of one card: no identity the terminal relays in one payment
/// appears in another (the realm aside, which is the issuer's), the
/// permanent identity only in the first, and every payment is approved with
/// the card's confirmation, full authentications and fast
/// re-authentications alike.
#[test]
fn ten_payments_of_one_card_show_the_terminal_no_identity_twice() {
    for (method, kind) in KINDS {
        let server = server_with_reauth_limit(3);
        let _capture = server.capture();
        let card = server.card(method);
        let proxy = RadiusProxy::start(server.auth, Mode::Forward);
        let mut seen: Vec<HashSet<String>> = Vec::new();
        let mut recorded = 0;
        for n in 0..10 {
            let txn = format!("PRIV-{}-{n}", method.arg());
            let out = pay(&server, proxy.addr, &card.json, "1.00", &txn);
            assert_approved(&out, &server, &format!("{method:?} payment {n}"));
            let all = proxy.to_server();
            let names: HashSet<String> = identities_relayed(&all[recorded..]).into_iter().collect();
            recorded = all.len();
            assert!(!names.is_empty(), "{method:?} payment {n}: no identity recorded");
            for name in &names {
                assert!(name.ends_with("@issuer.test"), "{method:?} payment {n}: {name} has no realm");
                assert!(
                    n == 0 || classify(kind, name) != IdentityKind::Permanent,
                    "{method:?} payment {n} relayed the permanent identity {name}"
                );
                for (m, earlier) in seen.iter().enumerate() {
                    assert!(!earlier.contains(name), "{method:?}: payments {m} and {n} both relayed {name}");
                }
            }
            seen.push(names);
            assert_confirmed(&server, &txn, &format!("{method:?} payment {n}"));
        }
        // Fast re-authentications happened (limit 3: full, 3 fast, full, ...).
        let reauths = seen.iter().filter(|names| names.iter().any(|n| classify(kind, n) == IdentityKind::Reauth));
        assert!(reauths.count() >= 6, "{method:?}: {seen:?}");
        let stopped = server.terminate();
        assert!(stopped.contains("reauth_ids_used="), "{method:?}: no fast re-authentication counted:\n{stopped}");
    }
}

/// A re-authentication identity replayed after use (the card file restored
/// from a copy), also after a restart of the server; a re-authentication
/// whose counter the card has seen; a forged pseudonym: each falls back to
/// a full authentication, which approves, and the server logs and counts it.
#[test]
fn replayed_stale_and_forged_identities_fall_back_to_a_full_authentication() {
    for (method, kind) in KINDS {
        let mut server = server_with_reauth_limit(16);
        let _capture = server.capture();
        let card = server.card(method);
        let before = server.scratch(&format!("{}-before.json", method.arg()));
        pay_and_expect(&server, &card.json, "first", method);
        // The card now holds a re-authentication identity; keep a copy.
        std::fs::copy(&card.json, &before).expect("copy card file");
        let held = CardFile::load(&before).expect("card file");
        let reauth = held.aka.as_ref().and_then(|a| a.reauth.clone()).expect("a re-authentication identity");
        assert_eq!(classify(kind, &reauth.identity), IdentityKind::Reauth);
        pay_and_expect(&server, &card.json, "reauth", method);

        // Replayed after use, then again after a restart: refused both times
        // (the ledger keeps what was used), a full authentication instead.
        for round in ["replayed", "replayed-after-restart"] {
            if round == "replayed-after-restart" {
                server.restart();
            }
            std::fs::copy(&before, &card.json).expect("restore card file");
            pay_and_expect(&server, &card.json, round, method);
            assert!(
                server.stderr().contains("re-authentication identity refused"),
                "{method:?} {round}: no log line\n{}",
                server.stderr()
            );
        }

        // A counter the card has already seen: AT_COUNTER_TOO_SMALL, then a
        // full authentication.
        pay_and_expect(&server, &card.json, "fresh", method);
        edit_card(&card.json, |file| {
            let aka = file.aka.as_mut().expect("aka");
            aka.reauth.as_mut().expect("a re-authentication identity").counter = 900;
        });
        pay_and_expect(&server, &card.json, "counter-seen", method);
        // Had the card taken the server's counter (2), it would hold that;
        // it holds the new chain's 0 of the full authentication instead.
        let after = CardFile::load(&card.json).expect("card file");
        let counter_now = after.aka.and_then(|a| a.reauth).map(|r| r.counter);
        assert_eq!(counter_now, Some(0), "{method:?}: a full authentication followed AT_COUNTER_TOO_SMALL");

        // A forged pseudonym (and no re-authentication identity): the
        // permanent identity is asked for.
        edit_card(&card.json, |file| {
            let aka = file.aka.as_mut().expect("aka");
            aka.reauth = None;
            let prefix = eap_methods::sim_aka::identity::prefix(kind, IdentityKind::Pseudonym).expect("prefix");
            aka.pseudonym =
                Some(format!("{prefix}AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Ng"));
        });
        pay_and_expect(&server, &card.json, "forged", method);
        assert!(server.stderr().contains("pseudonym refused"), "{method:?}: no log line\n{}", server.stderr());

        let stopped = server.terminate();
        assert!(stopped_counter(&stopped, "reauth_ids_refused") >= 1, "{method:?}: {stopped}");
        assert!(stopped_counter(&stopped, "pseudonyms_refused") >= 1, "{method:?}: {stopped}");
    }
}

fn pay_and_expect(server: &Server, card: &Path, tag: &str, method: Method) {
    let txn = format!("FB-{}-{tag}", method.arg());
    let out = pay(server, server.auth, card, "1.00", &txn);
    assert_approved(&out, server, &format!("{method:?} {tag}"));
    assert_confirmed(server, &txn, &format!("{method:?} {tag}"));
}

/// The ledger has the payment approved and confirmed by the card.
fn assert_confirmed(server: &Server, txn: &str, what: &str) {
    let shown = server.txn_show(MERCHANT, txn).to_lowercase();
    assert!(
        has_token(&shown, "approved") && has_token(&shown, "confirmed"),
        "{what}: approved and confirmed:\n{shown}"
    );
}

fn edit_card(path: &Path, edit: impl FnOnce(&mut CardFile)) {
    let mut file = CardFile::load(path).expect("card file");
    edit(&mut file);
    std::fs::write(path, file.to_json()).expect("write card file");
}
