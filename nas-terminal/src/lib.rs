//! The eapay merchant terminal: a RADIUS and Diameter client that relays EAP between
//! the card and the payment server without being able to read or alter it.
//!
//! - [`client`]: RADIUS transactions with retransmission, failover and
//!   strict reply verification, over UDP or TLS.
//! - [`radsec`]: RADIUS over TLS (RFC 6614): shared connections, identifiers
//!   per connection, the terminal's certificate.
//! - [`diameter`]: the Diameter client transport: peer connections, failover,
//!   over TCP or TLS.
//! - [`tls`]: the terminal's TLS client (its certificate, the issuer CA),
//!   shared by RADIUS and Diameter over TLS.
//! - [`payment`]: one payment over a card link (DESIGN.md §1).
//! - [`transport`]: the payment's EAP rounds over RADIUS or Diameter.
//! - [`reversal`]: timeout reversals, stored and forwarded.
//! - `simulated` (feature `simulated-card`): a card played in process.
//!
//! The library never depends on `e-card`: a terminal moves frames, it does
//! not hold card secrets. Only the `simulated-card` feature (the `--card`
//! option of `pay` and the load generator, which play the card in process)
//! links it; a terminal maker builds with `--no-default-features`.
#![forbid(unsafe_code)]

pub mod client;
pub mod diameter;
pub mod payment;
pub mod radsec;
pub mod reversal;
#[cfg(feature = "simulated-card")]
pub mod simulated;
pub mod tls;
pub mod transport;
