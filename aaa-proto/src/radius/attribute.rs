//! One RADIUS attribute and the typed readers for its value.

use std::fmt;
use std::net::Ipv4Addr;

use super::error::DecodeError;
use super::vendor::{parse_vsa, vendor_of};
use crate::dictionary::{microsoft, rfc};

/// One attribute as it travels: type and raw value (RFC 2865 §5).
///
/// The value is kept raw because its meaning (and whether it is hidden with
/// the shared secret) depends on the packet it sits in.
#[derive(Clone, PartialEq, Eq)]
pub struct Attribute {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl Attribute {
    /// Whether the value must never reach a log: hidden passwords, integrity
    /// tags and MPPE keys are either secret or help an offline guess of the
    /// shared secret.
    pub fn is_secret(&self) -> bool {
        if self.kind == rfc::USER_PASSWORD || self.kind == rfc::MESSAGE_AUTHENTICATOR {
            return true;
        }
        if self.kind != rfc::VENDOR_SPECIFIC || vendor_of(&self.value) != Some(microsoft::VENDOR_ID) {
            return false;
        }
        // A Microsoft VSA we cannot parse might still hold a key, so it is
        // treated as secret rather than dumped.
        match parse_vsa(&self.value) {
            Ok((_, subs)) => subs
                .iter()
                .any(|s| s.vendor_type == microsoft::MS_MPPE_SEND_KEY || s.vendor_type == microsoft::MS_MPPE_RECV_KEY),
            Err(_) => true,
        }
    }
}

impl fmt::Debug for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = rfc::ATTRIBUTES.iter().find(|d| d.code == self.kind).map_or("?", |d| d.name);
        let mut s = f.debug_struct("Attribute");
        s.field("kind", &format_args!("{} ({name})", self.kind));
        if self.is_secret() {
            s.field("value", &format_args!("<hidden>"));
        } else {
            s.field("value", &Hex(&self.value));
        }
        s.finish()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// An `integer` (or `date`) value: exactly 4 bytes, big-endian (RFC 2865 §5).
pub fn decode_u32(value: &[u8]) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DecodeError::ValueLength { expected: 4, got: value.len() })?;
    Ok(u32::from_be_bytes(bytes))
}

/// An `integer64` value: exactly 8 bytes, big-endian (RFC 6929 §2.5).
pub fn decode_u64(value: &[u8]) -> Result<u64, DecodeError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| DecodeError::ValueLength { expected: 8, got: value.len() })?;
    Ok(u64::from_be_bytes(bytes))
}

/// A `string` (text) value; RFC 2865 §5 calls for UTF-8.
pub fn decode_string(value: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(value).map_err(|_| DecodeError::InvalidUtf8)
}

/// An `ipaddr` value: exactly 4 bytes.
pub fn decode_ipv4(value: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    decode_u32(value).map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::eapay;
    use crate::radius::vendor::encode_vsa;

    #[test]
    fn typed_values_need_exact_sizes() {
        assert_eq!(decode_u32(&[0, 0, 1, 0]), Ok(256));
        assert_eq!(decode_u32(&[0, 0, 1]), Err(DecodeError::ValueLength { expected: 4, got: 3 }));
        assert_eq!(decode_u32(&[0; 5]), Err(DecodeError::ValueLength { expected: 4, got: 5 }));
        assert_eq!(decode_u64(&[0, 0, 0, 0, 0, 0, 0x30, 0x39]), Ok(12345));
        assert_eq!(decode_u64(&[0; 4]), Err(DecodeError::ValueLength { expected: 8, got: 4 }));
        assert_eq!(decode_string(b"caf\xc3\xa9"), Ok("café"));
        assert_eq!(decode_string(&[0xff]), Err(DecodeError::InvalidUtf8));
        assert_eq!(decode_ipv4(&[192, 168, 1, 16]), Ok(Ipv4Addr::new(192, 168, 1, 16)));
    }

    #[test]
    fn debug_hides_secrets() {
        let user = Attribute { kind: rfc::USER_NAME, value: b"nemo".to_vec() };
        assert_eq!(format!("{user:?}"), "Attribute { kind: 1 (User-Name), value: 0x6e656d6f }");
        for kind in [rfc::USER_PASSWORD, rfc::MESSAGE_AUTHENTICATOR] {
            let a = Attribute { kind, value: vec![0xab; 16] };
            let s = format!("{a:?}");
            assert!(s.contains("<hidden>") && !s.contains("abab"), "{s}");
        }
        for vt in [microsoft::MS_MPPE_SEND_KEY, microsoft::MS_MPPE_RECV_KEY] {
            let a = Attribute { kind: rfc::VENDOR_SPECIFIC, value: encode_vsa(microsoft::VENDOR_ID, vt, &[0xcd; 34]) };
            let s = format!("{a:?}");
            assert!(s.contains("<hidden>") && !s.contains("cdcd"), "{s}");
        }
        // Other vendors' attributes stay visible for debugging.
        let a =
            Attribute { kind: rfc::VENDOR_SPECIFIC, value: encode_vsa(eapay::VENDOR_ID, eapay::TRANSACTION_ID, b"tx") };
        assert!(!format!("{a:?}").contains("<hidden>"));
    }
}
