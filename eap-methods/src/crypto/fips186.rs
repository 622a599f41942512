//! The FIPS 186-2 (change notice 1) random number generator that EAP-SIM
//! (RFC 4186 §7, Appendix B) and EAP-AKA (RFC 4187 §7, Appendix A) use as
//! their key-derivation PRF.
//!
//! The profile is fixed by those RFCs: b = 160, no optional XSEED (so
//! XSEED_j = 0 and XVAL = XKEY), and G is the SHA-1 compression function
//! applied to XVAL zero-padded to one 512-bit block, without SHA-1's
//! message padding (FIPS 186-2 Appendix 3.3). That last point is why the
//! PRF is built on `sha1::compress` rather than the `Sha1` hasher.

use sha1::compress;

/// SHA-1's initial chaining value, t in FIPS 186-2 Appendix 3.3.
const T: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// G(t, XVAL) of FIPS 186-2 Appendix 3.3.
fn g(xval: &[u8; 20]) -> [u8; 20] {
    let mut block = [0u8; 64];
    for (dst, src) in block.iter_mut().zip(xval) {
        *dst = *src;
    }
    let mut state = T;
    compress(&mut state, &[block.into()]);
    let mut out = [0u8; 20];
    for (dst, word) in out.chunks_exact_mut(4).zip(state) {
        for (d, s) in dst.iter_mut().zip(word.to_be_bytes()) {
            *d = s;
        }
    }
    out
}

/// XKEY = (1 + XKEY + w) mod 2^160, big-endian.
fn advance(xkey: &mut [u8; 20], w: &[u8; 20]) {
    let mut carry = 1u16;
    for (x, y) in xkey.iter_mut().zip(w).rev() {
        let [low, high] = (u16::from(*x) + u16::from(*y) + carry).to_le_bytes();
        *x = low;
        carry = u16::from(high);
    }
}

/// Fills `out` with the generator's output x_0 ‖ x_1 ‖ … for the given XKEY.
///
/// The RFCs describe the output as 40-octet x_j = w_0 ‖ w_1; with XSEED
/// fixed at zero that is the same stream as one w_i after another, 20
/// octets each, so the loop runs per w_i. An `out` whose length is not a
/// multiple of 20 (or 40) receives the leading octets of the stream, i.e.
/// the last w_i is truncated; a shorter request is always a prefix of a
/// longer one. RFC 4186/4187 take 160 octets for the full-authentication
/// keys and 128 for fast re-authentication.
pub fn fips186_2_prf(xkey: &[u8; 20], out: &mut [u8]) {
    let mut xkey = *xkey;
    for chunk in out.chunks_mut(20) {
        let w = g(&xkey);
        advance(&mut xkey, &w);
        for (dst, src) in chunk.iter_mut().zip(w) {
            *dst = src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bytes::testhex::{arr, vec};
    use crate::crypto::rfc4186_vectors::{KEYS as RFC4186_KEYS, MK as RFC4186_MK};

    // NIST "Multiple Examples of DSA" (Examples-1024bit.pdf, p. 5), the
    // change-notice algorithm for x with XSEED = 0: w[0] ‖ w[1].
    #[test]
    fn nist_dsa_example_change_notice_x() {
        let xkey = arr("bd029bbe 7f51960b cf9edb2b 61f06f0f eb5a38b6");
        let mut out = [0u8; 40];
        fips186_2_prf(&xkey, &mut out);
        let want = vec("2070b322 3dba372f de1c0ffc 7b2e3b49 8b260614
             3c6c18ba cb0f6c55 babb1378 8e20d737 a3275116");
        assert_eq!(out.as_slice(), want);
    }

    // Same example: the XKEY after the first and second w_i.
    #[test]
    fn nist_dsa_example_xkey_updates() {
        let mut xkey = arr("bd029bbe 7f51960b cf9edb2b 61f06f0f eb5a38b6");
        let w0 = g(&xkey);
        advance(&mut xkey, &w0);
        assert_eq!(
            xkey,
            arr::<20>("dd734ee0 bd0bcd3b adbaeb27 dd1eaa59 76803ecb")
        );
        let w1 = g(&xkey);
        advance(&mut xkey, &w1);
        assert_eq!(
            xkey,
            arr::<20>("19df679b 881b3991 6875fea0 6b3f8191 19a78fe2")
        );
    }

    // RFC 4186 Appendix A.5: MK -> K_encr | K_aut | MSK | EMSK.
    #[test]
    fn rfc4186_appendix_a5_key_stream() {
        let mut out = [0u8; 160];
        fips186_2_prf(&arr(RFC4186_MK), &mut out);
        assert_eq!(out.as_slice(), vec(RFC4186_KEYS));
    }

    #[test]
    fn lengths_that_are_not_whole_blocks_truncate_the_stream() {
        let mut full = [0u8; 160];
        fips186_2_prf(&arr(RFC4186_MK), &mut full);
        for len in [0, 1, 19, 20, 21, 39, 40, 41, 128, 159] {
            let mut part = vec![0u8; len];
            fips186_2_prf(&arr(RFC4186_MK), &mut part);
            assert_eq!(part.as_slice(), &full[..len], "len {len}");
        }
    }
}
