//! Infallible HMAC constructors for fixed-size keys.
//!
//! `Mac::new_from_slice` returns a `Result` that can never be an error for
//! HMAC, and unwrapping it would be the only panic path in the MAC code.
//! RFC 2104 §2 zero-pads a key shorter than the hash block to the block
//! length, which is exactly the block-sized key `KeyInit::new` takes, so
//! padding here gives the same MAC without any fallible step.

use hmac::digest::KeyInit;
use hmac::Hmac;
use sha1::Sha1;
use sha2::Sha256;

/// SHA-1 and SHA-256 both process 64-octet blocks.
const BLOCK: usize = 64;

fn padded<const N: usize>(key: &[u8; N]) -> [u8; BLOCK] {
    // A key longer than the block would have to be hashed first (RFC 2104
    // §2); every key in EAP-SIM/AKA/AKA' is at most 32 octets, so rule the
    // longer case out at compile time instead of implementing it.
    const { assert!(N <= BLOCK) };
    let mut block = [0u8; BLOCK];
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    block
}

pub(crate) fn hmac_sha1<const N: usize>(key: &[u8; N]) -> Hmac<Sha1> {
    Hmac::<Sha1>::new(&padded(key).into())
}

pub(crate) fn hmac_sha256<const N: usize>(key: &[u8; N]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new(&padded(key).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bytes::testhex::arr as h;
    use hmac::Mac;

    // RFC 2202 §3 test case 1 (HMAC-SHA-1): key = 0x0b * 20, data = "Hi There".
    #[test]
    fn rfc2202_case_1() {
        let mut mac = hmac_sha1(&[0x0b; 20]);
        mac.update(b"Hi There");
        let want: [u8; 20] = h("b617318655057264e28bc0b6fb378c8ef146be00");
        assert_eq!(<[u8; 20]>::from(mac.finalize().into_bytes()), want);
    }

    // RFC 4231 §4.2 test case 1 (HMAC-SHA-256): key = 0x0b * 20, data = "Hi There".
    #[test]
    fn rfc4231_case_1() {
        let mut mac = hmac_sha256(&[0x0b; 20]);
        mac.update(b"Hi There");
        let want: [u8; 32] = h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        assert_eq!(<[u8; 32]>::from(mac.finalize().into_bytes()), want);
    }
}
