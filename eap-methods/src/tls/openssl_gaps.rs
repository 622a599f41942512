//! The two OpenSSL calls the TLS family needs that the `openssl` crate
//! exposes only as `unsafe fn` or not at all. They are the only unsafe code
//! in this crate (`#![deny(unsafe_code)]`, allowed here alone): resumption is
//! part of the contract (RFC 5216 §2.1.2, RFC 9190 §2.1.3) and there is no
//! safe way to it.
//!
//! - `SSL_set_session` ([`SslRef::set_session`]): a card offering its stored
//!   session (rust-openssl issue #1041). Sound as used here: the session comes
//!   fresh from `d2i_SSL_SESSION`, so it sits in no `SSL_CTX`'s cache and
//!   carries no ex-data of another context, the condition `set_session`
//!   documents.
//! - `SSL_CTX_set_timeout`: the server's session lifetime (openssl-sys has
//!   no binding; the symbol is libssl's own). A plain setter on a context
//!   builder nobody else holds yet.
//!
//! [`SslRef::set_session`]: openssl::ssl::SslRef::set_session

use std::time::Duration;

use openssl::ssl::{SslContextBuilder, SslRef, SslSessionRef};

#[allow(unsafe_code)]
pub(crate) fn offer_session(ssl: &mut SslRef, session: &SslSessionRef) -> bool {
    // SAFETY: see the module docs: a session decoded from DER just now.
    unsafe { ssl.set_session(session) }.is_ok()
}

#[allow(unsafe_code)]
pub(crate) fn set_session_timeout(ctx: &mut SslContextBuilder, lifetime: Duration) {
    let secs = std::os::raw::c_long::try_from(lifetime.as_secs()).unwrap_or(std::os::raw::c_long::MAX);
    // SAFETY: a plain setter on a live context builder.
    unsafe { SSL_CTX_set_timeout(ctx.as_ptr(), secs) };
}

// libssl's own symbol; openssl-sys has no binding for it.
#[allow(unsafe_code)]
extern "C" {
    fn SSL_CTX_set_timeout(ctx: *mut openssl_sys::SSL_CTX, t: std::os::raw::c_long) -> std::os::raw::c_long;
}
