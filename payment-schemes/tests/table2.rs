//! Every attack against every scheme, with the verdict it must reach: a
//! change to a model or to eapay that flips a cell of SECURITY.md's table
//! fails here. eapay's columns are the real eapay-server (from the target
//! directory: `cargo build -p aaa-server` first, as scripts/test does) and
//! the real card over loopback.

use std::rc::Rc;

use eapay_tests::{Method, Server};
use payment_schemes::attacks::{self, Finding, Mark, Property};
use payment_schemes::eapay::{start_server, Eapay};
use payment_schemes::pan::SearchSpace;
use payment_schemes::table::{paper_schemes, render, run, Column};
use payment_schemes::{HonestTerminal, Purchase, Scheme};

use Mark::{Broken as X, Holds as O, NotApplicable as NA};

/// Column order: DVCC, OVCN, 3-D Secure, proposed, eapay TLS, eapay AKA.
const NAMES: [&str; 6] = ["DVCC", "OVCN", "3-D Secure", "Proposed", "eapay TLS", "eapay AKA"];

/// Every scheme, eapay's on one fresh server (kept alive by the Rc).
fn schemes() -> (Rc<Server>, Vec<Box<dyn Scheme>>) {
    let server = start_server();
    let mut all = paper_schemes().expect("model keys");
    all.push(Box::new(Eapay::new(server.clone(), Method::Tls)));
    all.push(Box::new(Eapay::new(server.clone(), Method::Aka)));
    let names: Vec<String> = all.iter().map(|s| s.name()).collect();
    assert_eq!(names, NAMES, "the columns");
    (server, all)
}

/// Runs `attack` against every scheme and checks each verdict.
fn expect(expected: [Mark; 6], attack: impl Fn(&mut dyn Scheme, &SearchSpace) -> Finding) {
    let (_server, mut all) = schemes();
    let mut wrong = Vec::new();
    for (scheme, want) in all.iter_mut().zip(expected) {
        let space = SearchSpace::for_holder(&scheme.holder_secrets());
        let finding = attack(scheme.as_mut(), &space);
        println!("{:<18} {:<3} {}: {}", scheme.name(), finding.mark.to_string(), finding.attack, finding.detail);
        if finding.mark != want {
            wrong.push(format!("{}: want {want}, got {} ({})", scheme.name(), finding.mark, finding.detail));
        }
    }
    assert!(wrong.is_empty(), "verdicts changed:\n{}", wrong.join("\n"));
}

/// Without this, "holds" could mean "nothing works at all".
#[test]
fn honest_payments_are_approved_and_charged_once() {
    let (_server, mut all) = schemes();
    for scheme in &mut all {
        let purchase = Purchase::new("honest", 1234);
        let outcome = scheme.purchase(&purchase, &mut HonestTerminal);
        assert!(outcome.approved, "{}: {}", scheme.name(), outcome.detail);
        assert_eq!(outcome.amount, Some(1234), "{}", scheme.name());
        assert!(outcome.new_charge, "{}", scheme.name());
    }
}

#[test]
fn a1_terminal_reading_what_it_relays() {
    expect([O, O, X, X, O, O], |s, space| attacks::terminal_learns(s, space));
}

#[test]
fn a2_leaked_issuer_database() {
    expect([X, X, X, X, O, O], |s, space| attacks::database_leaks(s, space));
}

#[test]
fn a3_terminal_changing_the_amount() {
    expect([O, O, X, X, O, O], |s, _| attacks::terminal_changes_amount(s));
}

#[test]
fn a4_holder_denying_a_payment() {
    expect([X, X, X, O, O, X], |s, _| attacks::holder_denies(s));
}

#[test]
fn a5_merchant_replaying_a_payment() {
    expect([X, O, X, X, O, O], |s, _| attacks::merchant_replays(s));
}

#[test]
fn a6_leaked_virtual_number_reused() {
    expect([O, O, X, X, O, O], |s, _| attacks::leaked_number_reused(s));
}

#[test]
fn a7_virtual_number_inverted() {
    expect([X, O, NA, X, O, O], |s, space| attacks::virtual_number_inverted(s, space));
}

#[test]
fn a8_parties_beyond_holder_merchant_and_issuer() {
    expect([O, X, X, O, O, O], |s, _| attacks::extra_parties(s));
}

/// The models' columns as `table2` prints them, with the paper's verdicts
/// beside ours (eapay's columns are covered attack by attack above).
#[test]
fn the_paper_columns_print_with_the_papers_verdicts() {
    let mut models = paper_schemes().expect("model keys");
    let columns: Vec<Column> = run(&mut models);
    let ours = |i: usize| -> Vec<Mark> {
        Property::ALL.iter().map(|p| columns[i].cell(*p).expect("every row").mark).collect()
    };
    assert_eq!(ours(0), [O, O, X, X, X, O], "DVCC");
    assert_eq!(ours(1), [O, O, X, O, X, X], "OVCN");
    assert_eq!(ours(2), [X, X, X, X, NA, X], "3-D Secure");
    assert_eq!(ours(3), [X, X, O, X, X, O], "proposed");
    let text = render(&columns);
    println!("{text}");
    assert!(text.contains("Non-repudiation") && text.contains("X (O) !") && text.contains("n/a (n/a)"), "{text}");
}

/// AKA' and SIM confirm with a MAC like AKA; TTLS signs like TLS.
#[test]
fn a4_every_eapay_method() {
    let server = start_server();
    for (method, want) in [(Method::Ttls, O), (Method::AkaPrime, X), (Method::Sim, X)] {
        let mut scheme = Eapay::new(server.clone(), method);
        let finding = attacks::holder_denies(&mut scheme);
        println!("{}: {} {}", scheme.name(), finding.mark, finding.detail);
        assert_eq!(finding.mark, want, "{}: {}", scheme.name(), finding.detail);
    }
}
