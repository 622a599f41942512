//! The Diameter AVP (RFC 6733 §4.1), also the attribute layout of the
//! EAP-TTLS tunnel (RFC 5281 §10).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           AVP Code                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V M P r r r r r|                  AVP Length                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Vendor-ID (opt)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Data ...
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! The AVP Length counts the header (8 octets, 12 with a Vendor-ID) and the
//! data but not the zero padding that brings the next AVP to a 4-octet
//! boundary. Choices where the RFCs leave room:
//!
//! - Reading, the padding after the *last* AVP may be missing or short: RFC
//!   5281 §10 pads every AVP, but some TTLS peers stop after the data, and
//!   wpa_supplicant reads either form. Writing, every AVP is padded.
//! - Padding octets are skipped without looking at them, and reserved flag
//!   bits are kept in [`Avp::flags`] but otherwise ignored (RFC 6733 §4.1:
//!   "ignored by the receiver").
//! - A parse returns at most [`MAX_AVPS`] AVPs (or the caller's cap), so a
//!   hostile message of 8-octet AVPs costs bounded memory.
//!
//! Nothing here panics on any input: every read is bounds-checked and every
//! failure is an [`AvpError`].

/// V: a Vendor-ID field follows the length.
pub const AVP_FLAG_VENDOR: u8 = 0x80;
/// M: the receiver must understand the AVP or fail.
pub const AVP_FLAG_MANDATORY: u8 = 0x40;
/// P: end-to-end protection (deprecated by RFC 6733, kept for parsing).
pub const AVP_FLAG_PROTECTED: u8 = 0x20;
/// The reserved flag bits: zero on sending, ignored on receipt.
pub const AVP_FLAG_RESERVED: u8 = 0x1f;

/// Header without Vendor-ID: code (4), flags (1), length (3).
const HEADER_LEN: usize = 8;
/// Header with Vendor-ID.
const VENDOR_HEADER_LEN: usize = 12;
/// The 24-bit AVP Length field's largest value.
const MAX_AVP_LEN: usize = 0x00ff_ffff;
/// The largest data one AVP can carry, with or without a Vendor-ID.
pub const MAX_AVP_DATA_LEN: usize = MAX_AVP_LEN - VENDOR_HEADER_LEN;
/// The default cap of [`parse_avps`]: far above any TTLS tunnel message or
/// Diameter EAP request eapay handles (a few dozen AVPs).
pub const MAX_AVPS: usize = 256;

/// The AVP data formats of RFC 6733 §4.2 (basic) and §4.3 (derived), as the
/// dictionaries in `dictionaries/diameter/` name them. The Diameter message
/// decoder checks the data of known AVPs against these; the TTLS tunnel does
/// not use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Arbitrary octets.
    OctetString,
    /// 32-bit signed, big-endian.
    Integer32,
    /// 64-bit signed, big-endian.
    Integer64,
    /// 32-bit unsigned, big-endian (also the `AppId` and `VendorId` of Wireshark's dictionaries).
    Unsigned32,
    /// 64-bit unsigned, big-endian.
    Unsigned64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// A sequence of AVPs (§4.4).
    Grouped,
    /// 2-octet AddressType (IANA address family) and the address.
    Address,
    /// NTP seconds, 4 octets.
    Time,
    /// UTF-8 text.
    Utf8String,
    /// An FQDN or realm in ASCII (IDNA A-labels).
    DiameterIdentity,
    /// An `aaa://` or `aaas://` URI.
    DiameterUri,
    /// An `Integer32` with named values.
    Enumerated,
    /// An IP filter rule (§4.3.1), UTF-8.
    IpFilterRule,
}

impl DataType {
    /// The data length this type requires, for the fixed-size types.
    pub const fn fixed_len(self) -> Option<usize> {
        match self {
            Self::Integer32 | Self::Unsigned32 | Self::Float32 | Self::Time | Self::Enumerated => Some(4),
            Self::Integer64 | Self::Unsigned64 | Self::Float64 => Some(8),
            _ => None,
        }
    }
}

/// One Diameter dictionary entry: see `dictionary::diameter::AVPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvpDef {
    /// The dictionary name, e.g. `Origin-Host`.
    pub name: &'static str,
    /// The AVP Code.
    pub code: u32,
    /// The Vendor-ID (`None`: the IETF space, V bit clear).
    pub vendor_id: Option<u32>,
    /// The data format.
    pub data_type: DataType,
    /// Whether the definition requires the M bit (`mandatory="must"`).
    pub mandatory: bool,
}

/// One AVP, borrowing its data from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avp<'a> {
    /// The AVP Code (in the vendor's space when `vendor_id` is set).
    pub code: u32,
    /// The flags octet as received (V, M, P and the reserved bits).
    pub flags: u8,
    /// The Vendor-ID, present exactly when the V bit is set.
    pub vendor_id: Option<u32>,
    /// The data, without padding.
    pub data: &'a [u8],
}

impl<'a> Avp<'a> {
    /// True if the M bit is set.
    pub fn is_mandatory(&self) -> bool {
        self.flags & AVP_FLAG_MANDATORY != 0
    }

    /// True if the P bit is set.
    pub fn is_protected(&self) -> bool {
        self.flags & AVP_FLAG_PROTECTED != 0
    }

    /// True for this code in this space (`None`: the IETF space).
    pub fn is(&self, code: u32, vendor_id: Option<u32>) -> bool {
        self.code == code && self.vendor_id == vendor_id
    }

    /// The data as an `Unsigned32` (also `Enumerated`).
    pub fn as_u32(&self) -> Result<u32, AvpError> {
        let bytes: [u8; 4] =
            self.data.try_into().map_err(|_| AvpError::ValueLength { expected: 4, got: self.data.len() })?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// The data as an `Unsigned64`.
    pub fn as_u64(&self) -> Result<u64, AvpError> {
        let bytes: [u8; 8] =
            self.data.try_into().map_err(|_| AvpError::ValueLength { expected: 8, got: self.data.len() })?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The data as a `UTF8String`.
    pub fn as_str(&self) -> Result<&'a str, AvpError> {
        std::str::from_utf8(self.data).map_err(|_| AvpError::InvalidUtf8)
    }

    /// Octets this AVP takes when written by [`push_avp`], padding included.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.vendor_id.is_some(), self.data.len())
    }
}

/// Why AVPs cannot be read or written. Carries offsets, codes and lengths for
/// a one-line log, never the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AvpError {
    /// Fewer octets left than the AVP header needs.
    #[error("AVP at offset {offset}: {remaining} octets left, its header needs {needed}")]
    Truncated { offset: usize, needed: usize, remaining: usize },
    /// An AVP Length below its own header.
    #[error("AVP code {code} at offset {offset}: length {length} is shorter than its {header}-octet header")]
    LengthTooShort { offset: usize, code: u32, length: usize, header: usize },
    /// An AVP Length that runs past the end of the buffer.
    #[error("AVP code {code} at offset {offset}: length {length} overruns the {remaining} octets left")]
    Overrun { offset: usize, code: u32, length: usize, remaining: usize },
    /// More AVPs than the cap allows.
    #[error("more than {max} AVPs")]
    TooMany { max: usize },
    /// Data too long for the 24-bit AVP Length.
    #[error("AVP data of {len} octets exceeds the {max}-octet maximum")]
    DataTooLong { len: usize, max: usize },
    /// A fixed-size value of the wrong size.
    #[error("AVP value of {got} octets where {expected} were expected")]
    ValueLength { expected: usize, got: usize },
    /// A `UTF8String` that is not UTF-8.
    #[error("AVP value is not valid UTF-8")]
    InvalidUtf8,
}

/// The padding after data of `len` octets (0..=3).
fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Octets one AVP takes on the wire, padding included.
pub fn encoded_len(with_vendor: bool, data_len: usize) -> usize {
    let unpadded = if with_vendor { VENDOR_HEADER_LEN } else { HEADER_LEN } + data_len;
    unpadded + padding(unpadded)
}

/// Every AVP in `bytes`, in order, capped at [`MAX_AVPS`].
pub fn parse_avps(bytes: &[u8]) -> Result<Vec<Avp<'_>>, AvpError> {
    parse_avps_capped(bytes, MAX_AVPS)
}

/// Every AVP in `bytes`, in order; more than `max` is an error.
pub fn parse_avps_capped(bytes: &[u8], max: usize) -> Result<Vec<Avp<'_>>, AvpError> {
    let mut avps = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = bytes.get(offset..).unwrap_or_default();
        let (avp, unpadded) = parse_one(rest, offset)?;
        if avps.len() == max {
            return Err(AvpError::TooMany { max });
        }
        avps.push(avp);
        // The final AVP's padding may be missing or short; anywhere else a
        // short remainder is the start of a truncated AVP, reported next round.
        offset += unpadded + padding(unpadded).min(rest.len() - unpadded);
    }
    Ok(avps)
}

/// One AVP at the start of `rest` (found at `offset` in the whole buffer) and
/// its length without padding.
fn parse_one(rest: &[u8], offset: usize) -> Result<(Avp<'_>, usize), AvpError> {
    let truncated = |needed| AvpError::Truncated { offset, needed, remaining: rest.len() };
    let header: &[u8; HEADER_LEN] =
        rest.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(truncated(HEADER_LEN))?;
    let code = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let flags = header[4];
    let length = usize::from(header[5]) << 16 | usize::from(header[6]) << 8 | usize::from(header[7]);
    let (vendor_id, header_len) = if flags & AVP_FLAG_VENDOR != 0 {
        let id = rest.get(HEADER_LEN..VENDOR_HEADER_LEN).ok_or(truncated(VENDOR_HEADER_LEN))?;
        (Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]])), VENDOR_HEADER_LEN)
    } else {
        (None, HEADER_LEN)
    };
    if length < header_len {
        return Err(AvpError::LengthTooShort { offset, code, length, header: header_len });
    }
    let data = rest.get(header_len..length).ok_or(AvpError::Overrun { offset, code, length, remaining: rest.len() })?;
    Ok((Avp { code, flags, vendor_id, data }, length))
}

/// Appends one AVP with its padding.
///
/// The V bit follows `vendor_id` (set exactly when there is one), whatever
/// `flags` says; of `flags` only M and P are used, the reserved bits are
/// written as zero. Fails only if `data` is too long for the AVP Length.
pub fn push_avp(out: &mut Vec<u8>, code: u32, flags: u8, vendor_id: Option<u32>, data: &[u8]) -> Result<(), AvpError> {
    if data.len() > MAX_AVP_DATA_LEN {
        return Err(AvpError::DataTooLong { len: data.len(), max: MAX_AVP_DATA_LEN });
    }
    let header_len = if vendor_id.is_some() { VENDOR_HEADER_LEN } else { HEADER_LEN };
    let length = header_len + data.len();
    let flags =
        (flags & (AVP_FLAG_MANDATORY | AVP_FLAG_PROTECTED)) | if vendor_id.is_some() { AVP_FLAG_VENDOR } else { 0 };
    out.reserve(length + padding(length));
    out.extend_from_slice(&code.to_be_bytes());
    out.push(flags);
    // length <= MAX_AVP_LEN, so it fits 24 bits.
    out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
    if let Some(id) = vendor_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(data);
    out.resize(out.len() + padding(length), 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// An owned AVP for building test messages.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned {
        code: u32,
        flags: u8,
        vendor_id: Option<u32>,
        data: Vec<u8>,
    }

    fn owned(a: &Avp<'_>) -> Owned {
        Owned { code: a.code, flags: a.flags, vendor_id: a.vendor_id, data: a.data.to_vec() }
    }

    fn write(avps: &[Owned]) -> Vec<u8> {
        let mut out = Vec::new();
        for a in avps {
            push_avp(&mut out, a.code, a.flags, a.vendor_id, &a.data).unwrap();
        }
        out
    }

    fn sample() -> Vec<Owned> {
        vec![
            Owned { code: 1, flags: AVP_FLAG_MANDATORY, vendor_id: None, data: b"c0ffee".to_vec() },
            Owned { code: 16, flags: AVP_FLAG_VENDOR, vendor_id: Some(32473), data: vec![0x30; 71] },
            Owned { code: 79, flags: AVP_FLAG_MANDATORY, vendor_id: None, data: vec![2, 0, 0, 5, 1] },
            Owned { code: 7, flags: AVP_FLAG_VENDOR | AVP_FLAG_MANDATORY, vendor_id: Some(1), data: Vec::new() },
        ]
    }

    #[test]
    fn known_encoding() {
        // User-Name "bob", M bit: 8-octet header + 3 data + 1 padding.
        let mut out = Vec::new();
        push_avp(&mut out, 1, AVP_FLAG_MANDATORY, None, b"bob").unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x40, 0, 0, 11, b'b', b'o', b'b', 0]);
        // Vendor AVP: V set from the Vendor-Id, reserved bits dropped, M kept clear.
        let mut out = Vec::new();
        push_avp(&mut out, 16, AVP_FLAG_RESERVED, Some(32473), &[0xaa; 5]).unwrap();
        assert_eq!(
            out,
            [0, 0, 0, 16, 0x80, 0, 0, 17, 0, 0, 0x7e, 0xd9, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0].as_slice()
        );
        // A V flag without a Vendor-Id is not written.
        let mut out = Vec::new();
        push_avp(&mut out, 2, AVP_FLAG_VENDOR | AVP_FLAG_PROTECTED, None, &[1, 2, 3, 4]).unwrap();
        assert_eq!(out, [0, 0, 0, 2, 0x20, 0, 0, 12, 1, 2, 3, 4]);
        let avps = parse_avps(&out).unwrap();
        assert_eq!(avps, [Avp { code: 2, flags: 0x20, vendor_id: None, data: &[1, 2, 3, 4] }]);
        assert!(avps[0].is_protected() && !avps[0].is_mandatory());
        assert_eq!(avps[0].encoded_len(), 12);
        assert_eq!(encoded_len(true, 5), 20);
    }

    #[test]
    fn round_trip() {
        let wire = write(&sample());
        let back: Vec<Owned> = parse_avps(&wire).unwrap().iter().map(owned).collect();
        assert_eq!(back, sample());
        assert_eq!(wire.len() % 4, 0);
        assert_eq!(parse_avps(&[]).unwrap(), []);
    }

    #[test]
    fn missing_or_short_final_padding_is_accepted() {
        let mut out = Vec::new();
        push_avp(&mut out, 1, AVP_FLAG_MANDATORY, None, b"bob").unwrap();
        push_avp(&mut out, 2, AVP_FLAG_MANDATORY, None, b"x").unwrap();
        assert_eq!(out.len(), 12 + 12);
        for cut in [21, 22, 23] {
            let avps = parse_avps(&out[..cut]).unwrap();
            assert_eq!(avps.len(), 2, "{cut}");
            assert_eq!(avps[1].data, b"x");
        }
        // Missing padding in the middle is not padding: the next AVP starts wrong.
        let mut unpadded = out[..11].to_vec();
        unpadded.extend_from_slice(&out[12..]);
        assert!(parse_avps(&unpadded).is_err());
    }

    #[test]
    fn reserved_flags_are_kept_and_ignored() {
        let wire = [0, 0, 0, 9, 0x5f, 0, 0, 8];
        let avps = parse_avps(&wire).unwrap();
        assert_eq!(avps[0].flags, 0x5f);
        assert!(avps[0].is_mandatory());
        assert_eq!(avps[0].vendor_id, None);
        assert!(avps[0].data.is_empty());
    }

    #[test]
    fn truncation_at_every_offset_is_an_error_never_a_panic() {
        let wire = write(&sample());
        // Where each AVP's data ends and where its padding ends: a cut in
        // between is a complete message whose final padding is short.
        let mut ends = Vec::new();
        let mut at = 0;
        for a in sample() {
            let unpadded = at + if a.vendor_id.is_some() { 12 } else { 8 } + a.data.len();
            at += encoded_len(a.vendor_id.is_some(), a.data.len());
            ends.push((unpadded, at));
        }
        for cut in 0..=wire.len() {
            let r = parse_avps(&wire[..cut]);
            let whole = cut == 0 || ends.iter().any(|(unpadded, padded)| (*unpadded..=*padded).contains(&cut));
            if whole {
                assert!(r.is_ok(), "cut at {cut}: {r:?}");
            } else {
                assert!(r.is_err(), "cut at {cut} parsed: {r:?}");
            }
        }
    }

    #[test]
    fn every_truncation_error_is_typed() {
        assert_eq!(parse_avps(&[0, 0, 0, 1, 0x40]), Err(AvpError::Truncated { offset: 0, needed: 8, remaining: 5 }));
        assert_eq!(
            parse_avps(&[0, 0, 0, 1, 0x80, 0, 0, 12, 0, 0]),
            Err(AvpError::Truncated { offset: 0, needed: 12, remaining: 10 })
        );
        assert_eq!(
            parse_avps(&[0, 0, 0, 1, 0x80, 0, 0, 8, 0, 0, 0, 1]),
            Err(AvpError::LengthTooShort { offset: 0, code: 1, length: 8, header: 12 })
        );
        assert_eq!(
            parse_avps(&[0, 0, 0, 1, 0, 0, 0, 7]),
            Err(AvpError::LengthTooShort { offset: 0, code: 1, length: 7, header: 8 })
        );
        assert_eq!(
            parse_avps(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 1]),
            Err(AvpError::Overrun { offset: 0, code: 1, length: 0xff_ffff, remaining: 9 })
        );
        // The second AVP's offset is reported.
        let mut wire = Vec::new();
        push_avp(&mut wire, 1, 0, None, b"abcd").unwrap();
        wire.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 20]);
        assert_eq!(parse_avps(&wire), Err(AvpError::Overrun { offset: 12, code: 2, length: 20, remaining: 8 }));
    }

    #[test]
    fn the_count_is_capped() {
        let mut wire = Vec::new();
        for i in 0..=MAX_AVPS as u32 {
            push_avp(&mut wire, i, 0, None, &[]).unwrap();
        }
        assert_eq!(parse_avps(&wire), Err(AvpError::TooMany { max: MAX_AVPS }));
        assert_eq!(parse_avps(&wire[..wire.len() - 8]).unwrap().len(), MAX_AVPS);
        assert_eq!(parse_avps_capped(&wire[..24], 2), Err(AvpError::TooMany { max: 2 }));
        assert_eq!(parse_avps_capped(&wire[..16], 2).unwrap().len(), 2);
    }

    #[test]
    fn data_over_the_length_field_is_refused() {
        let big = vec![0u8; MAX_AVP_DATA_LEN + 1];
        let mut out = Vec::new();
        assert_eq!(
            push_avp(&mut out, 1, 0, None, &big),
            Err(AvpError::DataTooLong { len: MAX_AVP_DATA_LEN + 1, max: MAX_AVP_DATA_LEN })
        );
        assert!(out.is_empty());
        push_avp(&mut out, 1, 0, Some(5), &big[1..]).unwrap();
        let avps = parse_avps(&out).unwrap();
        assert_eq!(avps[0].data.len(), MAX_AVP_DATA_LEN);
        assert_eq!(avps[0].vendor_id, Some(5));
    }

    #[test]
    fn typed_values() {
        let a = Avp { code: 1, flags: 0, vendor_id: None, data: &[0, 0, 1, 0] };
        assert_eq!(a.as_u32(), Ok(256));
        assert_eq!(a.as_u64(), Err(AvpError::ValueLength { expected: 8, got: 4 }));
        assert_eq!(a.as_str(), Ok("\0\0\u{1}\0"));
        let b = Avp { data: &[0, 0, 0, 0, 0, 0, 0, 9], ..a };
        assert_eq!(b.as_u64(), Ok(9));
        assert_eq!(b.as_u32(), Err(AvpError::ValueLength { expected: 4, got: 8 }));
        assert_eq!(Avp { data: &[0xff], ..a }.as_str(), Err(AvpError::InvalidUtf8));
        assert!(a.is(1, None) && !a.is(1, Some(0)) && !a.is(2, None));
    }

    #[test]
    fn random_input_never_panics_and_valid_input_round_trips() {
        let mut rng = StdRng::seed_from_u64(0xea9a7);
        for _ in 0..3000 {
            // Arbitrary bytes.
            let len = rng.gen_range(0..64);
            let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = parse_avps(&junk);
            // Arbitrary well-formed AVPs...
            let count = rng.gen_range(0..6);
            let avps: Vec<Owned> = (0..count)
                .map(|_| {
                    let vendor_id = rng.gen_bool(0.5).then(|| rng.gen());
                    let flags = rng.gen::<u8>() & (AVP_FLAG_MANDATORY | AVP_FLAG_PROTECTED)
                        | if vendor_id.is_some() { AVP_FLAG_VENDOR } else { 0 };
                    let n = rng.gen_range(0..40);
                    Owned { code: rng.gen(), flags, vendor_id, data: (0..n).map(|_| rng.gen()).collect() }
                })
                .collect();
            let wire = write(&avps);
            let back: Vec<Owned> = parse_avps(&wire).unwrap().iter().map(owned).collect();
            assert_eq!(back, avps);
            // ...then damaged: a flipped byte or a cut parses or fails, never panics.
            if !wire.is_empty() {
                let mut bad = wire.clone();
                let i = rng.gen_range(0..bad.len());
                bad[i] ^= 1 << rng.gen_range(0..8);
                let _ = parse_avps(&bad);
                let cut = rng.gen_range(0..bad.len());
                let _ = parse_avps(&bad[..cut]);
                // Whatever parses re-encodes to at most the input's size plus padding.
                if let Ok(parsed) = parse_avps(&bad) {
                    let total: usize = parsed.iter().map(Avp::encoded_len).sum();
                    assert!(total <= bad.len() + 3);
                }
            }
        }
    }
}
