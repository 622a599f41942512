//! The eapay payment server: a RADIUS (and, later, Diameter) AAA server
//! running the EAP methods of `eap-methods` against the issuer's card store.
//!
//! Decisions recorded here (DESIGN.md is silent on them):
//! - Relative paths in `eapay.toml` are relative to the working directory;
//!   `init` writes absolute ones.
//! - Only EAP is accepted: an Access-Request without EAP-Message is
//!   rejected, since PAP/CHAP outside a tunnel would hand card credentials
//!   to the terminal.
//! - Status-Server is answered on both ports and never cached (RFC 5997).
//! - Until the ledger lands, cards live in `<data_dir>/cards.json` with K/OPc
//!   sealed under the key-encryption key (`$EAPAY_KEK` or `kek.key`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod cards;
pub mod config;
pub mod counters;
pub mod eap;
pub mod error;
pub mod fsutil;
pub mod radius;
pub mod seal;
pub mod server;

/// The data directory of the zero-config demo.
pub const DEFAULT_DATA_DIR: &str = "eapay-data";
