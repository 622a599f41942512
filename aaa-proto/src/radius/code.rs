//! RADIUS packet codes.

use std::fmt;

/// The packet codes eapay sends or accepts (RFC 2865 §3, 2866 §3, 5997).
///
/// CoA and Disconnect (RFC 5176) are absent on purpose: the server never
/// sends them, so receiving one is treated like any unknown code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    AccessRequest = 1,
    AccessAccept = 2,
    AccessReject = 3,
    AccountingRequest = 4,
    AccountingResponse = 5,
    AccessChallenge = 11,
    StatusServer = 12,
    StatusClient = 13,
}

impl Code {
    /// The code for a wire value, if this codec knows it.
    pub const fn from_u8(v: u8) -> Option<Code> {
        Some(match v {
            1 => Code::AccessRequest,
            2 => Code::AccessAccept,
            3 => Code::AccessReject,
            4 => Code::AccountingRequest,
            5 => Code::AccountingResponse,
            11 => Code::AccessChallenge,
            12 => Code::StatusServer,
            13 => Code::StatusClient,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name FreeRADIUS and Wireshark print, so logs can be grepped alike.
    pub const fn name(self) -> &'static str {
        match self {
            Code::AccessRequest => "Access-Request",
            Code::AccessAccept => "Access-Accept",
            Code::AccessReject => "Access-Reject",
            Code::AccountingRequest => "Accounting-Request",
            Code::AccountingResponse => "Accounting-Response",
            Code::AccessChallenge => "Access-Challenge",
            Code::StatusServer => "Status-Server",
            Code::StatusClient => "Status-Client",
        }
    }

    /// Whether a client sends this code (and a server answers it).
    pub const fn is_request(self) -> bool {
        matches!(self, Code::AccessRequest | Code::AccountingRequest | Code::StatusServer | Code::StatusClient)
    }

    /// Whether a server sends this code in answer to a request.
    pub const fn is_response(self) -> bool {
        !self.is_request()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_or_is_unknown() {
        let mut known = 0;
        for v in 0..=255u8 {
            if let Some(c) = Code::from_u8(v) {
                assert_eq!(c.as_u8(), v);
                assert_ne!(c.is_request(), c.is_response());
                known += 1;
            }
        }
        assert_eq!(known, 8);
        assert_eq!(Code::from_u8(43), None);
        assert_eq!(Code::AccessChallenge.to_string(), "Access-Challenge");
    }
}
