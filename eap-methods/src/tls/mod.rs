//! The TLS family: EAP-TLS (RFC 5216, RFC 9190) and EAP-TTLS (RFC 5281),
//! sans-IO over OpenSSL with in-memory buffers.
//!
//! - [`confirmation`]: the card's signed payment confirmation (`EAPAY1` records).

pub mod confirmation;
