//! AKA sequence numbers handed out from blocks reserved in the ledger.
//!
//! Every vector needs a fresh SQN, and SQN_HE must be durable before the
//! vector leaves (a reused SQN would let a recorded challenge be replayed).
//! Writing it once per authentication costs a commit each; instead the
//! ledger durably reserves [`BLOCK`] SQNs per card at a time (SQN_HE = the
//! last of them) and hands them out from memory. A crash skips the unused
//! ones, which the card accepts (TS 33.102 Annex C allows gaps up to
//! Δ = 2^28); none is ever handed out twice. Several servers sharing one
//! PostgreSQL ledger reserve disjoint blocks; a card that alternates
//! between them may need a resynchronisation now and then.

use eap_methods::sim_aka::sqn::Sqn;

use super::bounded_map::BoundedMap;
use super::cards::{ReservedSqns, SealedAka};
use crate::cards::CardMethod;

/// SQNs reserved per ledger write: one for each IND slot.
pub const BLOCK: u32 = 32;
/// Cards with a block in memory at most; beyond, one is dropped (its
/// unused SQNs are skipped, nothing else is lost).
const CAPACITY: usize = 65_536;

struct Block {
    cred: SealedAka,
    next: Sqn,
    last: Sqn,
}

/// The blocks of the cards in use.
#[derive(Debug)]
pub struct SqnBlocks {
    blocks: BoundedMap<(String, CardMethod), Block>,
}

impl Default for SqnBlocks {
    fn default() -> Self {
        Self { blocks: BoundedMap::new(CAPACITY) }
    }
}

impl SqnBlocks {
    /// The next reserved SQN of the card and its credential, if any is left.
    pub fn take(&self, card_id: &str, method: CardMethod) -> Option<(SealedAka, Sqn)> {
        let mut blocks = self.blocks.lock();
        let key = (card_id.to_owned(), method);
        let block = blocks.get_mut(&key)?;
        let sqn = block.next;
        let cred = block.cred.clone();
        if sqn >= block.last {
            blocks.remove(&key);
        } else {
            block.next = sqn.next();
        }
        Some((cred, sqn))
    }

    /// Keeps a new reservation and hands out its first SQN.
    pub fn store(&self, card_id: &str, method: CardMethod, reserved: ReservedSqns) -> (SealedAka, Sqn) {
        let ReservedSqns { cred, first, last } = reserved;
        if first < last {
            let block = Block { cred: cred.clone(), next: first.next(), last };
            self.blocks.insert((card_id.to_owned(), method), block);
        }
        (cred, first)
    }

    /// Drops the card's block (before a resynchronisation moves SQN_HE).
    pub fn forget(&self, card_id: &str, method: CardMethod) {
        self.blocks.lock().remove(&(card_id.to_owned(), method));
    }
}
