//! Which card a resumable TLS session belongs to, for methods where the
//! session itself does not say it.
//!
//! EAP-TLS needs none of this: the client certificate is part of the
//! session. In EAP-TTLS the card proves itself inside the tunnel, and a
//! standard peer skips phase 2 when it resumes (RFC 5281 §8.2, wpa_supplicant
//! "Session resumption - skip phase 2"), so the server must remember whom the
//! session authenticated. Bounded by the session cache size, oldest first
//! out; OpenSSL enforces the session lifetime, and a binding outlived by its
//! session is simply never asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The card a session authenticated: its card id and the identity the
/// method reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCard {
    pub card_id: String,
    pub identity: String,
}

/// Session id → card, at most `capacity` of them.
#[derive(Debug)]
pub struct SessionCards {
    inner: Mutex<Bindings>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Bindings {
    map: HashMap<Vec<u8>, BoundCard>,
    order: VecDeque<Vec<u8>>,
}

impl SessionCards {
    /// An empty store of at most `capacity` bindings (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { inner: Mutex::new(Bindings::default()), capacity: capacity.max(1) }
    }

    /// Remembers that `session_id` authenticated `card`.
    pub fn bind(&self, session_id: &[u8], card: BoundCard) {
        if session_id.is_empty() {
            return;
        }
        let Ok(mut b) = self.inner.lock() else { return };
        if b.map.insert(session_id.to_vec(), card).is_none() {
            b.order.push_back(session_id.to_vec());
        }
        while b.order.len() > self.capacity {
            if let Some(oldest) = b.order.pop_front() {
                b.map.remove(&oldest);
            }
        }
    }

    /// The card `session_id` authenticated, if remembered.
    pub fn card_of(&self, session_id: &[u8]) -> Option<BoundCard> {
        self.inner.lock().ok()?.map.get(session_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str) -> BoundCard {
        BoundCard { card_id: id.into(), identity: format!("{id}@r") }
    }

    #[test]
    fn bindings_are_bounded_oldest_out() {
        let s = SessionCards::new(2);
        s.bind(b"a", card("1"));
        s.bind(b"b", card("2"));
        s.bind(b"a", card("3"));
        assert_eq!(s.card_of(b"a"), Some(card("3")), "rebinding replaces");
        s.bind(b"c", card("4"));
        assert_eq!(s.card_of(b"a"), None, "the oldest went");
        assert_eq!(s.card_of(b"b"), Some(card("2")));
        assert_eq!(s.card_of(b"c"), Some(card("4")));
        s.bind(b"", card("5"));
        assert_eq!(s.card_of(b""), None, "an empty id names no session");
    }
}
