//! The workers: each one is a terminal with its own RADIUS client and a
//! disjoint share of the cards, so a card is never in two conversations at
//! once. A worker plays both ends of each payment in one task
//! (`nas_terminal::simulated`): the card (e-card, in memory) on one end of
//! an in-process card link, the terminal's `payment::run` on the other.
//!
//! Closed loop: each worker starts its next conversation when the last one
//! ends. Open loop (`--rate`): conversation k is due at `start + k / rate`;
//! the worker that claims it waits for that moment, and its latency counts
//! from it, so a server that falls behind shows its queueing delay instead
//! of hiding it (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aaa_proto::payment::PaymentDetails;
use anyhow::{Context, Result};
use e_card::{AutoAccept, Card, CardError, CardOutcome};
use nas_terminal::client::{ClientError, RadiusClient};
use nas_terminal::diameter::{DiameterClient, DiameterError};
use nas_terminal::payment::{Answer, Finished, PaymentError, Request};
use nas_terminal::radsec::RadsecLink;
use nas_terminal::simulated;
use nas_terminal::tls::TlsContext;
use nas_terminal::transport::Issuer;
use tokio::time::Instant;

use super::args::Plan;
use super::journal::{Conclusion, Journal};
use super::stats::{Failure, Live, Offered, Outcome, Recorder};
use crate::options::now_ms;

/// State shared by the workers.
pub struct Shared {
    pub plan: Plan,
    /// When the run started (warm-up included).
    pub origin: Instant,
    /// No conversation starts at or after this.
    pub deadline: Instant,
    pub recorder: Mutex<Recorder>,
    pub live: Live,
    /// `--outcomes`, `--reversals`: None unless asked for.
    pub journal: Option<Journal>,
    /// Open loop: the next conversation number to claim.
    next_slot: AtomicU64,
    /// Distinguishes this run's transaction ids from earlier runs'.
    run_id: String,
}

impl Shared {
    pub fn new(plan: Plan, origin: Instant, journal: Option<Journal>) -> Self {
        let deadline = origin + plan.warmup + plan.duration;
        let recorder = Recorder::new(origin.into_std(), plan.warmup, plan.duration);
        Shared {
            plan,
            origin,
            deadline,
            recorder: Mutex::new(recorder),
            live: Live::default(),
            journal,
            next_slot: AtomicU64::new(0),
            run_id: format!("{:x}{}", now_ms(), hex::encode(rand::random::<[u8; 2]>())),
        }
    }

    /// When the next conversation is due, `None` once the run is over.
    fn next_start(&self) -> Option<Instant> {
        let start = match self.plan.rate {
            None => Instant::now(),
            Some(rate) => {
                let k = self.next_slot.fetch_add(1, Ordering::Relaxed);
                // k / rate seconds, in integer nanoseconds.
                let nanos = u128::from(k) * 1_000_000_000 / u128::from(rate);
                self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        };
        (start < self.deadline).then_some(start)
    }
}

/// Creates the workers' ways to the server: over RADIUS/UDP one socket per
/// server each; over RADIUS/TLS `--connections` links per server, worker i
/// on set i mod N, all connected before the run (so a certificate the
/// server refuses ends it at once); over Diameter one connection per
/// server, shared by all. Also returns the TLS links, for the report.
pub async fn clients(plan: &Plan) -> Result<(Vec<Issuer>, Vec<Arc<RadsecLink>>)> {
    let mut clients = Vec::with_capacity(plan.concurrency);
    if let Some(settings) = &plan.diameter {
        let client = DiameterClient::connect(settings.clone()).await.context("Diameter")?;
        clients.resize_with(plan.concurrency, || Issuer::Diameter(client.clone()));
        return Ok((clients, Vec::new()));
    }
    if let Some(tls) = &plan.tls {
        let context = Arc::new(TlsContext::new(tls)?);
        let mut sets = Vec::with_capacity(plan.connections);
        for _ in 0..plan.connections {
            let set: Vec<Arc<RadsecLink>> =
                plan.servers.iter().map(|s| Arc::new(RadsecLink::new(*s, context.clone(), plan.tls_wait))).collect();
            RadiusClient::over_tls(set.clone(), plan.retransmit)?.connect().await?;
            sets.push(set);
        }
        for i in 0..plan.concurrency {
            clients.push(Issuer::Radius(RadiusClient::over_tls(sets[i % sets.len()].clone(), plan.retransmit)?));
        }
        return Ok((clients, sets.into_iter().flatten().collect()));
    }
    for _ in 0..plan.concurrency {
        let mut client = RadiusClient::with_servers(&plan.servers, &plan.secret, plan.retransmit)
            .await
            .context("RADIUS client socket")?;
        if plan.lax_message_authenticator {
            client.accept_late_message_authenticator();
        }
        clients.push(Issuer::Radius(client));
    }
    Ok((clients, Vec::new()))
}

/// Deals the cards out to `workers` hands: card i goes to worker i % workers.
pub fn deal(cards: Vec<Card>, workers: usize) -> Vec<Vec<Card>> {
    let mut hands: Vec<Vec<Card>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, card) in cards.into_iter().enumerate() {
        hands[i % workers].push(card);
    }
    hands
}

/// What the priming payments of `--resumption on` left.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Primed {
    /// Cards that made their priming payment.
    pub cards: u64,
    /// TLS family: cards that hold a TLS session afterwards.
    pub with_session: u64,
    /// SIM/AKA family: cards that hold a fast re-authentication identity
    /// afterwards.
    pub with_reauth_identity: u64,
    /// Priming payments that failed or were declined (their card may
    /// still hold a session or identity).
    pub not_approved: u64,
    pub seconds: f64,
}

impl Primed {
    /// `12 hold a session`: what the primed cards resume with.
    pub fn holding(&self, tls_family: bool) -> String {
        if tls_family {
            format!("{} hold a session", self.with_session)
        } else {
            format!("{} hold a fast re-authentication identity", self.with_reauth_identity)
        }
    }
}

/// `--resumption on`: one payment per card, one terminal per hand, before
/// the run (not measured), so that each card holds a TLS session or a fast
/// re-authentication identity. Cards left when `limit` has passed are not
/// primed.
pub async fn prime(plan: &Plan, clients: Vec<Issuer>, hands: Vec<Vec<Card>>) -> (Vec<Issuer>, Vec<Vec<Card>>, Primed) {
    let Some(template) = plan.prime.clone() else { return (clients, hands, Primed::default()) };
    let began = Instant::now();
    let limit = began + Duration::from_secs(120);
    let run_id = format!("P{:x}{}", now_ms(), hex::encode(rand::random::<[u8; 2]>()));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (mut client, mut cards)) in clients.into_iter().zip(hands).enumerate() {
        let (template, settings, run_id) = (template.clone(), plan.settings.clone(), run_id.clone());
        tasks.spawn(async move {
            let (mut primed, mut not_approved) = (0u64, 0u64);
            let mut holder = AutoAccept;
            for (n, card) in cards.iter_mut().enumerate() {
                if Instant::now() >= limit {
                    break;
                }
                let details = PaymentDetails {
                    transaction_id: format!("{run_id}-{index}-{n}"),
                    merchant_id: template.merchant_id.clone(),
                    amount: template.amount,
                    currency: template.currency,
                    installments: 0,
                    terminal_nonce: rand::random(),
                    terminal_time_ms: now_ms(),
                };
                let (_, result) = simulated::run(
                    card,
                    &mut holder,
                    &mut client.conversation(&settings),
                    &settings,
                    Request::Payment(&details),
                )
                .await;
                primed += 1;
                if !matches!(result, Ok(Finished { answer: Answer::Approved { .. }, .. })) {
                    not_approved += 1;
                }
            }
            let with_session = cards.iter().filter(|c| c.has_session()).count() as u64;
            let with_reauth = cards.iter().filter(|c| c.has_reauth_identity()).count() as u64;
            (index, client, cards, primed, (with_session, with_reauth), not_approved)
        });
    }
    let mut done = Vec::with_capacity(tasks.len());
    let mut primed = Primed::default();
    while let Some(joined) = tasks.join_next().await {
        // A priming task does not panic; if one did, its hand is lost and the
        // run goes on with fewer terminals.
        let Ok((index, client, cards, n, (with_session, with_reauth), not_approved)) = joined else { continue };
        primed.cards += n;
        primed.with_session += with_session;
        primed.with_reauth_identity += with_reauth;
        primed.not_approved += not_approved;
        done.push((index, client, cards));
    }
    done.sort_by_key(|(index, _, _)| *index);
    primed.seconds = began.elapsed().as_secs_f64();
    let (clients, hands) = done.into_iter().map(|(_, client, cards)| (client, cards)).unzip();
    (clients, hands, primed)
}

/// One terminal: conversations until the deadline, each with the next card
/// of its hand.
pub async fn worker(shared: Arc<Shared>, index: usize, mut client: Issuer, mut cards: Vec<Card>) {
    let mut holder = AutoAccept;
    let mut sequence: u64 = 0;
    let mut turn = 0usize;
    while let Some(start) = shared.next_start() {
        tokio::time::sleep_until(start).await;
        let count = cards.len();
        let card = &mut cards[turn % count];
        turn += 1;
        // --resumption off: a full authentication every time. An in-memory
        // card writes nothing back, so this cannot fail.
        let tls = shared.plan.method.is_tls_family();
        if !shared.plan.resumption {
            let _ = if tls { card.forget_session() } else { card.forget_identities() };
        }
        let offered = if tls && card.has_session() {
            Offered::TlsSession
        } else if !tls && card.has_reauth_identity() {
            Offered::ReauthIdentity
        } else {
            Offered::Nothing
        };
        sequence += 1;
        let details = shared.plan.payment.as_ref().map(|p| PaymentDetails {
            // B<run>-<worker>-<n>: unique per merchant, at most 40 bytes.
            transaction_id: format!("B{}-{index}-{sequence}", shared.run_id),
            merchant_id: p.merchant_id.clone(),
            amount: p.amount,
            currency: p.currency,
            installments: 0,
            terminal_nonce: rand::random(),
            terminal_time_ms: now_ms(),
        });
        let (result, rounds, finished, conclusion) =
            converse(&shared, &mut client, card, &mut holder, details.as_ref()).await;
        if let (Some(journal), Some(details), Some(conclusion)) = (&shared.journal, &details, conclusion) {
            // Before the next payment: an in-doubt one's reversal is owed first.
            journal.record(details, &card.file().card_id, conclusion).await;
        }
        match &result {
            Ok(_) => shared.live.completed.fetch_add(1, Ordering::Relaxed),
            Err(_) => shared.live.errors.fetch_add(1, Ordering::Relaxed),
        };
        let mut recorder = shared.recorder.lock().unwrap_or_else(|e| e.into_inner());
        recorder.record(start.into_std(), finished.into_std(), rounds, offered, result);
    }
}

/// One payment (or authentication) with `card`; returns its result, the
/// RADIUS round trips it took, the moment it ended and, for a payment when
/// a journal is kept, what the terminal concluded.
async fn converse(
    shared: &Shared,
    client: &mut Issuer,
    card: &mut Card,
    holder: &mut AutoAccept,
    details: Option<&PaymentDetails>,
) -> (Result<Outcome, Failure>, usize, Instant, Option<Conclusion>) {
    let request = match details {
        Some(d) => Request::Payment(d),
        None => Request::AuthOnly,
    };
    let settings = &shared.plan.settings;
    let (card_report, result) =
        simulated::run(card, holder, &mut client.conversation(settings), settings, request).await;
    // The card has checked the final answer too (in process: microseconds).
    let finished = Instant::now();
    let rounds = result.as_ref().map_or(0, |done| done.rounds);
    let conclusion = (shared.journal.is_some() && details.is_some()).then(|| Conclusion::of(&result));
    let outcome = match result {
        Ok(done) => match done.answer {
            Answer::Approved { .. } => Ok(Outcome::Approved),
            Answer::Declined { code, .. } => Ok(Outcome::Declined(code)),
            Answer::Authenticated => Ok(Outcome::Authenticated),
            Answer::RefusedByCard => Ok(Outcome::RefusedByCard),
        },
        Err(failed) => Err(classify(failed.error, failed.in_doubt, card_report.as_ref().err())),
    };
    // A card that disagrees with what the terminal shows is worth knowing
    // even when the terminal got its answer.
    let outcome = match (outcome, &card_report) {
        (Ok(o), Ok(report)) if report.display_agrees == Some(false) => Err(Failure {
            kind: "card-disagrees",
            message: format!("the card does not agree with the displayed {o:?}: it saw {:?}", report.outcome),
            in_doubt: false,
        }),
        (Ok(Outcome::Approved | Outcome::Authenticated), Ok(report))
            if matches!(report.outcome, CardOutcome::Failed(_)) =>
        {
            Err(Failure {
                kind: "card-failed",
                message: format!("the server accepted but the card's method failed: {:?}", report.outcome),
                in_doubt: false,
            })
        }
        (other, _) => other,
    };
    (outcome, rounds, finished, conclusion)
}

/// The error kind of a failed conversation. A card link that closed is the
/// card's doing: its own error says why.
fn classify(error: PaymentError, in_doubt: bool, card_error: Option<&CardError>) -> Failure {
    let (kind, message) = match (&error, card_error) {
        (PaymentError::Link(_) | PaymentError::CardProtocol(_), Some(card)) => ("card", card.to_string()),
        (PaymentError::Link(_), None) => ("link", error.to_string()),
        (PaymentError::CardTimeout(_), _) => ("card-timeout", error.to_string()),
        (PaymentError::CardProtocol(_), None) => ("card-protocol", error.to_string()),
        (PaymentError::Radius(ClientError::NoAnswer { .. }), _) => ("timeout", error.to_string()),
        (PaymentError::Radius(ClientError::Io(_)), _) => ("socket", error.to_string()),
        (PaymentError::Radius(ClientError::NoConnection(_)), _) => ("connect", error.to_string()),
        (PaymentError::Radius(_), _) => ("radius", error.to_string()),
        (PaymentError::Diameter(DiameterError::Timeout { .. }), _) => ("timeout", error.to_string()),
        (PaymentError::Diameter(_), _) => ("diameter", error.to_string()),
        (PaymentError::UnexpectedAnswer(_) | PaymentError::NoEap | PaymentError::BadAnswer(_), _) => {
            ("bad-answer", error.to_string())
        }
        (PaymentError::TooManyRounds, _) => ("too-many-rounds", error.to_string()),
        (PaymentError::Details(_), _) => ("details", error.to_string()),
    };
    Failure { kind, message, in_doubt }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e_card::card_file::{AkaCard, CardFile, VERSION};

    #[test]
    fn cards_are_dealt_into_disjoint_hands() {
        let cards: Vec<Card> = (0..10)
            .map(|i| {
                Card::in_memory(CardFile {
                    version: VERSION,
                    card_id: format!("c{i}"),
                    method: "aka".into(),
                    identity: format!("0c{i}@x"),
                    realm: "x".into(),
                    aka: Some(AkaCard::new("00".repeat(16), "00".repeat(16))),
                    tls: None,
                })
            })
            .collect();
        let hands = deal(cards, 3);
        let ids: Vec<Vec<String>> =
            hands.iter().map(|h| h.iter().map(|c| c.file().card_id.clone()).collect()).collect();
        assert_eq!(ids, [vec!["c0", "c3", "c6", "c9"], vec!["c1", "c4", "c7"], vec!["c2", "c5", "c8"]]);
    }

    #[test]
    fn a_closed_link_is_blamed_on_the_card_when_the_card_says_why() {
        let closed = PaymentError::Link(aaa_proto::card_link::LinkError::Closed);
        let card = CardError::Closed { during: "in the middle" };
        let f = classify(closed, false, Some(&card));
        assert_eq!(f.kind, "card");
        assert!(f.message.contains("in the middle"));
        let f = classify(PaymentError::TooManyRounds, true, None);
        assert_eq!((f.kind, f.in_doubt), ("too-many-rounds", true));
    }
}
