//! Diameter (RFC 6733) for the terminal: the transport under the Diameter EAP
//! (RFC 4072) and accounting conversations.
//!
//! - [`client`]: one long-lived TCP connection per configured server (a
//!   server may be a relay agent such as freeDiameterd), each driven by the
//!   sans-IO [`aaa_proto::diameter::peer::Peer`] (capabilities exchange,
//!   watchdog, disconnect), reconnecting after Tc; requests matched to their
//!   answers by Hop-by-Hop id, with RFC 6733 §5.5.4 failover (same End-to-End
//!   id, T flag) to the next open connection.

pub mod client;

pub use client::{DiameterClient, DiameterError, DiameterSettings};
