//! The authentication centre: what the issuer computes from a card's K and
//! OPc (TS 33.102 §6.3.2 vector generation, §6.3.5 resynchronisation). The
//! EAP method never sees K; the card store calls these and hands the method
//! an [`AuthVector`].

use crate::crypto::milenage::Milenage;
use crate::method::AuthVector;
use crate::sim_aka::sqn::Sqn;

/// AMF of eapay vectors: the "separation bit" (bit 0) set, which AKA'
/// requires for non-3GPP access (TS 33.402 §6.1) and AKA ignores.
pub const DEFAULT_AMF: [u8; 2] = [0x80, 0x00];

/// One authentication vector for `sqn` and the random challenge `rand`.
pub fn generate_vector(m: &Milenage, sqn: Sqn, amf: [u8; 2], rand: [u8; 16]) -> AuthVector {
    let sqn_bytes = sqn.to_bytes();
    let mac_a = m.f1(&rand, &sqn_bytes, &amf);
    let v = m.f2345(&rand);
    let mut autn = [0u8; 16];
    for i in 0..6 {
        autn[i] = sqn_bytes[i] ^ v.ak[i];
    }
    autn[6..8].copy_from_slice(&amf);
    autn[8..].copy_from_slice(&mac_a);
    AuthVector { rand, autn, xres: v.res.to_vec(), ck: v.ck, ik: v.ik }
}

/// Recovers SQN_MS from an AUTS and checks its MAC-S (f1* with the dummy
/// AMF 0000, TS 33.102 §6.3.3). `None` if MAC-S is wrong: the AUTS did not
/// come from the card.
pub fn sqn_from_auts(m: &Milenage, rand: &[u8; 16], auts: &[u8; 14]) -> Option<Sqn> {
    let ak_star = m.f5_star(rand);
    let mut sqn_ms = [0u8; 6];
    for i in 0..6 {
        sqn_ms[i] = auts[i] ^ ak_star[i];
    }
    let mac_s = m.f1_star(rand, &sqn_ms, &[0, 0]);
    crate::crypto::mac::constant_time_eq(&mac_s, &auts[6..]).then(|| Sqn::from_bytes(&sqn_ms))
}

/// One GSM triplet for `rand` (GSM-Milenage, TS 55.205), for EAP-SIM.
pub fn generate_triplet(m: &Milenage, rand: [u8; 16]) -> crate::method::Triplet {
    crate::sim_aka::gsm::gsm_milenage(m, &rand)
}

/// `n` triplets with distinct random RANDs (RFC 4186 §4.3: the server
/// must not repeat a RAND within one challenge).
pub fn generate_triplets(m: &Milenage, n: usize) -> Vec<crate::method::Triplet> {
    let mut out: Vec<crate::method::Triplet> = Vec::with_capacity(n);
    while out.len() < n {
        let rand: [u8; 16] = rand::random();
        if out.iter().all(|t| t.rand != rand) {
            out.push(generate_triplet(m, rand));
        }
    }
    out
}
