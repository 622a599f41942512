//! Conversion functions c2 and c3 (3GPP TS 33.102 §6.8.1.2).
//!
//! They turn a UMTS quintet into the SRES and Kc of a GSM triplet, which is
//! how an EAP-SIM server is fed from a Milenage AuC or an HSS that only
//! hands out quintets.

/// c2: SRES = XRES₁ ⊕ XRES₂, the two 32-bit halves of a 64-bit (X)RES.
pub fn c2(res: &[u8; 8]) -> [u8; 4] {
    core::array::from_fn(|i| res[i] ^ res[i + 4])
}

/// c3: Kc = CK₁ ⊕ CK₂ ⊕ IK₁ ⊕ IK₂, the 64-bit halves of CK and IK.
pub fn c3(ck: &[u8; 16], ik: &[u8; 16]) -> [u8; 8] {
    core::array::from_fn(|i| ck[i] ^ ck[i + 8] ^ ik[i] ^ ik[i + 8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bytes::testhex::arr;

    // TS 35.208 test set 1 gives RES, CK and IK for the Ki/RAND/OPc of
    // TS 55.205 test set 1, which gives SRES#1 and Kc for them.
    #[test]
    fn ts_55_205_set_1_from_ts_35_208_set_1_quintet() {
        let res = arr("a54211d5e3ba50bf");
        let ck = arr("b40ba9a3c58b2a05bbf0d987b21bf8cb");
        let ik = arr("f769bcd751044604127672711c6d3441");
        assert_eq!(c2(&res), arr::<4>("46f8416a"));
        assert_eq!(c3(&ck, &ik), arr::<8>("eae4be823af9a08b"));
    }
}
