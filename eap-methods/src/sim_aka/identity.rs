//! Identity prefixes of the SIM/AKA family (RFC 4186 §4.2.1.6,
//! RFC 4187 §4.1.1.6, RFC 5448 §3): the first character of the username
//! says whether the identity is permanent, a pseudonym or a fast
//! re-authentication identity, and for which method.

use crate::packet::EapType;

/// What an identity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// The card's permanent identity: `<prefix><card-id>@<realm>`.
    Permanent,
    /// A pseudonym the server handed out.
    Pseudonym,
    /// A fast re-authentication identity.
    Reauth,
    /// No recognised prefix for this method.
    Unknown,
}

/// The prefix digit of a permanent identity for `method`.
pub fn permanent_prefix(method: EapType) -> Option<char> {
    match method {
        EapType::AKA => Some('0'),
        EapType::SIM => Some('1'),
        EapType::AKA_PRIME => Some('6'),
        _ => None,
    }
}

/// Classifies `identity` for `method`.
pub fn classify(method: EapType, identity: &str) -> IdentityKind {
    let (perm, pseudo, reauth) = match method {
        EapType::AKA => ('0', '2', '4'),
        EapType::SIM => ('1', '3', '5'),
        EapType::AKA_PRIME => ('6', '7', '8'),
        _ => return IdentityKind::Unknown,
    };
    match identity.chars().next() {
        Some(c) if c == perm && identity.len() > 1 => IdentityKind::Permanent,
        Some(c) if c == pseudo => IdentityKind::Pseudonym,
        Some(c) if c == reauth => IdentityKind::Reauth,
        _ => IdentityKind::Unknown,
    }
}

/// The card id inside an NAI: the username without its prefix digit and
/// realm (`0c0ffee@issuer.example` -> `c0ffee`).
pub fn card_id(identity: &str) -> &str {
    let user = identity.split('@').next().unwrap_or(identity);
    match user.chars().next() {
        Some(c) if c.is_ascii_digit() => &user[1..],
        _ => user,
    }
}

/// The realm of an NAI, if any.
pub fn realm(identity: &str) -> Option<&str> {
    identity.rsplit_once('@').map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(classify(EapType::AKA, "0abc@x"), IdentityKind::Permanent);
        assert_eq!(classify(EapType::AKA, "6abc@x"), IdentityKind::Unknown);
        assert_eq!(classify(EapType::AKA_PRIME, "6abc@x"), IdentityKind::Permanent);
        assert_eq!(classify(EapType::AKA_PRIME, "7p@x"), IdentityKind::Pseudonym);
        assert_eq!(classify(EapType::AKA, "0"), IdentityKind::Unknown);
        assert_eq!(card_id("0c0ffee@issuer.example"), "c0ffee");
        assert_eq!(card_id("anonymous"), "anonymous");
        assert_eq!(realm("0c@issuer.example"), Some("issuer.example"));
    }
}
