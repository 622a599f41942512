//! The eapay merchant terminal: a RADIUS client that relays EAP between
//! the card and the payment server without being able to read or alter it.
//!
//! This crate must never depend on `e-card`: a terminal moves frames, it
//! does not hold card secrets.
#![forbid(unsafe_code)]

pub mod client;
pub mod relay;
