//! The EAP driver: runs a [`ServerSession`] step by step, answering its
//! queries from the ledger and deciding the payment once the method has
//! authenticated the card (the decision is in [`super::payment`]). It knows
//! nothing of the transport that carried the packet.

use std::sync::Arc;

use eap_methods::server::{ServerSession, Step};
use eap_methods::sim_aka::identity::{classify, permanent_method, realm, user_part, IdentityKind};
use eap_methods::sim_aka::server::{SimAkaServer, SimAkaServerConfig};
use eap_methods::sim_aka::Flavor;
use eap_methods::tls::{EapTlsServer, TlsServerConfig};
use eap_methods::ttls::{EapTtlsServer, TtlsInner};
use eap_methods::{Answer, EapType, FailureReason, Keys, Query, Verdict};
use tracing::{debug, warn};

use super::counters::bump;
use super::payment::{self, Claim, Context, PaymentAnswer};
use super::Core;
use crate::auc::AuthenticationCentre;
use crate::cards::CardMethod;
use crate::error::ServerError;
use crate::identities::{IdentityKeys, Unresolved};
use crate::ledger::{CardProfile, Ledger};

/// What a conversation carries between two requests.
pub struct Pending {
    pub session: ServerSession,
    /// What the terminal has asserted about the payment so far.
    pub claim: Claim,
    /// The card the identity named, as looked up for method selection.
    pub card: Option<(String, CardProfile)>,
    /// The decision, once taken. With AT_RESULT_IND it travels to the card
    /// in a Notification round first, so it outlives the request that made it.
    pub decided: Option<Decided>,
    /// The method that ran, for the ledger record of a failure.
    pub method: &'static str,
    /// The NAS's Framed-MTU from the first request: it bounds the EAP-TLS
    /// fragment size (DESIGN.md §7).
    pub framed_mtu: Option<u32>,
}

/// A decision waiting for the conversation to end.
pub struct Decided {
    /// The permanent identity the method authenticated.
    pub identity: String,
    pub answer: PaymentAnswer,
    /// The terminal (RADIUS client, Diameter peer) the decision was taken for.
    pub client: String,
}

impl Pending {
    /// True while an approval is committed but not yet delivered: if the
    /// conversation ends any other way than EAP-Success, it must be reversed.
    pub fn holds_approval(&self) -> bool {
        self.decided.as_ref().is_some_and(|d| d.answer.approved())
    }

    /// Reverses an approval this conversation will never deliver (see
    /// `payment::withdraw_approval`); returns the answer to send instead.
    pub async fn withdraw<L: Ledger>(&mut self, ledger: &L, why: &str, now_ms: u64) -> Option<PaymentAnswer> {
        let decided = self.decided.take()?;
        Some(payment::withdraw_approval(ledger, &decided.client, &self.claim, decided.answer, why, now_ms).await)
    }

    /// A new conversation whose first request will use `first_id`, for a
    /// NAS that announced `framed_mtu`.
    pub fn new(first_id: u8, claim: Claim, framed_mtu: Option<u32>) -> Self {
        Self { session: ServerSession::new(first_id), claim, card: None, decided: None, method: "none", framed_mtu }
    }
}

/// Where one packet left the conversation.
pub enum Outcome {
    /// Access-Challenge carrying this EAP Request; keep the conversation.
    Challenge(Vec<u8>, Pending),
    /// Access-Accept with EAP-Success, the MSK and the approval.
    Accept { eap: Vec<u8>, keys: Keys, method: EapType, identity: String, answer: PaymentAnswer },
    /// Access-Reject with EAP-Failure and the decline.
    Reject { eap: Vec<u8>, reason: FailureReason, answer: PaymentAnswer },
    /// No reply; keep the conversation if it is not finished.
    Discard(&'static str, Pending),
}

/// Static EAP policy derived from the configuration.
#[derive(Debug, Clone)]
pub struct EapPolicy {
    pub realm: String,
    pub result_indication: bool,
    /// EAP-TLS's server context (issuer server certificate, versions,
    /// resumption, client certificate required), built once.
    pub tls: TlsServerConfig,
    /// EAP-TTLS's: the same without client authentication (the card
    /// proves itself inside the tunnel).
    pub ttls: TlsServerConfig,
    /// The Eapay vendor id (TTLS carries the payment in vendor AVPs).
    pub vendor_id: u32,
    /// SIM/AKA pseudonyms and fast re-authentication; None turns them off.
    pub privacy: Option<Privacy>,
}

/// What SIM/AKA privacy needs: the identity keys and the re-authentication limit.
#[derive(Debug, Clone)]
pub struct Privacy {
    pub keys: Arc<IdentityKeys>,
    /// Fast re-authentications in a row before a full one (0: none).
    pub fast_reauth_limit: u16,
}

/// Octets of an EAP-TLS packet that are not TLS data: the EAP header (4),
/// type (1), flags (1) and TLS Message Length (4).
const EAP_TLS_OVERHEAD: u32 = 10;

/// The EAP-TLS fragment size for a NAS that announced `framed_mtu`: an EAP
/// packet must fit its MTU (RFC 3579 §2.2). 0 means the configured size;
/// the method never goes below its floor of 64 octets.
fn fragment_size(framed_mtu: Option<u32>) -> usize {
    framed_mtu.map_or(0, |mtu| usize::try_from(mtu.saturating_sub(EAP_TLS_OVERHEAD)).unwrap_or(usize::MAX))
}

/// Runs a conversation on one EAP packet from the peer until it needs the
/// peer again, deciding the payment when the method has authenticated the card.
pub async fn drive<L: Ledger>(
    core: &Core<L>,
    ctx: &Context<'_>,
    mut pending: Pending,
    eap: &[u8],
) -> Result<Outcome, ServerError> {
    let started = std::time::Instant::now();
    let (policy, ledger) = (&core.policy, &core.ledger);
    let mut step = pending.session.handle(eap);
    loop {
        step = match step {
            Step::Send(request) => return Ok(Outcome::Challenge(request, pending)),
            Step::Discard(why) => return Ok(Outcome::Discard(why, pending)),
            Step::NeedMethods { identity } => {
                let (methods, card) = methods_for(policy, ledger, &identity, pending.framed_mtu).await?;
                if let Some((_, profile)) = &card {
                    pending.method = profile.method.name();
                }
                pending.card = card;
                pending.session.offer_methods(methods)
            }
            Step::Query(query) => {
                let answer = answer(core, ctx, query).await?;
                pending.session.answer(answer)
            }
            Step::Authenticated(a) => {
                pending.method = a.method.name();
                let card = a.card_id.clone();
                let profile = match &pending.card {
                    Some((id, profile)) if *id == card => Some(*profile),
                    _ => ledger.card_profile(&card).await?,
                };
                let signature = match &a.signature {
                    Some(signed) => {
                        let key = ledger.card_key(&card).await?;
                        let key = key.as_ref().map(|k| payment::CardKey { spki: &k.spki, v_card: k.v_card });
                        Some(payment::check_signature(key, a.confirmation.as_deref().unwrap_or_default(), signed))
                    }
                    None => None,
                };
                let answer = payment::after_authentication(
                    ledger,
                    ctx,
                    &pending.claim,
                    &card,
                    &a,
                    profile.map(|p| p.confirmation),
                    signature,
                )
                .await;
                // Timed here, in the round that decides: the card still
                // has a round to go (the result under the method's
                // protection) before the Access-Accept.
                if answer.transaction_id.is_some() {
                    core.decision_seconds.observe(started.elapsed());
                }
                let verdict = Verdict { approved: answer.approved(), result: answer.for_card() };
                pending.decided = Some(Decided { identity: a.identity, answer, client: ctx.client.to_string() });
                pending.session.conclude(verdict)
            }
            Step::Accept { packet, keys, method } => {
                return match pending.decided.take() {
                    Some(Decided { identity, answer, .. }) if answer.approved() => {
                        Ok(Outcome::Accept { eap: packet, keys, method, identity, answer })
                    }
                    // The session only succeeds after an approving verdict.
                    _ => Err(ServerError::Internal("EAP success without an approval".into())),
                };
            }
            Step::Reject { packet, reason } => {
                let answer = if pending.holds_approval() {
                    let why = format!("the conversation failed after the approval: {reason}");
                    pending.withdraw(ledger, &why, ctx.now_ms).await
                } else {
                    pending.decided.take().map(|d| d.answer)
                };
                let answer = match answer {
                    Some(answer) => answer,
                    None => payment::after_failure(ledger, ctx, &pending.claim, &reason, pending.method).await,
                };
                return Ok(Outcome::Reject { eap: packet, reason, answer });
            }
        };
    }
}

/// The methods to offer for an identity, best first.
async fn methods_for<L: Ledger>(
    policy: &EapPolicy,
    ledger: &L,
    identity: &str,
    framed_mtu: Option<u32>,
) -> Result<(Vec<Box<dyn eap_methods::method::ServerMethod>>, Option<(String, CardProfile)>), ServerError> {
    type Method = Box<dyn eap_methods::method::ServerMethod>;
    // A foreign realm is not ours to authenticate (a proxy would route it).
    if realm(identity).is_some_and(|r| !r.eq_ignore_ascii_case(&policy.realm)) {
        return Ok((Vec::new(), None));
    }
    let sim_aka = |kind: EapType| -> Option<Method> {
        let mut config = SimAkaServerConfig::new(Flavor::of(kind, &policy.realm)?);
        config.result_ind = policy.result_indication;
        if let Some(privacy) = &policy.privacy {
            config.privacy = true;
            config.fast_reauth_limit = privacy.fast_reauth_limit;
        }
        Some(Box::new(SimAkaServer::new(config, identity)))
    };
    let fragment_size = fragment_size(framed_mtu);
    let tls = || -> Method { Box::new(EapTlsServer::new(&policy.tls, identity, fragment_size)) };
    let ttls = || -> Method {
        // Inner EAP: the AKA family without AT_RESULT_IND, since the result
        // travels in the tunnel, and without pseudonyms: the tunnel already
        // hides the inner identity from the terminal.
        let inner_aka = |kind: EapType| {
            let flavor = Flavor::of(kind, &policy.realm).unwrap_or(Flavor::Aka);
            SimAkaServerConfig { result_ind: false, ..SimAkaServerConfig::new(flavor) }
        };
        let inner = TtlsInner { pap: true, eap: vec![inner_aka(EapType::AKA), inner_aka(EapType::AKA_PRIME)] };
        Box::new(EapTtlsServer::new(&policy.ttls, identity, fragment_size, inner).with_vendor_id(policy.vendor_id))
    };
    let known = card_of(ledger, identity).await?;
    let methods = match known.as_ref().map(|(_, p)| p.method) {
        Some(CardMethod::Aka) => sim_aka(EapType::AKA).into_iter().collect(),
        Some(CardMethod::AkaPrime) => sim_aka(EapType::AKA_PRIME).into_iter().collect(),
        Some(CardMethod::Sim) => sim_aka(EapType::SIM).into_iter().collect(),
        Some(CardMethod::Tls) => vec![tls()],
        Some(CardMethod::Ttls) => vec![ttls()],
        // An anonymous NAI (RFC 7542 §2.4, RFC 9190 §2.1.2): the card proves
        // who it is inside the method, so offer the TLS family, TTLS first
        // (its cards are anonymous by design; an EAP-TLS card Naks to TLS).
        None if is_anonymous(identity) => vec![ttls(), tls()],
        None => match privacy_method(identity) {
            // A pseudonym or re-authentication identity: its prefix names
            // the method, which resolves it.
            Some(kind) => sim_aka(kind).into_iter().collect(),
            // Not a card the prefix names (or no prefix): let the family ask
            // for an identity, AKA' first.
            None if permanent_method(identity).is_none() => {
                [EapType::AKA_PRIME, EapType::AKA, EapType::SIM].into_iter().filter_map(sim_aka).collect()
            }
            None => Vec::new(),
        },
    };
    Ok((methods, known))
}

/// The SIM/AKA method whose pseudonym or re-authentication prefix `identity` has.
fn privacy_method(identity: &str) -> Option<EapType> {
    [EapType::AKA, EapType::SIM, EapType::AKA_PRIME]
        .into_iter()
        .find(|&m| matches!(classify(m, identity), IdentityKind::Pseudonym | IdentityKind::Reauth))
}

/// The card an identity names: a SIM/AKA permanent identity names its card
/// after the prefix digit, a TLS card by its whole user part. A TLS card id
/// may itself start with a digit, so a prefixed name that is not a SIM/AKA
/// card is tried whole.
async fn card_of<L: Ledger>(ledger: &L, identity: &str) -> Result<Option<(String, CardProfile)>, ServerError> {
    let user = user_part(identity);
    if permanent_method(identity).is_some() {
        let stripped = &user[1..];
        let profile = ledger.card_profile(stripped).await?.filter(|p| p.method.identity_prefix().is_some());
        if let Some(profile) = profile {
            return Ok(Some((stripped.to_string(), profile)));
        }
    }
    let profile = ledger.card_profile(user).await?.filter(|p| p.method.identity_prefix().is_none());
    Ok(profile.map(|p| (user.to_string(), p)))
}

/// `@realm`, `anonymous@realm` or a bare `anonymous`.
fn is_anonymous(identity: &str) -> bool {
    matches!(user_part(identity), "" | "anonymous")
}

async fn answer<L: Ledger>(core: &Core<L>, ctx: &Context<'_>, query: Query) -> Result<Answer, ServerError> {
    let (store, c) = (&core.ledger, &core.counters);
    // A pseudonym or re-authentication identity that does not resolve: the
    // method falls back to a full authentication; the operator sees it.
    let refuse = |counter: &std::sync::atomic::AtomicU64, what: &'static str, why: &str| {
        bump(counter);
        if core.logs.allow(ctx.source, what) {
            warn!(client = ctx.client, why, "{what}: falling back to a full authentication");
        }
        Answer::UnknownCard
    };
    Ok(match query {
        Query::AkaVector { card_id, method, require_active } => match CardMethod::of_sim_aka_type(method) {
            Some(_) if require_active && !store.card_active(&card_id).await? => Answer::BlockedCard,
            Some(m) => store.aka_vector(&card_id, m).await?,
            None => Answer::UnknownCard,
        },
        Query::AkaResync { card_id, method, rand, auts } => match CardMethod::of_sim_aka_type(method) {
            Some(m) => store.aka_resync(&card_id, m, rand, auts).await?,
            None => Answer::UnknownCard,
        },
        Query::SimTriplets { card_id, require_active } => {
            if require_active && !store.card_active(&card_id).await? {
                Answer::BlockedCard
            } else {
                store.sim_triplets(&card_id).await?
            }
        }
        Query::Pseudonym { method, identity } => {
            let Some(privacy) = &core.policy.privacy else { return Ok(Answer::UnknownCard) };
            match privacy.keys.open_pseudonym(method, &identity, ctx.now_ms / 1000).map_err(Unresolved::text) {
                Ok(card_id) if store.card_active(&card_id).await? => Answer::Pseudonym { card_id },
                other => {
                    let why = other.err().unwrap_or("the card is blocked or unknown");
                    refuse(&c.pseudonyms_refused, "pseudonym refused", why)
                }
            }
        }
        Query::Reauth { method, identity } => {
            let Some(privacy) = &core.policy.privacy else { return Ok(Answer::UnknownCard) };
            match privacy.keys.open_reauth(method, &identity, ctx.now_ms / 1000).map_err(Unresolved::text) {
                Ok(ticket) if store.use_reauth(&ticket.state.card_id, ticket.issued_us).await? => {
                    bump(&c.reauth_ids_used);
                    debug!(client = ctx.client, card = %ticket.state.card_id, "fast re-authentication");
                    Answer::Reauth(ticket.state)
                }
                other => {
                    let why = other.err().unwrap_or("used before, superseded, or the card is blocked");
                    refuse(&c.reauth_ids_refused, "re-authentication identity refused", why)
                }
            }
        }
        Query::NextIdentities { method, card_id, reauth } => match &core.policy.privacy {
            Some(privacy) => Answer::NextIdentities {
                pseudonym: privacy.keys.pseudonym(method, &card_id, privacy.keys.issue_time()),
                reauth_id: reauth.and_then(|state| {
                    privacy.keys.reauth_id(method, &state, &core.policy.realm, privacy.keys.issue_time())
                }),
            },
            None => Answer::NextIdentities { pseudonym: None, reauth_id: None },
        },
        Query::CardKey { spki } => store.card_by_key(&spki).await?,
        Query::Pin { card_id, pin } => store.check_pin(&card_id, &pin.0, ctx.now_ms).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eap_tls_packet_fits_the_nas_framed_mtu() {
        assert_eq!(fragment_size(None), 0, "the configured size");
        assert_eq!(fragment_size(Some(1400)), 1390);
        assert_eq!(fragment_size(Some(300)) + EAP_TLS_OVERHEAD as usize, 300);
        assert_eq!(fragment_size(Some(4)), 0, "nonsense: the configured size");
    }

    #[test]
    fn names_of_cards() {
        assert!(
            is_anonymous("anonymous@issuer.example") && is_anonymous("@issuer.example") && is_anonymous("anonymous")
        );
        assert!(!is_anonymous("c0ffee@issuer.example"));
        assert_eq!(user_part("0abc@r"), "0abc");
        assert_eq!(user_part("abc"), "abc");
    }
}
