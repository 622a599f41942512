//! The card link's framing: EAPOL (IEEE 802.1X-2020 §11.3) over a byte
//! stream, plus one frame type of our own for the payment details.
//!
//! A frame is `version (1) | type (1) | body length (2, big endian) | body`.
//! We send version 2 (802.1X-2004) and accept 1 to 3, like wpa_supplicant.
//! The types used are EAP-Packet (0), EAPOL-Start (1), EAPOL-Logoff (2) and
//! [`PAYMENT_TYPE`], which 802.1X leaves unassigned; its body starts with a
//! subtype octet:
//!
//! | subtype | direction | body after the subtype |
//! | --- | --- | --- |
//! | 1 Details | terminal → card | the canonical payment details (DESIGN.md §3) |
//! | 2 Consent | card → terminal | one octet: 1 the holder accepted, 0 refused |
//! | 3 Shown | terminal → card | the [`crate::payment::PaymentResult`] the terminal displays |
//!
//! The terminal only moves these frames; it reads nothing of an EAP body
//! but the identity it copies into User-Name (RFC 3579 §2.1).

use thiserror::Error;

/// The EAPOL version we send.
pub const VERSION: u8 = 2;
/// The frame type carrying the payment details (unassigned in 802.1X).
pub const PAYMENT_TYPE: u8 = 0xE0;
/// Header length: version, type, body length.
pub const HEADER_LEN: usize = 4;
/// The largest body accepted. EAP packets on the link are bounded by the
/// Framed-MTU the terminal announces (at most 1400 by default); the cap
/// leaves room for a larger MTU and bounds the memory one peer can hold.
pub const MAX_BODY_LEN: usize = 4096;

const EAP_PACKET: u8 = 0;
const START: u8 = 1;
const LOGOFF: u8 = 2;

const DETAILS: u8 = 1;
const CONSENT: u8 = 2;
const SHOWN: u8 = 3;

/// One frame on the card link.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// An EAP packet, opaque to the terminal.
    Eap(Vec<u8>),
    /// The card asks the terminal to start authentication.
    Start,
    /// The card ends the session.
    Logoff,
    /// Payment details, consent, and the displayed result.
    Payment(PaymentFrame),
}

/// The body of a [`PAYMENT_TYPE`] frame.
#[derive(Clone, PartialEq, Eq)]
pub enum PaymentFrame {
    /// The details the card is asked to confirm, in canonical form.
    Details(Vec<u8>),
    /// Whether the holder accepted them.
    Consent(bool),
    /// What the terminal displays: an encoded `PaymentResult`.
    Shown(Vec<u8>),
}

impl std::fmt::Debug for Frame {
    // Bodies are shown by length only: logs of the terminal never carry
    // EAP payloads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Eap(b) => write!(f, "EAP-Packet({} bytes)", b.len()),
            Frame::Start => f.write_str("EAPOL-Start"),
            Frame::Logoff => f.write_str("EAPOL-Logoff"),
            Frame::Payment(PaymentFrame::Details(b)) => write!(f, "Payment-Details({} bytes)", b.len()),
            Frame::Payment(PaymentFrame::Consent(yes)) => write!(f, "Payment-Consent({yes})"),
            Frame::Payment(PaymentFrame::Shown(b)) => write!(f, "Payment-Shown({} bytes)", b.len()),
        }
    }
}

impl std::fmt::Debug for PaymentFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&Frame::Payment(self.clone()), f)
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EapolError {
    #[error("EAPOL version {0} is not supported")]
    Version(u8),
    #[error("EAPOL frame type {0} is not used on the card link")]
    UnknownType(u8),
    #[error("frame body of {len} bytes exceeds the {MAX_BODY_LEN}-byte limit")]
    Oversize { len: usize },
    #[error("malformed {what} frame")]
    Malformed { what: &'static str },
}

impl Frame {
    /// The wire bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EapolError> {
        let (kind, body): (u8, Vec<u8>) = match self {
            Frame::Eap(b) => (EAP_PACKET, b.clone()),
            Frame::Start => (START, Vec::new()),
            Frame::Logoff => (LOGOFF, Vec::new()),
            Frame::Payment(p) => (PAYMENT_TYPE, p.encode()),
        };
        if body.len() > MAX_BODY_LEN {
            return Err(EapolError::Oversize { len: body.len() });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&[VERSION, kind]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The body length a header announces, checked against the cap, so a
    /// reader knows how much to wait for before it buffers anything.
    pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, EapolError> {
        if !(1..=3).contains(&header[0]) {
            return Err(EapolError::Version(header[0]));
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len > MAX_BODY_LEN {
            return Err(EapolError::Oversize { len });
        }
        Ok(len)
    }

    /// Decodes the first frame of `buf`: `Ok(None)` if more bytes are
    /// needed, else the frame and the bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, EapolError> {
        let Some(header) = buf.get(..HEADER_LEN) else { return Ok(None) };
        let header: [u8; HEADER_LEN] = [header[0], header[1], header[2], header[3]];
        let len = Self::body_len(&header)?;
        let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else { return Ok(None) };
        Ok(Some((Self::from_parts(header[1], body)?, HEADER_LEN + len)))
    }

    /// A frame from its type and body.
    pub fn from_parts(kind: u8, body: &[u8]) -> Result<Frame, EapolError> {
        match kind {
            // RFC 3748 §4: an EAP packet has a 4-byte header at least; the
            // rest is the peer's business.
            EAP_PACKET if body.len() >= 4 => Ok(Frame::Eap(body.to_vec())),
            EAP_PACKET => Err(EapolError::Malformed { what: "EAP-Packet" }),
            // 802.1X: Start and Logoff have no body, but a transmitter may
            // pad; tolerate and ignore it.
            START => Ok(Frame::Start),
            LOGOFF => Ok(Frame::Logoff),
            PAYMENT_TYPE => PaymentFrame::decode(body).map(Frame::Payment),
            other => Err(EapolError::UnknownType(other)),
        }
    }
}

impl PaymentFrame {
    fn encode(&self) -> Vec<u8> {
        let (sub, data): (u8, &[u8]) = match self {
            PaymentFrame::Details(d) => (DETAILS, d),
            PaymentFrame::Consent(true) => (CONSENT, &[1]),
            PaymentFrame::Consent(false) => (CONSENT, &[0]),
            PaymentFrame::Shown(d) => (SHOWN, d),
        };
        let mut out = Vec::with_capacity(1 + data.len());
        out.push(sub);
        out.extend_from_slice(data);
        out
    }

    fn decode(body: &[u8]) -> Result<PaymentFrame, EapolError> {
        match body.split_first() {
            Some((&DETAILS, d)) if !d.is_empty() => Ok(PaymentFrame::Details(d.to_vec())),
            Some((&CONSENT, [1])) => Ok(PaymentFrame::Consent(true)),
            Some((&CONSENT, [0])) => Ok(PaymentFrame::Consent(false)),
            Some((&SHOWN, d)) if !d.is_empty() => Ok(PaymentFrame::Shown(d.to_vec())),
            _ => Err(EapolError::Malformed { what: "Eapay-Payment" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let wire = frame.encode().unwrap();
        assert_eq!(Frame::decode(&wire).unwrap(), Some((frame.clone(), wire.len())));
        // Every proper prefix asks for more bytes, never errors or panics.
        for cut in 0..wire.len() {
            assert_eq!(Frame::decode(&wire[..cut]).unwrap(), None, "{frame:?} cut at {cut}");
        }
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Frame::Eap(vec![2, 0, 0, 9, 1, b'c', b'a', b'r', b'd']));
        round_trip(Frame::Start);
        round_trip(Frame::Logoff);
        round_trip(Frame::Payment(PaymentFrame::Details(vec![1, 3, b'T'])));
        round_trip(Frame::Payment(PaymentFrame::Consent(true)));
        round_trip(Frame::Payment(PaymentFrame::Consent(false)));
        round_trip(Frame::Payment(PaymentFrame::Shown(vec![1, 2, 3])));
    }

    #[test]
    fn eapol_start_matches_802_1x() {
        // wpa_supplicant's EAPOL-Start: version 2, type 1, length 0.
        assert_eq!(Frame::Start.encode().unwrap(), [2, 1, 0, 0]);
        assert_eq!(Frame::decode(&[1, 1, 0, 0]).unwrap(), Some((Frame::Start, 4)));
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(Frame::decode(&[0, 0, 0, 0]), Err(EapolError::Version(0)));
        assert_eq!(Frame::decode(&[2, 3, 0, 0]), Err(EapolError::UnknownType(3)));
        assert_eq!(Frame::decode(&[2, 0, 0xff, 0xff]), Err(EapolError::Oversize { len: 0xffff }));
        assert_eq!(Frame::decode(&[2, 0, 0, 2, 1, 1]), Err(EapolError::Malformed { what: "EAP-Packet" }));
        assert_eq!(Frame::decode(&[2, PAYMENT_TYPE, 0, 0]), Err(EapolError::Malformed { what: "Eapay-Payment" }));
        assert_eq!(Frame::decode(&[2, PAYMENT_TYPE, 0, 2, 2, 7]), Err(EapolError::Malformed { what: "Eapay-Payment" }));
        assert_eq!(Frame::decode(&[2, PAYMENT_TYPE, 0, 1, 9]), Err(EapolError::Malformed { what: "Eapay-Payment" }));
        assert!(Frame::Eap(vec![0; MAX_BODY_LEN + 1]).encode().is_err());
    }

    #[test]
    fn debug_never_shows_bodies() {
        let shown = format!("{:?}", Frame::Eap(vec![0xAB; 8]));
        assert_eq!(shown, "EAP-Packet(8 bytes)");
    }
}
