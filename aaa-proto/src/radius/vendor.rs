//! Vendor-Specific attributes in the RFC 2865 §5.26 recommended format:
//! Vendor-Id (4 bytes), then sub-attributes of a 1-byte type and a 1-byte
//! length that counts its own 2-byte header.

use super::attribute::{decode_string, decode_u32, decode_u64};
use super::error::{DecodeError, EncodeError};
use super::packet::Packet;
use super::MAX_ATTR_VALUE_LEN;
use crate::dictionary::rfc;

/// The largest sub-attribute value one Vendor-Specific can carry:
/// 253 minus the Vendor-Id (4) and the sub-attribute header (2).
pub const MAX_VENDOR_VALUE_LEN: usize = MAX_ATTR_VALUE_LEN - 4 - 2;

/// One vendor sub-attribute, borrowed from the packet it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorAttribute<'a> {
    pub vendor_type: u8,
    pub value: &'a [u8],
}

impl<'a> VendorAttribute<'a> {
    /// The value as an `integer`.
    pub fn as_u32(&self) -> Result<u32, DecodeError> {
        decode_u32(self.value)
    }

    /// The value as an `integer64` (eapay amounts and times).
    pub fn as_u64(&self) -> Result<u64, DecodeError> {
        decode_u64(self.value)
    }

    /// The value as UTF-8 text.
    pub fn as_str(&self) -> Result<&'a str, DecodeError> {
        decode_string(self.value)
    }
}

/// The Vendor-Id of a Vendor-Specific value, if it is long enough to have one.
pub(crate) fn vendor_of(vsa: &[u8]) -> Option<u32> {
    let id: [u8; 4] = vsa.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(id))
}

/// Splits one Vendor-Specific value into its Vendor-Id and sub-attributes.
pub(crate) fn parse_vsa(vsa: &[u8]) -> Result<(u32, Vec<VendorAttribute<'_>>), DecodeError> {
    let vendor_id = vendor_of(vsa).ok_or(DecodeError::ShortVendorSpecific { len: vsa.len() })?;
    let mut rest = vsa.get(4..).unwrap_or_default();
    let mut subs = Vec::new();
    while let [vendor_type, len, ..] = *rest {
        let body = usize::from(len)
            .checked_sub(2)
            .and_then(|n| rest.get(2..2 + n))
            .ok_or(DecodeError::BadVendorAttribute { vendor_id, vendor_type, len, remaining: rest.len() })?;
        subs.push(VendorAttribute { vendor_type, value: body });
        rest = rest.get(2 + body.len()..).unwrap_or_default();
    }
    if let [vendor_type] = *rest {
        return Err(DecodeError::BadVendorAttribute { vendor_id, vendor_type, len: 0, remaining: 1 });
    }
    Ok((vendor_id, subs))
}

/// One Vendor-Specific value holding a single sub-attribute. The caller
/// bounds `value` to [`MAX_VENDOR_VALUE_LEN`].
pub(crate) fn encode_vsa(vendor_id: u32, vendor_type: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + value.len());
    out.extend_from_slice(&vendor_id.to_be_bytes());
    out.push(vendor_type);
    // Callers cap the value at 247, so the length byte cannot wrap.
    out.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
    out.extend_from_slice(value);
    out
}

impl Packet {
    /// Every sub-attribute of `vendor_id`, in packet order. One
    /// Vendor-Specific may hold several. A malformed Vendor-Specific of any
    /// vendor fails the whole call: a packet with a corrupt VSA is not to be
    /// half-trusted.
    pub fn vendor_attributes(&self, vendor_id: u32) -> Result<Vec<VendorAttribute<'_>>, DecodeError> {
        let mut out = Vec::new();
        for vsa in self.get_all(rfc::VENDOR_SPECIFIC) {
            match vendor_of(vsa) {
                None => return Err(DecodeError::ShortVendorSpecific { len: vsa.len() }),
                // Other vendors may use non-recommended layouts (e.g. 4-byte
                // types), so only our vendor's VSAs are parsed.
                Some(id) if id != vendor_id => continue,
                Some(_) => out.extend(parse_vsa(vsa)?.1),
            }
        }
        Ok(out)
    }

    /// The first sub-attribute of `vendor_id` with `vendor_type`.
    pub fn vendor_attribute(&self, vendor_id: u32, vendor_type: u8) -> Result<Option<&[u8]>, DecodeError> {
        Ok(self.vendor_attributes(vendor_id)?.into_iter().find(|a| a.vendor_type == vendor_type).map(|a| a.value))
    }

    /// Appends one Vendor-Specific holding one sub-attribute; one per VSA is
    /// what FreeRADIUS sends and every NAS parses.
    pub fn push_vendor(&mut self, vendor_id: u32, vendor_type: u8, value: &[u8]) -> Result<(), EncodeError> {
        if value.len() > MAX_VENDOR_VALUE_LEN {
            return Err(EncodeError::ValueTooLong { kind: vendor_type, len: value.len(), max: MAX_VENDOR_VALUE_LEN });
        }
        self.push(rfc::VENDOR_SPECIFIC, &encode_vsa(vendor_id, vendor_type, value))
    }

    /// [`Packet::push_vendor`] for an `integer`.
    pub fn push_vendor_u32(&mut self, vendor_id: u32, vendor_type: u8, v: u32) -> Result<(), EncodeError> {
        self.push_vendor(vendor_id, vendor_type, &v.to_be_bytes())
    }

    /// [`Packet::push_vendor`] for an `integer64`.
    pub fn push_vendor_u64(&mut self, vendor_id: u32, vendor_type: u8, v: u64) -> Result<(), EncodeError> {
        self.push_vendor(vendor_id, vendor_type, &v.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{eapay, microsoft};
    use crate::radius::{Attribute, Code};

    fn packet_with(vsas: &[Vec<u8>]) -> Packet {
        let mut p = Packet::new(Code::AccessRequest, 0, [0; 16]);
        for v in vsas {
            p.attributes.push(Attribute { kind: rfc::VENDOR_SPECIFIC, value: v.clone() });
        }
        p
    }

    #[test]
    fn several_sub_attributes_in_one_vsa() {
        let mut vsa = eapay::VENDOR_ID.to_be_bytes().to_vec();
        vsa.extend_from_slice(&[eapay::TRANSACTION_ID, 4, b't', b'1']);
        vsa.extend_from_slice(&[eapay::AMOUNT, 10, 0, 0, 0, 0, 0, 0, 0x04, 0xd2]);
        vsa.extend_from_slice(&[eapay::CURRENCY, 2]);
        let other = encode_vsa(microsoft::VENDOR_ID, microsoft::MS_MPPE_SEND_KEY, &[1; 18]);
        let p = packet_with(&[other, vsa]);
        let subs = p.vendor_attributes(eapay::VENDOR_ID).unwrap();
        assert_eq!(subs.len(), 3);
        assert_eq!(subs[0].as_str(), Ok("t1"));
        assert_eq!(subs[1].as_u64(), Ok(1234));
        assert_eq!(subs[2].value, b"");
        assert_eq!(
            p.vendor_attribute(eapay::VENDOR_ID, eapay::AMOUNT).unwrap(),
            Some(&[0, 0, 0, 0, 0, 0, 4, 0xd2][..])
        );
        assert_eq!(p.vendor_attribute(eapay::VENDOR_ID, eapay::RECEIPT).unwrap(), None);
        assert_eq!(p.vendor_attributes(microsoft::VENDOR_ID).unwrap().len(), 1);
    }

    #[test]
    fn bad_inner_lengths_are_errors() {
        let id = eapay::VENDOR_ID;
        let head = id.to_be_bytes();
        let cases: [(&[u8], u8, u8); 4] = [
            (&[eapay::AMOUNT, 0], eapay::AMOUNT, 0),
            (&[eapay::AMOUNT, 1, 9], eapay::AMOUNT, 1),
            (&[eapay::AMOUNT, 5, 9, 9], eapay::AMOUNT, 5),
            (&[eapay::CURRENCY, 2, eapay::AMOUNT], eapay::AMOUNT, 0),
        ];
        for (tail, vendor_type, len) in cases {
            let vsa = [&head[..], tail].concat();
            let e = packet_with(&[vsa]).vendor_attributes(id).unwrap_err();
            assert!(
                matches!(e, DecodeError::BadVendorAttribute { vendor_id, vendor_type: t, len: l, .. }
                    if vendor_id == id && t == vendor_type && l == len),
                "{tail:?}: {e:?}"
            );
        }
        let short = packet_with(&[vec![0, 0, 1]]);
        assert_eq!(short.vendor_attributes(id), Err(DecodeError::ShortVendorSpecific { len: 3 }));
    }

    #[test]
    fn push_vendor_bounds() {
        let mut p = Packet::new(Code::AccessAccept, 0, [0; 16]);
        p.push_vendor(eapay::VENDOR_ID, eapay::RECEIPT, &[7; MAX_VENDOR_VALUE_LEN]).unwrap();
        p.push_vendor(eapay::VENDOR_ID, eapay::DECLINE_REASON, b"").unwrap();
        assert_eq!(
            p.push_vendor(eapay::VENDOR_ID, eapay::RECEIPT, &[7; MAX_VENDOR_VALUE_LEN + 1]),
            Err(EncodeError::ValueTooLong { kind: eapay::RECEIPT, len: 248, max: 247 })
        );
        p.push_vendor_u32(eapay::VENDOR_ID, eapay::CURRENCY, 978).unwrap();
        p.push_vendor_u64(eapay::VENDOR_ID, eapay::APPROVED_AMOUNT, 1 << 40).unwrap();
        assert_eq!(p.attributes[0].value.len(), MAX_ATTR_VALUE_LEN);
        let subs = p.vendor_attributes(eapay::VENDOR_ID).unwrap();
        assert_eq!(subs[0].value, &[7; MAX_VENDOR_VALUE_LEN][..]);
        assert_eq!(subs[1].value, b"");
        assert_eq!(subs[2].as_u32(), Ok(978));
        assert_eq!(subs[3].as_u64(), Ok(1 << 40));
    }
}
