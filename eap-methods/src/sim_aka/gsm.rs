//! GSM-Milenage (3GPP TS 55.205): the GSM authentication algorithm A3/A8
//! built on Milenage, which is how one K/OPc serves EAP-SIM. SRES and Kc
//! come from Milenage's RES, CK and IK through the conversion functions c2
//! and c3 (TS 33.102 §6.8.1.2), exactly as hostapd's `gsm_milenage` and
//! its hlr_auc_gw compute them, so the issuer, a software SIM and those
//! tools agree.

use std::fmt;

use crate::crypto::gsm_conversion::{c2, c3};
use crate::crypto::milenage::Milenage;
use crate::method::Triplet;

/// A3/A8 for `rand`: the triplet.
pub fn gsm_milenage(m: &Milenage, rand: &[u8; 16]) -> Triplet {
    let v = m.f2345(rand);
    Triplet { rand: *rand, sres: c2(&v.res), kc: c3(&v.ck, &v.ik) }
}

/// A software SIM: the card's side of EAP-SIM's GSM authentication.
pub struct GsmSim {
    milenage: Milenage,
}

impl fmt::Debug for GsmSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GsmSim(<hidden>)")
    }
}

impl GsmSim {
    /// A SIM with this Ki (the card's K) and OPc.
    pub fn new(ki: &[u8; 16], opc: &[u8; 16]) -> Self {
        Self { milenage: Milenage::new(ki, opc) }
    }

    /// RUN GSM ALGORITHM: SRES and Kc for `rand`.
    pub fn run(&self, rand: &[u8; 16]) -> Triplet {
        gsm_milenage(&self.milenage, rand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
        v.try_into().unwrap()
    }

    /// TS 55.205 test set 1 (GSM-Milenage): Ki, RAND, OPc -> SRES, Kc.
    /// Milenage itself is checked against every TS 35.208 set
    /// (`crypto::milenage`), c2/c3 against the TS 35.208 quintet of this set
    /// (`crypto::gsm_conversion`); this runs the whole A3/A8 path.
    #[test]
    fn ts_55_205_test_set_1() {
        let t = GsmSim::new(&hex("465b5ce8b199b49faa5f0a2ee238a6bc"), &hex("cd63cb71954a9f4e48a5994e37a02baf"))
            .run(&hex("23553cbe9637a89d218ae64dae47bf35"));
        assert_eq!(t.sres, hex::<4>("46f8416a"));
        assert_eq!(t.kc, hex::<8>("eae4be823af9a08b"));
    }
}
