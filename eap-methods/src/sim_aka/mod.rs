//! The EAP-SIM / EAP-AKA family (RFC 4186, RFC 4187, RFC 5448, RFC 9048).
//!
//! The three methods are one protocol: the same message format, identity
//! round, AT_ENCR_DATA, AT_MAC, Notification phase, pseudonyms and fast
//! re-authentication (RFC 4186 §4-6 and RFC 4187 §4-6 say the same thing
//! twice). They differ in the full authentication only, which [`Flavor`]
//! captures: EAP-SIM negotiates a version and proves freshness with
//! NONCE_MT over GSM triplets, EAP-AKA checks AUTN and RES of a UMTS vector,
//! EAP-AKA' binds that vector to a network name with its own key schedule.
//! [`server::SimAkaServer`] and [`peer::SimAkaPeer`] run all three.
//!
//! Pseudonyms and re-authentication identities are opaque to the methods:
//! the server asks the outside world to issue and resolve them
//! ([`crate::method::Query::NextIdentities`], `Pseudonym`, `Reauth`), so how
//! an issuer encodes them (and keeps the re-authentication counter durable)
//! is its business, not the protocol's.

pub mod attributes;
pub mod auc;
pub mod gsm;
pub mod identity;
pub mod peer;
pub mod server;
pub mod sqn;
pub mod usim;

#[cfg(test)]
mod tests;

use std::fmt;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::crypto::{cbc, keys, mac};
use crate::error::EapError;
use crate::method::{AuthVector, Keys, Triplet};
use crate::packet::EapType;
use attributes::{at, decode_encrypted, Attribute, AttributeWriter, Message};

/// The only AKA' key derivation function defined (RFC 5448 §3.1, RFC 9048).
pub const KDF_AKA_PRIME: u16 = 1;

/// The EAP-SIM versions this implementation speaks (RFC 4186 §10.1: only 1).
pub const SIM_VERSIONS: [u16; 1] = [1];

/// SIM, AKA or AKA'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// EAP-SIM, RFC 4186.
    Sim,
    /// EAP-AKA, RFC 4187.
    Aka,
    /// EAP-AKA', RFC 5448 / RFC 9048, bound to this access network name
    /// (for eapay: the issuer realm).
    AkaPrime {
        /// AT_KDF_INPUT.
        network_name: String,
    },
}

impl Flavor {
    /// The flavor of an EAP type of the family, AKA' bound to `network_name`.
    pub fn of(kind: EapType, network_name: &str) -> Option<Self> {
        match kind {
            EapType::SIM => Some(Self::Sim),
            EapType::AKA => Some(Self::Aka),
            EapType::AKA_PRIME => Some(Self::AkaPrime { network_name: network_name.to_string() }),
            _ => None,
        }
    }

    /// The EAP type.
    pub fn eap_type(&self) -> EapType {
        match self {
            Self::Sim => EapType::SIM,
            Self::Aka => EapType::AKA,
            Self::AkaPrime { .. } => EapType::AKA_PRIME,
        }
    }

    /// Name for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sim => "EAP-SIM",
            Self::Aka => "EAP-AKA",
            Self::AkaPrime { .. } => "EAP-AKA'",
        }
    }

    fn is_sim(&self) -> bool {
        matches!(self, Self::Sim)
    }

    /// Derives the session keys from a UMTS vector (RFC 4187 §7, RFC 5448
    /// §3.3). `autn` provides SQN ⊕ AK for AKA'. Not for EAP-SIM.
    pub(crate) fn derive(&self, identity: &[u8], v: &AuthVector) -> SessionKeys {
        match self {
            Self::Sim | Self::Aka => SessionKeys::from_mk(keys::aka_master_key(identity, &v.ik, &v.ck)),
            Self::AkaPrime { network_name } => {
                let mut sqn_xor_ak = [0u8; 6];
                sqn_xor_ak.copy_from_slice(&v.autn[..6]);
                let (ck_p, ik_p) = keys::ck_ik_prime(&v.ck, &v.ik, network_name.as_bytes(), &sqn_xor_ak);
                let k = keys::aka_prime_keys(identity, &ck_p, &ik_p);
                SessionKeys {
                    k_encr: k.k_encr,
                    k_aut: MacKey::Sha256(k.k_aut),
                    msk: k.msk,
                    emsk: k.emsk,
                    reauth: ReauthSecret::AkaPrime { k_encr: k.k_encr, k_aut: k.k_aut, k_re: k.k_re },
                }
            }
        }
    }

    /// EAP-SIM's keys (RFC 4186 §7) from the triplets' Kc values.
    /// `version_list` is AT_VERSION_LIST's versions as sent (two octets each).
    pub(crate) fn derive_sim(
        identity: &[u8],
        triplets: &[Triplet],
        nonce_mt: &[u8; 16],
        version_list: &[u8],
        selected: u16,
    ) -> SessionKeys {
        let kcs: Vec<[u8; 8]> = triplets.iter().map(|t| t.kc).collect();
        let mk = keys::sim_master_key(identity, &kcs, nonce_mt, version_list, selected.to_be_bytes());
        SessionKeys::from_mk(mk)
    }

    /// AT_CHECKCODE's hash; EAP-SIM has no checkcode (its version list is
    /// protected by the key derivation instead).
    fn checkcode(&self) -> Checkcode {
        match self {
            Self::Sim => Checkcode::None,
            Self::Aka => Checkcode::Sha1(Sha1::new(), false),
            Self::AkaPrime { .. } => Checkcode::Sha256(Sha256::new(), false),
        }
    }
}

/// The versions of AT_VERSION_LIST as they are hashed into MK.
pub(crate) fn version_list() -> Vec<u8> {
    SIM_VERSIONS.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// K_aut of either key schedule: SIM and AKA MAC with HMAC-SHA1-128, AKA'
/// with HMAC-SHA-256-128.
#[derive(Clone)]
pub(crate) enum MacKey {
    Sha1([u8; 16]),
    Sha256([u8; 32]),
}

impl MacKey {
    fn compute(&self, packet: &[u8], extra: &[u8]) -> [u8; 16] {
        match self {
            Self::Sha1(k) => mac::sim_aka_mac(k, packet, extra),
            Self::Sha256(k) => mac::aka_prime_mac(k, packet, extra),
        }
    }

    /// Fills the zeroed AT_MAC at `offset` of `packet`.
    pub(crate) fn sign(&self, packet: &mut [u8], offset: Option<usize>, extra: &[u8]) {
        if let Some(off) = offset {
            let m = self.compute(packet, extra);
            if let Some(slot) = packet.get_mut(off..off + 16) {
                slot.copy_from_slice(&m);
            }
        }
    }

    /// Checks AT_MAC of a received packet in constant time. A message
    /// without AT_MAC does not verify.
    pub(crate) fn verify(&self, raw: &[u8], msg: &Message, extra: &[u8]) -> bool {
        let Some(off) = msg.mac_offset else { return false };
        let Some(length) = raw.get(2..4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else { return false };
        let Some(packet) = raw.get(..length) else { return false };
        let Some(received) = packet.get(off..off + 16) else { return false };
        let mut zeroed = packet.to_vec();
        zeroed[off..off + 16].fill(0);
        mac::constant_time_eq(&self.compute(&zeroed, extra), received)
    }
}

/// What fast re-authentication needs from the full authentication it
/// follows: K_encr and K_aut stay, and the new MSK comes from MK (SIM, AKA,
/// RFC 4187 §7) or K_re (AKA', RFC 5448 §3.3).
#[derive(Clone, PartialEq, Eq)]
pub enum ReauthSecret {
    /// SIM and AKA: MK, from which K_encr and K_aut are derived again.
    Mk([u8; 20]),
    /// AKA': K_encr, K_aut and K_re.
    AkaPrime { k_encr: [u8; 16], k_aut: [u8; 32], k_re: [u8; 32] },
}

impl fmt::Debug for ReauthSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReauthSecret(<hidden>)")
    }
}

impl ReauthSecret {
    /// The secret's octets, for an issuer to seal into a re-authentication
    /// identity: 20 (MK) or 80 (K_encr ‖ K_aut ‖ K_re).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Mk(mk) => mk.to_vec(),
            Self::AkaPrime { k_encr, k_aut, k_re } => [&k_encr[..], &k_aut[..], &k_re[..]].concat(),
        }
    }

    /// The inverse of [`ReauthSecret::to_bytes`] for the method `kind`.
    pub fn from_bytes(kind: EapType, bytes: &[u8]) -> Option<Self> {
        match kind {
            EapType::SIM | EapType::AKA => Some(Self::Mk(bytes.try_into().ok()?)),
            EapType::AKA_PRIME if bytes.len() == 80 => Some(Self::AkaPrime {
                k_encr: bytes[..16].try_into().ok()?,
                k_aut: bytes[16..48].try_into().ok()?,
                k_re: bytes[48..].try_into().ok()?,
            }),
            _ => None,
        }
    }

    /// K_encr and K_aut alone (no MSK yet): what protects a
    /// re-authentication request before its counter and NONCE_S are known.
    pub(crate) fn protection(&self) -> SessionKeys {
        let mut keys = self.reauth_keys(&[], 0, &[0; 16]);
        keys.msk = [0; 64];
        keys.emsk = [0; 64];
        keys
    }

    /// The keys of a re-authentication with `identity` (the re-authentication
    /// identity the peer presented), `counter` and `nonce_s`.
    pub(crate) fn reauth_keys(&self, identity: &[u8], counter: u16, nonce_s: &[u8; 16]) -> SessionKeys {
        match self {
            Self::Mk(mk) => {
                let full = keys::sim_aka_keys(mk);
                let (msk, emsk) = keys::sim_aka_reauth_keys(identity, counter, nonce_s, mk);
                SessionKeys { k_encr: full.k_encr, k_aut: MacKey::Sha1(full.k_aut), msk, emsk, reauth: self.clone() }
            }
            Self::AkaPrime { k_encr, k_aut, k_re } => {
                let (msk, emsk) = keys::aka_prime_reauth_keys(k_re, identity, counter, nonce_s);
                SessionKeys { k_encr: *k_encr, k_aut: MacKey::Sha256(*k_aut), msk, emsk, reauth: self.clone() }
            }
        }
    }
}

/// A card's fast re-authentication context as the issuer resolves it from
/// a re-authentication identity: which card, the counter of the last
/// exchange (0 right after a full authentication), and the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ReauthState {
    /// The card the keys belong to.
    pub card_id: String,
    /// AT_COUNTER of the last exchange with these keys; the next one uses
    /// `counter + 1` (RFC 4187 §5.1: one after a full authentication).
    pub counter: u16,
    /// The keys.
    pub secret: ReauthSecret,
}

impl fmt::Debug for ReauthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReauthState").field("card_id", &self.card_id).field("counter", &self.counter).finish()
    }
}

/// The keys of one SIM/AKA authentication.
#[derive(Clone)]
pub(crate) struct SessionKeys {
    pub k_encr: [u8; 16],
    pub k_aut: MacKey,
    pub msk: [u8; 64],
    pub emsk: [u8; 64],
    /// What a later fast re-authentication needs.
    pub reauth: ReauthSecret,
}

impl SessionKeys {
    /// SIM and AKA: everything from MK with the FIPS 186-2 PRF.
    fn from_mk(mk: [u8; 20]) -> Self {
        let k = keys::sim_aka_keys(&mk);
        Self { k_encr: k.k_encr, k_aut: MacKey::Sha1(k.k_aut), msk: k.msk, emsk: k.emsk, reauth: ReauthSecret::Mk(mk) }
    }

    pub(crate) fn exported(&self) -> Keys {
        Keys { msk: self.msk, emsk: self.emsk }
    }

    /// Adds AT_IV and AT_ENCR_DATA holding `inner` (padded here).
    pub(crate) fn encrypt_into(&self, w: &mut AttributeWriter, mut inner: AttributeWriter) {
        inner.pad_to_block();
        let mut plain = inner.into_bytes();
        let iv: [u8; 16] = rand::random();
        // The writer padded to a block, so the length is always valid.
        if cbc::aes128_cbc_encrypt(&self.k_encr, &iv, &mut plain).is_ok() {
            w.reserved(at::IV, &iv);
            w.reserved(at::ENCR_DATA, &plain);
        }
    }

    /// The attributes inside AT_ENCR_DATA, or none if the message has none.
    pub(crate) fn decrypt(&self, msg: &Message, method: &'static str) -> Result<Vec<Attribute>, EapError> {
        let (Some(iv), Some(data)) = (msg.get(at::IV), msg.get(at::ENCR_DATA)) else {
            if msg.has(at::ENCR_DATA) {
                return Err(EapError::malformed(method, "AT_ENCR_DATA without AT_IV"));
            }
            return Ok(Vec::new());
        };
        let iv: [u8; 16] = iv.after_reserved().try_into().map_err(|_| EapError::malformed(method, "AT_IV length"))?;
        let mut plain = data.after_reserved().to_vec();
        cbc::aes128_cbc_decrypt(&self.k_encr, &iv, &mut plain)
            .map_err(|_| EapError::malformed(method, "AT_ENCR_DATA not a whole number of blocks"))?;
        decode_encrypted(&plain, method)
    }
}

/// The value of an attribute inside AT_ENCR_DATA that starts with an actual
/// length (AT_EAPAY_PAYMENT, AT_NEXT_PSEUDONYM...).
pub(crate) fn encrypted_value(inner: &[Attribute], kind: u8) -> Option<Vec<u8>> {
    inner.iter().find(|a| a.kind == kind).and_then(|a| a.with_actual_length()).map(<[u8]>::to_vec)
}

/// AT_COUNTER inside AT_ENCR_DATA.
pub(crate) fn encrypted_counter(inner: &[Attribute], kind: u8) -> Option<u16> {
    inner.iter().find(|a| a.kind == kind).and_then(Attribute::u16)
}

/// AT_CHECKCODE (RFC 4187 §10.13): a hash over every AKA-Identity request
/// and response, so a man in the middle cannot strip identity options.
/// Without any identity round trip the checkcode is empty.
#[derive(Clone)]
pub(crate) enum Checkcode {
    /// EAP-SIM.
    None,
    Sha1(Sha1, bool),
    Sha256(Sha256, bool),
}

impl Checkcode {
    pub(crate) fn absorb(&mut self, packet: &[u8]) {
        match self {
            Self::None => {}
            Self::Sha1(h, used) => {
                h.update(packet);
                *used = true;
            }
            Self::Sha256(h, used) => {
                h.update(packet);
                *used = true;
            }
        }
    }

    pub(crate) fn value(&self) -> Vec<u8> {
        match self {
            Self::Sha1(h, true) => h.clone().finalize().to_vec(),
            Self::Sha256(h, true) => h.clone().finalize().to_vec(),
            _ => Vec::new(),
        }
    }
}
