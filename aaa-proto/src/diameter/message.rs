//! The Diameter message (RFC 6733 §3): header, owned AVPs, encoding, and a
//! bounded decoder that checks what the RFC lets a receiver check before the
//! application looks at the message.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Version    |                 Message Length                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | command flags |                  Command Code                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Application-ID                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Hop-by-Hop Identifier                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      End-to-End Identifier                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  AVPs ...
//! ```
//!
//! What [`Message::decode`] checks, and what it leaves to the application:
//!
//! - the header: version 1, a Message Length that is a multiple of 4, at
//!   least 20, within [`Limits::max_message`] and equal to the octets given;
//!   no reserved flag bits; no E bit on a request;
//! - every AVP's framing (through [`super::avp::parse_avps_capped`]) and
//!   reserved flag bits (the TTLS tunnel ignores those, RFC 6733 §4.1 lets a
//!   Diameter receiver answer 3009 for them);
//! - the data of every AVP the generated dictionary
//!   ([`crate::dictionary::diameter::AVPS`]) knows: fixed lengths, UTF-8,
//!   ASCII identities, address lengths, and Grouped contents recursively, within
//!   [`Limits::max_depth`] and [`Limits::max_avps`] (counted over all levels);
//! - not: M bits, which AVPs a command needs or allows, or unknown AVPs, which
//!   are kept as received. Those are per-application decisions.
//!
//! Failed-AVP's contents are only checked for framing: an error answer echoes
//! the offending AVP there, malformed value and all (RFC 6733 §7.5).
//!
//! Every error maps to the Result-Code an answer should carry
//! ([`MessageError::result_code`]). Nothing here panics on any input.
//!
//! Why not the crates.io `diameter` (0.7) crate: it has no peer state machine
//! and no RFC 4072, and panics on short AVPs. It is a test oracle only for
//! what it can read (tests/oracle_diameter.rs): its command codes and
//! application ids are closed enums without 268 and 5, so it refuses every
//! DER/DEA, and it fails on any AVP its dictionary lacks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::avp::{
    encoded_len, parse_avps_capped, push_avp, Avp, AvpError, DataType, AVP_FLAG_MANDATORY, AVP_FLAG_PROTECTED,
    AVP_FLAG_RESERVED, AVP_FLAG_VENDOR, MAX_AVP_DATA_LEN,
};
use crate::dictionary::diameter as dict;

/// The only Diameter version.
pub const VERSION: u8 = 1;
/// Version (1), Message Length (3), flags (1), Command Code (3), Application-ID,
/// Hop-by-Hop and End-to-End Identifiers (4 each).
pub const HEADER_LEN: usize = 20;
/// R: a request (clear: an answer).
pub const FLAG_REQUEST: u8 = 0x80;
/// P: may be proxied, relayed or redirected.
pub const FLAG_PROXIABLE: u8 = 0x40;
/// E: an answer carrying a protocol error (3xxx Result-Code).
pub const FLAG_ERROR: u8 = 0x20;
/// T: a request possibly sent before, after a link failover.
pub const FLAG_RETRANSMIT: u8 = 0x10;
/// The reserved header flag bits.
pub const FLAG_RESERVED: u8 = 0x0f;
/// The 24-bit Message Length field's largest value.
pub const MAX_LENGTH: usize = 0x00ff_ffff;
/// The 24-bit Command Code field's largest value.
const MAX_COMMAND: u32 = 0x00ff_ffff;

/// What one decode may cost. The defaults are far above anything eapay
/// exchanges (an EAP-TLS round is one EAP-Payload of a few kilobytes), and
/// keep a hostile peer to bounded memory and recursion.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest message accepted, in octets (framing and decoding).
    pub max_message: usize,
    /// The most AVPs in one message, counted over all nesting levels.
    pub max_avps: usize,
    /// How many Grouped AVPs may enclose an AVP (0: no Grouped AVP is looked into).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message: 65_536, max_avps: 512, max_depth: 4 }
    }
}

/// Why a message cannot be decoded or encoded. Carries lengths, offsets and
/// AVP codes for a one-line log, never AVP data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer octets than the header: there is nothing to answer.
    #[error("{len} octets, shorter than the {HEADER_LEN}-octet Diameter header")]
    TooShort { len: usize },
    /// A version other than 1.
    #[error("Diameter version {version}, not {VERSION}")]
    BadVersion { version: u8 },
    /// A Message Length below the header or not a multiple of 4.
    #[error("Message Length {length} is below {HEADER_LEN} or not a multiple of 4")]
    BadLength { length: usize },
    /// A Message Length other than the number of octets received.
    #[error("Message Length {header} but {actual} octets received")]
    LengthMismatch { header: usize, actual: usize },
    /// Over the configured cap (decoding) or the 24-bit field (encoding).
    #[error("message of {len} octets exceeds the {max}-octet maximum")]
    TooLarge { len: usize, max: usize },
    /// Reserved header flag bits set.
    #[error("reserved header flag bits set: {flags:#04x}")]
    ReservedFlags { flags: u8 },
    /// The E bit on a request (E is for answers only).
    #[error("E bit set on a request")]
    ErrorBitOnRequest,
    /// A Command Code that does not fit 24 bits (encoding).
    #[error("command code {code} does not fit 24 bits")]
    CommandTooLarge { code: u32 },
    /// AVP framing: a list of AVPs starting at offset `at` of the message (the
    /// offset inside `source` counts from there) does not parse, or an AVP is
    /// too long to write.
    #[error("AVPs at offset {at}: {source}")]
    Avp { at: usize, source: AvpError },
    /// More AVPs than [`Limits::max_avps`], all levels counted.
    #[error("more than {max} AVPs")]
    TooManyAvps { max: usize },
    /// Grouped AVPs nested deeper than [`Limits::max_depth`].
    #[error("Grouped AVPs nested deeper than {max}")]
    TooDeep { max: usize },
    /// An AVP with reserved flag bits set.
    #[error("AVP code {code} (vendor {vendor_id:?}): reserved flag bits set: {flags:#04x}")]
    ReservedAvpFlags { code: u32, vendor_id: Option<u32>, flags: u8 },
    /// An AVP whose data length does not fit its type.
    #[error("AVP code {code} (vendor {vendor_id:?}): data length wrong for its type")]
    InvalidAvpLength { code: u32, vendor_id: Option<u32> },
    /// An AVP whose data is not a value of its type (UTF-8, identity, address family).
    #[error("AVP code {code} (vendor {vendor_id:?}): not a valid value of its type")]
    InvalidValue { code: u32, vendor_id: Option<u32> },
}

impl MessageError {
    /// The RFC 6733 §7.1 Result-Code an answer should carry for this error,
    /// or `None` where there is nothing to answer (fewer octets than a
    /// header) or the error is one of encoding. 3xxx codes go in an answer
    /// with the E bit set; the caller closes the connection after answering a
    /// framing error ([`frame_len`] failed), since the stream cannot be
    /// resynchronised.
    pub fn result_code(&self) -> Option<u32> {
        use crate::dictionary::diameter::ResultCode;
        Some(
            match self {
                Self::TooShort { .. } | Self::CommandTooLarge { .. } => return None,
                Self::BadVersion { .. } => ResultCode::UnsupportedVersion,
                Self::BadLength { .. } | Self::LengthMismatch { .. } => ResultCode::InvalidMessageLength,
                Self::TooLarge { .. } | Self::TooManyAvps { .. } | Self::TooDeep { .. } => {
                    ResultCode::ResourcesExceeded
                }
                Self::ReservedFlags { .. } => ResultCode::InvalidBitInHeader,
                Self::ErrorBitOnRequest => ResultCode::InvalidHdrBits,
                Self::ReservedAvpFlags { .. } => ResultCode::InvalidAvpBits,
                Self::InvalidAvpLength { .. } => ResultCode::InvalidAvpLength,
                Self::InvalidValue { .. } => ResultCode::InvalidAvpValue,
                Self::Avp { source, .. } => match source {
                    AvpError::Truncated { .. }
                    | AvpError::LengthTooShort { .. }
                    | AvpError::Overrun { .. }
                    | AvpError::ValueLength { .. } => ResultCode::InvalidAvpLength,
                    AvpError::TooMany { .. } => ResultCode::ResourcesExceeded,
                    AvpError::InvalidUtf8 => ResultCode::InvalidAvpValue,
                    AvpError::DataTooLong { .. } => return None,
                },
            }
            .value(),
        )
    }
}

/// One AVP that owns its data; a Grouped AVP's data is its encoded members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAvp {
    /// The AVP Code (in the vendor's space when `vendor_id` is set).
    pub code: u32,
    /// The flags octet (V, M, P; reserved bits are never written).
    pub flags: u8,
    /// The Vendor-ID; the V bit is written exactly when there is one.
    pub vendor_id: Option<u32>,
    /// The data, without padding.
    pub data: Vec<u8>,
}

impl OwnedAvp {
    /// Opaque data (`OctetString`). `mandatory` sets M; a vendor sets V.
    pub fn octets(code: u32, vendor_id: Option<u32>, mandatory: bool, data: &[u8]) -> Self {
        let flags =
            if mandatory { AVP_FLAG_MANDATORY } else { 0 } | if vendor_id.is_some() { AVP_FLAG_VENDOR } else { 0 };
        OwnedAvp { code, flags, vendor_id, data: data.to_vec() }
    }

    /// Text (`UTF8String`, `DiameterIdentity`, `DiameterURI`).
    pub fn utf8(code: u32, vendor_id: Option<u32>, mandatory: bool, s: &str) -> Self {
        Self::octets(code, vendor_id, mandatory, s.as_bytes())
    }

    /// An `Unsigned32` (also `Enumerated` values, which are never negative in eapay).
    pub fn u32(code: u32, vendor_id: Option<u32>, mandatory: bool, v: u32) -> Self {
        Self::octets(code, vendor_id, mandatory, &v.to_be_bytes())
    }

    /// An `Unsigned64`.
    pub fn u64(code: u32, vendor_id: Option<u32>, mandatory: bool, v: u64) -> Self {
        Self::octets(code, vendor_id, mandatory, &v.to_be_bytes())
    }

    /// An `Integer32` (two's complement).
    pub fn i32(code: u32, vendor_id: Option<u32>, mandatory: bool, v: i32) -> Self {
        Self::octets(code, vendor_id, mandatory, &v.to_be_bytes())
    }

    /// An `Integer64`.
    pub fn i64(code: u32, vendor_id: Option<u32>, mandatory: bool, v: i64) -> Self {
        Self::octets(code, vendor_id, mandatory, &v.to_be_bytes())
    }

    /// An `Address` (RFC 6733 §4.3.1): AddressType 1 (IPv4) or 2 (IPv6), then the address.
    pub fn address(code: u32, vendor_id: Option<u32>, mandatory: bool, ip: IpAddr) -> Self {
        let mut data = Vec::with_capacity(18);
        match ip {
            IpAddr::V4(v4) => {
                data.extend_from_slice(&ADDRESS_IPV4.to_be_bytes());
                data.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                data.extend_from_slice(&ADDRESS_IPV6.to_be_bytes());
                data.extend_from_slice(&v6.octets());
            }
        }
        OwnedAvp { data, ..Self::octets(code, vendor_id, mandatory, &[]) }
    }

    /// A `Time`: seconds since 1900-01-01 00:00 UTC, as NTP counts them.
    pub fn time(code: u32, vendor_id: Option<u32>, mandatory: bool, ntp_seconds: u32) -> Self {
        Self::u32(code, vendor_id, mandatory, ntp_seconds)
    }

    /// A `Grouped` AVP of `members`, in order. Fails only if they do not fit
    /// one AVP's 24-bit length.
    pub fn grouped(
        code: u32,
        vendor_id: Option<u32>,
        mandatory: bool,
        members: &[OwnedAvp],
    ) -> Result<Self, MessageError> {
        let mut data = Vec::new();
        for m in members {
            m.encode_into(&mut data)?;
        }
        if data.len() > MAX_AVP_DATA_LEN {
            return Err(MessageError::Avp {
                at: 0,
                source: AvpError::DataTooLong { len: data.len(), max: MAX_AVP_DATA_LEN },
            });
        }
        Ok(OwnedAvp { data, ..Self::octets(code, vendor_id, mandatory, &[]) })
    }

    /// True for this code in this space (`None`: the IETF space).
    pub fn is(&self, code: u32, vendor_id: Option<u32>) -> bool {
        self.code == code && self.vendor_id == vendor_id
    }

    /// True if the M bit is set.
    pub fn is_mandatory(&self) -> bool {
        self.flags & AVP_FLAG_MANDATORY != 0
    }

    /// True if the P bit is set.
    pub fn is_protected(&self) -> bool {
        self.flags & AVP_FLAG_PROTECTED != 0
    }

    fn fixed<const N: usize>(&self) -> Result<[u8; N], MessageError> {
        self.data.as_slice().try_into().map_err(|_| self.invalid_length())
    }

    fn invalid_length(&self) -> MessageError {
        MessageError::InvalidAvpLength { code: self.code, vendor_id: self.vendor_id }
    }

    fn invalid_value(&self) -> MessageError {
        MessageError::InvalidValue { code: self.code, vendor_id: self.vendor_id }
    }

    /// The data as an `Unsigned32`, `Enumerated` or `Time`.
    pub fn as_u32(&self) -> Result<u32, MessageError> {
        self.fixed().map(u32::from_be_bytes)
    }

    /// The data as an `Unsigned64`.
    pub fn as_u64(&self) -> Result<u64, MessageError> {
        self.fixed().map(u64::from_be_bytes)
    }

    /// The data as an `Integer32`.
    pub fn as_i32(&self) -> Result<i32, MessageError> {
        self.fixed().map(i32::from_be_bytes)
    }

    /// The data as an `Integer64`.
    pub fn as_i64(&self) -> Result<i64, MessageError> {
        self.fixed().map(i64::from_be_bytes)
    }

    /// The data as text (`UTF8String`, `DiameterIdentity`, `DiameterURI`).
    pub fn as_str(&self) -> Result<&str, MessageError> {
        std::str::from_utf8(&self.data).map_err(|_| self.invalid_value())
    }

    /// The data as an IPv4 or IPv6 `Address`; other address families are
    /// [`MessageError::InvalidValue`].
    pub fn as_address(&self) -> Result<IpAddr, MessageError> {
        let (family, address) = self.data.split_first_chunk::<2>().ok_or_else(|| self.invalid_length())?;
        match u16::from_be_bytes(*family) {
            ADDRESS_IPV4 => {
                let octets: [u8; 4] = (*address).try_into().map_err(|_| self.invalid_length())?;
                Ok(IpAddr::V4(Ipv4Addr::from(octets)))
            }
            ADDRESS_IPV6 => {
                let octets: [u8; 16] = (*address).try_into().map_err(|_| self.invalid_length())?;
                Ok(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => Err(self.invalid_value()),
        }
    }

    /// The members of a Grouped AVP, decoded and checked as [`Message::decode`]
    /// checks a message's AVPs (they sit one level below this AVP).
    pub fn as_grouped(&self, limits: &Limits) -> Result<Vec<OwnedAvp>, MessageError> {
        Walk { limits, count: 0 }.avps(&self.data, 0, 1, true)
    }

    /// Appends the AVP with its padding (reserved flag bits written as zero).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), MessageError> {
        let at = out.len();
        push_avp(out, self.code, self.flags, self.vendor_id, &self.data)
            .map_err(|source| MessageError::Avp { at, source })
    }

    /// Octets this AVP takes on the wire, padding included.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.vendor_id.is_some(), self.data.len())
    }
}

impl From<&Avp<'_>> for OwnedAvp {
    fn from(a: &Avp<'_>) -> Self {
        OwnedAvp { code: a.code, flags: a.flags, vendor_id: a.vendor_id, data: a.data.to_vec() }
    }
}

/// AddressType values (IANA address family numbers) of RFC 6733 §4.3.1.
const ADDRESS_IPV4: u16 = 1;
const ADDRESS_IPV6: u16 = 2;

/// A Failed-AVP (RFC 6733 §7.5) holding `offending`, for an error answer.
/// Should `offending` be too long to re-encode, its header with empty data
/// stands in for it (§7.5 allows a minimal stand-in for length errors).
pub fn failed_avp(offending: &OwnedAvp) -> OwnedAvp {
    let mut data = Vec::new();
    if offending.encode_into(&mut data).is_err() {
        data.clear();
        let stand_in = OwnedAvp { data: Vec::new(), ..offending.clone() };
        // Empty data always fits.
        let _ = stand_in.encode_into(&mut data);
    }
    OwnedAvp { data, ..OwnedAvp::octets(dict::avp::FAILED_AVP, None, true, &[]) }
}

/// One Diameter message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// R, P, E, T (as received; reserved bits are rejected by the decoder and never written).
    pub flags: u8,
    /// The Command Code (24 bits).
    pub command: u32,
    /// The Application-ID.
    pub application: u32,
    /// The Hop-by-Hop Identifier: matches an answer to a request on one connection.
    pub hop_by_hop: u32,
    /// The End-to-End Identifier: detects duplicates end to end.
    pub end_to_end: u32,
    /// The AVPs, in order.
    pub avps: Vec<OwnedAvp>,
}

impl Message {
    /// A request (R and P set; clear P for the peer-to-peer CER, DWR and DPR).
    pub fn request(command: u32, application: u32, hop_by_hop: u32, end_to_end: u32) -> Self {
        Message { flags: FLAG_REQUEST | FLAG_PROXIABLE, command, application, hop_by_hop, end_to_end, avps: Vec::new() }
    }

    /// The answer to `request`: the same command, application and identifiers,
    /// P as in the request (RFC 6733 §6.2), R, E and T clear, no AVPs yet.
    pub fn answer_to(request: &Message) -> Self {
        Message {
            flags: request.flags & FLAG_PROXIABLE,
            command: request.command,
            application: request.application,
            hop_by_hop: request.hop_by_hop,
            end_to_end: request.end_to_end,
            avps: Vec::new(),
        }
    }

    /// R: a request.
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// E: an answer with a protocol error.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// T: possibly a retransmission.
    pub fn is_retransmit(&self) -> bool {
        self.flags & FLAG_RETRANSMIT != 0
    }

    /// P: may be proxied.
    pub fn is_proxiable(&self) -> bool {
        self.flags & FLAG_PROXIABLE != 0
    }

    /// Appends an AVP.
    pub fn push(&mut self, avp: OwnedAvp) -> &mut Self {
        self.avps.push(avp);
        self
    }

    /// The first AVP with this code in this space.
    pub fn find(&self, code: u32, vendor_id: Option<u32>) -> Option<&OwnedAvp> {
        self.avps.iter().find(|a| a.is(code, vendor_id))
    }

    /// Every AVP with this code in this space, in order.
    pub fn find_all<'a>(&'a self, code: u32, vendor_id: Option<u32>) -> impl Iterator<Item = &'a OwnedAvp> + 'a {
        self.avps.iter().filter(move |a| a.is(code, vendor_id))
    }

    fn text(&self, code: u32) -> Option<&str> {
        self.find(code, None).and_then(|a| a.as_str().ok())
    }

    /// Session-Id.
    pub fn session_id(&self) -> Option<&str> {
        self.text(dict::avp::SESSION_ID)
    }

    /// Origin-Host.
    pub fn origin_host(&self) -> Option<&str> {
        self.text(dict::avp::ORIGIN_HOST)
    }

    /// Origin-Realm.
    pub fn origin_realm(&self) -> Option<&str> {
        self.text(dict::avp::ORIGIN_REALM)
    }

    /// The AVPs of `vendor_id` whose codes fit one octet, as `(vendor type,
    /// data)`: the Eapay attributes, numbered as in the RADIUS dictionary.
    pub fn vendor_pairs(&self, vendor_id: u32) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        self.avps
            .iter()
            .filter(move |a| a.vendor_id == Some(vendor_id))
            .filter_map(|a| u8::try_from(a.code).ok().map(|code| (code, a.data.as_slice())))
    }

    /// Result-Code.
    pub fn result_code(&self) -> Option<u32> {
        self.find(dict::avp::RESULT_CODE, None).and_then(|a| a.as_u32().ok())
    }

    /// The wire form. Fails for a Command Code over 24 bits, an AVP too long
    /// for its length field, or a message over [`MAX_LENGTH`].
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        if self.command > MAX_COMMAND {
            return Err(MessageError::CommandTooLarge { code: self.command });
        }
        let body: usize = self.avps.iter().map(OwnedAvp::encoded_len).sum();
        let mut out = Vec::with_capacity(HEADER_LEN.saturating_add(body));
        out.extend_from_slice(&[VERSION, 0, 0, 0, self.flags & !FLAG_RESERVED]);
        out.extend_from_slice(&self.command.to_be_bytes()[1..]);
        for word in [self.application, self.hop_by_hop, self.end_to_end] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        for avp in &self.avps {
            avp.encode_into(&mut out)?;
        }
        let len = out.len();
        if len > MAX_LENGTH {
            return Err(MessageError::TooLarge { len, max: MAX_LENGTH });
        }
        // len <= MAX_LENGTH, so it fits the 24-bit field.
        out[1..4].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
        Ok(out)
    }

    /// Decodes and checks one whole message (see the module docs for what is
    /// checked). `bytes` must be exactly the message: [`frame_len`] finds its end.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, MessageError> {
        if bytes.len() > limits.max_message {
            return Err(MessageError::TooLarge { len: bytes.len(), max: limits.max_message });
        }
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(MessageError::TooShort { len: bytes.len() })?;
        let length = check_prefix([header[0], header[1], header[2], header[3]], limits)?;
        if length != bytes.len() {
            return Err(MessageError::LengthMismatch { header: length, actual: bytes.len() });
        }
        let flags = header[4];
        if flags & FLAG_RESERVED != 0 {
            return Err(MessageError::ReservedFlags { flags });
        }
        if flags & FLAG_REQUEST != 0 && flags & FLAG_ERROR != 0 {
            return Err(MessageError::ErrorBitOnRequest);
        }
        let word = |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let avps = Walk { limits, count: 0 }.avps(&bytes[HEADER_LEN..], HEADER_LEN, 0, true)?;
        Ok(Message {
            flags,
            command: word(4) & MAX_COMMAND,
            application: word(8),
            hop_by_hop: word(12),
            end_to_end: word(16),
            avps,
        })
    }
}

/// TCP framing: given the first bytes of a stream, the total length of the
/// message that starts there once 4 octets are available (`Ok(None)` before).
/// Errors for a version other than 1, a length below 20 or not a multiple of
/// 4, or one over `limits.max_message`; after any of them the stream cannot be
/// trusted to resynchronise.
pub fn frame_len(prefix: &[u8], limits: &Limits) -> Result<Option<usize>, MessageError> {
    match prefix.first_chunk::<4>() {
        None => Ok(None),
        Some(first) => check_prefix(*first, limits).map(Some),
    }
}

/// Version and Message Length from the first header word.
fn check_prefix(first: [u8; 4], limits: &Limits) -> Result<usize, MessageError> {
    if first[0] != VERSION {
        return Err(MessageError::BadVersion { version: first[0] });
    }
    let length = usize::from(first[1]) << 16 | usize::from(first[2]) << 8 | usize::from(first[3]);
    if length < HEADER_LEN || length % 4 != 0 {
        return Err(MessageError::BadLength { length });
    }
    if length > limits.max_message {
        return Err(MessageError::TooLarge { len: length, max: limits.max_message });
    }
    Ok(length)
}

/// One decode's walk through nested AVPs, with its running AVP count.
struct Walk<'l> {
    limits: &'l Limits,
    count: usize,
}

impl Walk<'_> {
    /// The AVPs of `bytes`, found at offset `at` of the message, enclosed by
    /// `depth` Grouped AVPs. `typed`: check flags and data against the
    /// dictionary (off inside Failed-AVP, which echoes malformed AVPs).
    fn avps(&mut self, bytes: &[u8], at: usize, depth: usize, typed: bool) -> Result<Vec<OwnedAvp>, MessageError> {
        if depth > self.limits.max_depth {
            return Err(MessageError::TooDeep { max: self.limits.max_depth });
        }
        let room = self.limits.max_avps.saturating_sub(self.count);
        let parsed = parse_avps_capped(bytes, room).map_err(|source| match source {
            AvpError::TooMany { .. } => MessageError::TooManyAvps { max: self.limits.max_avps },
            source => MessageError::Avp { at, source },
        })?;
        self.count += parsed.len();
        let mut out = Vec::with_capacity(parsed.len());
        let mut offset = at;
        for avp in &parsed {
            if typed {
                let header_len = if avp.vendor_id.is_some() { 12 } else { 8 };
                self.check(avp, offset + header_len, depth)?;
            }
            offset += avp.encoded_len();
            out.push(OwnedAvp::from(avp));
        }
        Ok(out)
    }

    /// One AVP's flags and, if the dictionary knows it, its data.
    fn check(&mut self, avp: &Avp<'_>, data_at: usize, depth: usize) -> Result<(), MessageError> {
        let (code, vendor_id, data) = (avp.code, avp.vendor_id, avp.data);
        if avp.flags & AVP_FLAG_RESERVED != 0 {
            return Err(MessageError::ReservedAvpFlags { code, vendor_id, flags: avp.flags });
        }
        let Some(def) = dict::find(code, vendor_id) else { return Ok(()) };
        let bad_length = MessageError::InvalidAvpLength { code, vendor_id };
        let bad_value = MessageError::InvalidValue { code, vendor_id };
        if let Some(n) = def.data_type.fixed_len() {
            return if data.len() == n { Ok(()) } else { Err(bad_length) };
        }
        match def.data_type {
            DataType::Utf8String | DataType::DiameterUri | DataType::IpFilterRule => {
                std::str::from_utf8(data).map(drop).map_err(|_| bad_value)
            }
            // An FQDN or realm: ASCII only (IDNA A-labels), never empty.
            DataType::DiameterIdentity => {
                if !data.is_empty() && data.iter().all(u8::is_ascii_graphic) {
                    Ok(())
                } else {
                    Err(bad_value)
                }
            }
            // Other address families (E.164, ...) are kept; as_address refuses them.
            DataType::Address => match data {
                [0, 1, rest @ ..] if rest.len() != 4 => Err(bad_length),
                [0, 2, rest @ ..] if rest.len() != 16 => Err(bad_length),
                [_, _, ..] => Ok(()),
                _ => Err(bad_length),
            },
            DataType::Grouped => {
                let typed = !(code == dict::avp::FAILED_AVP && vendor_id.is_none());
                self.avps(data, data_at, depth + 1, typed).map(drop)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{diameter::avp as code, diameter::command, eapay};
    use std::net::{Ipv4Addr, Ipv6Addr};

    // Deterministic fuzz loops: no seed files, the same run every time.
    use crate::diameter::peer::XorShift;

    const EAPAY: Option<u32> = Some(eapay::VENDOR_ID);

    /// The CER of `known_cer_encoding`.
    fn cer() -> Message {
        let mut m = Message::request(command::CAPABILITIES_EXCHANGE, 0, 0x1122_3344, 0x5566_7788);
        m.flags = FLAG_REQUEST; // CER is not proxiable
        m.push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, "a.example"))
            .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, "example"))
            .push(OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, IpAddr::V4(Ipv4Addr::LOCALHOST)))
            .push(OwnedAvp::u32(code::VENDOR_ID, None, true, 32473))
            .push(OwnedAvp::utf8(code::PRODUCT_NAME, None, false, "eapay"))
            .push(OwnedAvp::u32(code::AUTH_APPLICATION_ID, None, true, 5))
            .push(OwnedAvp::u32(code::ACCT_APPLICATION_ID, None, true, 3));
        m
    }

    /// A DER round with a vendor AVP, a Grouped AVP and every value type.
    fn der() -> Message {
        let mut m = Message::request(command::DIAMETER_EAP, 5, 7, 0xdead_beef);
        let proxy = OwnedAvp::grouped(
            code::PROXY_INFO,
            None,
            true,
            &[
                OwnedAvp::utf8(code::PROXY_HOST, None, true, "relay.example"),
                OwnedAvp::octets(code::PROXY_STATE, None, true, &[1, 2, 3]),
            ],
        )
        .unwrap();
        m.push(OwnedAvp::utf8(code::SESSION_ID, None, true, "nas.example;1;2"))
            .push(OwnedAvp::u32(code::AUTH_APPLICATION_ID, None, true, 5))
            .push(OwnedAvp::utf8(code::ORIGIN_HOST, None, true, "nas.example"))
            .push(OwnedAvp::utf8(code::ORIGIN_REALM, None, true, "example"))
            .push(OwnedAvp::utf8(code::DESTINATION_REALM, None, true, "issuer.example"))
            .push(OwnedAvp::u32(code::AUTH_REQUEST_TYPE, None, true, 3))
            .push(OwnedAvp::octets(code::EAP_PAYLOAD, None, true, &[2, 1, 0, 9, 1, b'c', b'a', b'r', b'd']))
            .push(OwnedAvp::i64(u32::from(eapay::AMOUNT), EAPAY, false, 1250))
            .push(OwnedAvp::utf8(u32::from(eapay::TRANSACTION_ID), EAPAY, false, "T-1"))
            .push(OwnedAvp::u64(code::ACCOUNTING_SUB_SESSION_ID, None, true, u64::MAX - 1))
            .push(OwnedAvp::time(code::EVENT_TIMESTAMP, None, true, 3_900_000_000))
            .push(OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, IpAddr::V6(Ipv6Addr::LOCALHOST)))
            .push(proxy)
            .push(OwnedAvp::octets(99_999, Some(1), true, b"unknown, kept"));
        m
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn known_cer_encoding() {
        // Written from the RFC 6733 §3 and §4.1 layouts, not from the encoder.
        let expected = hex::decode(concat!(
            "0100007c", // version 1, length 124
            "80000101", // R, Capabilities-Exchange (257)
            "00000000", // application 0
            "11223344", // hop-by-hop
            "55667788", // end-to-end
            "00000108",
            "40000011",
            "612e6578616d706c65",
            "000000", // Origin-Host "a.example", M, 17 + 3 pad
            "00000128",
            "4000000f",
            "6578616d706c65",
            "00", // Origin-Realm "example", 15 + 1 pad
            "00000101",
            "4000000e",
            "00017f000001",
            "0000", // Host-IP-Address IPv4 127.0.0.1, 14 + 2 pad
            "0000010a",
            "4000000c",
            "00007ed9", // Vendor-Id 32473
            "0000010d",
            "0000000d",
            "6561706179",
            "000000", // Product-Name "eapay", M clear, 13 + 3 pad
            "00000102",
            "4000000c",
            "00000005", // Auth-Application-Id 5
            "00000103",
            "4000000c",
            "00000003", // Acct-Application-Id 3
        ))
        .unwrap();
        assert_eq!(expected.len(), 124);
        assert_eq!(hex::encode(cer().encode().unwrap()), hex::encode(&expected));
        let back = Message::decode(&expected, &limits()).unwrap();
        assert_eq!(back, cer());
        assert!(back.is_request() && !back.is_proxiable() && !back.is_error() && !back.is_retransmit());
        assert_eq!(back.origin_host(), Some("a.example"));
        assert_eq!(back.origin_realm(), Some("example"));
        assert_eq!(back.session_id(), None);
        assert_eq!(frame_len(&expected, &limits()), Ok(Some(124)));
    }

    #[test]
    fn round_trip_with_grouped_vendor_and_unknown_avps() {
        let m = der();
        let wire = m.encode().unwrap();
        assert_eq!(wire.len() % 4, 0);
        let back = Message::decode(&wire, &limits()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.session_id(), Some("nas.example;1;2"));
        assert_eq!(back.find(u32::from(eapay::AMOUNT), EAPAY).unwrap().as_i64(), Ok(1250));
        assert_eq!(back.find(u32::from(eapay::AMOUNT), None), None);
        let proxy = back.find(code::PROXY_INFO, None).unwrap().as_grouped(&limits()).unwrap();
        assert_eq!(proxy[0].as_str(), Ok("relay.example"));
        assert_eq!(proxy[1].data, [1, 2, 3]);
        let unknown = back.find(99_999, Some(1)).unwrap();
        assert!(unknown.is_mandatory() && unknown.flags & AVP_FLAG_VENDOR != 0);
        assert_eq!(back.find_all(code::ORIGIN_HOST, None).count(), 1);
    }

    #[test]
    fn typed_constructors_and_accessors() {
        let v4 = OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(v4.data, [0, 1, 192, 0, 2, 1]);
        assert_eq!(v4.as_address(), Ok(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        let v6 = OwnedAvp::address(code::HOST_IP_ADDRESS, None, true, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(&v6.data[..2], [0, 2]);
        assert_eq!(v6.as_address(), Ok(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let e164 = OwnedAvp::octets(code::HOST_IP_ADDRESS, None, true, &[0, 8, b'1']);
        assert_eq!(e164.as_address(), Err(MessageError::InvalidValue { code: 257, vendor_id: None }));
        let short = OwnedAvp::octets(code::HOST_IP_ADDRESS, None, true, &[0, 1, 1]);
        assert_eq!(short.as_address(), Err(MessageError::InvalidAvpLength { code: 257, vendor_id: None }));

        let i = OwnedAvp::i32(1, None, false, -2);
        assert_eq!((i.as_i32(), i.as_u32()), (Ok(-2), Ok(0xffff_fffe)));
        assert_eq!(i.as_u64(), Err(MessageError::InvalidAvpLength { code: 1, vendor_id: None }));
        assert_eq!(OwnedAvp::i64(1, None, false, -3).as_i64(), Ok(-3));
        assert_eq!(OwnedAvp::u64(1, None, false, 1 << 40).as_u64(), Ok(1 << 40));
        assert_eq!(OwnedAvp::time(55, None, true, 7).as_u32(), Ok(7));
        assert_eq!(
            OwnedAvp::octets(1, None, false, &[0xff]).as_str(),
            Err(MessageError::InvalidValue { code: 1, vendor_id: None })
        );

        let vendor = OwnedAvp::u32(9, EAPAY, false, 5);
        assert_eq!(vendor.flags, AVP_FLAG_VENDOR);
        assert!(vendor.is(9, EAPAY) && !vendor.is(9, None) && !vendor.is_mandatory() && !vendor.is_protected());
        assert_eq!(OwnedAvp::u32(9, None, true, 5).flags, AVP_FLAG_MANDATORY);
        let mut out = Vec::new();
        vendor.encode_into(&mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 9, 0x80, 0, 0, 16, 0, 0, 0x7e, 0xd9, 0, 0, 0, 5]);
        assert_eq!(vendor.encoded_len(), 16);
    }

    #[test]
    fn answers_mirror_their_request() {
        let mut req = der();
        req.flags |= FLAG_RETRANSMIT;
        let mut ans = Message::answer_to(&req);
        assert_eq!((ans.command, ans.application, ans.hop_by_hop, ans.end_to_end), (268, 5, 7, 0xdead_beef));
        assert!(!ans.is_request() && ans.is_proxiable() && !ans.is_retransmit() && !ans.is_error());
        assert!(ans.avps.is_empty());
        ans.push(OwnedAvp::u32(code::RESULT_CODE, None, true, 1001));
        assert_eq!(ans.result_code(), Some(1001));
        assert_eq!(Message::answer_to(&cer()).flags, 0);
        // An error answer (E, no R) decodes.
        ans.flags |= FLAG_ERROR;
        let back = Message::decode(&ans.encode().unwrap(), &limits()).unwrap();
        assert!(back.is_error() && !back.is_request());
    }

    #[test]
    fn failed_avp_wraps_the_offending_avp() {
        let bad = OwnedAvp::octets(code::RESULT_CODE, None, true, &[0, 0, 7]);
        let failed = failed_avp(&bad);
        assert!(failed.is(code::FAILED_AVP, None) && failed.is_mandatory());
        assert_eq!(failed.data, [0, 0, 1, 12, 0x40, 0, 0, 11, 0, 0, 7, 0]);
        // Its contents are not type-checked, so the answer carrying it decodes.
        let mut ans = Message::answer_to(&cer());
        ans.flags = FLAG_ERROR;
        ans.push(OwnedAvp::u32(code::RESULT_CODE, None, true, 5014)).push(failed.clone());
        let back = Message::decode(&ans.encode().unwrap(), &limits()).unwrap();
        assert_eq!(back.find(code::FAILED_AVP, None), Some(&failed));
        assert_eq!(failed.as_grouped(&limits()), Err(MessageError::InvalidAvpLength { code: 268, vendor_id: None }));
        // An AVP too long to re-encode is replaced by its bare header.
        let huge = OwnedAvp::octets(1, None, true, &vec![0; MAX_AVP_DATA_LEN + 1]);
        assert_eq!(failed_avp(&huge).data, [0, 0, 0, 1, 0x40, 0, 0, 8]);
    }

    /// Sets the Message Length field of `wire` to its length.
    fn fix_length(wire: &mut [u8]) {
        let len = (wire.len() as u32).to_be_bytes();
        wire[1..4].copy_from_slice(&len[1..]);
    }

    #[test]
    fn header_errors_and_their_result_codes() {
        let good = cer().encode().unwrap();
        let decode = |w: &[u8]| Message::decode(w, &limits());
        let mut w = good.clone();
        w[0] = 2;
        assert_eq!(decode(&w), Err(MessageError::BadVersion { version: 2 }));
        assert_eq!(frame_len(&w, &limits()), Err(MessageError::BadVersion { version: 2 }));
        let mut w = good.clone();
        w[3] = 0x7d;
        assert_eq!(decode(&w), Err(MessageError::BadLength { length: 0x7d }));
        let mut w = good.clone();
        w[3] = 0x10;
        assert_eq!(decode(&w), Err(MessageError::BadLength { length: 16 }));
        let mut w = good.clone();
        w[3] = 0x78;
        assert_eq!(decode(&w), Err(MessageError::LengthMismatch { header: 120, actual: 124 }));
        let mut w = good.clone();
        w[4] |= 0x01;
        assert_eq!(decode(&w), Err(MessageError::ReservedFlags { flags: 0x81 }));
        let mut w = good.clone();
        w[4] |= FLAG_ERROR;
        assert_eq!(decode(&w), Err(MessageError::ErrorBitOnRequest));
        assert_eq!(decode(&good[..19]), Err(MessageError::TooShort { len: 19 }));
        let small = Limits { max_message: 120, ..limits() };
        assert_eq!(Message::decode(&good, &small), Err(MessageError::TooLarge { len: 124, max: 120 }));

        let cases: [(MessageError, Option<u32>); 8] = [
            (MessageError::TooShort { len: 3 }, None),
            (MessageError::BadVersion { version: 2 }, Some(5011)),
            (MessageError::BadLength { length: 21 }, Some(5015)),
            (MessageError::LengthMismatch { header: 24, actual: 28 }, Some(5015)),
            (MessageError::TooLarge { len: 9, max: 8 }, Some(5006)),
            (MessageError::ReservedFlags { flags: 1 }, Some(5013)),
            (MessageError::ErrorBitOnRequest, Some(3008)),
            (MessageError::CommandTooLarge { code: 1 << 24 }, None),
        ];
        for (e, rc) in cases {
            assert_eq!(e.result_code(), rc, "{e}");
        }
        let mut m = cer();
        m.command = 1 << 24;
        assert_eq!(m.encode(), Err(MessageError::CommandTooLarge { code: 1 << 24 }));
    }

    /// `cer()` with its Vendor-Id AVP (octets 72..84) replaced by `avp`.
    fn with_avp(avp: &[u8]) -> Vec<u8> {
        let good = cer().encode().unwrap();
        let mut w = good[..72].to_vec();
        w.extend_from_slice(avp);
        w.extend_from_slice(&good[84..]);
        fix_length(&mut w);
        w
    }

    #[test]
    fn avp_errors_and_their_result_codes() {
        let decode = |w: &[u8]| Message::decode(w, &limits());
        assert!(decode(&with_avp(&[0, 0, 1, 10, 0x40, 0, 0, 12, 0, 0, 0x7e, 0xd9])).is_ok());
        // Unsigned32 of 3 octets.
        let e = decode(&with_avp(&[0, 0, 1, 10, 0x40, 0, 0, 11, 0, 0, 0x7e, 0])).unwrap_err();
        assert_eq!(
            (e.clone(), e.result_code()),
            (MessageError::InvalidAvpLength { code: 266, vendor_id: None }, Some(5014))
        );
        // Reserved AVP flag bits.
        let e = decode(&with_avp(&[0, 0, 1, 10, 0x41, 0, 0, 12, 0, 0, 0x7e, 0xd9])).unwrap_err();
        assert_eq!(
            (e.clone(), e.result_code()),
            (MessageError::ReservedAvpFlags { code: 266, vendor_id: None, flags: 0x41 }, Some(3009))
        );
        // Session-Id that is not UTF-8.
        let e = decode(&with_avp(&[0, 0, 1, 7, 0x40, 0, 0, 12, 0xff, 0xfe, 0, 0])).unwrap_err();
        assert_eq!(
            (e.clone(), e.result_code()),
            (MessageError::InvalidValue { code: 263, vendor_id: None }, Some(5004))
        );
        // Destination-Host with a space, and empty.
        assert_eq!(
            decode(&with_avp(&[0, 0, 1, 37, 0x40, 0, 0, 12, b'a', b' ', b'b', b'c'])),
            Err(MessageError::InvalidValue { code: 293, vendor_id: None })
        );
        assert_eq!(
            decode(&with_avp(&[0, 0, 1, 37, 0x40, 0, 0, 8])),
            Err(MessageError::InvalidValue { code: 293, vendor_id: None })
        );
        // An IPv4 Address with 2 address octets.
        assert_eq!(
            decode(&with_avp(&[0, 0, 1, 1, 0x40, 0, 0, 12, 0, 1, 10, 0])),
            Err(MessageError::InvalidAvpLength { code: 257, vendor_id: None })
        );
        // Eapay-Amount (Integer64) of 4 octets.
        assert_eq!(
            decode(&with_avp(&[0, 0, 0, 3, 0x80, 0, 0, 16, 0, 0, 0x7e, 0xd9, 0, 0, 0, 1])),
            Err(MessageError::InvalidAvpLength { code: 3, vendor_id: EAPAY })
        );
        // An AVP Length that overruns the message.
        let e = decode(&with_avp(&[0, 0, 1, 10, 0x40, 0, 0, 200, 0, 0, 0x7e, 0xd9])).unwrap_err();
        assert!(
            matches!(e, MessageError::Avp { at: 20, source: AvpError::Overrun { offset: 52, code: 266, .. } }),
            "{e:?}"
        );
        assert_eq!(e.result_code(), Some(5014));
        // A Grouped AVP whose contents do not parse.
        let e = decode(&with_avp(&[0, 0, 1, 28, 0x40, 0, 0, 12, 0, 0, 0, 1])).unwrap_err();
        assert!(matches!(e, MessageError::Avp { at: 80, source: AvpError::Truncated { .. } }), "{e:?}");
        // A Grouped member with a bad value is found too.
        let e =
            decode(&with_avp(&[0, 0, 1, 28, 0x40, 0, 0, 20, 0, 0, 1, 24, 0x40, 0, 0, 12, 0xc0, 0, 0, 0])).unwrap_err();
        assert_eq!(e, MessageError::InvalidValue { code: 280, vendor_id: None });
        // An unknown AVP is kept whatever its M bit and data.
        let m = decode(&with_avp(&[0, 1, 0, 0, 0x40, 0, 0, 11, 0xff, 0xff, 0xff, 0])).unwrap();
        assert_eq!(m.find(0x10000, None).unwrap().data, [0xff; 3]);

        for (source, rc) in [
            (AvpError::Truncated { offset: 0, needed: 8, remaining: 1 }, Some(5014)),
            (AvpError::LengthTooShort { offset: 0, code: 1, length: 4, header: 8 }, Some(5014)),
            (AvpError::Overrun { offset: 0, code: 1, length: 99, remaining: 8 }, Some(5014)),
            (AvpError::ValueLength { expected: 4, got: 3 }, Some(5014)),
            (AvpError::TooMany { max: 1 }, Some(5006)),
            (AvpError::InvalidUtf8, Some(5004)),
            (AvpError::DataTooLong { len: 1 << 24, max: MAX_AVP_DATA_LEN }, None),
        ] {
            assert_eq!(MessageError::Avp { at: 20, source }.result_code(), rc, "{source}");
        }
    }

    /// `depth` Proxy-Info AVPs nested in one another around a Proxy-Host.
    fn nested(depth: usize) -> OwnedAvp {
        let mut avp = OwnedAvp::utf8(code::PROXY_HOST, None, true, "h.example");
        for _ in 0..depth {
            avp = OwnedAvp::grouped(code::PROXY_INFO, None, true, &[avp]).unwrap();
        }
        avp
    }

    #[test]
    fn limits_on_depth_count_and_size() {
        let mut m = cer();
        m.push(nested(4));
        let wire = m.encode().unwrap();
        assert!(Message::decode(&wire, &limits()).is_ok());
        m.avps.pop();
        m.push(nested(5));
        let e = Message::decode(&m.encode().unwrap(), &limits()).unwrap_err();
        assert_eq!((e.clone(), e.result_code()), (MessageError::TooDeep { max: 4 }, Some(5006)));
        assert_eq!(Message::decode(&wire, &Limits { max_depth: 0, ..limits() }), Err(MessageError::TooDeep { max: 0 }));
        // as_grouped starts one level down.
        assert!(nested(4).as_grouped(&limits()).is_ok());
        assert_eq!(nested(5).as_grouped(&limits()), Err(MessageError::TooDeep { max: 4 }));

        // cer() has 7 AVPs and nested(4) 5 more: 12 in all levels.
        assert!(Message::decode(&wire, &Limits { max_avps: 12, ..limits() }).is_ok());
        let e = Message::decode(&wire, &Limits { max_avps: 11, ..limits() }).unwrap_err();
        assert_eq!((e.clone(), e.result_code()), (MessageError::TooManyAvps { max: 11 }, Some(5006)));
        assert_eq!(
            Message::decode(&wire, &Limits { max_avps: 6, ..limits() }),
            Err(MessageError::TooManyAvps { max: 6 })
        );
        let mut many = cer();
        many.avps = vec![OwnedAvp::octets(1, None, false, &[]); 513];
        assert_eq!(Message::decode(&many.encode().unwrap(), &limits()), Err(MessageError::TooManyAvps { max: 512 }));
        many.avps.pop();
        assert_eq!(Message::decode(&many.encode().unwrap(), &limits()).unwrap().avps.len(), 512);

        // Size: the cap, and the 24-bit field when encoding.
        let mut big = cer();
        big.push(OwnedAvp::octets(code::CLASS, None, true, &vec![0; 65_536 - 124 - 8]));
        let wire = big.encode().unwrap();
        assert_eq!(wire.len(), 65_536);
        assert!(Message::decode(&wire, &limits()).is_ok());
        big.avps.last_mut().unwrap().data.push(0);
        let wire = big.encode().unwrap();
        assert_eq!(Message::decode(&wire, &limits()), Err(MessageError::TooLarge { len: 65_540, max: 65_536 }));
        assert_eq!(frame_len(&wire, &limits()), Err(MessageError::TooLarge { len: 65_540, max: 65_536 }));
        let mut huge = cer();
        huge.push(OwnedAvp::octets(code::CLASS, None, true, &vec![0; MAX_AVP_DATA_LEN]));
        assert_eq!(
            huge.encode(),
            Err(MessageError::TooLarge { len: 124 + encoded_len(false, MAX_AVP_DATA_LEN), max: MAX_LENGTH })
        );
    }

    #[test]
    fn framing() {
        let l = limits();
        assert_eq!(frame_len(&[], &l), Ok(None));
        assert_eq!(frame_len(&[1, 0, 0], &l), Ok(None));
        assert_eq!(frame_len(&[1, 0, 0, 20], &l), Ok(Some(20)));
        assert_eq!(frame_len(&[1, 0, 1, 0, 0x80], &l), Ok(Some(256)));
        assert_eq!(frame_len(&[1, 0, 0, 16], &l), Err(MessageError::BadLength { length: 16 }));
        assert_eq!(frame_len(&[1, 0, 0, 22], &l), Err(MessageError::BadLength { length: 22 }));
        assert_eq!(frame_len(&[0, 0, 0, 20], &l), Err(MessageError::BadVersion { version: 0 }));
        assert_eq!(frame_len(&[1, 1, 0, 4], &l), Err(MessageError::TooLarge { len: 65_540, max: 65_536 }));
        // Two messages back to back split where frame_len says.
        let mut stream = cer().encode().unwrap();
        let second = der().encode().unwrap();
        stream.extend_from_slice(&second);
        let first_len = frame_len(&stream, &l).unwrap().unwrap();
        assert_eq!(Message::decode(&stream[..first_len], &l).unwrap(), cer());
        let rest = &stream[first_len..];
        assert_eq!(frame_len(rest, &l), Ok(Some(second.len())));
        assert_eq!(Message::decode(rest, &l).unwrap(), der());
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let wire = der().encode().unwrap();
        for cut in 0..wire.len() {
            assert!(Message::decode(&wire[..cut], &limits()).is_err(), "cut at {cut}");
            // With the length field made to agree, a cut parses only on an AVP
            // boundary, and then as a prefix of the message.
            let mut w = wire[..cut].to_vec();
            if w.len() >= HEADER_LEN {
                fix_length(&mut w);
                if let Ok(m) = Message::decode(&w, &limits()) {
                    assert_eq!(m.avps[..], der().avps[..m.avps.len()], "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let l = Limits { max_depth: 3, max_avps: 64, ..limits() };
        let mut rng = XorShift(0x00ea_9a7d_1a3e);
        let seeds = [cer().encode().unwrap(), der().encode().unwrap(), {
            let mut m = cer();
            m.push(nested(3));
            m.push(failed_avp(&nested(2)));
            m.encode().unwrap()
        }];
        for i in 0..4000 {
            let mut w = match i % 4 {
                // Arbitrary bytes behind a plausible header.
                0 => {
                    let len = 20 + 4 * rng.below(24);
                    let mut w: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    w[0] = 1;
                    w[4] &= !FLAG_RESERVED;
                    fix_length(&mut w);
                    w
                }
                // A valid message with a few bytes changed...
                _ => {
                    let mut w = seeds[rng.below(seeds.len())].clone();
                    for _ in 0..1 + rng.below(3) {
                        let at = HEADER_LEN + rng.below(w.len() - HEADER_LEN);
                        w[at] = rng.next() as u8;
                    }
                    w
                }
            };
            // ...and sometimes cut.
            if rng.below(4) == 0 {
                w.truncate(rng.below(w.len() + 1));
            }
            let _ = frame_len(&w, &l);
            match Message::decode(&w, &l) {
                // Whatever decodes re-encodes to the same message.
                Ok(m) => assert_eq!(Message::decode(&m.encode().unwrap(), &l), Ok(m)),
                Err(e) => {
                    let _ = e.result_code();
                }
            }
        }
    }
}
