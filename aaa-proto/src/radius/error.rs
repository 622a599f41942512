//! Errors of the RADIUS codec, one enum per concern.
//!
//! Every variant carries what a one-line log needs (attribute type, lengths,
//! codes) and never a secret, a password or a key.

use super::code::Code;

/// A datagram or attribute value that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the 20-byte header.
    #[error("datagram of {len} bytes is shorter than the 20-byte RADIUS header")]
    TooShort { len: usize },
    /// The Length field is above the RFC 2865 maximum of 4096.
    #[error("RADIUS Length field {length} exceeds the 4096-byte maximum")]
    TooLong { length: usize },
    /// The Length field is below 20 or above the bytes received.
    #[error("RADIUS Length field {length} does not fit the {received}-byte datagram")]
    LengthMismatch { length: usize, received: usize },
    /// A packet code this codec does not speak.
    #[error("unknown RADIUS code {0}")]
    UnknownCode(u8),
    /// An attribute header whose length is under 2 or runs past the packet.
    #[error("attribute type {kind} has length {len}, which does not fit {remaining} remaining bytes")]
    AttributeLength { kind: u8, len: u8, remaining: usize },
    /// Structurally invalid, with a fixed reason.
    #[error("malformed RADIUS data: {0}")]
    Malformed(&'static str),
    /// A Vendor-Specific attribute too short to hold its Vendor-Id.
    #[error("Vendor-Specific attribute of {len} bytes is too short for a Vendor-Id")]
    ShortVendorSpecific { len: usize },
    /// A vendor sub-attribute whose length is under 2 or overruns its VSA.
    #[error("vendor {vendor_id} sub-attribute type {vendor_type} has length {len}, which does not fit {remaining} remaining bytes")]
    BadVendorAttribute { vendor_id: u32, vendor_type: u8, len: u8, remaining: usize },
    /// A fixed-size value (integer, integer64) of the wrong size.
    #[error("attribute value of {got} bytes where {expected} were expected")]
    ValueLength { expected: usize, got: usize },
    /// A `string` value that is not UTF-8.
    #[error("attribute value is not valid UTF-8")]
    InvalidUtf8,
    /// A hidden User-Password that is empty, over 128 bytes or not whole 16-byte blocks.
    #[error("hidden User-Password of {len} bytes is not 16..=128 bytes in 16-byte blocks")]
    UserPasswordLength { len: usize },
    /// An encrypted MPPE key of an impossible size or content.
    #[error("encrypted MPPE key of {len} bytes is invalid: {reason}")]
    MppeKey { len: usize, reason: &'static str },
}

/// A packet or value that cannot be put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A value longer than its attribute can carry.
    #[error("attribute type {kind} value of {len} bytes exceeds the {max}-byte maximum")]
    ValueTooLong { kind: u8, len: usize, max: usize },
    /// An empty value where RFC 2865 requires at least one byte.
    #[error("attribute type {kind} needs a non-empty value")]
    EmptyValue { kind: u8 },
    /// The encoded packet would exceed 4096 bytes.
    #[error("encoded RADIUS packet of {len} bytes exceeds the 4096-byte maximum")]
    PacketTooLong { len: usize },
    /// More than one Message-Authenticator in one packet.
    #[error("packet holds more than one Message-Authenticator")]
    DuplicateMessageAuthenticator,
    /// A Message-Authenticator placeholder that is not 16 bytes.
    #[error("Message-Authenticator value of {len} bytes, expected 16")]
    MessageAuthenticatorLength { len: usize },
    /// A packet that must carry a Message-Authenticator (EAP, Status-Server) lacks one.
    #[error("{code} packet needs a Message-Authenticator (RFC 3579 / RFC 5997)")]
    MissingMessageAuthenticator { code: Code },
    /// `encode_request` was given a response code.
    #[error("{code} is not a request code")]
    NotARequest { code: Code },
    /// `encode_response` was given a request code.
    #[error("{code} is not a response code")]
    NotAResponse { code: Code },
    /// RFC 2865 §3 forbids an empty shared secret.
    #[error("the RADIUS shared secret is empty")]
    EmptySecret,
    /// User-Password plaintext over RFC 2865's 128 bytes.
    #[error("User-Password of {len} bytes exceeds the 128-byte maximum")]
    PasswordTooLong { len: usize },
    /// MPPE key plaintext that does not fit one attribute.
    #[error("MPPE key of {len} bytes exceeds the {max}-byte maximum")]
    MppeKeyTooLong { len: usize, max: usize },
}

/// A packet that failed authentication; the caller drops it silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The datagram itself is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A required Message-Authenticator is absent.
    #[error("{code} packet lacks a required Message-Authenticator")]
    MissingMessageAuthenticator { code: Code },
    /// The Message-Authenticator does not match (forged, or wrong secret).
    #[error("{code} packet has a wrong Message-Authenticator")]
    BadMessageAuthenticator { code: Code },
    /// The Request or Response Authenticator does not match.
    #[error("{code} packet has a wrong Request/Response Authenticator")]
    BadAuthenticator { code: Code },
    /// More than one Message-Authenticator.
    #[error("{code} packet holds more than one Message-Authenticator")]
    DuplicateMessageAuthenticator { code: Code },
    /// A Message-Authenticator whose value is not 16 bytes.
    #[error("{code} packet has a Message-Authenticator of {len} bytes, expected 16")]
    MessageAuthenticatorLength { code: Code, len: usize },
    /// Blast-RADIUS hardening: the Message-Authenticator must be the first attribute.
    #[error("{code} packet has its Message-Authenticator at attribute {position}, not first")]
    MessageAuthenticatorNotFirst { code: Code, position: usize },
    /// A response code given to `verify_request`, or a request code to `verify_response`.
    #[error("unexpected {code} packet")]
    UnexpectedCode { code: Code },
    /// The datagram and the decoded packet passed alongside it disagree.
    #[error("datagram does not match the decoded packet")]
    PacketMismatch,
    /// RFC 2865 §3 forbids an empty shared secret.
    #[error("the RADIUS shared secret is empty")]
    EmptySecret,
}
