//! eapay-server's Diameter EAP front end (RFC 4072) behind a real RFC 4005
//! translation agent: freeDiameter 1.2.1's RADIUS/Diameter gateway
//! (app_radgw with its auth.rgwx plugin, unmodified). eapol_test speaks
//! RADIUS to the gateway, the gateway speaks DER/DEA to the server.
//!
//! What the unmodified gateway does, and what these tests pin down:
//! - Every EAP round of EAP-AKA and EAP-TLS (TLS fragments included) goes
//!   through as one DER/DEA: EAP-Message -> EAP-Payload and back, the
//!   EAP header unchanged. Session-Id is the gateway's
//!   `radgw.REALM;hi;lo;<User-Name>;radgw.REALM`; it travels in the
//!   Access-Challenge State as `Diameter/<Origin-Host>/<Origin-Realm>/
//!   <Session-Id>` and comes back as the same Session-Id plus
//!   Destination-Host in the next DER. Origin-Host of every DER is the
//!   gateway's own identity (the RADIUS client is local), so the server
//!   knows the gateway as a `[[diameter.peers]]` entry of its own.
//! - Vendor-Specific attributes of every vendor but Microsoft are dropped
//!   (rgwx_auth.c; its "VSA ... discarded" trace is never printed by a
//!   Release build): eapol_test's payment attributes (vendor 32473) never
//!   reach the server, so each payment arrives as an authentication-only
//!   request. The server authenticates the card completely and declines 12
//!   ("authentication-only request: no payment attributes"), DEA 4001 with
//!   EAP-Failure, Reply-Message and its Eapay decline AVPs. The gateway
//!   turns 4001 into Access-Reject with the EAP-Failure and the
//!   Reply-Message (no Error-Cause), and drops the Eapay AVPs: the RADIUS
//!   client learns neither the decline code nor anything else of eapay's.
//!   Nothing reaches the ledger: the transaction id is unknown to it. So no
//!   EAP-Success (and no MS-MPPE keys from EAP-Master-Session-Key) can come
//!   through an unmodified gateway.
//! - RADIUS attribute Connect-Info (77), which eapol_test (like every
//!   access point) sends, becomes a Connect-Info AVP with the M bit. RFC
//!   4072 §3.1 lists it (with NAS-Port, NAS-Port-Id, Callback-Number,
//!   Originating-Line-Info, Framed-*) among the DER's AVPs, and the server's
//!   dictionary knows them all: an earlier server that did not answered the
//!   first DER 5001 DIAMETER_AVP_UNSUPPORTED, which the gateway turned into
//!   Access-Reject + Error-Cause 401 before any EAP round.
//! - A request with a wrong RADIUS secret is dropped by the gateway
//!   (invalid Message-Authenticator): no answer, no DER.
//!
//! - eapay's variant of the gateway (`--eapay`: scripts/freediameter/
//!   patches the auth plugin to carry vendor 32473 beside Microsoft's, both
//!   ways, and adds a dictionary extension for its AVPs) delivers the
//!   payment: eapol_test's payment attributes reach the server as vendor
//!   AVPs, and the approval comes back as Vendor-Specific attributes of the
//!   Access-Accept, with the MSK as MS-MPPE keys.
//!
//! freeDiameterd and its extensions come from scripts/build-freediameter.sh
//! (`.tools/bin/freeDiameterd`, `.tools/lib/freeDiameter/`, or
//! `$FREEDIAMETERD`); the gateway runs through scripts/freediameter-radgw.sh.
//! Without them (or eapol_test) a test prints a SKIP line; under
//! `EAPAY_REQUIRE_INTEROP=1` it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use eapay_tests::{
    details, eapol_test, eapol_test_payment_args, repo_root, require_tool, run_with_timeout, section, Method, Server,
    ToolOutput, MERCHANT, TOOL_TIMEOUT,
};

const REALM: &str = "issuer.test";
const SERVER_SECRET: &str = "eapay-test-secret";
const GATEWAY_SECRET: &str = "radgw-test-secret";
/// The gateway's Diameter identity: the Origin-Host of every DER it sends.
const GATEWAY_HOST: &str = "radgw.issuer.test";
/// The server's (`init` writes origin_host = "aaa.REALM").
const SERVER_HOST: &str = "aaa.issuer.test";
const AUTH_ONLY: &str = "authentication-only request: no payment attributes";

// ---------------------------------------------------------------------------
// The tools
// ---------------------------------------------------------------------------

/// freeDiameterd built by scripts/build-freediameter.sh: `FREEDIAMETERD`,
/// else `$EAPAY_TOOLS_DIR/bin/freeDiameterd`, else
/// `<repo>/.tools/bin/freeDiameterd`; with app_radgw and its auth plugin.
fn freediameterd() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let path = var("FREEDIAMETERD").unwrap_or_else(|| {
        var("EAPAY_TOOLS_DIR").unwrap_or_else(|| repo_root().join(".tools")).join("bin").join("freeDiameterd")
    });
    let ext = path.parent()?.parent()?.join("lib").join("freeDiameter");
    let complete = ["app_radgw.fdx", "auth.rgwx", "echodrop.rgwx", "dict_eap.fdx", "dbg_msg_dumps.fdx"]
        .iter()
        .all(|e| ext.join(e).is_file());
    (path.is_file() && complete).then_some(path)
}

/// eapol_test and freeDiameterd, or a SKIP line (a failure under
/// `EAPAY_REQUIRE_INTEROP=1`).
fn require_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let eapol = require_tool("eapol_test", eapol_test())?;
    if let Some(found) = freediameterd() {
        return Some((eapol, found));
    }
    let how = "run scripts/build-freediameter.sh, or set FREEDIAMETERD";
    if std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("freeDiameterd with app_radgw is required in CI (EAPAY_REQUIRE_INTEROP=1) but was not found ({how})");
    }
    let _ = writeln!(std::io::stderr(), "SKIP: {test} needs freeDiameterd with app_radgw ({how})");
    None
}

/// A server whose configuration knows the gateway as a Diameter peer,
/// acting for the demo merchant (the one the payment helpers use).
fn start_server() -> Server {
    Server::start_with(REALM, SERVER_SECRET, |config| {
        let diameter = section(config, "diameter");
        let peers = diameter
            .entry("peers")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .expect("[[diameter.peers]] is an array");
        let mut peer = toml::Table::new();
        peer.insert("name".into(), "radgw".into());
        peer.insert("origin_host".into(), GATEWAY_HOST.into());
        peer.insert("address".into(), "127.0.0.1/32".into());
        peer.insert("merchants".into(), toml::Value::Array(vec![MERCHANT.into()]));
        peers.push(toml::Value::Table(peer));
    })
}

/// freeDiameterd with app_radgw, started by scripts/freediameter-radgw.sh;
/// stopped (by its pid file) when dropped.
struct Gateway {
    script: PathBuf,
    run_dir: PathBuf,
    port: u16,
}

impl Gateway {
    /// Starts on a free UDP port, connected to `server`'s Diameter listener,
    /// dropping the RADIUS attribute types in `drop`, as freeDiameter ships
    /// it or (`eapay`) with eapay's auth plugin and dictionary; retries if
    /// another process took the port in between.
    fn start(binary: &Path, server: &Server, drop: &[u8], eapay: bool) -> Gateway {
        let script = repo_root().join("scripts/freediameter-radgw.sh");
        let diameter = server.diameter.expect("the server listens for Diameter (`init --diameter-listen`)");
        let run_dir = server.scratch("radgw");
        let mut last = None;
        for _ in 0..5 {
            let port =
                std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free UDP port").port();
            let mut cmd = Command::new(&script);
            cmd.arg("--run-dir")
                .arg(&run_dir)
                .args(["--radius-port", &port.to_string(), "--secret", GATEWAY_SECRET])
                .args(["--diameter-server", &diameter.to_string(), "--server-host", SERVER_HOST])
                .args(["--realm", REALM, "--identity", GATEWAY_HOST, "--dump-messages"])
                .env("FREEDIAMETERD", binary);
            for code in drop {
                cmd.args(["--drop", &code.to_string()]);
            }
            if eapay {
                cmd.arg("--eapay");
            }
            let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
            if out.success() {
                for line in
                    [format!("diameter peer {SERVER_HOST} open"), format!("listening radius auth 127.0.0.1:{port}")]
                {
                    assert!(out.stdout.lines().any(|l| l == line), "no `{line}` line:\n{}", out.tail(20));
                }
                return Gateway { script, run_dir, port };
            }
            if !out.stderr.contains("already in use") {
                panic!(
                    "scripts/freediameter-radgw.sh failed:\n{}\n--- server stderr ---\n{}",
                    out.tail(40),
                    server.stderr()
                );
            }
            last = Some(out);
        }
        panic!("no free port for the gateway after 5 tries:\n{}", last.map(|o| o.tail(20)).unwrap_or_default());
    }

    /// eapol_test with `conf` against the gateway, with `extra` arguments.
    fn eapol_test(&self, tool: &Path, conf: &Path, secret: &str, timeout: u32, extra: &[String]) -> ToolOutput {
        let mut cmd = Command::new(tool);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-s", secret, "-t", &timeout.to_string(), "-c"])
            .arg(conf)
            .args(extra);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("freediameter.log")).unwrap_or_default()
    }

    fn stop(&self) -> ToolOutput {
        let mut cmd = Command::new(&self.script);
        cmd.arg("--stop").arg("--run-dir").arg(&self.run_dir);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    /// The end of the gateway's log, for assertion messages.
    fn tail(&self) -> String {
        format!("--- freediameter.log (last 60 lines) ---\n{}", eapay_tests::last_lines(&self.log(), 60))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

// ---------------------------------------------------------------------------
// What eapol_test and the gateway logged
// ---------------------------------------------------------------------------

/// One RADIUS message as eapol_test dumps it (sent and received alike):
///
/// ```text
/// RADIUS message: code=11 (Access-Challenge) identifier=0 length=237
///    Attribute 24 (State) length=121
///       Value: 4469616d...
/// ```
#[derive(Debug)]
struct Radius {
    code: String,
    /// (type, the printed value: hex, 'text' or a number).
    attributes: Vec<(u8, String)>,
}

impl Radius {
    fn values(&self, kind: u8) -> Vec<&str> {
        self.attributes.iter().filter(|(t, _)| *t == kind).map(|(_, v)| v.as_str()).collect()
    }

    /// The EAP packet: its EAP-Message attributes, concatenated.
    fn eap(&self) -> Vec<u8> {
        self.values(79).iter().flat_map(|v| hex::decode(v).unwrap_or_else(|e| panic!("EAP-Message {v}: {e}"))).collect()
    }

    fn text(&self, kind: u8) -> Option<String> {
        self.values(kind).first().map(|v| v.trim_matches('\'').to_owned())
    }
}

fn radius_messages(out: &ToolOutput) -> Vec<Radius> {
    let mut messages: Vec<Radius> = Vec::new();
    let mut lines = out.stdout.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("RADIUS message: code=") else { continue };
        let code = rest.split(['(', ')']).nth(1).unwrap_or_default().to_owned();
        let mut attributes = Vec::new();
        while let Some(attr) = lines.peek().and_then(|l| l.trim_start().strip_prefix("Attribute ")) {
            let kind: u8 = attr.split(' ').next().and_then(|t| t.parse().ok()).expect("attribute type");
            lines.next();
            let value = match lines.peek().and_then(|l| l.trim_start().strip_prefix("Value: ")) {
                Some(v) => {
                    let v = v.to_owned();
                    lines.next();
                    v
                }
                None => String::new(),
            };
            attributes.push((kind, value));
        }
        messages.push(Radius { code, attributes });
    }
    messages
}

/// One Diameter message as dbg_msg_dumps.fdx logs it (`SND to 'peer':` or
/// `RCV from 'peer':`, the command name, the header, one line per AVP).
#[derive(Debug)]
struct Diameter {
    sent: bool,
    name: String,
    avps: Vec<Avp>,
}

/// `AVP: 'Session-Id'(263) l=90 f=-M val="..."` or
/// `AVP: 9(not found in dictionary) vend=32473 l=16 f=V- val=0000000C`.
#[derive(Debug)]
struct Avp {
    code: u32,
    vendor: Option<u32>,
    /// The AVP length (header included).
    length: usize,
    value: String,
}

impl Diameter {
    fn find(&self, code: u32) -> Option<&Avp> {
        self.avps.iter().find(|a| a.code == code && a.vendor.is_none())
    }

    fn value(&self, code: u32) -> Option<&str> {
        self.find(code).map(|a| a.value.trim_matches('"'))
    }

    /// The number in `val='DIAMETER_SUCCESS' (2001 (0x7d1))`.
    fn result_code(&self) -> Option<u32> {
        let v = &self.find(268)?.value;
        v.split(['(', ' ']).find_map(|w| w.parse().ok())
    }

    /// The first bytes of EAP-Payload (`val=<02 46 00 2C ...>`) and its length.
    fn eap(&self) -> Option<(Vec<u8>, usize)> {
        let avp = self.find(462)?;
        let bytes = avp
            .value
            .trim_start_matches('<')
            .split([' ', '>'])
            .map_while(|b| u8::from_str_radix(b, 16).ok())
            .take(4)
            .collect();
        Some((bytes, avp.length - 8))
    }
}

fn parse_avp(text: &str) -> Avp {
    let field = |name: &str| text.split(' ').find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    let code = text
        .split(['(', ')'])
        .find_map(|w| w.parse().ok())
        .or_else(|| text.split('(').next().and_then(|w| w.parse().ok()))
        .unwrap_or_else(|| panic!("no AVP code in `{text}`"));
    // `vend=32473`, or with a dictionary that names the vendor `vend='Eapay'(32473)`.
    let vendor = field("vend=").and_then(|v| {
        let number = v.rsplit_once('(').map_or(v.as_str(), |(_, n)| n.trim_end_matches(')'));
        number.parse().ok()
    });
    let length = field("l=").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no AVP length in `{text}`"));
    let value = text.split_once(" val=").map(|(_, v)| v.to_owned()).unwrap_or_default();
    Avp { code, vendor, length, value }
}

fn diameter_messages(log: &str) -> Vec<Diameter> {
    let mut messages: Vec<Diameter> = Vec::new();
    let mut open = false;
    for line in log.lines() {
        if line.contains("  SND to '") || line.contains("  RCV from '") {
            messages.push(Diameter { sent: line.contains("  SND to '"), name: String::new(), avps: Vec::new() });
            open = true;
            continue;
        }
        if !open || !line.contains(" NOTI ") {
            open = false;
            continue;
        }
        let current = messages.last_mut().expect("an open message");
        let body = line.split_once(" NOTI ").map(|(_, b)| b.trim()).unwrap_or_default();
        if let Some(avp) = body.strip_prefix("AVP: ") {
            current.avps.push(parse_avp(avp));
        } else if current.name.is_empty() && body.starts_with('\'') {
            current.name = body.trim_matches('\'').to_owned();
        }
    }
    messages
}

/// `counters=...` of the server's `stopped` line: name -> value (only the
/// non-zero ones are printed).
fn counters(stderr: &str) -> Vec<(String, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("stopped") && l.contains("counters="))
        .unwrap_or_else(|| panic!("no `stopped counters=...` line:\n{}", eapay_tests::last_lines(stderr, 20)));
    line.split(|c: char| c.is_whitespace() || c == '"')
        .filter_map(|w| w.strip_prefix("counters=").or(Some(w)))
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

fn counter(all: &[(String, u64)], name: &str) -> u64 {
    all.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

fn is_auth_only_decline(line: &str) -> bool {
    line.contains("declined")
        && line.contains("client=\"radgw\"")
        && line.contains("decline=12")
        && line.contains(AUTH_ONLY)
        // FailureReason::Declined: the method had authenticated the card
        // (a failed authentication is logged with its reason and decline=63).
        && line.contains("reason=declined")
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// A payment by eapol_test through the gateway with an `optional` card of
/// `method`: every EAP round goes through as DER/DEA in one Diameter
/// session, the payment attributes do not, and the server's decision for an
/// authentication-only request comes back as Access-Reject.
fn payment_through_the_gateway(method: Method, test: &str) {
    let Some((eapol, fdd)) = require_tools(test) else { return };
    let server = start_server();
    let _capture = server.capture();
    let card = server.card(method);
    let gateway = Gateway::start(&fdd, &server, &[], false);
    let payment = details("radgw", 1250);
    let attributes = eapol_test_payment_args(&payment);
    let out = gateway.eapol_test(&eapol, &card.eapol_conf, GATEWAY_SECRET, 10, &attributes);
    let context = || format!("{}\n{}\n--- server stderr ---\n{}", out.tail(60), gateway.tail(), server.stderr());

    // eapol_test: the server's EAP-Failure, no keys.
    assert!(
        !out.success()
            && out.stdout.lines().any(|l| l.trim_end() == "FAILURE")
            && out.stdout.contains("CTRL-EVENT-EAP-FAILURE"),
        "want an EAP-Failure\n{}",
        context()
    );

    // RADIUS: Access-Requests with the payment attributes; n-1
    // Access-Challenges, then one Access-Reject.
    let radius = radius_messages(&out);
    let requests: Vec<&Radius> = radius.iter().filter(|m| m.code == "Access-Request").collect();
    let replies: Vec<&Radius> = radius.iter().filter(|m| m.code != "Access-Request").collect();
    let rounds = requests.len();
    let min_rounds = if method == Method::Tls { 3 } else { 2 };
    assert!(rounds >= min_rounds, "{method:?}: {rounds} EAP rounds\n{}", context());
    assert_eq!(replies.len(), rounds, "one answer per request\n{}", context());
    for (i, reply) in replies.iter().enumerate() {
        let want = if i + 1 < rounds { "Access-Challenge" } else { "Access-Reject" };
        assert_eq!(reply.code, want, "answer {i}\n{}", context());
    }
    for request in &requests {
        assert_eq!(request.values(26).len(), 7, "eapol_test sends the 7 payment attributes: {request:?}");
        assert!(request.values(77).len() == 1, "eapol_test sends Connect-Info: {request:?}");
    }

    // Diameter: one DER per Access-Request, one DEA per answer.
    let diameter = diameter_messages(&gateway.log());
    let ders: Vec<&Diameter> = diameter.iter().filter(|m| m.sent && m.name == "Diameter-EAP-Request").collect();
    let deas: Vec<&Diameter> = diameter.iter().filter(|m| !m.sent && m.name == "Diameter-EAP-Answer").collect();
    assert_eq!(ders.len(), rounds, "DERs sent\n{}", context());
    assert_eq!(deas.len(), rounds, "DEAs received\n{}", context());

    // One Diameter session, named by the gateway, carried in State.
    let session = ders[0].value(263).expect("Session-Id").to_owned();
    assert!(
        session.starts_with(&format!("{GATEWAY_HOST};"))
            && session.ends_with(&format!(";{};{GATEWAY_HOST}", card.identity)),
        "Session-Id {session:?}: the gateway's, with User-Name {}",
        card.identity
    );
    let state = format!("Diameter/{SERVER_HOST}/{REALM}/{session}");
    for (i, (der, dea)) in ders.iter().zip(&deas).enumerate() {
        assert_eq!(der.value(263), Some(session.as_str()), "DER {i}: Session-Id\n{}", context());
        assert_eq!(dea.value(263), Some(session.as_str()), "DEA {i}: Session-Id\n{}", context());
        assert_eq!(der.value(264), Some(GATEWAY_HOST), "DER {i}: Origin-Host");
        assert_eq!(der.value(283), Some(REALM), "DER {i}: Destination-Realm from User-Name");
        // The first DER has no server yet; the others name the one in State.
        let host = if i == 0 { None } else { Some(SERVER_HOST) };
        assert_eq!(der.value(293), host, "DER {i}: Destination-Host");
        assert_eq!(der.value(1), Some(card.identity.as_str()), "DER {i}: User-Name");
        assert!(der.find(408).is_some(), "DER {i}: Origin-AAA-Protocol");
        assert!(der.find(24).is_none(), "DER {i}: the gateway's own State is not forwarded");
        // No vendor AVP at all: eapol_test's Vendor-Specific were dropped.
        let vendor: Vec<&Avp> = der.avps.iter().filter(|a| a.vendor.is_some()).collect();
        assert!(vendor.is_empty(), "DER {i} carries vendor AVPs {vendor:?}\n{}", context());
        assert!(der.find(77).is_some(), "DER {i}: the gateway forwards Connect-Info (and the server takes it)");

        // The EAP packets, unchanged in both directions.
        let sent = requests[i].eap();
        let (head, len) = der.eap().unwrap_or_else(|| panic!("DER {i} has no EAP-Payload\n{}", context()));
        assert_eq!((head.as_slice(), len), (&sent[..4], sent.len()), "DER {i}: EAP-Payload\n{}", context());
        let got = replies[i].eap();
        let (head, len) = dea.eap().unwrap_or_else(|| panic!("DEA {i} has no EAP-Payload\n{}", context()));
        assert_eq!((head.as_slice(), len), (&got[..4], got.len()), "DEA {i}: EAP-Payload\n{}", context());

        if i + 1 < rounds {
            assert_eq!(dea.result_code(), Some(1001), "DEA {i}\n{}", context());
            let value = replies[i].values(24);
            let value = value.first().unwrap_or_else(|| panic!("Access-Challenge {i} has no State\n{}", context()));
            let text = String::from_utf8(hex::decode(value).expect("State is printed in hex")).expect("UTF-8 State");
            assert_eq!(text, state, "Access-Challenge {i}: State");
        }
    }
    if method == Method::Tls {
        // TLS flights larger than one attribute, split and joined again.
        assert!(replies.iter().any(|r| r.values(79).len() > 1), "no fragmented Access-Challenge\n{}", context());
        assert!(requests.iter().any(|r| r.values(79).len() > 1), "no fragmented Access-Request\n{}", context());
    }

    // The decision: DEA 4001 with EAP-Failure, Reply-Message and the Eapay
    // decline (code 12), of which the Access-Reject keeps the EAP-Failure
    // and the Reply-Message only.
    let last = deas[rounds - 1];
    assert_eq!(last.result_code(), Some(4001), "the final DEA\n{}", context());
    assert_eq!(last.value(18), Some(AUTH_ONLY), "the final DEA's Reply-Message\n{}", context());
    let decline = last.avps.iter().find(|a| a.vendor == Some(32473) && a.code == 9);
    assert_eq!(decline.map(|a| a.value.as_str()), Some("0000000C"), "Eapay-Decline-Code in the DEA\n{}", context());
    assert!(gateway.log().contains(&format!(
        "[auth.rgwx] Received Diameter answer with error code '4001' from server '{SERVER_HOST}', session {session}"
    )));
    let reject = replies[rounds - 1];
    assert_eq!(reject.eap(), [4, reject.eap()[1], 0, 4], "EAP-Failure in the Access-Reject");
    assert_eq!(reject.text(18).as_deref(), Some(AUTH_ONLY), "Reply-Message\n{}", context());
    let kinds: Vec<u8> = reject.attributes.iter().map(|(t, _)| *t).collect();
    assert_eq!(kinds, [79, 18, 80], "the Access-Reject: EAP-Message, Reply-Message, Message-Authenticator only");

    // The server authenticated the card, saw no payment, recorded none.
    let declines = server.stderr().lines().filter(|l| is_auth_only_decline(l)).count();
    assert_eq!(declines, 1, "want one authentication-only decline after a full authentication\n{}", context());
    assert!(!server.stderr().contains(&payment.transaction_id), "the transaction id reached the server");
    let shown = server.try_admin(&["txn", "show", &format!("{MERCHANT}:{}", payment.transaction_id)]);
    assert!(!shown.success(), "the ledger knows the payment:\n{}", shown.tail(10));

    // Its counters: one declined conversation, all of it over Diameter.
    let stderr = server.terminate();
    let all = counters(&stderr);
    let summary = format!("{all:?}");
    assert_eq!(counter(&all, "eap_declined"), 1, "{summary}");
    assert_eq!(counter(&all, "rejects"), 1, "{summary}");
    assert_eq!(counter(&all, "challenges"), rounds as u64 - 1, "{summary}");
    assert_eq!(counter(&all, "accepts"), 0, "{summary}");
    assert_eq!(counter(&all, "eap_failed_authentication"), 0, "{summary}");
    assert_eq!(counter(&all, "diameter_requests"), rounds as u64, "{summary}");
    assert_eq!(counter(&all, "diameter_protocol_errors"), 0, "{summary}");
    assert_eq!(counter(&all, "requests"), 0, "RADIUS requests at the server: {summary}");
    eprintln!("{method:?} through app_radgw: {rounds} DER/DEA rounds in session {session}; server counters {summary}");
}

#[test]
fn aka_payment_through_app_radgw_arrives_without_its_claim_and_is_declined_12() {
    payment_through_the_gateway(
        Method::Aka,
        "aka_payment_through_app_radgw_arrives_without_its_claim_and_is_declined_12",
    );
}

#[test]
fn eap_tls_payment_through_app_radgw_arrives_without_its_claim_and_is_declined_12() {
    payment_through_the_gateway(
        Method::Tls,
        "eap_tls_payment_through_app_radgw_arrives_without_its_claim_and_is_declined_12",
    );
}

/// A RADIUS client with the wrong secret gets no answer from the gateway,
/// and the server never hears of it.
#[test]
fn app_radgw_drops_requests_with_a_wrong_radius_secret() {
    let test = "app_radgw_drops_requests_with_a_wrong_radius_secret";
    let Some((eapol, fdd)) = require_tools(test) else { return };
    let server = start_server();
    let _capture = server.capture();
    let card = server.card(Method::Aka);
    let gateway = Gateway::start(&fdd, &server, &[77], false);
    let out = gateway.eapol_test(&eapol, &card.eapol_conf, "not-the-radgw-secret", 3, &[]);
    let context = || format!("{}\n{}\n--- server stderr ---\n{}", out.tail(40), gateway.tail(), server.stderr());
    assert!(!out.success() && out.stdout.contains("EAPOL test timed out"), "want a timeout\n{}", context());
    let radius = radius_messages(&out);
    assert!(radius.iter().all(|m| m.code == "Access-Request"), "an answer came\n{}", context());
    let log = gateway.log();
    assert!(log.contains("Invalid Message-Authenticator received, discarding message."), "{}", context());
    let diameter = diameter_messages(&log);
    assert!(!diameter.iter().any(|m| m.name == "Diameter-EAP-Request"), "a DER went out\n{}", context());
    let all = counters(&server.terminate());
    assert_eq!(counter(&all, "diameter_requests"), 0, "{all:?}");
}

/// With eapay's variant of the gateway (scripts/freediameter/: the auth
/// plugin carries vendor 32473 both ways, beside Microsoft's, and a
/// dictionary extension knows its AVPs), a real RFC 4072 client delivers the
/// payment: eapol_test's seven payment attributes reach the server as vendor
/// AVPs in every DER, the server approves, and the approval comes back to
/// eapol_test as Vendor-Specific attributes of the Access-Accept, with the
/// MSK as MS-MPPE keys. The ledger has the approval eapol_test saw.
#[test]
fn a_payment_through_the_eapay_gateway_is_approved() {
    let test = "a_payment_through_the_eapay_gateway_is_approved";
    let Some((eapol, fdd)) = require_tools(test) else { return };
    let server = start_server();
    let _capture = server.capture();
    let gateway = Gateway::start(&fdd, &server, &[], true);
    for (n, method) in [Method::Aka, Method::Tls].into_iter().enumerate() {
        let card = server.card(method);
        let payment = details(&format!("radgw-eapay-{n}"), 1250 + n as u64);
        let out = gateway.eapol_test(&eapol, &card.eapol_conf, GATEWAY_SECRET, 10, &eapol_test_payment_args(&payment));
        eapay_tests::eapol::assert_success(&out, &server, 1);
        let code = eapay_tests::eapol::assert_approved(&server, &payment, &out);
        let diameter = diameter_messages(&gateway.log());
        let ders: Vec<&Diameter> = diameter.iter().filter(|m| m.sent && m.name == "Diameter-EAP-Request").collect();
        assert!(
            ders.iter().rev().take(2).all(|der| der.avps.iter().filter(|a| a.vendor.is_some()).count() >= 7),
            "{method:?}: the payment attributes travel as vendor AVPs\n{}",
            gateway.tail()
        );
        assert!(server.stderr().contains(&payment.transaction_id), "{method:?}: approval {code} logged by the server");
    }
}
