//! A loaded card: its [`CardFile`] and where it lives, and how the state its
//! EAP methods report (the SQN window, SIM/AKA pseudonyms and fast
//! re-authentication identities, TLS sessions) is kept across runs.
//!
//! The state is written back atomically — a temporary file in the same
//! directory, mode 0600, fsync, rename over the card file, fsync of the
//! directory — so a crash leaves the old or the new file, never a torn one.
//! The session driver stores the state *before* the response that follows a
//! change leaves the card: a card that crashed after answering a challenge
//! must still refuse that challenge when it restarts.

use std::path::{Path, PathBuf};

use std::sync::{Arc, OnceLock};

use eap_methods::method::PeerMemory;
use eap_methods::peer::PeerSession;
use eap_methods::tls::CardTls;

use crate::card_file::CardFile;
use crate::error::CardError;
use crate::peer;

/// A card: its file and, unless it lives in memory only, the path its state
/// is written back to.
pub struct Card {
    file: CardFile,
    path: Option<PathBuf>,
    /// TLS/TTLS: the OpenSSL context and key, built on first use and kept
    /// for every later conversation (the credentials never change).
    tls: OnceLock<Arc<CardTls>>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card").field("file", &self.file).field("path", &self.path).finish()
    }
}

impl Card {
    /// Loads a card file and checks that it can drive an EAP peer, so that a
    /// bad file is refused at start-up rather than at the first payment.
    pub fn load(path: &Path) -> Result<Card, CardError> {
        let file = CardFile::load(path)?;
        peer::session(&file, None)?;
        warn_if_exposed(path);
        // Write back to the file itself, not over a symbolic link to it.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Card { file, path: Some(path), tls: OnceLock::new() })
    }

    /// A card that keeps its state in memory only (the load generator's
    /// simulated cards).
    pub fn in_memory(file: CardFile) -> Card {
        Card { file, path: None, tls: OnceLock::new() }
    }

    /// The EAP peer for one conversation; `confirmation` is the canonical
    /// payment details the card confirms, if paying.
    pub fn peer_session(&self, confirmation: Option<Vec<u8>>) -> Result<PeerSession, peer::PeerError> {
        let tls = match self.tls.get() {
            Some(tls) => Some(tls),
            None => peer::card_tls(&self.file)?.map(|built| self.tls.get_or_init(|| built)),
        };
        peer::session_with(&self.file, tls, confirmation)
    }

    /// The card file as it stands, state included.
    pub fn file(&self) -> &CardFile {
        &self.file
    }

    /// Where the state is written back, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Takes the state a peer reports (`PeerSession::remember`). If it
    /// differs from what the card holds, updates the card and, for a card
    /// loaded from a file, writes the file back atomically before returning.
    /// Returns whether anything changed.
    pub fn remember(&mut self, memory: &[PeerMemory]) -> Result<bool, CardError> {
        let mut changed = false;
        for item in memory {
            match item {
                PeerMemory::SqnWindow(window) => {
                    let file = &self.file;
                    let Some(aka) = file.aka.as_ref() else {
                        tracing::warn!(card = %file.card_id, "an SQN window was reported for a card without AKA credentials");
                        continue;
                    };
                    if peer::window(file, aka).is_ok_and(|stored| stored == *window) {
                        continue;
                    }
                    if let Some(aka) = self.file.aka.as_mut() {
                        peer::store_window(aka, window);
                        changed = true;
                    }
                }
                PeerMemory::SimAkaIdentities(identities) => {
                    let file = &self.file;
                    // A TTLS card's inner AKA gets no identities: nothing to keep.
                    let Some(aka) = file.aka.as_ref().filter(|_| file.tls.is_none()) else { continue };
                    if peer::stored_identities(file, aka).as_ref() == Some(identities) {
                        continue;
                    }
                    if let Some(aka) = self.file.aka.as_mut() {
                        peer::store_identities(aka, identities);
                        changed = true;
                    }
                }
                PeerMemory::TlsSession(session) => {
                    let file = &self.file;
                    let Some(tls) = file.tls.as_ref() else {
                        tracing::warn!(card = %file.card_id, "a TLS session was reported for a card without TLS credentials");
                        continue;
                    };
                    if peer::session_of(file, tls).ok().flatten().as_ref() == Some(session) {
                        continue;
                    }
                    if let Some(tls) = self.file.tls.as_mut() {
                        tls.session = Some(hex::encode(&session.0));
                        changed = true;
                    }
                }
                // Kinds this build does not keep yet. Not printed: they may
                // be secret.
                _ => tracing::debug!(card = %self.file.card_id, "the peer reported state this card does not keep"),
            }
        }
        if changed {
            self.persist()?;
        }
        Ok(changed)
    }

    /// Whether the card holds a TLS session to offer for resumption.
    pub fn has_session(&self) -> bool {
        self.file.tls.as_ref().is_some_and(|tls| tls.session.is_some())
    }

    /// Drops the stored TLS session, so that the next conversation makes a
    /// full handshake (the load generator's `--resumption off`). Like
    /// [`Card::remember`], writes a card file back before returning and
    /// says whether anything changed.
    pub fn forget_session(&mut self) -> Result<bool, CardError> {
        let Some(tls) = self.file.tls.as_mut() else { return Ok(false) };
        if tls.session.take().is_none() {
            return Ok(false);
        }
        self.persist()?;
        Ok(true)
    }

    /// Whether the card holds a fast re-authentication identity (RFC 4186/4187
    /// §5), which it names itself with in its next conversation.
    pub fn has_reauth_identity(&self) -> bool {
        self.file.aka.as_ref().is_some_and(|aka| aka.reauth.is_some())
    }

    /// Drops the pseudonym and the fast re-authentication identity, so that
    /// the next conversation is a full authentication under the permanent
    /// identity (the load generator's `--resumption off` for SIM and AKA).
    /// Like [`Card::remember`], writes a card file back before returning and
    /// says whether anything changed.
    pub fn forget_identities(&mut self) -> Result<bool, CardError> {
        let Some(aka) = self.file.aka.as_mut() else { return Ok(false) };
        let pseudonym = aka.pseudonym.take();
        let reauth = aka.reauth.take();
        if pseudonym.is_none() && reauth.is_none() {
            return Ok(false);
        }
        self.persist()?;
        Ok(true)
    }

    /// Writes the card file back, if the card has one.
    fn persist(&self) -> Result<(), CardError> {
        let Some(path) = &self.path else { return Ok(()) };
        let persist_error = |source| CardError::Persist { path: path.clone(), source };
        let json = serde_json::to_string_pretty(&self.file)
            .map_err(|e| persist_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        aaa_proto::durable::replace_file(path, json.as_bytes(), 0o600).map_err(persist_error)?;
        tracing::debug!(card = %self.file.card_id, "card state written back");
        Ok(())
    }
}

/// The card file holds K and OPc in the clear: say so if others can read it.
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} is readable or writable by others (mode {:o}); it holds the card's secrets, chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card_file::{AkaCard, VERSION};
    use eap_methods::sim_aka::sqn::{Sqn, SqnWindow};

    fn card_file() -> CardFile {
        CardFile {
            version: VERSION,
            card_id: "c0ffee".into(),
            method: "aka".into(),
            identity: "0c0ffee@issuer.example".into(),
            realm: "issuer.example".into(),
            aka: Some(AkaCard::new("46".repeat(16), "2b".repeat(16))),
            tls: None,
        }
    }

    #[test]
    fn an_unchanged_window_is_not_written() {
        let mut card = Card::in_memory(card_file());
        let same = SqnWindow::starting_at(Sqn::new(0));
        assert!(!card.remember(&[PeerMemory::SqnWindow(same)]).unwrap());
        assert!(card.file().aka.as_ref().unwrap().seq_ms.is_empty());
    }

    #[test]
    fn a_new_window_is_written_atomically_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        std::fs::write(&path, card_file().to_json()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut card = Card::load(&path).unwrap();
        let mut window = SqnWindow::starting_at(Sqn::new(0));
        window.accept(Sqn::new((5 << 5) | 3));
        assert!(card.remember(&[PeerMemory::SqnWindow(window.clone())]).unwrap());
        let back = CardFile::load(&path).unwrap();
        let aka = back.aka.as_ref().unwrap();
        assert_eq!(aka.sqn, (5 << 5) | 3);
        assert_eq!(aka.seq_ms.len(), 32);
        assert_eq!(aka.seq_ms[3], 5);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // The same window again: nothing to write.
        assert!(!card.remember(&[PeerMemory::SqnWindow(window)]).unwrap());
    }

    #[test]
    fn a_forgotten_session_is_gone() {
        let tls = crate::card_file::TlsCard {
            key: String::new(),
            certificate: String::new(),
            ca: String::new(),
            server_pin: "00".repeat(32),
            pan_token: None,
            inner: None,
            pin: None,
            session: Some("3082".into()),
        };
        let mut card = Card::in_memory(CardFile { method: "tls".into(), aka: None, tls: Some(tls), ..card_file() });
        assert!(card.has_session());
        assert!(card.forget_session().unwrap());
        assert!(!card.has_session());
        assert!(!card.forget_session().unwrap());
        assert!(!Card::in_memory(card_file()).forget_session().unwrap());
    }

    #[test]
    fn forgotten_identities_are_gone_from_memory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let mut file = card_file();
        if let Some(aka) = file.aka.as_mut() {
            aka.pseudonym = Some("pseudonym@issuer.example".into());
            aka.reauth = Some(crate::card_file::ReauthCard {
                identity: "reauth@issuer.example".into(),
                counter: 3,
                keys: "00".repeat(20),
            });
        }
        std::fs::write(&path, file.to_json()).unwrap();
        let mut card = Card::load(&path).unwrap();
        assert!(card.has_reauth_identity());
        assert!(card.forget_identities().unwrap());
        assert!(!card.has_reauth_identity());
        let back = CardFile::load(&path).unwrap();
        let aka = back.aka.as_ref().unwrap();
        assert!(aka.pseudonym.is_none() && aka.reauth.is_none());
        assert!(!card.forget_identities().unwrap());
        // A pseudonym alone is forgotten too: the next identity is the permanent one.
        let mut only_pseudonym = card_file();
        only_pseudonym.aka.as_mut().unwrap().pseudonym = Some("p@issuer.example".into());
        let mut card = Card::in_memory(only_pseudonym);
        assert!(card.forget_identities().unwrap());
        assert!(card.file().aka.as_ref().unwrap().pseudonym.is_none());
        let tls_only = CardFile { method: "tls".into(), aka: None, ..card_file() };
        assert!(!Card::in_memory(tls_only).forget_identities().unwrap());
    }

    #[test]
    fn an_unwritable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        std::fs::write(&path, card_file().to_json()).unwrap();
        let mut card = Card::load(&path).unwrap();
        card.path = Some(dir.path().join("missing").join("card.json"));
        let mut window = SqnWindow::starting_at(Sqn::new(0));
        window.accept(Sqn::new(1 << 5));
        let e = card.remember(&[PeerMemory::SqnWindow(window)]).unwrap_err();
        assert!(matches!(e, CardError::Persist { .. }), "{e}");
    }
}
