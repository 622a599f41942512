//! The attributes inside the EAP-TTLS tunnel (RFC 5281 §10, §11; DESIGN.md
//! §3, §4), in the Diameter AVP layout of [`aaa_proto::diameter`].
//!
//! Peer to server ([`PeerAvps`]):
//!
//! - User-Name (1) and, for inner PAP, User-Password (2), NUL-padded to a
//!   multiple of 16 octets (RFC 5281 §11.2.5; the padding is stripped on
//!   receipt);
//! - EAP-Message (79) for inner EAP (several are concatenated on receipt, as
//!   hostapd and FreeRADIUS do);
//! - the card's payment confirmation: one Eapay vendor AVP per canonical
//!   payment detail (codes 1..=7, same code and value as the RADIUS
//!   sub-attribute), Eapay-Card-Signature (16) and Eapay-Pan-Token (17).
//!   The server rebuilds the canonical bytes in ascending code order, so they
//!   compare equal to the terminal's `PaymentDetails::canonical()` whatever
//!   order the card wrote them in.
//!
//! Server to peer ([`ServerAvps`]):
//!
//! - EAP-Message (79), Reply-Message (18);
//! - the payment result: Eapay-Transaction-Id (1), then Eapay-Approval-Code
//!   (8) and Eapay-Approved-Amount (11), or Eapay-Decline-Code (9). The peer
//!   turns them back into the [`PaymentResult::encode`] bytes every other
//!   method delivers.
//!
//! Standard AVPs carry the M bit (RFC 5281 §10.2), Eapay AVPs the V bit and
//! the vendor id with M clear (DESIGN.md §3). On receipt an AVP this side does
//! not know is ignored unless its M bit is set, which fails the message (RFC
//! 5281 §10.1); known AVPs are taken whatever their M bit.

use std::fmt;

use aaa_proto::diameter::{self, Avp, AvpError, AVP_FLAG_MANDATORY};
use aaa_proto::dictionary::{eapay, rfc};
use aaa_proto::payment::{PaymentAttributeError, PaymentDetails, PaymentOutcome, PaymentResult};

use crate::method::Pin;

/// User-Name (RFC 2865 §5.1).
pub const USER_NAME: u32 = rfc::USER_NAME as u32;
/// User-Password, in the tunnel the cleartext PAP password.
pub const USER_PASSWORD: u32 = rfc::USER_PASSWORD as u32;
/// Reply-Message (RFC 2865 §5.18).
pub const REPLY_MESSAGE: u32 = rfc::REPLY_MESSAGE as u32;
/// EAP-Message (RFC 3579 §3.1).
pub const EAP_MESSAGE: u32 = rfc::EAP_MESSAGE as u32;
/// Octets of an Eapay-Pan-Token (an HMAC-SHA-256 value, DESIGN.md §5).
pub const PAN_TOKEN_LEN: usize = 32;
/// Longest PAP password accepted or sent, padding included: RADIUS's limit
/// for User-Password (RFC 2865 §5.2), far above any PIN.
pub const MAX_PAP_PASSWORD: usize = 128;
/// Longest card signature accepted (a P-256 DER signature is at most 72
/// octets, an RSA-4096 one 512).
pub const MAX_SIGNATURE: usize = 1024;

/// The Eapay codes of the canonical payment details, ascending.
const DETAIL_CODES: [u8; 7] = [
    eapay::TRANSACTION_ID,
    eapay::MERCHANT_ID,
    eapay::AMOUNT,
    eapay::CURRENCY,
    eapay::INSTALLMENTS,
    eapay::TERMINAL_NONCE,
    eapay::TERMINAL_TIME,
];
/// The Eapay codes of a payment result, ascending (which is also the order of
/// [`PaymentResult::encode`]).
const RESULT_CODES: [u8; 4] =
    [eapay::TRANSACTION_ID, eapay::APPROVAL_CODE, eapay::DECLINE_CODE, eapay::APPROVED_AMOUNT];
/// A canonical sub-attribute's value fits a one-octet length that counts its
/// two-octet header.
const MAX_TLV_VALUE: usize = 253;

/// Why tunnel AVPs cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The AVP layout itself is broken.
    #[error("inner AVPs: {0}")]
    Avp(#[from] AvpError),
    /// An AVP with the M bit that this side does not support (RFC 5281 §10.1).
    #[error("unsupported mandatory AVP {code} of vendor {vendor}")]
    UnknownMandatory {
        /// The AVP code.
        code: u32,
        /// The Vendor-Id, 0 for the IETF space.
        vendor: u32,
    },
    /// An AVP that may appear once appears again.
    #[error("{0} appears more than once")]
    Duplicated(&'static str),
    /// A required AVP is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A value of the wrong length or content.
    #[error("{name}: {why}")]
    Malformed {
        /// The AVP's dictionary name.
        name: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The payment details or result the AVPs spell are invalid.
    #[error("payment: {0}")]
    Payment(#[from] PaymentAttributeError),
}

/// The card's payment confirmation as it travels in the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfirmation {
    /// The canonical payment details (DESIGN.md §3).
    pub details: Vec<u8>,
    /// The card's signature over them (`tls::confirmation::sign`), DER.
    pub signature: Option<Vec<u8>>,
    /// The card's PAN-token; sent only with a signature.
    pub pan_token: Option<[u8; PAN_TOKEN_LEN]>,
}

/// What the peer sends inside the tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerAvps {
    /// User-Name: the inner identity (PAP: the card id, with or without realm).
    pub user_name: Option<String>,
    /// User-Password: the PAP password (the card's PIN), padding stripped.
    pub password: Option<Pin>,
    /// EAP-Message: one inner EAP packet.
    pub eap_message: Option<Vec<u8>>,
    /// The payment confirmation, if the card sends one.
    pub confirmation: Option<TunnelConfirmation>,
}

/// What the server sends inside the tunnel.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServerAvps {
    /// EAP-Message: one inner EAP packet.
    pub eap_message: Option<Vec<u8>>,
    /// The payment result, as [`PaymentResult::encode`] bytes.
    pub result: Option<Vec<u8>>,
    /// Reply-Message, text for the card's log.
    pub reply_message: Option<String>,
}

impl fmt::Debug for ServerAvps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAvps")
            .field("eap_message_len", &self.eap_message.as_ref().map(Vec::len))
            .field("result", &self.result.as_ref().map(|r| PaymentResult::decode(r).ok()))
            .field("reply_message", &self.reply_message)
            .finish()
    }
}

/// The dictionary name of an Eapay code, for errors.
fn eapay_name(code: u8) -> &'static str {
    eapay::ATTRIBUTES.iter().find(|d| d.code == code).map_or("Eapay attribute", |d| d.name)
}

fn push_standard(out: &mut Vec<u8>, code: u32, data: &[u8]) -> Result<(), TunnelError> {
    Ok(diameter::push_avp(out, code, AVP_FLAG_MANDATORY, None, data)?)
}

fn push_vendor(out: &mut Vec<u8>, vendor_id: u32, code: u8, data: &[u8]) -> Result<(), TunnelError> {
    Ok(diameter::push_avp(out, u32::from(code), 0, Some(vendor_id), data)?)
}

/// Sets a once-only slot.
fn once<'a>(slot: &mut Option<&'a [u8]>, value: &'a [u8], name: &'static str) -> Result<(), TunnelError> {
    match slot.replace(value) {
        Some(_) => Err(TunnelError::Duplicated(name)),
        None => Ok(()),
    }
}

/// An AVP this side does not handle: ignored unless mandatory.
fn unknown(avp: &Avp<'_>) -> Result<(), TunnelError> {
    if avp.is_mandatory() {
        return Err(TunnelError::UnknownMandatory { code: avp.code, vendor: avp.vendor_id.unwrap_or(0) });
    }
    Ok(())
}

/// The Eapay code of `avp` if it is one of ours.
fn eapay_code(avp: &Avp<'_>, vendor_id: u32) -> Option<u8> {
    if avp.vendor_id != Some(vendor_id) {
        return None;
    }
    u8::try_from(avp.code).ok()
}

/// Canonical sub-attributes (type, length, value) from present values in
/// ascending code order.
fn tlvs(values: &[(u8, &[u8])]) -> Result<Vec<u8>, TunnelError> {
    let mut out = Vec::new();
    for (code, value) in values {
        if value.len() > MAX_TLV_VALUE {
            return Err(TunnelError::Malformed { name: eapay_name(*code), why: "longer than a sub-attribute holds" });
        }
        out.push(*code);
        out.push((value.len() + 2) as u8);
        out.extend_from_slice(value);
    }
    Ok(out)
}

/// Splits canonical sub-attributes back into (type, value).
fn split_tlvs(mut bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, TunnelError> {
    let mut out = Vec::new();
    while let [code, len, ref rest @ ..] = *bytes {
        let value = usize::from(len)
            .checked_sub(2)
            .and_then(|n| rest.get(..n))
            .ok_or(TunnelError::Payment(PaymentAttributeError::Truncated))?;
        out.push((code, value));
        bytes = &rest[value.len()..];
    }
    if !bytes.is_empty() {
        return Err(TunnelError::Payment(PaymentAttributeError::Truncated));
    }
    Ok(out)
}

/// Strips the NUL padding of a PAP password and checks it.
fn pap_password(padded: &[u8]) -> Result<Pin, TunnelError> {
    const NAME: &str = "User-Password";
    if padded.len() > MAX_PAP_PASSWORD {
        return Err(TunnelError::Malformed { name: NAME, why: "longer than 128 octets" });
    }
    let end = padded.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let text =
        std::str::from_utf8(&padded[..end]).map_err(|_| TunnelError::Malformed { name: NAME, why: "not UTF-8" })?;
    Ok(Pin(text.to_string()))
}

impl PeerAvps {
    /// The AVPs in the order a TTLS client writes them: User-Name,
    /// User-Password, EAP-Message, then the confirmation.
    pub fn encode(&self, vendor_id: u32) -> Result<Vec<u8>, TunnelError> {
        let mut out = Vec::new();
        if let Some(name) = &self.user_name {
            push_standard(&mut out, USER_NAME, name.as_bytes())?;
        }
        if let Some(Pin(pin)) = &self.password {
            // RFC 5281 §11.2.5: NUL-padded to a multiple of 16 octets (an
            // empty password becomes 16 NULs, as wpa_supplicant sends it).
            let padded_len = pin.len().div_ceil(16).max(1) * 16;
            if padded_len > MAX_PAP_PASSWORD || pin.as_bytes().contains(&0) {
                return Err(TunnelError::Malformed { name: "User-Password", why: "over 128 octets or holds a NUL" });
            }
            let mut padded = pin.as_bytes().to_vec();
            padded.resize(padded_len, 0);
            push_standard(&mut out, USER_PASSWORD, &padded)?;
        }
        if let Some(eap) = &self.eap_message {
            push_standard(&mut out, EAP_MESSAGE, eap)?;
        }
        if let Some(c) = &self.confirmation {
            let mut seen = Vec::new();
            for (code, value) in split_tlvs(&c.details)? {
                if !DETAIL_CODES.contains(&code) {
                    return Err(TunnelError::Payment(PaymentAttributeError::Unexpected(code)));
                }
                if seen.contains(&code) {
                    return Err(TunnelError::Duplicated(eapay_name(code)));
                }
                seen.push(code);
                push_vendor(&mut out, vendor_id, code, value)?;
            }
            if c.signature.is_none() && c.pan_token.is_some() {
                return Err(TunnelError::Missing("Eapay-Card-Signature"));
            }
            if let Some(signature) = &c.signature {
                push_vendor(&mut out, vendor_id, eapay::CARD_SIGNATURE, signature)?;
            }
            if let Some(token) = &c.pan_token {
                push_vendor(&mut out, vendor_id, eapay::PAN_TOKEN, token)?;
            }
        }
        Ok(out)
    }

    /// Reads what a peer sent; Eapay AVPs are those of `vendor_id`.
    pub fn decode(bytes: &[u8], vendor_id: u32) -> Result<Self, TunnelError> {
        let mut user_name = None;
        let mut password = None;
        let mut eap: Option<Vec<u8>> = None;
        let mut details: [Option<&[u8]>; 7] = [None; 7];
        let mut signature = None;
        let mut pan_token = None;
        for avp in diameter::parse_avps(bytes)? {
            if avp.vendor_id.is_none() {
                match avp.code {
                    USER_NAME => once(&mut user_name, avp.data, "User-Name")?,
                    USER_PASSWORD => once(&mut password, avp.data, "User-Password")?,
                    EAP_MESSAGE => eap.get_or_insert_with(Vec::new).extend_from_slice(avp.data),
                    _ => unknown(&avp)?,
                }
                continue;
            }
            match eapay_code(&avp, vendor_id) {
                Some(code) if DETAIL_CODES.contains(&code) => {
                    let i = DETAIL_CODES.iter().position(|c| *c == code).unwrap_or_default();
                    once(&mut details[i], avp.data, eapay_name(code))?
                }
                Some(eapay::CARD_SIGNATURE) => once(&mut signature, avp.data, "Eapay-Card-Signature")?,
                Some(eapay::PAN_TOKEN) => once(&mut pan_token, avp.data, "Eapay-Pan-Token")?,
                _ => unknown(&avp)?,
            }
        }
        let user_name = user_name
            .map(|n| std::str::from_utf8(n).map(str::to_string))
            .transpose()
            .map_err(|_| TunnelError::Malformed { name: "User-Name", why: "not UTF-8" })?;
        let password = password.map(pap_password).transpose()?;
        let confirmation = confirmation_from(details, signature, pan_token)?;
        Ok(Self { user_name, password, eap_message: eap, confirmation })
    }
}

/// The confirmation from its AVPs: none at all, or all seven details (then
/// optionally a signature, and a PAN-token only with a signature).
fn confirmation_from(
    details: [Option<&[u8]>; 7],
    signature: Option<&[u8]>,
    pan_token: Option<&[u8]>,
) -> Result<Option<TunnelConfirmation>, TunnelError> {
    if details.iter().all(Option::is_none) {
        return match (signature, pan_token) {
            (None, None) => Ok(None),
            _ => Err(TunnelError::Missing("Eapay-Transaction-Id")),
        };
    }
    let mut values = Vec::with_capacity(7);
    for (code, value) in DETAIL_CODES.iter().zip(details) {
        values.push((*code, value.ok_or(TunnelError::Missing(eapay_name(*code)))?));
    }
    let canonical = tlvs(&values)?;
    PaymentDetails::from_canonical(&canonical)?;
    if let Some(sig) = signature {
        if sig.is_empty() || sig.len() > MAX_SIGNATURE {
            return Err(TunnelError::Malformed { name: "Eapay-Card-Signature", why: "empty or over 1024 octets" });
        }
    }
    let pan_token = match pan_token {
        None => None,
        Some(_) if signature.is_none() => return Err(TunnelError::Missing("Eapay-Card-Signature")),
        Some(t) => Some(
            <[u8; PAN_TOKEN_LEN]>::try_from(t)
                .map_err(|_| TunnelError::Malformed { name: "Eapay-Pan-Token", why: "must be 32 octets" })?,
        ),
    };
    Ok(Some(TunnelConfirmation { details: canonical, signature: signature.map(<[u8]>::to_vec), pan_token }))
}

impl ServerAvps {
    /// The AVPs: EAP-Message, Reply-Message, then the result.
    pub fn encode(&self, vendor_id: u32) -> Result<Vec<u8>, TunnelError> {
        let mut out = Vec::new();
        if let Some(eap) = &self.eap_message {
            push_standard(&mut out, EAP_MESSAGE, eap)?;
        }
        if let Some(text) = &self.reply_message {
            push_standard(&mut out, REPLY_MESSAGE, text.as_bytes())?;
        }
        if let Some(result) = &self.result {
            let result = PaymentResult::decode(result)?;
            push_vendor(&mut out, vendor_id, eapay::TRANSACTION_ID, result.transaction_id.as_bytes())?;
            match result.outcome {
                PaymentOutcome::Approved { approval_code, approved_amount } => {
                    push_vendor(&mut out, vendor_id, eapay::APPROVAL_CODE, approval_code.as_bytes())?;
                    push_vendor(&mut out, vendor_id, eapay::APPROVED_AMOUNT, &approved_amount.to_be_bytes())?;
                }
                PaymentOutcome::Declined { code } => {
                    push_vendor(&mut out, vendor_id, eapay::DECLINE_CODE, &code.to_be_bytes())?
                }
            }
        }
        Ok(out)
    }

    /// Reads what a server sent; Eapay AVPs are those of `vendor_id`.
    pub fn decode(bytes: &[u8], vendor_id: u32) -> Result<Self, TunnelError> {
        let mut eap: Option<Vec<u8>> = None;
        let mut reply = None;
        let mut result: [Option<&[u8]>; 4] = [None; 4];
        for avp in diameter::parse_avps(bytes)? {
            if avp.vendor_id.is_none() {
                match avp.code {
                    EAP_MESSAGE => eap.get_or_insert_with(Vec::new).extend_from_slice(avp.data),
                    REPLY_MESSAGE => once(&mut reply, avp.data, "Reply-Message")?,
                    _ => unknown(&avp)?,
                }
                continue;
            }
            match eapay_code(&avp, vendor_id).and_then(|c| RESULT_CODES.iter().position(|r| *r == c)) {
                Some(i) => once(&mut result[i], avp.data, eapay_name(RESULT_CODES[i]))?,
                None => unknown(&avp)?,
            }
        }
        let result = if result.iter().all(Option::is_none) {
            None
        } else {
            let present: Vec<(u8, &[u8])> =
                RESULT_CODES.iter().zip(result).filter_map(|(c, v)| v.map(|v| (*c, v))).collect();
            Some(PaymentResult::decode(&tlvs(&present)?)?.encode())
        };
        let reply_message = reply.map(|r| String::from_utf8_lossy(r).into_owned());
        Ok(Self { eap_message: eap, result, reply_message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aaa_proto::diameter::{push_avp, AVP_FLAG_VENDOR};

    const VENDOR: u32 = eapay::VENDOR_ID;

    fn details() -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T-1".into(),
            merchant_id: "M-42".into(),
            amount: 1250,
            currency: 978,
            installments: 0,
            terminal_nonce: *b"0123456789abcdef",
            terminal_time_ms: 1_700_000_000_000,
        }
    }

    fn confirmation(signature: bool, pan: bool) -> TunnelConfirmation {
        TunnelConfirmation {
            details: details().canonical(),
            signature: signature.then(|| vec![0x30; 70]),
            pan_token: pan.then_some([7; 32]),
        }
    }

    fn approved() -> Vec<u8> {
        PaymentResult {
            transaction_id: "T-1".into(),
            outcome: PaymentOutcome::Approved { approval_code: "A1B2C3".into(), approved_amount: 1250 },
        }
        .encode()
    }

    fn declined() -> Vec<u8> {
        PaymentResult { transaction_id: "T-1".into(), outcome: PaymentOutcome::Declined { code: 51 } }.encode()
    }

    #[test]
    fn pap_round_trip_and_padding() {
        for pin in ["", "1234", "0123456789abcdef", "0123456789abcdef0"] {
            let sent = PeerAvps {
                user_name: Some("c0ffee@issuer.example".into()),
                password: Some(Pin(pin.into())),
                ..PeerAvps::default()
            };
            let wire = sent.encode(VENDOR).unwrap();
            let avps = diameter::parse_avps(&wire).unwrap();
            assert_eq!(avps.len(), 2);
            assert!(avps.iter().all(|a| a.is_mandatory() && a.vendor_id.is_none()));
            assert!(avps[0].is(USER_NAME, None) && avps[1].is(USER_PASSWORD, None));
            let padded = avps[1].data;
            assert_eq!(padded.len() % 16, 0, "{pin:?}");
            assert_eq!(padded.len(), pin.len().div_ceil(16).max(1) * 16);
            assert!(padded[pin.len()..].iter().all(|b| *b == 0));
            assert_eq!(PeerAvps::decode(&wire, VENDOR).unwrap(), sent);
        }
        // A peer that sends the password unpadded is read all the same.
        let mut wire = Vec::new();
        push_avp(&mut wire, USER_PASSWORD, AVP_FLAG_MANDATORY, None, b"4321").unwrap();
        assert_eq!(PeerAvps::decode(&wire, VENDOR).unwrap().password, Some(Pin("4321".into())));
        // Too long, not UTF-8, or with a NUL inside.
        let mut wire = Vec::new();
        push_avp(&mut wire, USER_PASSWORD, AVP_FLAG_MANDATORY, None, &[b'1'; 129]).unwrap();
        assert!(matches!(PeerAvps::decode(&wire, VENDOR), Err(TunnelError::Malformed { name: "User-Password", .. })));
        let mut wire = Vec::new();
        push_avp(&mut wire, USER_PASSWORD, AVP_FLAG_MANDATORY, None, &[0xff, 0, 0]).unwrap();
        assert!(matches!(PeerAvps::decode(&wire, VENDOR), Err(TunnelError::Malformed { name: "User-Password", .. })));
        let long = PeerAvps { password: Some(Pin("9".repeat(129))), ..PeerAvps::default() };
        assert!(long.encode(VENDOR).is_err());
        let nul = PeerAvps { password: Some(Pin("12\u{0}4".into())), ..PeerAvps::default() };
        assert!(nul.encode(VENDOR).is_err());
    }

    #[test]
    fn confirmation_round_trips_with_and_without_signature_and_token() {
        for (sig, pan) in [(true, true), (true, false), (false, false)] {
            let sent = PeerAvps {
                eap_message: Some(vec![2, 0, 0, 6, 1, b'x']),
                confirmation: Some(confirmation(sig, pan)),
                ..PeerAvps::default()
            };
            let wire = sent.encode(VENDOR).unwrap();
            let avps = diameter::parse_avps(&wire).unwrap();
            assert!(avps[0].is(EAP_MESSAGE, None) && avps[0].is_mandatory());
            for a in &avps[1..] {
                assert_eq!(a.vendor_id, Some(VENDOR));
                assert_eq!(a.flags, AVP_FLAG_VENDOR, "vendor AVPs: V set, M clear");
            }
            assert_eq!(avps.len(), 1 + 7 + usize::from(sig) + usize::from(pan));
            let back = PeerAvps::decode(&wire, VENDOR).unwrap();
            assert_eq!(back, sent);
            assert_eq!(back.confirmation.unwrap().details, details().canonical());
        }
        // A signature without details, or a token without a signature, is not a confirmation.
        let mut wire = Vec::new();
        push_avp(&mut wire, u32::from(eapay::CARD_SIGNATURE), 0, Some(VENDOR), &[1; 8]).unwrap();
        assert_eq!(PeerAvps::decode(&wire, VENDOR), Err(TunnelError::Missing("Eapay-Transaction-Id")));
        let no_sig = PeerAvps { confirmation: Some(confirmation(false, true)), ..PeerAvps::default() };
        assert_eq!(no_sig.encode(VENDOR), Err(TunnelError::Missing("Eapay-Card-Signature")));
        let mut wire =
            PeerAvps { confirmation: Some(confirmation(false, false)), ..PeerAvps::default() }.encode(VENDOR).unwrap();
        push_avp(&mut wire, u32::from(eapay::PAN_TOKEN), 0, Some(VENDOR), &[7; 32]).unwrap();
        assert_eq!(PeerAvps::decode(&wire, VENDOR), Err(TunnelError::Missing("Eapay-Card-Signature")));
    }

    /// The confirmation's detail AVPs as (code, value), to reorder or damage.
    fn detail_avps() -> Vec<(u8, Vec<u8>)> {
        split_tlvs(&details().canonical()).unwrap().into_iter().map(|(c, v)| (c, v.to_vec())).collect()
    }

    fn wire_of(avps: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut wire = Vec::new();
        for (code, value) in avps {
            push_avp(&mut wire, u32::from(*code), 0, Some(VENDOR), value).unwrap();
        }
        wire
    }

    #[test]
    fn details_in_any_order_give_the_canonical_bytes() {
        let mut avps = detail_avps();
        avps.reverse();
        avps.swap(1, 4);
        let back = PeerAvps::decode(&wire_of(&avps), VENDOR).unwrap();
        assert_eq!(back.confirmation.unwrap().details, details().canonical());
    }

    #[test]
    fn missing_duplicate_and_bad_detail_avps() {
        for i in 0..7 {
            let mut avps = detail_avps();
            let (code, _) = avps.remove(i);
            assert_eq!(PeerAvps::decode(&wire_of(&avps), VENDOR), Err(TunnelError::Missing(eapay_name(code))));
            let mut twice = detail_avps();
            twice.push(twice[i].clone());
            assert_eq!(PeerAvps::decode(&wire_of(&twice), VENDOR), Err(TunnelError::Duplicated(eapay_name(code))));
        }
        let mut short_amount = detail_avps();
        short_amount[2].1 = vec![0, 0, 4, 0xe2];
        assert!(matches!(PeerAvps::decode(&wire_of(&short_amount), VENDOR), Err(TunnelError::Payment(_))));
        let mut long_id = detail_avps();
        long_id[0].1 = vec![b'x'; 300];
        assert!(matches!(PeerAvps::decode(&wire_of(&long_id), VENDOR), Err(TunnelError::Malformed { .. })));
        let mut bad_token = wire_of(&detail_avps());
        push_avp(&mut bad_token, u32::from(eapay::CARD_SIGNATURE), 0, Some(VENDOR), &[1; 8]).unwrap();
        push_avp(&mut bad_token, u32::from(eapay::PAN_TOKEN), 0, Some(VENDOR), &[7; 31]).unwrap();
        assert!(matches!(
            PeerAvps::decode(&bad_token, VENDOR),
            Err(TunnelError::Malformed { name: "Eapay-Pan-Token", .. })
        ));
        // Details of another vendor are not ours: ignored (M clear).
        let mut other = Vec::new();
        for (code, value) in detail_avps() {
            push_avp(&mut other, u32::from(code), 0, Some(VENDOR + 1), &value).unwrap();
        }
        assert_eq!(PeerAvps::decode(&other, VENDOR).unwrap(), PeerAvps::default());
        // Encoding refuses details that are not canonical sub-attributes.
        let bad = TunnelConfirmation { details: vec![1, 5, b'x'], signature: None, pan_token: None };
        assert!(PeerAvps { confirmation: Some(bad), ..PeerAvps::default() }.encode(VENDOR).is_err());
        let foreign = TunnelConfirmation { details: vec![9, 3, b'x'], signature: None, pan_token: None };
        assert!(PeerAvps { confirmation: Some(foreign), ..PeerAvps::default() }.encode(VENDOR).is_err());
    }

    #[test]
    fn standard_avp_rules() {
        // Duplicate User-Name.
        let mut wire = Vec::new();
        push_avp(&mut wire, USER_NAME, AVP_FLAG_MANDATORY, None, b"a").unwrap();
        push_avp(&mut wire, USER_NAME, AVP_FLAG_MANDATORY, None, b"b").unwrap();
        assert_eq!(PeerAvps::decode(&wire, VENDOR), Err(TunnelError::Duplicated("User-Name")));
        // EAP-Message split over several AVPs is concatenated.
        let mut wire = Vec::new();
        push_avp(&mut wire, EAP_MESSAGE, AVP_FLAG_MANDATORY, None, &[2, 7, 0]).unwrap();
        push_avp(&mut wire, EAP_MESSAGE, AVP_FLAG_MANDATORY, None, &[6, 1, b'z']).unwrap();
        assert_eq!(PeerAvps::decode(&wire, VENDOR).unwrap().eap_message, Some(vec![2, 7, 0, 6, 1, b'z']));
        // Unknown AVPs: ignored without M, fatal with it, in either space.
        let mut optional = Vec::new();
        push_avp(&mut optional, 60, 0, None, b"chap").unwrap();
        push_avp(&mut optional, 12, 0, Some(VENDOR), b"x").unwrap();
        assert_eq!(PeerAvps::decode(&optional, VENDOR).unwrap(), PeerAvps::default());
        assert_eq!(ServerAvps::decode(&optional, VENDOR).unwrap(), ServerAvps::default());
        let mut mandatory = Vec::new();
        push_avp(&mut mandatory, 60, AVP_FLAG_MANDATORY, None, b"chap").unwrap();
        assert_eq!(PeerAvps::decode(&mandatory, VENDOR), Err(TunnelError::UnknownMandatory { code: 60, vendor: 0 }));
        assert_eq!(ServerAvps::decode(&mandatory, VENDOR), Err(TunnelError::UnknownMandatory { code: 60, vendor: 0 }));
        let mut vendor_m = Vec::new();
        push_avp(&mut vendor_m, 1, AVP_FLAG_MANDATORY, Some(311), b"ms").unwrap();
        assert_eq!(PeerAvps::decode(&vendor_m, VENDOR), Err(TunnelError::UnknownMandatory { code: 1, vendor: 311 }));
        // A User-Name that is not UTF-8.
        let mut wire = Vec::new();
        push_avp(&mut wire, USER_NAME, AVP_FLAG_MANDATORY, None, &[0xc3]).unwrap();
        assert!(matches!(PeerAvps::decode(&wire, VENDOR), Err(TunnelError::Malformed { name: "User-Name", .. })));
        // Broken AVP framing.
        assert!(matches!(PeerAvps::decode(&[0, 0, 0, 1, 0x40, 0, 0, 99], VENDOR), Err(TunnelError::Avp(_))));
        assert!(matches!(ServerAvps::decode(&[1, 2, 3], VENDOR), Err(TunnelError::Avp(_))));
        assert_eq!(PeerAvps::decode(&[], VENDOR).unwrap(), PeerAvps::default());
    }

    #[test]
    fn result_round_trips_through_the_vendor_avps() {
        for result in [approved(), declined()] {
            let sent = ServerAvps {
                eap_message: Some(vec![1, 3, 0, 5, 23]),
                result: Some(result.clone()),
                reply_message: Some("thank you".into()),
            };
            let wire = sent.encode(VENDOR).unwrap();
            let avps = diameter::parse_avps(&wire).unwrap();
            let vendor: Vec<u32> = avps.iter().filter(|a| a.vendor_id == Some(VENDOR)).map(|a| a.code).collect();
            if result == approved() {
                assert_eq!(vendor, [1, 8, 11]);
            } else {
                assert_eq!(vendor, [1, 9]);
            }
            assert!(avps.iter().filter(|a| a.vendor_id.is_some()).all(|a| !a.is_mandatory()));
            assert_eq!(ServerAvps::decode(&wire, VENDOR).unwrap(), sent);
        }
        // Any order of the result AVPs gives the same encoding.
        let mut wire = Vec::new();
        push_avp(&mut wire, u32::from(eapay::APPROVED_AMOUNT), 0, Some(VENDOR), &1250u64.to_be_bytes()).unwrap();
        push_avp(&mut wire, u32::from(eapay::APPROVAL_CODE), 0, Some(VENDOR), b"A1B2C3").unwrap();
        push_avp(&mut wire, u32::from(eapay::TRANSACTION_ID), 0, Some(VENDOR), b"T-1").unwrap();
        assert_eq!(ServerAvps::decode(&wire, VENDOR).unwrap().result, Some(approved()));
        // A result that does not decode is not sent.
        let bad = ServerAvps { result: Some(vec![1, 2]), ..ServerAvps::default() };
        assert!(matches!(bad.encode(VENDOR), Err(TunnelError::Payment(_))));
    }

    #[test]
    fn missing_duplicate_and_contradictory_result_avps() {
        let avp = |wire: &mut Vec<u8>, code: u8, value: &[u8]| {
            push_avp(wire, u32::from(code), 0, Some(VENDOR), value).unwrap();
        };
        let mut no_id = Vec::new();
        avp(&mut no_id, eapay::DECLINE_CODE, &51u32.to_be_bytes());
        assert!(matches!(ServerAvps::decode(&no_id, VENDOR), Err(TunnelError::Payment(_))));
        let mut no_outcome = Vec::new();
        avp(&mut no_outcome, eapay::TRANSACTION_ID, b"T-1");
        assert!(matches!(ServerAvps::decode(&no_outcome, VENDOR), Err(TunnelError::Payment(_))));
        let mut both = no_outcome.clone();
        avp(&mut both, eapay::DECLINE_CODE, &51u32.to_be_bytes());
        avp(&mut both, eapay::APPROVAL_CODE, b"A1B2C3");
        avp(&mut both, eapay::APPROVED_AMOUNT, &1u64.to_be_bytes());
        assert!(matches!(ServerAvps::decode(&both, VENDOR), Err(TunnelError::Payment(_))));
        let mut no_amount = no_outcome.clone();
        avp(&mut no_amount, eapay::APPROVAL_CODE, b"A1B2C3");
        assert!(matches!(ServerAvps::decode(&no_amount, VENDOR), Err(TunnelError::Payment(_))));
        let mut twice = no_outcome.clone();
        avp(&mut twice, eapay::TRANSACTION_ID, b"T-1");
        assert_eq!(ServerAvps::decode(&twice, VENDOR), Err(TunnelError::Duplicated("Eapay-Transaction-Id")));
        let mut short = no_outcome.clone();
        avp(&mut short, eapay::DECLINE_CODE, &[0, 51]);
        assert!(matches!(ServerAvps::decode(&short, VENDOR), Err(TunnelError::Payment(_))));
        // A Decline-Reason (not part of the result) without M is ignored.
        let mut reason = no_outcome.clone();
        avp(&mut reason, eapay::DECLINE_CODE, &51u32.to_be_bytes());
        avp(&mut reason, eapay::DECLINE_REASON, b"funds");
        assert_eq!(ServerAvps::decode(&reason, VENDOR).unwrap().result, Some(declined()));
    }

    #[test]
    fn another_vendor_id_is_honoured() {
        let sent = ServerAvps { result: Some(declined()), ..ServerAvps::default() };
        let wire = sent.encode(4242).unwrap();
        assert_eq!(ServerAvps::decode(&wire, 4242).unwrap(), sent);
        assert_eq!(ServerAvps::decode(&wire, VENDOR).unwrap(), ServerAvps::default());
    }

    #[test]
    fn debug_hides_the_pin() {
        let p = PeerAvps { password: Some(Pin("2468".into())), ..PeerAvps::default() };
        assert!(!format!("{p:?}").contains("2468"));
    }
}
