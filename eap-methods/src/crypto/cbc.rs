//! AES-128-CBC without padding, for AT_ENCR_DATA (RFC 4186 §10.12,
//! RFC 4187 §10.12).
//!
//! The sender pads the attribute list with AT_PADDING to a multiple of 16
//! octets before encrypting, so the cipher itself never pads; a length that
//! is not a whole number of blocks is a malformed attribute, reported as an
//! error instead of being padded or truncated. CBC is a dozen lines on top
//! of the block cipher, so it is written here rather than pulled in as
//! another crate.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;

use super::bytes::xor;

const BLOCK: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CbcError {
    #[error("AT_ENCR_DATA length {0} is not a multiple of 16")]
    Length(usize),
}

/// The whole blocks of `data`, or the length error if it has a partial one.
fn blocks(data: &mut [u8]) -> Result<impl Iterator<Item = &mut [u8; BLOCK]>, CbcError> {
    if !data.chunks_exact(BLOCK).remainder().is_empty() {
        return Err(CbcError::Length(data.len()));
    }
    // `chunks_exact_mut` only yields full blocks, so the conversion cannot
    // fail; `flat_map` over the `Result` keeps that without a panic path.
    Ok(data
        .chunks_exact_mut(BLOCK)
        .flat_map(<&mut [u8; BLOCK]>::try_from))
}

/// Encrypts `data` in place; its length must be a multiple of 16.
pub fn aes128_cbc_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) -> Result<(), CbcError> {
    let cipher = Aes128::new(key.into());
    let mut chain = *iv;
    for block in blocks(data)? {
        *block = xor(block, &chain);
        cipher.encrypt_block(block.into());
        chain = *block;
    }
    Ok(())
}

/// Decrypts `data` in place; its length must be a multiple of 16.
pub fn aes128_cbc_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) -> Result<(), CbcError> {
    let cipher = Aes128::new(key.into());
    let mut chain = *iv;
    for block in blocks(data)? {
        let ciphertext = *block;
        cipher.decrypt_block(block.into());
        *block = xor(block, &chain);
        chain = ciphertext;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bytes::testhex::{arr, vec};
    use crate::crypto::rfc4186_vectors as a;

    // NIST SP 800-38A Appendix F.2.1 (CBC-AES128.Encrypt) and F.2.2
    // (CBC-AES128.Decrypt): same key, IV and blocks in both directions.
    const KEY: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const IV: &str = "000102030405060708090a0b0c0d0e0f";
    const PLAINTEXT: &str = "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
        30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710";
    const CIPHERTEXT: &str = "7649abac8119b246cee98e9b12e9197d 5086cb9b507219ee95db113a917678b2
        73bed6b8e3c1743b7116e69e22229516 3ff1caa1681fac09120eca307586e1a7";

    #[test]
    fn sp800_38a_f_2_1_encrypt() {
        let mut data = vec(PLAINTEXT);
        aes128_cbc_encrypt(&arr(KEY), &arr(IV), &mut data).expect("whole blocks");
        assert_eq!(data, vec(CIPHERTEXT));
    }

    #[test]
    fn sp800_38a_f_2_2_decrypt() {
        let mut data = vec(CIPHERTEXT);
        aes128_cbc_decrypt(&arr(KEY), &arr(IV), &mut data).expect("whole blocks");
        assert_eq!(data, vec(PLAINTEXT));
    }

    // RFC 4186 Appendix A.5: AT_ENCR_DATA under K_encr and AT_IV, both ways.
    #[test]
    fn rfc4186_a5_at_encr_data() {
        let (key, iv) = (arr(a::K_ENCR), arr(a::IV));
        let mut data = vec(a::ENCR_DATA);
        aes128_cbc_decrypt(&key, &iv, &mut data).expect("whole blocks");
        assert_eq!(data, a::encr_plaintext());
        aes128_cbc_encrypt(&key, &iv, &mut data).expect("whole blocks");
        assert_eq!(data, vec(a::ENCR_DATA));
    }

    #[test]
    fn partial_block_is_an_error_and_leaves_data_untouched() {
        for len in [1, 15, 17, 31] {
            let mut data = vec![0x5a; len];
            let enc = aes128_cbc_encrypt(&[0; 16], &[0; 16], &mut data);
            assert!(matches!(enc, Err(CbcError::Length(l)) if l == len));
            let dec = aes128_cbc_decrypt(&[0; 16], &[0; 16], &mut data);
            assert!(matches!(dec, Err(CbcError::Length(l)) if l == len));
            assert_eq!(data, vec![0x5a; len]);
        }
        assert_eq!(
            CbcError::Length(17).to_string(),
            "AT_ENCR_DATA length 17 is not a multiple of 16"
        );
    }

    #[test]
    fn empty_input_is_accepted() {
        let mut data = [];
        assert!(aes128_cbc_encrypt(&[0; 16], &[0; 16], &mut data).is_ok());
        assert!(aes128_cbc_decrypt(&[0; 16], &[0; 16], &mut data).is_ok());
    }
}
