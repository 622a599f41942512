//! The command line of `eapay-terminal bench` and its checked form, the
//! [`Plan`] the runner executes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aaa_proto::currency;
use aaa_proto::dictionary::eapay;
use anyhow::{bail, Context, Result};
use clap::Args;
use nas_terminal::client::Retransmit;
use nas_terminal::payment::TerminalSettings;

use crate::options::{parse_duration, ServerArgs};

/// The EAP methods the load generator can play (those of e-card's peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Aka,
    AkaPrime,
}

impl Method {
    /// The name of the method in card files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Aka => "aka",
            Method::AkaPrime => "aka-prime",
        }
    }
}

/// `--method`: the clap error shows this message on its first line.
pub fn parse_method(text: &str) -> Result<Method, String> {
    match text.to_ascii_lowercase().as_str() {
        "aka" => Ok(Method::Aka),
        "aka-prime" | "aka'" | "akaprime" => Ok(Method::AkaPrime),
        "sim" | "tls" | "ttls" => {
            Err(format!("the load generator plays aka and aka-prime cards; {text} cards are not simulated yet"))
        }
        _ => Err("unknown EAP method: use aka or aka-prime".to_string()),
    }
}

/// `eapay-terminal bench`.
#[derive(Debug, Args)]
#[command(after_help = "The server must accept --cards cards of --method issued into --card-dir, e.g.\n  \
    eapay-server card issue --config eapay.toml --method aka --count 1000 --card-dir cards/ --limit 100000000\n\
    and, for a long full-payment run, [payment] velocity_max = 0 (no per-card velocity limit) in eapay.toml.")]
pub struct BenchArgs {
    /// EAP method of the simulated cards: aka or aka-prime.
    #[arg(long, value_parser = parse_method, value_name = "METHOD")]
    pub method: Method,
    /// How many cards to play, loaded from --card-dir (each card is in at most one conversation at a time).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub cards: u32,
    /// Directory of card files (`eapay-server card issue --count N --card-dir DIR`).
    #[arg(long, value_name = "DIR")]
    pub card_dir: PathBuf,
    /// Simulated terminals, each running one conversation at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// How long to measure (after --warmup).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before the measurement starts, not counted.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: start this many conversations per second, whatever the answers (latency counts from
    /// the scheduled start, so queueing shows). Default: closed loop, each terminal starts the next
    /// conversation when the last one ends.
    #[arg(long, value_name = "PER_SECOND", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rate: Option<u32>,
    /// Authentication only: no payment attributes, no details shown to the card (any RADIUS server
    /// with EAP-AKA/AKA', e.g. hostapd).
    #[arg(long)]
    pub auth_only: bool,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an SVG plot (latency over time, latency distribution) to this file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// The server's process id: report its CPU time per completed conversation (from /proc). Repeat
    /// to add the processes that work for it (hostapd and its hlr_auc_gw).
    #[arg(long, value_name = "PID")]
    pub server_pid: Vec<u32>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Merchant id of the payments.
    #[arg(long, default_value = "M-DEMO")]
    pub merchant: String,
    /// Amount of each payment, a decimal in the currency's units.
    #[arg(long, default_value = "0.01")]
    pub amount: String,
    /// ISO 4217 currency of the payments, alphabetic or numeric.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Largest EAP packet the card link carries (Framed-MTU).
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u32).range(64..=4096))]
    pub framed_mtu: u32,
    /// How long a simulated card may take for one answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub card_timeout: Duration,
    /// Accept replies whose Message-Authenticator is not the first attribute (still verified):
    /// servers that predate the Blast-RADIUS advice, such as hostapd 2.10.
    #[arg(long)]
    pub lax_message_authenticator: bool,
}

/// What the payments carry (the transaction id, nonce and time are new for each).
#[derive(Debug, Clone)]
pub struct PaymentTemplate {
    pub merchant_id: String,
    /// Minor units.
    pub amount: u64,
    /// ISO 4217 numeric.
    pub currency: u32,
    /// As given, for the report: `0.01 USD`.
    pub display: String,
}

/// A checked bench run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub method: Method,
    pub cards: usize,
    pub card_dir: PathBuf,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub rate: Option<u32>,
    /// None: authentication only.
    pub payment: Option<PaymentTemplate>,
    pub servers: Vec<SocketAddr>,
    pub secret: Vec<u8>,
    pub retransmit: Retransmit,
    pub settings: TerminalSettings,
    pub server_pids: Vec<u32>,
    pub lax_message_authenticator: bool,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

impl BenchArgs {
    /// Checks the arguments that clap cannot.
    pub fn plan(&self) -> Result<Plan> {
        if self.server.secret.is_empty() {
            bail!("--secret must not be empty (RFC 2865 §3)");
        }
        if self.duration.is_zero() {
            bail!("--duration must be longer than 0s");
        }
        if self.server.timeout.is_zero() {
            bail!("--timeout must be longer than 0s");
        }
        if self.cards < self.concurrency {
            bail!(
                "--cards {} is fewer than --concurrency {}: a card is never in two conversations at once, \
                 so every terminal needs at least one card of its own",
                self.cards,
                self.concurrency
            );
        }
        for pid in &self.server_pid {
            if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
                bail!("--server-pid {pid}: no such process (/proc/{pid}/stat)");
            }
        }
        let payment = if self.auth_only {
            None
        } else {
            let currency = currency::parse(&self.currency)
                .with_context(|| format!("--currency {}: not an ISO 4217 code (USD, 840, ...)", self.currency))?;
            let amount =
                currency::parse_amount(&self.amount, currency).with_context(|| format!("--amount {}", self.amount))?;
            // The transaction ids this run makes are at most 40 bytes; the
            // merchant id must pass the same rules as in `pay`.
            if self.merchant.is_empty()
                || self.merchant.len() > 64
                || !self.merchant.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                bail!("--merchant must be 1 to 64 printable ASCII characters without spaces");
            }
            Some(PaymentTemplate {
                merchant_id: self.merchant.clone(),
                amount,
                currency: u32::from(currency.numeric),
                display: currency::format_amount(amount, currency),
            })
        };
        Ok(Plan {
            method: self.method,
            cards: self.cards as usize,
            card_dir: self.card_dir.clone(),
            concurrency: self.concurrency as usize,
            warmup: self.warmup,
            duration: self.duration,
            rate: self.rate,
            payment,
            servers: self.server.servers.clone(),
            secret: self.server.secret.as_bytes().to_vec(),
            retransmit: self.server.policy(),
            settings: TerminalSettings {
                vendor_id: eapay::VENDOR_ID,
                nas_identifier: self.server.nas_identifier.clone(),
                framed_mtu: self.framed_mtu,
                card_timeout: self.card_timeout,
            },
            server_pids: self.server_pid.clone(),
            lax_message_authenticator: self.lax_message_authenticator,
            json: self.json.clone(),
            plot: self.plot.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(parse_method("aka"), Ok(Method::Aka));
        assert_eq!(parse_method("AKA-prime"), Ok(Method::AkaPrime));
        assert!(parse_method("tls").unwrap_err().contains("not simulated yet"));
        assert!(parse_method("peap").unwrap_err().contains("unknown EAP method"));
    }
}
