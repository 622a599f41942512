//! What can go wrong on the card's side of a card link.

use std::path::PathBuf;
use std::time::Duration;

use aaa_proto::card_link::LinkError;
use aaa_proto::payment::PaymentAttributeError;

use crate::card_file::CardFileError;
use crate::peer::PeerError;

/// Why the card could not load, keep its state, or finish a payment.
///
/// Messages are one line, fit for the end user, and never carry a secret or
/// an EAP body.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The card file cannot be read.
    #[error(transparent)]
    File(#[from] CardFileError),
    /// The card file cannot drive an EAP peer (unknown method, bad key...).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The card's state could not be written back to its file. The card
    /// must not go on: a restarted card would forget what it accepted.
    #[error("cannot write the card state back to {path}: {source}")]
    Persist { path: PathBuf, source: std::io::Error },
    /// The link failed: I/O error or a frame that does not decode.
    #[error(transparent)]
    Link(LinkError),
    /// The terminal closed the link (or sent EAPOL-Logoff) while the card
    /// still expected something.
    #[error("the terminal closed the card link {during}")]
    Closed { during: &'static str },
    /// The terminal went quiet.
    #[error("no frame from the terminal for {} s while waiting for {waiting}", after.as_secs_f64())]
    Timeout { waiting: &'static str, after: Duration },
    /// A well-formed frame that has no place at this point of the protocol.
    #[error("protocol error: the terminal sent {frame} while the card waited for {waiting}")]
    Unexpected { frame: String, waiting: &'static str },
    /// A payment-details frame whose body is not canonical payment details.
    #[error("protocol error: the payment details from the terminal are unreadable: {0}")]
    BadDetails(PaymentAttributeError),
}

impl CardError {
    /// Link errors, with EOF turned into [`CardError::Closed`].
    pub(crate) fn link(e: LinkError, during: &'static str) -> Self {
        match e {
            LinkError::Closed => CardError::Closed { during },
            other => CardError::Link(other),
        }
    }
}
