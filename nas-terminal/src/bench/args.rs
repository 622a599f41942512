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
use nas_terminal::diameter::DiameterSettings;
use nas_terminal::payment::TerminalSettings;
use nas_terminal::tls::TlsSettings;

use crate::options::{parse_duration, DiameterArgs, Protocol, ServerArgs, Transport};

/// The EAP methods the load generator can play (those of e-card's peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// EAP-SIM (RFC 4186): GSM-Milenage triplets.
    Sim,
    Aka,
    AkaPrime,
    /// EAP-TLS: the card's registered key, the issuer's server pinned.
    Tls,
    /// EAP-TTLS: inner PAP with the card's PIN (or inner EAP-AKA), as issued.
    Ttls,
}

impl Method {
    /// The name of the method in card files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Sim => "sim",
            Method::Aka => "aka",
            Method::AkaPrime => "aka-prime",
            Method::Tls => "tls",
            Method::Ttls => "ttls",
        }
    }

    /// EAP-TLS and EAP-TTLS: the methods with TLS session resumption. The
    /// others are the SIM/AKA family, whose resumption is fast
    /// re-authentication.
    pub fn is_tls_family(self) -> bool {
        matches!(self, Method::Tls | Method::Ttls)
    }
}

/// `--method`: the clap error shows this message on its first line.
pub fn parse_method(text: &str) -> Result<Method, String> {
    match text.to_ascii_lowercase().as_str() {
        "sim" | "eap-sim" => Ok(Method::Sim),
        "aka" => Ok(Method::Aka),
        "aka-prime" | "aka'" | "akaprime" => Ok(Method::AkaPrime),
        "tls" | "eap-tls" => Ok(Method::Tls),
        "ttls" | "eap-ttls" => Ok(Method::Ttls),
        _ => Err("unknown EAP method: use sim, aka, aka-prime, tls or ttls".to_string()),
    }
}

/// `--resumption on|off`.
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err("use on or off".to_string()),
    }
}

/// `eapay-terminal bench`.
#[derive(Debug, Args)]
#[command(after_help = "The server must accept --cards cards of --method issued into --card-dir, e.g.\n  \
    eapay-server card issue --config eapay.toml --method aka --count 1000 --card-dir cards/ --limit 100000000\n\
    and, for a long full-payment run, [payment] velocity_max = 0 (no per-card velocity limit) in eapay.toml.\n\
    TTLS cards with inner PAP carry their PIN: issue them with --pin, e.g. --method ttls --pin 1234.\n\
    A run of fast re-authentications only (sim, aka, aka-prime with --resumption on) needs\n  \
    [eap] fast_reauth_limit = 1000 in eapay.toml (default 16: a full authentication after every 16).")]
pub struct BenchArgs {
    /// EAP method of the simulated cards: sim, aka, aka-prime, tls or ttls.
    #[arg(long, value_parser = parse_method, value_name = "METHOD")]
    pub method: Method,
    /// on: before the run each card makes one payment (a full authentication, not measured;
    /// --merchant, --amount and --currency apply, --auth-only too), then resumes in every
    /// conversation: tls and ttls offer the TLS session they hold, sim, aka and aka-prime name
    /// themselves with their fast re-authentication identity (the server makes a full
    /// authentication after every [eap] fast_reauth_limit of them, 16 by default; 1000 for a pure
    /// re-authentication run). off: every conversation is a full authentication (the card drops its
    /// TLS session, or its pseudonym and re-authentication identity, first). Default: on for tls and
    /// ttls, off for sim, aka and aka-prime.
    #[arg(long, value_parser = parse_switch, value_name = "on|off")]
    pub resumption: Option<bool>,
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
    /// Write what each terminal concluded about each payment to this file, one JSON line per
    /// transaction: merchant, transaction, card, amount (minor units), currency and the outcome
    /// (approved + approval_code, declined + decline_code, in_doubt + reversal_stored, failed,
    /// refused_by_card). Every payment started is waited for, however long its retries take.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_only")]
    pub outcomes: Option<PathBuf>,
    /// Store the reversal of every payment left in doubt (no usable answer after its payment
    /// attributes reached a server) in this store-and-forward file, as `pay` does;
    /// `eapay-terminal flush --reversals FILE` sends them. Without it the bench owes no reversals.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_only")]
    pub reversals: Option<PathBuf>,
    /// The server's process id: report its CPU time per completed conversation (from /proc). Repeat
    /// to add the processes that work for it (hostapd and its hlr_auc_gw).
    #[arg(long, value_name = "PID")]
    pub server_pid: Vec<u32>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// How the simulated terminals reach the server: RADIUS (a UDP socket per terminal; with
    /// --transport tls, --connections TLS connections per --server shared by all terminals) or
    /// Diameter (one TCP connection per --server, shared by all terminals).
    #[arg(long, value_enum, default_value = "radius")]
    pub protocol: Protocol,
    #[command(flatten)]
    pub diameter: DiameterArgs,
    /// Merchant id of the payments (and of the priming payments of --resumption on).
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
    /// --transport tls: TLS connections per server, shared by all simulated terminals (terminal i
    /// uses connection i mod N); each carries at most 256 outstanding requests.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
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
    /// `--resumption`: whether cards resume, the TLS family with their
    /// stored session, the SIM/AKA family with fast re-authentication.
    pub resumption: bool,
    pub cards: usize,
    pub card_dir: PathBuf,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub rate: Option<u32>,
    /// None: authentication only.
    pub payment: Option<PaymentTemplate>,
    /// `--resumption on`: before the run each card makes one payment with
    /// these details (a full authentication, not measured), so that every
    /// measured conversation resumes, auth-only ones included (a payment
    /// server ends an auth-only conversation with a decline, after which it
    /// issues no TLS session) and the first ones too (a SIM/AKA card gets
    /// its first re-authentication identity from a full authentication).
    pub prime: Option<PaymentTemplate>,
    pub servers: Vec<SocketAddr>,
    pub secret: Vec<u8>,
    pub retransmit: Retransmit,
    /// `--protocol diameter`: how to reach the servers; None for RADIUS.
    pub diameter: Option<DiameterSettings>,
    pub settings: TerminalSettings,
    pub server_pids: Vec<u32>,
    pub lax_message_authenticator: bool,
    /// `--transport tls`: the TLS settings; None over UDP (or Diameter).
    pub tls: Option<TlsSettings>,
    /// `--connections`: RADIUS/TLS connections per server.
    pub connections: usize,
    /// How long a request waits over TLS (no retransmission).
    pub tls_wait: Duration,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    /// `--outcomes`: the terminals' journal.
    pub outcomes: Option<PathBuf>,
    /// `--reversals`: the store of the in-doubt payments' reversals.
    pub reversals: Option<PathBuf>,
}

impl BenchArgs {
    /// Checks the arguments that clap cannot.
    pub fn plan(&self) -> Result<Plan> {
        let tls = self.server.tls.transport == Transport::Tls;
        let diameter = match self.protocol {
            Protocol::Radius => {
                self.server.check_radius_secret()?;
                None
            }
            Protocol::Diameter => {
                let mut settings = self.diameter.settings(&self.server)?;
                // Every terminal's conversations share the connections.
                settings.product_name = "eapay-terminal bench".into();
                Some(settings)
            }
        };
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
        // Off by default for the SIM/AKA family: its cards keep the
        // re-authentication identities the server hands out, and a plain
        // run should go on measuring full authentications.
        let resumption = self.resumption.unwrap_or(self.method.is_tls_family());
        for pid in &self.server_pid {
            if !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() {
                bail!("--server-pid {pid}: no such process (/proc/{pid}/stat)");
            }
        }
        // Parsed in auth-only mode too: with --resumption on the cards make
        // their priming payment with these details.
        let template = {
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
            PaymentTemplate {
                merchant_id: self.merchant.clone(),
                amount,
                currency: u32::from(currency.numeric),
                display: currency::format_amount(amount, currency),
            }
        };
        let prime = resumption.then(|| template.clone());
        let payment = (!self.auth_only).then_some(template);
        Ok(Plan {
            method: self.method,
            resumption,
            cards: self.cards as usize,
            card_dir: self.card_dir.clone(),
            concurrency: self.concurrency as usize,
            warmup: self.warmup,
            duration: self.duration,
            rate: self.rate,
            payment,
            prime,
            servers: self.server.servers.clone(),
            secret: self.server.secret.as_bytes().to_vec(),
            retransmit: self.server.policy(),
            diameter,
            settings: TerminalSettings {
                vendor_id: eapay::VENDOR_ID,
                nas_identifier: self.server.nas_identifier.clone(),
                framed_mtu: self.framed_mtu,
                card_timeout: self.card_timeout,
            },
            server_pids: self.server_pid.clone(),
            lax_message_authenticator: self.lax_message_authenticator,
            tls: if tls && self.protocol == Protocol::Radius { Some(self.server.tls.settings()?) } else { None },
            connections: self.connections as usize,
            tls_wait: self.server.tls_wait(),
            json: self.json.clone(),
            plot: self.plot.clone(),
            outcomes: self.outcomes.clone(),
            reversals: self.reversals.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(extra: &[&str]) -> Result<BenchArgs, clap::Error> {
        let base = ["bench", "--card-dir", "cards", "--server", "127.0.0.1:1812", "--secret", "s", "--cards", "4"];
        Cli::try_parse_from(base.iter().chain(extra)).map(|c| c.bench)
    }

    #[test]
    fn methods() {
        assert_eq!(parse_method("aka"), Ok(Method::Aka));
        assert_eq!(parse_method("AKA-prime"), Ok(Method::AkaPrime));
        assert_eq!(parse_method("tls"), Ok(Method::Tls));
        assert_eq!(parse_method("EAP-TTLS"), Ok(Method::Ttls));
        assert_eq!(Method::Ttls.name(), "ttls");
        assert_eq!(parse_method("sim"), Ok(Method::Sim));
        assert_eq!(parse_method("EAP-SIM"), Ok(Method::Sim));
        assert_eq!(Method::Sim.name(), "sim");
        assert!(Method::Tls.is_tls_family() && !Method::AkaPrime.is_tls_family() && !Method::Sim.is_tls_family());
        let e = parse_method("peap").unwrap_err();
        assert!(e.contains("unknown EAP method: use sim, aka, aka-prime, tls or ttls"), "{e}");
    }

    #[test]
    fn resumption_is_on_by_default_for_the_tls_family_and_off_for_sim_and_aka() {
        let plan = |extra: &[&str]| parse(extra).unwrap().plan();
        let on = plan(&["--method", "tls", "--concurrency", "2", "--auth-only"]).unwrap();
        assert!(on.resumption);
        // Auth-only too: the cards get their sessions from a priming payment.
        assert!(on.payment.is_none());
        assert_eq!(on.prime.as_ref().map(|p| p.display.as_str()), Some("0.01 USD"));
        let off = plan(&["--method", "ttls", "--concurrency", "2", "--resumption", "off"]).unwrap();
        assert_eq!((off.resumption, off.prime.is_none(), off.payment.is_some()), (false, true, true));
        assert!(plan(&["--method", "tls", "--concurrency", "2", "--resumption", "ON"]).unwrap().resumption);
        // A plain SIM/AKA run measures full authentications, as before the
        // cards kept their re-authentication identities.
        for method in ["sim", "aka", "aka-prime"] {
            let p = plan(&["--method", method, "--concurrency", "2"]).unwrap();
            assert_eq!((p.resumption, p.prime.is_none(), p.payment.is_some()), (false, true, true), "{method}");
        }
        let aka = plan(&["--method", "aka", "--concurrency", "2", "--resumption", "on", "--auth-only"]).unwrap();
        assert_eq!((aka.resumption, aka.payment.is_none()), (true, true));
        assert_eq!(aka.prime.as_ref().map(|p| p.display.as_str()), Some("0.01 USD"));
        let sim = plan(&["--method", "sim", "--concurrency", "2", "--resumption", "off"]).unwrap();
        assert_eq!((sim.method, sim.resumption, sim.prime.is_none()), (Method::Sim, false, true));
        let e = parse(&["--method", "tls", "--resumption", "maybe"]).err().unwrap().to_string();
        assert!(e.contains("use on or off"), "{e}");
    }

    #[test]
    fn outcomes_and_reversals_need_payments() {
        let plan = parse(&["--method", "aka", "--concurrency", "2", "--outcomes", "o.jsonl", "--reversals", "r.json"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(plan.outcomes.as_deref(), Some(std::path::Path::new("o.jsonl")));
        assert_eq!(plan.reversals.as_deref(), Some(std::path::Path::new("r.json")));
        for option in ["--outcomes", "--reversals"] {
            let e = parse(&["--method", "aka", "--auth-only", option, "f"]).err().unwrap().to_string();
            assert!(e.contains("cannot be used with"), "{option}: {e}");
        }
    }
}
