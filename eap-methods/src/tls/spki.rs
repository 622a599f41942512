//! The SubjectPublicKeyInfo of a certificate, as the bytes it holds.
//!
//! The card key lookup needs the peer certificate's SPKI DER once per
//! handshake. Asking OpenSSL (`X509_get_pubkey` then `i2d_PUBKEY`) decodes
//! the key into a provider object and encodes it again, about 0.14 ms in
//! OpenSSL 3.0 (BENCHMARKS.md); the SPKI is already in the certificate's
//! DER, so it is cut out here instead (RFC 5280 §4.1: Certificate ::=
//! SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
//! signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }).
//! The certificate has been parsed by OpenSSL already; a DER this walk
//! cannot follow gives `None`, never a panic.

/// The SubjectPublicKeyInfo element (tag, length and content) of a DER
/// certificate.
pub fn spki_of_certificate(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (tbs, _) = element(content(certificate)?, SEQUENCE)?;
    let mut rest = content(tbs)?;
    if rest.first() == Some(&VERSION_TAG) {
        rest = element(rest, VERSION_TAG)?.1;
    }
    // serialNumber, signature, issuer, validity, subject
    for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        rest = element(rest, tag)?.1;
    }
    element(rest, SEQUENCE).map(|(spki, _)| spki)
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION_TAG: u8 = 0xa0;

/// The first element of `der`, which must have tag `tag`: (the whole
/// element, what follows it).
fn element(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *der.first()? != tag {
        return None;
    }
    let (header, length) = header(der)?;
    let end = header.checked_add(length)?;
    (end <= der.len()).then(|| der.split_at(end))
}

/// The content of one element.
fn content(element: &[u8]) -> Option<&[u8]> {
    let (header, length) = header(element)?;
    element.get(header..header.checked_add(length)?)
}

/// (header length, content length) of the element at the start of `der`:
/// one tag octet, then a short or long (up to 4 octets) definite length.
fn header(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let octets = usize::from(first & 0x7f);
    if octets == 0 || octets > 4 {
        return None;
    }
    let length = der.get(2..2 + octets)?.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    Some((2 + octets, length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Name, X509};

    fn certificate(key: &PKey<Private>) -> X509 {
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_text("CN", "card").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    #[test]
    fn the_spki_cut_out_is_the_one_openssl_encodes() {
        let ec = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
            .unwrap();
        let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        for key in [ec, rsa] {
            let der = certificate(&key).to_der().unwrap();
            assert_eq!(spki_of_certificate(&der), Some(key.public_key_to_der().unwrap().as_slice()));
            for cut in 0..der.len() {
                // A truncated certificate never yields a key (and never panics).
                let _ = spki_of_certificate(&der[..cut]);
            }
        }
        assert_eq!(spki_of_certificate(&[]), None);
        assert_eq!(spki_of_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(spki_of_certificate(&[0x30, 0x85, 0, 0, 0, 0, 1]), None);
    }
}
