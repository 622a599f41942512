//! One TLS connection over memory, server or client: TLS octets go in with
//! [`TlsEngine::feed`], come out with [`TlsEngine::take_output`]; nothing
//! touches a socket. Shared by EAP-TLS and EAP-TTLS.
//!
//! OpenSSL errors become a [`TlsError`] with a one-line reason; nothing
//! here panics on what the other side sends.

use std::fmt;
use std::io::{self, Read, Write};

use openssl::error::ErrorStack;
use openssl::ssl::{ErrorCode, ShutdownState, Ssl, SslContextRef, SslRef, SslSession, SslStream};

use crate::tls::config::TlsVersion;
use crate::tls::openssl_gaps;

/// OpenSSL reports a received alert as reason `SSL_AD_REASON_OFFSET` +
/// the alert description.
const ALERT_REASON_OFFSET: i32 = 1000;
/// Most plaintext one conversation reads from the other side before the
/// engine refuses more (the EAP-TLS records are a few hundred octets; TTLS
/// AVPs stay far below this).
pub const MAX_APPLICATION_DATA: usize = 64 * 1024;

/// TLS description codes of alerts (RFC 8446 §6) that say "your
/// certificate or your proof did not satisfy me".
const AUTHENTICATION_ALERTS: &[u8] = &[
    42,  // bad_certificate
    43,  // unsupported_certificate
    44,  // certificate_revoked
    45,  // certificate_expired
    46,  // certificate_unknown
    48,  // unknown_ca
    49,  // access_denied
    51,  // decrypt_error
    116, // certificate_required
];

/// Why a TLS operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// What OpenSSL said, one line.
    pub reason: String,
    /// The fatal alert the other side sent, if that is what ended the
    /// connection (TLS AlertDescription).
    pub peer_alert: Option<u8>,
    /// A signature (CertificateVerify) or Finished check failed: the other
    /// side did not prove its key.
    pub failed_proof: bool,
}

impl TlsError {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), peer_alert: None, failed_proof: false }
    }

    fn from_stack(stack: &ErrorStack) -> Self {
        let peer_alert = stack.errors().iter().find_map(|e| {
            let code = e.reason_code() - ALERT_REASON_OFFSET;
            u8::try_from(code).ok().filter(|_| e.library() == Some("SSL routines"))
        });
        let failed_proof = stack
            .errors()
            .iter()
            .filter_map(|e| e.reason())
            .any(|r| matches!(r, "bad signature" | "digest check failed" | "decryption failed or bad record mac"));
        Self { reason: reasons(stack), peer_alert, failed_proof }
    }

    fn from_ssl(e: &openssl::ssl::Error) -> Self {
        if let Some(stack) = e.ssl_error() {
            if !stack.errors().is_empty() {
                return Self::from_stack(stack);
            }
        }
        match e.io_error() {
            Some(io) => Self::new(format!("I/O: {io}")),
            None if e.code() == ErrorCode::ZERO_RETURN => Self::new("the other side closed the TLS connection"),
            None => Self::new(format!("TLS error code {}", e.code().as_raw())),
        }
    }

    /// True if the other side refused our certificate or our proof.
    pub fn peer_rejected_authentication(&self) -> bool {
        self.peer_alert.is_some_and(|a| AUTHENTICATION_ALERTS.contains(&a))
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The reasons in an OpenSSL error stack, one line, without file names.
pub fn reasons(stack: &ErrorStack) -> String {
    let mut parts: Vec<&str> = stack.errors().iter().filter_map(|e| e.reason()).collect();
    parts.dedup();
    if parts.is_empty() {
        "unknown OpenSSL error".into()
    } else {
        parts.join("; ")
    }
}

/// Two byte buffers standing in for the network.
#[derive(Debug, Default)]
struct MemoryTransport {
    incoming: Vec<u8>,
    read_at: usize,
    outgoing: Vec<u8>,
}

impl Read for MemoryTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = &self.incoming[self.read_at..];
        if available.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.read_at += n;
        if self.read_at == self.incoming.len() {
            self.incoming.clear();
            self.read_at = 0;
        }
        Ok(n)
    }
}

impl Write for MemoryTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS connection whose transport is memory.
pub struct TlsEngine {
    stream: SslStream<MemoryTransport>,
    established: bool,
    closed: bool,
    resumption_offered: bool,
    application_read: usize,
}

impl fmt::Debug for TlsEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsEngine")
            .field("established", &self.established)
            .field("version", &self.version())
            .field("session_reused", &self.session_reused())
            .finish_non_exhaustive()
    }
}

impl TlsEngine {
    /// The server side of a new connection.
    pub fn server(context: &SslContextRef) -> Result<Self, TlsError> {
        let mut ssl = Ssl::new(context).map_err(|e| TlsError::from_stack(&e))?;
        ssl.set_accept_state();
        Self::wrap(ssl, false)
    }

    /// The client side of a new connection, offering `session` (DER, as
    /// [`TlsEngine::session_der`] gave it) for resumption when possible. A
    /// session that does not decode or cannot be offered only means a full
    /// handshake.
    pub fn client(context: &SslContextRef, session: Option<&[u8]>) -> Result<Self, TlsError> {
        let ssl = Ssl::new(context).map_err(|e| TlsError::from_stack(&e))?;
        Self::client_ssl(ssl, session)
    }

    /// A client on a connection its context's owner has set up already
    /// (`ClientContext::connect`).
    pub fn client_ssl(mut ssl: Ssl, session: Option<&[u8]>) -> Result<Self, TlsError> {
        ssl.set_connect_state();
        let offered = match session.map(SslSession::from_der) {
            Some(Ok(session)) => openssl_gaps::offer_session(&mut ssl, &session),
            _ => false,
        };
        Self::wrap(ssl, offered)
    }

    fn wrap(ssl: Ssl, resumption_offered: bool) -> Result<Self, TlsError> {
        let stream = SslStream::new(ssl, MemoryTransport::default()).map_err(|e| TlsError::from_stack(&e))?;
        Ok(Self { stream, established: false, closed: false, resumption_offered, application_read: 0 })
    }

    /// Marks the connection as cleanly ended, so the server's session
    /// cache keeps its session for resumption by session id (TLS 1.2
    /// without tickets, as wpa_supplicant does): OpenSSL drops the session of
    /// a connection freed without a shutdown as a "bad session". EAP never
    /// sends close_notify, so the method says it here, once the conversation
    /// succeeded; a failed one is left to be dropped.
    pub fn keep_session(&mut self) {
        self.stream.set_shutdown(ShutdownState::SENT | ShutdownState::RECEIVED);
    }

    /// True if the client offered a stored session.
    pub fn resumption_offered(&self) -> bool {
        self.resumption_offered
    }

    /// TLS octets received from the other side.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.stream.get_mut().incoming.extend_from_slice(bytes);
    }

    /// Drives the handshake with what was fed: `Ok(true)` once it is
    /// complete (and from then on), `Ok(false)` while it needs more input.
    /// Whatever it wrote is in [`TlsEngine::take_output`], an alert too.
    pub fn handshake(&mut self) -> Result<bool, TlsError> {
        if self.established {
            return Ok(true);
        }
        match self.stream.do_handshake() {
            Ok(()) => {
                self.established = true;
                Ok(true)
            }
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => Ok(false),
            Err(e) => Err(TlsError::from_ssl(&e)),
        }
    }

    /// True once the handshake completed.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// True once the other side sent close_notify.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// All application data available from what was fed (processing
    /// post-handshake messages such as a TLS 1.3 NewSessionTicket on the
    /// way). Empty when there is none. Only after the handshake.
    pub fn read_application_data(&mut self) -> Result<Vec<u8>, TlsError> {
        if !self.established {
            return Err(TlsError::new("application data before the handshake completed"));
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !self.closed {
            match self.stream.ssl_read(&mut buf) {
                Ok(n) => {
                    self.application_read += n;
                    if self.application_read > MAX_APPLICATION_DATA {
                        return Err(TlsError::new("more application data than a conversation may carry"));
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => self.closed = true,
                Err(e) => return Err(TlsError::from_ssl(&e)),
            }
        }
        Ok(out)
    }

    /// Writes application data (one record for up to 16 KiB).
    pub fn write_application_data(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if !self.established {
            return Err(TlsError::new("application data before the handshake completed"));
        }
        let mut written = 0;
        while written < data.len() {
            match self.stream.ssl_write(&data[written..]) {
                Ok(n) => written += n,
                Err(e) => return Err(TlsError::from_ssl(&e)),
            }
        }
        Ok(())
    }

    /// The TLS octets written since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.stream.get_mut().outgoing)
    }

    /// True if there is output waiting.
    pub fn has_output(&self) -> bool {
        !self.stream.get_ref().outgoing.is_empty()
    }

    /// TLS exporter (RFC 5705 / RFC 8446 §7.5): `len` octets for `label`
    /// and optional `context`. Only after the handshake.
    pub fn export_keying_material(&self, label: &str, context: Option<&[u8]>, len: usize) -> Result<Vec<u8>, TlsError> {
        if !self.established {
            return Err(TlsError::new("keying material before the handshake completed"));
        }
        let mut out = vec![0u8; len];
        self.stream.ssl().export_keying_material(&mut out, label, context).map_err(|e| TlsError::from_stack(&e))?;
        Ok(out)
    }

    /// The negotiated version, once the handshake is complete (before,
    /// OpenSSL reports the highest version enabled).
    pub fn version(&self) -> Option<TlsVersion> {
        if !self.established {
            return None;
        }
        self.stream.ssl().version2().and_then(TlsVersion::from_ssl_version)
    }

    /// True if the handshake resumed a session.
    pub fn session_reused(&self) -> bool {
        self.stream.ssl().session_reused()
    }

    /// The DER SubjectPublicKeyInfo of the other side's certificate (on a
    /// resumed session: the certificate of the original handshake).
    pub fn peer_spki(&self) -> Option<Vec<u8>> {
        let der = self.stream.ssl().peer_certificate()?.to_der().ok()?;
        crate::tls::spki::spki_of_certificate(&der).map(<[u8]>::to_vec)
    }

    /// The current session, DER (it holds the resumption secret).
    pub fn session_der(&self) -> Option<Vec<u8>> {
        self.stream.ssl().session()?.to_der().ok()
    }

    /// The ClientHello random.
    pub fn client_random(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.stream.ssl().client_random(&mut out);
        out
    }

    /// The ServerHello random.
    pub fn server_random(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.stream.ssl().server_random(&mut out);
        out
    }

    /// The OpenSSL connection, for anything else.
    pub fn ssl(&self) -> &SslRef {
        self.stream.ssl()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tls::config::{ClientContext, TlsServerConfig, TlsServerOptions};
    use crate::tls::tests::pki;

    /// Runs a handshake between two engines; returns them established.
    pub(crate) fn pair(server: &mut TlsEngine, client: &mut TlsEngine) {
        for _ in 0..10 {
            let c = client.handshake();
            assert!(c.is_ok(), "client: {c:?}");
            server.feed(&client.take_output());
            let s = server.handshake();
            assert!(s.is_ok(), "server: {s:?}");
            client.feed(&server.take_output());
            if client.handshake().unwrap() && server.is_established() {
                server.feed(&client.take_output());
                return;
            }
        }
        panic!("no handshake");
    }

    pub(crate) fn engines(version: TlsVersion) -> (TlsEngine, TlsEngine) {
        let pki = pki();
        let opts = TlsServerOptions {
            certificate_chain_pem: pki.server_chain_pem.clone(),
            private_key_pem: pki.server_key_pem.clone(),
            min_version: version,
            max_version: version,
            ..TlsServerOptions::default()
        };
        let server = TlsServerConfig::new(&opts).unwrap();
        let card = pki.card();
        let client = ClientContext::new(Some((&card.0, &card.1)), pki.server_pin, version, version).unwrap();
        let mut s = TlsEngine::server(server.context()).unwrap();
        let mut c = client.connect(None).unwrap().0;
        pair(&mut s, &mut c);
        (s, c)
    }

    #[test]
    fn engines_agree_and_carry_data_both_ways() {
        for version in [TlsVersion::V1_2, TlsVersion::V1_3] {
            let (mut s, mut c) = engines(version);
            assert_eq!(s.version(), Some(version));
            assert_eq!(c.version(), Some(version));
            assert!(!s.session_reused());
            assert_eq!(s.client_random(), c.client_random());
            assert_eq!(s.server_random(), c.server_random());
            let label = "EXPORTER-test";
            assert_eq!(
                s.export_keying_material(label, None, 32).unwrap(),
                c.export_keying_material(label, None, 32).unwrap()
            );
            assert_eq!(s.peer_spki().unwrap(), pki().card_spki);
            c.write_application_data(b"ping").unwrap();
            s.feed(&c.take_output());
            assert_eq!(s.read_application_data().unwrap(), b"ping");
            assert!(s.read_application_data().unwrap().is_empty(), "nothing more");
            s.write_application_data(b"pong").unwrap();
            c.feed(&s.take_output());
            assert_eq!(c.read_application_data().unwrap(), b"pong");
        }
    }

    #[test]
    fn garbage_and_alerts_become_errors() {
        let pki = pki();
        let opts = TlsServerOptions {
            certificate_chain_pem: pki.server_chain_pem.clone(),
            private_key_pem: pki.server_key_pem.clone(),
            ..TlsServerOptions::default()
        };
        let server = TlsServerConfig::new(&opts).unwrap();
        let mut s = TlsEngine::server(server.context()).unwrap();
        s.feed(b"GET / HTTP/1.1\r\n\r\n");
        let err = s.handshake().unwrap_err();
        assert!(!err.reason.is_empty());
        assert_eq!(err.peer_alert, None);
        assert!(s.read_application_data().is_err(), "no data before the handshake");
        assert!(s.export_keying_material("x", None, 8).is_err());

        // A server that receives the client's alert reports it as the peer's.
        let mut s = TlsEngine::server(server.context()).unwrap();
        let client = ClientContext::new(None, [0; 32], TlsVersion::V1_2, TlsVersion::V1_2).unwrap();
        let (mut c, observed) = client.connect(Some(b"not a session")).unwrap();
        assert!(!c.resumption_offered());
        assert!(!c.handshake().unwrap());
        s.feed(&c.take_output());
        assert!(!s.handshake().unwrap(), "the server waits for the client's flight");
        c.feed(&s.take_output());
        // The pin is wrong: the client refuses the server with an alert.
        let err = c.handshake().unwrap_err();
        assert!(observed.pin_failed(), "{err:?}");
        assert_eq!(err.peer_alert, None, "the client's own failure");
        s.feed(&c.take_output());
        let err = s.handshake().unwrap_err();
        assert!(err.peer_alert.is_some(), "{err:?}");
        assert!(err.peer_rejected_authentication(), "{err:?}");
    }
}
