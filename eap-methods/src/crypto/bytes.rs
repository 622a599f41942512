//! Fixed-size byte helpers shared by the primitives.
//!
//! Offsets passed here are constants chosen by the callers against their own
//! fixed-size buffers, so the indexing can only fail on a programming error,
//! never on anything a peer sends.

/// Octet-wise XOR of two equally sized arrays.
pub(crate) fn xor<const N: usize>(a: &[u8; N], b: &[u8; N]) -> [u8; N] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

/// `N` octets of `src` starting at `at`.
pub(crate) fn take<const N: usize, const M: usize>(src: &[u8; M], at: usize) -> [u8; N] {
    const { assert!(N <= M) };
    core::array::from_fn(|i| src[at + i])
}

/// Test-vector decoding: published vectors are written as hex strings.
#[cfg(test)]
pub(crate) mod testhex {
    /// A fixed-size value from hex; whitespace is allowed so vectors can be
    /// pasted in the grouped form the RFCs print them in.
    pub(crate) fn arr<const N: usize>(s: &str) -> [u8; N] {
        let v = vec(s);
        <[u8; N]>::try_from(v.as_slice()).expect("test vector length")
    }

    pub(crate) fn vec(s: &str) -> Vec<u8> {
        let compact: String = s.split_whitespace().collect();
        hex::decode(compact).expect("test vector hex")
    }
}
