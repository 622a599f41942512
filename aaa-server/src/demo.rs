//! The zero-config demo: `./eapay-data` set up on first use (configuration,
//! keys, PKI, SQLite ledger, the demo merchant) with one demo card per
//! method, and the words that tell a newcomer how to pay with them.
//!
//! `eapay-server` with no arguments serves it (DESIGN.md §6); the
//! `eapay-demo` crate, which may link a card and a terminal, also runs a
//! payment through it. The server itself links no card code.

use std::path::{Path, PathBuf};

use aaa_proto::payment::PaymentDetails;

use crate::admin::{self, InitOptions, IssueOptions, TermsOptions};
use crate::cards::{CardMethod, Confirmation};
use crate::config::Config;
use crate::error::ServerError;
use crate::ledger::SqlLedger;

/// The PIN of the demo TTLS card (its inner PAP password).
pub const DEMO_PIN: &str = "1234";

/// The card that pays in the demo: our own card, which confirms the
/// amount inside AKA' (DESIGN.md §4).
pub const DEMO_CARD: &str = "demo-card";

/// The demo's data directory and cards.
pub struct Demo {
    pub config: Config,
    pub cards_dir: PathBuf,
}

impl Demo {
    /// The card file of the demo card `name`.
    pub fn card(&self, name: &str) -> PathBuf {
        self.cards_dir.join(format!("{name}.json"))
    }
}

/// Creates `./eapay-data` if it is missing (an existing configuration is
/// kept, so its ports and secret too) and issues the demo cards it lacks.
pub async fn prepare() -> Result<Demo, ServerError> {
    let data_dir = PathBuf::from(crate::DEFAULT_DATA_DIR);
    let config_path = data_dir.join(admin::CONFIG_FILE);
    let cards_dir = data_dir.join("cards");
    if !config_path.exists() {
        let address = |text: &str| {
            text.parse().map_err(|_| ServerError::Internal(format!("default address {text} does not parse")))
        };
        admin::init(&InitOptions {
            data_dir: data_dir.clone(),
            realm: admin::DEFAULT_REALM.into(),
            radius_secret: None,
            radius_listen: address(admin::DEFAULT_RADIUS_LISTEN)?,
            diameter_listen: address(admin::DEFAULT_DIAMETER_LISTEN)?,
            metrics_listen: Some(address(admin::DEFAULT_METRICS_LISTEN)?),
            force: false,
        })
        .await?;
    }
    let config = Config::load(&config_path)?;
    std::fs::create_dir_all(&cards_dir).map_err(|e| ServerError::io(&cards_dir, e))?;
    let ledger = admin::open_ledger(&config, None).await?;
    let issued = issue_demo_cards(&config, &ledger, &cards_dir).await;
    ledger.close().await;
    issued?;
    Ok(Demo { config, cards_dir })
}

async fn issue_demo_cards(config: &Config, ledger: &SqlLedger, cards_dir: &Path) -> Result<(), ServerError> {
    // eapol_test is a standard peer: its cards cannot confirm.
    let demo_cards = [
        ("demo-sim", CardMethod::Sim, true, Confirmation::Optional, None),
        ("demo-aka", CardMethod::Aka, true, Confirmation::Optional, None),
        ("demo-aka-prime", CardMethod::AkaPrime, true, Confirmation::Optional, None),
        ("demo-tls", CardMethod::Tls, true, Confirmation::Optional, None),
        ("demo-ttls", CardMethod::Ttls, true, Confirmation::Optional, Some(DEMO_PIN)),
        (DEMO_CARD, CardMethod::AkaPrime, false, Confirmation::Required, None),
    ];
    for (name, method, eapol_test, confirmation, pin) in demo_cards {
        let card_file = cards_dir.join(format!("{name}.json"));
        if card_file.exists() {
            continue;
        }
        let opts = IssueOptions {
            terms: TermsOptions {
                method,
                limit: 500_000,
                currency: 840,
                confirmation,
                pin: pin.map(str::to_owned),
                expires: None,
                key_type: None,
                inner: None,
            },
            card_file,
            eapol_test: eapol_test.then(|| cards_dir.join(format!("{name}.eapol.conf"))),
            pan: None,
        };
        admin::issue_card(config, ledger, &opts).await?;
    }
    Ok(())
}

impl Demo {
    /// Records where `server` really listens (a configured port 0 is an
    /// ephemeral one), so the help names reachable addresses.
    pub fn bound(&mut self, server: &crate::server::Server) -> Result<(), ServerError> {
        self.config.radius.auth_listen = server.auth_addr()?;
        self.config.radius.acct_listen = server.acct_addr()?;
        if let (Some(section), Some(addr)) = (self.config.diameter.as_mut(), server.diameter_addr()?) {
            section.listen = addr;
        }
        Ok(())
    }
}

/// How to pay at the demo server, for people: the servers, the cards, and
/// ready commands for eapay-terminal (RADIUS and Diameter) and eapol_test.
pub fn help(demo: &Demo) -> String {
    let config = &demo.config;
    let cards = demo.cards_dir.display();
    let secret = config.radius.clients.first().map(|c| c.secret.as_str()).unwrap_or("");
    let auth = config.radius.auth_listen;
    let mut text = format!("eapay demo payment server (realm {})\n", config.server.realm);
    text += &format!("  data directory   {}\n", config.server.data_dir.display());
    text += &format!("  RADIUS           auth {auth}  acct {}  secret {secret}\n", config.radius.acct_listen);
    if let Some(d) = &config.diameter {
        text += &format!("  Diameter         {}  origin host {}\n", d.listen, d.origin_host);
    }
    if let Some(m) = &config.metrics {
        text += &format!("  metrics          curl http://{}/metrics\n", m.listen);
    }
    text += &format!(
        "  demo cards       {cards}/demo-sim.json, demo-aka.json, demo-aka-prime.json, demo-tls.json, demo-ttls.json (PIN {DEMO_PIN}), {DEMO_CARD}.json\n"
    );
    text += "Pay with the demo card through the terminal (cargo build first; target/debug/eapay-terminal):\n";
    text += &format!(
        "  eapay-terminal pay --server {auth} --secret {secret} --merchant {} --amount 12.50 --currency USD --card {cards}/{DEMO_CARD}.json\n",
        admin::DEMO_MERCHANT
    );
    if let Some(d) = &config.diameter {
        if let Some(peer) = d.peers.first() {
            text += &format!(
                "  eapay-terminal pay --protocol diameter --server {} --origin-host {} --destination-realm {} --merchant {} --amount 12.50 --currency USD --card {cards}/{DEMO_CARD}.json\n",
                d.listen, peer.origin_host, d.origin_realm, admin::DEMO_MERCHANT
            );
        }
    }
    text +=
        "Authenticate a demo card with eapol_test (scripts/build-eapol-test.sh builds one with the SIM and USIM simulators):\n";
    let vendor = format!("{:08x}", config.server.vendor_id);
    let payment: Vec<String> =
        details().sub_attributes().iter().map(|tlv| format!("-N 26:x:{vendor}{}", hex::encode(tlv))).collect();
    for m in ["sim", "aka", "aka-prime", "tls", "ttls"] {
        text += &format!(
            "  .tools/bin/eapol_test -c {cards}/demo-{m}.eapol.conf -a {} -p {} -s {secret} \\\n    {}\n",
            auth.ip(),
            auth.port(),
            payment.join(" ")
        );
    }
    text
}

/// A 12.50 USD payment to the demo merchant, with a fresh transaction id,
/// nonce and terminal time.
pub fn details() -> PaymentDetails {
    PaymentDetails {
        transaction_id: format!("DEMO-{}", hex::encode(rand::random::<[u8; 4]>())),
        merchant_id: admin::DEMO_MERCHANT.into(),
        amount: 1250,
        currency: 840,
        installments: 0,
        terminal_nonce: rand::random(),
        terminal_time_ms: crate::core::payment::now_ms(),
    }
}
