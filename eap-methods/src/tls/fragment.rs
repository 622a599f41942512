//! EAP-TLS type-data framing, shared with EAP-TTLS (RFC 5216 §3.1-3.2,
//! RFC 5281 §9.1).
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! |L M S R R V V V|  flags; EAP-TLS: the low three bits are reserved (0),
//! +-+-+-+-+-+-+-+-+  EAP-TTLS: they carry the TTLS version
//! | TLS Message Length (4 octets, only with L)
//! | TLS data ...
//! ```
//!
//! A TLS "message" here is whatever one side sends in one turn (a flight of
//! records). When it does not fit in one EAP packet it is split into
//! fragments: every fragment but the last has M set and is acknowledged by
//! an empty packet of the method type; the first carries L and the total
//! length. Like hostapd and FreeRADIUS, [`Fragmenter`] sets L on the first
//! fragment of a fragmented message only, and [`Reassembler`] accepts L on
//! any fragment (it must then repeat the first value) and a first fragment
//! without L (the size cap still holds).

use crate::error::EapError;
use crate::packet::MAX_EAP_PACKET;

/// L: the TLS Message Length field is present.
pub const FLAG_LENGTH: u8 = 0x80;
/// M: more fragments follow.
pub const FLAG_MORE: u8 = 0x40;
/// S: EAP-TLS/TTLS Start (server only).
pub const FLAG_START: u8 = 0x20;
/// The low bits: reserved in EAP-TLS, the version in EAP-TTLS.
pub const VERSION_MASK: u8 = 0x07;

/// TLS octets per EAP packet unless configured otherwise.
pub const DEFAULT_FRAGMENT_SIZE: usize = 1024;
/// Smallest fragment size used: below it a flight takes absurdly many round
/// trips (a certificate flight at 64 octets is already about 25).
pub const MIN_FRAGMENT_SIZE: usize = 64;
/// Largest fragment size: EAP header (5), flags (1) and length (4) plus the
/// data must stay within [`MAX_EAP_PACKET`].
pub const MAX_FRAGMENT_SIZE: usize = MAX_EAP_PACKET - 10;
/// Default cap on one reassembled TLS message.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// A peer's fragments must average at least this many octets: the count
/// limit is `max_message / MIN_AVERAGE_FRAGMENT`, so a chain of tiny
/// fragments ends long before the size cap would stop it.
pub const MIN_AVERAGE_FRAGMENT: usize = 64;

/// One parsed EAP-TLS/TTLS type-data (the octets after the EAP type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The flags octet as received.
    pub flags: u8,
    /// TLS Message Length, when L is set.
    pub length: Option<u32>,
    /// The TLS data of this fragment.
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parses type-data; `method` names the method in errors.
    pub fn parse(type_data: &'a [u8], method: &'static str) -> Result<Self, EapError> {
        let Some((&flags, rest)) = type_data.split_first() else {
            return Err(EapError::malformed(method, "no flags octet"));
        };
        if flags & FLAG_LENGTH == 0 {
            return Ok(Self { flags, length: None, data: rest });
        }
        let Some((length, data)) = rest.split_first_chunk::<4>() else {
            return Err(EapError::malformed(method, "L flag without a TLS Message Length"));
        };
        Ok(Self { flags, length: Some(u32::from_be_bytes(*length)), data })
    }

    /// M: more fragments follow.
    pub fn more(&self) -> bool {
        self.flags & FLAG_MORE != 0
    }

    /// S: a Start.
    pub fn start(&self) -> bool {
        self.flags & FLAG_START != 0
    }

    /// The low three bits (TTLS version).
    pub fn version(&self) -> u8 {
        self.flags & VERSION_MASK
    }

    /// An acknowledgement: no data, no L, M or S.
    pub fn is_ack(&self) -> bool {
        self.data.is_empty() && self.flags & (FLAG_LENGTH | FLAG_MORE | FLAG_START) == 0
    }
}

/// Type-data with these flags, optional length and data.
pub fn encode(flags: u8, length: Option<u32>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    match length {
        Some(len) => {
            out.push(flags | FLAG_LENGTH);
            out.extend_from_slice(&len.to_be_bytes());
        }
        None => out.push(flags & !FLAG_LENGTH),
    }
    out.extend_from_slice(data);
    out
}

/// The type-data of an acknowledgement (and of an empty message).
pub fn ack(version: u8) -> Vec<u8> {
    vec![version & VERSION_MASK]
}

/// The type-data of a Start.
pub fn start(version: u8) -> Vec<u8> {
    vec![FLAG_START | (version & VERSION_MASK)]
}

/// Collects fragments into one TLS message, within a size cap and a
/// fragment-count cap.
#[derive(Debug)]
pub struct Reassembler {
    method: &'static str,
    max_message: usize,
    max_fragments: usize,
    buffer: Vec<u8>,
    /// The L value of this message, once seen.
    expected: Option<usize>,
    fragments: usize,
}

impl Reassembler {
    /// A reassembler refusing messages over `max_message` octets.
    pub fn new(method: &'static str, max_message: usize) -> Self {
        let max_fragments = (max_message / MIN_AVERAGE_FRAGMENT).max(2);
        Self { method, max_message, max_fragments, buffer: Vec::new(), expected: None, fragments: 0 }
    }

    /// The most fragments one message may take.
    pub fn max_fragments(&self) -> usize {
        self.max_fragments
    }

    /// True between the first fragment of a fragmented message and its last.
    pub fn in_progress(&self) -> bool {
        self.fragments > 0
    }

    /// Adds one fragment. `Ok(Some(message))` when it was the last (M
    /// clear): the whole message, possibly empty (an acknowledgement);
    /// `Ok(None)` when more are expected (acknowledge it). After an error
    /// the reassembler is empty again.
    pub fn push(&mut self, frame: &Frame<'_>) -> Result<Option<Vec<u8>>, EapError> {
        let result = self.accept(frame);
        if !matches!(result, Ok(None)) {
            self.buffer = Vec::new();
            self.expected = None;
            self.fragments = 0;
        }
        result
    }

    fn accept(&mut self, frame: &Frame<'_>) -> Result<Option<Vec<u8>>, EapError> {
        if frame.more() && frame.data.is_empty() {
            return Err(self.bad("fragment with M set and no data"));
        }
        if let Some(length) = frame.length {
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if length > self.max_message {
                return Err(self.bad("TLS Message Length over the size cap"));
            }
            match self.expected {
                Some(expected) if expected != length => {
                    return Err(self.bad("TLS Message Length changed between fragments"))
                }
                _ => self.expected = Some(length),
            }
        }
        self.fragments += 1;
        if self.fragments > self.max_fragments {
            return Err(self.bad("too many fragments for one TLS message"));
        }
        let total = self.buffer.len() + frame.data.len();
        if total > self.max_message {
            return Err(self.bad("TLS message over the size cap"));
        }
        if self.expected.is_some_and(|expected| total > expected) {
            return Err(self.bad("more data than the TLS Message Length"));
        }
        self.buffer.extend_from_slice(frame.data);
        if frame.more() {
            return Ok(None);
        }
        if self.expected.is_some_and(|expected| expected != self.buffer.len()) {
            return Err(self.bad("TLS Message Length disagrees with the data"));
        }
        Ok(Some(std::mem::take(&mut self.buffer)))
    }

    fn bad(&self, why: &'static str) -> EapError {
        EapError::malformed(self.method, why)
    }
}

/// The flight a method is sending: the first fragment goes out at once, each
/// further one when the other side acknowledges the last (RFC 5216 §2.1.5).
/// Shared by both sides of EAP-TLS and EAP-TTLS.
#[derive(Debug, Default)]
pub struct Flight {
    rest: Option<Fragmenter>,
    flags: u8,
}

impl Flight {
    /// Starts sending `message` (possibly empty: an acknowledgement) in
    /// fragments of at most `fragment_size` TLS octets with the version bits
    /// `flags`; returns the first fragment's type-data.
    pub fn start(&mut self, message: Vec<u8>, fragment_size: usize, flags: u8) -> Vec<u8> {
        let mut fragmenter = Fragmenter::new(message, fragment_size);
        let first = fragmenter.next_fragment(flags).unwrap_or_else(|| ack(flags));
        self.rest = fragmenter.has_more().then_some(fragmenter);
        self.flags = flags;
        first
    }

    /// True while fragments wait for the other side's acknowledgement.
    pub fn in_progress(&self) -> bool {
        self.rest.is_some()
    }

    /// The next fragment, after the other side acknowledged the last one;
    /// `None` if nothing is waiting.
    pub fn next_fragment(&mut self) -> Option<Vec<u8>> {
        let fragmenter = self.rest.as_mut()?;
        let next = fragmenter.next_fragment(self.flags);
        if !fragmenter.has_more() {
            self.rest = None;
        }
        next
    }

    /// Drops what is left (the conversation ended).
    pub fn clear(&mut self) {
        self.rest = None;
    }
}

/// Splits one outgoing TLS message into fragments.
#[derive(Debug)]
pub struct Fragmenter {
    message: Vec<u8>,
    offset: usize,
    fragment_size: usize,
}

impl Fragmenter {
    /// Fragments of at most `fragment_size` TLS octets (clamped to
    /// [`MIN_FRAGMENT_SIZE`]..=[`MAX_FRAGMENT_SIZE`]).
    pub fn new(message: Vec<u8>, fragment_size: usize) -> Self {
        Self { message, offset: 0, fragment_size: clamp_fragment_size(fragment_size) }
    }

    /// True while fragments remain to be sent.
    pub fn has_more(&self) -> bool {
        self.offset < self.message.len()
    }

    /// The type-data of the next fragment, with `flags` (the version bits)
    /// added; `None` once everything was sent. An empty message gives one
    /// empty packet.
    pub fn next_fragment(&mut self, flags: u8) -> Option<Vec<u8>> {
        let flags = flags & VERSION_MASK;
        if self.message.is_empty() {
            if self.offset == 0 {
                self.offset = 1;
                return Some(ack(flags));
            }
            return None;
        }
        if !self.has_more() {
            return None;
        }
        let total = self.message.len();
        let end = total.min(self.offset + self.fragment_size);
        let chunk = &self.message[self.offset..end];
        let more = end < total;
        let first = self.offset == 0;
        let out = match (first, more) {
            // A fragmented message announces its length on the first fragment.
            (true, true) => encode(flags | FLAG_MORE, Some(u32::try_from(total).unwrap_or(u32::MAX)), chunk),
            (false, true) => encode(flags | FLAG_MORE, None, chunk),
            (_, false) => encode(flags, None, chunk),
        };
        self.offset = end;
        Some(out)
    }
}

/// The fragment size actually used for a requested one.
pub fn clamp_fragment_size(fragment_size: usize) -> usize {
    fragment_size.clamp(MIN_FRAGMENT_SIZE, MAX_FRAGMENT_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flight_goes_out_one_acknowledged_fragment_at_a_time() {
        let mut flight = Flight::default();
        assert_eq!(flight.start(Vec::new(), 100, 0), ack(0), "an empty message is one empty packet");
        assert!(!flight.in_progress());
        assert_eq!(flight.next_fragment(), None);
        let first = flight.start(vec![7; 250], 100, VERSION_MASK);
        assert_eq!(first[0] & (FLAG_LENGTH | FLAG_MORE), FLAG_LENGTH | FLAG_MORE);
        assert!(flight.in_progress());
        let second = flight.next_fragment().expect("a second fragment");
        assert!(flight.in_progress() && second[0] & FLAG_MORE != 0);
        let last = flight.next_fragment().expect("the last fragment");
        assert_eq!(last[0] & FLAG_MORE, 0);
        assert_eq!(last[0] & VERSION_MASK, VERSION_MASK, "the version bits on every fragment");
        assert!(!flight.in_progress());
        flight.start(vec![7; 250], 100, 0);
        flight.clear();
        assert_eq!(flight.next_fragment(), None);
    }

    fn frames(message: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut f = Fragmenter::new(message.to_vec(), size);
        std::iter::from_fn(|| f.next_fragment(0)).collect()
    }

    #[test]
    fn fragments_carry_l_on_the_first_only_and_reassemble() {
        let message: Vec<u8> = (0..250u16).map(|i| i as u8).collect();
        let parts = frames(&message, 100);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0][0], FLAG_LENGTH | FLAG_MORE);
        assert_eq!(&parts[0][1..5], &250u32.to_be_bytes());
        assert_eq!(parts[0].len(), 105);
        assert_eq!(parts[1][0], FLAG_MORE);
        assert_eq!(parts[2][0], 0);
        assert_eq!(parts[2].len(), 51);
        let mut r = Reassembler::new("EAP-TLS", DEFAULT_MAX_MESSAGE);
        assert_eq!(r.push(&Frame::parse(&parts[0], "t").unwrap()).unwrap(), None);
        assert!(r.in_progress());
        assert_eq!(r.push(&Frame::parse(&parts[1], "t").unwrap()).unwrap(), None);
        assert_eq!(r.push(&Frame::parse(&parts[2], "t").unwrap()).unwrap(), Some(message));
        assert!(!r.in_progress());
    }

    #[test]
    fn small_messages_go_unfragmented_without_l() {
        let parts = frames(b"hello", 100);
        assert_eq!(parts, vec![vec![0, b'h', b'e', b'l', b'l', b'o']]);
        assert_eq!(frames(&[], 100), vec![vec![0]], "an empty message is one empty packet");
        // The fragment size is clamped.
        assert_eq!(frames(&[7; 200], 1).len(), 200usize.div_ceil(MIN_FRAGMENT_SIZE));
        assert_eq!(frames(&[7; 200], 1)[0][0] & VERSION_MASK, 0);
        let mut f = Fragmenter::new(vec![1; 10], 100);
        assert_eq!(f.next_fragment(0xff).unwrap()[0], VERSION_MASK, "only version bits pass");
    }

    #[test]
    fn l_on_every_fragment_is_accepted_if_it_agrees() {
        let mut r = Reassembler::new("EAP-TLS", 1000);
        let a = encode(FLAG_MORE, Some(6), b"abc");
        let b = encode(0, Some(6), b"def");
        assert_eq!(r.push(&Frame::parse(&a, "t").unwrap()).unwrap(), None);
        assert_eq!(r.push(&Frame::parse(&b, "t").unwrap()).unwrap(), Some(b"abcdef".to_vec()));
        let c = encode(0, Some(7), b"def");
        assert_eq!(r.push(&Frame::parse(&a, "t").unwrap()).unwrap(), None);
        assert!(r.push(&Frame::parse(&c, "t").unwrap()).is_err(), "L changed");
        assert!(!r.in_progress(), "an error resets");
    }

    #[test]
    fn hostile_framing_is_refused() {
        let parse = |b: &[u8]| Frame::parse(b, "EAP-TLS").map(|f| (f.flags, f.length, f.data.to_vec()));
        assert!(parse(&[]).is_err());
        assert!(parse(&[FLAG_LENGTH, 0, 0]).is_err(), "L without four length octets");
        assert_eq!(parse(&[FLAG_START]).unwrap(), (FLAG_START, None, vec![]));

        let mut r = Reassembler::new("EAP-TLS", 1000);
        let over = encode(FLAG_MORE, Some(1001), b"x");
        assert!(r.push(&Frame::parse(&over, "t").unwrap()).is_err(), "L over the cap");
        let empty_more = encode(FLAG_MORE, None, b"");
        assert!(r.push(&Frame::parse(&empty_more, "t").unwrap()).is_err(), "M without data");
        let short = encode(0, Some(10), b"12345");
        assert!(r.push(&Frame::parse(&short, "t").unwrap()).is_err(), "L larger than the data");
        let long = encode(0, Some(3), b"12345");
        assert!(r.push(&Frame::parse(&long, "t").unwrap()).is_err(), "L smaller than the data");
        // No L: the cap on the accumulated data still holds.
        let chunk = encode(FLAG_MORE, None, &[0; 400]);
        assert_eq!(r.push(&Frame::parse(&chunk, "t").unwrap()).unwrap(), None);
        assert_eq!(r.push(&Frame::parse(&chunk, "t").unwrap()).unwrap(), None);
        assert!(r.push(&Frame::parse(&chunk, "t").unwrap()).is_err(), "accumulated over the cap");
    }

    #[test]
    fn an_endless_chain_of_tiny_fragments_ends() {
        let mut r = Reassembler::new("EAP-TLS", DEFAULT_MAX_MESSAGE);
        let tiny = encode(FLAG_MORE, None, b"x");
        let mut n = 0;
        let err = loop {
            n += 1;
            match r.push(&Frame::parse(&tiny, "t").unwrap()) {
                Ok(None) => assert!(n <= r.max_fragments()),
                Ok(Some(_)) => unreachable!("M is set"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, r.max_fragments() + 1);
        assert!(n < DEFAULT_MAX_MESSAGE / 8, "long before the size cap: {n}");
        assert!(err.to_string().contains("too many fragments"), "{err}");
    }
}
