//! PRF' of EAP-AKA' (RFC 5448 §3.4, unchanged in RFC 9048 §3.4).
//!
//! PRF'(K, S) = T1 ‖ T2 ‖ … with T1 = HMAC-SHA-256(K, S ‖ 0x01) and
//! Tn = HMAC-SHA-256(K, Tn-1 ‖ S ‖ n), the IKEv2 prf+ construction.

use hmac::Mac;

use super::keyed::hmac_sha256;

/// Fills `out` with PRF'(key, s); a length that is not a multiple of 32
/// takes the leading octets of the last block.
///
/// The one-octet counter limits PRF' to 255 blocks (8160 octets); EAP-AKA'
/// needs 208, so anything past that limit is left untouched rather than
/// produced with a wrapped counter.
pub fn prf_prime(key: &[u8; 32], s: &[u8], out: &mut [u8]) {
    let mut previous: Option<[u8; 32]> = None;
    for (chunk, counter) in out.chunks_mut(32).zip(1..=u8::MAX) {
        let mut mac = hmac_sha256(key);
        if let Some(t) = &previous {
            mac.update(t);
        }
        mac.update(s);
        mac.update(&[counter]);
        let t: [u8; 32] = mac.finalize().into_bytes().into();
        for (dst, src) in chunk.iter_mut().zip(t) {
            *dst = src;
        }
        previous = Some(t);
    }
}
