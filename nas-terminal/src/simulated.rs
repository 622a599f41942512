//! A card played inside the terminal's process (`pay --card`, the load
//! generator, the server's demo): e-card's card side and the terminal side
//! of one payment, joined by an in-process card link.
//!
//! Only with the `simulated-card` feature: it links e-card, which holds card
//! secrets a real terminal must never have.

use aaa_proto::card_link;
use e_card::{Card, CardError, CardReport, Holder};

use crate::payment::{self, Failed, Finished, Request, TerminalSettings};
use crate::transport::Transport;

/// Runs one payment (or authentication) of `card`, held by `holder`, over
/// `transport`: what the card saw, and what the terminal got.
pub async fn run<T: Transport>(
    card: &mut Card,
    holder: &mut dyn Holder,
    transport: &mut T,
    settings: &TerminalSettings,
    request: Request<'_>,
) -> (Result<CardReport, CardError>, Result<Finished, Failed>) {
    let (mut terminal_end, mut card_end) = card_link::channel();
    let card_side = async move {
        let report = e_card::serve_one(&mut card_end, card, holder).await;
        // A card that gave up closes its end, so the terminal does not wait
        // for it until its timeout.
        drop(card_end);
        report
    };
    let terminal_side = async {
        let result = payment::run_over(&mut terminal_end, transport, settings, request).await;
        // The card waits for the next payment until the link closes.
        drop(terminal_end);
        result
    };
    tokio::join!(card_side, terminal_side)
}
