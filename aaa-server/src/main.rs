//! `eapay-server`: the payment server and its administration commands.
//!
//! Every error ends as one line on stderr and exit status 2; a bad argument
//! too (clap's multi-line usage text is reduced to its first line). A check
//! that ran and came out negative (`txn verify` on a signature that does not
//! verify) exits 1.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use aaa_server::admin::{
    self, BulkIssueOptions, ExportFormat, ExportOptions, InitOptions, IssueOptions, TermsOptions, TtlsInner,
};
use aaa_server::cards::{CardMethod, Confirmation};
use aaa_server::config::Config;
use aaa_server::error::ServerError;
use aaa_server::ledger::{
    AuditEntry, AuthorizationRecord, Ledger, LedgerSnapshot, PinUnlock, RegisteredKey, SqlLedger, TxnFilter, TxnKey,
};
use aaa_server::pki::KeyType;
use aaa_server::server::{serving_ledger, Server};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "eapay-server", version, about = "eapay payment server (RADIUS/EAP)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with a configuration file.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Write a starter configuration and key-encryption key.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = admin::DEFAULT_REALM)]
        realm: String,
        /// Shared secret of the demo terminal (random if omitted).
        #[arg(long)]
        radius_secret: Option<String>,
        #[arg(long, default_value = admin::DEFAULT_RADIUS_LISTEN)]
        radius_listen: SocketAddr,
        #[arg(long, default_value = admin::DEFAULT_DIAMETER_LISTEN)]
        diameter_listen: SocketAddr,
        /// Serve Prometheus metrics at http://ADDR/metrics (off when omitted).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// Overwrite an existing configuration (the key-encryption key is kept).
        #[arg(long)]
        force: bool,
    },
    /// Card administration.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// Merchant administration.
    Merchant {
        #[command(subcommand)]
        command: MerchantCommand,
    },
    /// RADIUS/TLS terminals.
    Terminal {
        #[command(subcommand)]
        command: TerminalCommand,
    },
    /// Authorizations in the ledger.
    Txn {
        #[command(subcommand)]
        command: TxnCommand,
    },
}

#[derive(Subcommand)]
enum TerminalCommand {
    /// Write a terminal's key and certificate (issuer CA) for RADIUS or
    /// Diameter over TLS, and print the [[radius.tls.clients]] entry that
    /// registers it (with --origin-host, also its [[diameter.peers]] entry).
    Issue {
        /// The terminal's name: what the ledger records and merchants link to.
        #[arg(long)]
        name: String,
        /// A merchant the terminal acts for (repeat for more).
        #[arg(long = "merchant", value_name = "ID")]
        merchants: Vec<String>,
        #[arg(long, value_name = "FILE")]
        cert_file: PathBuf,
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// Last month of validity, YYYY-MM (default: two years from now).
        #[arg(long, value_name = "YYYY-MM")]
        expires: Option<String>,
        /// Diameter over TLS: the terminal's Origin-Host; prints a [[diameter.peers]] entry too.
        #[arg(long, value_name = "FQDN", requires = "address")]
        origin_host: Option<String>,
        /// Diameter over TLS: where the terminal connects from (address or CIDR block).
        #[arg(long, value_name = "ADDR", requires = "origin_host")]
        address: Option<String>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Issue a card and write its card file (--card-file), or --count cards
    /// into --card-dir as <card_id>.json each.
    Issue {
        #[arg(long, value_enum)]
        method: CardMethod,
        #[arg(long, value_name = "FILE", conflicts_with_all = ["card_dir", "count"])]
        card_file: Option<PathBuf>,
        /// Bulk issuance: the directory for the card files of --count cards.
        #[arg(long, value_name = "DIR")]
        card_dir: Option<PathBuf>,
        /// Bulk issuance: how many cards (with --card-dir), registered in one transaction.
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(admin::MAX_BULK_CARDS)))]
        count: Option<u32>,
        /// Also write an eapol_test network block for the card (single issue only).
        #[arg(long, value_name = "FILE", conflicts_with = "card_dir")]
        eapol_test: Option<PathBuf>,
        /// Credit limit in minor units.
        #[arg(long, default_value_t = 500_000)]
        limit: u64,
        /// ISO 4217 currency of the card account: numeric (840) or alphabetic (USD).
        #[arg(long, default_value = "840")]
        currency: String,
        #[arg(long, value_enum, default_value = "required")]
        confirmation: Confirmation,
        /// Last month of validity (YYYY-MM); four years from now by default.
        #[arg(long, value_name = "YYYY-MM")]
        expires: Option<String>,
        /// The card's PIN (4-12 digits): stored as a keyed verifier; a ttls card
        /// with inner pap uses it as its inner password (then required).
        #[arg(long)]
        pin: Option<String>,
        /// The card number: reduced to a keyed token, never stored (single issue
        /// only). A tls/ttls card issued without one gets a virtual number
        /// (BIN 999999), equally reduced to its token and forgotten.
        #[arg(long, conflicts_with = "card_dir")]
        pan: Option<String>,
        /// tls/ttls: the algorithm of the card's key [default: p256].
        #[arg(long, value_enum, value_name = "TYPE")]
        key_type: Option<KeyType>,
        /// ttls: the method inside the tunnel [default: pap].
        #[arg(long, value_enum)]
        inner: Option<TtlsInner>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write the active cards for another AAA server, to benchmark it with the
    /// same cards: hostapd (aka, aka-prime: hostapd.eap_user +
    /// hlr_auc_gw.milenage_db, with K and OPc in the clear, mode 0600) or
    /// FreeRADIUS 3.2 (tls, ttls: ca.pem, server.pem, server-key.pem, users).
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Directory for the exported files (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only cards of this method (default: every method the format takes).
        #[arg(long, value_enum)]
        method: Option<CardMethod>,
        /// FreeRADIUS: the directory of the card files of TTLS/PAP cards (their
        /// PIN, which the ledger keeps only as a verifier, is their password there).
        #[arg(long, value_name = "DIR")]
        card_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List issued cards.
    List {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Block a card: it still authenticates, and every payment is declined 62.
    Block {
        card_id: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Unblock a card: its payments are decided again.
    Unblock {
        card_id: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Set a TTLS card's count of wrong PINs back to zero (after MAX wrong
    /// PINs in a row the card is locked, also for the right PIN).
    UnlockPin {
        card_id: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MerchantCommand {
    /// Register a merchant (or update it) and the terminals that may act for it.
    Add {
        merchant_id: String,
        #[arg(long)]
        name: Option<String>,
        /// A RADIUS client name from eapay.toml; repeat for several.
        #[arg(long = "client", value_name = "NAME", required = true)]
        clients: Vec<String>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Stop a terminal from acting for a merchant (its payments and
    /// settlements are then declined 57).
    RemoveClient {
        merchant_id: String,
        #[arg(long = "client", value_name = "NAME")]
        client: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List merchants.
    List {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TxnCommand {
    /// Authorizations, newest first.
    List {
        #[arg(long)]
        merchant: Option<String>,
        #[arg(long)]
        card: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// One authorization with its audit trail: by id, or MERCHANT:TRANSACTION.
    Show {
        id: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Re-check the card signature a TLS/TTLS payment stored against the card's
    /// registered key: exit 0 if it verifies, 1 if not, 2 if there is none.
    Verify {
        id: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The whole ledger at one moment, machine-readable: one JSON object per line, each with
    /// "record": "card" (limit and available amount), "authorization" or "audit"; amounts in
    /// minor units. For reconciliation (tests/src/reconcile.rs) and scripts.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: TxnExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `txn export --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TxnExportFormat {
    /// JSON lines.
    Jsonl,
}

/// How a command ended, when it did not fail.
enum Outcome {
    Done,
    /// The check ran and failed (exit 1).
    Negative,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            // clap names missing arguments on the lines after "...not provided:".
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
            if first.ends_with(':') {
                let named: Vec<&str> = lines.take_while(|l| !l.starts_with("Usage:")).collect();
                first = format!("{first} {}", named.join(", "));
            }
            eprintln!("eapay-server: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Err(e) => {
            eprintln!("eapay-server: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let done = match cli.command {
        None => runtime.block_on(demo()),
        Some(Command::Serve { config }) => runtime.block_on(serve(&Config::load(&config)?)),
        Some(Command::Init {
            data_dir,
            realm,
            radius_secret,
            radius_listen,
            diameter_listen,
            metrics_listen,
            force,
        }) => {
            let opts =
                InitOptions { data_dir, realm, radius_secret, radius_listen, diameter_listen, metrics_listen, force };
            let done = runtime.block_on(admin::init(&opts))?;
            println!("wrote {}", done.config_path.display());
            Ok(())
        }
        Some(Command::Card { command }) => runtime.block_on(card(command)),
        Some(Command::Merchant { command }) => runtime.block_on(merchant(command)),
        Some(Command::Terminal { command }) => terminal(command),
        Some(Command::Txn { command }) => return runtime.block_on(txn(command)),
    };
    done.map(|()| Outcome::Done)
}

fn config_or_default(path: Option<PathBuf>) -> Result<Config> {
    let path = path.unwrap_or_else(admin::default_config_path);
    Ok(Config::load(&path)?)
}

async fn card(command: CardCommand) -> Result<()> {
    match command {
        CardCommand::Issue {
            method,
            card_file,
            card_dir,
            count,
            eapol_test,
            limit,
            currency,
            confirmation,
            expires,
            pin,
            pan,
            key_type,
            inner,
            config,
        } => {
            let currency = aaa_proto::currency::parse(&currency)
                .with_context(|| format!("--currency {currency:?} is not an ISO 4217 currency"))?;
            let config = config_or_default(config)?;
            let terms =
                TermsOptions { method, limit, currency: currency.numeric, confirmation, pin, expires, key_type, inner };
            let card_file = match (card_file, card_dir, count) {
                (Some(file), None, None) => file,
                (None, Some(card_dir), Some(count)) => {
                    let opts = BulkIssueOptions { terms, card_dir: card_dir.clone(), count };
                    let started = std::time::Instant::now();
                    let cards =
                        with_ledger(&config, async |ledger| admin::issue_cards(&config, ledger, &opts).await).await?;
                    println!(
                        "issued {} {} cards -> {}/<card_id>.json in {:.2} s",
                        cards.len(),
                        method.name(),
                        card_dir.display(),
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                (None, Some(_), None) => anyhow::bail!("--card-dir needs --count N"),
                (None, None, Some(_)) => anyhow::bail!("--count needs --card-dir DIR"),
                _ => anyhow::bail!("give --card-file FILE, or --card-dir DIR with --count N"),
            };
            let opts = IssueOptions { terms, card_file: card_file.clone(), eapol_test, pan };
            let issued = with_ledger(&config, async |ledger| admin::issue_card(&config, ledger, &opts).await).await?;
            let card = &issued.card;
            println!("issued {} card {} as {} -> {}", card.method, card.card_id, card.identity, card_file.display());
            if let Some(last4) = &issued.virtual_pan_last4 {
                println!("  virtual card number ending {last4} (only its PAN-token is kept)");
            }
            if !issued.eapol_files.is_empty() {
                let files: Vec<String> = issued.eapol_files.iter().map(|f| f.display().to_string()).collect();
                println!("  eapol_test: {}", files.join(", "));
            }
            Ok(())
        }
        CardCommand::Export { format, out, method, card_dir, config } => {
            let config = config_or_default(config)?;
            let opts = ExportOptions { format, out_dir: out, method, card_dir };
            let done = with_ledger(&config, async |ledger| admin::export_cards(&config, ledger, &opts).await).await?;
            for line in &done.skipped {
                eprintln!("eapay-server: card export: skipped {line}");
            }
            let counts: Vec<String> = done.counts.iter().map(|(m, n)| format!("{n} {}", m.name())).collect();
            let files: Vec<String> = done.files.iter().map(|f| f.display().to_string()).collect();
            println!("exported {} cards -> {}", counts.join(" and "), files.join(", "));
            Ok(())
        }
        CardCommand::List { config } => {
            let cards = with_ledger(&config_or_default(config)?, async |ledger| ledger.cards().await).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<22} {:<10} {:<8} {:<9} {:>14} {:>14} {:<8}",
                "CARD", "METHOD", "STATUS", "CONFIRM", "LIMIT", "AVAILABLE", "EXPIRES"
            )?;
            for c in cards {
                writeln!(
                    out,
                    "{:<22} {:<10} {:<8} {:<9} {:>14} {:>14} {:<8}",
                    c.card_id,
                    c.method.name(),
                    c.status.name(),
                    c.confirmation.name(),
                    money(c.credit_limit, u32::from(c.currency)),
                    money(c.available, u32::from(c.currency)),
                    month_of(c.expires_at),
                )?;
            }
            Ok(())
        }
        CardCommand::Block { card_id, config } => {
            let config = config_or_default(config)?;
            if !with_ledger(&config, async |ledger| ledger.block_card(&card_id, "admin").await).await? {
                anyhow::bail!("no card {card_id}");
            }
            println!("blocked {card_id}");
            Ok(())
        }
        CardCommand::Unblock { card_id, config } => {
            let config = config_or_default(config)?;
            if !with_ledger(&config, async |ledger| ledger.unblock_card(&card_id, "admin").await).await? {
                anyhow::bail!("no card {card_id}");
            }
            println!("unblocked {card_id}");
            Ok(())
        }
        CardCommand::UnlockPin { card_id, config } => {
            let config = config_or_default(config)?;
            match with_ledger(&config, async |ledger| ledger.unlock_pin(&card_id, "admin").await).await? {
                PinUnlock::Unlocked { wrong_tries } => {
                    println!("pin of {card_id} unlocked ({wrong_tries} wrong tries before)");
                    Ok(())
                }
                PinUnlock::NoPin => anyhow::bail!("card {card_id} has no PIN"),
                PinUnlock::NoCard => anyhow::bail!("no card {card_id}"),
            }
        }
    }
}

fn terminal(command: TerminalCommand) -> Result<()> {
    match command {
        TerminalCommand::Issue { name, merchants, cert_file, key_file, expires, origin_host, address, config } => {
            let config = config_or_default(config)?;
            let diameter = match (origin_host, address) {
                (Some(origin_host), Some(address)) => Some(admin::DiameterIdentity { origin_host, address }),
                _ => None,
            };
            let terminal = admin::TerminalRequest { name: &name, merchants: &merchants, diameter };
            let issued = admin::issue_terminal(&config, &terminal, expires.as_deref(), &cert_file, &key_file)?;
            println!(
                "issued terminal {name}: certificate {}, key {} (key sha256 {})\n\
                 register it in eapay.toml (then restart the server):\n\n{}",
                cert_file.display(),
                key_file.display(),
                issued.key_sha256,
                issued.config_entry
            );
            Ok(())
        }
    }
}

async fn merchant(command: MerchantCommand) -> Result<()> {
    match command {
        MerchantCommand::Add { merchant_id, name, clients, config } => {
            let config = config_or_default(config)?;
            if let Some(unknown) = clients.iter().find(|c| !config.radius.clients.iter().any(|k| &k.name == *c)) {
                anyhow::bail!("--client {unknown:?} is not a radius client in the configuration");
            }
            let name = name.unwrap_or_else(|| merchant_id.clone());
            with_ledger(&config, async |ledger| ledger.add_merchant(&merchant_id, &name, &clients, "admin").await)
                .await?;
            println!("merchant {merchant_id} may be served by {}", clients.join(", "));
            Ok(())
        }
        MerchantCommand::RemoveClient { merchant_id, client, config } => {
            let config = config_or_default(config)?;
            let removed = with_ledger(&config, async |ledger| {
                ledger.remove_merchant_client(&merchant_id, &client, "admin").await
            })
            .await?;
            if !removed {
                anyhow::bail!("{client} does not act for merchant {merchant_id}");
            }
            println!("{client} no longer acts for merchant {merchant_id}");
            let configured =
                config.radius.clients.iter().any(|c| c.name == client && c.merchants.contains(&merchant_id))
                    || config
                        .diameter
                        .iter()
                        .flat_map(|d| &d.peers)
                        .any(|p| p.name == client && p.merchants.contains(&merchant_id));
            if configured {
                eprintln!(
                    "eapay-server: eapay.toml still lists {merchant_id} for {client}: \
                     the link comes back when the server starts unless it is removed there too"
                );
            }
            Ok(())
        }
        MerchantCommand::List { config } => {
            let merchants = with_ledger(&config_or_default(config)?, async |ledger| ledger.merchants().await).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:<20} {:<24} {:<8} CLIENTS", "MERCHANT", "NAME", "STATUS")?;
            for m in merchants {
                let status = if m.active { "active" } else { "inactive" };
                writeln!(out, "{:<20} {:<24} {:<8} {}", m.merchant_id, m.name, status, m.clients.join(","))?;
            }
            Ok(())
        }
    }
}

async fn txn(command: TxnCommand) -> Result<Outcome> {
    match command {
        TxnCommand::List { merchant, card, limit, config } => {
            let filter = TxnFilter { merchant_id: merchant, card_id: card, limit };
            let list =
                with_ledger(&config_or_default(config)?, async |ledger| ledger.authorizations(&filter).await).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>6} {:<12} {:<20} {:<22} {:>14} {:<10} {:<6}",
                "ID", "MERCHANT", "TRANSACTION", "CARD", "AMOUNT", "STATUS", "CODE"
            )?;
            for a in list {
                let code = match (&a.approval_code, a.decline_code) {
                    (Some(code), _) => code.clone(),
                    (None, Some(d)) => format!("{d:02}"),
                    (None, None) => String::new(),
                };
                writeln!(
                    out,
                    "{:>6} {:<12} {:<20} {:<22} {:>14} {:<10} {:<6}",
                    a.id,
                    a.merchant_id,
                    a.transaction_id,
                    a.card_id.as_deref().unwrap_or("-"),
                    money(a.amount, a.currency),
                    a.status.name(),
                    code
                )?;
            }
            Ok(Outcome::Done)
        }
        TxnCommand::Show { id, config } => {
            let config = config_or_default(config)?;
            let key = txn_key(&id)?;
            let found = with_ledger(&config, async |ledger| match ledger.authorization(&key).await? {
                Some(a) => Ok(Some((ledger.audit(a.id).await?, card_key_of(ledger, &a).await?, a))),
                None => Ok(None),
            })
            .await?;
            let Some((audit, card_key, a)) = found else { anyhow::bail!("no authorization {id}") };
            let receipt_ok = match (&a.receipt, admin::load_public_key(&config.server.data_dir)) {
                (Some(r), Ok(key)) => Some(key.verify(r).is_ok()),
                _ => None,
            };
            print_authorization(&a, receipt_ok, card_key.as_ref(), &audit)?;
            Ok(Outcome::Done)
        }
        TxnCommand::Verify { id, config } => {
            let config = config_or_default(config)?;
            let key = txn_key(&id)?;
            let found = with_ledger(&config, async |ledger| match ledger.authorization(&key).await? {
                Some(a) => Ok(Some((card_key_of(ledger, &a).await?, a))),
                None => Ok(None),
            })
            .await?;
            let Some((card_key, a)) = found else { anyhow::bail!("no authorization {id}") };
            verify_signature(&a, card_key.as_ref())
        }
        TxnCommand::Export { format: TxnExportFormat::Jsonl, out, config } => {
            let snapshot = with_ledger(&config_or_default(config)?, async |ledger| ledger.snapshot().await).await?;
            match &out {
                Some(path) => {
                    let file = std::fs::File::create(path).with_context(|| format!("--out {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    write_export(&mut w, &snapshot)
                        .and_then(|()| w.flush())
                        .with_context(|| format!("--out {}", path.display()))?;
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    write_export(&mut w, &snapshot).and_then(|()| w.flush())?;
                }
            }
            Ok(Outcome::Done)
        }
    }
}

/// `txn export --format jsonl`: cards, then authorizations, then audit lines.
fn write_export(out: &mut impl Write, snapshot: &LedgerSnapshot) -> std::io::Result<()> {
    use serde_json::json;
    let mut line = |value: serde_json::Value| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, &value)?;
        out.write_all(b"\n")
    };
    for c in &snapshot.cards {
        line(json!({
            "record": "card",
            "card_id": c.card_id,
            "method": c.method.name(),
            "status": c.status.name(),
            "currency": c.currency,
            "credit_limit": c.credit_limit,
            "available": c.available,
            "expires_at": c.expires_at,
        }))?;
    }
    for a in &snapshot.authorizations {
        line(json!({
            "record": "authorization",
            "id": a.id,
            "merchant_id": a.merchant_id,
            "transaction_id": a.transaction_id,
            "card_id": a.card_id,
            "amount": a.amount,
            "currency": a.currency,
            "installments": a.installments,
            "status": a.status.name(),
            "tombstone": a.tombstone,
            "approval_code": a.approval_code,
            "decline_code": a.decline_code,
            "decline_reason": a.decline_reason,
            "method": a.method,
            "confirmation": a.confirmation.name(),
            "client": a.client,
            "created_at_ms": a.created_at_ms,
            "updated_at_ms": a.updated_at_ms,
        }))?;
    }
    for e in &snapshot.audit {
        line(json!({
            "record": "audit",
            "id": e.id,
            "at_ms": e.at_ms,
            "actor": e.actor,
            "event": e.event,
            "authorization_id": e.authorization_id,
            "card_id": e.card_id,
            "merchant_id": e.merchant_id,
            "transaction_id": e.transaction_id,
            "detail": e.detail,
        }))?;
    }
    Ok(())
}

/// An authorization by ledger id or `MERCHANT:TRANSACTION`.
fn txn_key(id: &str) -> Result<TxnKey> {
    match id.parse::<i64>() {
        Ok(n) => Ok(TxnKey::Id(n)),
        Err(_) => match id.split_once(':') {
            Some((m, t)) => Ok(TxnKey::Merchant { merchant_id: m.to_string(), transaction_id: t.to_string() }),
            None => anyhow::bail!("{id:?} is neither an authorization id nor MERCHANT:TRANSACTION"),
        },
    }
}

/// The registered key of the card an authorization names, if it has one.
async fn card_key_of(ledger: &SqlLedger, a: &AuthorizationRecord) -> Result<Option<RegisteredKey>, ServerError> {
    match &a.card_id {
        Some(card_id) => ledger.card_key(card_id).await,
        None => Ok(None),
    }
}

/// The evidence kind of a TLS/TTLS card signature.
const SIGNATURE_EVIDENCE: &str = "signature";

/// `txn verify`: the stored signature against the card's registered key and
/// the stored canonical details.
fn verify_signature(a: &AuthorizationRecord, card_key: Option<&RegisteredKey>) -> Result<Outcome> {
    use eap_methods::tls::confirmation;

    let id = a.id;
    let evidence = match (a.evidence_kind.as_deref(), &a.evidence) {
        (Some(SIGNATURE_EVIDENCE), Some(evidence)) => evidence,
        (Some("mac"), _) => anyhow::bail!(
            "authorization {id} holds a MAC, not a signature ({} confirmations prove integrity, not who signed)",
            a.method
        ),
        (Some(kind), _) => anyhow::bail!("authorization {id} holds {kind:?} evidence, not a signature"),
        (None, _) => anyhow::bail!("authorization {id} has no card signature (the card did not confirm)"),
    };
    let Some(card_id) = &a.card_id else { anyhow::bail!("authorization {id} names no card") };
    let Some(key) = card_key else { anyhow::bail!("card {card_id} has no registered key") };
    let verified = confirmation::split_evidence(evidence)
        .is_some_and(|(exporter, signature)| confirmation::verify(&key.spki, &a.details, &exporter, signature));
    if verified {
        println!("signature verifies with card {card_id}'s registered key");
        println!(
            "  {} {} at {} (transaction {}); {} key, SHA-256 {}",
            a.status.name(),
            money(a.amount, a.currency),
            a.merchant_id,
            a.transaction_id,
            aaa_server::pki::describe_key(&key.spki),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&key.spki))
        );
        Ok(Outcome::Done)
    } else {
        println!(
            "signature DOES NOT verify with card {card_id}'s registered key ({}): authorization {id}'s \
             evidence was not made by that card for these payment details",
            aaa_server::pki::describe_key(&key.spki)
        );
        Ok(Outcome::Negative)
    }
}

fn print_authorization(
    a: &AuthorizationRecord,
    receipt_ok: Option<bool>,
    card_key: Option<&RegisteredKey>,
    audit: &[AuditEntry],
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "authorization {}", a.id)?;
    writeln!(out, "  merchant         {}", a.merchant_id)?;
    writeln!(out, "  transaction      {}", a.transaction_id)?;
    writeln!(out, "  status           {}{}", a.status.name(), if a.tombstone { " (tombstone)" } else { "" })?;
    writeln!(out, "  card             {}", a.card_id.as_deref().unwrap_or("-"))?;
    writeln!(out, "  amount           {}", money(a.amount, a.currency))?;
    writeln!(out, "  installments     {}", a.installments)?;
    writeln!(out, "  method           {}", a.method)?;
    writeln!(
        out,
        "  terminal         {} (nonce {}, time {} ms)",
        a.client,
        hex::encode(&a.terminal_nonce),
        a.terminal_time_ms
    )?;
    if let Some(code) = &a.approval_code {
        writeln!(out, "  approval code    {code}")?;
    }
    if let Some(code) = a.decline_code {
        writeln!(out, "  decline          {code:02} {}", a.decline_reason.as_deref().unwrap_or(""))?;
    }
    writeln!(out, "  confirmation     {}", a.confirmation.name())?;
    match (a.evidence_kind.as_deref(), &a.evidence) {
        (Some(SIGNATURE_EVIDENCE), Some(evidence)) => {
            let algorithm = card_key.map(|k| aaa_server::pki::describe_key(&k.spki));
            match eap_methods::tls::confirmation::split_evidence(evidence) {
                Some((exporter, signature)) => {
                    let what = match algorithm {
                        Some(algorithm) => format!("{algorithm}, {} octets", signature.len()),
                        None => format!("{} octets, card has no registered key", signature.len()),
                    };
                    writeln!(out, "  evidence         signature ({what}) exporter {}", hex::encode(exporter))?;
                    writeln!(out, "                   {}", hex::encode(signature))?;
                }
                None => writeln!(out, "  evidence         signature (malformed) {}", hex::encode(evidence))?,
            }
        }
        (Some(kind), Some(evidence)) => writeln!(out, "  evidence ({kind})  {}", hex::encode(evidence))?,
        _ => {}
    }
    if let Some(receipt) = &a.receipt {
        let verdict = match receipt_ok {
            Some(true) => "verifies with issuer.pub",
            Some(false) => "DOES NOT VERIFY with issuer.pub",
            None => "issuer.pub not available",
        };
        writeln!(out, "  receipt          {} ({verdict})", hex::encode(receipt))?;
    }
    writeln!(out, "  created          {} ms, updated {} ms", a.created_at_ms, a.updated_at_ms)?;
    writeln!(out, "audit")?;
    for e in audit {
        writeln!(out, "  {} {:<10} {:<22} {}", e.at_ms, e.actor, e.event, e.detail)?;
    }
    Ok(())
}

fn money(minor: u64, currency: u32) -> String {
    match aaa_proto::currency::by_numeric(currency) {
        Some(c) => aaa_proto::currency::format_amount(minor, c),
        None => format!("{minor} ({currency})"),
    }
}

/// `YYYY-MM` of a Unix time (the inverse of the issuance option).
fn month_of(unix: u64) -> String {
    let (year, month, _) = aaa_proto::time::civil_from_days(i64::try_from(unix / 86_400).unwrap_or(0));
    format!("{year:04}-{month:02}")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EAPAY_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

async fn serve(config: &Config) -> Result<()> {
    init_logging();
    let ledger = serving_ledger(config).await?;
    start(config, ledger).await?.run().await?;
    Ok(())
}

/// Binds the server's sockets and announces them.
async fn start(config: &Config, ledger: SqlLedger) -> Result<Server> {
    let server = Server::bind(config, ledger).await?;
    server.announce()?;
    Ok(server)
}

/// Runs one admin command against the ledger of `config`, closing the
/// ledger (its writer drained) whatever the command's outcome.
async fn with_ledger<T>(config: &Config, command: impl AsyncFnOnce(&SqlLedger) -> Result<T, ServerError>) -> Result<T> {
    let ledger = admin::open_ledger(config, None).await?;
    let result = command(&ledger).await;
    ledger.close().await;
    Ok(result?)
}

/// `eapay-server` with no arguments: the zero-config demo server in
/// ./eapay-data, with instructions to pay (DESIGN.md §6). `cargo run -p
/// eapay-demo` also makes a payment through it.
async fn demo() -> Result<()> {
    let mut demo = aaa_server::demo::prepare().await?;
    init_logging();
    let ledger = serving_ledger(&demo.config).await?;
    let server = Server::bind(&demo.config, ledger).await?;
    demo.bound(&server)?;
    print!("{}", aaa_server::demo::help(&demo));
    server.announce()?;
    server.run().await?;
    Ok(())
}
