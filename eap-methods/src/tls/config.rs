//! TLS configuration of the server (built once per process) and of a card,
//! and the OpenSSL contexts made from them.
//!
//! Server: ECDHE only (X25519, P-256, P-384), AEAD ciphers for TLS 1.2,
//! no renegotiation, no early data. EAP-TLS requires a client certificate
//! but trusts no CA: any chain passes OpenSSL's verification (it still
//! checks the CertificateVerify signature, and a certificate that does not
//! parse still fails the handshake); the card is recognised by its
//! registered key afterwards ([`crate::method::Query::CardKey`]).
//! Resumption: a bounded TLS 1.2 session-id cache and stateless tickets
//! (TLS 1.2 and 1.3, one ticket per handshake), with OpenSSL's ticket keys
//! of this context.
//!
//! Card: the server is trusted by the SHA-256 of its leaf certificate's
//! SubjectPublicKeyInfo (the pin), checked in the verification callback at
//! depth 0, so a wrong server never receives the card's certificate.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslContextRef, SslMethod, SslMode, SslOptions, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use openssl::x509::{X509Ref, X509VerifyResult, X509};

use crate::error::EapError;
use crate::method::TlsSession;
use crate::tls::engine::TlsEngine;
use crate::tls::fragment::{DEFAULT_FRAGMENT_SIZE, DEFAULT_MAX_MESSAGE};
use crate::tls::openssl_gaps;
use crate::tls::session_cards::SessionCards;

/// TLS 1.2 cipher suites: forward secrecy and AEAD only. TLS 1.3 keeps
/// OpenSSL's default suites (all AEAD).
const TLS12_CIPHERS: &str = "ECDHE+AESGCM:ECDHE+CHACHA20";
/// Key exchange groups, preferred first.
const GROUPS: &str = "X25519:P-256:P-384";

/// A TLS protocol version eapay negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246; EAP-TLS per RFC 5216).
    V1_2,
    /// TLS 1.3 (RFC 8446; EAP-TLS per RFC 9190).
    V1_3,
}

impl TlsVersion {
    /// The OpenSSL constant.
    pub fn ssl_version(self) -> SslVersion {
        match self {
            Self::V1_2 => SslVersion::TLS1_2,
            Self::V1_3 => SslVersion::TLS1_3,
        }
    }

    /// The version OpenSSL negotiated, if it is one of ours.
    pub fn from_ssl_version(version: SslVersion) -> Option<Self> {
        if version == SslVersion::TLS1_2 {
            Some(Self::V1_2)
        } else if version == SslVersion::TLS1_3 {
            Some(Self::V1_3)
        } else {
            None
        }
    }
}

impl FromStr for TlsVersion {
    type Err = EapError;

    /// `1.2` or `1.3` (also `TLSv1.2`, `tls1.3`, any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("tlsv").or_else(|| lower.strip_prefix("tls")).unwrap_or(&lower);
        match bare {
            "1.2" => Ok(Self::V1_2),
            "1.3" => Ok(Self::V1_3),
            _ => Err(EapError::TlsConfig(format!("unknown TLS version {s:?} (expected 1.2 or 1.3)"))),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1_2 => "1.2",
            Self::V1_3 => "1.3",
        })
    }
}

/// What the operator configures for the server's TLS.
#[derive(Clone)]
pub struct TlsServerOptions {
    /// PEM: the server certificate first, then the CA (sent as the chain).
    pub certificate_chain_pem: Vec<u8>,
    /// PEM private key of the server certificate, PKCS#8 or traditional.
    pub private_key_pem: Vec<u8>,
    /// Lowest version accepted (default 1.2).
    pub min_version: TlsVersion,
    /// Highest version offered (default 1.3).
    pub max_version: TlsVersion,
    /// TLS octets per EAP packet (default 1024); a conversation may use
    /// less (RADIUS Framed-MTU).
    pub fragment_size: usize,
    /// Cap on one reassembled TLS message from a peer (default 64 KiB).
    pub max_message: usize,
    /// How long a session may be resumed (default 1 h); zero disables
    /// resumption. See [`openssl_gaps`] for OpenSSL's own cap.
    pub session_lifetime: Duration,
    /// Most TLS 1.2 sessions kept in the server's cache (default 20 000).
    pub session_cache_size: usize,
}

impl Default for TlsServerOptions {
    fn default() -> Self {
        Self {
            certificate_chain_pem: Vec::new(),
            private_key_pem: Vec::new(),
            min_version: TlsVersion::V1_2,
            max_version: TlsVersion::V1_3,
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            max_message: DEFAULT_MAX_MESSAGE,
            session_lifetime: Duration::from_secs(3600),
            session_cache_size: 20_000,
        }
    }
}

impl fmt::Debug for TlsServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerOptions")
            .field("certificate_chain_pem", &format_args!("<{} octets>", self.certificate_chain_pem.len()))
            .field("private_key_pem", &"<hidden>")
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("fragment_size", &self.fragment_size)
            .field("max_message", &self.max_message)
            .field("session_lifetime", &self.session_lifetime)
            .field("session_cache_size", &self.session_cache_size)
            .finish()
    }
}

/// Whether the server asks the peer for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// EAP-TLS: a certificate is required (any chain; the key is checked
    /// against the registered cards).
    Required,
    /// EAP-TTLS: server authentication only; the peer proves itself inside
    /// the tunnel.
    None,
}

/// The server's TLS context, built once per server process and shared by
/// every conversation (it holds the session cache and the ticket keys).
#[derive(Clone)]
pub struct TlsServerConfig {
    context: Arc<SslContext>,
    fragment_size: usize,
    max_message: usize,
    /// Whom each resumable session authenticated (TTLS; see the module).
    session_cards: Arc<SessionCards>,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("fragment_size", &self.fragment_size)
            .field("max_message", &self.max_message)
            .finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// The EAP-TLS server context: client certificate required.
    pub fn new(opts: &TlsServerOptions) -> Result<Self, EapError> {
        Self::with_client_auth(opts, ClientAuth::Required)
    }

    /// A server context with or without client certificates (EAP-TTLS
    /// uses [`ClientAuth::None`]). The two kinds use different session id
    /// contexts, so a session of one never resumes in the other.
    pub fn with_client_auth(opts: &TlsServerOptions, client_auth: ClientAuth) -> Result<Self, EapError> {
        if opts.min_version > opts.max_version {
            return Err(EapError::TlsConfig(format!(
                "min_version {} is above max_version {}",
                opts.min_version, opts.max_version
            )));
        }
        let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(ssl_err("server context"))?;
        common_settings(&mut b, opts.min_version, opts.max_version)?;
        b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
        // A conversation waits for the peer between every round trip, often
        // for long: without this OpenSSL keeps its 16 KiB read and write
        // buffers for each half-open conversation (scripts/memory-probe.py).
        b.set_mode(SslMode::RELEASE_BUFFERS);

        let chain = X509::stack_from_pem(&opts.certificate_chain_pem).map_err(ssl_err("server certificate chain"))?;
        let mut chain = chain.into_iter();
        let Some(leaf) = chain.next() else {
            return Err(EapError::TlsConfig("server certificate chain: no certificate in the PEM".into()));
        };
        b.set_certificate(&leaf).map_err(ssl_err("server certificate"))?;
        // Intermediates go out with the leaf; a self-signed root does not
        // (RFC 8446 §4.4.2: the peer must already have it to trust it). Left
        // out, the issuer's first flight fits one 1024-octet fragment, which
        // saves the peer a round trip of fragment acknowledgement.
        for ca in chain.filter(|c| c.issued(c) != X509VerifyResult::OK) {
            b.add_extra_chain_cert(ca).map_err(ssl_err("server certificate chain"))?;
        }
        let key = PKey::private_key_from_pem(&opts.private_key_pem).map_err(ssl_err("server private key"))?;
        b.set_private_key(&key).map_err(ssl_err("server private key"))?;
        b.check_private_key().map_err(ssl_err("server private key does not match the certificate"))?;

        let session_context: &[u8] = match client_auth {
            ClientAuth::Required => {
                // Any chain: the card's key is what is trusted, looked up
                // after the handshake.
                b.set_verify_callback(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT, |_, _| true);
                b"eapay eap-tls"
            }
            ClientAuth::None => {
                b.set_verify(SslVerifyMode::NONE);
                b"eapay eap-ttls"
            }
        };
        b.set_session_id_context(session_context).map_err(ssl_err("session id context"))?;
        if opts.session_lifetime.is_zero() {
            b.set_session_cache_mode(SslSessionCacheMode::OFF);
            b.set_options(SslOptions::NO_TICKET);
            b.set_num_tickets(0).map_err(ssl_err("session tickets"))?;
        } else {
            // Stateful resumption: the session stays in this process's cache
            // and the ticket (TLS 1.3) or session id (TLS 1.2) only names it.
            // OpenSSL 3.0 re-encodes and re-decodes a stateless ticket, card
            // certificate included, on issue and on use: about 0.2 ms of a
            // full handshake and 0.45 ms of a resumed one (BENCHMARKS.md).
            // The ticket keys were per process anyway, so nothing is lost;
            // the cache is bounded by `session_cache_size`.
            b.set_options(SslOptions::NO_TICKET);
            b.set_session_cache_mode(SslSessionCacheMode::SERVER);
            b.set_session_cache_size(i32::try_from(opts.session_cache_size).unwrap_or(i32::MAX).max(1));
            b.set_num_tickets(1).map_err(ssl_err("session tickets"))?;
            openssl_gaps::set_session_timeout(&mut b, opts.session_lifetime);
        }
        b.set_max_early_data(0).map_err(ssl_err("early data"))?;
        Ok(Self {
            context: Arc::new(b.build()),
            fragment_size: opts.fragment_size,
            max_message: opts.max_message,
            session_cards: Arc::new(SessionCards::new(opts.session_cache_size)),
        })
    }

    /// The OpenSSL context (for a [`crate::tls::engine::TlsEngine`]).
    pub fn context(&self) -> &SslContextRef {
        &self.context
    }

    /// Whom the resumable sessions of this context authenticated.
    pub fn session_cards(&self) -> &SessionCards {
        &self.session_cards
    }

    /// The configured fragment size.
    pub fn fragment_size(&self) -> usize {
        self.fragment_size
    }

    /// The configured cap on a reassembled peer message.
    pub fn max_message(&self) -> usize {
        self.max_message
    }
}

/// What a card signs when it confirms a payment in EAP-TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToSign {
    /// Canonical payment details (DESIGN.md §3).
    pub details: Vec<u8>,
    /// The card's PAN-token, for V-Card (DESIGN.md §5).
    pub pan_token: Option<[u8; 32]>,
}

/// The card's EAP-TLS configuration for one conversation.
#[derive(Clone)]
pub struct TlsPeerOptions {
    /// What EAP-Response/Identity says (not used by TLS itself).
    pub identity: String,
    /// The card's private key (PEM, PKCS#8 or traditional).
    pub private_key_pem: Vec<u8>,
    /// The card's certificate (PEM).
    pub certificate_pem: Vec<u8>,
    /// SHA-256 of the server leaf certificate's SubjectPublicKeyInfo DER.
    pub server_pin: [u8; 32],
    /// Lowest version accepted (default 1.2).
    pub min_version: TlsVersion,
    /// Highest version offered (default 1.3).
    pub max_version: TlsVersion,
    /// TLS octets per EAP packet (default 1024).
    pub fragment_size: usize,
    /// Cap on one reassembled server message (default 64 KiB).
    pub max_message: usize,
    /// A session to resume (from [`crate::method::PeerMemory::TlsSession`]).
    pub session: Option<TlsSession>,
    /// Some: the card confirms this payment (an `EAPAY1` record).
    pub payment: Option<PaymentToSign>,
}

impl Default for TlsPeerOptions {
    fn default() -> Self {
        Self {
            identity: String::new(),
            private_key_pem: Vec::new(),
            certificate_pem: Vec::new(),
            server_pin: [0; 32],
            min_version: TlsVersion::V1_2,
            max_version: TlsVersion::V1_3,
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            max_message: DEFAULT_MAX_MESSAGE,
            session: None,
            payment: None,
        }
    }
}

impl fmt::Debug for TlsPeerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPeerOptions")
            .field("identity", &self.identity)
            .field("private_key_pem", &"<hidden>")
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("fragment_size", &self.fragment_size)
            .field("max_message", &self.max_message)
            .field("session", &self.session)
            .field("payment", &self.payment)
            .finish_non_exhaustive()
    }
}

/// A card's client context: built once per card and shared by all its
/// conversations (building one costs more than the card's side of a
/// resumed handshake). What a conversation observes (a pin mismatch, a new
/// session) is kept per connection, in [`Observed`].
pub struct ClientContext {
    /// The OpenSSL context.
    pub context: SslContext,
    server_pin: [u8; 32],
}

/// What one connection's callbacks observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pin_mismatch: Arc<AtomicBool>,
    new_session: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Observed {
    /// True if the server's certificate failed the pin.
    pub fn pin_failed(&self) -> bool {
        self.pin_mismatch.load(Ordering::Relaxed)
    }

    /// The latest resumable session OpenSSL handed over (DER): after a TLS
    /// 1.2 handshake, or with a TLS 1.3 NewSessionTicket.
    pub fn latest_session(&self) -> Option<Vec<u8>> {
        self.new_session.lock().ok().and_then(|s| s.clone())
    }
}

/// A connection's slot for the session its handshake produced (DER).
type SessionSlot = Index<Ssl, Arc<Mutex<Option<Vec<u8>>>>>;

/// Where the context's new-session callback finds its connection's slot.
fn session_slot() -> Result<SessionSlot, EapError> {
    static SLOT: OnceLock<Result<SessionSlot, String>> = OnceLock::new();
    SLOT.get_or_init(|| Ssl::new_ex_index().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| EapError::TlsConfig(format!("OpenSSL ex_data index: {e}")))
}

impl ClientContext {
    /// A client context pinned to `server_pin`, presenting `credentials`
    /// (certificate and key) if given (EAP-TLS) or none (EAP-TTLS).
    pub fn new(
        credentials: Option<(&X509Ref, &PKey<Private>)>,
        server_pin: [u8; 32],
        min_version: TlsVersion,
        max_version: TlsVersion,
    ) -> Result<Self, EapError> {
        if min_version > max_version {
            return Err(EapError::TlsConfig(format!("min_version {min_version} is above max_version {max_version}")));
        }
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(ssl_err("client context"))?;
        common_settings(&mut b, min_version, max_version)?;
        if let Some((certificate, key)) = credentials {
            b.set_certificate(certificate).map_err(ssl_err("card certificate"))?;
            b.set_private_key(key).map_err(ssl_err("card private key"))?;
            b.check_private_key().map_err(ssl_err("card private key does not match the certificate"))?;
        }
        // Fails closed: a connection made from this context without
        // [`ClientContext::connect`] (which sets its own pin check) cannot
        // complete a handshake.
        b.set_verify_callback(SslVerifyMode::PEER, |_preverified, store| store.error_depth() != 0);
        let slot = session_slot()?;
        // The callback only fires with a client cache mode; nothing is kept
        // in OpenSSL's own cache.
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL_STORE);
        b.set_new_session_callback(move |ssl, session| {
            if let (Some(target), Ok(der)) = (ssl.ex_data(slot), session.to_der()) {
                if let Ok(mut target) = target.lock() {
                    *target = Some(der);
                }
            }
        });
        Ok(Self { context: b.build(), server_pin })
    }

    /// The server pin this context checks.
    pub fn server_pin(&self) -> [u8; 32] {
        self.server_pin
    }

    /// A connection of this context, offering `session` for resumption,
    /// with its own pin check and session slot.
    pub fn connect(&self, session: Option<&[u8]>) -> Result<(TlsEngine, Observed), EapError> {
        let observed = Observed::default();
        let mut ssl = Ssl::new(&self.context).map_err(ssl_err("client connection"))?;
        ssl.set_ex_data(session_slot()?, Arc::clone(&observed.new_session));
        let (flag, server_pin) = (Arc::clone(&observed.pin_mismatch), self.server_pin);
        ssl.set_verify_callback(SslVerifyMode::PEER, move |_preverified, store| {
            // No CA: chain errors above the leaf are irrelevant; the leaf
            // must carry the pinned key, whatever else is wrong with it.
            if store.error_depth() != 0 {
                return true;
            }
            let matches = store.current_cert().and_then(spki_sha256).is_some_and(|h| pin_eq(&h, &server_pin));
            if !matches {
                flag.store(true, Ordering::Relaxed);
            }
            matches
        });
        let engine = TlsEngine::client_ssl(ssl, session).map_err(|e| EapError::TlsConfig(e.to_string()))?;
        Ok((engine, observed))
    }
}

/// A card's TLS credentials, parsed and built once: the client context and
/// the key that signs the payment (EAP-TLS: the certificate's key; EAP-TTLS:
/// the registered signing key, if the card has one, and no client
/// certificate in the context).
pub struct CardTls {
    pub context: ClientContext,
    pub key: Option<PKey<Private>>,
}

impl CardTls {
    /// EAP-TLS: the card's key and certificate.
    pub fn tls(
        private_key_pem: &[u8],
        certificate_pem: &[u8],
        server_pin: [u8; 32],
        min_version: TlsVersion,
        max_version: TlsVersion,
    ) -> Result<Self, EapError> {
        let key = parse_key(private_key_pem, "card private key")?;
        let certificate = X509::from_pem(certificate_pem)
            .map_err(|e| EapError::TlsConfig(format!("card certificate: {}", crate::tls::engine::reasons(&e))))?;
        let context = ClientContext::new(Some((&certificate, &key)), server_pin, min_version, max_version)?;
        Ok(Self { context, key: Some(key) })
    }

    /// EAP-TTLS: no client certificate; the signing key if given (empty: none).
    pub fn ttls(
        signing_key_pem: &[u8],
        server_pin: [u8; 32],
        min_version: TlsVersion,
        max_version: TlsVersion,
    ) -> Result<Self, EapError> {
        let key = match signing_key_pem.is_empty() {
            true => None,
            false => Some(parse_key(signing_key_pem, "card signing key")?),
        };
        Ok(Self { context: ClientContext::new(None, server_pin, min_version, max_version)?, key })
    }
}

fn parse_key(pem: &[u8], what: &str) -> Result<PKey<Private>, EapError> {
    PKey::private_key_from_pem(pem)
        .map_err(|e| EapError::TlsConfig(format!("{what}: {}", crate::tls::engine::reasons(&e))))
}

impl fmt::Debug for CardTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardTls").field("key", &"<hidden>").finish_non_exhaustive()
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo DER (the pin form).
pub fn spki_sha256(certificate: &X509Ref) -> Option<[u8; 32]> {
    let spki = certificate.public_key().ok()?.public_key_to_der().ok()?;
    Some(openssl::sha::sha256(&spki))
}

/// Constant-time comparison of two pins.
pub fn pin_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    crate::crypto::mac::constant_time_eq(a, b)
}

fn common_settings(b: &mut SslContextBuilder, min: TlsVersion, max: TlsVersion) -> Result<(), EapError> {
    b.set_min_proto_version(Some(min.ssl_version())).map_err(ssl_err("min_version"))?;
    b.set_max_proto_version(Some(max.ssl_version())).map_err(ssl_err("max_version"))?;
    b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);
    b.set_cipher_list(TLS12_CIPHERS).map_err(ssl_err("cipher list"))?;
    b.set_groups_list(GROUPS).map_err(ssl_err("groups"))?;
    Ok(())
}

fn ssl_err(what: &'static str) -> impl Fn(ErrorStack) -> EapError {
    move |e| EapError::TlsConfig(format!("{what}: {}", crate::tls::engine::reasons(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_print() {
        assert_eq!("1.2".parse::<TlsVersion>().unwrap(), TlsVersion::V1_2);
        assert_eq!("TLSv1.3".parse::<TlsVersion>().unwrap(), TlsVersion::V1_3);
        assert_eq!(" tls1.3 ".parse::<TlsVersion>().unwrap(), TlsVersion::V1_3);
        assert!("1.1".parse::<TlsVersion>().is_err());
        assert!("".parse::<TlsVersion>().is_err());
        assert_eq!(TlsVersion::V1_2.to_string(), "1.2");
        assert_eq!(TlsVersion::V1_3.to_string(), "1.3");
        assert!(TlsVersion::V1_2 < TlsVersion::V1_3);
        assert_eq!(TlsVersion::from_ssl_version(TlsVersion::V1_3.ssl_version()), Some(TlsVersion::V1_3));
        assert_eq!(TlsVersion::from_ssl_version(SslVersion::TLS1_1), None);
    }

    #[test]
    fn the_server_config_is_shared_across_threads() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        shared::<TlsServerConfig>();
    }

    #[test]
    fn bad_server_options_are_errors() {
        let opts = TlsServerOptions::default();
        let Err(EapError::TlsConfig(why)) = TlsServerConfig::new(&opts) else { panic!("empty PEMs") };
        assert!(why.contains("certificate"), "{why}");
        let inverted = TlsServerOptions { min_version: TlsVersion::V1_3, max_version: TlsVersion::V1_2, ..opts };
        assert!(TlsServerConfig::new(&inverted).is_err());
        assert!(format!("{inverted:?}").contains("<hidden>"));
    }
}
