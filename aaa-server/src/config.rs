//! The server configuration file (`eapay.toml`, DESIGN.md §6).
//!
//! Relative paths are taken relative to the working directory, as in the
//! DESIGN example; `eapay-server init` writes absolute ones so a generated
//! configuration works from anywhere. Secrets other than the RADIUS shared
//! secrets never appear here: the key-encryption key comes from the
//! environment or a key file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub radius: RadiusSection,
    #[serde(default)]
    pub diameter: Option<DiameterSection>,
    pub ledger: LedgerSection,
    #[serde(default)]
    pub eap: EapSection,
    #[serde(default)]
    pub payment: PaymentSection,
    /// The Prometheus endpoint; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
}

/// `[metrics]`: where `GET /metrics` is served (crate::metrics). It shows
/// counters, not secrets, but belongs on a management address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: SocketAddr,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The issuer realm: card NAIs end in `@realm`; AKA' network name.
    pub realm: String,
    /// Where the card store, keys and ledger live.
    pub data_dir: PathBuf,
    /// IANA PEN of the eapay vendor attributes (default: the dictionary's).
    #[serde(default = "default_vendor_id")]
    pub vendor_id: u32,
}

fn default_vendor_id() -> u32 {
    aaa_proto::dictionary::eapay::VENDOR_ID
}

/// `[radius]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusSection {
    pub auth_listen: SocketAddr,
    pub acct_listen: SocketAddr,
    /// How long a reply is kept for retransmissions (RFC 5080 §2.2.2).
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window_secs: u64,
    #[serde(default)]
    pub clients: Vec<RadiusClient>,
    /// RADIUS over TLS (RFC 6614); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RadsecSection>,
}

/// `[radius.tls]`: RADIUS over TLS (RFC 6614, `crate::radius::tls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadsecSection {
    /// TCP address; RFC 6614 registers port 2083.
    #[serde(default = "default_radsec_listen")]
    pub listen: SocketAddr,
    /// The lowest TLS version a terminal may use: "1.3" (default) or "1.2".
    #[serde(default = "default_radsec_min_version")]
    pub min_version: String,
    /// A connection that carries no packet (Status-Server included) this long is closed.
    #[serde(default = "default_radsec_idle")]
    pub idle_timeout_secs: u64,
    /// The terminals, each known by the key of its certificate.
    #[serde(default)]
    pub clients: Vec<RadsecClient>,
}

fn default_radsec_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2083))
}

fn default_radsec_min_version() -> String {
    "1.3".into()
}

fn default_radsec_idle() -> u64 {
    300
}

/// `[[radius.tls.clients]]`: a terminal allowed to speak RADIUS over TLS.
/// Its certificate must chain to the issuer CA (`ca.pem`), be valid now, and
/// carry the key registered here (`eapay-server terminal issue` writes both
/// and prints this entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadsecClient {
    /// The name the ledger records (as a UDP client's name).
    pub name: String,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo (DER), hex.
    pub key_sha256: String,
    /// The merchants this terminal may act for.
    #[serde(default)]
    pub merchants: Vec<String>,
}

fn default_duplicate_window() -> u64 {
    30
}

/// `[[radius.clients]]`: a NAS (merchant terminal) allowed to talk to us.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClient {
    pub name: String,
    /// An address or CIDR block (`127.0.0.1` or `10.0.0.0/8`).
    #[serde(with = "address_or_block")]
    pub address: IpNet,
    pub secret: String,
    /// The merchants this terminal may act for.
    #[serde(default)]
    pub merchants: Vec<String>,
    /// Drop Access-Requests without Message-Authenticator (Blast-RADIUS).
    /// Accounting-Requests are authenticated by their Request Authenticator.
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
}

impl std::fmt::Debug for RadiusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadiusClient")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("secret", &"<hidden>")
            .field("merchants", &self.merchants)
            .finish()
    }
}

fn yes() -> bool {
    true
}

/// `[diameter]`: the Diameter EAP (RFC 4072) front end, served when present.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterSection {
    pub listen: SocketAddr,
    pub origin_host: String,
    pub origin_realm: String,
    /// The watchdog interval Tw (RFC 3539 §3.4.1; at least 6).
    #[serde(default = "default_watchdog")]
    pub watchdog_secs: u64,
    /// A connection that sends no CER within this is closed.
    #[serde(default = "default_cer_timeout")]
    pub cer_timeout_secs: u64,
    /// The largest message accepted from a peer.
    #[serde(default = "default_max_message")]
    pub max_message: usize,
    /// How long an answer is kept for retransmissions (End-to-End id and Origin-Host).
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window_secs: u64,
    #[serde(default)]
    pub peers: Vec<DiameterPeer>,
    /// Diameter over TLS (RFC 6733 §13); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DiameterTlsSection>,
}

/// `[diameter.tls]`: a second listener where TLS starts at once (RFC 6733
/// §13.1, port 5658), mutual authentication; Inband-Security-Id stays 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterTlsSection {
    #[serde(default = "default_diameter_tls_listen")]
    pub listen: SocketAddr,
    /// "1.3" (default) or "1.2".
    #[serde(default = "default_radsec_min_version")]
    pub min_version: String,
}

fn default_diameter_tls_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5658))
}

fn default_watchdog() -> u64 {
    30
}

fn default_cer_timeout() -> u64 {
    10
}

fn default_max_message() -> usize {
    65_536
}

/// `[[diameter.peers]]`: a terminal, or a relay agent in front of terminals,
/// allowed to connect. Like a RADIUS client it acts for the merchants listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterPeer {
    /// The name the ledger records (as a RADIUS client's name).
    pub name: String,
    /// The Origin-Host its CER must carry.
    pub origin_host: String,
    /// Where its connections may come from (address or CIDR block).
    #[serde(with = "address_or_block")]
    pub address: IpNet,
    /// The merchants this peer may act for.
    #[serde(default)]
    pub merchants: Vec<String>,
    /// SHA-256 of the SubjectPublicKeyInfo of the peer's TLS certificate,
    /// hex (`eapay-server terminal issue` prints it). A peer with a key
    /// connects only over TLS presenting that key; one without, only over
    /// plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
}

/// `[ledger]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    pub url: String,
}

/// `[eap]`: limits of the conversation table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EapSection {
    /// A conversation idle this long is forgotten.
    #[serde(default = "default_session_timeout")]
    pub session_timeout_secs: u64,
    /// Cap on concurrent conversations; beyond it the least recently used
    /// conversation of the terminal holding the most is evicted.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Cap on one terminal's (RADIUS client's, Diameter peer's) concurrent
    /// conversations; beyond it that terminal's least recently used one is
    /// evicted. Default: a quarter of `max_sessions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_client: Option<usize>,
    /// Offer AT_RESULT_IND in AKA/AKA' (protected result to the card).
    #[serde(default = "yes")]
    pub result_indication: bool,
    /// EAP-TLS and EAP-TTLS.
    #[serde(default)]
    pub tls: TlsSection,
    /// Hand SIM/AKA cards pseudonyms and fast re-authentication identities
    /// (RFC 4186/4187 §4-5), so a terminal cannot link a card's payments.
    #[serde(default = "yes")]
    pub privacy: bool,
    /// Fast re-authentications in a row before a full authentication
    /// (0: never offer one; at most 1000).
    #[serde(default = "default_fast_reauth_limit")]
    pub fast_reauth_limit: u16,
    /// The keys of those identities.
    #[serde(default)]
    pub identity_keys: IdentityKeysSection,
}

impl EapSection {
    /// One terminal's share of the conversation table.
    pub fn max_sessions_per_client(&self) -> usize {
        self.max_sessions_per_client.unwrap_or((self.max_sessions / 4).max(1))
    }
}

/// `[eap.identity_keys]`: the key that issues pseudonyms and
/// re-authentication identities, derived from the KEK and this id (every
/// instance sharing the ledger's KEK derives the same), and the ids of
/// earlier keys still accepted for a while after a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityKeysSection {
    /// The key id new identities are issued under.
    pub key_id: u8,
    /// Earlier keys, accepted until their time.
    pub retired: Vec<RetiredIdentityKey>,
}

impl Default for IdentityKeysSection {
    fn default() -> Self {
        Self { key_id: 1, retired: Vec::new() }
    }
}

/// `[[eap.identity_keys.retired]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredIdentityKey {
    pub key_id: u8,
    /// Unix seconds after which its identities no longer resolve.
    pub accept_until: u64,
}

fn default_fast_reauth_limit() -> u16 {
    16
}

/// The most fast re-authentications in a row `fast_reauth_limit` may allow:
/// the bound keeps every card's chain of AT_COUNTER values far from u16's end.
pub const MAX_FAST_REAUTH_LIMIT: u16 = 1000;

/// `[eap.tls]`: the TLS family (EAP-TLS, EAP-TTLS). The server certificate
/// and key are the issuer PKI's (`server.pem`, `server-key.sealed` in the
/// data directory), not configured here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Lowest TLS version accepted: "1.2" or "1.3".
    pub min_version: String,
    /// Highest TLS version offered: "1.2" or "1.3" (TLS 1.3 on by default).
    pub max_version: String,
    /// Most TLS octets per EAP packet; a smaller RADIUS Framed-MTU lowers it
    /// per conversation.
    pub fragment_size: usize,
    /// Largest TLS message (all fragments together) a peer may send.
    pub max_message: usize,
    /// How long a TLS session can be resumed; 0 turns resumption off.
    pub session_lifetime_secs: u64,
    /// Most TLS sessions kept for resumption by session id.
    pub session_cache_size: usize,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            min_version: "1.2".into(),
            max_version: "1.3".into(),
            fragment_size: 1024,
            max_message: 64 * 1024,
            session_lifetime_secs: 3600,
            session_cache_size: 20_000,
        }
    }
}

fn default_session_timeout() -> u64 {
    30
}

fn default_max_sessions() -> usize {
    65_536
}

impl Default for EapSection {
    fn default() -> Self {
        Self {
            session_timeout_secs: default_session_timeout(),
            max_sessions: default_max_sessions(),
            max_sessions_per_client: None,
            result_indication: true,
            tls: TlsSection::default(),
            privacy: true,
            fast_reauth_limit: default_fast_reauth_limit(),
            identity_keys: IdentityKeysSection::default(),
        }
    }
}

/// `[payment]`: the decision policy (DESIGN.md §8, issue "payment authorization").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSection {
    /// Eapay-Terminal-Time may differ from the server clock by this much,
    /// and a terminal nonce is remembered this long.
    pub time_window_secs: u64,
    /// Approvals per card within `velocity_window_secs` (0: unlimited).
    pub velocity_max: u32,
    pub velocity_window_secs: u64,
    /// The largest amount, in minor units, that is not an input error.
    pub max_amount: u64,
    pub max_installments: u32,
}

impl Default for PaymentSection {
    fn default() -> Self {
        Self {
            time_window_secs: 300,
            velocity_max: 30,
            velocity_window_secs: 60,
            max_amount: 1_000_000_000_000,
            max_installments: 99,
        }
    }
}

impl PaymentSection {
    /// The ledger's view of it.
    pub fn policy(&self) -> crate::ledger::PaymentPolicy {
        crate::ledger::PaymentPolicy {
            time_window_ms: self.time_window_secs.saturating_mul(1000),
            velocity_max: self.velocity_max,
            velocity_window_ms: self.velocity_window_secs.saturating_mul(1000),
            max_amount: self.max_amount,
            max_installments: self.max_installments,
        }
    }
}

impl EapSection {
    /// The SIM/AKA privacy policy, its keys derived from `kek`; None if off.
    pub fn privacy(&self, kek: &crate::seal::Kek) -> Option<crate::core::eap::Privacy> {
        self.privacy.then(|| {
            let retired: Vec<(u8, u64)> =
                self.identity_keys.retired.iter().map(|r| (r.key_id, r.accept_until)).collect();
            let current = self.identity_keys.key_id;
            crate::core::eap::Privacy {
                keys: std::sync::Arc::new(crate::identities::IdentityKeys::new(kek, current, &retired)),
                fast_reauth_limit: self.fast_reauth_limit,
            }
        })
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::io(path, e))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {}", path.display(), e.message())))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ServerError> {
        if self.server.realm.is_empty() || self.server.realm.contains(['@', ' ']) {
            return Err(ServerError::Config(format!("server.realm {:?} is not a realm", self.server.realm)));
        }
        for c in &self.radius.clients {
            if c.secret.is_empty() {
                return Err(ServerError::Config(format!("radius client {:?} has an empty secret", c.name)));
            }
        }
        for c in &self.radius.clients {
            if let Some(m) = c.merchants.iter().find(|m| !is_identifier(m)) {
                return Err(ServerError::Config(format!(
                    "radius client {:?}: merchant id {m:?} is not 1-64 printable characters",
                    c.name
                )));
            }
        }
        if let Some(d) = &self.diameter {
            if d.origin_host.is_empty() || d.origin_realm.is_empty() {
                return Err(ServerError::Config("diameter: origin_host and origin_realm must be set".into()));
            }
            if d.watchdog_secs < 6 {
                return Err(ServerError::Config("diameter.watchdog_secs must be at least 6 (RFC 3539)".into()));
            }
            if !(4096..=1 << 24).contains(&d.max_message) {
                return Err(ServerError::Config("diameter.max_message must be 4096 to 16777216".into()));
            }
            for p in &d.peers {
                if let Some(m) = p.merchants.iter().find(|m| !is_identifier(m)) {
                    return Err(ServerError::Config(format!(
                        "diameter peer {:?}: merchant id {m:?} is not 1-64 printable characters",
                        p.name
                    )));
                }
            }
        }
        if self.eap.fast_reauth_limit > MAX_FAST_REAUTH_LIMIT {
            return Err(ServerError::Config(format!("eap.fast_reauth_limit must be at most {MAX_FAST_REAUTH_LIMIT}")));
        }
        let keys = &self.eap.identity_keys;
        if keys.retired.iter().any(|r| r.key_id == keys.key_id) {
            return Err(ServerError::Config("eap.identity_keys: the current key_id is also listed as retired".into()));
        }
        let tls = &self.eap.tls;
        for (key, version) in [("min_version", &tls.min_version), ("max_version", &tls.max_version)] {
            if !matches!(version.as_str(), "1.2" | "1.3") {
                return Err(ServerError::Config(format!("eap.tls.{key} {version:?}: \"1.2\" or \"1.3\"")));
            }
        }
        if tls.min_version > tls.max_version {
            return Err(ServerError::Config("eap.tls.min_version is above max_version".into()));
        }
        if !(64..=16_000).contains(&tls.fragment_size) {
            return Err(ServerError::Config("eap.tls.fragment_size must be 64 to 16000".into()));
        }
        if !(4096..=1 << 20).contains(&tls.max_message) {
            return Err(ServerError::Config("eap.tls.max_message must be 4096 to 1048576".into()));
        }
        // The TLS settings are checked here, where every command reads the
        // file, with the same functions that apply them when serving.
        if let Some(tls) = &self.radius.tls {
            crate::mtls::min_version_of("radius.tls", &tls.min_version)?;
            if tls.idle_timeout_secs == 0 {
                return Err(ServerError::Config("radius.tls.idle_timeout_secs must be at least 1".into()));
            }
            for c in &tls.clients {
                crate::mtls::parse_key(&format!("radius.tls.clients {}", c.name), &c.key_sha256)?;
            }
        }
        if let Some(diameter) = &self.diameter {
            if let Some(tls) = &diameter.tls {
                crate::mtls::min_version_of("diameter.tls", &tls.min_version)?;
            }
            for p in &diameter.peers {
                if let Some(key) = &p.key_sha256 {
                    crate::mtls::parse_key(&format!("diameter.peers {}", p.name), key)?;
                }
            }
        }
        if self.eap.max_sessions == 0 {
            return Err(ServerError::Config("eap.max_sessions must be at least 1".into()));
        }
        if let Some(share) = self.eap.max_sessions_per_client {
            if share == 0 || share > self.eap.max_sessions {
                return Err(ServerError::Config("eap.max_sessions_per_client must be 1 to eap.max_sessions".into()));
            }
        }
        Ok(())
    }

    /// Serialises for `init`.
    pub fn to_toml(&self) -> Result<String, ServerError> {
        toml::to_string_pretty(self).map_err(|e| ServerError::Config(e.to_string()))
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= aaa_proto::payment::MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A client address as FreeRADIUS takes it: a plain address or a CIDR block.
mod address_or_block {
    use std::net::IpAddr;

    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(d)?;
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(net);
        }
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not an address or CIDR block")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
realm = "issuer.example"
data_dir = "data"
[radius]
auth_listen = "127.0.0.1:1812"
acct_listen = "127.0.0.1:1813"
[ledger]
url = "sqlite://data/ledger.db"
"#;

    fn with(extra: &str) -> Result<Config, ServerError> {
        let config: Config =
            toml::from_str(&format!("{MINIMAL}{extra}")).map_err(|e| ServerError::Config(e.message().to_string()))?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn sim_aka_privacy_defaults_and_limits() {
        let config = with("").unwrap();
        assert!(config.eap.privacy);
        assert_eq!((config.eap.fast_reauth_limit, config.eap.identity_keys.key_id), (16, 1));
        let rotated = with(
            "[eap.identity_keys]\nkey_id = 2\n[[eap.identity_keys.retired]]\nkey_id = 1\naccept_until = 1900000000\n",
        );
        assert_eq!(rotated.unwrap().eap.identity_keys.retired.len(), 1);
        let e = with("[eap]\nfast_reauth_limit = 1001\n").unwrap_err().to_string();
        assert!(e.contains("fast_reauth_limit must be at most 1000"), "{e}");
        let e = with("[eap.identity_keys]\n[[eap.identity_keys.retired]]\nkey_id = 1\naccept_until = 1\n").unwrap_err();
        assert!(e.to_string().contains("also listed as retired"), "{e}");
        assert!(with("[eap]\nfast_reauth_limit = -1\n").is_err());
        assert!(with("[eap.identity_keys]\nkey_id = 256\n").is_err());
        let off = with("[eap]\nprivacy = false\n").unwrap();
        assert!(off.eap.privacy(&crate::seal::Kek::from_bytes(&[1; 32])).is_none());
    }
}
