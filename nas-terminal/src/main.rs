//! `eapay-terminal`: the merchant terminal on the command line.
//!
//! Exit status: 0 approved (or, for other commands, done), 1 declined (or a
//! receipt that does not verify), 2 error. Every error is one line on
//! stderr; logs (`EAPAY_LOG`, default warn) go to stderr too.
#![forbid(unsafe_code)]

#[cfg(feature = "simulated-card")]
mod bench;
mod options;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use aaa_proto::card_link::{self, CardLink, LinkAddress};
use aaa_proto::currency::{self, Currency};
use aaa_proto::eapol::Frame;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::receipt::{IssuerPublicKey, ReceiptBody};
use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use nas_terminal::payment::{self, describe_decline, Answer, Failed, Finished, Request};
use nas_terminal::reversal::{self, Accounting, ReversalAdvice, ReversalStore};
use nas_terminal::transport::Issuer;

use options::{FlushArgs, PayArgs, RadiusArgs, VerifyArgs};

#[derive(Parser)]
#[command(
    name = "eapay-terminal",
    version,
    about = "eapay merchant terminal (RADIUS or Diameter NAS, blind EAP relay)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one payment: exit 0 approved, 1 declined, 2 error.
    Pay(PayArgs),
    /// Deliver the pending timeout reversals now.
    Flush(FlushArgs),
    /// Check an issuer receipt offline.
    VerifyReceipt(VerifyArgs),
    /// Load generator: many simulated cards and terminals in one process.
    #[cfg(feature = "simulated-card")]
    Bench(bench::BenchArgs),
}

/// How a command ended, when it did not fail.
enum Outcome {
    Done,
    /// Declined, or a receipt that does not verify.
    Negative,
}

fn main() -> ExitCode {
    let parsed = Cli::command().try_get_matches().and_then(|matches| {
        let mut cli = Cli::from_arg_matches(&matches)?;
        finish_arguments(&mut cli, &matches);
        Ok(cli)
    });
    let cli = match parsed {
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
            eprintln!("eapay-terminal: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eapay-terminal: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Pay(args) => pay(args).await,
            Command::Flush(args) => flush(args).await,
            Command::VerifyReceipt(args) => verify_receipt(&args),
            #[cfg(feature = "simulated-card")]
            Command::Bench(args) => bench::run(args).await.map(|()| Outcome::Done),
        }
    });
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Err(e) => {
            eprintln!("eapay-terminal: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

/// Records whether `--secret` came from the command line: `--transport
/// tls` refuses one given there but ignores EAPAY_RADIUS_SECRET, so one
/// environment can serve terminals of both transports. Also fills in the
/// ports of servers named without one, which only the whole command line
/// can tell.
fn finish_arguments(cli: &mut Cli, matches: &ArgMatches) {
    let on_command_line = matches
        .subcommand()
        // `value_source` wants an argument the subcommand has.
        .and_then(|(_, sub)| sub.try_get_raw("secret").ok().flatten().and_then(|_| sub.value_source("secret")))
        == Some(ValueSource::CommandLine);
    match &mut cli.command {
        Command::Pay(args) => args.radius.server.secret_on_command_line = on_command_line,
        Command::Flush(args) => args.radius.server.secret_on_command_line = on_command_line,
        #[cfg(feature = "simulated-card")]
        Command::Bench(args) => args.server.secret_on_command_line = on_command_line,
        Command::VerifyReceipt(_) => {}
    }
    // Servers named without a port get the one of the protocol and transport.
    match &mut cli.command {
        Command::Pay(args) => args.radius.fill_default_ports(),
        Command::Flush(args) => args.radius.fill_default_ports(),
        #[cfg(feature = "simulated-card")]
        Command::Bench(args) => args.server.fill_default_ports(args.protocol),
        Command::VerifyReceipt(_) => {}
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EAPAY_LOG").unwrap_or_else(|_| "warn".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

async fn pay(args: PayArgs) -> Result<Outcome> {
    args.radius.check_protocol()?;
    let currency = currency::parse(&args.currency)
        .with_context(|| format!("--currency {}: not an ISO 4217 code (USD, 840, ...)", args.currency))?;
    let amount = currency::parse_amount(&args.amount, currency).with_context(|| format!("--amount {}", args.amount))?;
    let details = PaymentDetails {
        transaction_id: args.transaction_id.clone().unwrap_or_else(new_transaction_id),
        merchant_id: args.merchant.clone(),
        amount,
        currency: u32::from(currency.numeric),
        installments: args.installments,
        terminal_nonce: rand::random(),
        terminal_time_ms: options::now_ms(),
    };
    details.validate().context("payment details")?;
    let issuer_key = match &args.issuer_key {
        Some(path) => Some(load_issuer_key(path)?),
        None => None,
    };
    let store = ReversalStore::new(&args.radius.reversals);
    let mut issuer = args.radius.issuer().await?;
    // Reversals owed from earlier payments go first (ISO 8583 practice):
    // a server that is back learns about the lost answers before new ones.
    send_pending(&args.radius, &issuer, &store, false).await?;

    let settings = args.settings();
    let result = match (&args.card_link, &args.card) {
        (Some(address), _) => {
            let mut link = card_link::connect(address).await.with_context(|| format!("card link {address}"))?;
            let mut conversation = issuer.conversation(&settings);
            let result = payment::run_over(&mut link, &mut conversation, &settings, Request::Payment(&details)).await;
            // A polite goodbye; the card may already be gone.
            let _ = link.send(Frame::Logoff).await;
            result
        }
        (None, Some(card_file)) => simulated_card_payment(card_file, &mut issuer, &settings, &details).await?,
        (None, None) => {
            bail!("give the card: --card-link tcp://HOST:PORT (a card served by eapay-card) or --card FILE")
        }
    };
    issuer.close().await;
    match result {
        Ok(finished) => show(&finished, &details, currency, issuer_key.as_ref()),
        Err(failed) => Err(failure(failed, &details, &store, &args.card_link)),
    }
}

/// The error line of a failed payment; if the server may have approved it,
/// the reversal is stored first.
fn failure(
    failed: Failed,
    details: &PaymentDetails,
    store: &ReversalStore,
    link: &Option<LinkAddress>,
) -> anyhow::Error {
    let what = match (&failed.error, link) {
        (payment::PaymentError::Link(e), Some(address)) => format!("{e} ({address})"),
        (e, _) => e.to_string(),
    };
    if !failed.in_doubt {
        return anyhow::anyhow!("{what}");
    }
    let advice = ReversalAdvice {
        merchant_id: details.merchant_id.clone(),
        transaction_id: details.transaction_id.clone(),
        amount: details.amount,
        currency: details.currency,
        created_ms: options::now_ms(),
        attempts: 0,
        next_attempt_ms: 0,
        last_error: Some(what.clone()),
    };
    match store.add(advice) {
        Ok(()) => anyhow::anyhow!(
            "{what}; the payment may have been approved: reversal of {} stored in {} (sent by the next `pay` or `eapay-terminal flush`)",
            details.transaction_id,
            store.path().display()
        ),
        Err(e) => anyhow::anyhow!(
            "{what}; the payment may have been approved and its reversal could NOT be stored ({e}): reverse transaction {} by hand",
            details.transaction_id
        ),
    }
}

#[cfg(feature = "simulated-card")]
async fn simulated_card_payment(
    card_file: &Path,
    issuer: &mut Issuer,
    settings: &payment::TerminalSettings,
    details: &PaymentDetails,
) -> Result<Result<Finished, Failed>> {
    let mut card = e_card::Card::load(card_file).with_context(|| format!("--card {}", card_file.display()))?;
    // The holder of a simulated card accepts what the terminal shows; the
    // card still confirms exactly those details to the issuer.
    let request = Request::Payment(details);
    let (card_report, result) = nas_terminal::simulated::run(
        &mut card,
        &mut e_card::AutoAccept,
        &mut issuer.conversation(settings),
        settings,
        request,
    )
    .await;
    if let Err(e) = card_report {
        tracing::warn!(error = %e, "simulated card");
    }
    Ok(result)
}

#[cfg(not(feature = "simulated-card"))]
async fn simulated_card_payment(
    _card_file: &Path,
    _issuer: &mut Issuer,
    _settings: &payment::TerminalSettings,
    _details: &PaymentDetails,
) -> Result<Result<Finished, Failed>> {
    bail!("--card needs a build with the simulated-card feature; use --card-link with a card served by eapay-card")
}

/// Prints the answer as a terminal displays it.
fn show(
    finished: &Finished,
    details: &PaymentDetails,
    currency: &Currency,
    issuer_key: Option<&IssuerPublicKey>,
) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let amount = currency::format_amount(details.amount, currency);
    let context = format!("  merchant {}  transaction {}", details.merchant_id, details.transaction_id);
    let outcome = match &finished.answer {
        Answer::Approved { approval_code, receipt, .. } => {
            writeln!(out, "APPROVED {amount}  approval code {approval_code}")?;
            writeln!(out, "{context}")?;
            if let Some(receipt) = receipt {
                writeln!(out, "  receipt {}", hex::encode(receipt))?;
                if let Some(key) = issuer_key {
                    match key.verify(receipt) {
                        Ok(body) if receipt_matches(&body, details, approval_code) => {
                            writeln!(out, "  receipt verified with issuer key {}", hex::encode(key.key_id()))?
                        }
                        Ok(_) => writeln!(out, "  WARNING: the receipt is genuine but for another payment")?,
                        Err(e) => writeln!(out, "  WARNING: the receipt does not verify: {e}")?,
                    }
                }
            }
            Outcome::Done
        }
        Answer::Declined { code, reason } => {
            let code = code.map_or("(no decline code)".to_string(), describe_decline);
            match reason {
                Some(reason) => writeln!(out, "DECLINED {code}: {reason}")?,
                None => writeln!(out, "DECLINED {code}")?,
            }
            writeln!(out, "{context}  amount {amount}")?;
            Outcome::Negative
        }
        Answer::RefusedByCard => {
            writeln!(out, "DECLINED by the card holder (nothing was sent to the issuer)")?;
            writeln!(out, "{context}  amount {amount}")?;
            Outcome::Negative
        }
        Answer::Authenticated => bail!("the server authenticated the card but answered no payment"),
    };
    Ok(outcome)
}

fn receipt_matches(body: &ReceiptBody, details: &PaymentDetails, approval_code: &str) -> bool {
    body.approval_code == approval_code
        && body.transaction_id == details.transaction_id
        && body.merchant_id == details.merchant_id
        && body.amount == details.amount
        && u32::from(body.currency) == details.currency
}

/// A transaction id unique enough for one terminal: time and randomness.
fn new_transaction_id() -> String {
    format!("T{}-{}", options::now_ms(), hex::encode(rand::random::<[u8; 3]>()))
}

/// Sends the pending reversals (only those due, unless `force`) and reports
/// each on stdout. Failures leave them pending; only a broken store is an
/// error.
async fn send_pending(radius: &RadiusArgs, issuer: &Issuer, store: &ReversalStore, force: bool) -> Result<usize> {
    if store.pending()?.is_empty() {
        return Ok(0);
    }
    // RADIUS/UDP reversals go to the accounting port; RADIUS/TLS
    // reversals (RFC 6614 §2.1) and Diameter's ACRs share the connections
    // of the payments.
    let mut acct_client;
    let mut accounting = match issuer {
        Issuer::Diameter(client) => Accounting::Diameter(client),
        Issuer::Radius(client) => {
            acct_client = match client.share() {
                Some(shared) => shared,
                None => radius.acct_client().await?,
            };
            Accounting::Radius { client: &mut acct_client, nas_identifier: radius.server.nas_identifier.as_deref() }
        }
    };
    let report = reversal::flush(store, &mut accounting, radius.vendor_id, options::now_ms, force).await?;
    let mut out = std::io::stdout().lock();
    for id in &report.reversed {
        writeln!(out, "reversal of {id} delivered")?;
    }
    for (id, code) in &report.refused {
        writeln!(out, "reversal of {id} refused by the server: {}", describe_decline(*code))?;
    }
    for (id, why) in &report.failed {
        writeln!(out, "reversal of {id} still pending: {why}")?;
    }
    Ok(report.failed.len() + report.not_due)
}

async fn flush(args: FlushArgs) -> Result<Outcome> {
    args.radius.check_protocol()?;
    let store = ReversalStore::new(&args.radius.reversals);
    if store.pending()?.is_empty() {
        println!("no reversal pending in {}", store.path().display());
        return Ok(Outcome::Done);
    }
    let issuer = args.radius.issuer().await?;
    let deadline = tokio::time::Instant::now() + args.wait;
    let mut round = 0u32;
    let outcome = loop {
        let left = send_pending(&args.radius, &issuer, &store, true).await?;
        if left == 0 {
            println!("no reversal pending in {}", store.path().display());
            break Ok(Outcome::Done);
        }
        round += 1;
        let pause = reversal::backoff(round);
        if tokio::time::Instant::now() + pause > deadline {
            break Err(anyhow::anyhow!("{left} reversal(s) still pending in {}", store.path().display()));
        }
        tokio::time::sleep(pause).await;
    };
    issuer.close().await;
    outcome
}

fn load_issuer_key(path: &Path) -> Result<IssuerPublicKey> {
    let pem = std::fs::read(path).with_context(|| format!("--issuer-key {}", path.display()))?;
    IssuerPublicKey::from_pem(&pem).with_context(|| format!("--issuer-key {}", path.display()))
}

fn verify_receipt(args: &VerifyArgs) -> Result<Outcome> {
    let key = load_issuer_key(&args.issuer_key)?;
    let receipt = hex::decode(args.receipt.trim()).context("--receipt is not hexadecimal")?;
    match key.verify(&receipt) {
        Ok(body) => {
            let amount = currency::by_numeric(u32::from(body.currency)).map_or_else(
                || format!("{} (currency {})", body.amount, body.currency),
                |c| currency::format_amount(body.amount, c),
            );
            println!("receipt VALID: approval code {} for {amount}", body.approval_code);
            println!("  merchant {}  transaction {}  card {}", body.merchant_id, body.transaction_id, body.card_id);
            println!(
                "  authorized {} (issuer key {})",
                aaa_proto::time::utc_ms(body.authorized_at_ms),
                hex::encode(key.key_id())
            );
            Ok(Outcome::Done)
        }
        Err(e) => {
            println!("receipt INVALID: {e}");
            Ok(Outcome::Negative)
        }
    }
}
