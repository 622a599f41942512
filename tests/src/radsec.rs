//! A RADIUS-over-TLS terminal for tests (RFC 6614): a blocking OpenSSL
//! client with a terminal certificate, relaying the card's EAP in
//! Access-Requests signed with the "radsec" secret, one packet at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aaa_proto::dictionary::rfc;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::{encode_request, verify_response_to, Code, Packet};
use e_card::card_file::CardFile;
use eap_methods::peer::PeerEvent;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslSessionCacheMode, SslStream, SslVerifyMode};

use crate::{eap_access_request_packet, payment_attributes, run_server_command, PaymentReply, Server};

/// RFC 6614 §2.3.
pub const SECRET: &str = "radsec";

/// A terminal's certificate and key as `terminal issue` wrote them, and the
/// `[[radius.tls.clients]]` entry it printed.
#[derive(Debug, Clone)]
pub struct TerminalCredential {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub key_sha256: String,
}

impl Server {
    /// `terminal issue --name NAME` into this server's scratch space; the
    /// entry is not registered (see [`register_radsec_terminal`]).
    pub fn issue_terminal(&self, name: &str, extra: &[&str]) -> TerminalCredential {
        self.issue_terminal_printing(name, extra).0
    }

    /// [`Server::issue_terminal`], with what the command printed.
    pub fn issue_terminal_printing(&self, name: &str, extra: &[&str]) -> (TerminalCredential, String) {
        let (cert, key) = (self.scratch(&format!("{name}.pem")), self.scratch(&format!("{name}-key.pem")));
        issue_terminal_with(&self.config, name, cert, key, extra)
    }

    /// The issuer CA that signs the server's certificate.
    pub fn ca_pem(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }
}

/// `terminal issue --name NAME --config CONFIG` writing `cert` and `key`,
/// then `extra`: for a server not started yet, too (`Server::start_prepared`).
/// The credential and what the command printed.
pub fn issue_terminal_with(
    config: &Path,
    name: &str,
    cert: PathBuf,
    key: PathBuf,
    extra: &[&str],
) -> (TerminalCredential, String) {
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let (cert_arg, key_arg, config_arg) = (path(&cert), path(&key), path(config));
    let mut args = vec!["terminal", "issue", "--name", name, "--cert-file", &cert_arg, "--key-file", &key_arg];
    args.extend(["--config", &config_arg]);
    args.extend_from_slice(extra);
    let out = run_server_command(&args);
    let key_sha256 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key_sha256 = \"").and_then(|rest| rest.strip_suffix('"')))
        .unwrap_or_else(|| panic!("no key_sha256 line in\n{}", out.stdout))
        .to_string();
    (TerminalCredential { cert, key, key_sha256 }, out.stdout)
}

impl Server {
    /// A server with `[radius.tls]` (idle timeout `idle_secs`) and the
    /// terminals `(name, merchants)` registered, with their credentials.
    /// `terminal issue` needs the data directory's CA, which `init` makes:
    /// the terminals are issued from a first start, registered, and the
    /// server started again (SIGKILL, same data directory).
    pub fn start_with_radsec_terminals(
        idle_secs: i64,
        terminals: &[(&str, &[&str])],
    ) -> (Server, Vec<TerminalCredential>) {
        Server::start_with_radsec_terminals_and(idle_secs, terminals, &[])
    }

    /// [`Server::start_with_radsec_terminals`] with `[payment]` settings,
    /// e.g. `("velocity_max", 0)`.
    pub fn start_with_radsec_terminals_and(
        idle_secs: i64,
        terminals: &[(&str, &[&str])],
        payment: &[(&str, i64)],
    ) -> (Server, Vec<TerminalCredential>) {
        let mut server = Server::start_with_payment(payment);
        let issued: Vec<TerminalCredential> =
            terminals.iter().map(|(name, _)| server.issue_terminal(name, &[])).collect();
        let entries: Vec<(&str, &str, &[&str])> = terminals
            .iter()
            .zip(&issued)
            .map(|((name, merchants), c)| (*name, c.key_sha256.as_str(), *merchants))
            .collect();
        crate::edit_toml(&server.config, |config| configure_radsec(config, idle_secs, &entries));
        server.kill9();
        server.restart();
        assert!(server.radsec.is_some(), "the server announces its RADIUS/TLS address:\n{}", server.stdout());
        (server, issued)
    }
}

impl Server {
    /// A server that also serves Diameter over TLS (`[diameter.tls]` on an
    /// ephemeral port), the demo Diameter terminal registered by the key of
    /// a certificate `terminal issue --origin-host` wrote: the
    /// `[[diameter.peers]]` entry it printed replaces the demo peer, so that
    /// terminal now connects over TLS only.
    pub fn start_with_diameter_tls_terminal() -> (Server, TerminalCredential) {
        Server::start_with_diameter_tls_terminal_and(&[])
    }

    /// [`Server::start_with_diameter_tls_terminal`] with `[payment]`
    /// settings, e.g. `("velocity_max", 0)`.
    pub fn start_with_diameter_tls_terminal_and(payment: &[(&str, i64)]) -> (Server, TerminalCredential) {
        let mut server = Server::start_with_payment(payment);
        let origin_host = crate::terminal::DIAMETER_TERMINAL;
        let args = ["--merchant", crate::MERCHANT, "--origin-host", origin_host, "--address", "127.0.0.1"];
        let (cred, printed) = server.issue_terminal_printing("demo-terminal", &args);
        let entries: toml::Table = printed
            .split_once("\n\n")
            .and_then(|(_, entries)| entries.parse().ok())
            .unwrap_or_else(|| panic!("terminal issue printed no TOML entries:\n{printed}"));
        let peers = entries.get("diameter").and_then(|d| d.get("peers")).cloned().expect("a [[diameter.peers]] entry");
        crate::edit_toml(&server.config, |config| {
            let diameter = crate::section(config, "diameter");
            let mut tls = toml::Table::new();
            tls.insert("listen".into(), "127.0.0.1:0".into());
            diameter.insert("tls".into(), toml::Value::Table(tls));
            diameter.insert("peers".into(), peers);
        });
        server.kill9();
        server.restart();
        assert!(server.diameter_tls.is_some(), "the server announces its Diameter/TLS address:\n{}", server.stdout());
        (server, cred)
    }
}

/// Adds `[radius.tls]` (on an ephemeral port, idle timeout `idle_secs`) to
/// a configuration, with the terminals `(name, key_sha256, merchants)`.
pub fn configure_radsec(config: &mut toml::Table, idle_secs: i64, terminals: &[(&str, &str, &[&str])]) {
    let radius = crate::section(config, "radius");
    let mut tls = toml::Table::new();
    tls.insert("listen".into(), "127.0.0.1:0".into());
    tls.insert("idle_timeout_secs".into(), idle_secs.into());
    let clients = terminals
        .iter()
        .map(|(name, key, merchants)| {
            let mut c = toml::Table::new();
            c.insert("name".into(), (*name).into());
            c.insert("key_sha256".into(), (*key).into());
            c.insert("merchants".into(), toml::Value::Array(merchants.iter().map(|m| (*m).into()).collect()));
            toml::Value::Table(c)
        })
        .collect();
    tls.insert("clients".into(), toml::Value::Array(clients));
    radius.insert("tls".into(), toml::Value::Table(tls));
}

/// One TLS connection to the server's RadSec port.
pub struct RadsecConnection {
    pub stream: SslStream<TcpStream>,
    next_id: u8,
    tickets: Arc<AtomicUsize>,
}

impl RadsecConnection {
    /// Connects with `cert`/`key`, trusting `ca` for the server; the error
    /// text if the handshake fails.
    pub fn connect(addr: SocketAddr, cert: &Path, key: &Path, ca: &Path) -> Result<Self, String> {
        Self::connect_with_keylog(addr, cert, key, ca, None)
    }

    /// [`RadsecConnection::connect`] that appends the connection's TLS
    /// secrets to `keylog` (NSS key log format, what `SSLKEYLOGFILE` holds),
    /// so that tshark can decrypt a capture of it
    /// (`capture::RadsecPort::keylog`).
    pub fn connect_with_keylog(
        addr: SocketAddr,
        cert: &Path,
        key: &Path,
        ca: &Path,
        keylog: Option<&Path>,
    ) -> Result<Self, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        // Counts the session tickets the server sends (it should send none:
        // nothing could resume them); OpenSSL reports them only to a
        // client that caches sessions.
        let tickets = Arc::new(AtomicUsize::new(0));
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let counter = tickets.clone();
        b.set_new_session_callback(move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        if let Some(path) = keylog {
            let path = path.to_owned();
            b.set_keylog_callback(move |_, line| {
                use std::io::Write as _;
                // A test aid: a line that cannot be written only costs the decryption.
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                    let _ = f.write_all(format!("{line}\n").as_bytes());
                }
            });
        }
        b.set_certificate_chain_file(cert).map_err(|e| e.to_string())?;
        b.set_private_key_file(key, SslFiletype::PEM).map_err(|e| e.to_string())?;
        b.set_ca_file(ca).map_err(|e| e.to_string())?;
        b.set_verify(SslVerifyMode::PEER);
        let connector = b.build();
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
        let mut config = connector.configure().map_err(|e| e.to_string())?;
        // The server certificate names aaa.<realm>; its key is what matters here.
        config.set_verify_hostname(false);
        let stream = config.connect("aaa", tcp).map_err(|e| e.to_string())?;
        // TLS 1.3 sends the server's verdict on the client certificate after
        // the client's half of the handshake is over: only an answer to a
        // Status-Server proves the server took us (a read at once raced the
        // server's alert and mostly lost it).
        let mut conn = Self { stream, next_id: rand::random(), tickets };
        let (status, _) = crate::status_server(conn.next_id(), SECRET);
        conn.exchange(&status).map_err(|e| format!("closed after the handshake: {e}"))?;
        Ok(conn)
    }

    /// The TLS session tickets received so far (TLS 1.3 sends them after
    /// the handshake; they are read with the first reply).
    pub fn session_tickets(&self) -> usize {
        self.tickets.load(Ordering::Relaxed)
    }

    /// The next RADIUS identifier.
    pub fn next_id(&mut self) -> u8 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Writes raw bytes into the TLS stream.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// One framed packet from the stream; `None` if the server closed it
    /// (or nothing came within the read timeout).
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).ok()?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut packet = header.to_vec();
        packet.resize(len.max(4), 0);
        self.stream.read_exact(&mut packet[4..]).ok()?;
        Some(packet)
    }

    /// True if the server closed the connection (EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.stream.read(&mut byte), Ok(n) if n > 0)
    }

    /// Sends `request` (signed with the RadSec secret) and returns the
    /// verified reply.
    pub fn exchange(&mut self, request: &Packet) -> Result<Packet, String> {
        let wire = encode_request(request, SECRET.as_bytes()).map_err(|e| e.to_string())?;
        self.send(&wire).map_err(|e| e.to_string())?;
        let reply = self.recv().ok_or("no reply: connection closed")?;
        verify_response_to(&reply, request.code, &request.authenticator, SECRET.as_bytes(), true)
            .map_err(|e| e.to_string())
    }

    /// Relays one payment of `card` for `details`; the final reply.
    pub fn pay(&mut self, card: &CardFile, details: &PaymentDetails) -> Result<(Packet, PaymentReply), String> {
        let confirmation = Some(details.canonical());
        let mut peer = e_card::peer::session(card, confirmation).map_err(|e| e.to_string())?;
        let mut eap = peer.identity_response(0);
        let mut state: Option<Vec<u8>> = None;
        for round in 0..64 {
            let id = self.next_id();
            let mut p = eap_access_request_packet(id, &card.identity, &eap, state.as_deref());
            p.attributes.extend(payment_attributes(details));
            let reply = self.exchange(&p).map_err(|e| format!("round {round}: {e}"))?;
            match reply.code {
                Code::AccessChallenge => {
                    let challenge = reply.eap_message().ok_or("Access-Challenge without EAP")?;
                    state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                    eap = match peer.handle(&challenge) {
                        PeerEvent::Send(response) => response,
                        other => return Err(format!("round {round}: the card has no answer ({other:?})")),
                    };
                }
                Code::AccessAccept | Code::AccessReject => {
                    let answer = PaymentReply::of(&reply);
                    return Ok((reply, answer));
                }
                other => return Err(format!("round {round}: unexpected {other:?}")),
            }
        }
        Err("no final answer after 64 rounds".into())
    }
}

/// The arguments that make `eapay-terminal --protocol diameter` speak
/// Diameter over TLS as the terminal `c`, trusting the issuer CA (the
/// server is given apart, as `--server`).
pub fn diameter_tls_args(server: &Server, c: &TerminalCredential) -> Vec<String> {
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let mut args: Vec<String> = ["--transport", "tls", "--cert"].map(String::from).to_vec();
    args.extend([path(&c.cert), "--key".into(), path(&c.key), "--ca".into(), path(&server.ca_pem())]);
    args
}

/// The arguments that make `eapay-terminal` speak RADIUS over TLS to
/// `server` as the terminal `c`, trusting the issuer CA.
pub fn terminal_tls_args(server: &Server, c: &TerminalCredential) -> Vec<String> {
    let radsec = server.radsec.expect("the server serves RADIUS/TLS");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    vec![
        "--transport".into(),
        "tls".into(),
        "--server".into(),
        radsec.to_string(),
        "--cert".into(),
        path(&c.cert),
        "--key".into(),
        path(&c.key),
        "--ca".into(),
        path(&server.ca_pem()),
    ]
}
