//! The eapay payment server: a RADIUS and Diameter AAA server
//! running the EAP methods of `eap-methods` against the issuer's card store.
//!
//! [`core`] is protocol-neutral (conversations, payment decision,
//! settlement, counters); [`radius`] and [`diameter`] are adapters from
//! their wire formats to the core.
//!
//! Decisions recorded here (DESIGN.md is silent on them):
//! - Relative paths in `eapay.toml` are relative to the working directory;
//!   `init` writes absolute ones.
//! - Only EAP is accepted: an Access-Request without EAP-Message is
//!   rejected, since PAP/CHAP outside a tunnel would hand card credentials
//!   to the terminal.
//! - Status-Server is answered on both ports and never cached (RFC 5997).
//! - Cards, merchants and authorizations live in the ledger (SQLite by
//!   default, PostgreSQL by URL); K/OPc are sealed under the key-encryption
//!   key (`$EAPAY_KEK` or `kek.key`), the issuer signing key too.
//! - A request without payment attributes is authentication only: it is
//!   declined 12, so an AAA client that is not a terminal learns nothing.
//! - Every answer about a well-formed payment is recorded, declines too, so
//!   a repeated (merchant, transaction id) always gets the original answer.
//!   Refusals that name no usable transaction (malformed attributes, a
//!   merchant the terminal may not act for) leave an audit line only: a
//!   terminal must not burn another merchant's transaction ids.
//! - A blocked card still authenticates and is then declined 62; an unknown
//!   card is declined 14, a failed authentication 63.
//! - A tombstone (reversal before the original) declines the late original
//!   with 12. Partial capture and refund are not supported (13).
//! - An approval committed but not delivered (the AT_RESULT_IND round
//!   failed, the table was full, the conversation was abandoned) is reversed
//!   by the server itself, and the terminal is told 63.
//! - Eapay-Receipt longer than one attribute is split over several, in order.
//! - A refused settlement still gets an Accounting-Response, carrying
//!   Eapay-Decline-Code and Eapay-Decline-Reason, so the terminal stops retrying.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auc;
pub mod cards;
pub mod config;
pub mod core;
pub mod demo;
pub mod diameter;
pub mod error;
pub mod fsutil;
pub mod identities;
pub mod ledger;
pub mod metrics;
pub mod mtls;
pub mod pki;
pub mod radius;
pub mod seal;
pub mod server;

/// The data directory of the zero-config demo.
pub const DEFAULT_DATA_DIR: &str = "eapay-data";
