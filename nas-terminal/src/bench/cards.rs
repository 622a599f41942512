//! The simulated cards: card files of one method from a directory, played
//! in memory (their SQN state, SIM/AKA identities and TLS sessions are not
//! written back; the issuer's SQN only moves forward, so the files stay
//! usable for the next run, and each run starts with full authentications).

use std::path::Path;

use anyhow::{bail, Context, Result};
use e_card::card_file::CardFile;
use e_card::Card;

use super::args::Method;

/// Loads `count` cards of `method` from `dir` (`*.json`, in name order).
/// Files of another method are skipped; a card file of the method that
/// cannot drive an EAP peer is an error.
pub fn load(dir: &Path, method: Method, count: usize) -> Result<Vec<Card>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("--card-dir {}: {}", dir.display(), issue_hint(dir, method, count)))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("--card-dir {}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut cards = Vec::with_capacity(count);
    let mut not_cards = 0usize;
    for path in &paths {
        if cards.len() == count {
            break;
        }
        let file = match CardFile::load(path) {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!(error = %e, "not a card file, skipped");
                not_cards += 1;
                continue;
            }
        };
        if file.method != method.name() {
            continue;
        }
        // The same check as `eapay-card`: a card that cannot run its method
        // is refused now, not at its first payment.
        e_card::peer::session(&file, None).with_context(|| format!("card file {}", path.display()))?;
        cards.push(Card::in_memory(file));
    }
    if cards.len() < count {
        let skipped = if not_cards > 0 { format!(" ({not_cards} other .json files skipped)") } else { String::new() };
        bail!(
            "--card-dir {} has {} {} card(s), --cards asks for {count}{skipped}: {}",
            dir.display(),
            cards.len(),
            method.name(),
            issue_hint(dir, method, count - cards.len())
        );
    }
    Ok(cards)
}

/// The command that issues the missing cards.
fn issue_hint(dir: &Path, method: Method, missing: usize) -> String {
    // Inner PAP (the default for ttls) needs the PIN in the card file.
    let pin = if method == Method::Ttls { " --pin 1234" } else { "" };
    format!(
        "issue them with `eapay-server card issue --config eapay.toml --method {}{pin} --count {missing} --card-dir {} \
         --limit 100000000`",
        method.name(),
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use e_card::card_file::{AkaCard, VERSION};

    fn card(id: &str, method: &str) -> CardFile {
        // The permanent identity's leading digit names the method (RFC 4186/4187 §4.1.1.6).
        let prefix = if method == "sim" { '1' } else { '0' };
        CardFile {
            version: VERSION,
            card_id: id.into(),
            method: method.into(),
            identity: format!("{prefix}{id}@issuer.example"),
            realm: "issuer.example".into(),
            aka: Some(AkaCard::new("46".repeat(16), "2b".repeat(16))),
            tls: None,
        }
    }

    #[test]
    fn loads_the_cards_of_the_method_and_says_how_to_issue_more() {
        let dir = tempfile::tempdir().unwrap();
        for (i, m) in ["aka", "aka-prime", "aka", "sim"].iter().enumerate() {
            std::fs::write(dir.path().join(format!("c{i}.json")), card(&format!("c{i}"), m).to_json()).unwrap();
        }
        std::fs::write(dir.path().join("other.json"), "{}").unwrap();
        let cards = load(dir.path(), Method::Aka, 2).unwrap();
        assert_eq!(cards.iter().map(|c| c.file().card_id.as_str()).collect::<Vec<_>>(), ["c0", "c2"]);
        let e = load(dir.path(), Method::AkaPrime, 3).unwrap_err().to_string();
        assert!(e.contains("has 1 aka-prime card(s), --cards asks for 3"), "{e}");
        assert!(e.contains("card issue --config eapay.toml --method aka-prime --count 2 --card-dir"), "{e}");
        let e = format!("{:#}", load(&dir.path().join("missing"), Method::Aka, 1).unwrap_err());
        assert!(e.contains("--count 1 --card-dir"), "{e}");
        let sim = load(dir.path(), Method::Sim, 1).unwrap();
        assert_eq!((sim[0].file().card_id.as_str(), sim[0].file().identity.as_str()), ("c3", "1c3@issuer.example"));
        let e = load(dir.path(), Method::Sim, 2).unwrap_err().to_string();
        assert!(e.contains("has 1 sim card(s)") && e.contains("--method sim --count 1 --card-dir"), "{e}");
        let e = load(dir.path(), Method::Ttls, 1).unwrap_err().to_string();
        assert!(e.contains("has 0 ttls card(s)") && e.contains("--method ttls --pin 1234 --count 1"), "{e}");
    }
}
