//! The eapay electronic card: the EAP peer side of a payment.
//!
//! This crate holds the card's secrets; the merchant terminal must never
//! depend on it (it only relays frames).
//!
//! - [`card_file`]: the card file `eapay-server card issue` writes.
//! - [`peer`]: the EAP peer a card file drives.
//! - [`card`]: a loaded [`Card`], and how its state (the SQN window) is
//!   written back atomically after each authentication.
//! - [`holder`]: the person holding the card, who accepts or refuses.
//! - [`session`]: the card's side of a card link ([`serve_link`],
//!   [`serve_one`]), used by `eapay-card serve`, the terminal's tests and
//!   the load generator.
//! - [`show`]: payment details and results in words.
//!
//! Not yet kept across runs: AKA pseudonyms and fast re-authentication
//! identities (the server issues no AT_NEXT_PSEUDONYM yet) and TLS session
//! tickets; `eap_methods::method::PeerMemory` is where they will come from.
#![forbid(unsafe_code)]

pub mod card;
/// The card file format, shared with the issuer (`eapay-card-file`).
pub use eapay_card_file as card_file;
pub mod error;
pub mod holder;
pub mod peer;
pub mod session;
pub mod show;

pub use card::Card;
pub use error::CardError;
pub use holder::{AmountLimit, Ask, AutoAccept, Holder, Refuse};
pub use session::{
    serve_link, serve_link_with, serve_next, serve_one, serve_one_with, CardOutcome, CardReport, ServeOptions,
};
