//! EAP-AKA and EAP-AKA': server and peer.

pub mod peer;
pub mod server;
#[cfg(test)]
mod tests;

pub use peer::{AkaPeer, AkaPeerConfig};
pub use server::{AkaServer, AkaServerConfig};
