//! RADIUS (RFC 2865, 2866, 2869, 3579, 5080, 5997).
//!
//! `packet` parses and builds packets, `vendor` the Vendor-Specific
//! sub-attributes, `auth` signs and verifies them with the shared secret,
//! and `crypt` hides passwords and MPPE keys. Parsing is bounded by the
//! datagram: nothing here panics or allocates more than a small multiple of
//! the (at most 4096-byte) packet, whatever the input.

mod attribute;
mod auth;
mod code;
mod crypt;
mod error;
mod packet;
mod vendor;

pub use attribute::{decode_ipv4, decode_string, decode_u32, decode_u64, Attribute};
pub use auth::{
    encode_request, encode_response, encode_response_to, verify_request, verify_response, verify_response_to,
};
pub use code::Code;
pub use crypt::{
    decrypt_mppe_key, encrypt_mppe_key, hide_user_password, push_mppe_keys, unhide_user_password, MAX_MPPE_KEY_LEN,
    MAX_USER_PASSWORD_LEN,
};
pub use error::{AuthError, DecodeError, EncodeError};
pub use packet::Packet;
pub use vendor::{VendorAttribute, MAX_VENDOR_VALUE_LEN};

/// RFC 2865 §3: the smallest packet is its header.
pub const MIN_PACKET_LEN: usize = 20;
/// RFC 2865 §3: the largest packet.
pub const MAX_PACKET_LEN: usize = 4096;
/// Octets of a packet that give its length on a stream (code, identifier, Length).
pub const STREAM_HEADER_LEN: usize = 4;

/// The length of the packet starting with `header` on a stream (RADIUS over
/// TCP or TLS, RFC 6613 §2.2: the Length field is the framing); `Err(len)`
/// when it lies outside [`MIN_PACKET_LEN`]..=[`MAX_PACKET_LEN`], after which
/// the stream cannot be followed.
pub fn stream_packet_len(header: &[u8; STREAM_HEADER_LEN]) -> Result<usize, usize> {
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if (MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&len) {
        Ok(len)
    } else {
        Err(len)
    }
}

/// RFC 2865 §5: an attribute's length byte covers its 2-byte header.
pub const MAX_ATTR_VALUE_LEN: usize = 253;
