//! Crypto primitives of the SIM/AKA family.
//!
//! MILENAGE, the FIPS 186-2 PRF, the EAP-SIM/AKA/AKA' key derivations,
//! AT_MAC and the AT_ENCR_DATA cipher are assembled here by hand on the
//! RustCrypto building blocks (`aes`, `sha1`, `sha2`, `hmac`, `subtle`)
//! instead of taken from higher-level crates: each is a few dozen lines,
//! the exact variants these RFCs need (unpadded SHA-1 compression as G,
//! unpadded CBC, HMAC truncated to 128 bits) are not what general-purpose
//! crates offer, and keeping them small means every function can be, and
//! is, checked against the published test vectors of its specification.
//! Nothing here prints key material through `Debug`.

pub(crate) mod bytes;
mod keyed;

pub mod cbc;
pub mod fips186;
pub mod gsm_conversion;
pub mod keys;
pub mod mac;
pub mod milenage;
pub mod prf_prime;

#[cfg(test)]
pub(crate) mod rfc4186_vectors;

pub use cbc::{aes128_cbc_decrypt, aes128_cbc_encrypt, CbcError};
pub use fips186::fips186_2_prf;
pub use gsm_conversion::{c2, c3};
pub use keys::{
    aka_master_key, aka_prime_keys, aka_prime_reauth_keys, ck_ik_prime, sim_aka_keys, sim_aka_reauth_keys, sim_master_key,
    AkaPrimeKeys, SimAkaKeys,
};
pub use mac::{aka_prime_mac, constant_time_eq, sim_aka_mac};
pub use milenage::{Milenage, Vectors};
pub use prf_prime::prf_prime;
