//! Mutual TLS for the terminal-facing transports: RADIUS over TLS
//! (`crate::radius::tls`) and Diameter over TLS (`crate::diameter`).
//!
//! Both present the server certificate the EAP methods use and accept a
//! client certificate only if it chains to the issuer CA and is valid now;
//! which terminal it is, and whether it may connect at all, is then decided
//! by the SHA-256 of its key ([`peer_key`]) against the keys the
//! configuration registers. The CA alone is not enough: it also signs card
//! certificates.

use openssl::ssl::{SslAcceptor, SslMethod, SslOptions, SslRef, SslSessionCacheMode, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use sha2::{Digest, Sha256};

use crate::error::ServerError;

/// The SHA-256 of a terminal's SubjectPublicKeyInfo, as registered.
pub type KeyDigest = [u8; 32];

/// A server-side TLS context: `chain_pem` and `key_pem` (the server's),
/// client certificates required and verified against `ca_pem`, TLS
/// `min_version` ("1.3" or "1.2") and up. `what` names the configuration
/// section in errors.
pub fn acceptor(
    what: &str,
    chain_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    min_version: &str,
) -> Result<SslAcceptor, ServerError> {
    let tls = |e: openssl::error::ErrorStack| ServerError::Config(format!("{what}: {e}"));
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(tls)?;
    b.set_min_proto_version(Some(min_version_of(what, min_version)?)).map_err(tls)?;
    let mut chain = X509::stack_from_pem(chain_pem).map_err(tls)?.into_iter();
    let leaf = chain.next().ok_or_else(|| ServerError::Config(format!("{what}: empty server chain")))?;
    b.set_certificate(&leaf).map_err(tls)?;
    for extra in chain {
        b.add_extra_chain_cert(extra).map_err(tls)?;
    }
    let key = openssl::pkey::PKey::private_key_from_pem(key_pem).map_err(tls)?;
    b.set_private_key(&key).map_err(tls)?;
    b.check_private_key().map_err(tls)?;
    let store = b.cert_store_mut();
    for ca in X509::stack_from_pem(ca_pem).map_err(tls)? {
        store.add_cert(ca).map_err(tls)?;
    }
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    // Connections are long-lived, and a resumed session would skip the
    // client certificate this module is about. Under TLS 1.3 NO_TICKET
    // alone still sends two (stateful) tickets that can never resume:
    // GnuTLS peers (freeDiameter) log each as a TLS error, and FreeRADIUS
    // 3.2.1 as a RadSec client stalls when they cross its first request
    // (logged as sent, never written; tests/tests/radsec_interop.rs).
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_options(SslOptions::NO_TICKET);
    b.set_num_tickets(0).map_err(tls)?;
    Ok(b.build())
}

/// A configured `min_version`: "1.3" or "1.2".
pub fn min_version_of(what: &str, text: &str) -> Result<SslVersion, ServerError> {
    match text {
        "1.3" => Ok(SslVersion::TLS1_3),
        "1.2" => Ok(SslVersion::TLS1_2),
        other => Err(ServerError::Config(format!("{what}.min_version {other:?}: \"1.2\" or \"1.3\""))),
    }
}

/// The digest of the key in the peer's certificate, after a handshake.
pub fn peer_key(ssl: &SslRef) -> Option<KeyDigest> {
    let spki = ssl.peer_certificate()?.public_key().and_then(|k| k.public_key_to_der()).ok()?;
    Some(Sha256::digest(&spki).into())
}

/// A configured `key_sha256` (64 hex digits).
pub fn parse_key(what: &str, hex_digits: &str) -> Result<KeyDigest, ServerError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut key)
        .map_err(|_| ServerError::Config(format!("{what}: key_sha256 must be 64 hex digits")))?;
    Ok(key)
}
