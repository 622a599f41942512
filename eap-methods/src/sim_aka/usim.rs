//! The card's side of Milenage: a software USIM (TS 33.102 §6.3.3).
//! It checks AUTN, enforces SQN freshness and answers RES/CK/IK or AUTS.

use std::fmt;

use crate::crypto::mac::constant_time_eq;
use crate::crypto::milenage::Milenage;
use crate::sim_aka::sqn::{Sqn, SqnWindow};

/// The USIM's verdict on a challenge.
#[derive(Clone, PartialEq, Eq)]
pub enum UsimResult {
    /// AUTN verified and SQN fresh.
    Ok {
        /// The response.
        res: Vec<u8>,
        /// Cipher key.
        ck: [u8; 16],
        /// Integrity key.
        ik: [u8; 16],
    },
    /// MAC-A wrong: the network is not our issuer (Authentication-Reject).
    MacFailure,
    /// MAC-A right but SQN not fresh: resynchronise with this AUTS.
    SyncFailure {
        /// SQN_MS ⊕ AK* || MAC-S.
        auts: [u8; 14],
    },
    /// The AMF lacks the separation bit AKA' requires (TS 33.402 §6.1).
    AmfSeparationBit,
}

impl fmt::Debug for UsimResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok { .. } => "Ok(<keys>)",
            Self::MacFailure => "MacFailure",
            Self::SyncFailure { .. } => "SyncFailure",
            Self::AmfSeparationBit => "AmfSeparationBit",
        })
    }
}

/// A software USIM: the card's K/OPc and its SQN window.
pub struct Usim {
    milenage: Milenage,
    window: SqnWindow,
}

impl fmt::Debug for Usim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Usim").field("sqn_ms", &self.window.highest()).finish_non_exhaustive()
    }
}

impl Usim {
    /// A USIM with these keys and freshness state.
    pub fn new(k: &[u8; 16], opc: &[u8; 16], window: SqnWindow) -> Self {
        Self { milenage: Milenage::new(k, opc), window }
    }

    /// The freshness state, to persist after every authentication.
    pub fn window(&self) -> &SqnWindow {
        &self.window
    }

    /// Runs the AUTN check for `rand` (TS 33.102 §6.3.3). On success the
    /// SQN is recorded as used, so the same challenge never works twice.
    pub fn authenticate(&mut self, rand: &[u8; 16], autn: &[u8; 16], require_separation_bit: bool) -> UsimResult {
        let v = self.milenage.f2345(rand);
        let mut sqn_bytes = [0u8; 6];
        for i in 0..6 {
            sqn_bytes[i] = autn[i] ^ v.ak[i];
        }
        let amf = [autn[6], autn[7]];
        let xmac = self.milenage.f1(rand, &sqn_bytes, &amf);
        if !constant_time_eq(&xmac, &autn[8..]) {
            return UsimResult::MacFailure;
        }
        if require_separation_bit && amf[0] & 0x80 == 0 {
            return UsimResult::AmfSeparationBit;
        }
        let sqn = Sqn::from_bytes(&sqn_bytes);
        if !self.window.is_fresh(sqn) {
            return UsimResult::SyncFailure { auts: self.auts(rand) };
        }
        self.window.accept(sqn);
        UsimResult::Ok { res: v.res.to_vec(), ck: v.ck, ik: v.ik }
    }

    fn auts(&self, rand: &[u8; 16]) -> [u8; 14] {
        let sqn_ms = self.window.highest().to_bytes();
        let ak_star = self.milenage.f5_star(rand);
        let mac_s = self.milenage.f1_star(rand, &sqn_ms, &[0, 0]);
        let mut auts = [0u8; 14];
        for i in 0..6 {
            auts[i] = sqn_ms[i] ^ ak_star[i];
        }
        auts[6..].copy_from_slice(&mac_s);
        auts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_aka::auc::{generate_vector, sqn_from_auts, DEFAULT_AMF};

    const K: [u8; 16] = [0x46; 16];
    const OPC: [u8; 16] = [0x2b; 16];

    #[test]
    fn issuer_and_card_agree_and_replays_are_refused() {
        let m = Milenage::new(&K, &OPC);
        let mut usim = Usim::new(&K, &OPC, SqnWindow::default());
        let sqn = Sqn::new(0).next();
        let v = generate_vector(&m, sqn, DEFAULT_AMF, [9; 16]);
        match usim.authenticate(&v.rand, &v.autn, true) {
            UsimResult::Ok { res, ck, ik } => assert_eq!((res, ck, ik), (v.xres.clone(), v.ck, v.ik)),
            other => panic!("{other:?}"),
        }
        // The same vector again: stale, and the AUTS resynchronises the issuer.
        let UsimResult::SyncFailure { auts } = usim.authenticate(&v.rand, &v.autn, true) else { panic!() };
        assert_eq!(sqn_from_auts(&m, &v.rand, &auts), Some(sqn));
        let mut bad = auts;
        bad[13] ^= 1;
        assert_eq!(sqn_from_auts(&m, &v.rand, &bad), None);
    }

    #[test]
    fn wrong_key_is_a_mac_failure() {
        let m = Milenage::new(&[1; 16], &OPC);
        let mut usim = Usim::new(&K, &OPC, SqnWindow::default());
        let v = generate_vector(&m, Sqn::new(0).next(), DEFAULT_AMF, [9; 16]);
        assert_eq!(usim.authenticate(&v.rand, &v.autn, false), UsimResult::MacFailure);
    }

    #[test]
    fn aka_prime_needs_the_separation_bit() {
        let m = Milenage::new(&K, &OPC);
        let mut usim = Usim::new(&K, &OPC, SqnWindow::default());
        let v = generate_vector(&m, Sqn::new(0).next(), [0, 0], [9; 16]);
        assert_eq!(usim.authenticate(&v.rand, &v.autn, true), UsimResult::AmfSeparationBit);
    }
}
