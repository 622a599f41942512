//! The RFC 4186 Appendix A example run, shared by the tests of the modules
//! it exercises (PRF, key derivation, AT_MAC, AT_ENCR_DATA). Values are
//! copied from the RFC; the grouping follows its printing.

use crate::crypto::bytes::testhex::vec;

pub(crate) const IDENTITY: &[u8] = b"1244070100000001@eapsim.foo";

/// A.4: NONCE_MT chosen by the peer.
pub(crate) const NONCE_MT: &str = "01234567 89abcdef fedcba98 76543210";

/// A.3/A.4: AT_VERSION_LIST carries version 1, and version 1 is selected.
pub(crate) const VERSION_LIST: &str = "0001";
pub(crate) const SELECTED_VERSION: &str = "0001";

/// A.5: the three triplets (RAND, SRES, Kc).
pub(crate) const RANDS: [&str; 3] = [
    "10111213 14151617 18191a1b 1c1d1e1f",
    "20212223 24252627 28292a2b 2c2d2e2f",
    "30313233 34353637 38393a3b 3c3d3e3f",
];
pub(crate) const SRES: [&str; 3] = ["d1d2d3d4", "e1e2e3e4", "f1f2f3f4"];
pub(crate) const KC: [&str; 3] = [
    "a0a1a2a3 a4a5a6a7",
    "b0b1b2b3 b4b5b6b7",
    "c0c1c2c3 c4c5c6c7",
];

/// A.5: MK and the PRF output K_encr ‖ K_aut ‖ MSK ‖ EMSK.
pub(crate) const MK: &str = "e576d5ca 332e9930 018bf1ba ee2763c7 95b3c712";
pub(crate) const K_ENCR: &str = "536e5ebc 4465582a a6a8ec99 86ebb620";
pub(crate) const K_AUT: &str = "25af1942 efcbf4bc 72b39434 21f2a974";
pub(crate) const MSK: &str =
    "39d45aea f4e30601 983e972b 6cfd46d1 c3637733 65690d09 cd44976b 525f47d3
    a60a985e 955c53b0 90b2e4b7 3719196a 40254296 8fd14a88 8f46b9a7 886e4488";
pub(crate) const EMSK: &str =
    "5949eab0 fff69d52 315c6c63 4fd14a7f 0d52023d 56f79698 fa6596ab eed4f93f
    bb48eb53 4d985414 ceed0d9a 8ed33c38 7c9dfdab 92ffbdf2 40fcecf6 5a2c93b9";
pub(crate) const KEYS: &str = "536e5ebc 4465582a a6a8ec99 86ebb620
    25af1942 efcbf4bc 72b39434 21f2a974
    39d45aea f4e30601 983e972b 6cfd46d1 c3637733 65690d09 cd44976b 525f47d3
    a60a985e 955c53b0 90b2e4b7 3719196a 40254296 8fd14a88 8f46b9a7 886e4488
    5949eab0 fff69d52 315c6c63 4fd14a7f 0d52023d 56f79698 fa6596ab eed4f93f
    bb48eb53 4d985414 ceed0d9a 8ed33c38 7c9dfdab 92ffbdf2 40fcecf6 5a2c93b9";

/// A.5: AT_IV value.
pub(crate) const IV: &str = "9e18b0c2 9a652263 c06efb54 dd00a895";

/// A.5: plaintext of AT_ENCR_DATA (AT_NEXT_PSEUDONYM, AT_NEXT_REAUTH_ID,
/// AT_PADDING). The RFC prints the identities as hex; they are ASCII.
pub(crate) fn encr_plaintext() -> Vec<u8> {
    let mut p = Vec::new();
    // AT_NEXT_PSEUDONYM, 19*4 octets, actual length 70.
    p.extend_from_slice(&[0x84, 0x13, 0x00, 0x46]);
    p.extend_from_slice(b"w8w49PexCazWJ&xCIARmxuMKht5S1sxRDqXSEFBEg3DcZP9cIxTe5J4OyIwNGVzxeJOU1G");
    p.extend_from_slice(&[0x00, 0x00]);
    // AT_NEXT_REAUTH_ID, 22*4 octets, actual length 81.
    p.extend_from_slice(&[0x85, 0x16, 0x00, 0x51]);
    p.extend_from_slice(
        b"Y24fNSrz8BP274jOJaF17WfxI8YO7QX00pMXk9XMMVOw7broaNhTczuFq53aEpOkk3L0dm@eapsim.foo",
    );
    p.extend_from_slice(&[0x00, 0x00, 0x00]);
    // AT_PADDING, 3*4 octets.
    p.extend_from_slice(&[0x06, 0x03]);
    p.extend_from_slice(&[0u8; 10]);
    p
}

/// A.5: AT_ENCR_DATA value (176 octets).
pub(crate) const ENCR_DATA: &str = "
    55f2939b bdb1b19e a1b47fc0 b3e0be4c ab2cf737 2d98e302 3c6bb924 15723d58
    bad66ce0 84e101b6 0f535835 4bd42182 78aea7bf 2cbace33 106aeddc 625b0c1d
    5aa67a41 739ae5b5 7950973f c7ff8301 073c6f95 3150fc30 3ea152d1 e10a2d1f
    4f5226da a1ee9005 472252bd b3b71d6f 0c3a3490 316c4692 9871bd45 cdfdbca6
    112f07f8 be717990 d25f6dd7 f2b7b320 bf4d5a99 2e880331 d729945a ec75ae5d
    43c8eda5 fe6233fc ac494ee6 7a0d504d";

/// A.5: EAP-Request/SIM/Challenge, identifier 2, length 280, with the
/// AT_MAC value field zeroed as the MAC computation requires.
pub(crate) fn challenge_request_zeroed_mac() -> Vec<u8> {
    let mut p = vec("01 02 0118 12 0b 0000 01 0d 0000");
    for rand in RANDS {
        p.extend(vec(rand));
    }
    p.extend(vec("81 05 0000"));
    p.extend(vec(IV));
    p.extend(vec("82 2d 0000"));
    p.extend(vec(ENCR_DATA));
    p.extend(vec("0b 05 0000"));
    p.extend([0u8; 16]);
    p
}

/// A.5: the AT_MAC value of the request.
pub(crate) const CHALLENGE_REQUEST_MAC: &str = "fef324ac 3962b59f 3bd78253 ae4dcb6a";

/// A.6: EAP-Response/SIM/Challenge with the AT_MAC value field zeroed.
pub(crate) const CHALLENGE_RESPONSE_ZEROED_MAC: &str =
    "02 02 001c 12 0b 0000 0b 05 0000 00000000 00000000 00000000 00000000";

/// A.6: the AT_MAC value of the response.
pub(crate) const CHALLENGE_RESPONSE_MAC: &str = "f56d6433 e68ed297 6ac11937 fc3d1154";
