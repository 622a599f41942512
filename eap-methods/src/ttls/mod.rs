//! EAP-TTLS v0 (RFC 5281; TLS 1.3: RFC 9427) with inner PAP and inner EAP,
//! on the TLS family's framing, engine and key derivation ([`crate::tls`]).
//!
//! - [`avps`]: the attributes inside the tunnel, including the card's payment
//!   confirmation and the payment result (DESIGN.md §4).
//! - [`server`]: [`EapTtlsServer`], with inner PAP (the card's PIN,
//!   [`crate::method::Query::Pin`]) and inner EAP-AKA/AKA' ([`TtlsInner`]).
//! - [`peer`]: [`EapTtlsPeer`], the card ([`TtlsPeerOptions`], [`TtlsPeerInner`]).
//! - phase 2 itself (the inner conversation without the TLS) is private.

pub mod avps;
mod inner;
pub mod peer;
pub mod server;
#[cfg(test)]
mod tests;

pub use inner::{TtlsInner, TtlsPeerInner};
pub use peer::{EapTtlsPeer, TtlsPeerOptions};
pub use server::EapTtlsServer;
