//! Wire codecs shared by the eapay payment server and merchant terminal.
//!
//! Why our own codec: the crates.io `radius` (0.4) crate treats every
//! Access-Request as authentic (no Message-Authenticator verification), cannot
//! decode vendor attributes, encodes Tunnel-Password wrongly and truncates
//! packets over 1500 bytes; the `diameter` (0.7) crate has no peer state
//! machine and no RFC 4072, and panics on short AVPs. Every parser here works
//! on explicit bounds and returns an error instead of panicking.
#![forbid(unsafe_code)]

pub mod dictionary;
pub mod radius;
