//! Key derivation of EAP-SIM (RFC 4186 §7), EAP-AKA (RFC 4187 §7) and
//! EAP-AKA' (RFC 5448 §3.3, RFC 9048 §3.3).

use core::fmt;

use hmac::Mac;
use sha1::{Digest, Sha1};

use super::bytes::take;
use super::fips186::fips186_2_prf;
use super::keyed::hmac_sha256;
use super::prf_prime::prf_prime;

/// Keys of an EAP-SIM or EAP-AKA full authentication.
#[derive(Clone)]
pub struct SimAkaKeys {
    pub k_encr: [u8; 16],
    pub k_aut: [u8; 16],
    pub msk: [u8; 64],
    pub emsk: [u8; 64],
}

impl fmt::Debug for SimAkaKeys {
    // Every field is key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAkaKeys").finish_non_exhaustive()
    }
}

/// Keys of an EAP-AKA' full authentication.
#[derive(Clone)]
pub struct AkaPrimeKeys {
    pub k_encr: [u8; 16],
    pub k_aut: [u8; 32],
    pub k_re: [u8; 32],
    pub msk: [u8; 64],
    pub emsk: [u8; 64],
}

impl fmt::Debug for AkaPrimeKeys {
    // Every field is key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AkaPrimeKeys").finish_non_exhaustive()
    }
}

/// RFC 4187 §7: MK = SHA1(Identity|IK|CK)
pub fn aka_master_key(identity: &[u8], ik: &[u8; 16], ck: &[u8; 16]) -> [u8; 20] {
    Sha1::new()
        .chain_update(identity)
        .chain_update(ik)
        .chain_update(ck)
        .finalize()
        .into()
}

/// RFC 4186 §7: MK = SHA1(Identity|n*Kc|NONCE_MT|Version List|Selected Version)
///
/// `version_list` is the version list as carried in AT_VERSION_LIST (two
/// octets per version, without the actual-length field).
pub fn sim_master_key(
    identity: &[u8],
    kcs: &[[u8; 8]],
    nonce_mt: &[u8; 16],
    version_list: &[u8],
    selected_version: [u8; 2],
) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(identity);
    for kc in kcs {
        h.update(kc);
    }
    h.update(nonce_mt);
    h.update(version_list);
    h.update(selected_version);
    h.finalize().into()
}

/// RFC 4186/4187 §7: 160 octets of FIPS 186-2 PRF output keyed by MK, split
/// K_encr (16) ‖ K_aut (16) ‖ MSK (64) ‖ EMSK (64).
pub fn sim_aka_keys(mk: &[u8; 20]) -> SimAkaKeys {
    let mut block = [0u8; 160];
    fips186_2_prf(mk, &mut block);
    SimAkaKeys {
        k_encr: take(&block, 0),
        k_aut: take(&block, 16),
        msk: take(&block, 32),
        emsk: take(&block, 96),
    }
}

/// RFC 4187 §5.1 / RFC 4186 fast re-auth: XKEY' = SHA1(Identity|counter|NONCE_S|MK), out = MSK(64)|EMSK(64)
///
/// `identity` is the fast re-authentication identity in use; `counter` is
/// the AT_COUNTER value, hashed as two big-endian octets.
pub fn sim_aka_reauth_keys(
    identity: &[u8],
    counter: u16,
    nonce_s: &[u8; 16],
    mk: &[u8; 20],
) -> ([u8; 64], [u8; 64]) {
    let xkey: [u8; 20] = Sha1::new()
        .chain_update(identity)
        .chain_update(counter.to_be_bytes())
        .chain_update(nonce_s)
        .chain_update(mk)
        .finalize()
        .into();
    let mut block = [0u8; 128];
    fips186_2_prf(&xkey, &mut block);
    (take(&block, 0), take(&block, 64))
}

/// FC value of the CK'/IK' derivation (TS 33.402 Annex A.2).
const FC_CK_IK_PRIME: u8 = 0x20;

/// RFC 5448 §3.3 / RFC 9048: CK' || IK' = HMAC-SHA-256(CK||IK, S) with FC=0x20, P0 = network name, P1 = SQN xor AK (TS 33.402 Annex A.2)
///
/// S is built as in the generic KDF of TS 33.220 Annex B.2:
/// FC ‖ P0 ‖ L0 ‖ P1 ‖ L1 with two-octet big-endian lengths. L0 cannot
/// describe a network name longer than 65535 octets, so such a name is cut
/// at that length; a real one comes from AT_KDF_INPUT, whose one-octet
/// attribute length already keeps it far shorter.
pub fn ck_ik_prime(
    ck: &[u8; 16],
    ik: &[u8; 16],
    network_name: &[u8],
    sqn_xor_ak: &[u8; 6],
) -> ([u8; 16], [u8; 16]) {
    let p0 = network_name
        .get(..usize::from(u16::MAX))
        .unwrap_or(network_name);
    let l0 = u16::try_from(p0.len()).unwrap_or(u16::MAX);
    let key: [u8; 32] = core::array::from_fn(|i| if i < 16 { ck[i] } else { ik[i - 16] });
    let mut mac = hmac_sha256(&key);
    mac.update(&[FC_CK_IK_PRIME]);
    mac.update(p0);
    mac.update(&l0.to_be_bytes());
    mac.update(sqn_xor_ak);
    mac.update(&[0x00, 0x06]);
    let out: [u8; 32] = mac.finalize().into_bytes().into();
    (take(&out, 0), take(&out, 16))
}

/// RFC 5448 §3.3: MK = PRF'(IK'|CK', "EAP-AKA'"|Identity), PRF' from RFC 5448 §3.4 (HMAC-SHA-256 T1|T2|... construction)
///
/// The 208 octets of MK are split K_encr (16) ‖ K_aut (32) ‖ K_re (32) ‖
/// MSK (64) ‖ EMSK (64).
pub fn aka_prime_keys(identity: &[u8], ck_prime: &[u8; 16], ik_prime: &[u8; 16]) -> AkaPrimeKeys {
    let key: [u8; 32] = core::array::from_fn(|i| {
        if i < 16 {
            ik_prime[i]
        } else {
            ck_prime[i - 16]
        }
    });
    let mut s = Vec::with_capacity(8 + identity.len());
    s.extend_from_slice(b"EAP-AKA'");
    s.extend_from_slice(identity);
    let mut mk = [0u8; 208];
    prf_prime(&key, &s, &mut mk);
    AkaPrimeKeys {
        k_encr: take(&mk, 0),
        k_aut: take(&mk, 16),
        k_re: take(&mk, 48),
        msk: take(&mk, 80),
        emsk: take(&mk, 144),
    }
}

/// RFC 5448 §3.3: the fast re-authentication keys of EAP-AKA',
/// MK = PRF'(K_re, "EAP-AKA' re-auth" | Identity | counter | NONCE_S),
/// MSK = MK[0..63], EMSK = MK[64..127]. `counter` is AT_COUNTER's value,
/// two octets big-endian, as in EAP-AKA.
pub fn aka_prime_reauth_keys(
    k_re: &[u8; 32],
    identity: &[u8],
    counter: u16,
    nonce_s: &[u8; 16],
) -> ([u8; 64], [u8; 64]) {
    let mut s = Vec::with_capacity(16 + identity.len() + 2 + 16);
    s.extend_from_slice(b"EAP-AKA' re-auth");
    s.extend_from_slice(identity);
    s.extend_from_slice(&counter.to_be_bytes());
    s.extend_from_slice(nonce_s);
    let mut mk = [0u8; 128];
    prf_prime(k_re, &s, &mut mk);
    (take(&mk, 0), take(&mk, 64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::bytes::testhex::{arr, vec};
    use crate::crypto::rfc4186_vectors as a;

    // RFC 4186 Appendix A.5: MK from identity, the three Kc, NONCE_MT and
    // the versions, then the keys from MK.
    #[test]
    fn rfc4186_appendix_a5_master_key_and_keys() {
        let kcs = a::KC.map(arr::<8>);
        let mk = sim_master_key(
            a::IDENTITY,
            &kcs,
            &arr(a::NONCE_MT),
            &vec(a::VERSION_LIST),
            arr(a::SELECTED_VERSION),
        );
        assert_eq!(mk, arr::<20>(a::MK));

        let keys = sim_aka_keys(&mk);
        assert_eq!(keys.k_encr, arr::<16>(a::K_ENCR));
        assert_eq!(keys.k_aut, arr::<16>(a::K_AUT));
        assert_eq!(keys.msk, arr::<64>(a::MSK));
        assert_eq!(keys.emsk, arr::<64>(a::EMSK));
    }

    // RFC 4187 publishes no key-derivation vector. Its MK differs from
    // RFC 4186's only in the hashed fields, so check the field order
    // (Identity, IK, CK) against a one-shot SHA-1 of the concatenation;
    // the PRF half is covered by the RFC 4186 vector above.
    #[test]
    fn aka_master_key_hashes_identity_ik_ck_in_order() {
        let identity = b"0555444333222111";
        let ik = [0x11u8; 16];
        let ck = [0x22u8; 16];
        let mut concat = identity.to_vec();
        concat.extend_from_slice(&ik);
        concat.extend_from_slice(&ck);
        let want: [u8; 20] = Sha1::digest(&concat).into();
        assert_eq!(aka_master_key(identity, &ik, &ck), want);
        assert_ne!(aka_master_key(identity, &ck, &ik), want);
    }

    // No RFC publishes a fast re-authentication vector either: check that
    // XKEY' is SHA1(Identity | 16-bit big-endian counter | NONCE_S | MK) and
    // that MSK ‖ EMSK are the first 128 octets of the (vector-checked) PRF.
    #[test]
    fn reauth_keys_follow_xkey_prime_construction() {
        let identity =
            b"Y24fNSrz8BP274jOJaF17WfxI8YO7QX00pMXk9XMMVOw7broaNhTczuFq53aEpOkk3L0dm@eapsim.foo";
        let nonce_s = arr::<16>(a::NONCE_MT);
        let mk = arr::<20>(a::MK);
        let mut concat = identity.to_vec();
        concat.extend_from_slice(&[0x01, 0x02]);
        concat.extend_from_slice(&nonce_s);
        concat.extend_from_slice(&mk);
        let xkey: [u8; 20] = Sha1::digest(&concat).into();
        let mut stream = [0u8; 128];
        fips186_2_prf(&xkey, &mut stream);

        let (msk, emsk) = sim_aka_reauth_keys(identity, 0x0102, &nonce_s, &mk);
        assert_eq!(msk.as_slice(), &stream[..64]);
        assert_eq!(emsk.as_slice(), &stream[64..]);
    }

    /// RFC 5448 Appendix C (repeated in RFC 9048 Appendix C): identity,
    /// network name, AUTN, IK, CK, then CK', IK', K_encr, K_aut, K_re, MSK,
    /// EMSK. RAND and RES are part of the cases but not of the derivation.
    #[rustfmt::skip]
    const RFC5448: [[&str; 12]; 4] = [
        [
            "0555444333222111", "WLAN",
            "bb52e91c747ac3ab2a5c23d15ee351d5",
            "9744871ad32bf9bbd1dd5ce54e3e2e5a",
            "5349fbe098649f948f5d2e973a81c00f",
            "0093962d0dd84aa5684b045c9edffa04",
            "ccfc230ca74fcc96c0a5d61164f5a76c",
            "766fa0a6c317174b812d52fbcd11a179",
            "0842ea722ff6835bfa2032499fc3ec23c2f0e388b4f07543ffc677f1696d71ea",
            "cf83aa8bc7e0aced892acc98e76a9b2095b558c7795c7094715cb3393aa7d17a",
            "67c42d9aa56c1b79e295e3459fc3d187d42be0bf818d3070e362c5e967a4d544
             e8ecfe19358ab3039aff03b7c930588c055babee58a02650b067ec4e9347c75a",
            "f861703cd775590e16c7679ea3874ada866311de290764d760cf76df647ea01c
             313f69924bdd7650ca9bac141ea075c4ef9e8029c0e290cdbad5638b63bc23fb",
        ],
        [
            "0555444333222111", "HRPD",
            "bb52e91c747ac3ab2a5c23d15ee351d5",
            "9744871ad32bf9bbd1dd5ce54e3e2e5a",
            "5349fbe098649f948f5d2e973a81c00f",
            "3820f0277fa5f77732b1fb1d90c1a0da",
            "db94a0ab557ef6c9ab48619ca05b9a9f",
            "05ad73ac915fce89ac77e1520d82187b",
            "5b4acaef62c6ebb8882b2f3d534c4b35277337a00184f20ff25d224c04be2afd",
            "3f90bf5c6e5ef325ff04eb5ef6539fa8cca8398194fbd00be425b3f40dba10ac",
            "87b321570117cd6c95ab6c436fb5073ff15cf85505d2bc5bb7355fc21ea8a757
             57e8f86a2b138002e05752913bb43b82f868a96117e91a2d95f526677d572900",
            "c891d5f20f148a1007553e2dea555c9cb672e9675f4a66b4bafa027379f93aee
             539a5979d0a0042b9d2ae28bed3b17a31dc8ab75072b80bd0c1da612466e402c",
        ],
        [
            "0555444333222111", "WLAN",
            "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
            "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0",
            "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
            "cd4c8e5c68f57dd1d7d7dfd0c538e577",
            "3ece6b705dbbf7dfc459a11280c65524",
            "897d302fa2847416488c28e20dcb7be4",
            "c40700e7722483ae3dc7139eb0b88bb558cb3081eccd057f9207d1286ee7dd53",
            "0a591a22dd8b5b1cf29e3d508c91dbbdb4aee23051892c42b6a2de66ea504473",
            "9f7dca9e37bb22029ed986e7cd09d4a70d1ac76d95535c5cac40a7504699bb89
             61a29ef6f3e90f183de5861ad1bedc81ce9916391b401aa006c98785a5756df7",
            "724de00bdb9e568187be3fe746114557d5018779537ee37f4d3c6c738cb97b9d
             c651bc19bfadc344ffe2b52ca78bd8316b51dacc5f2b1440cb9515521cc7ba23",
        ],
        [
            "0555444333222111", "HRPD",
            "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
            "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0",
            "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
            "8310a71ce6f754889613da8f64d5fb46",
            "5adf14360ae838192db23f6fcb7f8c76",
            "745e7439ba238f50fcac4d15d47cd1d9",
            "3e1d2aa4e677025cfd862a4be18361a13a645765571463df833a9759e8099879",
            "99da835e2ae82462576fe6516fad1f802f0fa1191655dd0a273da96d04e0fcd3",
            "c6d3a6e0ceea951eb20d74f32c3061d0680a04b0b086ee8700ace3e0b95fa026
             83c287beee44432294ff98af26d2cc783bace75c4b0af7fdfeb5511ba8e4cbd0",
            "7fb56813838adafa99d140c2f198f6dacebfb6afee444961105402b508c7f363
             352cb2919644b50463e6a69354150147ae09cbc54b8a651d8787a6893ed8536d",
        ],
    ];

    #[test]
    fn rfc5448_appendix_c_all_cases() {
        for (i, case) in RFC5448.iter().enumerate() {
            let [identity, network, autn, ik, ck, ck_p, ik_p, k_encr, k_aut, k_re, msk, emsk] =
                *case;
            let n = i + 1;
            let autn = arr::<16>(autn);
            let sqn_xor_ak: [u8; 6] = take(&autn, 0);
            let (got_ck_p, got_ik_p) =
                ck_ik_prime(&arr(ck), &arr(ik), network.as_bytes(), &sqn_xor_ak);
            assert_eq!(got_ck_p, arr::<16>(ck_p), "case {n}: CK'");
            assert_eq!(got_ik_p, arr::<16>(ik_p), "case {n}: IK'");

            let keys = aka_prime_keys(identity.as_bytes(), &got_ck_p, &got_ik_p);
            assert_eq!(keys.k_encr, arr::<16>(k_encr), "case {n}: K_encr");
            assert_eq!(keys.k_aut, arr::<32>(k_aut), "case {n}: K_aut");
            assert_eq!(keys.k_re, arr::<32>(k_re), "case {n}: K_re");
            assert_eq!(keys.msk, arr::<64>(msk), "case {n}: MSK");
            assert_eq!(keys.emsk, arr::<64>(emsk), "case {n}: EMSK");
        }
    }

    #[test]
    fn over_long_network_name_is_cut_not_a_panic() {
        let long = vec![b'x'; 70_000];
        let cut = ck_ik_prime(&[1; 16], &[2; 16], &long, &[3; 6]);
        let exact = ck_ik_prime(&[1; 16], &[2; 16], &long[..65_535], &[3; 6]);
        assert_eq!(cut, exact);
    }

    #[test]
    fn debug_hides_key_material() {
        let sim = sim_aka_keys(&[0xab; 20]);
        let aka = aka_prime_keys(b"id", &[0xab; 16], &[0xcd; 16]);
        assert_eq!(format!("{sim:?}"), "SimAkaKeys { .. }");
        assert_eq!(format!("{aka:?}"), "AkaPrimeKeys { .. }");
    }
}
