//! Card secrets at rest: AES-256-GCM under a key-encryption key (KEK).
//!
//! The KEK comes from `EAPAY_KEK` (64 hex digits) or, failing that, the key
//! file `<data_dir>/kek.key` that `init` creates with mode 0600. It is never
//! read from the configuration file, so a leaked config or store alone does
//! not reveal K/OPc. The card id is the associated data, so a sealed blob
//! moved to another card does not open.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::error::ServerError;

/// Environment variable that overrides the key file.
pub const KEK_ENV: &str = "EAPAY_KEK";
/// Key file name inside the data directory.
pub const KEK_FILE: &str = "kek.key";

/// The key-encryption key.
pub struct Kek(Aes256Gcm);

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
        Ok(Self(Aes256Gcm::new(&key.into())))
    }

    fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text).map_err(|_| "not hexadecimal".to_string())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| "must be 32 bytes (64 hex digits)".to_string())?;
        Ok(Self(Aes256Gcm::new(&key.into())))
    }

    /// Seals `secret` for `card_id`: hex of nonce (12) || ciphertext+tag.
    pub fn seal(&self, card_id: &str, secret: &[u8]) -> Result<String, ServerError> {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: card_id.as_bytes() })
            .map_err(|_| ServerError::Kek("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(hex::encode(out))
    }

    /// Opens what [`Kek::seal`] produced for the same `card_id`.
    pub fn open(&self, card_id: &str, sealed: &str) -> Result<Vec<u8>, ServerError> {
        let bytes = hex::decode(sealed).map_err(|_| ServerError::Kek(format!("card {card_id}: sealed secret is not hex")))?;
        if bytes.len() < 12 + 16 {
            return Err(ServerError::Kek(format!("card {card_id}: sealed secret too short")));
        }
        let (nonce, ct) = bytes.split_at(12);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: card_id.as_bytes() })
            .map_err(|_| ServerError::Kek(format!("card {card_id}: secret does not open with this key-encryption key")))
    }
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
}
