//! Attribute numbers, generated at build time from `dictionaries/radius/`.
//!
//! `rfc` holds the standard attribute space, `eapay` and `microsoft` the
//! vendor spaces (`VENDOR_ID`, one `u8` per vendor type). Attributes with
//! VALUEs in the dictionary also get an enum, e.g. [`eapay::DeclineCode`].
//!
//! [`diameter`] comes from `dictionaries/diameter/base.xml` (RFC 6733 base,
//! RFC 7155 NASREQ and RFC 4072 Diameter EAP, in Wireshark's format):
//! [`diameter::avp`] (`u32` AVP codes), [`diameter::command`],
//! [`diameter::application`], the table [`diameter::AVPS`] of data types the
//! message decoder validates against (with eapay.xml's vendor AVPs), looked up
//! by [`diameter::find`], and one enum per AVP with values, e.g.
//! [`diameter::ResultCode`], whose variants drop the `DIAMETER_` prefix
//! (`ResultCode::MultiRoundAuth`) while `name()` keeps the dictionary name.

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

    #[test]
    fn diameter_numbers_come_from_the_dictionary() {
        use diameter::{application, avp, command, DataType, ResultCode};
        assert_eq!(avp::ORIGIN_HOST, 264);
        assert_eq!(avp::ORIGIN_REALM, 296);
        assert_eq!(avp::RESULT_CODE, 268);
        assert_eq!(avp::EAP_PAYLOAD, 462);
        assert_eq!(avp::PROXY_STATE, 33);
        assert_eq!(avp::EVENT_TIMESTAMP, 55);
        assert_eq!(command::CAPABILITIES_EXCHANGE, 257);
        assert_eq!(command::DIAMETER_EAP, 268);
        assert_eq!(command::DISCONNECT_PEER, 282);
        assert_eq!(application::COMMON, 0);
        assert_eq!(application::NASREQ, 1);
        assert_eq!(application::ACCOUNTING, 3);
        assert_eq!(application::EAP, 5);
        assert_eq!(application::RELAY, 0xffff_ffff);
        assert_eq!(ResultCode::MultiRoundAuth.value(), 1001);
        assert_eq!(ResultCode::from_value(5017), Some(ResultCode::NoCommonSecurity));
        assert_eq!(ResultCode::from_value(2003), None);
        assert_eq!(ResultCode::Success.name(), "DIAMETER_SUCCESS");
        assert_eq!(diameter::DisconnectCause::DoNotWantToTalkToYou.value(), 2);
        assert_eq!(diameter::AuthRequestType::AuthorizeAuthenticate.value(), 3);
        assert_eq!(diameter::AccountingRecordType::StopRecord.value(), 4);
        assert_eq!(diameter::AuthSessionState::NoStateMaintained.value(), 1);
        assert_eq!(diameter::InbandSecurityId::Tls.value(), 1);

        let host = diameter::find(avp::ORIGIN_HOST, None).unwrap();
        assert_eq!((host.name, host.data_type, host.mandatory), ("Origin-Host", DataType::DiameterIdentity, true));
        assert_eq!(diameter::find(avp::HOST_IP_ADDRESS, None).unwrap().data_type, DataType::Address);
        assert_eq!(diameter::find(avp::PROXY_INFO, None).unwrap().data_type, DataType::Grouped);
        assert!(!diameter::find(avp::PRODUCT_NAME, None).unwrap().mandatory);
        assert_eq!(diameter::find(avp::ORIGIN_HOST, Some(eapay::VENDOR_ID)), None);
        // The eapay vendor AVPs carry their Diameter types, under the RADIUS numbers.
        let amount = diameter::find(u32::from(eapay::AMOUNT), Some(eapay::VENDOR_ID)).unwrap();
        assert_eq!((amount.name, amount.data_type, amount.mandatory), ("Eapay-Amount", DataType::Integer64, false));
        assert_eq!(diameter::find(u32::from(eapay::AMOUNT), None), None);
        // Every entry is found under its own number.
        for def in diameter::AVPS {
            assert_eq!(diameter::find(def.code, def.vendor_id), Some(def), "{}", def.name);
        }
    }
}
