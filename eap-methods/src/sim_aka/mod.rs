//! The EAP-SIM / EAP-AKA family (RFC 4186, RFC 4187, RFC 5448, RFC 9048).
//!
//! AKA and AKA' share one server and one peer state machine; they differ in
//! the key schedule, the MAC and checkcode hash, and AT_KDF / AT_KDF_INPUT,
//! all of which [`Flavor`] captures.

pub mod aka;
pub mod attributes;
pub mod auc;
pub mod identity;
pub mod sqn;
pub mod usim;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::crypto::{cbc, keys, mac};
use crate::error::EapError;
use crate::method::{AuthVector, Keys};
use crate::packet::EapType;
use attributes::{at, decode_encrypted, Attribute, AttributeWriter, Message};

/// The only AKA' key derivation function defined (RFC 5448 §3.1, RFC 9048).
pub const KDF_AKA_PRIME: u16 = 1;

/// AKA or AKA'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
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
    /// The EAP type.
    pub fn eap_type(&self) -> EapType {
        match self {
            Self::Aka => EapType::AKA,
            Self::AkaPrime { .. } => EapType::AKA_PRIME,
        }
    }

    /// Name for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Aka => "EAP-AKA",
            Self::AkaPrime { .. } => "EAP-AKA'",
        }
    }

    /// Derives the session keys from a vector (RFC 4187 §7, RFC 5448 §3.3).
    /// `autn` provides SQN ⊕ AK for AKA'.
    pub(crate) fn derive(&self, identity: &[u8], v: &AuthVector) -> SessionKeys {
        match self {
            Self::Aka => {
                let mk = keys::aka_master_key(identity, &v.ik, &v.ck);
                let k = keys::sim_aka_keys(&mk);
                SessionKeys { k_encr: k.k_encr, k_aut: MacKey::Sha1(k.k_aut), msk: k.msk, emsk: k.emsk }
            }
            Self::AkaPrime { network_name } => {
                let mut sqn_xor_ak = [0u8; 6];
                sqn_xor_ak.copy_from_slice(&v.autn[..6]);
                let (ck_p, ik_p) = keys::ck_ik_prime(&v.ck, &v.ik, network_name.as_bytes(), &sqn_xor_ak);
                let k = keys::aka_prime_keys(identity, &ck_p, &ik_p);
                SessionKeys { k_encr: k.k_encr, k_aut: MacKey::Sha256(k.k_aut), msk: k.msk, emsk: k.emsk }
            }
        }
    }

    fn checkcode(&self) -> Checkcode {
        match self {
            Self::Aka => Checkcode::Sha1(Sha1::new(), false),
            Self::AkaPrime { .. } => Checkcode::Sha256(Sha256::new(), false),
        }
    }
}

/// K_aut of either flavour: AKA MACs with HMAC-SHA1-128, AKA' with
/// HMAC-SHA-256-128.
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
        let length = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
        let Some(packet) = raw.get(..length) else { return false };
        let Some(received) = packet.get(off..off + 16) else { return false };
        let mut zeroed = packet.to_vec();
        zeroed[off..off + 16].fill(0);
        mac::constant_time_eq(&self.compute(&zeroed, extra), received)
    }
}

/// The keys of one SIM/AKA authentication.
#[derive(Clone)]
pub(crate) struct SessionKeys {
    pub k_encr: [u8; 16],
    pub k_aut: MacKey,
    pub msk: [u8; 64],
    pub emsk: [u8; 64],
}

impl SessionKeys {
    pub(crate) fn exported(&self) -> Keys {
        Keys { msk: self.msk, emsk: self.emsk }
    }

    /// Adds AT_IV and AT_ENCR_DATA holding `inner` (already padded).
    pub(crate) fn encrypt_into(&self, w: &mut AttributeWriter, inner: AttributeWriter) {
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
        let iv: [u8; 16] =
            iv.after_reserved().try_into().map_err(|_| EapError::malformed(method, "AT_IV length"))?;
        let mut plain = data.after_reserved().to_vec();
        cbc::aes128_cbc_decrypt(&self.k_encr, &iv, &mut plain)
            .map_err(|_| EapError::malformed(method, "AT_ENCR_DATA not a whole number of blocks"))?;
        decode_encrypted(&plain, method)
    }
}

/// AT_CHECKCODE (RFC 4187 §10.13): a hash over every AKA-Identity request
/// and response, so a man in the middle cannot strip identity options.
/// Without any identity round trip the checkcode is empty.
#[derive(Clone)]
pub(crate) enum Checkcode {
    Sha1(Sha1, bool),
    Sha256(Sha256, bool),
}

impl Checkcode {
    pub(crate) fn absorb(&mut self, packet: &[u8]) {
        match self {
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
