//! What a card is, as the issuer describes it: the method it was issued
//! for, its confirmation policy, its status. The cards themselves live in
//! the ledger (`crate::ledger`).

use serde::{Deserialize, Serialize};

/// The EAP method a card is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CardMethod {
    Aka,
    AkaPrime,
    Sim,
    Tls,
    Ttls,
}

impl CardMethod {
    /// The name used on the command line, in files and in `Eapay-Auth-Method`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aka => "aka",
            Self::AkaPrime => "aka-prime",
            Self::Sim => "sim",
            Self::Tls => "tls",
            Self::Ttls => "ttls",
        }
    }

    /// The EAP type of a SIM/AKA family card.
    pub fn sim_aka_type(self) -> Option<eap_methods::EapType> {
        match self {
            Self::Aka => Some(eap_methods::EapType::AKA),
            Self::Sim => Some(eap_methods::EapType::SIM),
            Self::AkaPrime => Some(eap_methods::EapType::AKA_PRIME),
            Self::Tls | Self::Ttls => None,
        }
    }

    /// The card method of a SIM/AKA family EAP type.
    pub fn of_sim_aka_type(kind: eap_methods::EapType) -> Option<Self> {
        [Self::Aka, Self::Sim, Self::AkaPrime].into_iter().find(|m| m.sim_aka_type() == Some(kind))
    }

    /// The NAI prefix digit of a permanent identity, for the SIM/AKA family
    /// (the table is `eap_methods::sim_aka::identity`'s).
    pub fn identity_prefix(self) -> Option<char> {
        eap_methods::sim_aka::identity::permanent_prefix(self.sim_aka_type()?)
    }
}

/// Whether a card must confirm the payment inside the protected channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Confirmation {
    /// Our own cards: no confirmation, no approval.
    Required,
    /// Standard peers (eapol_test): decided on the terminal's assertion.
    Optional,
}

impl Confirmation {
    /// The name stored in the ledger and shown by `card list`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
        }
    }
}
