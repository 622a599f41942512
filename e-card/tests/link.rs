//! The card side of the card link, driven over an in-process channel by a
//! terminal written here, with eap-methods' AKA server as the issuer.

mod common;

use std::time::Duration;

use aaa_proto::card_link::{channel, CardLink, StreamLink};
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{PaymentOutcome, PaymentResult};
use common::*;
use e_card::card_file::CardFile;
use e_card::{serve_link, serve_one, serve_one_with, AutoAccept, Card, CardError, CardOutcome, Refuse, ServeOptions};
use eap_methods::packet::{Code, EapType, Packet};
use eap_methods::sim_aka::attributes::subtype;
use eap_methods::sim_aka::Flavor;
use tokio::io::AsyncWriteExt;

/// Holders that live as long as the test (zero-sized: leaking costs nothing).
fn yes() -> &'static mut AutoAccept {
    Box::leak(Box::new(AutoAccept))
}

fn no() -> &'static mut Refuse {
    Box::leak(Box::new(Refuse))
}

/// Runs the card (`serve_link`) against one terminal run per plan.
async fn pay_all(card: &mut Card, issuer: &mut Issuer, plans: &[Plan]) -> (Vec<e_card::CardReport>, Vec<Saw>) {
    let (mut t, mut c) = channel();
    let terminal = async move {
        let mut saws = Vec::new();
        for plan in plans {
            saws.push(terminal(&mut t, issuer, plan).await);
        }
        saws
    };
    let (reports, saws) = tokio::join!(serve_link(&mut c, card, yes()), terminal);
    (reports.expect("the card serves the link"), saws)
}

#[tokio::test]
async fn an_approved_payment_is_confirmed_and_the_display_agrees() {
    for (method, flavor) in [("aka", Flavor::Aka), ("aka-prime", Flavor::AkaPrime { network_name: REALM.into() })] {
        let mut card = Card::in_memory(card_file(method));
        let mut issuer = Issuer::new();
        let d = details("T-1", 1250);
        let plan = Plan { flavor, ..Plan::pay(d.clone()) };
        let (reports, saws) = pay_all(&mut card, &mut issuer, &[plan]).await;
        assert_eq!(saws[0].consent, Some(true));
        assert_eq!(saws[0].accepted, Some(true));
        // The card confirmed exactly the details it was shown.
        assert_eq!(saws[0].confirmation.as_deref(), Some(&d.canonical()[..]));
        let r = &reports[..];
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].details.as_ref(), Some(&d));
        assert!(r[0].consented);
        assert_eq!(r[0].outcome, CardOutcome::Approved { approval_code: "ABC123".into(), approved_amount: 1250 });
        assert_eq!(r[0].terminal_showed, saws[0].result);
        assert_eq!(r[0].display_agrees, Some(true));
        assert_eq!(
            e_card::show::report(&r[0]).unwrap(),
            "issuer APPROVED 12.50 USD, approval code ABC123; terminal displays the same"
        );
        // The in-memory card kept its SQN.
        assert_eq!(card.file().aka.as_ref().unwrap().sqn, issuer.sqn.value());
    }
}

#[tokio::test]
async fn a_decline_reaches_the_card_inside_the_method() {
    let mut card = Card::in_memory(card_file("aka"));
    let mut issuer = Issuer::new();
    let plan = Plan { decision: Decision::Decline(51), ..Plan::pay(details("T-2", 9_900)) };
    let (reports, saws) = pay_all(&mut card, &mut issuer, &[plan]).await;
    assert_eq!(saws[0].accepted, Some(false));
    assert_eq!(reports[0].outcome, CardOutcome::Declined { code: 51 });
    assert_eq!(reports[0].display_agrees, Some(true));
    assert_eq!(
        e_card::show::report(&reports[0]).unwrap(),
        "issuer DECLINED 51 (Insufficient-Funds); terminal displays the same"
    );
}

#[tokio::test]
async fn the_holder_refuses_and_nothing_reaches_the_issuer() {
    let mut card = Card::in_memory(card_file("aka"));
    let mut issuer = Issuer::new();
    let (mut t, mut c) = channel();
    let plan = Plan::pay(details("T-3", 1250));
    let terminal = async move {
        let saw = terminal(&mut t, &mut issuer, &plan).await;
        // Nothing follows a refusal: the card waits for the next payment.
        assert!(tokio::time::timeout(Duration::from_millis(50), t.recv()).await.is_err());
        (saw, issuer.vectors)
    };
    let (reports, (saw, vectors)) = tokio::join!(serve_link(&mut c, &mut card, no()), terminal);
    let reports = reports.unwrap();
    assert_eq!(saw.consent, Some(false));
    assert_eq!(vectors, 0);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, CardOutcome::Refused);
    assert!(!reports[0].consented);
    assert_eq!(e_card::show::report(&reports[0]), None);
}

#[tokio::test]
async fn auth_only_authenticates_without_a_confirmation() {
    let mut card = Card::in_memory(card_file("aka"));
    let mut issuer = Issuer::new();
    let (mut t, mut c) = channel();
    let plan = Plan { details: None, ..Plan::pay(details("unused", 1)) };
    let (report, saw) = tokio::join!(serve_one(&mut c, &mut card, no()), terminal(&mut t, &mut issuer, &plan));
    let report = report.unwrap();
    assert_eq!(saw.accepted, Some(true));
    assert_eq!(saw.confirmation, None);
    assert_eq!(report.outcome, CardOutcome::Authenticated);
    assert_eq!((report.details, report.terminal_showed, report.display_agrees), (None, None, None));
}

#[tokio::test]
async fn a_terminal_displaying_another_result_is_caught() {
    let mut card = Card::in_memory(card_file("aka"));
    let mut issuer = Issuer::new();
    let d = details("T-4", 1250);
    let lie = PaymentResult { transaction_id: d.transaction_id.clone(), outcome: PaymentOutcome::Declined { code: 5 } };
    let plan = Plan { display: Display::Lie(lie.clone()), ..Plan::pay(d) };
    let (reports, _) = pay_all(&mut card, &mut issuer, &[plan]).await;
    assert_eq!(reports[0].outcome, CardOutcome::Approved { approval_code: "ABC123".into(), approved_amount: 1250 });
    assert_eq!(reports[0].terminal_showed, Some(lie));
    assert_eq!(reports[0].display_agrees, Some(false));
    assert_eq!(
        e_card::show::report(&reports[0]).unwrap(),
        "issuer APPROVED 12.50 USD, approval code ABC123; but the terminal displays DECLINED 05 (Do-Not-Honor)"
    );
}

/// A terminal that fakes EAP-Success and displays an approval the issuer
/// never gave: the card ignores the Success and flags the display.
#[tokio::test]
async fn a_faked_success_and_approval_are_caught() {
    let mut card = Card::in_memory(card_file("aka"));
    let d = details("T-5", 1250);
    let (mut t, mut c) = channel();
    let fake = PaymentResult {
        transaction_id: d.transaction_id.clone(),
        outcome: PaymentOutcome::Approved { approval_code: "FAKE00".into(), approved_amount: 1250 },
    };
    let canonical = d.canonical();
    let fake_bytes = fake.encode();
    let terminal = async move {
        t.send(Frame::Payment(PaymentFrame::Details(canonical))).await.unwrap();
        assert_eq!(t.recv().await.unwrap(), Frame::Payment(PaymentFrame::Consent(true)));
        assert_eq!(t.recv().await.unwrap(), Frame::Start);
        t.send(Frame::Eap(identity_request(1))).await.unwrap();
        assert!(matches!(t.recv().await.unwrap(), Frame::Eap(_)));
        t.send(Frame::Eap(Packet::success(1).encode().unwrap())).await.unwrap();
        t.send(Frame::Payment(PaymentFrame::Shown(fake_bytes))).await.unwrap();
    };
    let (report, ()) = tokio::join!(serve_one(&mut c, &mut card, yes()), terminal);
    let report = report.unwrap();
    assert!(matches!(report.outcome, CardOutcome::Failed(_)), "{:?}", report.outcome);
    assert_eq!(report.terminal_showed, Some(fake));
    assert_eq!(report.display_agrees, Some(false));
}

/// Garbage inside a well-formed EAP frame is logged and ignored (RFC 3748
/// silent discard); the payment goes on.
#[tokio::test]
async fn an_undecodable_eap_packet_is_ignored() {
    let mut card = Card::in_memory(card_file("aka"));
    let mut issuer = Issuer::new();
    let d = details("T-6", 1250);
    let (mut t, mut c) = channel();
    let plan = Plan { details: None, ..Plan::pay(d) };
    let terminal = async move {
        // A Request without a type, then the real conversation.
        t.send(Frame::Eap(vec![1, 9, 0, 4])).await.unwrap();
        terminal(&mut t, &mut issuer, &plan).await
    };
    let (report, saw) = tokio::join!(serve_one(&mut c, &mut card, yes()), terminal);
    assert_eq!(saw.accepted, Some(true));
    assert_eq!(report.unwrap().outcome, CardOutcome::Authenticated);
}

/// Runs the card against a terminal that sends `frames` after the usual
/// opening (`opening`: Details, read Consent and Start), then closes the
/// link (the card still reads what was sent before the close).
async fn card_error(opening: bool, frames: Vec<Frame>) -> CardError {
    let mut card = Card::in_memory(card_file("aka"));
    let (mut t, mut c) = channel();
    let terminal = async move {
        if opening {
            t.send(Frame::Payment(PaymentFrame::Details(details("T-7", 1).canonical()))).await.unwrap();
            assert_eq!(t.recv().await.unwrap(), Frame::Payment(PaymentFrame::Consent(true)));
            assert_eq!(t.recv().await.unwrap(), Frame::Start);
        }
        for f in frames {
            if t.send(f).await.is_err() {
                break;
            }
        }
        drop(t);
    };
    let (result, ()) = tokio::join!(
        async {
            let r = serve_link(&mut c, &mut card, yes()).await;
            drop(c);
            r
        },
        terminal
    );
    result.expect_err("the card must refuse this")
}

#[tokio::test]
async fn unexpected_frames_are_protocol_errors() {
    // Frames only a card sends, before a payment.
    for f in [Frame::Start, Frame::Payment(PaymentFrame::Consent(true))] {
        let e = card_error(false, vec![f]).await;
        assert!(matches!(e, CardError::Unexpected { .. }), "{e}");
        assert!(e.to_string().starts_with("protocol error: the terminal sent"), "{e}");
    }
    // A Shown before any payment.
    let e = card_error(false, vec![Frame::Payment(PaymentFrame::Shown(vec![1]))]).await;
    assert!(matches!(e, CardError::Unexpected { .. }), "{e}");
    // New details in the middle of a payment.
    let e = card_error(true, vec![Frame::Payment(PaymentFrame::Details(vec![1, 3, b'x']))]).await;
    assert!(matches!(e, CardError::Unexpected { .. }), "{e}");
    // Details that are not canonical payment details: refused, then an error.
    let e = card_error(false, vec![Frame::Payment(PaymentFrame::Details(vec![0xff; 9]))]).await;
    assert!(matches!(e, CardError::BadDetails(_)), "{e}");
}

#[tokio::test]
async fn bad_details_are_refused_before_the_error() {
    let mut card = Card::in_memory(card_file("aka"));
    let (mut t, mut c) = channel();
    t.send(Frame::Payment(PaymentFrame::Details(vec![1, 2]))).await.unwrap();
    let e = serve_one(&mut c, &mut card, yes()).await.unwrap_err();
    assert!(matches!(e, CardError::BadDetails(_)), "{e}");
    assert_eq!(t.recv().await.unwrap(), Frame::Payment(PaymentFrame::Consent(false)));
}

#[tokio::test]
async fn garbage_and_oversize_bytes_on_a_stream_are_errors() {
    for bytes in [&[0xff, 0xff, 0xff, 0xff][..], &[2, 0, 0xff, 0xff], &[2, 9, 0, 0]] {
        let (mut raw, io) = tokio::io::duplex(64);
        let mut link = StreamLink::new(io);
        let mut card = Card::in_memory(card_file("aka"));
        raw.write_all(bytes).await.unwrap();
        let e = serve_link(&mut link, &mut card, yes()).await.unwrap_err();
        assert!(matches!(e, CardError::Link(_)), "{bytes:?}: {e}");
        assert!(e.to_string().starts_with("card link: "), "{e}");
    }
}

#[tokio::test]
async fn a_link_closed_mid_payment_is_an_error_but_closed_between_payments_is_not() {
    // Closed after consent, before any EAP.
    let e = card_error(true, vec![]).await;
    assert!(matches!(e, CardError::Closed { during: "mid-payment" }), "{e}");
    assert_eq!(e.to_string(), "the terminal closed the card link mid-payment");
    // EAPOL-Logoff in the middle of a payment.
    let e = card_error(true, vec![Frame::Eap(identity_request(1)), Frame::Logoff]).await;
    assert!(matches!(e, CardError::Closed { .. }), "{e}");
    // Closed, or Logoff, before any payment: a normal end.
    let mut card = Card::in_memory(card_file("aka"));
    let (t, mut c) = channel();
    drop(t);
    assert_eq!(serve_link(&mut c, &mut card, yes()).await.unwrap(), vec![]);
    let (mut t, mut c) = channel();
    t.send(Frame::Logoff).await.unwrap();
    assert_eq!(serve_link(&mut c, &mut card, yes()).await.unwrap(), vec![]);
    // serve_one wants a payment.
    let (t, mut c) = channel();
    drop(t);
    let e = serve_one(&mut c, &mut card, yes()).await.unwrap_err();
    assert!(matches!(e, CardError::Closed { during: "before a payment started" }), "{e}");
}

#[tokio::test]
async fn a_silent_terminal_times_out_mid_payment() {
    let mut card = Card::in_memory(card_file("aka"));
    let (mut t, mut c) = channel();
    t.send(Frame::Payment(PaymentFrame::Details(details("T-8", 1).canonical()))).await.unwrap();
    let options = ServeOptions { frame_timeout: Duration::from_millis(100), idle_timeout: None };
    let e = serve_one_with(&mut c, &mut card, yes(), &options).await.unwrap_err();
    assert!(matches!(e, CardError::Timeout { .. }), "{e}");
    assert_eq!(e.to_string(), "no frame from the terminal for 0.1 s while waiting for the next EAP request");
    drop(t);
}

#[tokio::test]
async fn a_terminal_that_closes_instead_of_displaying_is_reported() {
    let mut card = Card::in_memory(card_file("aka"));
    let mut issuer = Issuer::new();
    let plan = Plan { display: Display::Nothing, ..Plan::pay(details("T-9", 1250)) };
    let (reports, _) = pay_all(&mut card, &mut issuer, &[plan]).await;
    assert!(matches!(reports[0].outcome, CardOutcome::Approved { .. }));
    assert_eq!((reports[0].terminal_showed.as_ref(), reports[0].display_agrees), (None, None));
    assert_eq!(
        e_card::show::report(&reports[0]).unwrap(),
        "issuer APPROVED 12.50 USD, approval code ABC123; the terminal did not say what it displays"
    );
}

fn write_card(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("card.json");
    std::fs::write(&path, card_file("aka").to_json()).unwrap();
    path
}

/// Two payments in a row leave the card file's SQN advanced, atomically
/// written (mode 0600, no temporary left); the card reloaded from the file
/// still pays without resynchronising, and refuses a replayed challenge.
#[tokio::test]
async fn the_sqn_is_persisted_across_payments_and_runs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write_card(dir.path());
    let mut issuer = Issuer::new();
    let mut card = Card::load(&path).unwrap();
    let plans = [Plan::pay(details("P-1", 100)), Plan::pay(details("P-2", 200))];
    let (reports, saws) = pay_all(&mut card, &mut issuer, &plans).await;
    assert!(reports.iter().all(|r| matches!(r.outcome, CardOutcome::Approved { .. })), "{reports:?}");
    assert_eq!(issuer.vectors, 2);
    let stored = CardFile::load(&path).unwrap();
    let aka = stored.aka.as_ref().unwrap();
    assert_eq!(aka.sqn, issuer.sqn.value(), "SQN_MS is the last SQN accepted");
    assert_eq!(aka.seq_ms.len(), 32);
    assert_eq!(&stored, card.file());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");

    // A new run of the same card: pays, and the issuer needs no resync.
    let mut card = Card::load(&path).unwrap();
    let (reports, _) = pay_all(&mut card, &mut issuer, &[Plan::pay(details("P-3", 300))]).await;
    assert!(matches!(reports[0].outcome, CardOutcome::Approved { .. }), "{reports:?}");
    assert_eq!(issuer.vectors, 3);

    // The challenge of the first payment, replayed to the card reloaded
    // from its file: stale, the USIM answers with a resynchronisation.
    let challenge = saws[0].requests.iter().find(|r| r.get(4) == Some(&EapType::AKA.0)).unwrap().clone();
    let mut card = Card::load(&path).unwrap();
    let (mut t, mut c) = channel();
    let replay = async move {
        t.send(Frame::Eap(identity_request(1))).await.unwrap();
        let _ = t.recv().await.unwrap();
        t.send(Frame::Eap(challenge)).await.unwrap();
        let Frame::Eap(answer) = t.recv().await.unwrap() else { panic!() };
        answer
    };
    let quick = ServeOptions { frame_timeout: Duration::from_millis(200), idle_timeout: None };
    let (result, answer) = tokio::join!(serve_one_with(&mut c, &mut card, yes(), &quick), replay);
    assert_eq!(Packet::decode(&answer).unwrap().code, Code::Response);
    assert_eq!(answer[5], subtype::AKA_SYNCHRONIZATION_FAILURE);
    assert!(result.is_err(), "the terminal then went quiet");
}

/// The SQN accepted in a payment that never completes (the terminal closes
/// right after the card answered the challenge) is kept all the same.
#[tokio::test]
async fn the_sqn_is_kept_even_when_the_payment_breaks_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_card(dir.path());
    let mut card = Card::load(&path).unwrap();
    let mut issuer = Issuer::new();
    let (mut t, mut c) = channel();
    let plan = Plan { hang_up_after: Some(1), ..Plan::pay(details("B-1", 1)) };
    let terminal = async move {
        let saw = terminal(&mut t, &mut issuer, &plan).await;
        drop(t);
        (saw, issuer.sqn)
    };
    let (result, (saw, issuer_sqn)) = tokio::join!(serve_one(&mut c, &mut card, yes()), terminal);
    assert_eq!(saw.accepted, None, "the terminal hung up before the end");
    let e = result.unwrap_err();
    assert!(matches!(e, CardError::Closed { during: "mid-payment" }), "{e}");
    assert_eq!(CardFile::load(&path).unwrap().aka.unwrap().sqn, issuer_sqn.value());
}

/// The load generator spawns card sessions on a multi-threaded runtime.
#[test]
fn the_session_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let (_t, mut c) = channel();
    let mut card = Card::in_memory(card_file("aka"));
    is_send(&serve_one(&mut c, &mut card, yes()));
    is_send(&serve_link(&mut c, &mut card, yes()));
}
