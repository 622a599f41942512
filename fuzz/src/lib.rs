//! What the structured fuzz targets share: the fuzz input read as a script
//! ([`tape`]), a real server and a real card talking through it
//! ([`conversation`]), and the worlds they run in: the SIM/AKA issuer and
//! cards ([`aka`]), the TLS keys and contexts ([`tls`]).
//!
//! The seed generator (`examples/seeds.rs`) runs the same code, so a seed
//! it records replays the conversation it recorded.

pub mod aka;
pub mod conversation;
pub mod tape;
pub mod targets;
pub mod tls;
