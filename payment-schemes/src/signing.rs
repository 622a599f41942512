//! ECDSA P-256 with SHA-256 over OpenSSL (the curve eapay's cards use), for
//! the models' signatures: the proposed scheme's SK_C, 3-D Secure's MPI and
//! ACS keys.

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::{Signer, Verifier};

/// A key pair; signing cannot fail for a freshly generated P-256 key, so
/// errors surface as an empty signature, which verifies for nobody.
pub struct KeyPair {
    key: PKey<Private>,
    spki: Vec<u8>,
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let spki = key.public_key_to_der()?;
        Ok(KeyPair { key, spki })
    }

    /// SubjectPublicKeyInfo DER: what is registered and what is hashed into a V-Card.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The private scalar, for judging whether it leaked.
    pub fn private_scalar(&self) -> Vec<u8> {
        self.key.ec_key().map(|k| k.private_key().to_vec()).unwrap_or_default()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        Signer::new(MessageDigest::sha256(), &self.key)
            .and_then(|mut s| {
                s.update(message)?;
                s.sign_to_vec()
            })
            .unwrap_or_default()
    }
}

/// Whether `signature` over `message` verifies with the key in `spki`; any
/// malformed input is a failed verification.
pub fn verify(spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = PKey::public_key_from_der(spki) else { return false };
    Verifier::new(MessageDigest::sha256(), &key)
        .and_then(|mut v| {
            v.update(message)?;
            v.verify(signature)
        })
        .unwrap_or(false)
}
