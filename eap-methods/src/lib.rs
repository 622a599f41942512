//! Sans-IO EAP for eapay: the packet codec (RFC 3748), the server and peer
//! sessions, and the methods with their crypto.
//!
//! Nothing in this crate touches a socket, a clock or a database. A method is
//! a state machine fed with the bytes of one EAP packet; it answers with the
//! next packet, a [`method::Query`] for the outside world (an authentication
//! vector from the card store, say), or a result. `aaa-server` and `e-card`
//! supply the I/O; the tests here drive server and peer against each other in
//! memory, and the fuzz targets (`fuzz/`, FUZZING.md) feed the decoders
//! arbitrary bytes.
#![deny(unsafe_code)]

pub mod crypto;
pub mod error;
pub mod method;
pub mod packet;
pub mod peer;
pub mod server;
pub mod sim_aka;
pub mod tls;
pub mod ttls;

pub use error::EapError;
pub use method::{Answer, AuthVector, Authenticated, CardSignature, FailureReason, Keys, Pin, Query, Verdict};
pub use packet::{Code, EapType, Packet};
