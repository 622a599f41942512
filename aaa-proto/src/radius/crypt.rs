//! Attribute hiding with the shared secret: User-Password (RFC 2865 §5.2)
//! and the Microsoft MPPE keys (RFC 2548 §2.4.2, §2.4.3).
//!
//! Both are the same MD5 stream construction, chained over the previous
//! ciphertext block; MPPE adds a salt so that two keys under one Request
//! Authenticator get different keystreams.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use md5::{Digest, Md5};
use rand::rngs::OsRng;
use rand::RngCore;

use super::error::{DecodeError, EncodeError};
use super::packet::Packet;
use super::vendor::MAX_VENDOR_VALUE_LEN;
use crate::dictionary::microsoft;

/// RFC 2865 §5.2: the hidden password is at most 128 bytes.
pub const MAX_USER_PASSWORD_LEN: usize = 128;

/// The longest MPPE key that still fits one Vendor-Specific: 247 bytes of
/// value, minus the 2-byte salt, rounded down to whole 16-byte blocks (240),
/// minus the key-length byte.
pub const MAX_MPPE_KEY_LEN: usize = (MAX_VENDOR_VALUE_LEN - 2) / 16 * 16 - 1;

/// XORs `data` in place with the RFC 2865 §5.2 keystream:
/// b1 = MD5(S + first), bi = MD5(S + c(i-1)). `decrypt` selects which side
/// of the XOR is the ciphertext that feeds the next block.
fn md5_stream(data: &mut [u8], secret: &[u8], first: &[&[u8]], decrypt: bool) {
    let mut hasher = Md5::new_with_prefix(secret);
    first.iter().for_each(|p| hasher.update(p));
    let mut block_key: [u8; 16] = hasher.finalize().into();
    for block in data.chunks_mut(16) {
        let n = block.len();
        let mut cipher = [0u8; 16];
        if decrypt {
            cipher[..n].copy_from_slice(block);
        }
        block.iter_mut().zip(block_key.iter()).for_each(|(b, k)| *b ^= k);
        if !decrypt {
            cipher[..n].copy_from_slice(block);
        }
        block_key = Md5::new_with_prefix(secret).chain_update(&cipher[..n]).finalize().into();
    }
}

/// Hides a User-Password for an Access-Request with this Request Authenticator.
pub fn hide_user_password(
    password: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, EncodeError> {
    if password.len() > MAX_USER_PASSWORD_LEN {
        return Err(EncodeError::PasswordTooLong { len: password.len() });
    }
    if secret.is_empty() {
        return Err(EncodeError::EmptySecret);
    }
    // Null padding to whole blocks; an empty password still takes one block.
    let mut out = password.to_vec();
    out.resize(password.len().div_ceil(16).max(1) * 16, 0);
    md5_stream(&mut out, secret, &[request_authenticator], false);
    Ok(out)
}

/// Recovers a User-Password, dropping the null padding. A password that
/// itself ends in NUL bytes cannot be told from padding; RFC 2865 accepts that.
pub fn unhide_user_password(
    hidden: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<Vec<u8>, DecodeError> {
    if hidden.is_empty() || hidden.len() > MAX_USER_PASSWORD_LEN || !hidden.chunks_exact(16).remainder().is_empty() {
        return Err(DecodeError::UserPasswordLength { len: hidden.len() });
    }
    let mut out = hidden.to_vec();
    md5_stream(&mut out, secret, &[request_authenticator], true);
    let end = out.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    out.truncate(end);
    Ok(out)
}

/// A salt with the high bit set (RFC 2548 §2.4.2 "MUST"). RFC 2548 requires
/// salts to be unique within a packet; the NAS cannot check more. A
/// process-wide counter from a random start gives every call a salt distinct
/// from the 32767 calls around it, so the two keys of one reply (and any
/// re-encryption under a retransmitted Request Authenticator) never share a
/// keystream; a random salt would collide once in 32768 packets.
fn next_salt() -> [u8; 2] {
    static COUNTER: OnceLock<AtomicU16> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| AtomicU16::new((OsRng.next_u32() >> 16) as u16));
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (0x8000 | (n & 0x7fff)).to_be_bytes()
}

fn encrypt_mppe_key_with_salt(
    key: &[u8],
    secret: &[u8],
    request_authenticator: &[u8; 16],
    salt: [u8; 2],
) -> Result<Vec<u8>, EncodeError> {
    if key.len() > MAX_MPPE_KEY_LEN {
        return Err(EncodeError::MppeKeyTooLong { len: key.len(), max: MAX_MPPE_KEY_LEN });
    }
    if secret.is_empty() {
        return Err(EncodeError::EmptySecret);
    }
    let mut plain = Vec::with_capacity(2 + (key.len() + 1).div_ceil(16) * 16);
    // Bounded by MAX_MPPE_KEY_LEN < 256 above.
    plain.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
    plain.extend_from_slice(key);
    plain.resize((key.len() + 1).div_ceil(16) * 16, 0);
    md5_stream(&mut plain, secret, &[request_authenticator, &salt], false);
    let mut out = salt.to_vec();
    out.append(&mut plain);
    Ok(out)
}

/// Encrypts an MS-MPPE-Send-Key or -Recv-Key value for a reply to the
/// request with this authenticator: salt || E(key-length || key || padding).
pub fn encrypt_mppe_key(key: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Result<Vec<u8>, EncodeError> {
    encrypt_mppe_key_with_salt(key, secret, request_authenticator, next_salt())
}

/// Decrypts an MS-MPPE-Send-Key or -Recv-Key value.
pub fn decrypt_mppe_key(value: &[u8], secret: &[u8], request_authenticator: &[u8; 16]) -> Result<Vec<u8>, DecodeError> {
    let len = value.len();
    let (salt, cipher) = value.split_at_checked(2).ok_or(DecodeError::MppeKey { len, reason: "no salt" })?;
    if cipher.is_empty() || !cipher.chunks_exact(16).remainder().is_empty() {
        return Err(DecodeError::MppeKey { len, reason: "not whole 16-byte blocks" });
    }
    if !matches!(salt, [hi, _] if hi & 0x80 != 0) {
        return Err(DecodeError::MppeKey { len, reason: "salt high bit clear" });
    }
    let mut plain = cipher.to_vec();
    md5_stream(&mut plain, secret, &[request_authenticator, salt], true);
    let key_len = usize::from(plain.first().copied().unwrap_or_default());
    plain
        .get(1..1 + key_len)
        .map(<[u8]>::to_vec)
        .ok_or(DecodeError::MppeKey { len, reason: "key length exceeds the data (wrong secret?)" })
}

/// Adds the MSK as MS-MPPE-Recv-Key (MSK[0..32]) and MS-MPPE-Send-Key
/// (MSK[32..64]), the split RFC 5216 §2.3 names and eapol_test checks.
pub fn push_mppe_keys(
    reply: &mut Packet,
    msk: &[u8; 64],
    secret: &[u8],
    request_authenticator: &[u8; 16],
) -> Result<(), EncodeError> {
    let (recv, send) = msk.split_at(32);
    let recv = encrypt_mppe_key(recv, secret, request_authenticator)?;
    let send = encrypt_mppe_key(send, secret, request_authenticator)?;
    reply.push_vendor(microsoft::VENDOR_ID, microsoft::MS_MPPE_RECV_KEY, &recv)?;
    reply.push_vendor(microsoft::VENDOR_ID, microsoft::MS_MPPE_SEND_KEY, &send)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::rfc;
    use crate::radius::packet::tests::{hex, RFC2865_7_1_REQUEST};
    use crate::radius::Code;

    const RFC2865_SECRET: &[u8] = b"xyzzy5461";

    #[test]
    fn rfc2865_7_1_user_password() {
        let req = Packet::decode(&hex(RFC2865_7_1_REQUEST)).unwrap();
        let hidden = req.get(rfc::USER_PASSWORD).unwrap();
        assert_eq!(hide_user_password(b"arctangent", RFC2865_SECRET, &req.authenticator).unwrap(), hidden);
        assert_eq!(unhide_user_password(hidden, RFC2865_SECRET, &req.authenticator).unwrap(), b"arctangent");
        assert_ne!(unhide_user_password(hidden, b"xyzzy5462", &req.authenticator).unwrap(), b"arctangent");
    }

    /// Wireshark's radius_localhost.pcapng sample capture, as kept in
    /// FreeRADIUS src/tests/unit/protocols/radius/packet_wireshark01.txt
    /// (packets 1 and 13). The capture's secret is "testing123" (its
    /// Message-Authenticators verify with it, see `auth` tests).
    #[test]
    fn wireshark_capture_passwords() {
        let ra = hex("40b664dbf5d681b2adbd1769515118c8").try_into().unwrap();
        let hidden = hex("dbc6c4b758be14f005b3877c9e2fb601");
        assert_eq!(unhide_user_password(&hidden, b"testing123", &ra).unwrap(), b"bad");
        let ra = hex("6f75df8862888f90d4f6ff19ae4f38fb").try_into().unwrap();
        let hidden = hex("1a6c451bc3a8457e4a5039e36c4843b6");
        assert_eq!(unhide_user_password(&hidden, b"testing123", &ra).unwrap(), b"bad_password");
    }

    #[test]
    fn user_password_lengths() {
        let ra = [9u8; 16];
        for n in [0usize, 1, 15, 16, 17, 31, 32, 127, 128] {
            let pw: Vec<u8> = (1..=n as u8).collect();
            let hidden = hide_user_password(&pw, b"s", &ra).unwrap();
            assert_eq!(hidden.len(), n.div_ceil(16).max(1) * 16);
            assert_eq!(unhide_user_password(&hidden, b"s", &ra).unwrap(), pw);
        }
        assert_eq!(hide_user_password(&[1; 129], b"s", &ra), Err(EncodeError::PasswordTooLong { len: 129 }));
        assert_eq!(hide_user_password(b"pw", b"", &ra), Err(EncodeError::EmptySecret));
        for n in [0, 15, 17, 144] {
            assert_eq!(unhide_user_password(&vec![1; n], b"s", &ra), Err(DecodeError::UserPasswordLength { len: n }));
        }
    }

    /// OpenBSD regress/lib/libradius/test25.c (libradius by Internet
    /// Initiative Japan): secret "hogehogefugafuga", salt 0x8036.
    const IIJ_RA: &str = "678ae6ed696e1bd10ae2fea105d46a56";
    const IIJ_ENCRYPTED: &str = "8036 f4abbe2117fb3e4a7874dce91c5b0449 8ec7720f168688562dbc88e21cab6271";
    const IIJ_KEY: &str = "fc6ea418373d8e90c136fae3735e37d1";

    #[test]
    fn mppe_known_answer() {
        let ra: [u8; 16] = hex(IIJ_RA).try_into().unwrap();
        let secret = b"hogehogefugafuga";
        assert_eq!(decrypt_mppe_key(&hex(IIJ_ENCRYPTED), secret, &ra).unwrap(), hex(IIJ_KEY));
        let again = encrypt_mppe_key_with_salt(&hex(IIJ_KEY), secret, &ra, [0x80, 0x36]).unwrap();
        assert_eq!(again, hex(IIJ_ENCRYPTED));
    }

    #[test]
    fn mppe_round_trip_and_errors() {
        let ra = [3u8; 16];
        for n in [0, 1, 15, 16, 32, MAX_MPPE_KEY_LEN] {
            let key: Vec<u8> = (0..n).map(|i| i as u8 ^ 0x5a).collect();
            let enc = encrypt_mppe_key(&key, b"secret", &ra).unwrap();
            assert!(enc[0] & 0x80 != 0);
            assert_eq!((enc.len() - 2) % 16, 0);
            assert!(enc.len() <= MAX_VENDOR_VALUE_LEN);
            assert_eq!(decrypt_mppe_key(&enc, b"secret", &ra).unwrap(), key);
        }
        assert_eq!(MAX_MPPE_KEY_LEN, 239);
        assert!(matches!(encrypt_mppe_key(&[0; 240], b"s", &ra), Err(EncodeError::MppeKeyTooLong { len: 240, .. })));
        let enc = encrypt_mppe_key(&[7; 32], b"secret", &ra).unwrap();
        for bad in [&enc[..1], &enc[..2], &enc[..17], &enc[..enc.len() - 1]] {
            assert!(matches!(decrypt_mppe_key(bad, b"secret", &ra), Err(DecodeError::MppeKey { .. })));
        }
        let mut low_salt = enc.clone();
        low_salt[0] &= 0x7f;
        assert!(matches!(decrypt_mppe_key(&low_salt, b"secret", &ra), Err(DecodeError::MppeKey { .. })));
    }

    #[test]
    fn salts_are_distinct_with_high_bit() {
        let salts: Vec<[u8; 2]> = (0..1000).map(|_| next_salt()).collect();
        let unique: std::collections::HashSet<_> = salts.iter().collect();
        assert_eq!(unique.len(), salts.len());
        assert!(salts.iter().all(|s| s[0] & 0x80 != 0));
    }

    #[test]
    fn msk_split_into_microsoft_vsas() {
        let msk: [u8; 64] = std::array::from_fn(|i| i as u8);
        let ra = [0x11u8; 16];
        let mut reply = Packet::new(Code::AccessAccept, 1, ra);
        push_mppe_keys(&mut reply, &msk, b"secret", &ra).unwrap();
        let recv = reply.vendor_attribute(microsoft::VENDOR_ID, microsoft::MS_MPPE_RECV_KEY).unwrap().unwrap();
        let send = reply.vendor_attribute(microsoft::VENDOR_ID, microsoft::MS_MPPE_SEND_KEY).unwrap().unwrap();
        assert_eq!(recv.len(), 2 + 48);
        assert_ne!(recv[..2], send[..2], "one packet, two salts");
        assert_eq!(decrypt_mppe_key(recv, b"secret", &ra).unwrap(), msk[..32]);
        assert_eq!(decrypt_mppe_key(send, b"secret", &ra).unwrap(), msk[32..]);
        assert!(format!("{reply:?}").matches("<hidden>").count() == 2);
    }
}
