//! The TLS family: EAP-TLS (RFC 5216, RFC 9190) and EAP-TTLS (RFC 5281),
//! sans-IO over OpenSSL with in-memory buffers.
//!
//! - [`fragment`]: EAP-TLS/TTLS framing (L/M/S flags), reassembly with caps, fragmentation.
//! - [`engine`]: one TLS connection over memory, server or client.
//! - [`keys`]: MSK/EMSK and Session-Id for TLS 1.2 and 1.3.
//! - [`config`]: versions, server and card options, the OpenSSL contexts.
//! - [`server`], [`peer`]: the EAP-TLS state machines.
//! - [`confirmation`]: the card's signed payment confirmation (`EAPAY1` records).
//! - [`spki`]: a certificate's SubjectPublicKeyInfo, cut out of its DER.
//! - [`session_cards`]: whom a resumable session authenticated (TTLS).
//! - [`openssl_gaps`]: what the `openssl` crate offers only as `unsafe`.

pub mod config;
pub mod confirmation;
pub mod engine;
pub mod fragment;
pub mod keys;
pub mod openssl_gaps;
pub mod peer;
pub mod server;
pub mod session_cards;
pub mod spki;

pub use config::{CardTls, ClientAuth, PaymentToSign, TlsPeerOptions, TlsServerConfig, TlsServerOptions, TlsVersion};
pub use peer::EapTlsPeer;
pub use server::EapTlsServer;

#[cfg(test)]
pub(crate) mod tests;
