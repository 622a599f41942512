//! The issuer's PKI: an issuer CA, the server certificate the TLS methods
//! present, and the certificates of TLS/TTLS cards.
//!
//! Files in the data directory (created by `init`, or by the first server
//! start on a data directory that predates them):
//!
//! | file | what | mode |
//! | --- | --- | --- |
//! | `ca.pem` | issuer CA certificate (ECDSA P-256, self-signed, 20 years) | 0644 |
//! | `ca-key.sealed` | its private key, PKCS#8, sealed under the KEK | 0600 |
//! | `server.pem` | server certificate (`aaa.<realm>`, 5 years), then the CA certificate | 0644 |
//! | `server-key.sealed` | the server key, PKCS#8, sealed under the KEK | 0600 |
//!
//! Decisions:
//! - The keys are what matters and are never replaced once they exist: every
//!   TLS/TTLS card pins the server key (SHA-256 of its SubjectPublicKeyInfo,
//!   [`server_pin`]), and standard supplicants trust `ca.pem`. To start over,
//!   remove the four files; cards issued before then stop working.
//! - A certificate is only a statement about a key, so it is re-issued when
//!   needed: a missing certificate whose key exists (a crash between the two
//!   writes), a server certificate not signed by the current CA or within 30
//!   days of its end. The server key, and with it every card's pin, stays.
//! - A certificate without its key is an error: the key is lost.
//! - Card certificates (CN = card id, EKU clientAuth, valid until the card's
//!   expiry) are for standard supplicants and for humans: the server trusts a
//!   card by the key registered at issuance, not by this CA (DESIGN.md §5).

use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509Ref, X509};
use sha2::{Digest, Sha256};

use crate::error::ServerError;
use crate::seal::Kek;

/// The issuer CA certificate (PEM).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The issuer CA key, sealed under the KEK.
pub const CA_KEY_FILE: &str = "ca-key.sealed";
/// The server certificate chain (PEM): the server certificate, then the CA.
pub const SERVER_CHAIN_FILE: &str = "server.pem";
/// The server key, sealed under the KEK.
pub const SERVER_KEY_FILE: &str = "server-key.sealed";

/// Associated data of the sealed keys: a key file renamed to the other's
/// name does not open.
const CA_KEY_AAD: &str = "eapay issuer CA key";
const SERVER_KEY_AAD: &str = "eapay server TLS key";

const CA_DAYS: u32 = 20 * 365 + 5;
const SERVER_DAYS: u32 = 5 * 365 + 1;
/// A server certificate closer than this to its end is re-issued.
const RENEW_DAYS: u32 = 30;
/// Certificates start this long before they are made: clocks differ.
const BACKDATE_SECS: i64 = 3600;

/// The key algorithm of a card (`card issue --key-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256 (secp256r1): the default.
    #[default]
    P256,
    /// RSA, 2048 bits: for supplicants or smart cards without ECDSA.
    Rsa2048,
}

impl KeyType {
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Rsa2048 => "rsa2048",
        }
    }
}

/// The certificate chain and key the server's TLS methods present. Debug
/// hides the key.
#[derive(Clone)]
pub struct ServerIdentity {
    /// PEM: the server certificate, then the issuer CA certificate.
    pub chain_pem: Vec<u8>,
    /// PEM, PKCS#8.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain_pem", &String::from_utf8_lossy(&self.chain_pem))
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

/// What [`ensure`] had to create or renew (empty: everything was in place).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkiChanges {
    pub created: Vec<PathBuf>,
}

/// The issuer CA, opened: signs card certificates.
pub struct IssuerCa {
    cert: X509,
    key: PKey<Private>,
}

impl fmt::Debug for IssuerCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = self.cert.subject_name().entries().next().and_then(|e| e.data().to_string().ok());
        f.debug_struct("IssuerCa").field("subject", &subject).finish_non_exhaustive()
    }
}

impl IssuerCa {
    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> Result<String, ServerError> {
        pem_string(self.cert.to_pem().map_err(pki_error)?)
    }
}

/// A client's key pair and certificate: a card's, as the card file holds
/// them, or a RADIUS/TLS terminal's. Debug hides the key.
#[derive(Clone)]
pub struct CardCredential {
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The public key, DER SubjectPublicKeyInfo: what the ledger registers.
    pub spki: Vec<u8>,
}

impl fmt::Debug for CardCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardCredential").field("spki", &hex::encode(&self.spki)).finish_non_exhaustive()
    }
}

/// Creates what is missing of the PKI in `data_dir` and keeps what exists
/// (see the module docs for the renewal rules).
pub fn ensure(data_dir: &Path, kek: &Kek, realm: &str) -> Result<PkiChanges, ServerError> {
    let mut changes = PkiChanges::default();
    let ca = ensure_ca(data_dir, kek, realm, &mut changes)?;
    ensure_server(data_dir, kek, realm, &ca, &mut changes)?;
    Ok(changes)
}

/// Loads the server certificate chain and key; creates the PKI first if the
/// data dir predates it (one info line), so data dirs made by older builds
/// keep working.
pub fn server_identity(data_dir: &Path, kek: &Kek, realm: &str) -> Result<ServerIdentity, ServerError> {
    let changes = ensure(data_dir, kek, realm)?;
    if !changes.created.is_empty() {
        let files: Vec<String> = changes.created.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(files = %files.join(", "), "issuer PKI created or renewed");
    }
    let chain_path = data_dir.join(SERVER_CHAIN_FILE);
    let chain_pem = std::fs::read(&chain_path).map_err(|e| ServerError::io(&chain_path, e))?;
    let key = open_key(data_dir, kek, SERVER_KEY_FILE, SERVER_KEY_AAD)?;
    let leaf = first_certificate(&chain_pem, &chain_path)?;
    if !public_keys_match(&leaf, &key)? {
        return Err(ServerError::Config(format!(
            "{}: the certificate is not for the key in {SERVER_KEY_FILE}",
            chain_path.display()
        )));
    }
    let key_pem = key.private_key_to_pem_pkcs8().map_err(pki_error)?;
    Ok(ServerIdentity { chain_pem, key_pem })
}

/// SHA-256 of the leaf certificate's DER SubjectPublicKeyInfo: what cards
/// pin the server by.
pub fn server_pin(chain_pem: &[u8]) -> Result<[u8; 32], ServerError> {
    let leaf = first_certificate(chain_pem, Path::new("server certificate chain"))?;
    let spki = leaf.public_key().and_then(|k| k.public_key_to_der()).map_err(pki_error)?;
    Ok(Sha256::digest(&spki).into())
}

/// Opens the issuer CA of `data_dir` (which [`ensure`] created).
pub fn load_ca(data_dir: &Path, kek: &Kek) -> Result<IssuerCa, ServerError> {
    let path = data_dir.join(CA_CERT_FILE);
    let pem = std::fs::read(&path).map_err(|e| ServerError::io(&path, e))?;
    let cert = first_certificate(&pem, &path)?;
    let key = open_key(data_dir, kek, CA_KEY_FILE, CA_KEY_AAD)?;
    if !public_keys_match(&cert, &key)? {
        return Err(ServerError::Config(format!(
            "{}: the certificate is not for the key in {CA_KEY_FILE}",
            path.display()
        )));
    }
    Ok(IssuerCa { cert, key })
}

/// A fresh key pair for a card and its certificate from `ca`: CN = card id,
/// EKU clientAuth, valid until `not_after` (Unix seconds, the card's expiry).
pub fn issue_card_credential(
    ca: &IssuerCa,
    key_type: KeyType,
    card_id: &str,
    not_after: u64,
) -> Result<CardCredential, ServerError> {
    issue_client_credential(ca, key_type, card_id, None, not_after)
}

/// A fresh key pair for a RADIUS/TLS or Diameter/TLS terminal and its
/// certificate from `ca`: CN = the terminal's name, EKU clientAuth, valid
/// until `not_after`; a name that is a DNS host name is also the
/// certificate's subjectAltName dNSName. The server knows the terminal by
/// the key (its configured `key_sha256`, [`key_sha256`]), not by the name.
///
/// The dNSName is for the peer's own software: a Diameter peer's name is
/// its DiameterIdentity, and freeDiameter (GnuTLS) refuses to start unless
/// its certificate names that identity, which GnuTLS reads from a dNSName
/// only, never from the CN of a clientAuth-only certificate.
pub fn issue_terminal_credential(ca: &IssuerCa, name: &str, not_after: u64) -> Result<CardCredential, ServerError> {
    let dns_name = is_dns_host_name(name).then_some(name);
    issue_client_credential(ca, KeyType::default(), name, dns_name, not_after)
}

/// A name made of LDH labels (RFC 1123), at most 253 octets: one a
/// subjectAltName dNSName may carry.
fn is_dns_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// SHA-256 of a DER SubjectPublicKeyInfo, hex: how a terminal's key is registered.
pub fn key_sha256(spki: &[u8]) -> String {
    hex::encode(Sha256::digest(spki))
}

fn issue_client_credential(
    ca: &IssuerCa,
    key_type: KeyType,
    common_name: &str,
    dns_name: Option<&str>,
    not_after: u64,
) -> Result<CardCredential, ServerError> {
    let card_id = common_name;
    let key = generate_key(key_type)?;
    let not_after = i64::try_from(not_after).map_err(|_| ServerError::Usage("card expiry out of range".into()))?;
    let cert = (|| -> Result<X509, ErrorStack> {
        // An already expired card (issued for tests) still gets a well-formed validity period.
        let not_before = (unix_now() - BACKDATE_SECS).min(not_after);
        let until = Asn1Time::from_unix(not_after)?;
        let mut b = builder(&name(card_id)?, ca.cert.subject_name(), &key, not_before, &until)?;
        let ctx = b.x509v3_context(Some(&ca.cert), None);
        let skid = SubjectKeyIdentifier::new().build(&ctx)?;
        let akid = AuthorityKeyIdentifier::new().keyid(false).build(&ctx)?;
        let san = dns_name.map(|dns| SubjectAlternativeName::new().dns(dns).build(&ctx)).transpose()?;
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        if let Some(san) = san {
            b.append_extension(san)?;
        }
        b.append_extension(skid)?;
        b.append_extension(akid)?;
        b.sign(&ca.key, MessageDigest::sha256())?;
        Ok(b.build())
    })()
    .map_err(pki_error)?;
    Ok(CardCredential {
        key_pem: pem_string(key.private_key_to_pem_pkcs8().map_err(pki_error)?)?,
        certificate_pem: pem_string(cert.to_pem().map_err(pki_error)?)?,
        spki: key.public_key_to_der().map_err(pki_error)?,
    })
}

/// A human description of a DER SubjectPublicKeyInfo: "ECDSA P-256",
/// "RSA 2048", ...; "unparsable key" if it is not one.
pub fn describe_key(spki: &[u8]) -> String {
    let Ok(key) = PKey::public_key_from_der(spki) else { return "unparsable key".into() };
    match key.id() {
        Id::EC => {
            let curve = key.ec_key().ok().and_then(|ec| ec.group().curve_name());
            match curve {
                Some(Nid::X9_62_PRIME256V1) => "ECDSA P-256".into(),
                Some(Nid::SECP384R1) => "ECDSA P-384".into(),
                Some(Nid::SECP521R1) => "ECDSA P-521".into(),
                Some(nid) => format!("ECDSA {}", nid.short_name().unwrap_or("(unknown curve)")),
                None => "ECDSA".into(),
            }
        }
        Id::RSA => format!("RSA {}", key.bits()),
        Id::ED25519 => "Ed25519".into(),
        other => format!("key type {}", other.as_raw()),
    }
}

fn ensure_ca(data_dir: &Path, kek: &Kek, realm: &str, changes: &mut PkiChanges) -> Result<IssuerCa, ServerError> {
    let cert_path = data_dir.join(CA_CERT_FILE);
    let key_path = data_dir.join(CA_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => load_ca(data_dir, kek),
        (true, false) => Err(lost_key(&cert_path, &key_path)),
        (false, key_exists) => {
            let key = if key_exists {
                open_key(data_dir, kek, CA_KEY_FILE, CA_KEY_AAD)?
            } else {
                let key = generate_key(KeyType::P256)?;
                seal_key(kek, &key_path, CA_KEY_AAD, &key)?;
                changes.created.push(key_path);
                key
            };
            let cert = ca_certificate(&key, realm).map_err(pki_error)?;
            crate::fsutil::write_atomic(&cert_path, &cert.to_pem().map_err(pki_error)?, 0o644)?;
            changes.created.push(cert_path);
            Ok(IssuerCa { cert, key })
        }
    }
}

fn ensure_server(
    data_dir: &Path,
    kek: &Kek,
    realm: &str,
    ca: &IssuerCa,
    changes: &mut PkiChanges,
) -> Result<(), ServerError> {
    let chain_path = data_dir.join(SERVER_CHAIN_FILE);
    let key_path = data_dir.join(SERVER_KEY_FILE);
    let key = match (chain_path.exists(), key_path.exists()) {
        (true, true) => {
            let pem = std::fs::read(&chain_path).map_err(|e| ServerError::io(&chain_path, e))?;
            let leaf = first_certificate(&pem, &chain_path)?;
            let key = open_key(data_dir, kek, SERVER_KEY_FILE, SERVER_KEY_AAD)?;
            if !public_keys_match(&leaf, &key)? {
                return Err(ServerError::Config(format!(
                    "{}: the certificate is not for the key in {SERVER_KEY_FILE}",
                    chain_path.display()
                )));
            }
            let signed_by_ca = leaf.verify(&ca.key).map_err(pki_error)?;
            let renew_by = Asn1Time::days_from_now(RENEW_DAYS).map_err(pki_error)?;
            let ending = leaf.not_after().compare(&renew_by).map_err(pki_error)? == Ordering::Less;
            if signed_by_ca && !ending {
                return Ok(());
            }
            key
        }
        (true, false) => return Err(lost_key(&chain_path, &key_path)),
        (false, true) => open_key(data_dir, kek, SERVER_KEY_FILE, SERVER_KEY_AAD)?,
        (false, false) => {
            let key = generate_key(KeyType::P256)?;
            seal_key(kek, &key_path, SERVER_KEY_AAD, &key)?;
            changes.created.push(key_path);
            key
        }
    };
    let cert = server_certificate(ca, &key, realm).map_err(pki_error)?;
    let mut chain = cert.to_pem().map_err(pki_error)?;
    chain.extend_from_slice(&ca.cert.to_pem().map_err(pki_error)?);
    crate::fsutil::write_atomic(&chain_path, &chain, 0o644)?;
    changes.created.push(chain_path);
    Ok(())
}

fn lost_key(cert: &Path, key: &Path) -> ServerError {
    ServerError::Config(format!(
        "{} exists but its key {} does not: restore the key (or remove the certificate and its key files to \
         start a new PKI, which invalidates every TLS/TTLS card issued so far)",
        cert.display(),
        key.display()
    ))
}

fn ca_certificate(key: &PKeyRef<Private>, realm: &str) -> Result<X509, ErrorStack> {
    let subject = name(&format!("{realm} eapay issuer CA"))?;
    let not_after = Asn1Time::days_from_now(CA_DAYS)?;
    let mut b = builder(&subject, &subject, key, unix_now() - BACKDATE_SECS, &not_after)?;
    let ctx = b.x509v3_context(None, None);
    let skid = SubjectKeyIdentifier::new().build(&ctx)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    b.append_extension(skid)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn server_certificate(ca: &IssuerCa, key: &PKeyRef<Private>, realm: &str) -> Result<X509, ErrorStack> {
    let host = format!("aaa.{realm}");
    let not_after = Asn1Time::days_from_now(SERVER_DAYS)?;
    let mut b = builder(&name(&host)?, ca.cert.subject_name(), key, unix_now() - BACKDATE_SECS, &not_after)?;
    let ctx = b.x509v3_context(Some(&ca.cert), None);
    let san = SubjectAlternativeName::new().dns(&host).build(&ctx)?;
    let skid = SubjectKeyIdentifier::new().build(&ctx)?;
    let akid = AuthorityKeyIdentifier::new().keyid(false).build(&ctx)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    b.append_extension(san)?;
    b.append_extension(skid)?;
    b.append_extension(akid)?;
    b.sign(&ca.key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A v3 certificate builder with a random positive 16-octet serial.
fn builder(
    subject: &X509Name,
    issuer: &openssl::x509::X509NameRef,
    key: &PKeyRef<Private>,
    not_before: i64,
    not_after: &openssl::asn1::Asn1TimeRef,
) -> Result<X509Builder, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let mut serial: [u8; 16] = rand::random();
    // Positive, and a non-zero first octet keeps it 16 octets long.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let serial = BigNum::from_slice(&serial)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(issuer)?;
    b.set_pubkey(key)?;
    let not_before = Asn1Time::from_unix(not_before)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(not_after)?;
    Ok(b)
}

fn name(common_name: &str) -> Result<X509Name, ErrorStack> {
    let mut n = X509NameBuilder::new()?;
    n.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(n.build())
}

fn generate_key(key_type: KeyType) -> Result<PKey<Private>, ServerError> {
    let key = match key_type {
        KeyType::P256 => EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
            .and_then(|group| EcKey::generate(&group))
            .and_then(PKey::from_ec_key),
        KeyType::Rsa2048 => Rsa::generate(2048).and_then(PKey::from_rsa),
    };
    key.map_err(pki_error)
}

fn seal_key(kek: &Kek, path: &Path, aad: &str, key: &PKeyRef<Private>) -> Result<(), ServerError> {
    let der = key.private_key_to_pkcs8().map_err(pki_error)?;
    kek.seal_to_file(path, aad, &der)
}

fn open_key(data_dir: &Path, kek: &Kek, file: &str, aad: &str) -> Result<PKey<Private>, ServerError> {
    let path = data_dir.join(file);
    let der = kek.open_file(&path, aad)?;
    PKey::private_key_from_pkcs8(&der)
        .map_err(|e| ServerError::Config(format!("{}: not a PKCS#8 key: {}", path.display(), first_reason(&e))))
}

fn first_certificate(pem: &[u8], path: &Path) -> Result<X509, ServerError> {
    X509::stack_from_pem(pem)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .ok_or_else(|| ServerError::Config(format!("{}: no PEM certificate in it", path.display())))
}

fn public_keys_match(cert: &X509Ref, key: &PKeyRef<Private>) -> Result<bool, ServerError> {
    let public = cert.public_key().map_err(pki_error)?;
    Ok(public.public_eq(key))
}

fn pem_string(pem: Vec<u8>) -> Result<String, ServerError> {
    String::from_utf8(pem).map_err(|_| ServerError::Internal("PEM output is not text".into()))
}

fn unix_now() -> i64 {
    i64::try_from(crate::admin::unix_now()).unwrap_or(i64::MAX)
}

fn first_reason(e: &ErrorStack) -> String {
    e.errors().first().and_then(|e| e.reason().map(str::to_owned)).unwrap_or_else(|| e.to_string())
}

fn pki_error(e: ErrorStack) -> ServerError {
    ServerError::Internal(format!("PKI: {}", first_reason(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509VerifyResult};

    fn kek() -> Kek {
        Kek::from_bytes(&[7; 32])
    }

    /// Verifies `leaf` against `ca` with the given purpose, as a relying party would.
    fn chain_verifies(ca: &X509, leaf: &X509, purpose: &str) -> Result<(), String> {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca.clone()).unwrap();
        let purpose = match purpose {
            "server" => openssl::x509::X509PurposeId::SSL_SERVER,
            _ => openssl::x509::X509PurposeId::SSL_CLIENT,
        };
        store.set_purpose(purpose).unwrap();
        let store = store.build();
        let mut ctx = X509StoreContext::new().unwrap();
        let chain = Stack::new().unwrap();
        let ok = ctx.init(&store, leaf, &chain, |c| Ok((c.verify_cert()?, c.error()))).unwrap();
        match ok {
            (true, _) => Ok(()),
            (false, e) if e == X509VerifyResult::OK => Err("failed without a reason".into()),
            (false, e) => Err(e.error_string().to_string()),
        }
    }

    fn ext_text(cert: &X509) -> String {
        String::from_utf8(cert.to_text().unwrap()).unwrap()
    }

    #[test]
    fn init_creates_a_ca_and_a_server_certificate_that_verify() {
        let dir = tempfile::tempdir().unwrap();
        let changes = ensure(dir.path(), &kek(), "issuer.test").unwrap();
        assert_eq!(changes.created.len(), 4, "{changes:?}");
        let ca_pem = std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        let ca = X509::from_pem(&ca_pem).unwrap();
        let id = server_identity(dir.path(), &kek(), "issuer.test").unwrap();
        let chain = X509::stack_from_pem(&id.chain_pem).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].to_der().unwrap(), ca.to_der().unwrap(), "the chain ends with the CA");
        chain_verifies(&ca, &chain[0], "server").unwrap();
        let key = PKey::private_key_from_pem(&id.key_pem).unwrap();
        assert!(chain[0].public_key().unwrap().public_eq(&key));
        assert!(!format!("{id:?}").contains("PRIVATE"), "Debug hides the key");

        let ca_text = ext_text(&ca);
        assert!(
            ca_text.contains("CN=issuer.test eapay issuer CA") || ca_text.contains("CN = issuer.test eapay issuer CA")
        );
        assert!(ca_text.contains("CA:TRUE") && ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
        assert!(ca_text.contains("Subject Key Identifier"), "{ca_text}");
        assert_eq!(ca.serial_number().to_bn().unwrap().num_bytes(), 16);
        assert_eq!(ca.public_key().unwrap().ec_key().unwrap().group().curve_name(), Some(Nid::X9_62_PRIME256V1));
        let server_text = ext_text(&chain[0]);
        assert!(server_text.contains("DNS:aaa.issuer.test"), "{server_text}");
        assert!(server_text.contains("TLS Web Server Authentication"), "{server_text}");
        assert!(server_text.contains("Digital Signature"), "{server_text}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!((mode(CA_CERT_FILE), mode(SERVER_CHAIN_FILE)), (0o644, 0o644));
            assert_eq!((mode(CA_KEY_FILE), mode(SERVER_KEY_FILE)), (0o600, 0o600));
        }
        // No key in the clear on disk.
        for f in [CA_KEY_FILE, SERVER_KEY_FILE] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(!text.contains("PRIVATE KEY"), "{f}");
        }
    }

    #[test]
    fn existing_keys_are_kept_and_the_pin_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &kek(), "issuer.test").unwrap();
        let first = server_identity(dir.path(), &kek(), "issuer.test").unwrap();
        let pin = server_pin(&first.chain_pem).unwrap();
        assert_eq!(pin, server_pin(&first.chain_pem).unwrap());
        let ca_before = std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap();

        // A second run changes nothing.
        assert!(ensure(dir.path(), &kek(), "issuer.test").unwrap().created.is_empty());
        assert_eq!(server_identity(dir.path(), &kek(), "issuer.test").unwrap().chain_pem, first.chain_pem);

        // The server certificate lost: a new one, same key, same pin.
        std::fs::remove_file(dir.path().join(SERVER_CHAIN_FILE)).unwrap();
        let again = server_identity(dir.path(), &kek(), "issuer.test").unwrap();
        assert_ne!(again.chain_pem, first.chain_pem);
        assert_eq!(server_pin(&again.chain_pem).unwrap(), pin);
        assert_eq!(std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), ca_before);

        // The pin is SHA-256 of the leaf's SPKI.
        let leaf = X509::stack_from_pem(&again.chain_pem).unwrap().remove(0);
        let spki = leaf.public_key().unwrap().public_key_to_der().unwrap();
        assert_eq!(pin, <[u8; 32]>::from(Sha256::digest(&spki)));

        // A key lost is an error, not a silent new PKI.
        std::fs::remove_file(dir.path().join(SERVER_KEY_FILE)).unwrap();
        let err = server_identity(dir.path(), &kek(), "issuer.test").unwrap_err();
        assert!(err.to_string().contains("does not"), "{err}");
        // Another KEK does not open the keys.
        let dir2 = tempfile::tempdir().unwrap();
        ensure(dir2.path(), &kek(), "issuer.test").unwrap();
        assert!(server_identity(dir2.path(), &Kek::from_bytes(&[8; 32]), "issuer.test").is_err());
        assert!(server_pin(b"not pem").is_err());
    }

    #[test]
    fn a_new_ca_gets_the_server_certificate_reissued_for_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &kek(), "issuer.test").unwrap();
        let pin = server_pin(&server_identity(dir.path(), &kek(), "issuer.test").unwrap().chain_pem).unwrap();
        std::fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let changes = ensure(dir.path(), &kek(), "issuer.test").unwrap();
        assert_eq!(changes.created.len(), 3, "{changes:?}");
        let id = server_identity(dir.path(), &kek(), "issuer.test").unwrap();
        assert_eq!(server_pin(&id.chain_pem).unwrap(), pin);
        let ca = X509::from_pem(&std::fs::read(dir.path().join(CA_CERT_FILE)).unwrap()).unwrap();
        chain_verifies(&ca, &X509::stack_from_pem(&id.chain_pem).unwrap()[0], "server").unwrap();
    }

    #[test]
    fn card_certificates_chain_to_the_ca_for_client_auth() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &kek(), "issuer.test").unwrap();
        let ca = load_ca(dir.path(), &kek()).unwrap();
        let ca_cert = X509::from_pem(ca.cert_pem().unwrap().as_bytes()).unwrap();
        let expiry: u64 = 1_924_991_999; // 2030-12-31T23:59:59Z
        for key_type in [KeyType::P256, KeyType::Rsa2048] {
            let cred = issue_card_credential(&ca, key_type, "0123456789abcdef0123", expiry).unwrap();
            let cert = X509::from_pem(cred.certificate_pem.as_bytes()).unwrap();
            chain_verifies(&ca_cert, &cert, "client").unwrap();
            assert!(chain_verifies(&ca_cert, &cert, "server").is_err(), "a card certificate is not a server's");
            let key = PKey::private_key_from_pem(cred.key_pem.as_bytes()).unwrap();
            assert!(cred.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
            assert_eq!(key.public_key_to_der().unwrap(), cred.spki);
            assert_eq!(cert.public_key().unwrap().public_key_to_der().unwrap(), cred.spki);
            assert_eq!(
                cert.not_after().compare(&Asn1Time::from_unix(expiry as i64).unwrap()).unwrap(),
                Ordering::Equal
            );
            let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap();
            assert_eq!(cn.data().to_string().unwrap(), "0123456789abcdef0123");
            let want = if key_type == KeyType::P256 { "ECDSA P-256" } else { "RSA 2048" };
            assert_eq!(describe_key(&cred.spki), want);
            assert!(!format!("{cred:?}").contains("PRIVATE"));
        }
        // An expired card still gets a certificate (validity ends at its expiry).
        let old = issue_card_credential(&ca, KeyType::P256, "old", 1_577_836_799).unwrap();
        let cert = X509::from_pem(old.certificate_pem.as_bytes()).unwrap();
        assert_ne!(cert.not_before().compare(cert.not_after()).unwrap(), Ordering::Greater);
        assert_eq!(describe_key(b"junk"), "unparsable key");
    }

    /// freeDiameter checks that its own certificate names its Diameter
    /// identity before it starts, and GnuTLS takes the name from a dNSName
    /// only when the EKU is clientAuth alone: a terminal named like a host
    /// gets that dNSName; any other name stays in the CN only.
    #[test]
    fn terminal_certificates_name_a_host_name_in_a_dns_name() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &kek(), "issuer.test").unwrap();
        let ca = load_ca(dir.path(), &kek()).unwrap();
        let ca_cert = X509::from_pem(ca.cert_pem().unwrap().as_bytes()).unwrap();
        let expiry: u64 = 1_924_991_999;
        let dns_names = |cert: &X509| -> Vec<String> {
            cert.subject_alt_names()
                .map(|names| names.iter().filter_map(|n| n.dnsname().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        for name in ["relay.issuer.test", "shop-17"] {
            let cred = issue_terminal_credential(&ca, name, expiry).unwrap();
            let cert = X509::from_pem(cred.certificate_pem.as_bytes()).unwrap();
            chain_verifies(&ca_cert, &cert, "client").unwrap();
            assert!(chain_verifies(&ca_cert, &cert, "server").is_err(), "{name}: a terminal is no server");
            assert_eq!(dns_names(&cert), vec![name.to_owned()], "{name}");
        }
        for name in ["shop_17", "M@x", "-edge", "a..b", &"x".repeat(64)] {
            let cred = issue_terminal_credential(&ca, name, expiry).unwrap();
            let cert = X509::from_pem(cred.certificate_pem.as_bytes()).unwrap();
            assert!(dns_names(&cert).is_empty(), "{name}: not a host name");
            let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next().unwrap();
            assert_eq!(cn.data().to_string().unwrap(), name);
        }
        let card = issue_card_credential(&ca, KeyType::P256, "card.issuer.test", expiry).unwrap();
        let card = X509::from_pem(card.certificate_pem.as_bytes()).unwrap();
        assert!(dns_names(&card).is_empty(), "a card certificate names no host");
    }
}
