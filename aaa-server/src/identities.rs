//! Pseudonyms and fast re-authentication identities of the SIM/AKA family
//! (RFC 4186/4187 §4-5): names only the issuer can map back to a card, with
//! nothing to look up.
//!
//! An identity is `<prefix digit><token>`, the token base64url (no padding)
//! of `key id (1) || nonce (12) || AES-256-GCM(plaintext) || tag (16)`:
//!
//! - plaintext: `kind (1) || issued, µs since the epoch (8) || salt (8) ||
//!   body`; a pseudonym's body is the card id, a re-authentication
//!   identity's is `counter (2) || key length (1) || keys || card id`;
//! - associated data: a label, the EAP method and the kind, so a pseudonym
//!   is never a re-authentication identity, nor an AKA one a SIM one;
//! - nonce: the first 12 octets of HMAC-SHA-256 over the plaintext under a
//!   second key (a synthetic IV, as in AES-SIV): unique because the
//!   plaintext is (time and a random salt), and safe even if the random
//!   source repeats.
//!
//! The keys are derived from the key-encryption key and a one-octet key id
//! (`[eap.privacy]`), so every server instance that shares the ledger (and
//! therefore the KEK) understands the others' identities. Rotation: set a
//! new `key_id`, and list the previous one under `retired_keys` with the
//! time until which it is still accepted; after that its identities no
//! longer resolve and cards fall back to their permanent identity once.
//!
//! A re-authentication identity works once: resolving it moves the card's
//! re-authentication floor in the ledger to its issue time (a
//! compare-and-set), so it, and any identity issued before it, is refused
//! from then on, across restarts and instances. Each re-authentication
//! hands out a new one issued later.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use eap_methods::sim_aka::identity::{classify, prefix, user_part, IdentityKind};
use eap_methods::sim_aka::{ReauthSecret, ReauthState};
use eap_methods::EapType;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::seal::Kek;

const LABEL: &[u8] = b"eapay sim/aka identity v1";
const PSEUDONYM: u8 = 1;
const REAUTH: u8 = 2;

/// A re-authentication identity opened: the state it resumes, and its issue
/// time, which the ledger's floor must be below.
#[derive(Debug)]
pub struct ReauthTicket {
    pub state: ReauthState,
    pub issued_us: u64,
}

/// Why an identity did not resolve (for the log and the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// Not base64url, too short, or not an identity of this kind and method.
    Malformed,
    /// A key id this server does not know, or no longer accepts.
    UnknownKey,
    /// It does not decrypt: forged or altered.
    Forged,
}

impl Unresolved {
    pub fn text(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown or retired key",
            Self::Forged => "does not decrypt (forged or altered)",
        }
    }
}

struct IdentityKey {
    cipher: Aes256Gcm,
    nonce_key: [u8; 32],
    /// Unix seconds after which identities under this key are refused.
    accept_until: Option<u64>,
}

/// The keys that issue and open identities.
pub struct IdentityKeys {
    current: u8,
    keys: HashMap<u8, IdentityKey>,
    /// The last issue time handed out, so they strictly increase.
    last_issued: AtomicU64,
}

impl fmt::Debug for IdentityKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeys").field("current", &self.current).finish_non_exhaustive()
    }
}

impl IdentityKeys {
    /// Issues under `current`; also opens `retired` ones `(id, accept until
    /// Unix seconds)` until their time.
    pub fn new(kek: &Kek, current: u8, retired: &[(u8, u64)]) -> Self {
        let key = |id: u8, accept_until| {
            let (enc, nonce_key) = kek.identity_keys(id);
            IdentityKey { cipher: Aes256Gcm::new(&enc.into()), nonce_key, accept_until }
        };
        let mut keys: HashMap<u8, IdentityKey> =
            retired.iter().map(|&(id, until)| (id, key(id, Some(until)))).collect();
        keys.insert(current, key(current, None));
        Self { current, keys, last_issued: AtomicU64::new(0) }
    }

    /// Now, in µs since the epoch, and later than any time this instance
    /// handed out before: a re-authentication identity issued during a
    /// re-authentication is always above the floor the one just used set.
    pub fn issue_time(&self) -> u64 {
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut last = self.last_issued.load(Ordering::Relaxed);
        loop {
            let next = clock.max(last.saturating_add(1));
            match self.last_issued.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// A fresh pseudonym for `card_id` (the username only: the card adds its realm).
    pub fn pseudonym(&self, method: EapType, card_id: &str, now_us: u64) -> Option<String> {
        self.seal(method, PSEUDONYM, now_us, card_id.as_bytes())
    }

    /// A fresh re-authentication identity resuming `state`, `@realm` appended.
    pub fn reauth_id(&self, method: EapType, state: &ReauthState, realm: &str, now_us: u64) -> Option<String> {
        let secret = state.secret.to_bytes();
        let mut body = Vec::with_capacity(3 + secret.len() + state.card_id.len());
        body.extend_from_slice(&state.counter.to_be_bytes());
        body.push(u8::try_from(secret.len()).ok()?);
        body.extend_from_slice(&secret);
        body.extend_from_slice(state.card_id.as_bytes());
        let user = self.seal(method, REAUTH, now_us, &body)?;
        Some(format!("{user}@{realm}"))
    }

    /// The card a pseudonym names.
    pub fn open_pseudonym(&self, method: EapType, identity: &str, now_s: u64) -> Result<String, Unresolved> {
        let (_, body) = self.open(method, PSEUDONYM, identity, now_s)?;
        String::from_utf8(body).map_err(|_| Unresolved::Malformed)
    }

    /// What a re-authentication identity resumes.
    pub fn open_reauth(&self, method: EapType, identity: &str, now_s: u64) -> Result<ReauthTicket, Unresolved> {
        let (issued_us, body) = self.open(method, REAUTH, identity, now_s)?;
        let (counter, rest) = body.split_at_checked(2).ok_or(Unresolved::Malformed)?;
        let (&len, rest) = rest.split_first().ok_or(Unresolved::Malformed)?;
        let (secret, card_id) = rest.split_at_checked(usize::from(len)).ok_or(Unresolved::Malformed)?;
        let secret = ReauthSecret::from_bytes(method, secret).ok_or(Unresolved::Malformed)?;
        let card_id = String::from_utf8(card_id.to_vec()).map_err(|_| Unresolved::Malformed)?;
        let counter = u16::from_be_bytes([counter[0], counter[1]]);
        Ok(ReauthTicket { state: ReauthState { card_id, counter, secret }, issued_us })
    }

    fn aad(method: EapType, kind: u8) -> Vec<u8> {
        let mut aad = LABEL.to_vec();
        aad.extend_from_slice(&[method.0, kind]);
        aad
    }

    fn seal(&self, method: EapType, kind: u8, now_us: u64, body: &[u8]) -> Option<String> {
        let digit = prefix(method, if kind == PSEUDONYM { IdentityKind::Pseudonym } else { IdentityKind::Reauth })?;
        let key = self.keys.get(&self.current)?;
        let mut plain = Vec::with_capacity(17 + body.len());
        plain.push(kind);
        plain.extend_from_slice(&now_us.to_be_bytes());
        plain.extend_from_slice(&rand::random::<[u8; 8]>());
        plain.extend_from_slice(body);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.nonce_key).ok()?;
        mac.update(&plain);
        let tag = mac.finalize().into_bytes();
        let nonce = &tag[..12];
        let ct = key
            .cipher
            .encrypt(Nonce::from_slice(nonce), Payload { msg: &plain, aad: &Self::aad(method, kind) })
            .ok()?;
        let mut token = Vec::with_capacity(1 + 12 + ct.len());
        token.push(self.current);
        token.extend_from_slice(nonce);
        token.extend_from_slice(&ct);
        Some(format!("{digit}{}", base64url::encode(&token)))
    }

    fn open(&self, method: EapType, kind: u8, identity: &str, now_s: u64) -> Result<(u64, Vec<u8>), Unresolved> {
        let want = if kind == PSEUDONYM { IdentityKind::Pseudonym } else { IdentityKind::Reauth };
        if classify(method, identity) != want {
            return Err(Unresolved::Malformed);
        }
        let token = base64url::decode(&user_part(identity)[1..]).ok_or(Unresolved::Malformed)?;
        if token.len() < 1 + 12 + 16 + 17 {
            return Err(Unresolved::Malformed);
        }
        let (id, rest) = (token[0], &token[1..]);
        let key = self.keys.get(&id).ok_or(Unresolved::UnknownKey)?;
        if key.accept_until.is_some_and(|until| now_s > until) {
            return Err(Unresolved::UnknownKey);
        }
        let (nonce, ct) = rest.split_at(12);
        let plain = key
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &Self::aad(method, kind) })
            .map_err(|_| Unresolved::Forged)?;
        if plain.first() != Some(&kind) {
            return Err(Unresolved::Malformed);
        }
        let issued_us = u64::from_be_bytes(plain[1..9].try_into().map_err(|_| Unresolved::Malformed)?);
        Ok((issued_us, plain[17..].to_vec()))
    }
}

/// Base64url without padding (RFC 4648 §5): the characters an NAI username
/// may carry unquoted (RFC 7542 §2.2), and a third shorter than hex, which
/// keeps an AKA' re-authentication identity within a RADIUS User-Name.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let mut acc = 0u32;
        let mut bits = 0;
        for c in text.bytes() {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        // Left-over bits must be the zero padding of the last character.
        (acc == 0 && text.len() % 4 != 1).then_some(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_and_rfc_4648_vectors() {
            for (plain, coded) in
                [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")]
            {
                assert_eq!(super::encode(plain.as_bytes()), coded);
                assert_eq!(super::decode(coded).as_deref(), Some(plain.as_bytes()));
            }
            let all: Vec<u8> = (0..=255).collect();
            assert_eq!(super::decode(&super::encode(&all)), Some(all));
            assert_eq!(super::encode(&[0xfb, 0xff]), "-_8");
            assert!(super::decode("Zh").is_none(), "non-zero padding bits");
            assert!(super::decode("Z").is_none() && super::decode("Zm9=").is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> Kek {
        Kek::from_bytes(&[7; 32])
    }

    fn state() -> ReauthState {
        ReauthState { card_id: "c0ffee".into(), counter: 3, secret: ReauthSecret::Mk([9; 20]) }
    }

    #[test]
    fn pseudonyms_open_to_their_card_and_differ_every_time() {
        let keys = IdentityKeys::new(&kek(), 1, &[]);
        let a = keys.pseudonym(EapType::SIM, "c0ffee", 1).unwrap();
        let b = keys.pseudonym(EapType::SIM, "c0ffee", 1).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with('3'));
        assert_eq!(keys.open_pseudonym(EapType::SIM, &a, 0).unwrap(), "c0ffee");
        assert_eq!(keys.open_pseudonym(EapType::SIM, &format!("{a}@issuer.example"), 0).unwrap(), "c0ffee");
        // Another instance with the same KEK and key id understands it.
        assert_eq!(IdentityKeys::new(&kek(), 1, &[]).open_pseudonym(EapType::SIM, &a, 0).unwrap(), "c0ffee");
        // Not as an AKA pseudonym, nor as a re-authentication identity.
        let as_aka = format!("2{}", &a[1..]);
        assert_eq!(keys.open_pseudonym(EapType::AKA, &as_aka, 0), Err(Unresolved::Forged));
        assert!(keys.open_reauth(EapType::SIM, &format!("5{}", &a[1..]), 0).is_err());
    }

    #[test]
    fn forged_altered_and_foreign_identities_do_not_open() {
        let keys = IdentityKeys::new(&kek(), 1, &[]);
        let p = keys.pseudonym(EapType::AKA, "c0ffee", 1).unwrap();
        let mut altered = p.clone().into_bytes();
        let n = altered.len();
        altered[n - 2] = if altered[n - 2] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(keys.open_pseudonym(EapType::AKA, &altered, 0), Err(Unresolved::Forged));
        assert_eq!(keys.open_pseudonym(EapType::AKA, "2forged", 0), Err(Unresolved::Malformed));
        assert_eq!(keys.open_pseudonym(EapType::AKA, "2", 0), Err(Unresolved::Malformed));
        let other = IdentityKeys::new(&Kek::from_bytes(&[8; 32]), 1, &[]);
        assert_eq!(other.open_pseudonym(EapType::AKA, &p, 0), Err(Unresolved::Forged));
        let other_id = IdentityKeys::new(&kek(), 2, &[]);
        assert_eq!(other_id.open_pseudonym(EapType::AKA, &p, 0), Err(Unresolved::UnknownKey));
    }

    #[test]
    fn a_retired_key_is_accepted_until_its_time() {
        let old = IdentityKeys::new(&kek(), 1, &[]);
        let p = old.pseudonym(EapType::AKA_PRIME, "c0ffee", 1).unwrap();
        let rotated = IdentityKeys::new(&kek(), 2, &[(1, 1000)]);
        assert_eq!(rotated.open_pseudonym(EapType::AKA_PRIME, &p, 1000).unwrap(), "c0ffee");
        assert_eq!(rotated.open_pseudonym(EapType::AKA_PRIME, &p, 1001), Err(Unresolved::UnknownKey));
        // New identities are issued under the new key.
        let q = rotated.pseudonym(EapType::AKA_PRIME, "c0ffee", 1).unwrap();
        assert_eq!(old.open_pseudonym(EapType::AKA_PRIME, &q, 0), Err(Unresolved::UnknownKey));
    }

    #[test]
    fn reauth_identities_carry_their_state_and_issue_time() {
        let keys = IdentityKeys::new(&kek(), 1, &[]);
        let r = keys.reauth_id(EapType::AKA, &state(), "issuer.example", 42).unwrap();
        assert!(r.starts_with('4') && r.ends_with("@issuer.example"));
        let t = keys.open_reauth(EapType::AKA, &r, 0).unwrap();
        assert_eq!((t.state, t.issued_us), (state(), 42));
        let prime = ReauthState {
            secret: ReauthSecret::AkaPrime { k_encr: [1; 16], k_aut: [2; 32], k_re: [3; 32] },
            card_id: "0123456789abcdef0123456789abcdef".into(),
            ..state()
        };
        let r = keys.reauth_id(EapType::AKA_PRIME, &prime, "issuer.example", 42).unwrap();
        assert!(r.len() <= 253, "{} octets do not fit a RADIUS User-Name", r.len());
        assert_eq!(keys.open_reauth(EapType::AKA_PRIME, &r, 0).unwrap().state, prime);
    }
}
