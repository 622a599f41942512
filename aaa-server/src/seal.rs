//! Card secrets at rest: AES-256-GCM under a key-encryption key (KEK).
//!
//! The KEK comes from `EAPAY_KEK` (64 hex digits) or, failing that, the key
//! file `<data_dir>/kek.key` that `init` creates with mode 0600. It is never
//! read from the configuration file, so a leaked config or store alone does
//! not reveal K/OPc. The card id is the associated data, so a sealed blob
//! moved to another card does not open.
//!
//! More keys are derived from the KEK bytes with HMAC-SHA-256 and
//! distinct labels: the PAN-token key (DESIGN.md §5: the issuer stores a
//! keyed hash of the card number, never the number), the PIN-verifier
//! key, and the root of the SIM/AKA identity keys (`crate::identities`). Deriving them keeps one secret to manage while a PAN-token can never
//! be confused with a PIN verifier or used as an encryption key.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ServerError;

/// Environment variable that overrides the key file.
pub const KEK_ENV: &str = "EAPAY_KEK";
/// Key file name inside the data directory.
pub const KEK_FILE: &str = "kek.key";

/// Label of the PAN-token key derivation.
const PAN_TOKEN_LABEL: &[u8] = b"eapay pan-token key v1";
/// Label of the PIN-verifier key derivation.
const PIN_VERIFIER_LABEL: &[u8] = b"eapay pin-verifier key v1";
/// Label of the SIM/AKA identity keys' root (`crate::identities`).
const IDENTITY_LABEL: &[u8] = b"eapay sim/aka identity keys v1";

/// The key-encryption key. The raw KEK bytes are not kept: only the AES-GCM
/// cipher and the derived HMAC keys.
pub struct Kek {
    cipher: Aes256Gcm,
    pan_key: [u8; 32],
    pin_key: [u8; 32],
    identity_root: [u8; 32],
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<hidden>)")
    }
}

impl Kek {
    /// From `EAPAY_KEK`, else from `<data_dir>/kek.key`.
    pub fn load(data_dir: &Path) -> Result<Self, ServerError> {
        if let Ok(hex_key) = std::env::var(KEK_ENV) {
            return Self::from_hex(hex_key.trim()).map_err(|e| ServerError::Kek(format!("{KEK_ENV}: {e}")));
        }
        let path = data_dir.join(KEK_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ServerError::Kek(format!("{}: {e} (set {KEK_ENV} or run `eapay-server init`)", path.display()))
        })?;
        Self::from_hex(text.trim()).map_err(|e| ServerError::Kek(format!("{}: {e}", path.display())))
    }

    /// Creates `<data_dir>/kek.key` with a fresh random key, mode 0600.
    pub fn create(data_dir: &Path) -> Result<Self, ServerError> {
        let key: [u8; 32] = rand::random();
        let path = data_dir.join(KEK_FILE);
        crate::fsutil::write_private(&path, format!("{}\n", hex::encode(key)).as_bytes())?;
        Ok(Self::from_bytes(&key))
    }

    /// From the 32 key bytes (tests and tools that hold the key already).
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
            pan_key: hmac_sha256(key, &[PAN_TOKEN_LABEL]),
            pin_key: hmac_sha256(key, &[PIN_VERIFIER_LABEL]),
            identity_root: hmac_sha256(key, &[IDENTITY_LABEL]),
        }
    }

    fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text).map_err(|_| "not hexadecimal".to_string())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "must be 32 bytes (64 hex digits)".to_string())?;
        Ok(Self::from_bytes(&key))
    }

    /// Seals `secret` for `card_id`: hex of nonce (12) || ciphertext+tag.
    pub fn seal(&self, card_id: &str, secret: &[u8]) -> Result<String, ServerError> {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: card_id.as_bytes() })
            .map_err(|_| ServerError::Kek("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(hex::encode(out))
    }

    /// Opens what [`Kek::seal`] produced for the same `card_id`.
    pub fn open(&self, card_id: &str, sealed: &str) -> Result<Vec<u8>, ServerError> {
        let bytes =
            hex::decode(sealed).map_err(|_| ServerError::Kek(format!("card {card_id}: sealed secret is not hex")))?;
        if bytes.len() < 12 + 16 {
            return Err(ServerError::Kek(format!("card {card_id}: sealed secret too short")));
        }
        let (nonce, ct) = bytes.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: card_id.as_bytes() })
            .map_err(|_| ServerError::Kek(format!("card {card_id}: secret does not open with this key-encryption key")))
    }
}

impl Kek {
    /// Seals `secret` under `aad` into the file `path` (hex, one line, mode
    /// 0600, replaced atomically): how the data directory keeps the issuer's
    /// own keys (receipt signing key, CA and server TLS keys).
    pub fn seal_to_file(&self, path: &Path, aad: &str, secret: &[u8]) -> Result<(), ServerError> {
        crate::fsutil::write_private(path, self.seal(aad, secret)?.as_bytes())
    }

    /// Opens a file written by [`Kek::seal_to_file`] with the same `aad`.
    pub fn open_file(&self, path: &Path, aad: &str) -> Result<Vec<u8>, ServerError> {
        let sealed = std::fs::read_to_string(path).map_err(|e| ServerError::io(path, e))?;
        self.open(aad, sealed.trim())
            .map_err(|_| ServerError::Kek(format!("{}: does not open with this key-encryption key", path.display())))
    }
}

impl Kek {
    /// PAN-token = HMAC-SHA-256(PAN-token key, PAN digits). Spaces and other
    /// separators are ignored so "4111 1111 ..." and "41111111..." give the
    /// same token; checking that the PAN is well formed is the caller's job.
    pub fn pan_token(&self, pan: &str) -> [u8; 32] {
        let digits: Vec<u8> = pan.bytes().filter(u8::is_ascii_digit).collect();
        hmac_sha256(&self.pan_key, &[&digits])
    }

    /// The stored form of a card's PIN: keyed, and bound to the card id so the
    /// same PIN on two cards gives unrelated verifiers. The 0 octet separates
    /// the two fields (a card id never contains it).
    pub fn pin_verifier(&self, card_id: &str, pin: &str) -> [u8; 32] {
        hmac_sha256(&self.pin_key, &[card_id.as_bytes(), &[0], pin.as_bytes()])
    }

    /// The encryption and nonce keys of SIM/AKA identity key `id`
    /// (pseudonyms, re-authentication identities): every instance holding
    /// this KEK derives the same ones.
    pub fn identity_keys(&self, id: u8) -> ([u8; 32], [u8; 32]) {
        (hmac_sha256(&self.identity_root, &[b"encrypt", &[id]]), hmac_sha256(&self.identity_root, &[b"nonce", &[id]]))
    }

    /// Whether `pin` matches the stored `verifier`, in constant time.
    pub fn verify_pin(&self, card_id: &str, pin: &str, verifier: &[u8]) -> bool {
        self.pin_verifier(card_id, pin).ct_eq(verifier).into()
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_to_the_card() {
        let kek = Kek::from_hex(&"11".repeat(32)).unwrap();
        let sealed = kek.seal("card-a", b"secret").unwrap();
        assert_eq!(kek.open("card-a", &sealed).unwrap(), b"secret");
        assert!(kek.open("card-b", &sealed).is_err());
        let other = Kek::from_hex(&"22".repeat(32)).unwrap();
        assert!(other.open("card-a", &sealed).is_err());
        assert!(!sealed.contains(&hex::encode(b"secret")));
    }

    #[test]
    fn pan_token_is_keyed_and_ignores_separators() {
        let kek = Kek::from_hex(&"11".repeat(32)).unwrap();
        let token = kek.pan_token("4111111111111111");
        assert_eq!(token, kek.pan_token("4111 1111 1111 1111"));
        assert_ne!(token, kek.pan_token("4111111111111112"));
        let other = Kek::from_hex(&"22".repeat(32)).unwrap();
        assert_ne!(token, other.pan_token("4111111111111111"));
        // Not the unkeyed hash, and not the HMAC under the raw KEK either.
        let raw = hmac_sha256(&[0x11; 32], &[b"4111111111111111"]);
        assert_ne!(token, raw);
    }

    #[test]
    fn pin_verifier_binds_card_and_pin() {
        let kek = Kek::from_hex(&"11".repeat(32)).unwrap();
        let v = kek.pin_verifier("card-a", "1234");
        assert!(kek.verify_pin("card-a", "1234", &v));
        assert!(!kek.verify_pin("card-a", "1235", &v));
        assert!(!kek.verify_pin("card-b", "1234", &v));
        assert!(!kek.verify_pin("card-a", "1234", &v[..31]));
        // The separator keeps ("card-a1", "234") apart from ("card-a", "1234").
        assert_ne!(kek.pin_verifier("card-a1", "234"), v);
        assert_ne!(kek.pin_verifier("card-a", "1234"), kek.pan_token("1234"));
    }

    #[test]
    fn debug_hides_the_key() {
        let kek = Kek::from_hex(&"11".repeat(32)).unwrap();
        assert_eq!(format!("{kek:?}"), "Kek(<hidden>)");
    }
}
