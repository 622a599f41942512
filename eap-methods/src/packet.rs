//! EAP packet codec (RFC 3748 §4).
//!
//! A [`Packet`] is the code, identifier and, for requests and responses, the
//! method type and its type-data. Parsing checks the Length field against the
//! bytes actually present; octets beyond Length are lower-layer padding and
//! are ignored (RFC 3748 §4.1).

use std::fmt;

use crate::error::EapError;

/// Largest EAP packet eapay accepts or builds. The Length field allows 65535,
/// but every conversation buffers at most this much per message, which bounds
/// memory per peer (TLS reassembles fragments into its own, separately capped
/// buffer).
pub const MAX_EAP_PACKET: usize = 16 * 1024;

/// EAP codes (RFC 3748 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Authenticator to peer.
    Request = 1,
    /// Peer to authenticator.
    Response = 2,
    /// Authentication succeeded.
    Success = 3,
    /// Authentication failed.
    Failure = 4,
}

impl Code {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Request),
            2 => Some(Self::Response),
            3 => Some(Self::Success),
            4 => Some(Self::Failure),
            _ => None,
        }
    }
}

/// An EAP method type (RFC 3748 §5, IANA "EAP Method Types").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EapType(pub u8);

impl EapType {
    /// Identity (RFC 3748 §5.1).
    pub const IDENTITY: Self = Self(1);
    /// Notification (RFC 3748 §5.2).
    pub const NOTIFICATION: Self = Self(2);
    /// Legacy Nak, response only (RFC 3748 §5.3.1).
    pub const NAK: Self = Self(3);
    /// MD5-Challenge.
    pub const MD5: Self = Self(4);
    /// EAP-TLS (RFC 5216, RFC 9190).
    pub const TLS: Self = Self(13);
    /// EAP-SIM (RFC 4186).
    pub const SIM: Self = Self(18);
    /// EAP-TTLS (RFC 5281).
    pub const TTLS: Self = Self(21);
    /// EAP-AKA (RFC 4187).
    pub const AKA: Self = Self(23);
    /// EAP-AKA' (RFC 5448, RFC 9048).
    pub const AKA_PRIME: Self = Self(50);
    /// Expanded types (RFC 3748 §5.7).
    pub const EXPANDED: Self = Self(254);

    /// The name eapay uses for the method in logs, config and `Eapay-Auth-Method`.
    pub fn name(self) -> &'static str {
        match self {
            Self::IDENTITY => "identity",
            Self::NOTIFICATION => "notification",
            Self::NAK => "nak",
            Self::MD5 => "md5",
            Self::TLS => "tls",
            Self::SIM => "sim",
            Self::TTLS => "ttls",
            Self::AKA => "aka",
            Self::AKA_PRIME => "aka-prime",
            Self::EXPANDED => "expanded",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for EapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for EapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One EAP packet.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    /// Request, Response, Success or Failure.
    pub code: Code,
    /// Matches a Response to its Request.
    pub identifier: u8,
    /// The method type, for Requests and Responses.
    pub kind: Option<EapType>,
    /// The type-data following the type octet (empty for Success/Failure).
    pub data: Vec<u8>,
}

impl fmt::Debug for Packet {
    // The type-data may carry key material or identities: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("code", &self.code)
            .field("identifier", &self.identifier)
            .field("kind", &self.kind)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Packet {
    /// A Request or Response of method `kind`.
    pub fn new(code: Code, identifier: u8, kind: EapType, data: Vec<u8>) -> Self {
        Self { code, identifier, kind: Some(kind), data }
    }

    /// EAP-Success with `identifier`.
    pub fn success(identifier: u8) -> Self {
        Self { code: Code::Success, identifier, kind: None, data: Vec::new() }
    }

    /// EAP-Failure with `identifier`.
    pub fn failure(identifier: u8) -> Self {
        Self { code: Code::Failure, identifier, kind: None, data: Vec::new() }
    }

    /// Parses one packet. Octets past the Length field are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, EapError> {
        let header: &[u8; 4] = bytes
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or(EapError::Truncated { needed: 4, got: bytes.len() })?;
        let code = Code::from_u8(header[0]).ok_or(EapError::UnknownCode(header[0]))?;
        let identifier = header[1];
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if length > bytes.len() {
            return Err(EapError::Truncated { needed: length, got: bytes.len() });
        }
        if length > MAX_EAP_PACKET {
            return Err(EapError::TooLong(length));
        }
        match code {
            Code::Success | Code::Failure => {
                // RFC 3748 §4.2: Success and Failure are exactly four octets.
                if length != 4 {
                    return Err(EapError::BadLength { code: header[0], length });
                }
                Ok(Self { code, identifier, kind: None, data: Vec::new() })
            }
            Code::Request | Code::Response => {
                if length < 5 {
                    return Err(EapError::BadLength { code: header[0], length });
                }
                Ok(Self {
                    code,
                    identifier,
                    kind: Some(EapType(bytes[4])),
                    data: bytes[5..length].to_vec(),
                })
            }
        }
    }

    /// Serialises the packet. Fails only if it would exceed [`MAX_EAP_PACKET`].
    pub fn encode(&self) -> Result<Vec<u8>, EapError> {
        let length = 4 + self.kind.map_or(0, |_| 1 + self.data.len());
        if length > MAX_EAP_PACKET {
            return Err(EapError::TooLong(length));
        }
        let mut out = Vec::with_capacity(length);
        out.push(self.code as u8);
        out.push(self.identifier);
        out.extend_from_slice(&(length as u16).to_be_bytes());
        if let Some(kind) = self.kind {
            out.push(kind.0);
            out.extend_from_slice(&self.data);
        }
        Ok(out)
    }

    /// True for a Request or Response of `kind`.
    pub fn is(&self, code: Code, kind: EapType) -> bool {
        self.code == code && self.kind == Some(kind)
    }

    /// The desired types of a legacy Nak (RFC 3748 §5.3.1). A Nak of 0
    /// means "no alternative", reported as an empty list.
    pub fn nak_types(&self) -> Vec<EapType> {
        self.data.iter().copied().filter(|&t| t != 0).map(EapType).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_response_round_trip() {
        let p = Packet::new(Code::Response, 7, EapType::IDENTITY, b"0card@issuer.example".to_vec());
        let bytes = p.encode().unwrap();
        assert_eq!(&bytes[..5], &[2, 7, 0, 25, 1]);
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn success_is_four_octets() {
        assert_eq!(Packet::success(9).encode().unwrap(), vec![3, 9, 0, 4]);
        assert!(Packet::decode(&[3, 9, 0, 5, 0]).is_err());
    }

    #[test]
    fn padding_after_length_is_ignored() {
        let p = Packet::decode(&[2, 1, 0, 6, 1, b'x', 0xff, 0xff]).unwrap();
        assert_eq!(p.data, b"x");
    }

    #[test]
    fn lengths_that_disagree_are_errors() {
        assert!(Packet::decode(&[2, 1, 0, 9, 1, b'x']).is_err());
        assert!(Packet::decode(&[2, 1, 0, 4]).is_err());
        assert!(Packet::decode(&[2, 1, 0]).is_err());
        assert!(Packet::decode(&[9, 1, 0, 4]).is_err());
    }

    #[test]
    fn every_prefix_of_a_packet_is_handled() {
        let bytes = Packet::new(Code::Request, 1, EapType::AKA, vec![5; 40]).encode().unwrap();
        for n in 0..bytes.len() {
            assert!(Packet::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn nak_lists_desired_types() {
        let nak = Packet::new(Code::Response, 1, EapType::NAK, vec![50, 23]);
        assert_eq!(nak.nak_types(), vec![EapType::AKA_PRIME, EapType::AKA]);
        let none = Packet::new(Code::Response, 1, EapType::NAK, vec![0]);
        assert!(none.nak_types().is_empty());
    }
}
