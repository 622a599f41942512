//! Builds the card's EAP peer from its card file.

use std::sync::Arc;

use eap_methods::method::TlsSession;
use eap_methods::method::{PeerMethod, Pin};
use eap_methods::packet::EapType;
use eap_methods::peer::PeerSession;
use eap_methods::sim_aka::gsm::GsmSim;
use eap_methods::sim_aka::peer::{Identities, ReauthIdentity, SimAkaPeer, SimAkaPeerConfig, Subscriber};
use eap_methods::sim_aka::sqn::{Sqn, SqnWindow, IND_BITS};
use eap_methods::sim_aka::usim::Usim;
use eap_methods::sim_aka::{Flavor, ReauthSecret};
use eap_methods::tls::{CardTls, EapTlsPeer, PaymentToSign, TlsPeerOptions, TlsVersion};
use eap_methods::ttls::{EapTtlsPeer, TtlsPeerInner, TtlsPeerOptions};

use crate::card_file::{AkaCard, CardFile, ReauthCard, TlsCard};

/// Why a card file cannot drive a peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("card {card}: method {method} has no peer in this build")]
    Method { card: String, method: String },
    #[error("card {card}: {field} is not valid: {why}")]
    Field { card: String, field: &'static str, why: &'static str },
    #[error("card {card}: the TLS credentials are not usable: {why}")]
    Tls { card: String, why: String },
}

/// The EAP peer session for one conversation of this card. `confirmation`
/// is the canonical payment details the card confirms, if paying.
pub fn session(card: &CardFile, confirmation: Option<Vec<u8>>) -> Result<PeerSession, PeerError> {
    session_with(card, card_tls(card)?.as_ref(), confirmation)
}

/// A TLS or TTLS card's credentials, parsed and built once for all its
/// conversations (None for other methods).
pub fn card_tls(card: &CardFile) -> Result<Option<Arc<CardTls>>, PeerError> {
    let built = match card.method.as_str() {
        "tls" => {
            let tls = card.tls.as_ref().ok_or_else(|| field(card, "tls", "missing"))?;
            let pin = hex32(card, &tls.server_pin, "server_pin")?;
            let (min, max) = (TlsVersion::V1_2, TlsVersion::V1_3);
            CardTls::tls(tls.key.as_bytes(), tls.certificate.as_bytes(), pin, min, max)
        }
        "ttls" => {
            let tls = card.tls.as_ref().ok_or_else(|| field(card, "tls", "missing"))?;
            let pin = hex32(card, &tls.server_pin, "server_pin")?;
            CardTls::ttls(tls.key.as_bytes(), pin, TlsVersion::V1_2, TlsVersion::V1_3)
        }
        _ => return Ok(None),
    };
    built.map(|c| Some(Arc::new(c))).map_err(|e| PeerError::Tls { card: card.card_id.clone(), why: e.to_string() })
}

/// [`session`] with the card's TLS credentials built already ([`card_tls`]).
pub fn session_with(
    card: &CardFile,
    tls: Option<&Arc<CardTls>>,
    confirmation: Option<Vec<u8>>,
) -> Result<PeerSession, PeerError> {
    match (card.method.as_str(), tls) {
        ("tls", Some(tls)) => return tls_session(card, tls, confirmation),
        ("ttls", Some(tls)) => return ttls_session(card, tls, confirmation),
        ("tls" | "ttls", None) => return Err(field(card, "tls", "credentials not built")),
        _ => {}
    }
    let flavor = match card.method.as_str() {
        "sim" => Flavor::Sim,
        "aka" => Flavor::Aka,
        "aka-prime" => Flavor::AkaPrime { network_name: card.realm.clone() },
        other => return Err(PeerError::Method { card: card.card_id.clone(), method: other.to_string() }),
    };
    let aka = card.aka.as_ref().ok_or_else(|| field(card, "aka", "missing"))?;
    let identities = identities(card, aka, flavor.eap_type())?;
    let peer = sim_aka_peer(card, flavor, card.identity.clone(), true, confirmation, identities)?;
    // The card names itself with its re-authentication identity or
    // pseudonym when it has one (RFC 4187 §4.1.1.7), never by default with
    // the permanent identity a terminal could link.
    Ok(PeerSession::new(peer.eap_identity().to_string(), vec![Box::new(peer)]))
}

fn sim_aka_peer(
    card: &CardFile,
    flavor: Flavor,
    identity: String,
    result_ind: bool,
    confirmation: Option<Vec<u8>>,
    identities: Identities,
) -> Result<SimAkaPeer, PeerError> {
    let aka = card.aka.as_ref().ok_or_else(|| field(card, "aka", "missing"))?;
    let (k, opc) = keys(card, aka)?;
    let subscriber = match flavor {
        Flavor::Sim => Subscriber::Sim(GsmSim::new(&k, &opc)),
        _ => Subscriber::Usim(Usim::new(&k, &opc, window(card, aka)?)),
    };
    let config = SimAkaPeerConfig { flavor, identity, result_ind, confirmation, identities };
    Ok(SimAkaPeer::new(config, subscriber))
}

/// The pseudonym and re-authentication identity stored in the card file.
fn identities(card: &CardFile, aka: &AkaCard, method: EapType) -> Result<Identities, PeerError> {
    let reauth = match &aka.reauth {
        None => None,
        Some(r) => {
            let bytes = hex::decode(&r.keys).map_err(|_| field(card, "reauth.keys", "not hex"))?;
            let secret = ReauthSecret::from_bytes(method, &bytes)
                .ok_or_else(|| field(card, "reauth.keys", "not keys of this method"))?;
            Some(ReauthIdentity { identity: r.identity.clone(), counter: r.counter, secret })
        }
    };
    Ok(Identities { pseudonym: aka.pseudonym.clone(), reauth })
}

/// Writes `identities` into the card file's persisted form.
pub(crate) fn store_identities(aka: &mut AkaCard, identities: &Identities) {
    aka.pseudonym = identities.pseudonym.clone();
    aka.reauth = identities.reauth.as_ref().map(|r| ReauthCard {
        identity: r.identity.clone(),
        counter: r.counter,
        keys: hex::encode(r.secret.to_bytes()),
    });
}

/// The identities as the card file holds them, to compare with a peer's report.
pub(crate) fn stored_identities(card: &CardFile, aka: &AkaCard) -> Option<Identities> {
    let method = match card.method.as_str() {
        "sim" => EapType::SIM,
        "aka-prime" => EapType::AKA_PRIME,
        _ => EapType::AKA,
    };
    identities(card, aka, method).ok()
}

/// EAP-TTLS: the outer identity is anonymous, the card proves itself
/// inside the tunnel with its PIN (PAP) or its USIM (EAP-AKA), and signs the
/// payment with its registered key.
fn ttls_session(
    card: &CardFile,
    credentials: &Arc<CardTls>,
    confirmation: Option<Vec<u8>>,
) -> Result<PeerSession, PeerError> {
    let tls = card.tls.as_ref().ok_or_else(|| field(card, "tls", "missing"))?;
    let inner = match tls.inner.as_deref().unwrap_or("pap") {
        "pap" => {
            let pin = tls.pin.clone().ok_or_else(|| field(card, "pin", "missing (inner PAP needs it)"))?;
            TtlsPeerInner::Pap { user: card.card_id.clone(), pin: Pin(pin) }
        }
        "aka" => {
            let identity = format!("0{}@{}", card.card_id, card.realm);
            // The payment travels in the tunnel AVPs; the inner AKA
            // authenticates only, and its result is the outer method's.
            let method: Box<dyn PeerMethod> =
                Box::new(sim_aka_peer(card, Flavor::Aka, identity.clone(), false, None, Identities::default())?);
            TtlsPeerInner::Eap { identity, method }
        }
        _ => return Err(field(card, "inner", "neither pap nor aka")),
    };
    let pan_token = tls.pan_token.as_deref().map(|t| hex32(card, t, "pan_token")).transpose()?;
    let mut options = TtlsPeerOptions::new(hex32(card, &tls.server_pin, "server_pin")?, inner);
    options.session = session_of(card, tls)?;
    options.payment = confirmation.map(|details| PaymentToSign { details, pan_token });
    let peer = EapTtlsPeer::with_card(Arc::clone(credentials), options)
        .map_err(|e| PeerError::Tls { card: card.card_id.clone(), why: e.to_string() })?;
    Ok(PeerSession::new(card.identity.clone(), vec![Box::new(peer)]))
}

/// EAP-TLS with the card's registered key, the issuer's server pinned, and
/// the stored session offered for resumption.
fn tls_session(
    card: &CardFile,
    credentials: &Arc<CardTls>,
    confirmation: Option<Vec<u8>>,
) -> Result<PeerSession, PeerError> {
    let tls = card.tls.as_ref().ok_or_else(|| field(card, "tls", "missing"))?;
    let pan_token = tls.pan_token.as_deref().map(|t| hex32(card, t, "pan_token")).transpose()?;
    let options = TlsPeerOptions {
        identity: card.identity.clone(),
        session: session_of(card, tls)?,
        payment: confirmation.map(|details| PaymentToSign { details, pan_token }),
        ..TlsPeerOptions::default()
    };
    let peer = EapTlsPeer::with_card(Arc::clone(credentials), options);
    Ok(PeerSession::new(card.identity.clone(), vec![Box::new(peer)]))
}

/// The stored TLS session, if any.
pub(crate) fn session_of(card: &CardFile, tls: &TlsCard) -> Result<Option<TlsSession>, PeerError> {
    tls.session
        .as_deref()
        .map(|text| hex::decode(text).map(TlsSession).map_err(|_| field(card, "session", "not hex")))
        .transpose()
}

fn hex32(card: &CardFile, text: &str, name: &'static str) -> Result<[u8; 32], PeerError> {
    hex::decode(text).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| field(card, name, "not 64 hex digits"))
}

/// K and OPc.
fn keys(card: &CardFile, aka: &AkaCard) -> Result<([u8; 16], [u8; 16]), PeerError> {
    let key = |text: &str, name: &'static str| -> Result<[u8; 16], PeerError> {
        hex::decode(text).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| field(card, name, "not 32 hex digits"))
    };
    Ok((key(&aka.k, "k")?, key(&aka.opc, "opc")?))
}

/// The SQN window stored in the card file: `sqn` alone until the card has
/// authenticated once, then `sqn` and the 32 per-IND values.
pub(crate) fn window(card: &CardFile, aka: &AkaCard) -> Result<SqnWindow, PeerError> {
    if aka.seq_ms.is_empty() {
        return Ok(SqnWindow::starting_at(Sqn::new(aka.sqn)));
    }
    let slots: [u64; 1 << IND_BITS] =
        aka.seq_ms.clone().try_into().map_err(|_| field(card, "seq_ms", "must hold 32 values"))?;
    Ok(SqnWindow::from_parts(Sqn::new(aka.sqn), slots))
}

/// Writes `window` into the card file's persisted form.
pub(crate) fn store_window(aka: &mut AkaCard, window: &SqnWindow) {
    let (highest, slots) = window.parts();
    aka.sqn = highest.value();
    aka.seq_ms = slots.to_vec();
}

fn field(card: &CardFile, field: &'static str, why: &'static str) -> PeerError {
    PeerError::Field { card: card.card_id.clone(), field, why }
}
