//! The RADIUS packet (RFC 2865 §3) and its attribute list.

use rand::rngs::OsRng;
use rand::RngCore;

use super::attribute::{decode_string, decode_u32, decode_u64, Attribute};
use super::code::Code;
use super::error::{DecodeError, EncodeError};
use super::{MAX_ATTR_VALUE_LEN, MAX_PACKET_LEN, MIN_PACKET_LEN};
use crate::dictionary::rfc;

/// A decoded packet. The authenticator is whatever the wire carried (or, for
/// a packet being built, a placeholder that `auth` replaces on encode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: Code,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

/// One attribute as it sits in a datagram, with its offset so that the
/// authenticator code can zero it in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawAttribute<'a> {
    pub offset: usize,
    pub kind: u8,
    pub value: &'a [u8],
}

/// Checks the header of a datagram and returns its code and the bytes up to
/// the Length field. RFC 2865 §3: shorter than Length is discarded, longer
/// is padding and ignored.
pub(crate) fn frame(datagram: &[u8]) -> Result<(Code, &[u8]), DecodeError> {
    let [code, _id, hi, lo, ..] = *datagram else {
        return Err(DecodeError::TooShort { len: datagram.len() });
    };
    if datagram.len() < MIN_PACKET_LEN {
        return Err(DecodeError::TooShort { len: datagram.len() });
    }
    let length = usize::from(u16::from_be_bytes([hi, lo]));
    if length > MAX_PACKET_LEN {
        return Err(DecodeError::TooLong { length });
    }
    let packet = datagram
        .get(..length)
        .filter(|_| length >= MIN_PACKET_LEN)
        .ok_or(DecodeError::LengthMismatch { length, received: datagram.len() })?;
    let code = Code::from_u8(code).ok_or(DecodeError::UnknownCode(code))?;
    Ok((code, packet))
}

/// Walks the attributes of a framed packet. Yields an error once and then
/// stops, so a caller collecting into `Result` sees the first fault.
pub(crate) fn raw_attributes(packet: &[u8]) -> impl Iterator<Item = Result<RawAttribute<'_>, DecodeError>> {
    let mut offset = MIN_PACKET_LEN;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let rest = packet.get(offset..).filter(|r| !r.is_empty())?;
        let item = match *rest {
            [kind, len, ..] if len >= 2 && usize::from(len) <= rest.len() => {
                if kind == 0 {
                    // FreeRADIUS rejects type 0 too; it is never valid.
                    Err(DecodeError::Malformed("attribute type 0"))
                } else {
                    let value = rest.get(2..usize::from(len)).unwrap_or_default();
                    let at = offset;
                    offset += usize::from(len);
                    Ok(RawAttribute { offset: at, kind, value })
                }
            }
            [kind, len, ..] => Err(DecodeError::AttributeLength { kind, len, remaining: rest.len() }),
            [kind] => Err(DecodeError::AttributeLength { kind, len: 0, remaining: 1 }),
            [] => return None,
        };
        failed = item.is_err();
        Some(item)
    })
}

impl Packet {
    /// Parses one datagram (RFC 2865 §3). Bytes past the Length field are
    /// padding and ignored; everything else must add up exactly.
    pub fn decode(datagram: &[u8]) -> Result<Packet, DecodeError> {
        let (code, packet) = frame(datagram)?;
        let (identifier, authenticator) = match packet {
            [_, id, _, _, auth @ ..] => (*id, auth.get(..16).and_then(|a| a.try_into().ok())),
            _ => (0, None),
        };
        let authenticator = authenticator.ok_or(DecodeError::TooShort { len: packet.len() })?;
        let attributes = raw_attributes(packet)
            .map(|a| a.map(|a| Attribute { kind: a.kind, value: a.value.to_vec() }))
            .collect::<Result<_, _>>()?;
        Ok(Packet { code, identifier, authenticator, attributes })
    }

    /// An empty packet with a given authenticator (tests, replays of known bytes).
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Packet {
        Packet { code, identifier, authenticator, attributes: Vec::new() }
    }

    /// A request with a fresh random Request Authenticator. RFC 2865 §3 wants
    /// it unpredictable and unique, since User-Password hiding keys off it.
    pub fn new_request(code: Code, identifier: u8) -> Packet {
        let mut authenticator = [0u8; 16];
        OsRng.fill_bytes(&mut authenticator);
        Packet::new(code, identifier, authenticator)
    }

    /// The skeleton of a reply: same identifier, the request's authenticator
    /// (what the Response Authenticator is computed over), a
    /// Message-Authenticator placeholder first (Blast-RADIUS hardening), and
    /// the request's Proxy-State attributes in order (RFC 2865 §5.33).
    pub fn reply_to(request: &Packet, code: Code) -> Packet {
        let mut reply = Packet::new(code, request.identifier, request.authenticator);
        reply.add_message_authenticator();
        reply.attributes.extend(request.attributes.iter().filter(|a| a.kind == rfc::PROXY_STATE).cloned());
        reply
    }

    /// The first value of `kind`.
    pub fn get(&self, kind: u8) -> Option<&[u8]> {
        self.get_all(kind).next()
    }

    /// Every value of `kind`, in packet order.
    pub fn get_all(&self, kind: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes.iter().filter(move |a| a.kind == kind).map(|a| a.value.as_slice())
    }

    /// Appends an attribute; RFC 2865 §5 values are 1..=253 bytes.
    pub fn push(&mut self, kind: u8, value: &[u8]) -> Result<(), EncodeError> {
        if value.is_empty() {
            return Err(EncodeError::EmptyValue { kind });
        }
        if value.len() > MAX_ATTR_VALUE_LEN {
            return Err(EncodeError::ValueTooLong { kind, len: value.len(), max: MAX_ATTR_VALUE_LEN });
        }
        self.attributes.push(Attribute { kind, value: value.to_vec() });
        Ok(())
    }

    /// Appends an `integer` attribute.
    pub fn push_u32(&mut self, kind: u8, v: u32) {
        self.attributes.push(Attribute { kind, value: v.to_be_bytes().to_vec() });
    }

    /// Appends an `integer64` attribute (RFC 6929 §2.5).
    pub fn push_u64(&mut self, kind: u8, v: u64) {
        self.attributes.push(Attribute { kind, value: v.to_be_bytes().to_vec() });
    }

    /// The first `integer` of `kind`; a value that is not 4 bytes is an error.
    pub fn get_u32(&self, kind: u8) -> Result<Option<u32>, DecodeError> {
        self.get(kind).map(decode_u32).transpose()
    }

    /// The first `integer64` of `kind`.
    pub fn get_u64(&self, kind: u8) -> Result<Option<u64>, DecodeError> {
        self.get(kind).map(decode_u64).transpose()
    }

    /// The first text value of `kind`.
    pub fn get_string(&self, kind: u8) -> Result<Option<&str>, DecodeError> {
        self.get(kind).map(decode_string).transpose()
    }

    /// Puts a zeroed Message-Authenticator first unless one is present; the
    /// encoder fills it. First, because Blast-RADIUS forgeries rely on
    /// attacker-chosen bytes preceding it.
    pub fn add_message_authenticator(&mut self) {
        if !self.has_message_authenticator() {
            self.attributes.insert(0, Attribute { kind: rfc::MESSAGE_AUTHENTICATOR, value: vec![0; 16] });
        }
    }

    /// Whether a Message-Authenticator is present.
    pub fn has_message_authenticator(&self) -> bool {
        self.get(rfc::MESSAGE_AUTHENTICATOR).is_some()
    }

    /// The EAP packet carried in this RADIUS packet: every EAP-Message
    /// concatenated in order (RFC 3579 §3.1).
    pub fn eap_message(&self) -> Option<Vec<u8>> {
        let mut parts = self.get_all(rfc::EAP_MESSAGE).peekable();
        parts.peek()?;
        Some(parts.flatten().copied().collect())
    }

    /// Appends an EAP packet split into 253-byte EAP-Message attributes
    /// (RFC 3579 §3.1). An empty slice adds nothing: EAP has no empty packet.
    pub fn push_eap_message(&mut self, eap: &[u8]) {
        for chunk in eap.chunks(MAX_ATTR_VALUE_LEN) {
            self.attributes.push(Attribute { kind: rfc::EAP_MESSAGE, value: chunk.to_vec() });
        }
    }

    /// The number of bytes `encode_*` will produce.
    pub fn encoded_len(&self) -> usize {
        self.attributes.iter().fold(MIN_PACKET_LEN, |n, a| n.saturating_add(2).saturating_add(a.value.len()))
    }

    /// The packet exactly as its fields say, authenticator included, with no
    /// signing. `auth::encode_request`/`encode_response` build on this.
    pub fn encode_unsigned(&self) -> Result<Vec<u8>, EncodeError> {
        let len = self.encoded_len();
        if len > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong { len });
        }
        let mut out = Vec::with_capacity(len);
        out.push(self.code.as_u8());
        out.push(self.identifier);
        // len <= 4096 was checked above.
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            let attr_len = u8::try_from(a.value.len() + 2)
                .ok()
                .filter(|_| a.value.len() <= MAX_ATTR_VALUE_LEN)
                .ok_or(EncodeError::ValueTooLong { kind: a.kind, len: a.value.len(), max: MAX_ATTR_VALUE_LEN })?;
            out.push(a.kind);
            out.push(attr_len);
            out.extend_from_slice(&a.value);
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        hex::decode(digits).expect("test vector is hex")
    }

    /// RFC 2865 §7.1, "User Telnet to Specified Host": Access-Request from
    /// NAS 192.168.1.16 port 3 for user nemo, password "arctangent", secret
    /// "xyzzy5461".
    pub(crate) const RFC2865_7_1_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
        93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
        01 10 05 06 00 00 00 03";
    /// RFC 2865 §7.1: the Access-Accept answering it.
    pub(crate) const RFC2865_7_1_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
        9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
        0e 06 c0 a8 01 03";
    /// RFC 2865 §7.2, "Framed User Authenticating with CHAP".
    const RFC2865_7_2_REQUEST: &str = "01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e
        0d 33 67 a2 01 08 66 6c 6f 70 73 79 03 13 16 e9
        75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04
        06 c0 a8 01 10 05 06 00 00 00 14 06 06 00 00 00
        02 07 06 00 00 00 01";

    #[test]
    fn rfc2865_7_1_decodes_and_reencodes() {
        let bytes = hex(RFC2865_7_1_REQUEST);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!((p.code, p.identifier), (Code::AccessRequest, 0));
        assert_eq!(p.authenticator, hex("0f403f94739780 57bd83d5cb98f4227a").as_slice());
        assert_eq!(p.get_string(rfc::USER_NAME), Ok(Some("nemo")));
        assert_eq!(p.get(rfc::USER_PASSWORD).map(<[u8]>::len), Some(16));
        assert_eq!(p.get(rfc::NAS_IP_ADDRESS), Some(&[192, 168, 1, 16][..]));
        assert_eq!(p.get_u32(rfc::NAS_PORT), Ok(Some(3)));
        assert_eq!(p.encoded_len(), bytes.len());
        assert_eq!(p.encode_unsigned().unwrap(), bytes);

        let accept = Packet::decode(&hex(RFC2865_7_1_ACCEPT)).unwrap();
        assert_eq!(accept.code, Code::AccessAccept);
        assert_eq!(accept.get_u32(rfc::SERVICE_TYPE), Ok(Some(1)));
        assert_eq!(accept.attributes.len(), 3);
    }

    #[test]
    fn rfc2865_7_2_decodes() {
        let p = Packet::decode(&hex(RFC2865_7_2_REQUEST)).unwrap();
        assert_eq!(p.identifier, 1);
        assert_eq!(p.get_string(rfc::USER_NAME), Ok(Some("flopsy")));
        assert_eq!(p.get(rfc::CHAP_PASSWORD).map(|v| (v.len(), v[0])), Some((17, 22)));
        assert_eq!(p.get_u32(rfc::NAS_PORT), Ok(Some(20)));
        assert_eq!(p.get_u32(rfc::SERVICE_TYPE), Ok(Some(2)));
        assert_eq!(p.get_u32(rfc::FRAMED_PROTOCOL), Ok(Some(1)));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = hex(RFC2865_7_2_REQUEST);
        for n in 0..bytes.len() {
            let e = Packet::decode(&bytes[..n]).unwrap_err();
            if n < MIN_PACKET_LEN {
                assert_eq!(e, DecodeError::TooShort { len: n });
            } else {
                assert_eq!(e, DecodeError::LengthMismatch { length: bytes.len(), received: n });
            }
        }
        // Shrinking the Length field instead cuts an attribute in half.
        for n in MIN_PACKET_LEN..bytes.len() {
            let mut b = bytes.clone();
            b[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            let ok = Packet::decode(&b);
            let boundaries = [20, 28, 47, 53, 59, 65, 71];
            assert_eq!(ok.is_ok(), boundaries.contains(&n), "length {n}: {ok:?}");
        }
    }

    #[test]
    fn header_errors() {
        let mut b = vec![1, 0, 0, 20];
        b.extend_from_slice(&[0; 16]);
        assert!(Packet::decode(&b).is_ok());
        b[0] = 43;
        assert_eq!(Packet::decode(&b), Err(DecodeError::UnknownCode(43)));
        b[0] = 1;
        b[3] = 19;
        assert_eq!(Packet::decode(&b), Err(DecodeError::LengthMismatch { length: 19, received: 20 }));
        b[3] = 21;
        assert_eq!(Packet::decode(&b), Err(DecodeError::LengthMismatch { length: 21, received: 20 }));
        b[2..4].copy_from_slice(&4097u16.to_be_bytes());
        b.resize(4097, 0);
        assert_eq!(Packet::decode(&b), Err(DecodeError::TooLong { length: 4097 }));
        b[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(Packet::decode(&b), Err(DecodeError::TooLong { length: 65535 }));
    }

    #[test]
    fn padding_after_length_is_ignored() {
        let bytes = hex(RFC2865_7_1_REQUEST);
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0xff; 100]);
        assert_eq!(Packet::decode(&padded), Packet::decode(&bytes));
        // Even past 4096 bytes of datagram, the Length field rules.
        padded.resize(5000, 0xee);
        assert_eq!(Packet::decode(&padded), Packet::decode(&bytes));
    }

    #[test]
    fn attribute_length_errors() {
        let base = |tail: &[u8]| {
            let mut b = vec![1, 0, 0, (20 + tail.len()) as u8];
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(tail);
            b
        };
        let cases: [(&[u8], DecodeError); 5] = [
            (&[rfc::USER_NAME, 0, 0], DecodeError::AttributeLength { kind: rfc::USER_NAME, len: 0, remaining: 3 }),
            (&[rfc::USER_NAME, 1, 0], DecodeError::AttributeLength { kind: rfc::USER_NAME, len: 1, remaining: 3 }),
            (&[rfc::USER_NAME, 4, 0], DecodeError::AttributeLength { kind: rfc::USER_NAME, len: 4, remaining: 3 }),
            (&[rfc::USER_NAME], DecodeError::AttributeLength { kind: rfc::USER_NAME, len: 0, remaining: 1 }),
            (&[0, 2], DecodeError::Malformed("attribute type 0")),
        ];
        for (tail, want) in cases {
            assert_eq!(Packet::decode(&base(tail)), Err(want), "{tail:?}");
        }
        // Length 2 is an empty value: odd but well-formed.
        let p = Packet::decode(&base(&[rfc::STATE, 2])).unwrap();
        assert_eq!(p.get(rfc::STATE), Some(&[][..]));
        assert_eq!(p.encode_unsigned().unwrap(), base(&[rfc::STATE, 2]));
    }

    #[test]
    fn push_bounds() {
        let mut p = Packet::new_request(Code::AccessRequest, 7);
        assert_eq!(p.push(rfc::USER_NAME, b""), Err(EncodeError::EmptyValue { kind: rfc::USER_NAME }));
        assert_eq!(
            p.push(rfc::CLASS, &[0; 254]),
            Err(EncodeError::ValueTooLong { kind: rfc::CLASS, len: 254, max: 253 })
        );
        p.push(rfc::CLASS, &[0; 253]).unwrap();
        p.push_u32(rfc::NAS_PORT, 0xdead_beef);
        p.push_u64(rfc::CLASS, 5);
        assert_eq!(p.get_u32(rfc::NAS_PORT), Ok(Some(0xdead_beef)));
        assert_eq!(p.get_u32(rfc::CLASS), Err(DecodeError::ValueLength { expected: 4, got: 253 }));
        assert_eq!(p.get_u32(rfc::SESSION_TIMEOUT), Ok(None));
        assert_eq!(p.get_all(rfc::CLASS).count(), 2);
        // Fields are public, so encode checks again.
        p.attributes.push(Attribute { kind: rfc::CLASS, value: vec![0; 254] });
        assert!(matches!(p.encode_unsigned(), Err(EncodeError::ValueTooLong { len: 254, .. })));
        let mut big = Packet::new(Code::AccessAccept, 0, [0; 16]);
        for _ in 0..16 {
            big.push(rfc::CLASS, &[1; 253]).unwrap();
        }
        assert_eq!(big.encoded_len(), 20 + 16 * 255);
        assert_eq!(big.encode_unsigned(), Err(EncodeError::PacketTooLong { len: 4100 }));
    }

    #[test]
    fn new_request_authenticators_differ() {
        let a = Packet::new_request(Code::AccessRequest, 1);
        let b = Packet::new_request(Code::AccessRequest, 1);
        assert_ne!(a.authenticator, b.authenticator);
    }

    #[test]
    fn reply_skeleton() {
        let mut req = Packet::new_request(Code::AccessRequest, 42);
        req.push(rfc::PROXY_STATE, b"one").unwrap();
        req.push(rfc::USER_NAME, b"u").unwrap();
        req.push(rfc::PROXY_STATE, b"two").unwrap();
        let mut reply = Packet::reply_to(&req, Code::AccessChallenge);
        assert_eq!((reply.identifier, reply.authenticator), (42, req.authenticator));
        assert_eq!(reply.attributes[0], Attribute { kind: rfc::MESSAGE_AUTHENTICATOR, value: vec![0; 16] });
        assert_eq!(reply.get_all(rfc::PROXY_STATE).collect::<Vec<_>>(), [&b"one"[..], b"two"]);
        assert_eq!(reply.get(rfc::USER_NAME), None);
        reply.add_message_authenticator();
        assert_eq!(reply.get_all(rfc::MESSAGE_AUTHENTICATOR).count(), 1);
    }

    #[test]
    fn eap_message_splits_and_reassembles() {
        let eap: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut p = Packet::new_request(Code::AccessRequest, 3);
        assert_eq!(p.eap_message(), None);
        p.push(rfc::USER_NAME, b"card").unwrap();
        p.push_eap_message(&eap);
        let sizes: Vec<usize> = p.get_all(rfc::EAP_MESSAGE).map(<[u8]>::len).collect();
        assert_eq!(sizes, [253, 253, 253, 241]);
        let back = Packet::decode(&p.encode_unsigned().unwrap()).unwrap();
        assert_eq!(back.eap_message(), Some(eap));
        let mut q = Packet::new_request(Code::AccessRequest, 3);
        q.push_eap_message(&[]);
        assert!(q.attributes.is_empty());
        q.push_eap_message(&[2, 0, 0, 4]);
        assert_eq!(q.eap_message(), Some(vec![2, 0, 0, 4]));
    }

    /// Random and mutated datagrams must decode or fail, never panic, and
    /// whatever decodes must re-encode to the same bytes.
    #[test]
    fn robustness_random_and_mutated() {
        let mut rng = StdRng::seed_from_u64(0x2865_3579);
        let seeds = [hex(RFC2865_7_1_REQUEST), hex(RFC2865_7_1_ACCEPT), hex(RFC2865_7_2_REQUEST)];
        let mut decoded = 0;
        for i in 0..20_000 {
            let mut buf = if i % 4 == 0 {
                let len = rng.gen_range(0..600);
                let mut b = vec![0u8; len];
                rng.fill(&mut b[..]);
                if let Some(code) = b.first_mut() {
                    *code = [1, 2, 3, 4, 5, 11, 12, 13][rng.gen_range(0..8)];
                }
                if b.len() >= 4 && rng.gen_bool(0.7) {
                    let l = b.len() as u16;
                    b[2..4].copy_from_slice(&l.to_be_bytes());
                }
                b
            } else {
                seeds[i % seeds.len()].clone()
            };
            for _ in 0..rng.gen_range(1..6) {
                if buf.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..buf.len());
                match rng.gen_range(0..4) {
                    0 => buf[at] = rng.gen(),
                    1 => buf[at] ^= 1 << rng.gen_range(0..8),
                    2 => buf.truncate(at),
                    _ => buf.insert(at, rng.gen()),
                }
            }
            if let Ok(p) = Packet::decode(&buf) {
                decoded += 1;
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                assert_eq!(p.encode_unsigned().unwrap(), buf[..len]);
                let _ = p.eap_message();
                let _ = format!("{p:?}");
                for vendor in [crate::dictionary::eapay::VENDOR_ID, crate::dictionary::microsoft::VENDOR_ID] {
                    let _ = p.vendor_attributes(vendor);
                }
            }
        }
        assert!(decoded > 100, "mutations too destructive to exercise the success path: {decoded}");
    }
}
