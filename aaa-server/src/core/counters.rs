//! Counters for everything the request path accepts, answers or drops.
//! Drops are never silent to the operator: each has a counter and a
//! rate-limited log line. The conversation counters live here; each front
//! end declares its transport's own with [`counters!`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Declares a struct of monotonic counters with a `snapshot()`.
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* $ty:ident { $($name:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $ty { $(pub $name: std::sync::atomic::AtomicU64,)* }

        impl $ty {
            /// `(name, value)` pairs, for logs and Status-Server.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(std::sync::atomic::Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(
    /// What became of EAP conversations and settlements, whatever carried them.
    Counters {
    accepts,
    rejects,
    challenges,
    eap_discarded,
    eap_unknown_conversation,
    eap_unknown_conversation_approved,
    eap_table_full,
    eap_expired,
    eap_failed_authentication,
    eap_failed_protocol,
    eap_failed_unknown_card,
    eap_failed_by_peer,
    eap_failed_too_many_rounds,
    eap_failed_pin,
    eap_declined,
    pseudonyms_refused,
    reauth_ids_refused,
    reauth_ids_used,
    store_errors,
    }
);

impl Counters {
    /// The counter of a conversation that ended in EAP-Failure for `reason`.
    pub fn failure(&self, reason: &eap_methods::FailureReason) -> &AtomicU64 {
        use eap_methods::FailureReason as R;
        match reason {
            R::AuthenticationFailed(_) => &self.eap_failed_authentication,
            R::UnknownIdentity | R::NoCommonMethod => &self.eap_failed_unknown_card,
            R::RejectedByPeer | R::ClientError(_) => &self.eap_failed_by_peer,
            R::Protocol(_) => &self.eap_failed_protocol,
            R::TooManyRounds => &self.eap_failed_too_many_rounds,
            R::IncorrectPin | R::PinTriesExceeded => &self.eap_failed_pin,
            R::Declined => &self.eap_declined,
        }
    }
}

/// Adds one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Lets one log line per (source, reason) through per interval, so a flood
/// of bad packets costs a counter, not a disk.
pub struct LogLimiter {
    last: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
    every: Duration,
}

impl LogLimiter {
    /// One line per key per `every`.
    pub fn new(every: Duration) -> Self {
        Self { last: Mutex::new(HashMap::new()), every }
    }

    /// True if a line for this key may be logged now.
    pub fn allow(&self, source: IpAddr, reason: &'static str) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        let now = Instant::now();
        if last.len() > 10_000 {
            last.retain(|_, t| now.duration_since(*t) < self.every);
        }
        match last.get(&(source, reason)) {
            Some(t) if now.duration_since(*t) < self.every => false,
            _ => {
                last.insert((source, reason), now);
                true
            }
        }
    }
}
