//! Issuer-signed payment receipts (Eapay-Receipt, DESIGN.md §5).
//!
//! The issuer signs approval code, transaction id, merchant id, amount,
//! currency, time and card id with Ed25519, so a merchant (or anyone holding
//! the issuer's public key) can later prove an approval offline, e.g. with
//! `eapay-terminal verify-receipt`. Wire form, all integers big-endian:
//!
//! ```text
//! version u8 = 1 | key_id [8] | approval_code [6] | authorized_at_ms u64 | amount u64 | currency u16
//! | card_id (u8 len + bytes) | merchant_id (u8 len + bytes) | transaction_id (u8 len + bytes)
//! | signature [64] = Ed25519 over b"eapay receipt v1\0" || everything before the signature
//! ```
//!
//! `key_id` is the first 8 bytes of SHA-256 over the public key's SPKI DER: it
//! lets a verifier holding several issuer keys (rotation) pick the right one
//! and report a receipt of another issuer as such instead of as a forgery.
//! The domain prefix keeps the signature from being valid for any other
//! message the same key might ever sign.
//!
//! Signing is ed25519-dalek's (the key comes from OpenSSL, which reads and
//! writes its PKCS#8 form): OpenSSL 3.0's Ed25519 takes 39 µs a signature
//! here against dalek's 18, and a receipt is signed on every approval
//! (BENCHMARKS.md, "Receipt signatures"). Ed25519 is deterministic (RFC
//! 8032), so both give the same bytes. Verification is done by OpenSSL, an
//! implementation independent of the signer, over public data; nothing
//! secret is compared here, so no constant-time comparison is needed (the
//! key id comparison is on public bytes).

use std::fmt;

use openssl::error::ErrorStack;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign::Verifier;
use sha2::{Digest, Sha256};

use crate::payment::{is_approval_code, is_valid_id, MAX_ID_LEN};

/// The only receipt version this code writes and reads.
pub const RECEIPT_VERSION: u8 = 1;
/// Signed-over prefix that separates receipts from anything else the key signs.
const DOMAIN: &[u8] = b"eapay receipt v1\0";
const KEY_ID_LEN: usize = 8;
const APPROVAL_CODE_LEN: usize = 6;
const SIGNATURE_LEN: usize = 64;
/// version, key id, approval code, time, amount, currency.
const FIXED_LEN: usize = 1 + KEY_ID_LEN + APPROVAL_CODE_LEN + 8 + 8 + 2;
/// The shortest receipt: one-byte ids.
pub const MIN_RECEIPT_LEN: usize = FIXED_LEN + 3 * 2 + SIGNATURE_LEN;
/// The longest receipt: 64-byte ids. Longer than one Vendor-Specific holds,
/// so it travels split (see [`crate::payment::push_split`]).
pub const MAX_RECEIPT_LEN: usize = FIXED_LEN + 3 * (1 + MAX_ID_LEN) + SIGNATURE_LEN;

/// What the issuer vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBody {
    /// 6 characters A-Z0-9.
    pub approval_code: String,
    /// Ids: 1..=64 bytes of printable ASCII, as in the payment attributes.
    pub transaction_id: String,
    pub merchant_id: String,
    pub card_id: String,
    /// Minor units.
    pub amount: u64,
    /// ISO 4217 numeric.
    pub currency: u16,
    /// Server clock at the decision, Unix ms.
    pub authorized_at_ms: u64,
}

/// Why a receipt could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The bytes are not a receipt (too short, too long, bad lengths or fields).
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
    #[error("receipt version {0} is not supported")]
    UnsupportedVersion(u8),
    /// The receipt names another issuer key than the one it is checked with.
    #[error("receipt was signed by another issuer key")]
    WrongKey,
    /// Right key, but the content is not what the issuer signed.
    #[error("receipt signature does not verify")]
    BadSignature,
    /// The body given to `sign` cannot be written as a receipt.
    #[error("cannot sign receipt: {0}")]
    InvalidBody(&'static str),
    /// A key that parsed but is not Ed25519.
    #[error("issuer key is not an Ed25519 key")]
    NotEd25519,
    /// OpenSSL failed (bad DER/PEM, or an internal error).
    #[error("crypto library error: {0}")]
    Crypto(String),
}

impl From<ErrorStack> for ReceiptError {
    fn from(e: ErrorStack) -> Self {
        ReceiptError::Crypto(e.to_string())
    }
}

/// The issuer's Ed25519 signing key.
#[derive(Clone)]
pub struct IssuerSigningKey {
    key: PKey<Private>,
    /// The same key, for signing (zeroised when dropped).
    signer: ed25519_dalek::SigningKey,
    key_id: [u8; KEY_ID_LEN],
}

/// The issuer's Ed25519 public key, as merchants and auditors hold it.
#[derive(Clone)]
pub struct IssuerPublicKey {
    key: PKey<Public>,
    key_id: [u8; KEY_ID_LEN],
}

fn hex8(bytes: &[u8; KEY_ID_LEN]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Only the public key id: the private key must never reach a log.
impl fmt::Debug for IssuerSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerSigningKey").field("key_id", &hex8(&self.key_id)).finish_non_exhaustive()
    }
}

impl fmt::Debug for IssuerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerPublicKey").field("key_id", &hex8(&self.key_id)).finish_non_exhaustive()
    }
}

fn require_ed25519<T>(key: &PKey<T>) -> Result<(), ReceiptError> {
    if key.id() == Id::ED25519 {
        Ok(())
    } else {
        Err(ReceiptError::NotEd25519)
    }
}

/// First 8 bytes of SHA-256 over the SPKI DER of a key.
fn key_id_from_spki(spki_der: &[u8]) -> [u8; KEY_ID_LEN] {
    let digest = Sha256::digest(spki_der);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

impl IssuerSigningKey {
    /// A fresh key from OpenSSL's CSPRNG.
    pub fn generate() -> Result<Self, ReceiptError> {
        Self::from_key(PKey::generate_ed25519()?)
    }

    /// A PKCS#8 `PrivateKeyInfo` (RFC 8410) as written by `to_pkcs8_der` or
    /// `openssl genpkey -algorithm ed25519 -outform DER`.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, ReceiptError> {
        Self::from_key(PKey::private_key_from_pkcs8(der)?)
    }

    /// PKCS#8 DER of the private key; the caller seals or protects it.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, ReceiptError> {
        Ok(self.key.private_key_to_pkcs8()?)
    }

    pub fn public_key(&self) -> Result<IssuerPublicKey, ReceiptError> {
        let raw = self.key.raw_public_key()?;
        IssuerPublicKey::from_key(PKey::public_key_from_raw_bytes(&raw, Id::ED25519)?)
    }

    /// The id of this key's public half, as written into receipts.
    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }

    /// The whole receipt: body, key id and signature.
    pub fn sign(&self, body: &ReceiptBody) -> Result<Vec<u8>, ReceiptError> {
        let mut out = encode_body(self.key_id, body)?;
        let signature = self.ed25519(&[DOMAIN, &out].concat());
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// The Ed25519 signature of `message` (RFC 8032 §5.1.6).
    fn ed25519(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        ed25519_dalek::Signer::sign(&self.signer, message).to_bytes()
    }

    fn from_key(key: PKey<Private>) -> Result<Self, ReceiptError> {
        require_ed25519(&key)?;
        let key_id = key_id_from_spki(&key.public_key_to_der()?);
        let raw = zeroize::Zeroizing::new(key.raw_private_key()?);
        let seed: &[u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| ReceiptError::Crypto(format!("an Ed25519 private key of {} bytes", raw.len())))?;
        let signer = ed25519_dalek::SigningKey::from_bytes(seed);
        Ok(IssuerSigningKey { key, signer, key_id })
    }
}

impl IssuerPublicKey {
    /// A PEM `PUBLIC KEY` (SPKI), as written by `to_pem` or `openssl pkey -pubout`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ReceiptError> {
        Self::from_key(PKey::public_key_from_pem(pem)?)
    }

    pub fn to_pem(&self) -> Result<Vec<u8>, ReceiptError> {
        Ok(self.key.public_key_to_pem()?)
    }

    /// First 8 bytes of SHA-256 of the SPKI DER.
    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }

    /// Checks version, key id, bounds, signature; returns the body.
    ///
    /// The signature is checked before any field past the key id is
    /// interpreted, so a forged receipt never reaches the field parser.
    pub fn verify(&self, receipt: &[u8]) -> Result<ReceiptBody, ReceiptError> {
        if receipt.len() < MIN_RECEIPT_LEN {
            return Err(ReceiptError::Malformed("shorter than the smallest receipt"));
        }
        if receipt.len() > MAX_RECEIPT_LEN {
            return Err(ReceiptError::Malformed("longer than the largest receipt"));
        }
        match receipt.first() {
            Some(&RECEIPT_VERSION) => {}
            Some(&other) => return Err(ReceiptError::UnsupportedVersion(other)),
            None => return Err(ReceiptError::Malformed("shorter than the smallest receipt")),
        }
        if key_id_of(receipt) != Some(self.key_id) {
            return Err(ReceiptError::WrongKey);
        }
        let (signed, signature) = receipt.split_at(receipt.len() - SIGNATURE_LEN);
        let mut verifier = Verifier::new_without_digest(&self.key)?;
        // OpenSSL reports a wrong signature as `false`, but some versions
        // also leave an error for a malformed one; either way it is not valid.
        if !verifier.verify_oneshot(signature, &[DOMAIN, signed].concat()).unwrap_or(false) {
            return Err(ReceiptError::BadSignature);
        }
        decode_body(signed)
    }

    fn from_key(key: PKey<Public>) -> Result<Self, ReceiptError> {
        require_ed25519(&key)?;
        let key_id = key_id_from_spki(&key.public_key_to_der()?);
        Ok(IssuerPublicKey { key, key_id })
    }
}

/// The key id a receipt claims, to pick the verification key among several
/// (key rotation). `None` if the receipt is not version 1 or too short.
/// Unauthenticated until [`IssuerPublicKey::verify`] succeeds.
pub fn key_id_of(receipt: &[u8]) -> Option<[u8; 8]> {
    match receipt {
        [RECEIPT_VERSION, rest @ ..] => rest.get(..KEY_ID_LEN)?.try_into().ok(),
        _ => None,
    }
}

fn encode_body(key_id: [u8; KEY_ID_LEN], body: &ReceiptBody) -> Result<Vec<u8>, ReceiptError> {
    if !is_approval_code(&body.approval_code) {
        return Err(ReceiptError::InvalidBody("approval code is not 6 characters A-Z0-9"));
    }
    let ids = [
        (&body.card_id, "card id is not 1..=64 printable ASCII characters"),
        (&body.merchant_id, "merchant id is not 1..=64 printable ASCII characters"),
        (&body.transaction_id, "transaction id is not 1..=64 printable ASCII characters"),
    ];
    let mut out = Vec::with_capacity(MAX_RECEIPT_LEN);
    out.push(RECEIPT_VERSION);
    out.extend_from_slice(&key_id);
    out.extend_from_slice(body.approval_code.as_bytes());
    out.extend_from_slice(&body.authorized_at_ms.to_be_bytes());
    out.extend_from_slice(&body.amount.to_be_bytes());
    out.extend_from_slice(&body.currency.to_be_bytes());
    for (id, why) in ids {
        let len = u8::try_from(id.len()).ok().filter(|_| is_valid_id(id)).ok_or(ReceiptError::InvalidBody(why))?;
        out.push(len);
        out.extend_from_slice(id.as_bytes());
    }
    Ok(out)
}

/// Parses the signed part (everything before the signature), strictly.
fn decode_body(signed: &[u8]) -> Result<ReceiptBody, ReceiptError> {
    let mut r = Reader(signed);
    r.take(1 + KEY_ID_LEN)?;
    let approval_code = std::str::from_utf8(r.take(APPROVAL_CODE_LEN)?)
        .ok()
        .filter(|c| is_approval_code(c))
        .ok_or(ReceiptError::Malformed("approval code is not 6 characters A-Z0-9"))?
        .to_owned();
    let authorized_at_ms = r.u64()?;
    let amount = r.u64()?;
    let currency = u16::from_be_bytes(r.array()?);
    let card_id = r.id("card id is not 1..=64 printable ASCII characters")?;
    let merchant_id = r.id("merchant id is not 1..=64 printable ASCII characters")?;
    let transaction_id = r.id("transaction id is not 1..=64 printable ASCII characters")?;
    if !r.0.is_empty() {
        return Err(ReceiptError::Malformed("bytes between the transaction id and the signature"));
    }
    Ok(ReceiptBody { approval_code, transaction_id, merchant_id, card_id, amount, currency, authorized_at_ms })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReceiptError> {
        if n > self.0.len() {
            return Err(ReceiptError::Malformed("a field runs past the signature"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReceiptError> {
        self.take(N)?.try_into().map_err(|_| ReceiptError::Malformed("a field runs past the signature"))
    }

    fn u64(&mut self) -> Result<u64, ReceiptError> {
        self.array().map(u64::from_be_bytes)
    }

    fn id(&mut self, why: &'static str) -> Result<String, ReceiptError> {
        let [len] = self.array()?;
        let id = std::str::from_utf8(self.take(usize::from(len))?).map_err(|_| ReceiptError::Malformed(why))?;
        if is_valid_id(id) {
            Ok(id.to_owned())
        } else {
            Err(ReceiptError::Malformed(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::eapay;
    use crate::payment::{concat, push_split};
    use crate::radius::{Code, Packet, MAX_VENDOR_VALUE_LEN};
    use openssl::sign::Signer;

    /// RFC 8032 §7.1 TEST 1 and TEST 3: the signing key loaded from its
    /// PKCS#8 form through OpenSSL signs as the RFC says.
    #[test]
    fn signatures_are_rfc_8032s() {
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b\
                 d25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc659\
                 4a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (seed, message, signature) in vectors {
            let key = PKey::private_key_from_raw_bytes(&hex::decode(seed).unwrap(), Id::ED25519).unwrap();
            let der = key.private_key_to_pkcs8().unwrap();
            let signing = IssuerSigningKey::from_pkcs8_der(&der).unwrap();
            assert_eq!(hex::encode(signing.ed25519(&hex::decode(message).unwrap())), signature);
        }
    }

    /// dalek's receipts are byte for byte OpenSSL's (Ed25519 is
    /// deterministic), and OpenSSL verifies them.
    #[test]
    fn dalek_signs_as_openssl_does() {
        let key = IssuerSigningKey::generate().unwrap();
        let receipt = key.sign(&body()).unwrap();
        let (signed, signature) = receipt.split_at(receipt.len() - SIGNATURE_LEN);
        let by_openssl =
            Signer::new_without_digest(&key.key).unwrap().sign_oneshot_to_vec(&[DOMAIN, signed].concat()).unwrap();
        assert_eq!(signature, &by_openssl[..]);
        assert_eq!(key.public_key().unwrap().verify(&receipt).map(|b| b.amount), Ok(1250));
    }

    fn body() -> ReceiptBody {
        ReceiptBody {
            approval_code: "7QX2K9".into(),
            transaction_id: "T-0001".into(),
            merchant_id: "M-DEMO".into(),
            card_id: "3f2a9c0d11e4b7a65c08".into(),
            amount: 1250,
            currency: 840,
            authorized_at_ms: 1_700_000_000_123,
        }
    }

    fn longest() -> ReceiptBody {
        ReceiptBody {
            transaction_id: "t".repeat(MAX_ID_LEN),
            merchant_id: "m".repeat(MAX_ID_LEN),
            card_id: "c".repeat(MAX_ID_LEN),
            amount: u64::MAX,
            currency: u16::MAX,
            authorized_at_ms: u64::MAX,
            ..body()
        }
    }

    #[test]
    fn sign_and_verify() {
        let key = IssuerSigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        assert_eq!(public.key_id(), key.key_id());
        let receipt = key.sign(&body()).unwrap();
        assert_eq!(receipt.len(), FIXED_LEN + 3 + 6 + 6 + 20 + SIGNATURE_LEN);
        assert_eq!(receipt[0], RECEIPT_VERSION);
        assert_eq!(key_id_of(&receipt), Some(public.key_id()));
        assert_eq!(&receipt[9..15], b"7QX2K9");
        assert_eq!(&receipt[15..23], &1_700_000_000_123u64.to_be_bytes());
        assert_eq!(&receipt[23..31], &1250u64.to_be_bytes());
        assert_eq!(&receipt[31..33], &840u16.to_be_bytes());
        assert_eq!(receipt[33], 20);
        assert_eq!(public.verify(&receipt), Ok(body()));
    }

    #[test]
    fn key_id_is_the_spki_hash_prefix() {
        let key = IssuerSigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        let spki = public.key.public_key_to_der().unwrap();
        assert_eq!(spki.len(), 44);
        assert_eq!(public.key_id(), Sha256::digest(&spki)[..8]);
    }

    #[test]
    fn every_flipped_byte_fails() {
        let key = IssuerSigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        let receipt = key.sign(&body()).unwrap();
        for i in 0..receipt.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = receipt.clone();
                bad[i] ^= flip;
                assert!(public.verify(&bad).is_err(), "byte {i} ^ {flip:#x} verified");
            }
        }
        let mut bad = receipt.clone();
        bad[0] = 2;
        assert_eq!(public.verify(&bad), Err(ReceiptError::UnsupportedVersion(2)));
        let mut bad = receipt.clone();
        bad[40] ^= 1;
        assert_eq!(public.verify(&bad), Err(ReceiptError::BadSignature));
        let mut bad = receipt;
        bad[3] ^= 1;
        assert_eq!(public.verify(&bad), Err(ReceiptError::WrongKey));
    }

    #[test]
    fn another_issuer_key_is_wrong_key() {
        let ours = IssuerSigningKey::generate().unwrap();
        let theirs = IssuerSigningKey::generate().unwrap();
        assert_ne!(ours.key_id(), theirs.key_id());
        let receipt = theirs.sign(&body()).unwrap();
        assert_eq!(ours.public_key().unwrap().verify(&receipt), Err(ReceiptError::WrongKey));
        // Their signature under our key id is a forgery, not a foreign receipt.
        let mut relabelled = receipt;
        relabelled[1..9].copy_from_slice(&ours.key_id());
        assert_eq!(ours.public_key().unwrap().verify(&relabelled), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn truncated_and_extended_receipts_fail_cleanly() {
        let key = IssuerSigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        let receipt = key.sign(&body()).unwrap();
        for cut in 0..receipt.len() {
            assert!(public.verify(&receipt[..cut]).is_err(), "prefix of {cut} bytes verified");
            assert!(public.verify(&receipt[cut + 1..]).is_err(), "suffix from {cut} verified");
        }
        assert_eq!(public.verify(&[]), Err(ReceiptError::Malformed("shorter than the smallest receipt")));
        let mut longer = receipt.clone();
        longer.push(0);
        assert!(public.verify(&longer).is_err());
        let huge = [receipt.as_slice(), &[0; MAX_RECEIPT_LEN]].concat();
        assert_eq!(public.verify(&huge), Err(ReceiptError::Malformed("longer than the largest receipt")));
        assert_eq!(key_id_of(&receipt[..5]), None);
    }

    #[test]
    fn signed_but_inconsistent_lengths_are_malformed() {
        // A receipt whose signature is valid but whose id lengths do not
        // add up can only come from a broken signer; it is still refused.
        let key = IssuerSigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        let mut signed = encode_body(key.key_id(), &body()).unwrap();
        signed.push(0);
        let signature =
            Signer::new_without_digest(&key.key).unwrap().sign_oneshot_to_vec(&[DOMAIN, &signed].concat()).unwrap();
        let receipt = [signed, signature].concat();
        assert_eq!(
            public.verify(&receipt),
            Err(ReceiptError::Malformed("bytes between the transaction id and the signature"))
        );
    }

    #[test]
    fn longest_ids_need_a_split_receipt() {
        let key = IssuerSigningKey::generate().unwrap();
        let public = key.public_key().unwrap();
        let receipt = key.sign(&longest()).unwrap();
        assert_eq!(receipt.len(), MAX_RECEIPT_LEN);
        assert!(receipt.len() > MAX_VENDOR_VALUE_LEN);
        let mut reply = Packet::new(Code::AccessAccept, 9, [0; 16]);
        push_split(&mut reply, eapay::VENDOR_ID, eapay::RECEIPT, &receipt).unwrap();
        assert_eq!(reply.attributes.len(), 2);
        let back = Packet::decode(&reply.encode_unsigned().unwrap()).unwrap();
        let carried = concat(&back, eapay::VENDOR_ID, eapay::RECEIPT).unwrap();
        assert_eq!(public.verify(&carried), Ok(longest()));
    }

    #[test]
    fn invalid_bodies_are_not_signed() {
        let key = IssuerSigningKey::generate().unwrap();
        let cases = [
            ReceiptBody { approval_code: "abc123".into(), ..body() },
            ReceiptBody { approval_code: "A1B2C3D".into(), ..body() },
            ReceiptBody { card_id: String::new(), ..body() },
            ReceiptBody { merchant_id: "m".repeat(MAX_ID_LEN + 1), ..body() },
            ReceiptBody { transaction_id: "T 1".into(), ..body() },
            ReceiptBody { transaction_id: "x".repeat(300), ..body() },
        ];
        for case in cases {
            assert!(matches!(key.sign(&case), Err(ReceiptError::InvalidBody(_))), "{case:?}");
        }
    }

    #[test]
    fn key_serialisation_round_trips() {
        let key = IssuerSigningKey::generate().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let again = IssuerSigningKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        assert_eq!(again.to_pkcs8_der().unwrap(), der);
        let receipt = again.sign(&body()).unwrap();

        let pem = key.public_key().unwrap().to_pem().unwrap();
        assert!(pem.starts_with(b"-----BEGIN PUBLIC KEY-----"));
        let public = IssuerPublicKey::from_pem(&pem).unwrap();
        assert_eq!(public.key_id(), key.key_id());
        assert_eq!(public.to_pem().unwrap(), pem);
        assert_eq!(public.verify(&receipt), Ok(body()));

        assert!(matches!(IssuerSigningKey::from_pkcs8_der(&der[..der.len() - 1]), Err(ReceiptError::Crypto(_))));
        assert!(matches!(IssuerPublicKey::from_pem(b"not a key"), Err(ReceiptError::Crypto(_))));
    }

    #[test]
    fn other_key_types_are_refused() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let der = ec.private_key_to_pkcs8().unwrap();
        assert_eq!(IssuerSigningKey::from_pkcs8_der(&der).unwrap_err(), ReceiptError::NotEd25519);
        let pem = ec.public_key_to_pem().unwrap();
        assert_eq!(IssuerPublicKey::from_pem(&pem).unwrap_err(), ReceiptError::NotEd25519);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = IssuerSigningKey::generate().unwrap();
        let der = key.to_pkcs8_der().unwrap();
        let shown = format!("{key:?} {:?}", key.public_key().unwrap());
        let id = hex8(&key.key_id());
        assert_eq!(
            shown,
            format!("IssuerSigningKey {{ key_id: \"{id}\", .. }} IssuerPublicKey {{ key_id: \"{id}\", .. }}")
        );
        // The last 32 bytes of the PKCS#8 DER are the private seed.
        let seed: String = der[der.len() - 32..].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&seed));
    }
}
