//! AT_MAC of EAP-SIM (RFC 4186 §10.14), EAP-AKA (RFC 4187 §10.15) and
//! EAP-AKA' (RFC 5448 §3.4.1), and the comparison used to check it.
//!
//! Both functions take the whole EAP packet with the 16-octet AT_MAC value
//! already set to zero, as the RFCs define the MAC over that form; finding
//! the attribute is the packet codec's job, not this module's.

use hmac::Mac;
use subtle::ConstantTimeEq;

use super::bytes::take;
use super::keyed::{hmac_sha1, hmac_sha256};

/// AT_MAC for EAP-SIM/AKA: HMAC-SHA1-128 over (packet with AT_MAC value zeroed || extra)
///
/// `extra` is what the RFCs append for the message at hand: NONCE_MT for
/// the EAP-SIM Challenge request, n*SRES for its response, NONCE_S for a
/// re-authentication response, and nothing for the other messages.
pub fn sim_aka_mac(k_aut: &[u8; 16], packet: &[u8], extra: &[u8]) -> [u8; 16] {
    let mut mac = hmac_sha1(k_aut);
    mac.update(packet);
    mac.update(extra);
    let full: [u8; 20] = mac.finalize().into_bytes().into();
    take(&full, 0)
}

/// AT_MAC for EAP-AKA': HMAC-SHA-256-128
pub fn aka_prime_mac(k_aut: &[u8; 32], packet: &[u8], extra: &[u8]) -> [u8; 16] {
    let mut mac = hmac_sha256(k_aut);
    mac.update(packet);
    mac.update(extra);
    let full: [u8; 32] = mac.finalize().into_bytes().into();
    take(&full, 0)
}

/// Equality whose running time does not depend on where the inputs differ,
/// so a received AT_MAC cannot be guessed octet by octet. Inputs of
/// different lengths compare unequal; lengths are not secret here.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bytes::testhex::{arr, vec};
    use crate::crypto::rfc4186_vectors as a;

    // RFC 4186 Appendix A.5: MAC of the Challenge request over
    // packet | NONCE_MT.
    #[test]
    fn rfc4186_a5_challenge_request_mac() {
        let mac = sim_aka_mac(
            &arr(a::K_AUT),
            &a::challenge_request_zeroed_mac(),
            &vec(a::NONCE_MT),
        );
        assert_eq!(mac, arr::<16>(a::CHALLENGE_REQUEST_MAC));
    }

    // RFC 4186 Appendix A.6: MAC of the Challenge response over
    // packet | SRES1 | SRES2 | SRES3.
    #[test]
    fn rfc4186_a6_challenge_response_mac() {
        let sres: Vec<u8> = a::SRES.iter().flat_map(|s| vec(s)).collect();
        let mac = sim_aka_mac(
            &arr(a::K_AUT),
            &vec(a::CHALLENGE_RESPONSE_ZEROED_MAC),
            &sres,
        );
        assert_eq!(mac, arr::<16>(a::CHALLENGE_RESPONSE_MAC));
    }

    /// "Jefe" zero-padded to a K_aut size. HMAC zero-pads every key shorter
    /// than the hash block (RFC 2104 §2), so padding to 16 or 32 octets
    /// leaves the MAC of the 4-octet key unchanged.
    fn jefe<const N: usize>() -> [u8; N] {
        let mut key = [0u8; N];
        key[..4].copy_from_slice(b"Jefe");
        key
    }

    // RFC 2202 §3 test case 2 (HMAC-SHA-1), truncated to 128 bits, with the
    // data split between `packet` and `extra` to check their concatenation.
    #[test]
    fn sim_aka_mac_rfc2202_case_2_truncated() {
        let mac = sim_aka_mac(&jefe(), b"what do ya want", b" for nothing?");
        assert_eq!(mac, arr::<16>("effcdf6ae5eb2fa2d27416d5f184df9c"));
    }

    // EAP-AKA' has no published AT_MAC; RFC 4231 §4.3 test case 2
    // (HMAC-SHA-256), truncated to 128 bits, checks the construction.
    #[test]
    fn aka_prime_mac_rfc4231_case_2_truncated() {
        let mac = aka_prime_mac(&jefe(), b"what do ya want", b" for nothing?");
        assert_eq!(mac, arr::<16>("5bdcc146bf60754e6a042426089575c7"));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
