//! The authentication centre: what the issuer computes from a card's K and
//! OPc for the SIM/AKA family. AKA and AKA' vectors (TS 33.102 §6.3.2) and
//! resynchronisation (§6.3.5) from Milenage, EAP-SIM triplets from
//! GSM-Milenage (TS 55.205). The ledger only stores for it: the sealed keys
//! and the SQN it reserves durably ([`Ledger::next_sqn`]).
//!
//! [`AuthenticationCentre`] is implemented for every [`Ledger`], so the
//! request path (and a test) asks the ledger it has.

use std::fmt;
use std::future::Future;

use eap_methods::crypto::milenage::Milenage;
use eap_methods::sim_aka::auc::{generate_triplets, generate_vector, sqn_from_auts};
use eap_methods::Answer;

use crate::cards::CardMethod;
use crate::error::ServerError;
use crate::ledger::Ledger;

/// Triplets per EAP-SIM challenge: RFC 4186 allows two or three; three give
/// the 192-bit Kc material the key derivation was designed for.
pub const SIM_TRIPLETS: usize = 3;

/// A card's opened K/OPc, as Milenage, and its AMF. Lives only for one
/// computation; Debug hides it.
pub struct SubscriberKeys {
    pub milenage: Milenage,
    pub amf: [u8; 2],
}

impl fmt::Debug for SubscriberKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubscriberKeys(<hidden>)")
    }
}

/// Vectors and triplets for the EAP methods' queries.
pub trait AuthenticationCentre {
    /// A fresh vector for a card of `method` (`Answer::UnknownCard` if
    /// unknown or of another method); its SQN is durable first.
    fn aka_vector(&self, card_id: &str, method: CardMethod)
        -> impl Future<Output = Result<Answer, ServerError>> + Send;

    /// Resynchronises from AUTS (TS 33.102 §6.3.5), then a fresh vector;
    /// `Answer::ResyncRejected` if the AUTS does not verify.
    fn aka_resync(
        &self,
        card_id: &str,
        method: CardMethod,
        rand: [u8; 16],
        auts: [u8; 14],
    ) -> impl Future<Output = Result<Answer, ServerError>> + Send;

    /// Three triplets with distinct RANDs for an EAP-SIM card.
    fn sim_triplets(&self, card_id: &str) -> impl Future<Output = Result<Answer, ServerError>> + Send;
}

impl<L: Ledger> AuthenticationCentre for L {
    async fn aka_vector(&self, card_id: &str, method: CardMethod) -> Result<Answer, ServerError> {
        Ok(match self.next_sqn(card_id, method, None).await? {
            Some((keys, sqn)) => Answer::AkaVector(generate_vector(&keys.milenage, sqn, keys.amf, rand::random())),
            None => Answer::UnknownCard,
        })
    }

    async fn aka_resync(
        &self,
        card_id: &str,
        method: CardMethod,
        rand: [u8; 16],
        auts: [u8; 14],
    ) -> Result<Answer, ServerError> {
        let Some(keys) = self.subscriber(card_id, method).await? else { return Ok(Answer::UnknownCard) };
        let Some(sqn_ms) = sqn_from_auts(&keys.milenage, &rand, &auts) else { return Ok(Answer::ResyncRejected) };
        Ok(match self.next_sqn(card_id, method, Some(sqn_ms.value())).await? {
            Some((keys, sqn)) => Answer::AkaVector(generate_vector(&keys.milenage, sqn, keys.amf, rand::random())),
            None => Answer::UnknownCard,
        })
    }

    async fn sim_triplets(&self, card_id: &str) -> Result<Answer, ServerError> {
        Ok(match self.subscriber(card_id, CardMethod::Sim).await? {
            Some(keys) => Answer::SimTriplets(generate_triplets(&keys.milenage, SIM_TRIPLETS)),
            None => Answer::UnknownCard,
        })
    }
}
