//! Sequence numbers for AKA freshness (3GPP TS 33.102 Annex C).
//!
//! SQN (48 bits) = SEQ (43 bits) || IND (5 bits). The home environment (the
//! issuer) increments SEQ for every vector and cycles IND; the USIM (the card)
//! keeps the highest SEQ accepted for each IND and refuses anything not
//! newer, so a recorded challenge can never be replayed to the card.

/// Bits of IND (TS 33.102 C.1.2 recommends 5).
pub const IND_BITS: u32 = 5;
const IND_MASK: u64 = (1 << IND_BITS) - 1;
const SQN_MASK: u64 = (1 << 48) - 1;
/// Δ of C.2.2: a SEQ further than this ahead of the highest accepted one is
/// refused, so one leaked future vector cannot exhaust the SQN space.
pub const DELTA: u64 = 1 << 28;

/// A 48-bit sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Sqn(u64);

impl Sqn {
    /// From the integer value; bits above 48 are dropped.
    pub const fn new(v: u64) -> Self {
        Self(v & SQN_MASK)
    }

    /// The integer value.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// SEQ, the upper 43 bits.
    pub const fn seq(self) -> u64 {
        self.0 >> IND_BITS
    }

    /// IND, the lower 5 bits.
    pub const fn ind(self) -> usize {
        (self.0 & IND_MASK) as usize
    }

    /// The six octets as carried in AUTN and AUTS.
    pub fn to_bytes(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        [b[2], b[3], b[4], b[5], b[6], b[7]]
    }

    /// From six octets.
    pub fn from_bytes(b: &[u8; 6]) -> Self {
        Self(u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]))
    }

    /// The issuer's next SQN (C.3.2): SEQ + 1, IND advanced cyclically.
    pub fn next(self) -> Self {
        let seq = (self.seq() + 1) << IND_BITS;
        let ind = (self.0 + 1) & IND_MASK;
        Self::new(seq | ind)
    }

    /// The issuer's SQN after a resynchronisation (C.3.4): the card's
    /// highest accepted SQN if that is ahead, otherwise unchanged, so a
    /// replayed old AUTS can never move the issuer backwards.
    pub fn resynchronised(self, sqn_ms: Sqn) -> Self {
        if sqn_ms.seq() > self.seq() {
            sqn_ms
        } else {
            self
        }
    }
}

/// The card's freshness state (C.2): the highest SEQ accepted per IND.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SqnWindow {
    seq_ms: [u64; 1 << IND_BITS],
    /// The highest SQN accepted so far: what AUTS reports.
    highest: Sqn,
}

impl SqnWindow {
    /// A card that must refuse anything not newer than `start`, whatever
    /// its IND: every slot starts at SEQ(start).
    pub fn starting_at(start: Sqn) -> Self {
        Self { seq_ms: [start.seq(); 1 << IND_BITS], highest: start }
    }

    /// Restores a window from storage (`highest` and the 32 SEQ values).
    pub fn from_parts(highest: Sqn, seq_ms: [u64; 1 << IND_BITS]) -> Self {
        Self { seq_ms, highest }
    }

    /// The stored parts, for the card file.
    pub fn parts(&self) -> (Sqn, [u64; 1 << IND_BITS]) {
        (self.highest, self.seq_ms)
    }

    /// SQN_MS: the highest SQN accepted so far.
    pub fn highest(&self) -> Sqn {
        self.highest
    }

    /// True if `sqn` is fresh: newer than anything accepted with its IND,
    /// and not more than Δ ahead of the highest accepted.
    pub fn is_fresh(&self, sqn: Sqn) -> bool {
        let seq = sqn.seq();
        seq > self.seq_ms[sqn.ind()] && seq.saturating_sub(self.highest.seq()) <= DELTA
    }

    /// Records `sqn` as accepted. Call only after the whole AUTN verified.
    pub fn accept(&mut self, sqn: Sqn) {
        self.seq_ms[sqn.ind()] = sqn.seq();
        if sqn.seq() > self.highest.seq() {
            self.highest = sqn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_increments_seq_and_cycles_ind() {
        let s = Sqn::new(0).next();
        assert_eq!((s.seq(), s.ind()), (1, 1));
        let s = Sqn::new((7 << 5) | 31).next();
        assert_eq!((s.seq(), s.ind()), (8, 0));
        assert_eq!(Sqn::from_bytes(&s.to_bytes()), s);
    }

    #[test]
    fn window_refuses_replays_and_stale_values() {
        let mut w = SqnWindow::default();
        let a = Sqn::new(0).next();
        assert!(w.is_fresh(a));
        w.accept(a);
        assert!(!w.is_fresh(a), "replay");
        let b = a.next();
        let c = b.next();
        w.accept(c);
        // b is older than c but has its own IND slot: still acceptable
        // (vectors may be used out of order, C.2.1).
        assert!(w.is_fresh(b));
        w.accept(b);
        assert!(!w.is_fresh(b));
        assert_eq!(w.highest(), c);
    }

    #[test]
    fn a_card_started_ahead_refuses_older_seq_in_every_slot() {
        let w = SqnWindow::starting_at(Sqn::new(0x80 << 5));
        assert!(!w.is_fresh(Sqn::new(1 << 5 | 1)));
        assert!(w.is_fresh(Sqn::new(0x81 << 5 | 1)));
    }

    #[test]
    fn window_refuses_a_jump_beyond_delta() {
        let w = SqnWindow::starting_at(Sqn::new(1 << 5));
        assert!(!w.is_fresh(Sqn::new((DELTA + 2) << 5)));
        assert!(w.is_fresh(Sqn::new((DELTA + 1) << 5 | 1)));
    }

    #[test]
    fn resynchronisation_never_goes_back() {
        let he = Sqn::new(100 << 5);
        assert_eq!(he.resynchronised(Sqn::new(50 << 5)), he);
        assert_eq!(he.resynchronised(Sqn::new(200 << 5)), Sqn::new(200 << 5));
    }
}
