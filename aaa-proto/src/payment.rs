//! The payment a terminal asserts and the result the card is told (DESIGN.md §3, §4).
//!
//! One encoding serves every transport: the canonical form is the RADIUS
//! vendor sub-attribute layout (type, length, value) of Eapay codes 1..=7 in
//! ascending order. The terminal sends those attributes, the card confirms the
//! same bytes inside its EAP method, and the server compares the two byte for
//! byte, so there is exactly one way to write a given payment.

use crate::dictionary::eapay;
use crate::radius::{self, DecodeError, EncodeError, MAX_VENDOR_VALUE_LEN};

/// The longest transaction or merchant id (DESIGN.md §3: string 1..64).
pub const MAX_ID_LEN: usize = 64;

/// The codes of the payment details, in canonical order.
const DETAIL_CODES: [u8; 7] = [
    eapay::TRANSACTION_ID,
    eapay::MERCHANT_ID,
    eapay::AMOUNT,
    eapay::CURRENCY,
    eapay::INSTALLMENTS,
    eapay::TERMINAL_NONCE,
    eapay::TERMINAL_TIME,
];

/// The payment details a terminal asserts (Eapay attributes 1-7), wire-faithful types.
///
/// Nothing here is judged beyond its wire form: a negative amount (above
/// `i64::MAX`) or an unknown currency is the server's decision to decline, not
/// a decoding error, so that it is recorded and answered like any decline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentDetails {
    /// 1..=64 bytes of printable ASCII (0x21..=0x7E).
    pub transaction_id: String,
    /// Same rule as `transaction_id`.
    pub merchant_id: String,
    /// `integer64` minor units as on the wire; above `i64::MAX` means negative.
    pub amount: u64,
    /// ISO 4217 numeric, as on the wire.
    pub currency: u32,
    /// 0 = lump sum.
    pub installments: u32,
    pub terminal_nonce: [u8; 16],
    /// Unix milliseconds on the terminal's clock.
    pub terminal_time_ms: u64,
}

/// Why the payment attributes of a packet, or a canonical / result encoding, cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentAttributeError {
    /// One of the required attributes is absent; the dictionary name.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// An attribute that must appear once appears again.
    #[error("{0} appears more than once")]
    Duplicated(&'static str),
    /// A value of the wrong length or content.
    #[error("{name}: {why}")]
    Malformed { name: &'static str, why: &'static str },
    /// A canonical or result encoding holding a vendor type it must not hold.
    #[error("unexpected or out-of-order Eapay attribute type {0}")]
    Unexpected(u8),
    /// A canonical or result encoding that stops inside an attribute header or value.
    #[error("payment data is truncated inside an attribute")]
    Truncated,
    /// The packet's Vendor-Specific attributes themselves do not parse.
    #[error("bad Vendor-Specific attribute: {0}")]
    VendorSpecific(#[from] DecodeError),
}

/// The result the server delivers to the card inside the protected channel
/// (AKA AT_EAPAY_RESULT; TLS result record; TTLS inner AVPs use the same values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Approved {
        approval_code: String,
        approved_amount: u64,
    },
    /// An ISO 8583 response code ([`eapay::DeclineCode`] values).
    Declined {
        code: u32,
    },
}

/// What the card is told about its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentResult {
    pub transaction_id: String,
    pub outcome: PaymentOutcome,
}

/// The dictionary name of an Eapay vendor type, for error messages.
fn name_of(code: u8) -> &'static str {
    eapay::ATTRIBUTES.iter().find(|d| d.code == code).map_or("Eapay attribute", |d| d.name)
}

/// Whether `id` is a valid transaction or merchant id: 1..=64 bytes of
/// printable ASCII. Spaces and control characters are excluded because ids
/// end up in logs, CSV exports and receipts, where they must not split fields.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// An approval code is 6 characters A-Z0-9.
pub fn is_approval_code(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn check_id(code: u8, value: &[u8]) -> Result<String, PaymentAttributeError> {
    let name = name_of(code);
    let why = if value.is_empty() {
        "is empty"
    } else if value.len() > MAX_ID_LEN {
        "is longer than 64 bytes"
    } else if !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        "holds a character outside printable ASCII (0x21..=0x7E)"
    } else {
        // Printable ASCII is UTF-8, so this cannot fail; mapped all the same.
        return String::from_utf8(value.to_vec())
            .map_err(|_| PaymentAttributeError::Malformed { name, why: "is not UTF-8" });
    };
    Err(PaymentAttributeError::Malformed { name, why })
}

fn fixed<const N: usize>(code: u8, value: &[u8], why: &'static str) -> Result<[u8; N], PaymentAttributeError> {
    value.try_into().map_err(|_| PaymentAttributeError::Malformed { name: name_of(code), why })
}

fn check_u32(code: u8, value: &[u8]) -> Result<u32, PaymentAttributeError> {
    fixed::<4>(code, value, "an integer must be 4 bytes").map(u32::from_be_bytes)
}

fn check_u64(code: u8, value: &[u8]) -> Result<u64, PaymentAttributeError> {
    fixed::<8>(code, value, "an integer64 must be 8 bytes").map(u64::from_be_bytes)
}

/// Appends one sub-attribute in canonical form. Values over 253 bytes only
/// come from details that fail validation; their length byte saturates and
/// the value is kept whole rather than silently truncated, so the decoders
/// reject the result instead of reading a different payment out of it.
fn push_tlv(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    out.push(code);
    out.push(u8::try_from(value.len() + 2).unwrap_or(u8::MAX));
    out.extend_from_slice(value);
}

/// Reads canonical TLVs one at a time.
struct Tlvs<'a>(&'a [u8]);

impl<'a> Tlvs<'a> {
    /// The next (type, value), `Ok(None)` at the end.
    fn next(&mut self) -> Result<Option<(u8, &'a [u8])>, PaymentAttributeError> {
        let [code, len, ref rest @ ..] = *self.0 else {
            return if self.0.is_empty() { Ok(None) } else { Err(PaymentAttributeError::Truncated) };
        };
        let n = usize::from(len).checked_sub(2).ok_or(PaymentAttributeError::Truncated)?;
        let value = rest.get(..n).ok_or(PaymentAttributeError::Truncated)?;
        self.0 = rest.get(n..).unwrap_or_default();
        Ok(Some((code, value)))
    }

    /// The next TLV, which must be `code`.
    fn expect(&mut self, code: u8, earlier: &[u8]) -> Result<&'a [u8], PaymentAttributeError> {
        match self.next()? {
            None => Err(PaymentAttributeError::Missing(name_of(code))),
            Some((c, value)) if c == code => Ok(value),
            Some((c, _)) if earlier.contains(&c) => Err(PaymentAttributeError::Duplicated(name_of(c))),
            Some((c, _)) => Err(PaymentAttributeError::Unexpected(c)),
        }
    }

    /// Nothing may follow the last expected TLV.
    fn finish(&mut self, seen: &[u8]) -> Result<(), PaymentAttributeError> {
        match self.next()? {
            None => Ok(()),
            Some((c, _)) if seen.contains(&c) => Err(PaymentAttributeError::Duplicated(name_of(c))),
            Some((c, _)) => Err(PaymentAttributeError::Unexpected(c)),
        }
    }
}

impl PaymentDetails {
    /// DESIGN.md §3: the VSA sub-attribute encodings (type, len, value) of codes 1..=7 ascending, concatenated.
    ///
    /// Only details that pass [`PaymentDetails::validate`] give bytes that
    /// [`PaymentDetails::from_canonical`] accepts.
    pub fn canonical(&self) -> Vec<u8> {
        self.sub_attributes().concat()
    }

    /// The canonical details one sub-attribute (type, length, value) at a
    /// time: what a tool that takes raw Vendor-Specific values (eapol_test
    /// `-N 26:x:<vendor><sub-attribute>`) needs.
    pub fn sub_attributes(&self) -> Vec<Vec<u8>> {
        self.attributes()
            .into_iter()
            .map(|(code, value)| {
                let mut tlv = Vec::with_capacity(2 + value.len());
                push_tlv(&mut tlv, code, &value);
                tlv
            })
            .collect()
    }

    /// Parses what `canonical` produced (the card side / TTLS); strict: every code once, in order, nothing else.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, PaymentAttributeError> {
        let mut tlvs = Tlvs(bytes);
        let mut values: [&[u8]; 7] = [&[]; 7];
        for (i, code) in DETAIL_CODES.iter().enumerate() {
            values[i] = tlvs.expect(*code, &DETAIL_CODES[..i])?;
        }
        tlvs.finish(&DETAIL_CODES)?;
        Self::from_values(values)
    }

    /// The payment attributes of a RADIUS packet (vendor `vendor_id`, codes 1..=7).
    /// Ok(None) when none of the seven is present (authentication-only request).
    /// Each present once, right length (8 for amount/time, 4 for currency/installments, 16 nonce), ids as above.
    pub fn from_packet(packet: &radius::Packet, vendor_id: u32) -> Result<Option<Self>, PaymentAttributeError> {
        let attrs = packet.vendor_attributes(vendor_id)?;
        Self::from_attributes(attrs.iter().map(|a| (a.vendor_type, a.value)))
    }

    /// The payment details among `(vendor type, value)` pairs of the Eapay
    /// vendor, whatever carried them (RADIUS Vendor-Specific, Diameter vendor
    /// AVPs): same rules as [`PaymentDetails::from_packet`]. Other types are
    /// ignored.
    pub fn from_attributes<'a>(
        attrs: impl IntoIterator<Item = (u8, &'a [u8])>,
    ) -> Result<Option<Self>, PaymentAttributeError> {
        let mut values: [Option<&[u8]>; 7] = [None; 7];
        for (vendor_type, value) in attrs {
            let Some(i) = DETAIL_CODES.iter().position(|c| *c == vendor_type) else {
                continue;
            };
            if values[i].replace(value).is_some() {
                return Err(PaymentAttributeError::Duplicated(name_of(vendor_type)));
            }
        }
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut present: [&[u8]; 7] = [&[]; 7];
        for (i, value) in values.iter().enumerate() {
            present[i] = value.ok_or(PaymentAttributeError::Missing(name_of(DETAIL_CODES[i])))?;
        }
        Self::from_values(present).map(Some)
    }

    /// Appends the seven attributes (one Vendor-Specific each), codes ascending.
    pub fn push_to(&self, packet: &mut radius::Packet, vendor_id: u32) -> Result<(), EncodeError> {
        for (code, value) in self.attributes() {
            packet.push_vendor(vendor_id, code, &value)?;
        }
        Ok(())
    }

    /// Checks the rules the decoders enforce (ids 1..=64 printable ASCII), so
    /// a terminal can refuse bad input before anything is sent or signed.
    pub fn validate(&self) -> Result<(), PaymentAttributeError> {
        check_id(eapay::TRANSACTION_ID, self.transaction_id.as_bytes())?;
        check_id(eapay::MERCHANT_ID, self.merchant_id.as_bytes())?;
        Ok(())
    }

    /// The seven `(vendor type, value)` pairs in canonical order, for a
    /// transport that writes them its own way (Diameter vendor AVPs).
    pub fn attributes(&self) -> [(u8, Vec<u8>); 7] {
        [
            (eapay::TRANSACTION_ID, self.transaction_id.as_bytes().to_vec()),
            (eapay::MERCHANT_ID, self.merchant_id.as_bytes().to_vec()),
            (eapay::AMOUNT, self.amount.to_be_bytes().to_vec()),
            (eapay::CURRENCY, self.currency.to_be_bytes().to_vec()),
            (eapay::INSTALLMENTS, self.installments.to_be_bytes().to_vec()),
            (eapay::TERMINAL_NONCE, self.terminal_nonce.to_vec()),
            (eapay::TERMINAL_TIME, self.terminal_time_ms.to_be_bytes().to_vec()),
        ]
    }

    /// Builds the details from the seven raw values in canonical order.
    fn from_values(v: [&[u8]; 7]) -> Result<Self, PaymentAttributeError> {
        let [transaction_id, merchant_id, amount, currency, installments, nonce, time] = v;
        Ok(PaymentDetails {
            transaction_id: check_id(eapay::TRANSACTION_ID, transaction_id)?,
            merchant_id: check_id(eapay::MERCHANT_ID, merchant_id)?,
            amount: check_u64(eapay::AMOUNT, amount)?,
            currency: check_u32(eapay::CURRENCY, currency)?,
            installments: check_u32(eapay::INSTALLMENTS, installments)?,
            terminal_nonce: fixed::<16>(eapay::TERMINAL_NONCE, nonce, "must be 16 bytes")?,
            terminal_time_ms: check_u64(eapay::TERMINAL_TIME, time)?,
        })
    }
}

impl PaymentResult {
    /// Same TLV form as `canonical`: Transaction-Id (1), then Approval-Code (8) + Approved-Amount (11), or Decline-Code (9).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.transaction_id.len() + 18);
        push_tlv(&mut out, eapay::TRANSACTION_ID, self.transaction_id.as_bytes());
        match &self.outcome {
            PaymentOutcome::Approved { approval_code, approved_amount } => {
                push_tlv(&mut out, eapay::APPROVAL_CODE, approval_code.as_bytes());
                push_tlv(&mut out, eapay::APPROVED_AMOUNT, &approved_amount.to_be_bytes());
            }
            PaymentOutcome::Declined { code } => push_tlv(&mut out, eapay::DECLINE_CODE, &code.to_be_bytes()),
        }
        out
    }

    /// Strict inverse of [`PaymentResult::encode`]: the exact attribute
    /// sequence, valid values, nothing after.
    pub fn decode(bytes: &[u8]) -> Result<Self, PaymentAttributeError> {
        let mut tlvs = Tlvs(bytes);
        let transaction_id = check_id(eapay::TRANSACTION_ID, tlvs.expect(eapay::TRANSACTION_ID, &[])?)?;
        let (outcome, seen): (_, &[u8]) = match tlvs.next()? {
            Some((eapay::APPROVAL_CODE, code)) => {
                let approval_code = std::str::from_utf8(code)
                    .ok()
                    .filter(|c| is_approval_code(c))
                    .ok_or(PaymentAttributeError::Malformed {
                        name: name_of(eapay::APPROVAL_CODE),
                        why: "must be 6 characters A-Z0-9",
                    })?
                    .to_owned();
                let amount = tlvs.expect(eapay::APPROVED_AMOUNT, &[eapay::TRANSACTION_ID, eapay::APPROVAL_CODE])?;
                let approved_amount = check_u64(eapay::APPROVED_AMOUNT, amount)?;
                (
                    PaymentOutcome::Approved { approval_code, approved_amount },
                    &[eapay::TRANSACTION_ID, eapay::APPROVAL_CODE, eapay::APPROVED_AMOUNT],
                )
            }
            Some((eapay::DECLINE_CODE, code)) => {
                let code = check_u32(eapay::DECLINE_CODE, code)?;
                (PaymentOutcome::Declined { code }, &[eapay::TRANSACTION_ID, eapay::DECLINE_CODE])
            }
            Some((eapay::TRANSACTION_ID, _)) => {
                return Err(PaymentAttributeError::Duplicated(name_of(eapay::TRANSACTION_ID)))
            }
            Some((other, _)) => return Err(PaymentAttributeError::Unexpected(other)),
            None => return Err(PaymentAttributeError::Missing("Eapay-Approval-Code or Eapay-Decline-Code")),
        };
        tlvs.finish(seen)?;
        Ok(PaymentResult { transaction_id, outcome })
    }
}

/// A value longer than one Vendor-Specific can hold (Eapay-Receipt) is split over several
/// attributes of the same type in order; the reader concatenates them (like EAP-Message).
/// An empty value is sent as one empty attribute, so that it is present.
pub fn push_split(
    packet: &mut radius::Packet,
    vendor_id: u32,
    vendor_type: u8,
    value: &[u8],
) -> Result<(), EncodeError> {
    if value.is_empty() {
        return packet.push_vendor(vendor_id, vendor_type, value);
    }
    for chunk in value.chunks(MAX_VENDOR_VALUE_LEN) {
        packet.push_vendor(vendor_id, vendor_type, chunk)?;
    }
    Ok(())
}

/// Every `vendor_type` value of `vendor_id` concatenated in packet order;
/// `None` if absent, and also if the packet's Vendor-Specific attributes do
/// not parse (a corrupt packet yields nothing to trust).
pub fn concat(packet: &radius::Packet, vendor_id: u32, vendor_type: u8) -> Option<Vec<u8>> {
    let attrs = packet.vendor_attributes(vendor_id).ok()?;
    let mut parts = attrs.iter().filter(|a| a.vendor_type == vendor_type).peekable();
    parts.peek()?;
    Some(parts.flat_map(|a| a.value.iter().copied()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::{microsoft, rfc};
    use crate::radius::{Attribute, Code, Packet};

    const VENDOR: u32 = eapay::VENDOR_ID;

    fn example() -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T1".into(),
            merchant_id: "M-42".into(),
            amount: 1250,
            currency: 840,
            installments: 3,
            terminal_nonce: [0xa5; 16],
            terminal_time_ms: 0x0000_0190_0000_0001,
        }
    }

    fn request() -> Packet {
        Packet::new(Code::AccessRequest, 7, [0; 16])
    }

    fn packet_of(details: &PaymentDetails) -> Packet {
        let mut p = request();
        details.push_to(&mut p, VENDOR).unwrap();
        p
    }

    /// A packet with the example's attributes, `value` replacing code `code`'s.
    fn packet_replacing(code: u8, value: Option<&[u8]>) -> Packet {
        let mut p = request();
        for (c, v) in example().attributes() {
            if c == code {
                if let Some(v) = value {
                    p.push_vendor(VENDOR, c, v).unwrap();
                }
            } else {
                p.push_vendor(VENDOR, c, &v).unwrap();
            }
        }
        p
    }

    #[test]
    fn canonical_bytes_of_a_known_example() {
        let expected = hex::decode(concat!(
            "01045431",                             // Transaction-Id "T1"
            "02064d2d3432",                         // Merchant-Id "M-42"
            "030a00000000000004e2",                 // Amount 1250
            "040600000348",                         // Currency 840
            "050600000003",                         // Installments 3
            "0612a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5", // Terminal-Nonce
            "070a0000019000000001",                 // Terminal-Time
        ))
        .unwrap();
        assert_eq!(example().canonical(), expected);
        assert_eq!(PaymentDetails::from_canonical(&expected).unwrap(), example());
    }

    #[test]
    fn canonical_matches_the_vendor_sub_attributes_on_the_wire() {
        let p = packet_of(&example());
        let mut from_wire = Vec::new();
        for a in p.vendor_attributes(VENDOR).unwrap() {
            from_wire.extend_from_slice(&[a.vendor_type, (a.value.len() + 2) as u8]);
            from_wire.extend_from_slice(a.value);
        }
        assert_eq!(from_wire, example().canonical());
    }

    #[test]
    fn from_canonical_is_strict() {
        let good = example().canonical();
        for cut in 0..good.len() {
            assert!(PaymentDetails::from_canonical(&good[..cut]).is_err(), "prefix of {cut} bytes");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[eapay::RECEIPT, 2]);
        assert_eq!(PaymentDetails::from_canonical(&trailing), Err(PaymentAttributeError::Unexpected(eapay::RECEIPT)));
        let mut again = good.clone();
        again.extend_from_slice(&[eapay::TRANSACTION_ID, 3, b'x']);
        assert_eq!(
            PaymentDetails::from_canonical(&again),
            Err(PaymentAttributeError::Duplicated("Eapay-Transaction-Id"))
        );
        // Merchant-Id and Transaction-Id swapped.
        let mut swapped = Vec::new();
        push_tlv(&mut swapped, eapay::MERCHANT_ID, b"M-42");
        push_tlv(&mut swapped, eapay::TRANSACTION_ID, b"T1");
        swapped.extend_from_slice(&good[10..]);
        assert_eq!(PaymentDetails::from_canonical(&swapped), Err(PaymentAttributeError::Unexpected(2)));
        let mut dup = Vec::new();
        push_tlv(&mut dup, eapay::TRANSACTION_ID, b"T1");
        push_tlv(&mut dup, eapay::TRANSACTION_ID, b"T1");
        assert_eq!(
            PaymentDetails::from_canonical(&dup),
            Err(PaymentAttributeError::Duplicated("Eapay-Transaction-Id"))
        );
        assert_eq!(PaymentDetails::from_canonical(&[]), Err(PaymentAttributeError::Missing("Eapay-Transaction-Id")));
        assert_eq!(PaymentDetails::from_canonical(&[1, 1]), Err(PaymentAttributeError::Truncated));
    }

    #[test]
    fn from_packet_round_trips_push_to() {
        let details = PaymentDetails {
            transaction_id: "x".repeat(MAX_ID_LEN),
            merchant_id: "~!".into(),
            amount: u64::MAX,
            currency: 410,
            installments: 0,
            terminal_nonce: *b"0123456789abcdef",
            terminal_time_ms: 1_700_000_000_000,
        };
        let mut p = packet_of(&details);
        assert_eq!(p.attributes.len(), 7);
        assert!(p.attributes.iter().all(|a| a.kind == rfc::VENDOR_SPECIFIC));
        // Unrelated attributes around the payment do not matter.
        p.push_vendor(VENDOR, eapay::AUTH_METHOD, b"aka").unwrap();
        p.push(rfc::USER_NAME, b"0card@issuer.example").unwrap();
        let wire = p.encode_unsigned().unwrap();
        let back = Packet::decode(&wire).unwrap();
        assert_eq!(PaymentDetails::from_packet(&back, VENDOR).unwrap(), Some(details));
        assert_eq!(PaymentDetails::from_packet(&packet_of(&example()), VENDOR).unwrap(), Some(example()));
    }

    #[test]
    fn no_payment_attributes_is_none() {
        let mut p = request();
        assert_eq!(PaymentDetails::from_packet(&p, VENDOR), Ok(None));
        p.push(rfc::USER_NAME, b"card@issuer.example").unwrap();
        p.push_vendor(VENDOR, eapay::AUTH_METHOD, b"tls").unwrap();
        assert_eq!(PaymentDetails::from_packet(&p, VENDOR), Ok(None));
        // The same sub-attributes under another vendor are not ours.
        example().push_to(&mut p, microsoft::VENDOR_ID).unwrap();
        assert_eq!(PaymentDetails::from_packet(&p, VENDOR), Ok(None));
        assert_eq!(PaymentDetails::from_packet(&p, microsoft::VENDOR_ID).unwrap(), Some(example()));
    }

    #[test]
    fn each_missing_attribute_is_named() {
        for code in DETAIL_CODES {
            let p = packet_replacing(code, None);
            assert_eq!(PaymentDetails::from_packet(&p, VENDOR), Err(PaymentAttributeError::Missing(name_of(code))));
        }
        assert_eq!(name_of(eapay::AMOUNT), "Eapay-Amount");
    }

    #[test]
    fn each_duplicated_attribute_is_named() {
        for (code, value) in example().attributes() {
            let mut p = packet_of(&example());
            p.push_vendor(VENDOR, code, &value).unwrap();
            assert_eq!(PaymentDetails::from_packet(&p, VENDOR), Err(PaymentAttributeError::Duplicated(name_of(code))));
        }
    }

    #[test]
    fn wrong_integer_lengths() {
        let cases: [(u8, &[u8]); 6] = [
            (eapay::AMOUNT, &[0, 0, 0, 1]),
            (eapay::AMOUNT, &[0; 9]),
            (eapay::TERMINAL_TIME, &[]),
            (eapay::CURRENCY, &[0, 0, 3, 72, 0]),
            (eapay::CURRENCY, &[3, 72]),
            (eapay::INSTALLMENTS, &[0; 8]),
        ];
        for (code, value) in cases {
            let e = PaymentDetails::from_packet(&packet_replacing(code, Some(value)), VENDOR).unwrap_err();
            assert!(matches!(e, PaymentAttributeError::Malformed { name, .. } if name == name_of(code)), "{e}");
        }
    }

    #[test]
    fn bad_ids_and_nonce() {
        let long = [b'a'; MAX_ID_LEN + 1];
        let cases: [(u8, &[u8], &str); 7] = [
            (eapay::TRANSACTION_ID, b"", "Eapay-Transaction-Id: is empty"),
            (
                eapay::TRANSACTION_ID,
                b"T 1",
                "Eapay-Transaction-Id: holds a character outside printable ASCII (0x21..=0x7E)",
            ),
            (eapay::TRANSACTION_ID, &long, "Eapay-Transaction-Id: is longer than 64 bytes"),
            (
                eapay::MERCHANT_ID,
                b"M\x7f",
                "Eapay-Merchant-Id: holds a character outside printable ASCII (0x21..=0x7E)",
            ),
            (
                eapay::MERCHANT_ID,
                "Mé".as_bytes(),
                "Eapay-Merchant-Id: holds a character outside printable ASCII (0x21..=0x7E)",
            ),
            (eapay::TERMINAL_NONCE, &[7; 15], "Eapay-Terminal-Nonce: must be 16 bytes"),
            (eapay::TERMINAL_NONCE, &[7; 17], "Eapay-Terminal-Nonce: must be 16 bytes"),
        ];
        for (code, value, message) in cases {
            let e = PaymentDetails::from_packet(&packet_replacing(code, Some(value)), VENDOR).unwrap_err();
            assert_eq!(e.to_string(), message);
        }
        let mut bad = example();
        bad.transaction_id = "a b".into();
        assert!(bad.validate().is_err());
        assert!(PaymentDetails::from_canonical(&bad.canonical()).is_err());
        assert_eq!(example().validate(), Ok(()));
    }

    #[test]
    fn corrupt_vendor_specific_is_an_error() {
        let mut p = packet_of(&example());
        let mut vsa = VENDOR.to_be_bytes().to_vec();
        vsa.extend_from_slice(&[eapay::AMOUNT, 12, 0]);
        p.attributes.push(Attribute { kind: rfc::VENDOR_SPECIFIC, value: vsa });
        assert!(matches!(PaymentDetails::from_packet(&p, VENDOR), Err(PaymentAttributeError::VendorSpecific(_))));
        assert_eq!(concat(&p, VENDOR, eapay::RECEIPT), None);
    }

    #[test]
    fn payment_result_round_trips() {
        let approved = PaymentResult {
            transaction_id: "T-1".into(),
            outcome: PaymentOutcome::Approved { approval_code: "A1B2C3".into(), approved_amount: 1250 },
        };
        let bytes = approved.encode();
        assert_eq!(bytes, hex::decode("0105542d31".to_owned() + "0808413142324333" + "0b0a00000000000004e2").unwrap());
        assert_eq!(PaymentResult::decode(&bytes).unwrap(), approved);

        let declined = PaymentResult {
            transaction_id: "T-1".into(),
            outcome: PaymentOutcome::Declined { code: eapay::DeclineCode::InsufficientFunds.value() },
        };
        let bytes = declined.encode();
        assert_eq!(bytes, hex::decode("0105542d31".to_owned() + "090600000033").unwrap());
        assert_eq!(PaymentResult::decode(&bytes).unwrap(), declined);

        for good in [approved.encode(), declined.encode()] {
            for cut in 0..good.len() {
                assert!(PaymentResult::decode(&good[..cut]).is_err(), "prefix of {cut} bytes");
            }
            let mut trailing = good.clone();
            trailing.extend_from_slice(&[eapay::DECLINE_CODE, 6, 0, 0, 0, 5]);
            assert!(PaymentResult::decode(&trailing).is_err());
        }
        let mut twice = declined.encode();
        twice.extend_from_slice(&[eapay::DECLINE_CODE, 6, 0, 0, 0, 5]);
        assert_eq!(PaymentResult::decode(&twice), Err(PaymentAttributeError::Duplicated("Eapay-Decline-Code")));
    }

    #[test]
    fn payment_result_rejects_garbage() {
        let garbage: [&[u8]; 7] = [
            b"\xff\xff\xff",
            &[1, 0],
            &[9, 6, 0, 0, 0, 5],          // no transaction id
            &[1, 3, b'T', 9, 5, 0, 0, 5], // 3-byte decline code
            &[1, 3, b'T', 8, 8, b'a', b'b', b'c', b'd', b'e', b'f', 11, 10, 0, 0, 0, 0, 0, 0, 0, 1], // lower case
            &[1, 3, b'T', 8, 8, b'A', b'B', b'C', b'D', b'E', b'F'], // no amount
            &[1, 3, b'T', 1, 3, b'T', 9, 6, 0, 0, 0, 5],
        ];
        for g in garbage {
            assert!(PaymentResult::decode(g).is_err(), "{g:?}");
        }
    }

    #[test]
    fn approval_codes() {
        assert!(is_approval_code("A1B2C3"));
        assert!(is_approval_code("000000"));
        for bad in ["", "A1B2C", "A1B2C3D", "a1b2c3", "A1B2C ", "A1B2C\u{e9}"] {
            assert!(!is_approval_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn split_and_concat_a_long_value() {
        let value: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
        let mut p = Packet::new(Code::AccessAccept, 1, [0; 16]);
        p.push_vendor(VENDOR, eapay::APPROVAL_CODE, b"A1B2C3").unwrap();
        push_split(&mut p, VENDOR, eapay::RECEIPT, &value).unwrap();
        let receipts = p.vendor_attributes(VENDOR).unwrap().into_iter().filter(|a| a.vendor_type == eapay::RECEIPT);
        assert_eq!(receipts.map(|a| a.value.len()).collect::<Vec<_>>(), [247, 247, 106]);
        assert_eq!(p.attributes.len(), 4);
        let wire = p.encode_unsigned().unwrap();
        let back = Packet::decode(&wire).unwrap();
        assert_eq!(concat(&back, VENDOR, eapay::RECEIPT), Some(value));
        assert_eq!(concat(&back, VENDOR, eapay::DECLINE_REASON), None);
        assert_eq!(concat(&back, microsoft::VENDOR_ID, eapay::RECEIPT), None);

        let mut empty = Packet::new(Code::AccessAccept, 1, [0; 16]);
        push_split(&mut empty, VENDOR, eapay::DECLINE_REASON, b"").unwrap();
        assert_eq!(concat(&empty, VENDOR, eapay::DECLINE_REASON), Some(Vec::new()));
    }
}
