//! The EAP-TLS and EAP-TTLS/PAP cards of an eapay ledger, exported for
//! FreeRADIUS 3.2 (`eapay-server card export --format freeradius --card-dir
//! DIR`), authenticate there with eapol_test and the very network blocks
//! `card issue --eapol-test` wrote: FreeRADIUS trusts the issuer CA for the
//! card certificates, the cards pin the issuer's server key, and the TTLS
//! cards' PINs are their inner PAP passwords. FreeRADIUS is a plain AAA
//! server here (no payment attributes, no ledger); the same set-up is the
//! reference the TLS benchmarks compare eapay with.
//!
//! FreeRADIUS runs through `scripts/freeradius-tls-server.sh`, the script the
//! benchmarks use; the binary is `$FREERADIUS`, else `freeradius` or
//! `radiusd` in PATH or /usr/sbin. Without it (or without eapol_test) the
//! interop test prints a SKIP line, and fails under `EAPAY_REQUIRE_INTEROP=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use eapay_tests::eapol::{count, eapay_attributes_in, has_line};
use eapay_tests::{
    eapol_test, freeradius, last_lines, repo_root, require_tool, run_with_timeout, Card, Method, Server, ToolOutput,
    TOOL_TIMEOUT,
};

fn script() -> PathBuf {
    repo_root().join("scripts/freeradius-tls-server.sh")
}

/// FreeRADIUS started by scripts/freeradius-tls-server.sh; stopped (by its
/// pid file) when dropped.
struct Freeradius {
    run_dir: PathBuf,
    port: u16,
    pid: u32,
    secret: String,
}

impl Freeradius {
    /// Starts on a free UDP port of 127.0.0.1; retries if another process
    /// took the port in between.
    fn start(binary: &Path, export: &Path, run_dir: &Path, secret: &str) -> Freeradius {
        let mut last = None;
        for _ in 0..5 {
            let port =
                std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free UDP port").port();
            let mut cmd = Command::new(script());
            cmd.arg("--export")
                .arg(export)
                .arg("--port")
                .arg(port.to_string())
                .arg("--secret")
                .arg(secret)
                .arg("--run-dir")
                .arg(run_dir)
                .env("FREERADIUS", binary);
            let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
            if out.success() {
                let pid = out
                    .stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("freeradius pid "))
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no `freeradius pid N` line:\n{}", out.tail(20)));
                let listening = format!("listening radius auth 127.0.0.1:{port}");
                assert!(out.stdout.lines().any(|l| l == listening), "no `{listening}` line:\n{}", out.tail(20));
                return Freeradius { run_dir: run_dir.to_owned(), port, pid, secret: secret.to_owned() };
            }
            if !out.stderr.contains("already in use") {
                panic!("scripts/freeradius-tls-server.sh failed:\n{}", out.tail(40));
            }
            last = Some(out);
        }
        panic!("no free port for FreeRADIUS after 5 tries:\n{}", last.map(|o| o.tail(20)).unwrap_or_default());
    }

    /// eapol_test with `conf` against this FreeRADIUS (no payment attributes).
    fn eapol_test(&self, tool: &Path, conf: &Path, extra: &[&str]) -> ToolOutput {
        let mut cmd = Command::new(tool);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-s", &self.secret, "-t", "10", "-c"])
            .arg(conf)
            .args(extra);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    fn stop(&self) -> ToolOutput {
        let mut cmd = Command::new(script());
        cmd.arg("--stop").arg("--run-dir").arg(&self.run_dir);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.run_dir.join("radius.log")).unwrap_or_default();
        format!("--- radius.log (last lines) ---\n{}", last_lines(&log, 30))
    }
}

impl Drop for Freeradius {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// eapol_test's conversations, one per EAP-STARTED.
fn runs(out: &ToolOutput) -> Vec<&str> {
    out.stdout.split("CTRL-EVENT-EAP-STARTED").skip(1).collect()
}

/// `-r 1` succeeded twice at TLS 1.3 with matching MPPE keys, the second
/// time by resuming the TLS session, and FreeRADIUS sent no Eapay attribute.
fn assert_paid_and_resumed(out: &ToolOutput, what: &str, freeradius: &Freeradius) {
    let ok = out.success() && has_line(out, "SUCCESS") && out.stdout.contains("MPPE keys OK: 2  mismatch: 0");
    assert!(ok, "{what}: eapol_test against FreeRADIUS did not succeed twice\n{}\n{}", out.tail(60), freeradius.log());
    assert_eq!(count(out, "(Access-Accept)"), 2, "{what}\n{}", out.tail(60));
    let versions: Vec<bool> = runs(out).iter().map(|r| r.contains("SSL: Using TLS version TLSv1.3")).collect();
    assert_eq!(versions, [true, true], "{what}: not TLS 1.3\n{}", out.tail(80));
    let resumed: Vec<bool> = runs(out).iter().map(|r| r.contains("OpenSSL: Handshake finished - resumed=1")).collect();
    assert_eq!(resumed, [false, true], "{what}: the second run did not resume\n{}\n{}", out.tail(80), freeradius.log());
    let accepts = eapay_attributes_in(out, "Access-Accept");
    assert!(accepts.iter().all(Vec::is_empty), "{what}: FreeRADIUS sent Eapay attributes: {accepts:?}");
}

fn assert_refused(out: &ToolOutput, what: &str) {
    assert!(
        !out.success() && has_line(out, "FAILURE") && out.stdout.contains("(Access-Reject)"),
        "{what} authenticated at FreeRADIUS:\n{}",
        out.tail(40)
    );
    assert!(!out.stdout.contains("(Access-Accept)"), "{what}: an Access-Accept\n{}", out.tail(40));
}

/// The network block of a card with another password.
fn with_password(server: &Server, card: &Card, password: &str) -> PathBuf {
    let text = std::fs::read_to_string(&card.eapol_conf).expect("the eapol_test configuration");
    let line = text.lines().find(|l| l.trim().starts_with("password=\"")).expect("a password line").to_owned();
    let path = server.scratch(&format!("{}-wrong-pin.conf", card.card_id));
    std::fs::write(&path, text.replace(&line, &format!("\tpassword=\"{password}\""))).expect("write");
    path
}

#[test]
fn exported_tls_ttls_and_sim_cards_authenticate_at_freeradius() {
    let Some(eapol) = require_tool("eapol_test", eapol_test()) else { return };
    let Some(binary) = require_tool("freeradius", freeradius()) else { return };
    let started = std::time::Instant::now();
    let server = Server::start_default();
    let _capture = server.capture();
    let tls = server.card_with(Method::Tls, &["--confirmation", "optional"]);
    let ttls = server.card_with(Method::Ttls, &["--confirmation", "optional", "--pin", "2468"]);
    let blocked = server.card_with(Method::Ttls, &["--confirmation", "optional", "--pin", "1357"]);
    server.block(&blocked);
    let sim = server.card_with(Method::Sim, &["--confirmation", "optional"]);

    let export = server.scratch("freeradius-export");
    let card_dir = tls.json.parent().expect("the card directory");
    let out = server.admin(&[
        "card",
        "export",
        "--format",
        "freeradius",
        "--out",
        export.to_str().expect("utf-8"),
        "--card-dir",
        card_dir.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("exported 1 tls and 1 ttls and 1 sim cards"), "card export printed: {out}");
    for (file, want) in [("ca.pem", 0o644), ("server.pem", 0o644), ("server-key.pem", 0o600), ("users", 0o600)] {
        assert_eq!(mode(&export.join(file)), want, "{file}");
    }
    let users = std::fs::read_to_string(export.join("users")).expect("users");
    let entries: Vec<&str> = users.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(entries.len(), 2, "{users}");
    assert!(entries.contains(&format!("\"{}\"\tCleartext-Password := \"2468\"", ttls.card_id).as_str()), "{users}");
    // The SIM card: three triplets; eapol_test's SIM simulator (GSM-Milenage
    // from the card's K/OPc) must agree with them for the run below to pass.
    let sim_entry = entries.iter().find(|e| e.starts_with(&format!("\"{}\"\t", sim.identity))).expect("sim entry");
    assert!(sim_entry.contains("EAP-Type := SIM") && sim_entry.contains("EAP-Sim-KC3 := 0x"), "{sim_entry}");

    let run_dir = server.scratch("freeradius-run");
    let freeradius = Freeradius::start(&binary, &export, &run_dir, "freeradius-test-secret");
    // Its own traffic is judged too (not eapay's: no Message-Authenticator rule).
    let _freeradius_capture = eapay_tests::capture::Capture::start(
        vec![eapay_tests::capture::RadiusPort {
            port: freeradius.port,
            secret: "freeradius-test-secret".into(),
            eapay: false,
        }],
        Vec::new(),
    );
    assert!(Path::new(&format!("/proc/{}/stat", freeradius.pid)).exists(), "FreeRADIUS pid {} is gone", freeradius.pid);
    for (name, want) in [("raddb/radiusd.conf", 0o600), ("tlscache", 0o700)] {
        assert_eq!(mode(&run_dir.join(name)), want, "{name} holds the secret or the TLS sessions");
    }

    // EAP-TLS 1.3 with the card's certificate from the issuer CA, then a
    // resumption of that session.
    let out = freeradius.eapol_test(&eapol, &tls.eapol_conf, &["-r", "1"]);
    assert_paid_and_resumed(&out, "EAP-TLS card", &freeradius);

    // TTLS/PAP: the anonymous outer identity gets TTLS at once (no Nak of
    // EAP-TLS), the PIN is checked inside the tunnel, a resumption skips it.
    let out = freeradius.eapol_test(&eapol, &ttls.eapol_conf, &["-r", "1"]);
    assert_paid_and_resumed(&out, "TTLS/PAP card", &freeradius);
    assert!(
        out.stdout.lines().all(|l| !(l.contains("Received EAP-Request") && l.contains(" method=13 "))),
        "FreeRADIUS offered EAP-TLS to an anonymous TTLS card:\n{}",
        out.tail(60)
    );
    assert!(runs(&out)[0].contains("EAP-TTLS: Phase 2 PAP Request"), "no inner PAP:\n{}", out.tail(60));

    // EAP-SIM with the exported triplets, a payment's worth of round trips.
    let out = freeradius.eapol_test(&eapol, &sim.eapol_conf, &[]);
    assert!(
        out.success() && out.stdout.contains("MPPE keys OK: 1  mismatch: 0"),
        "EAP-SIM card at FreeRADIUS:\n{}\n{}",
        out.tail(40),
        freeradius.log()
    );

    // A wrong PIN, and a blocked card (not exported), are refused.
    let out = freeradius.eapol_test(&eapol, &with_password(&server, &ttls, "9999"), &[]);
    assert_refused(&out, "a wrong PIN");
    let out = freeradius.eapol_test(&eapol, &blocked.eapol_conf, &[]);
    assert_refused(&out, "a blocked TTLS card");

    let stopped = freeradius.stop();
    assert!(stopped.success() && stopped.stdout.contains("stopped freeradius"), "{}", stopped.tail(10));
    assert!(!Path::new(&format!("/proc/{}", freeradius.pid)).exists(), "FreeRADIUS still runs");
    server.assert_running();
    eprintln!("FreeRADIUS interop took {:?}", started.elapsed());
}

/// The script's usage errors: one line on stderr, exit 2, nothing started.
#[test]
fn freeradius_script_usage_errors_are_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty export");
    std::fs::create_dir(&empty).expect("mkdir");
    let empty = empty.to_str().expect("utf-8");
    let missing = dir.path().join("missing");
    let missing = missing.to_str().expect("utf-8");
    let run = dir.path().join("run");
    let run = run.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 8] = [
        (&[], "--export DIR is required"),
        (&["--export", empty, "--port", "0", "--secret", "s"], "--port must be 1..65535"),
        (&["--export", empty, "--port", "70000", "--secret", "s"], "--port must be 1..65535"),
        (&["--export", empty, "--port", "1812"], "--secret is required"),
        (&["--export", empty, "--port", "1812", "--secret", "it's"], "--secret must not contain"),
        (&["--export", empty, "--port", "1812", "--secret", "s", "--tls-max", "1.1"], "--tls-max must be"),
        (&["--export", missing, "--port", "1812", "--secret", "s", "--run-dir", run], "no directory"),
        (&["--export", empty, "--port", "1812", "--secret", "s", "--run-dir", run], "has no ca.pem"),
    ];
    for (args, want) in cases {
        let mut cmd = Command::new(script());
        cmd.args(args);
        let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(
            out.status.code() == Some(2) && lines.len() == 1 && lines[0].contains(want) && out.stdout.is_empty(),
            "want exit 2 and one line with {want:?}:\n{}",
            out.tail(5)
        );
    }
    assert!(!Path::new(run).exists(), "a refused start created its run dir");
    let mut cmd = Command::new(script());
    cmd.args(["--stop"]);
    let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
    assert!(out.status.code() == Some(2) && out.stderr.contains("--stop needs --run-dir"), "{}", out.tail(5));
}
