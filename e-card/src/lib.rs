//! The eapay electronic card: the EAP peer side of a payment.
//!
//! This crate holds the card's secrets; the merchant terminal must never
//! depend on it (it only relays frames). So far it defines the card file
//! that `eapay-server card issue` writes; the peer driver, the card link and
//! `eapay-card serve` build on it.
#![forbid(unsafe_code)]

pub mod card_file;
pub mod peer;
