//! The EAP-SIM / EAP-AKA message format (RFC 4186 §8.1, RFC 4187 §8.1).
//!
//! After the EAP header and type come a subtype, two reserved octets and
//! attributes of the form type (1) | length in 4-octet words (1) | value.
//! Parsing records where the AT_MAC value sits so the MAC can be checked over
//! the packet exactly as received, with those 16 octets zeroed.

use crate::error::EapError;
use crate::packet::{Code, EapType};

/// Attribute types (RFC 4186 §11, RFC 4187 §11, RFC 5448 §6).
pub mod at {
    pub const RAND: u8 = 1;
    pub const AUTN: u8 = 2;
    pub const RES: u8 = 3;
    pub const AUTS: u8 = 4;
    pub const PADDING: u8 = 6;
    pub const NONCE_MT: u8 = 7;
    pub const PERMANENT_ID_REQ: u8 = 10;
    pub const MAC: u8 = 11;
    pub const NOTIFICATION: u8 = 12;
    pub const ANY_ID_REQ: u8 = 13;
    pub const IDENTITY: u8 = 14;
    pub const VERSION_LIST: u8 = 15;
    pub const SELECTED_VERSION: u8 = 16;
    pub const FULLAUTH_ID_REQ: u8 = 17;
    pub const COUNTER: u8 = 19;
    pub const COUNTER_TOO_SMALL: u8 = 20;
    pub const NONCE_S: u8 = 21;
    pub const CLIENT_ERROR_CODE: u8 = 22;
    pub const KDF_INPUT: u8 = 23;
    pub const KDF: u8 = 24;
    pub const IV: u8 = 129;
    pub const ENCR_DATA: u8 = 130;
    pub const NEXT_PSEUDONYM: u8 = 132;
    pub const NEXT_REAUTH_ID: u8 = 133;
    pub const CHECKCODE: u8 = 134;
    pub const RESULT_IND: u8 = 135;
    pub const BIDDING: u8 = 136;
    /// eapay (DESIGN.md §4): the canonical payment details the card
    /// confirms, inside AT_ENCR_DATA. Skippable (>= 128), so standard
    /// servers ignore it.
    pub const EAPAY_PAYMENT: u8 = 250;
    /// eapay (DESIGN.md §4): the approval or decline the server delivers,
    /// inside AT_ENCR_DATA of the success/failure Notification.
    pub const EAPAY_RESULT: u8 = 251;

    /// Types 0-127 are non-skippable: an unknown one must fail the message.
    pub const fn is_skippable(kind: u8) -> bool {
        kind >= 128
    }

    /// The attributes this implementation understands.
    pub const fn is_known(kind: u8) -> bool {
        matches!(kind, 1..=4 | 6 | 7 | 10..=17 | 19..=24 | 129 | 130 | 132..=136)
    }
}

/// Subtypes (RFC 4186 §11, RFC 4187 §11).
pub mod subtype {
    pub const AKA_CHALLENGE: u8 = 1;
    pub const AKA_AUTHENTICATION_REJECT: u8 = 2;
    pub const AKA_SYNCHRONIZATION_FAILURE: u8 = 4;
    pub const AKA_IDENTITY: u8 = 5;
    pub const SIM_START: u8 = 10;
    pub const SIM_CHALLENGE: u8 = 11;
    pub const NOTIFICATION: u8 = 12;
    pub const REAUTHENTICATION: u8 = 13;
    pub const CLIENT_ERROR: u8 = 14;
}

/// AT_NOTIFICATION codes (RFC 4187 §10.19): bit 15 (S) = success,
/// bit 14 (P) = sent before the challenge (no AT_MAC possible).
pub mod notification {
    pub const GENERAL_FAILURE_AFTER_AUTH: u16 = 0;
    pub const TEMPORARILY_DENIED: u16 = 1026;
    pub const NOT_SUBSCRIBED: u16 = 1031;
    pub const GENERAL_FAILURE: u16 = 16384;
    pub const SUCCESS: u16 = 32768;
    pub const S_BIT: u16 = 0x8000;
    pub const P_BIT: u16 = 0x4000;
}

/// AT_CLIENT_ERROR_CODE values (RFC 4186 §10.19, RFC 4187 §10.20).
pub mod client_error {
    pub const UNABLE_TO_PROCESS: u16 = 0;
    pub const UNSUPPORTED_VERSION: u16 = 1;
    pub const INSUFFICIENT_CHALLENGES: u16 = 2;
    pub const RANDS_NOT_FRESH: u16 = 3;
}

/// One attribute: its type and the octets after the length byte.
#[derive(Clone, PartialEq, Eq)]
pub struct Attribute {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Attribute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AT({}, {} octets)", self.kind, self.value.len())
    }
}

impl Attribute {
    /// The value after the two reserved octets most attributes start with.
    pub fn after_reserved(&self) -> &[u8] {
        self.value.get(2..).unwrap_or(&[])
    }

    /// The first two octets as a big-endian number (AT_KDF,
    /// AT_NOTIFICATION, AT_CLIENT_ERROR_CODE, AT_COUNTER, actual lengths).
    pub fn u16(&self) -> Option<u16> {
        Some(u16::from_be_bytes([*self.value.first()?, *self.value.get(1)?]))
    }

    /// Values that start with an actual length in octets (AT_IDENTITY,
    /// AT_KDF_INPUT, AT_NEXT_PSEUDONYM): the data without its padding.
    pub fn with_actual_length(&self) -> Option<&[u8]> {
        let n = usize::from(self.u16()?);
        self.value.get(2..2 + n)
    }

    /// AT_RES: a length in bits, then the RES padded to 4 octets.
    pub fn res(&self) -> Option<&[u8]> {
        let bits = usize::from(self.u16()?);
        if bits % 8 != 0 || !(32..=128).contains(&bits) {
            return None;
        }
        self.value.get(2..2 + bits / 8)
    }
}

/// A parsed SIM/AKA message.
#[derive(Debug, Clone)]
pub struct Message {
    pub code: Code,
    pub identifier: u8,
    pub subtype: u8,
    pub attributes: Vec<Attribute>,
    /// Offset of the 16 MAC octets of AT_MAC in the raw packet.
    pub mac_offset: Option<usize>,
}

impl Message {
    /// Parses a complete EAP packet of a SIM/AKA method. Duplicate attributes
    /// and unknown non-skippable attributes are errors.
    pub fn decode(raw: &[u8], method: &'static str) -> Result<Self, EapError> {
        let bad = |why| EapError::malformed(method, why);
        let length = raw.get(2..4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))).ok_or(bad("short header"))?;
        let raw = raw.get(..length).ok_or(bad("Length beyond the data"))?;
        if raw.len() < 8 {
            return Err(bad("shorter than type, subtype and reserved"));
        }
        let code = match raw[0] {
            1 => Code::Request,
            2 => Code::Response,
            _ => return Err(bad("not a request or response")),
        };
        let mut attributes = Vec::new();
        let mut mac_offset = None;
        let mut pos = 8;
        while pos < raw.len() {
            let kind = raw[pos];
            let words = usize::from(*raw.get(pos + 1).ok_or(bad("attribute header cut"))?);
            if words == 0 {
                return Err(bad("attribute of length 0"));
            }
            let end = pos + words * 4;
            let value = raw.get(pos + 2..end).ok_or(bad("attribute overruns the packet"))?;
            if !at::is_known(kind) && !at::is_skippable(kind) {
                return Err(EapError::UnknownAttribute { method, kind });
            }
            // AT_KDF is the one list-valued attribute (RFC 5448 §3.2).
            if kind != at::KDF && attributes.iter().any(|a: &Attribute| a.kind == kind) {
                return Err(bad("attribute repeated"));
            }
            if kind == at::MAC {
                if value.len() != 18 {
                    return Err(bad("AT_MAC of the wrong length"));
                }
                mac_offset = Some(pos + 4);
            }
            attributes.push(Attribute { kind, value: value.to_vec() });
            pos = end;
        }
        Ok(Self { code, identifier: raw[1], subtype: raw[5], attributes, mac_offset })
    }

    /// The attribute of this type, if present.
    pub fn get(&self, kind: u8) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind == kind)
    }

    /// Every attribute of this type, in order (AT_KDF).
    pub fn get_all(&self, kind: u8) -> impl Iterator<Item = &Attribute> {
        self.attributes.iter().filter(move |a| a.kind == kind)
    }

    /// True if the attribute is present.
    pub fn has(&self, kind: u8) -> bool {
        self.get(kind).is_some()
    }

    /// The value of a fixed-size attribute after its reserved octets.
    pub fn fixed<const N: usize>(&self, kind: u8) -> Option<[u8; N]> {
        self.get(kind)?.after_reserved().try_into().ok()
    }
}

/// Parses the plaintext of AT_ENCR_DATA: attributes of the same form,
/// ending in optional AT_PADDING.
pub fn decode_encrypted(plain: &[u8], method: &'static str) -> Result<Vec<Attribute>, EapError> {
    let bad = |why| EapError::malformed(method, why);
    let mut out: Vec<Attribute> = Vec::new();
    let mut pos = 0;
    while pos < plain.len() {
        let kind = plain[pos];
        let words = usize::from(*plain.get(pos + 1).ok_or(bad("encrypted attribute header cut"))?);
        if words == 0 {
            return Err(bad("encrypted attribute of length 0"));
        }
        let end = pos + words * 4;
        let value = plain.get(pos + 2..end).ok_or(bad("encrypted attribute overruns"))?;
        if kind == at::PADDING {
            if value.iter().any(|&b| b != 0) {
                return Err(bad("AT_PADDING is not zero"));
            }
        } else {
            if !at::is_known(kind) && !at::is_skippable(kind) {
                return Err(EapError::UnknownAttribute { method, kind });
            }
            if out.iter().any(|a| a.kind == kind) {
                return Err(bad("encrypted attribute repeated"));
            }
            out.push(Attribute { kind, value: value.to_vec() });
        }
        pos = end;
    }
    Ok(out)
}

/// Appends attributes in the wire form; used for messages and for the
/// plaintext of AT_ENCR_DATA.
#[derive(Debug, Default, Clone)]
pub struct AttributeWriter {
    bytes: Vec<u8>,
}

impl AttributeWriter {
    /// An empty attribute list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An attribute whose value (after the length octet) is `value`,
    /// zero-padded to a whole number of words.
    pub fn raw(&mut self, kind: u8, value: &[u8]) -> &mut Self {
        let words = (value.len() + 2).div_ceil(4);
        // Values are built by this crate from bounded inputs (identities
        // are capped by the EAP packet limit), so they always fit 255 words.
        let words = words.min(255);
        self.bytes.push(kind);
        self.bytes.push(words as u8);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.bytes.resize(start + words * 4 - 2, 0);
        self
    }

    /// Two reserved zero octets, then `data` (AT_RAND, AT_AUTN, AT_MAC...).
    pub fn reserved(&mut self, kind: u8, data: &[u8]) -> &mut Self {
        let mut v = vec![0, 0];
        v.extend_from_slice(data);
        self.raw(kind, &v)
    }

    /// A two-octet value (AT_KDF, AT_NOTIFICATION, AT_CLIENT_ERROR_CODE).
    pub fn u16(&mut self, kind: u8, v: u16) -> &mut Self {
        self.raw(kind, &v.to_be_bytes())
    }

    /// An actual length in octets, then the data (AT_IDENTITY, AT_KDF_INPUT).
    pub fn with_actual_length(&mut self, kind: u8, data: &[u8]) -> &mut Self {
        let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(data);
        self.raw(kind, &v)
    }

    /// AT_RES: its length in bits, then RES.
    pub fn res(&mut self, res: &[u8]) -> &mut Self {
        let bits = u16::try_from(res.len() * 8).unwrap_or(0);
        let mut v = bits.to_be_bytes().to_vec();
        v.extend_from_slice(res);
        self.raw(at::RES, &v)
    }

    /// Pads with AT_PADDING to a multiple of 16 octets, as AT_ENCR_DATA's
    /// plaintext must be (RFC 4187 §10.12).
    pub fn pad_to_block(&mut self) -> &mut Self {
        let rem = self.bytes.len() % 16;
        if rem != 0 {
            let pad = 16 - rem;
            self.bytes.push(at::PADDING);
            self.bytes.push((pad / 4) as u8);
            self.bytes.resize(self.bytes.len() + pad - 2, 0);
        }
        self
    }

    /// The attribute bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// A complete EAP packet of `kind`/`subtype` carrying these attributes.
    /// If the attributes include AT_MAC (zeroed), returns its offset too.
    pub fn into_packet(self, code: Code, identifier: u8, kind: EapType, subtype: u8) -> (Vec<u8>, Option<usize>) {
        let length = 8 + self.bytes.len();
        let mut out = Vec::with_capacity(length);
        out.push(code as u8);
        out.push(identifier);
        out.extend_from_slice(&u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes());
        out.push(kind.0);
        out.push(subtype);
        out.extend_from_slice(&[0, 0]);
        let mut mac = None;
        let mut pos = 0;
        while pos + 1 < self.bytes.len() {
            if self.bytes[pos] == at::MAC {
                mac = Some(8 + pos + 4);
            }
            pos += usize::from(self.bytes[pos + 1]).max(1) * 4;
        }
        out.extend_from_slice(&self.bytes);
        (out, mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_mac_offset() {
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &[7; 16]).res(&[1, 2, 3, 4, 5, 6, 7, 8]).reserved(at::MAC, &[0; 16]);
        let (bytes, mac) = w.into_packet(Code::Request, 3, EapType::AKA, subtype::AKA_CHALLENGE);
        let m = Message::decode(&bytes, "AKA").unwrap();
        assert_eq!(m.subtype, subtype::AKA_CHALLENGE);
        assert_eq!(m.fixed::<16>(at::RAND), Some([7; 16]));
        assert_eq!(m.get(at::RES).unwrap().res(), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
        assert_eq!(m.mac_offset, mac);
        assert_eq!(&bytes[mac.unwrap()..mac.unwrap() + 16], &[0; 16]);
    }

    #[test]
    fn identity_keeps_its_actual_length() {
        let mut w = AttributeWriter::new();
        w.with_actual_length(at::IDENTITY, b"0abc@x");
        let (bytes, _) = w.into_packet(Code::Response, 1, EapType::AKA, subtype::AKA_IDENTITY);
        let m = Message::decode(&bytes, "AKA").unwrap();
        assert_eq!(m.get(at::IDENTITY).unwrap().with_actual_length(), Some(&b"0abc@x"[..]));
    }

    #[test]
    fn rejects_bad_attributes() {
        let base = [1u8, 1, 0, 12, 23, 1, 0, 0];
        let with = |attr: &[u8]| {
            let mut v = base.to_vec();
            v.extend_from_slice(attr);
            let len = v.len() as u16;
            v[2..4].copy_from_slice(&len.to_be_bytes());
            Message::decode(&v, "AKA")
        };
        assert!(with(&[at::RAND, 0, 0, 0]).is_err(), "length 0");
        assert!(with(&[at::RAND, 5, 0, 0]).is_err(), "overrun");
        assert!(with(&[99, 1, 0, 0]).is_err(), "unknown non-skippable");
        assert!(with(&[200, 1, 0, 0]).is_ok(), "unknown skippable");
        assert!(with(&[at::RESULT_IND, 1, 0, 0, at::RESULT_IND, 1, 0, 0]).is_err(), "repeated");
        assert!(with(&[at::MAC, 1, 0, 0]).is_err(), "short AT_MAC");
    }

    #[test]
    fn every_truncation_is_an_error_or_shorter_message() {
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &[7; 16]).reserved(at::MAC, &[0; 16]);
        let (bytes, _) = w.into_packet(Code::Request, 3, EapType::AKA, subtype::AKA_CHALLENGE);
        for n in 0..bytes.len() {
            let mut cut = bytes[..n].to_vec();
            if cut.len() >= 4 {
                let l = cut.len() as u16;
                cut[2..4].copy_from_slice(&l.to_be_bytes());
            }
            let _ = Message::decode(&cut, "AKA");
        }
    }

    #[test]
    fn encrypted_padding_fills_a_block() {
        let mut w = AttributeWriter::new();
        w.with_actual_length(at::EAPAY_PAYMENT, b"details");
        w.pad_to_block();
        let plain = w.into_bytes();
        assert_eq!(plain.len() % 16, 0);
        let attrs = decode_encrypted(&plain, "AKA").unwrap();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].with_actual_length(), Some(&b"details"[..]));
    }
}
