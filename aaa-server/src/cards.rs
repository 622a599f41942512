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

    /// The NAI prefix digit of a permanent identity, for the SIM/AKA family.
    pub fn identity_prefix(self) -> Option<char> {
        match self {
            Self::Aka => Some('0'),
            Self::Sim => Some('1'),
            Self::AkaPrime => Some('6'),
            Self::Tls | Self::Ttls => None,
        }
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
