//! Command-line options shared by the terminal's commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aaa_proto::card_link::LinkAddress;
use aaa_proto::dictionary::eapay;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nas_terminal::client::{RadiusClient, Retransmit};
use nas_terminal::diameter::{DiameterClient, DiameterSettings};
use nas_terminal::payment::TerminalSettings;
use nas_terminal::radsec::RadsecLink;
use nas_terminal::tls::{TlsContext, TlsSettings, TlsVersion};
use nas_terminal::transport::Issuer;

/// The AAA transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Radius,
    Diameter,
}

/// How the AAA protocol travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// The protocol's plain transport: RADIUS over UDP, authenticated by the
    /// shared secret; Diameter over TCP, by the peer's address.
    #[value(alias = "tcp")]
    Udp,
    /// RADIUS over TLS (RFC 6614) or Diameter over TLS (RFC 6733 §13), the
    /// terminal authenticated by its certificate.
    Tls,
}

/// RADIUS over TLS (RFC 6614) and Diameter over TLS (RFC 6733 §13).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Transport: udp (RADIUS over UDP; Diameter over plain TCP, also spelled tcp), or tls.
    /// RADIUS over TLS (RFC 6614): --server names the RadSec port, 2083 by convention; one
    /// connection per server carries authentication and accounting. Diameter over TLS (RFC 6733
    /// §13): --server names the server's Diameter/TLS port (5658 by convention). The
    /// certificate, not a secret or an address, authenticates the terminal.
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: Transport,
    /// tls: this terminal's certificate, PEM (`eapay-server terminal issue --cert-file`).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// tls: this terminal's private key, PEM (`eapay-server terminal issue --key-file`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// tls: the CA the server's certificate must chain to: the issuer CA (eapay-data/ca.pem).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// tls: the server's certificate must also name this host (eapay-server's is aaa.<realm>);
    /// default: any server certificate from --ca.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// tls: the lowest TLS version, 1.3 or 1.2.
    #[arg(long, value_name = "VERSION", default_value = "1.3", value_parser = parse_tls_version)]
    pub tls_min: TlsVersion,
    /// tls: append the TLS secrets to FILE in NSS key log format, so tshark or Wireshark can
    /// decrypt the traffic. For tests and debugging only: whoever reads FILE can read the
    /// payments. Also the SSLKEYLOGFILE environment variable.
    #[arg(long, value_name = "FILE", env = "SSLKEYLOGFILE")]
    pub sslkeylogfile: Option<PathBuf>,
}

impl TlsArgs {
    /// Over the plain transport, TLS credentials given anyway are refused
    /// rather than silently not used; over TLS they must all be there.
    pub fn check(&self) -> Result<()> {
        match self.transport {
            Transport::Udp if self.cert.is_some() || self.key.is_some() || self.ca.is_some() => {
                bail!("--cert, --key and --ca are for --transport tls")
            }
            Transport::Udp => Ok(()),
            Transport::Tls => self.settings().map(drop),
        }
    }

    /// The TLS settings of `--transport tls`.
    pub fn settings(&self) -> Result<TlsSettings> {
        let (Some(cert), Some(key), Some(ca)) = (&self.cert, &self.key, &self.ca) else {
            bail!(
                "--transport tls needs --cert and --key (the terminal's, from `eapay-server terminal issue`) \
                 and --ca (the issuer CA)"
            )
        };
        Ok(TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            min_version: self.tls_min,
            server_name: self.server_name.clone(),
            keylog: self.sslkeylogfile.clone(),
        })
    }
}

/// The issuer's servers and how to talk to them (shared by `pay`, `flush`
/// and `bench`).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// RADIUS authentication server (with --transport tls, its RadSec port) or Diameter server
    /// (or relay agent), HOST[:PORT] (a name or an address; a name is resolved once, at start;
    /// the port defaults to the registered one: RADIUS 1812, RadSec 2083, Diameter 3868,
    /// Diameter/TLS 5658); repeat for failover, in order of preference.
    #[arg(long = "server", value_name = "HOST[:PORT]", required = true, value_parser = parse_server)]
    pub servers: Vec<SocketAddr>,
    /// RADIUS shared secret (or the EAPAY_RADIUS_SECRET environment variable, which `ps` does not
    /// show). Not with --transport tls, whose secret is "radsec" (RFC 6614); EAPAY_RADIUS_SECRET is
    /// ignored there.
    #[arg(long, env = "EAPAY_RADIUS_SECRET", hide_env_values = true, default_value = "")]
    pub secret: String,
    /// Whether --secret was on the command line (rather than from the
    /// environment or the default): set by `main`, which can tell.
    #[arg(skip)]
    pub secret_on_command_line: bool,
    /// First wait for a reply; doubled on each retransmission.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Retransmissions to one server before failing over.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// NAS-Identifier sent with every request.
    #[arg(long)]
    pub nas_identifier: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ServerArgs {
    /// Gives each server named without a port the registered port of
    /// `protocol` over the chosen transport.
    pub fn fill_default_ports(&mut self, protocol: Protocol) {
        let port = match (protocol, self.tls.transport) {
            (Protocol::Radius, Transport::Udp) => 1812,
            (Protocol::Radius, Transport::Tls) => 2083,
            (Protocol::Diameter, Transport::Udp) => 3868,
            (Protocol::Diameter, Transport::Tls) => 5658,
        };
        fill_port(&mut self.servers, port);
    }

    pub fn policy(&self) -> Retransmit {
        Retransmit { timeout: self.timeout, retries: self.retries }
    }

    /// The RADIUS secret's rules for the chosen transport: required over
    /// UDP; over TLS fixed, so one given on the command line is refused
    /// rather than silently not used.
    pub fn check_radius_secret(&self) -> Result<()> {
        match self.tls.transport {
            Transport::Udp if self.secret.is_empty() => {
                bail!("--secret (or EAPAY_RADIUS_SECRET) is required for RADIUS and must not be empty (RFC 2865 §3)")
            }
            Transport::Tls if self.secret_on_command_line => bail!(
                "--secret is not used with --transport tls: RADIUS over TLS signs with the fixed secret \"radsec\" \
                 (RFC 6614 §2.3) and the terminal's certificate authenticates it"
            ),
            Transport::Udp | Transport::Tls => self.tls.check(),
        }
    }

    /// The TLS context and one link per server: a terminal's RADIUS/TLS
    /// connections, made when first used.
    pub fn radsec_links(&self) -> Result<Vec<Arc<RadsecLink>>> {
        let context = Arc::new(TlsContext::new(&self.tls.settings()?)?);
        Ok(self.servers.iter().map(|s| Arc::new(RadsecLink::new(*s, context.clone(), self.tls_wait()))).collect())
    }

    /// How long a request waits for its reply over TLS, and how long a
    /// connection may take: the UDP budget without the doubling, as there
    /// is no retransmission.
    pub fn tls_wait(&self) -> Duration {
        self.timeout.saturating_mul(self.retries.saturating_add(1))
    }
}

/// How the terminal reaches the payment servers, and where it keeps what it owes them.
#[derive(Debug, Clone, Args)]
pub struct RadiusArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Accounting servers for reversals, HOST[:PORT] (port 1813 by default; default: each
    /// --server with port + 1).
    #[arg(long = "acct-server", value_name = "HOST[:PORT]", value_parser = parse_server)]
    pub acct_servers: Vec<SocketAddr>,
    /// The store-and-forward file of timeout reversals.
    #[arg(long, value_name = "FILE", default_value = "eapay-terminal-reversals.json")]
    pub reversals: PathBuf,
    #[arg(long, value_enum, default_value = "radius")]
    pub protocol: Protocol,
    #[command(flatten)]
    pub diameter: DiameterArgs,
    /// Vendor id of the Eapay attributes.
    #[arg(long, default_value_t = eapay::VENDOR_ID, hide = true)]
    pub vendor_id: u32,
}

/// Who the terminal is in Diameter, and where its requests go.
#[derive(Debug, Clone, Args)]
pub struct DiameterArgs {
    /// Diameter: this terminal's Origin-Host (the server knows its peers by it).
    #[arg(long, value_name = "FQDN")]
    pub origin_host: Option<String>,
    /// Diameter: this terminal's Origin-Realm (default: the part of --origin-host after its first dot).
    #[arg(long, value_name = "REALM")]
    pub origin_realm: Option<String>,
    /// Diameter: the issuer's realm, Destination-Realm of every request.
    #[arg(long, value_name = "REALM")]
    pub destination_realm: Option<String>,
    /// Diameter: Destination-Host, if requests must reach one server behind a relay.
    #[arg(long, value_name = "FQDN")]
    pub destination_host: Option<String>,
    /// Diameter: the watchdog interval Tw (RFC 3539; at least 6 s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub watchdog: Duration,
    /// Diameter: wait before reconnecting a connection that went down (Tc).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub reconnect: Duration,
}

/// Port 0 (none given) becomes `port`.
fn fill_port(servers: &mut [SocketAddr], port: u16) {
    for s in servers.iter_mut().filter(|s| s.port() == 0) {
        s.set_port(port);
    }
}

impl RadiusArgs {
    /// The registered ports for servers named without one (RADIUS
    /// accounting: 1813).
    pub fn fill_default_ports(&mut self) {
        self.server.fill_default_ports(self.protocol);
        fill_port(&mut self.acct_servers, 1813);
    }

    pub fn check_protocol(&self) -> Result<()> {
        match self.protocol {
            Protocol::Radius => {
                self.server.check_radius_secret()?;
                if self.server.tls.transport == Transport::Tls && !self.acct_servers.is_empty() {
                    bail!(
                        "--acct-server is for UDP: over TLS accounting shares the --server connection (RFC 6614 §2.1)"
                    );
                }
                Ok(())
            }
            Protocol::Diameter => {
                self.server.tls.check()?;
                self.diameter_settings().map(drop)
            }
        }
    }

    /// The RADIUS client of payments: over UDP a socket per server; over
    /// TLS connected to the first server that takes this terminal, so a
    /// wrong certificate or CA is an error before anything is sent.
    pub async fn auth_client(&self) -> Result<RadiusClient> {
        if self.server.tls.transport == Transport::Tls {
            let mut client = RadiusClient::over_tls(self.server.radsec_links()?, self.server.policy())?;
            client.connect().await?;
            return Ok(client);
        }
        RadiusClient::with_servers(&self.server.servers, self.server.secret.as_bytes(), self.server.policy())
            .await
            .context("RADIUS client")
    }

    /// The Diameter client settings from the command line.
    pub fn diameter_settings(&self) -> Result<DiameterSettings> {
        self.diameter.settings(&self.server)
    }

    /// The issuer, over the chosen protocol (Diameter: connected, CER/CEA done).
    pub async fn issuer(&self) -> Result<Issuer> {
        Ok(match self.protocol {
            Protocol::Radius => Issuer::Radius(self.auth_client().await?),
            Protocol::Diameter => {
                let client = DiameterClient::connect(self.diameter_settings()?).await.context("Diameter")?;
                Issuer::Diameter(client)
            }
        })
    }

    pub async fn acct_client(&self) -> Result<RadiusClient> {
        let servers: Vec<SocketAddr> = if self.acct_servers.is_empty() {
            self.server
                .servers
                .iter()
                .map(|s| {
                    let mut a = *s;
                    a.set_port(s.port().wrapping_add(1));
                    a
                })
                .collect()
        } else {
            self.acct_servers.clone()
        };
        RadiusClient::with_servers(&servers, self.server.secret.as_bytes(), self.server.policy())
            .await
            .context("RADIUS client")
    }
}

impl DiameterArgs {
    /// The Diameter client settings, with the retransmission policy of `server`.
    pub fn settings(&self, server: &ServerArgs) -> Result<DiameterSettings> {
        let d = self;
        let Some(origin_host) = &d.origin_host else { bail!("--protocol diameter needs --origin-host") };
        let origin_realm = match (&d.origin_realm, origin_host.split_once('.')) {
            (Some(realm), _) => realm.clone(),
            (None, Some((_, realm))) if !realm.is_empty() => realm.to_string(),
            _ => bail!("--origin-host {origin_host:?} has no realm part: give --origin-realm"),
        };
        let Some(destination_realm) = &d.destination_realm else {
            bail!("--protocol diameter needs --destination-realm (the issuer's realm)")
        };
        if d.watchdog < Duration::from_secs(6) {
            bail!("--watchdog must be at least 6s (RFC 3539)");
        }
        let mut settings = DiameterSettings::new(origin_host, &origin_realm, destination_realm, server.servers.clone());
        settings.destination_host = d.destination_host.clone();
        // The RADIUS retransmission policy in Diameter terms: the same
        // first wait, and as many tries over all connections.
        settings.timeout = server.timeout;
        settings.attempts = server.retries + 1;
        settings.timers.tw = d.watchdog;
        settings.reconnect = d.reconnect;
        if server.tls.transport == Transport::Tls {
            settings.tls = Some(server.tls.settings()?);
        }
        Ok(settings)
    }
}

#[derive(Debug, Args)]
pub struct PayArgs {
    #[command(flatten)]
    pub radius: RadiusArgs,
    /// Merchant id (Eapay-Merchant-Id).
    #[arg(long)]
    pub merchant: String,
    /// Amount as a decimal in the currency's units, e.g. 12.50.
    #[arg(long)]
    pub amount: String,
    /// ISO 4217 code, alphabetic or numeric: USD, 840.
    #[arg(long)]
    pub currency: String,
    /// Number of installments (0 = one payment).
    #[arg(long, default_value_t = 0)]
    pub installments: u32,
    /// Transaction id (default: generated from the time and randomness).
    #[arg(long)]
    pub transaction_id: Option<String>,
    /// The card, served by `eapay-card serve`: tcp://HOST:PORT, HOST:PORT or unix:/PATH.
    #[arg(long, value_name = "ADDR", conflicts_with = "card")]
    pub card_link: Option<LinkAddress>,
    /// A card file played by a simulated card inside this process.
    #[arg(long, value_name = "FILE")]
    pub card: Option<PathBuf>,
    /// The issuer's public key (issuer.pub): verify the receipt of an approval.
    #[arg(long, value_name = "FILE")]
    pub issuer_key: Option<PathBuf>,
    /// Largest EAP packet the card link carries (Framed-MTU).
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u32).range(64..=4096))]
    pub framed_mtu: u32,
    /// How long the card may take for one answer (the holder reads the details first).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub card_timeout: Duration,
}

impl PayArgs {
    pub fn settings(&self) -> TerminalSettings {
        TerminalSettings {
            vendor_id: self.radius.vendor_id,
            nas_identifier: self.radius.server.nas_identifier.clone(),
            framed_mtu: self.framed_mtu,
            card_timeout: self.card_timeout,
        }
    }
}

#[derive(Debug, Args)]
pub struct FlushArgs {
    #[command(flatten)]
    pub radius: RadiusArgs,
    /// Keep retrying, with backoff, for up to this long.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The receipt, hexadecimal (as `pay` prints it).
    #[arg(long)]
    pub receipt: String,
    /// The issuer's public key, PEM (issuer.pub).
    #[arg(long, value_name = "FILE")]
    pub issuer_key: PathBuf,
}

/// `500ms`, `30s`, `2m`, `1h`; a bare number is seconds.
/// `HOST:PORT` as radclient and a NAS take it: an address
/// (`192.0.2.1:1812`, `[2001:db8::1]:1812`) or a name
/// (`radius.issuer.example:1812`), resolved once; its first address is used.
/// `--server`, `--acct-server`: HOST[:PORT], a name or an address (an IPv6
/// address with a port in brackets). Without a port the address carries
/// port 0, which [`ServerArgs::fill_default_ports`] replaces with the
/// protocol's registered one, as radclient does.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| format!("{text:?} is not HOST[:PORT]"))?),
        None => (text, 0),
    };
    if host.is_empty() {
        return Err(format!("{text:?} is not HOST[:PORT]"));
    }
    let mut addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map_err(|e| format!("{host}: {e}"))?;
    addrs.next().ok_or_else(|| format!("{host}: the name has no address"))
}

/// `--tls-min 1.2|1.3`.
pub fn parse_tls_version(text: &str) -> Result<TlsVersion, String> {
    match text {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err("use 1.2 or 1.3".to_string()),
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 2m"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    n.checked_mul(unit_ms).map(Duration::from_millis).ok_or_else(|| format!("{text:?} is too long"))
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        radius: RadiusArgs,
    }

    fn radius(args: &[&str]) -> RadiusArgs {
        Cli::try_parse_from(["pay", "--server", "127.0.0.1:2083"].iter().chain(args)).unwrap().radius
    }

    #[test]
    fn tls_needs_its_credentials_and_no_secret() {
        let tls = ["--transport", "tls", "--cert", "t.pem", "--key", "t-key.pem", "--ca", "ca.pem"];
        let ok = radius(&tls);
        assert!(ok.check_protocol().is_ok());
        let settings = ok.server.tls.settings().unwrap();
        assert_eq!((settings.min_version, settings.server_name), (TlsVersion::Tls13, None));
        assert_eq!(ok.server.tls_wait(), Duration::from_secs(4), "1 s x (3 retries + 1), not doubled");

        let e = radius(&tls[..4]).check_protocol().unwrap_err().to_string();
        assert!(e.contains("needs --cert and --key"), "{e}");
        // A secret from the environment or the default is ignored; one on
        // the command line (main tells) is refused.
        let mut given = radius(&[&tls[..], &["--secret", "s"]].concat());
        assert!(given.check_protocol().is_ok());
        given.server.secret_on_command_line = true;
        assert!(given.check_protocol().unwrap_err().to_string().contains("\"radsec\""));
        let acct = radius(&[&tls[..], &["--acct-server", "127.0.0.1:1813"]].concat());
        assert!(acct.check_protocol().unwrap_err().to_string().contains("--acct-server is for UDP"));
        let e = radius(&["--secret", "s", "--ca", "ca.pem"]).check_protocol().unwrap_err().to_string();
        assert!(e.contains("are for --transport tls"), "{e}");
        assert!(radius(&["--secret", "s"]).check_protocol().is_ok());

        let old = radius(&[&tls[..], &["--tls-min", "1.2", "--server-name", "aaa.issuer.test"]].concat());
        let settings = old.server.tls.settings().unwrap();
        assert_eq!(settings.min_version, TlsVersion::Tls12);
        assert_eq!(settings.server_name.as_deref(), Some("aaa.issuer.test"));
        assert!(Cli::try_parse_from(["pay", "--server", "127.0.0.1:2083", "--tls-min", "1.1"]).is_err());
    }

    #[test]
    fn diameter_over_tls_takes_the_same_credentials() {
        let diameter =
            ["--protocol", "diameter", "--origin-host", "t1.shop.test", "--destination-realm", "issuer.test"];
        let plain = radius(&diameter);
        assert!(plain.check_protocol().is_ok());
        assert!(plain.diameter_settings().unwrap().tls.is_none());
        assert_eq!(radius(&[&diameter[..], &["--transport", "tcp"]].concat()).server.tls.transport, Transport::Udp);

        let tls = ["--transport", "tls", "--cert", "t.pem", "--key", "t-key.pem", "--ca", "ca.pem"];
        let over_tls = radius(&[&diameter[..], &tls[..]].concat());
        assert!(over_tls.check_protocol().is_ok());
        let settings = over_tls.diameter_settings().unwrap().tls.expect("TLS settings");
        assert_eq!(settings.cert, PathBuf::from("t.pem"));
        let e = radius(&[&diameter[..], &tls[..4]].concat()).check_protocol().unwrap_err().to_string();
        assert!(e.contains("needs --cert and --key"), "{e}");
        let e = radius(&[&diameter[..], &["--ca", "ca.pem"]].concat()).check_protocol().unwrap_err().to_string();
        assert!(e.contains("are for --transport tls"), "{e}");
    }

    #[test]
    fn servers_are_addresses_or_names() {
        assert_eq!(parse_server("127.0.0.1:1812").unwrap(), "127.0.0.1:1812".parse().unwrap());
        assert_eq!(parse_server("[::1]:1812").unwrap(), "[::1]:1812".parse().unwrap());
        let named = parse_server("localhost:1812").unwrap();
        assert!(named.ip().is_loopback() && named.port() == 1812, "{named}");
        for bad in ["localhost:", ":1812", "localhost:99999", "no-such-host.invalid:1812", "no-such-host.invalid"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
        // No port: 0 until the protocol's own is filled in.
        assert_eq!(parse_server("127.0.0.1").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(parse_server("[::1]").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(parse_server("::1").unwrap(), "[::1]:0".parse().unwrap());
        assert!(parse_server("localhost").unwrap().port() == 0);
        let ports = |args: &[&str]| {
            let mut r = Cli::try_parse_from(["pay", "--server", "127.0.0.1"].iter().chain(args)).unwrap().radius;
            r.fill_default_ports();
            (r.server.servers[0].port(), r.acct_servers.first().map(SocketAddr::port))
        };
        assert_eq!(ports(&["--acct-server", "127.0.0.1"]), (1812, Some(1813)));
        assert_eq!(ports(&["--transport", "tls"]), (2083, None));
        assert_eq!(ports(&["--protocol", "diameter"]), (3868, None));
        assert_eq!(ports(&["--protocol", "diameter", "--transport", "tls"]), (5658, None));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
