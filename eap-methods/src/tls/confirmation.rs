//! The card's payment confirmation in the TLS family (DESIGN.md §4): the
//! `EAPAY1` application-data records of EAP-TLS and the card signature that
//! both EAP-TLS and EAP-TTLS carry.
//!
//! The card's TLS key signs
//! `SHA-256("eapay payment v1" || canonical details || exporter)`, where
//! `exporter` is 32 octets of the TLS exporter with label
//! [`EXPORTER_LABEL`] and no context. The exporter ties the signature to one
//! TLS session, so a recorded signature cannot be replayed in another
//! conversation; the server stores signature and exporter value with the
//! authorization as non-repudiation evidence, and anyone holding the card's
//! registered public key can re-check it later (`eapay-server txn verify`).
//!
//! Record layout (integers big-endian):
//!
//! ```text
//! confirmation (card -> server):
//!   "EAPAY1" | 0x01 | details_len u16 | details | pan_token_len u8 (0 or 32) | pan_token
//!   | signature_len u16 | signature
//! result (server -> card):
//!   "EAPAY1" | 0x02 | result_len u16 | result
//! ```
//!
//! A record that starts with the magic but does not parse is a protocol
//! error; one that does not start with it is not ours (the TLS 1.3
//! commitment message is the single octet 0x00).

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{HasPrivate, PKey, PKeyRef};
use openssl::sign::{Signer, Verifier};

use crate::error::EapError;

/// Exporter label of the signature binding (RFC 5705 / RFC 8446 §7.5).
pub const EXPORTER_LABEL: &str = "EXPORTER-eapay-payment";
/// Octets of exporter output the signature covers.
pub const EXPORTER_LEN: usize = 32;
/// The domain prefix of the signed message.
const DOMAIN: &[u8] = b"eapay payment v1";
/// Every eapay record starts with this.
pub const MAGIC: &[u8; 6] = b"EAPAY1";
const KIND_CONFIRMATION: u8 = 1;
const KIND_RESULT: u8 = 2;
const PAN_TOKEN_LEN: usize = 32;
/// Largest details or signature accepted: far above any real one (canonical
/// details are under 200 octets, a P-256 signature is 72), small enough to
/// keep a hostile record cheap.
const MAX_FIELD: usize = 1024;

/// What the card sends after its handshake: the canonical payment details,
/// its PAN-token (for V-Card) and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationRecord {
    pub details: Vec<u8>,
    pub pan_token: Option<[u8; 32]>,
    pub signature: Vec<u8>,
}

impl ConfirmationRecord {
    /// The record's bytes (the plaintext of one TLS application-data record).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 6 + self.details.len() + 33 + self.signature.len());
        out.extend_from_slice(MAGIC);
        out.push(KIND_CONFIRMATION);
        push_u16_field(&mut out, &self.details);
        match &self.pan_token {
            Some(token) => {
                out.push(PAN_TOKEN_LEN as u8);
                out.extend_from_slice(token);
            }
            None => out.push(0),
        }
        push_u16_field(&mut out, &self.signature);
        out
    }

    /// Parses a confirmation record. `Ok(None)` if the bytes are not an
    /// eapay record at all.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, EapError> {
        let Some(body) = body_of(bytes, KIND_CONFIRMATION)? else { return Ok(None) };
        let mut r = Reader(body);
        let details = r.u16_field()?.to_vec();
        let pan_token = match r.u8()? {
            0 => None,
            32 => Some(r.take(PAN_TOKEN_LEN)?.try_into().map_err(|_| bad("PAN-token"))?),
            _ => return Err(bad("PAN-token length is neither 0 nor 32")),
        };
        let signature = r.u16_field()?.to_vec();
        if !r.0.is_empty() {
            return Err(bad("octets after the signature"));
        }
        if details.is_empty() || signature.is_empty() {
            return Err(bad("empty details or signature"));
        }
        Ok(Some(Self { details, pan_token, signature }))
    }
}

/// The server's answer record carrying the payment result to the card.
pub fn encode_result(result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 3 + result.len());
    out.extend_from_slice(MAGIC);
    out.push(KIND_RESULT);
    push_u16_field(&mut out, result);
    out
}

/// The result inside a result record; `Ok(None)` if the bytes are not an
/// eapay record.
pub fn decode_result(bytes: &[u8]) -> Result<Option<Vec<u8>>, EapError> {
    let Some(body) = body_of(bytes, KIND_RESULT)? else { return Ok(None) };
    let mut r = Reader(body);
    let result = r.u16_field()?.to_vec();
    if !r.0.is_empty() {
        return Err(bad("octets after the result"));
    }
    Ok(Some(result))
}

/// The card's signature over `details` bound to `exporter`.
pub fn sign<T: HasPrivate>(
    key: &PKeyRef<T>,
    details: &[u8],
    exporter: &[u8; EXPORTER_LEN],
) -> Result<Vec<u8>, ErrorStack> {
    let mut signer = Signer::new(MessageDigest::sha256(), key)?;
    signer.update(DOMAIN)?;
    signer.update(details)?;
    signer.update(exporter)?;
    signer.sign_to_vec()
}

/// True if `signature` is the signature of the key whose DER
/// SubjectPublicKeyInfo is `spki` over `details` bound to `exporter`. A key
/// or signature that does not parse is simply not valid.
pub fn verify(spki: &[u8], details: &[u8], exporter: &[u8; EXPORTER_LEN], signature: &[u8]) -> bool {
    let check = || -> Result<bool, ErrorStack> {
        let key = PKey::public_key_from_der(spki)?;
        let mut verifier = Verifier::new(MessageDigest::sha256(), &key)?;
        verifier.update(DOMAIN)?;
        verifier.update(details)?;
        verifier.update(exporter)?;
        verifier.verify(signature)
    };
    check().unwrap_or(false)
}

/// Evidence as the ledger stores it: exporter value, then the signature.
pub fn evidence_bytes(exporter: &[u8; EXPORTER_LEN], signature: &[u8]) -> Vec<u8> {
    [exporter.as_slice(), signature].concat()
}

/// The exporter value and signature of stored evidence.
pub fn split_evidence(evidence: &[u8]) -> Option<([u8; EXPORTER_LEN], &[u8])> {
    if evidence.len() <= EXPORTER_LEN {
        return None;
    }
    let (exporter, signature) = evidence.split_at(EXPORTER_LEN);
    Some((exporter.try_into().ok()?, signature))
}

fn body_of(bytes: &[u8], kind: u8) -> Result<Option<&[u8]>, EapError> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else { return Ok(None) };
    match rest.split_first() {
        Some((k, body)) if *k == kind => Ok(Some(body)),
        Some(_) => Err(bad("record of another kind")),
        None => Err(bad("record without a kind")),
    }
}

fn push_u16_field(out: &mut Vec<u8>, field: &[u8]) {
    // Callers never build fields over MAX_FIELD; clamp rather than wrap.
    let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&field[..usize::from(len)]);
}

fn bad(why: &'static str) -> EapError {
    EapError::malformed("EAPAY1 record", why)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EapError> {
        if self.0.len() < n {
            return Err(EapError::Truncated { needed: n, got: self.0.len() });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, EapError> {
        Ok(self.take(1)?[0])
    }

    fn u16_field(&mut self) -> Result<&'a [u8], EapError> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len > MAX_FIELD {
            return Err(bad("field longer than any confirmation needs"));
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;

    fn card_key() -> PKey<openssl::pkey::Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    #[test]
    fn a_signature_verifies_only_for_its_details_exporter_and_key() {
        let key = card_key();
        let spki = key.public_key_to_der().unwrap();
        let exporter = [9u8; 32];
        let sig = sign(&key, b"details", &exporter).unwrap();
        assert!(verify(&spki, b"details", &exporter, &sig));
        assert!(!verify(&spki, b"detailz", &exporter, &sig));
        assert!(!verify(&spki, b"details", &[8u8; 32], &sig));
        let other = card_key().public_key_to_der().unwrap();
        assert!(!verify(&other, b"details", &exporter, &sig));
        assert!(!verify(b"not a key", b"details", &exporter, &sig));
        assert!(!verify(&spki, b"details", &exporter, b"garbage"));
    }

    #[test]
    fn records_round_trip_and_refuse_damage() {
        let rec = ConfirmationRecord { details: vec![1, 2, 3], pan_token: Some([5; 32]), signature: vec![7; 70] };
        let bytes = rec.encode();
        assert_eq!(ConfirmationRecord::decode(&bytes).unwrap(), Some(rec.clone()));
        let plain = ConfirmationRecord { pan_token: None, ..rec };
        assert_eq!(ConfirmationRecord::decode(&plain.encode()).unwrap(), Some(plain));
        for cut in 0..bytes.len() {
            let r = ConfirmationRecord::decode(&bytes[..cut]);
            assert!(matches!(r, Ok(None) | Err(_)), "a cut record never parses ({cut})");
            if cut >= MAGIC.len() {
                assert!(r.is_err(), "a cut eapay record is an error ({cut})");
            }
        }
        assert!(ConfirmationRecord::decode(&[bytes.clone(), vec![0]].concat()).is_err());
        assert_eq!(ConfirmationRecord::decode(&[0]).unwrap(), None, "the TLS 1.3 commitment message is not ours");
        let result = encode_result(b"A1B2C3");
        assert_eq!(decode_result(&result).unwrap(), Some(b"A1B2C3".to_vec()));
        assert!(ConfirmationRecord::decode(&result).is_err(), "a result is not a confirmation");
        assert_eq!(decode_result(b"hello").unwrap(), None);
    }

    #[test]
    fn evidence_splits_back() {
        let ev = evidence_bytes(&[3; 32], b"sig");
        assert_eq!(split_evidence(&ev), Some(([3; 32], b"sig".as_slice())));
        assert_eq!(split_evidence(&[0; 32]), None);
    }
}
