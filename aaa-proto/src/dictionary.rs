//! Attribute numbers, generated at build time from `dictionaries/radius/`.
//!
//! `rfc` holds the standard attribute space, `eapay` and `microsoft` the
//! vendor spaces (`VENDOR_ID`, one `u8` per vendor type). Attributes with
//! VALUEs in the dictionary also get an enum, e.g. [`eapay::DeclineCode`].

/// How an attribute's value is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// UTF-8 text, 1..253 bytes.
    String,
    /// Opaque bytes.
    Octets,
    /// 32-bit unsigned big-endian.
    Integer,
    /// 64-bit unsigned big-endian (RFC 6929 §2.5); eapay money and times.
    Integer64,
    /// IPv4 address.
    IpAddr,
    /// Seconds since the Unix epoch, 32 bits.
    Date,
    /// Vendor-Specific container.
    Vsa,
}

/// One dictionary entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDef {
    /// The dictionary name, e.g. `Eapay-Amount`.
    pub name: &'static str,
    /// The attribute (or vendor) type.
    pub code: u8,
    /// The value encoding.
    pub data_type: DataType,
}

include!(concat!(env!("OUT_DIR"), "/dictionary.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_from_the_dictionary() {
        assert_eq!(eapay::VENDOR_ID, 32473);
        assert_eq!(eapay::TRANSACTION_ID, 1);
        assert_eq!(eapay::AUTH_METHOD, 15);
        assert_eq!(rfc::EAP_MESSAGE, 79);
        assert_eq!(rfc::MESSAGE_AUTHENTICATOR, 80);
        assert_eq!(microsoft::MS_MPPE_RECV_KEY, 17);
        assert_eq!(eapay::DeclineCode::SuspectedFraud.value(), 59);
        assert_eq!(eapay::DeclineCode::from_value(94), Some(eapay::DeclineCode::DuplicateTransaction));
        assert_eq!(eapay::DeclineCode::from_value(1), None);
        assert_eq!(eapay::SettlementAction::Reverse.name(), "Reverse");
        assert_eq!(eapay::ATTRIBUTES.len(), 17);
        assert_eq!(eapay::PAN_TOKEN, 17);
    }
}
