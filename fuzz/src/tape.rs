//! The fuzz input read as a script of decisions.
//!
//! Past the end the tape reads zeros, and zero is always the ordinary
//! choice (deliver the real message, answer the query correctly, approve):
//! a short input still runs a whole conversation, so the fuzzer spends
//! bytes only where it departs from it, and the empty input is the
//! conversation as the real card and server hold it.

/// What [`Tape::deliver`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The real message, unchanged.
    Real,
    /// Something else: a mutated copy, arbitrary bytes, or a replay.
    Other,
}

/// The input, read front to back.
pub struct Tape<'a> {
    data: &'a [u8],
    pos: usize,
    /// Seed generation: an input that replays this run, each real message
    /// spelled out as explicit bytes (so the fuzzer has them to mutate).
    record: Option<Vec<u8>>,
}

impl<'a> Tape<'a> {
    /// A tape over the fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, record: None }
    }

    /// A tape that also writes down an equivalent input with the real
    /// messages spelled out ([`Tape::into_record`]).
    pub fn recording(data: &'a [u8]) -> Self {
        Self { data, pos: 0, record: Some(Vec::new()) }
    }

    /// The equivalent input, if recording.
    pub fn into_record(self) -> Option<Vec<u8>> {
        self.record
    }

    /// Nothing left: every further read is zero.
    pub fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn raw(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    fn note(&mut self, bytes: &[u8]) {
        if let Some(record) = &mut self.record {
            record.extend_from_slice(bytes);
        }
    }

    /// One decision byte.
    pub fn byte(&mut self) -> u8 {
        let b = self.raw();
        self.note(&[b]);
        b
    }

    /// Two decision bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes of content; fewer if the input ends first.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        let taken = self.data[start..end].to_vec();
        self.pos = end;
        self.note(&taken);
        taken
    }

    /// What the receiver gets instead of (or as) `real`: the real message,
    /// a mutated copy of it, arbitrary bytes, or `previous` again (a
    /// retransmission or a replay).
    pub fn deliver(&mut self, real: &[u8], previous: &[u8]) -> (Vec<u8>, Delivered) {
        let choice = self.raw();
        match choice % 4 {
            0 => {
                if self.record.is_some() {
                    // Spelled out as arbitrary bytes: replays the same way
                    // wherever the message is deterministic, and leaves the
                    // message itself in the input for the fuzzer to mutate.
                    let len = u16::try_from(real.len()).unwrap_or(u16::MAX);
                    self.note(&[2]);
                    self.note(&len.to_be_bytes());
                    self.note(&real[..usize::from(len)]);
                }
                (real.to_vec(), Delivered::Real)
            }
            1 => {
                self.note(&[choice]);
                (self.mutate(real), Delivered::Other)
            }
            2 => {
                self.note(&[choice]);
                let n = usize::from(self.u16());
                (self.bytes(n), Delivered::Other)
            }
            _ => {
                self.note(&[choice]);
                (previous.to_vec(), Delivered::Other)
            }
        }
    }

    /// A copy of `real` with one to four edits. The EAP Length field is
    /// set to the new length afterwards, unless an edit set it explicitly:
    /// otherwise most edits would only exercise the length check.
    fn mutate(&mut self, real: &[u8]) -> Vec<u8> {
        let mut m = real.to_vec();
        let mut explicit_length = false;
        for _ in 0..=(self.byte() % 4) {
            let op = self.byte();
            let at = usize::from(self.u16());
            match op % 8 {
                0 if !m.is_empty() => {
                    let i = at % m.len();
                    m[i] ^= 1 << (op >> 5);
                }
                1 if !m.is_empty() => {
                    let i = at % m.len();
                    m[i] = self.byte();
                }
                2 => m.truncate(at % (m.len() + 1)),
                3 => {
                    let n = usize::from(self.byte());
                    let tail = self.bytes(n);
                    m.extend_from_slice(&tail);
                }
                4 => {
                    let i = at % (m.len() + 1);
                    let n = usize::from(self.byte());
                    let inserted = self.bytes(n);
                    m.splice(i..i, inserted);
                }
                5 => {
                    let i = at % (m.len() + 1);
                    let end = i.saturating_add(usize::from(self.byte())).min(m.len());
                    m.drain(i..end);
                }
                6 if m.len() >= 4 => {
                    m[2..4].copy_from_slice(&u16::try_from(at).unwrap_or(u16::MAX).to_be_bytes());
                    explicit_length = true;
                }
                // The method-type octet: another method's data, or a Nak.
                7 if m.len() >= 5 => m[4] = self.byte(),
                _ => {}
            }
        }
        if !explicit_length && m.len() >= 4 {
            let len = u16::try_from(m.len()).unwrap_or(u16::MAX);
            m[2..4].copy_from_slice(&len.to_be_bytes());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_end_is_the_real_message() {
        let mut tape = Tape::new(&[]);
        assert_eq!(tape.deliver(b"abc", b"x"), (b"abc".to_vec(), Delivered::Real));
        assert_eq!(tape.byte(), 0);
        assert!(tape.exhausted());
    }

    #[test]
    fn a_recorded_run_replays_with_the_messages_spelled_out() {
        let mut tape = Tape::recording(&[7]);
        assert_eq!(tape.byte(), 7);
        assert_eq!(tape.deliver(b"abc", b"").0, b"abc");
        let record = tape.into_record().unwrap();
        assert_eq!(record, [7, 2, 0, 3, b'a', b'b', b'c']);
        let mut replay = Tape::new(&record);
        assert_eq!(replay.byte(), 7);
        assert_eq!(replay.deliver(b"zzz", b""), (b"abc".to_vec(), Delivered::Other));
    }

    #[test]
    fn mutation_keeps_the_eap_length_right() {
        // One edit (0), truncate (op 2) at 3: "\x01\x02\x00\x05x" -> 3 octets, too short to fix.
        let mut tape = Tape::new(&[1, 0, 2, 0, 3]);
        assert_eq!(tape.deliver(b"\x01\x02\x00\x05x", b"").0, b"\x01\x02\x00");
        // One edit, append (op 3) two octets.
        let mut tape = Tape::new(&[1, 0, 3, 0, 0, 2, b'y', b'z']);
        assert_eq!(tape.deliver(b"\x01\x02\x00\x05x", b"").0, b"\x01\x02\x00\x07xyz");
    }
}
