//! `eapay-card`: a card in a process of its own, serving a card link.
//!
//! ```text
//! eapay-card serve --card-file card.json --listen 127.0.0.1:7000|tcp://H:P|unix:/path
//!                  [--once] [--consent auto|refuse|ask] [--max-amount 100.00]
//!                  [--timeout SECONDS] [--idle-timeout SECONDS]
//! ```
//!
//! Standard output carries what the holder sees: the listening line, each
//! payment it is asked to confirm and the answer, and the result the card
//! got with the terminal's display checked against it. Logs go to standard
//! error (`RUST_LOG`, default `info`). One terminal at a time: a card is one
//! device, so further connections wait in the listen queue.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aaa_proto::card_link::{LinkAddress, Listener};
use aaa_proto::payment::PaymentDetails;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use e_card::{serve_next, show, AmountLimit, Ask, AutoAccept, Card, CardError, Holder, Refuse, ServeOptions};

#[derive(Parser)]
#[command(name = "eapay-card", version, about = "The eapay electronic card: serves payments over a card link")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a card link: a terminal connects and runs payments with this card.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The card file written by `eapay-server card issue`; its SQN state is written back to it.
    #[arg(long, value_name = "PATH")]
    card_file: PathBuf,
    /// Where to listen: HOST:PORT, tcp://HOST:PORT (port 0: any free port) or unix:/PATH.
    #[arg(long, value_name = "ADDRESS")]
    listen: LinkAddress,
    /// Exit after one terminal connection: 0 if it completed a payment, whatever the outcome.
    #[arg(long)]
    once: bool,
    /// How the holder answers: accept everything, refuse everything, or ask on the terminal (/dev/tty).
    #[arg(long, value_enum, default_value_t = Consent::Auto)]
    consent: Consent,
    /// Refuse, without asking, any payment above this amount (in the payment's currency).
    #[arg(long, value_name = "AMOUNT")]
    max_amount: Option<String>,
    /// Longest wait for the terminal's next frame in the middle of a payment, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Drop a connected terminal that starts no payment for this many seconds (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    idle_timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Consent {
    Auto,
    Refuse,
    Ask,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eapay-card: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let Command::Serve(args) = cli.command;
    let result = runtime.block_on(serve(args));
    // A holder may still be blocked reading the terminal: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eapay-card: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each said once (a wrapped error's
/// message often already quotes its source).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn serve(args: ServeArgs) -> Result<()> {
    let card = Card::load(&args.card_file)?;
    let holder = holder(&args)?;
    let options = ServeOptions {
        frame_timeout: Duration::from_secs(args.timeout),
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
    };
    // Signals are caught from before the listening line, so a supervisor
    // that stops the card as soon as it reads the line gets a clean exit.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let listener = Listener::bind(&args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_address()?;
    println!("card {} listening on {address}", card.file().card_id);
    // Served in a task of its own, so that a signal is seen even while the
    // holder is being asked.
    let mut serving = tokio::spawn(accept_loop(listener, card, holder, options, args.once));
    let result = tokio::select! {
        joined = &mut serving => joined.unwrap_or_else(|e| Err(anyhow::anyhow!("the card task failed: {e}"))),
        _ = sigint.recv() => {
            tracing::info!("interrupted: stopping");
            Ok(())
        }
        _ = sigterm.recv() => {
            tracing::info!("terminated: stopping");
            Ok(())
        }
    };
    serving.abort();
    if let LinkAddress::Unix(path) = &address {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The holder the options describe, announcing each decision on stdout.
fn holder(args: &ServeArgs) -> Result<Box<dyn Holder>> {
    let base: Box<dyn Holder> = match args.consent {
        Consent::Auto => Box::new(AutoAccept),
        Consent::Refuse => Box::new(Refuse),
        Consent::Ask => Box::new(Ask::tty().context("--consent ask needs a terminal (/dev/tty)")?),
    };
    let limited: Box<dyn Holder> = match &args.max_amount {
        Some(max) => Box::new(AmountLimit::new(max, base).map_err(|e| anyhow::anyhow!("--max-amount: {e}"))?),
        None => base,
    };
    Ok(Box::new(Announce(limited)))
}

/// Prints `confirm 12.50 USD to M-DEMO, transaction T-1? accepted`.
struct Announce(Box<dyn Holder>);

impl Holder for Announce {
    fn consent(&mut self, details: &PaymentDetails) -> bool {
        let yes = self.0.consent(details);
        println!("confirm {}? {}", show::details(details), if yes { "accepted" } else { "refused" });
        yes
    }
}

async fn accept_loop(
    listener: Listener,
    mut card: Card,
    mut holder: Box<dyn Holder>,
    options: ServeOptions,
    once: bool,
) -> Result<()> {
    loop {
        let (mut link, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if !once => {
                tracing::warn!("accepting a terminal: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e).context("accepting a terminal"),
        };
        tracing::debug!("terminal {peer} connected");
        let mut payments = 0usize;
        let result = loop {
            match serve_next(&mut link, &mut card, holder.as_mut(), &options).await {
                Ok(Some(report)) => {
                    payments += 1;
                    if let Some(line) = show::report(&report) {
                        println!("{line}");
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        tracing::debug!("terminal {peer} gone after {payments} payment(s)");
        match result {
            // A card that cannot keep its state must stop.
            Err(e @ CardError::Persist { .. }) => return Err(e.into()),
            Err(e) if once => return Err(e).with_context(|| format!("terminal {peer}")),
            Err(e) => tracing::warn!("terminal {peer}: {e}"),
            Ok(()) if once && payments == 0 => bail!("terminal {peer} ended the session before any payment"),
            Ok(()) if once => return Ok(()),
            Ok(()) => {}
        }
    }
}
