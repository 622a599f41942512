//! Identity prefixes of the SIM/AKA family (RFC 4186 §4.2.1.6,
//! RFC 4187 §4.1.1.6, RFC 5448 §3): the first character of the username
//! says whether the identity is permanent, a pseudonym or a fast
//! re-authentication identity, and for which method. This is the one table
//! of them; the issuer's card store asks it too.

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

/// The prefix digits (permanent, pseudonym, re-authentication) of `method`.
fn prefixes(method: EapType) -> Option<[char; 3]> {
    match method {
        EapType::AKA => Some(['0', '2', '4']),
        EapType::SIM => Some(['1', '3', '5']),
        EapType::AKA_PRIME => Some(['6', '7', '8']),
        _ => None,
    }
}

/// The prefix digit of identities of `kind` for `method`.
pub fn prefix(method: EapType, kind: IdentityKind) -> Option<char> {
    let [permanent, pseudonym, reauth] = prefixes(method)?;
    match kind {
        IdentityKind::Permanent => Some(permanent),
        IdentityKind::Pseudonym => Some(pseudonym),
        IdentityKind::Reauth => Some(reauth),
        IdentityKind::Unknown => None,
    }
}

/// The prefix digit of a permanent identity for `method`.
pub fn permanent_prefix(method: EapType) -> Option<char> {
    prefix(method, IdentityKind::Permanent)
}

/// Classifies `identity` for `method`. A prefix alone, with nothing after
/// it, is no identity.
pub fn classify(method: EapType, identity: &str) -> IdentityKind {
    let Some([permanent, pseudonym, reauth]) = prefixes(method) else { return IdentityKind::Unknown };
    let user = user_part(identity);
    let mut chars = user.chars();
    let first = chars.next();
    if chars.next().is_none() {
        return IdentityKind::Unknown;
    }
    match first {
        Some(c) if c == permanent => IdentityKind::Permanent,
        Some(c) if c == pseudonym => IdentityKind::Pseudonym,
        Some(c) if c == reauth => IdentityKind::Reauth,
        _ => IdentityKind::Unknown,
    }
}

/// Which method of the family, if any, `identity` is a permanent identity of.
pub fn permanent_method(identity: &str) -> Option<EapType> {
    [EapType::AKA, EapType::SIM, EapType::AKA_PRIME]
        .into_iter()
        .find(|&m| classify(m, identity) == IdentityKind::Permanent)
}

/// The card id of a permanent identity of `method`: the username without
/// its prefix digit and realm (`0c0ffee@issuer.example` -> `c0ffee`).
/// None for anything that is not a permanent identity of `method`, so a
/// pseudonym is never mistaken for a card id.
pub fn permanent_card_id(method: EapType, identity: &str) -> Option<&str> {
    (classify(method, identity) == IdentityKind::Permanent).then(|| &user_part(identity)[1..])
}

/// The username of an NAI (all of it if there is no realm).
pub fn user_part(identity: &str) -> &str {
    identity.rsplit_once('@').map_or(identity, |(user, _)| user)
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
        assert_eq!(classify(EapType::SIM, "5r@x"), IdentityKind::Reauth);
        assert_eq!(classify(EapType::SIM, "3p"), IdentityKind::Pseudonym);
        assert_eq!(classify(EapType::AKA, "0"), IdentityKind::Unknown);
        assert_eq!(classify(EapType::AKA, "0@x"), IdentityKind::Unknown);
        assert_eq!(permanent_card_id(EapType::AKA, "0c0ffee@issuer.example"), Some("c0ffee"));
        assert_eq!(permanent_card_id(EapType::AKA, "2c0ffee@issuer.example"), None, "a pseudonym is no card id");
        assert_eq!(permanent_card_id(EapType::SIM, "0c0ffee@issuer.example"), None);
        assert_eq!(permanent_method("1abc@x"), Some(EapType::SIM));
        assert_eq!(permanent_method("anonymous@x"), None);
        assert_eq!(prefix(EapType::AKA_PRIME, IdentityKind::Reauth), Some('8'));
        assert_eq!(realm("0c@issuer.example"), Some("issuer.example"));
        assert_eq!(user_part("0c@issuer.example"), "0c");
    }
}
