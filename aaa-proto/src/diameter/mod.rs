//! Diameter (RFC 6733).
//!
//! - [`avp`]: the AVP codec (RFC 6733 §4.1). EAP-TTLS (RFC 5281 §10) carries
//!   its inner attributes in the same layout, so the tunnel and the Diameter
//!   server share this one implementation of the wire format. Also the data
//!   types ([`DataType`]) the dictionary gives each AVP.
//! - [`message`]: the message (RFC 6733 §3): header, owned AVPs with typed
//!   constructors and accessors, encoding, a bounded decoder that validates
//!   known AVPs against the generated dictionary
//!   ([`crate::dictionary::diameter`]), TCP framing ([`frame_len`]), and the
//!   Result-Code each decoding error calls for.

pub mod avp;
pub mod message;
pub mod peer;

pub use avp::{
    encoded_len, parse_avps, parse_avps_capped, push_avp, Avp, AvpDef, AvpError, DataType, AVP_FLAG_MANDATORY,
    AVP_FLAG_PROTECTED, AVP_FLAG_RESERVED, AVP_FLAG_VENDOR, MAX_AVPS, MAX_AVP_DATA_LEN,
};
pub use message::{
    failed_avp, frame_len, Limits, Message, MessageError, OwnedAvp, FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST,
    FLAG_RESERVED, FLAG_RETRANSMIT, HEADER_LEN, MAX_LENGTH, VERSION,
};
