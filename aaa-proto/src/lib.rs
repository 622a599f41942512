//! Wire codecs shared by the eapay payment server and merchant terminal.
//!
//! Why our own codec: the crates.io `radius` (0.4) crate treats every
//! Access-Request as authentic (no Message-Authenticator verification), cannot
//! decode vendor attributes, encodes Tunnel-Password wrongly and truncates
//! packets over 1500 bytes; the `diameter` (0.7) crate has no peer state
//! machine and no RFC 4072, and panics on short AVPs. Every parser here works
//! on explicit bounds and returns an error instead of panicking.
//!
//! - [`dictionary`]: attribute numbers and VALUE enums generated from `dictionaries/radius/`.
//! - [`diameter`]: the Diameter AVP codec (RFC 6733 §4.1), also the EAP-TTLS inner attribute layout.
//! - [`radius`]: the RADIUS packet codec, authenticators, hidden attributes and vendor attributes.
//! - [`payment`]: the Eapay payment attributes, their canonical form and the result the card is told.
//! - [`currency`]: ISO 4217 currencies and exact decimal amounts in minor units.
//! - [`eapol`]: the card link's EAPOL framing, with the payment-details frame.
//! - [`card_link`]: card links over TCP, Unix sockets and in-process channels.
//! - [`receipt`]: issuer-signed (Ed25519) approval receipts carried in Eapay-Receipt.
//! - [`time`]: calendar dates of Unix times.
//! - [`durable`]: crash-safe file replacement (not a wire format; the one crate server, card and terminal share).
#![forbid(unsafe_code)]

#[cfg(feature = "card-link")]
pub mod card_link;
pub mod currency;
pub mod diameter;
pub mod dictionary;
pub mod durable;
pub mod eapol;
pub mod payment;
pub mod radius;
pub mod receipt;
pub mod time;
