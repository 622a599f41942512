//! Diameter (RFC 6733).
//!
//! - [`avp`]: the AVP codec (RFC 6733 §4.1). EAP-TTLS (RFC 5281 §10) carries
//!   its inner attributes in the same layout, so the tunnel and the Diameter
//!   server share this one implementation of the wire format.

pub mod avp;

pub use avp::{
    encoded_len, parse_avps, parse_avps_capped, push_avp, Avp, AvpError, AVP_FLAG_MANDATORY, AVP_FLAG_PROTECTED,
    AVP_FLAG_RESERVED, AVP_FLAG_VENDOR, MAX_AVPS, MAX_AVP_DATA_LEN,
};
