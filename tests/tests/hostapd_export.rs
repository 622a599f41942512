//! The cards of an eapay ledger, exported for hostapd's RADIUS/EAP server
//! (`eapay-server card export --format hostapd`), authenticate there with
//! eapol_test: the same cards measure eapay and hostapd side by side. Also
//! bulk issuance (`card issue --count N --card-dir DIR`) and the refusal to
//! export AKA cards to FreeRADIUS.
//!
//! hostapd comes from `scripts/build-hostapd.sh` (`.tools/bin/hostapd`, or
//! `$HOSTAPD`); without it the interop test prints a SKIP line, and fails
//! under `EAPAY_REQUIRE_INTEROP=1`. It runs through
//! `scripts/hostapd-aka-server.sh`, the script the benchmarks use.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use eapay_tests::{
    details, eapol_test, eapol_test_payment_args, read_usim_password, repo_root, require_tool, run_with_timeout,
    write_usim_password, Card, Method, Server, ToolOutput, UsimPassword, TOOL_TIMEOUT,
};

/// hostapd built by scripts/build-hostapd.sh: `HOSTAPD`, else
/// `$EAPAY_TOOLS_DIR/bin/hostapd`, else `<repo>/.tools/bin/hostapd`.
fn hostapd() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let path = var("HOSTAPD").unwrap_or_else(|| {
        var("EAPAY_TOOLS_DIR").unwrap_or_else(|| repo_root().join(".tools")).join("bin").join("hostapd")
    });
    let hlr = path.with_file_name("hlr_auc_gw");
    (path.is_file() && hlr.is_file()).then_some(path)
}

/// [`hostapd`], or a SKIP line (a failure under `EAPAY_REQUIRE_INTEROP=1`).
fn require_hostapd() -> Option<PathBuf> {
    if let Some(found) = hostapd() {
        return Some(found);
    }
    let how = "run scripts/build-hostapd.sh, or set HOSTAPD";
    if std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("hostapd and hlr_auc_gw are required in CI (EAPAY_REQUIRE_INTEROP=1) but were not found ({how})");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIP: exported_aka_and_aka_prime_cards_authenticate_at_hostapd needs hostapd and hlr_auc_gw ({how})"
    );
    None
}

/// hostapd + hlr_auc_gw started by scripts/hostapd-aka-server.sh; stopped
/// (by their pid files) when dropped.
struct Hostapd {
    script: PathBuf,
    run_dir: PathBuf,
    port: u16,
    pid: u32,
    secret: String,
}

impl Hostapd {
    /// Starts on a free UDP port (hostapd binds 0.0.0.0:PORT); retries if
    /// another process took the port in between.
    fn start(binary: &Path, export: &Path, run_dir: &Path, secret: &str) -> Hostapd {
        let script = repo_root().join("scripts/hostapd-aka-server.sh");
        let mut last = None;
        for _ in 0..5 {
            let port =
                std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr()).expect("a free UDP port").port();
            let mut cmd = Command::new(&script);
            cmd.arg("--cards-export")
                .arg(export)
                .arg("--port")
                .arg(port.to_string())
                .arg("--secret")
                .arg(secret)
                .arg("--run-dir")
                .arg(run_dir)
                .env("HOSTAPD", binary)
                .env("HLR_AUC_GW", binary.with_file_name("hlr_auc_gw"));
            let out = run_with_timeout(cmd, None, TOOL_TIMEOUT);
            if out.success() {
                let pid = out
                    .stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("hostapd pid "))
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no `hostapd pid N` line:\n{}", out.tail(20)));
                let listening = format!("listening radius auth 127.0.0.1:{port}");
                assert!(out.stdout.lines().any(|l| l == listening), "no `{listening}` line:\n{}", out.tail(20));
                return Hostapd { script, run_dir: run_dir.to_owned(), port, pid, secret: secret.to_owned() };
            }
            if !out.stderr.contains("already in use") {
                panic!("scripts/hostapd-aka-server.sh failed:\n{}", out.tail(40));
            }
            last = Some(out);
        }
        panic!("no free port for hostapd after 5 tries:\n{}", last.map(|o| o.tail(20)).unwrap_or_default());
    }

    /// eapol_test with `conf` against this hostapd.
    fn eapol_test(&self, tool: &Path, conf: &Path) -> ToolOutput {
        let mut cmd = Command::new(tool);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-s", &self.secret, "-t", "10", "-c"]).arg(conf);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run_dir.join(name)).unwrap_or_default()
    }

    /// Stops both processes; hlr_auc_gw flushes its log on SIGTERM.
    fn stop(&self) -> ToolOutput {
        let mut cmd = Command::new(&self.script);
        cmd.arg("--stop").arg("--run-dir").arg(&self.run_dir);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    fn logs(&self) -> String {
        format!(
            "--- hostapd.log (last lines) ---\n{}\n--- hlr_auc_gw.log (last lines) ---\n{}",
            eapay_tests::last_lines(&self.log("hostapd.log"), 40),
            eapay_tests::last_lines(&self.log("hlr_auc_gw.log"), 20)
        )
    }
}

impl Drop for Hostapd {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn assert_eapol_success(out: &ToolOutput, what: &str, hostapd: &Hostapd) {
    assert!(
        out.success()
            && out.stdout.lines().any(|l| l.trim_end() == "SUCCESS")
            && out.stdout.contains("MPPE keys OK: 1  mismatch: 0"),
        "{what}: eapol_test against hostapd did not succeed\n{}\n{}",
        out.tail(40),
        hostapd.logs()
    );
}

/// The hlr_auc_gw Milenage line (IMSI Ki OPc AMF SQN) of a card.
fn milenage_line<'a>(db: &'a str, card: &Card) -> Option<Vec<&'a str>> {
    let imsi = &card.card_id[..18];
    db.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(' ').collect::<Vec<_>>()).find(|f| f[0] == imsi)
}

#[test]
fn exported_sim_aka_and_aka_prime_cards_authenticate_at_hostapd() {
    let Some(eapol) = require_tool("eapol_test", eapol_test()) else { return };
    let Some(hostapd_bin) = require_hostapd() else { return };
    let server = Server::start_default();
    let _capture = server.capture();
    let aka = server.card(Method::Aka);
    let aka_prime = server.card(Method::AkaPrime);
    let sim = server.card(Method::Sim);
    let blocked = server.card(Method::Aka);
    server.block(&blocked);

    // One payment at eapay first: the AKA card has then accepted a vector
    // with SQN = SEQ 1 / IND 1 (0x21), and the export must start hostapd
    // past it.
    let payment = details("HX", 1250);
    let mut cmd = Command::new(&eapol);
    cmd.args(["-a", "127.0.0.1", "-p", &server.auth.port().to_string(), "-s", &server.secret, "-t", "10", "-c"])
        .arg(&aka.eapol_conf)
        .args(eapol_test_payment_args(&payment));
    let paid = run_with_timeout(cmd, None, TOOL_TIMEOUT);
    assert!(paid.success(), "the payment at eapay failed\n{}\n{}", paid.tail(30), server.stderr());

    let export = server.scratch("hostapd-export");
    let out = server.admin(&["card", "export", "--format", "hostapd", "--out", export.to_str().expect("utf-8")]);
    assert!(out.contains("exported 1 aka and 1 aka-prime and 1 sim cards"), "card export printed: {out}");
    let eap_user_path = export.join("hostapd.eap_user");
    let milenage_path = export.join("hlr_auc_gw.milenage_db");
    for file in [&eap_user_path, &milenage_path] {
        assert_eq!(mode(file), 0o600, "{} holds keys: mode 0600", file.display());
    }
    let eap_user = std::fs::read_to_string(&eap_user_path).expect("eap_user");
    assert!(
        eap_user.lines().any(|l| l == "\"0\"*\tAKA")
            && eap_user.lines().any(|l| l == "\"6\"*\tAKA'")
            && eap_user.lines().any(|l| l == "\"1\"*\tSIM"),
        "{eap_user}"
    );
    let db = std::fs::read_to_string(&milenage_path).expect("milenage db");
    let aka_line = milenage_line(&db, &aka).unwrap_or_else(|| panic!("no line for the AKA card:\n{db}"));
    let password = read_usim_password(&aka.eapol_conf);
    assert_eq!(aka_line[1..4], [password.k.as_str(), password.opc.as_str(), "8000"], "{db}");
    // One vector went out (SQN 0x21: SEQ 1, IND 1); SQN_HE is at or past it
    // (the ledger reserves SQNs in blocks), so hostapd's next one is fresh.
    let exported = u64::from_str_radix(aka_line[4], 16).unwrap_or_else(|_| panic!("SQN is hex:\n{db}"));
    assert!(exported >= 0x21, "the AKA card's SQN_HE after one vector:\n{db}");
    let prime_line = milenage_line(&db, &aka_prime).unwrap_or_else(|| panic!("no line for the AKA' card:\n{db}"));
    assert_eq!(prime_line[3..], ["8000", "000000000000"], "AKA' needs the AMF separation bit:\n{db}");
    assert!(milenage_line(&db, &blocked).is_none(), "a blocked card was exported:\n{db}");

    let run_dir = server.scratch("hostapd-run");
    let hostapd = Hostapd::start(&hostapd_bin, &export, &run_dir, "hostapd-test-secret");
    // Its own traffic is judged too (not eapay's: no Message-Authenticator rule).
    let _hostapd_capture = eapay_tests::capture::Capture::start(
        vec![eapay_tests::capture::RadiusPort {
            port: hostapd.port,
            secret: "hostapd-test-secret".into(),
            eapay: false,
        }],
        Vec::new(),
    );
    assert!(Path::new(&format!("/proc/{}/stat", hostapd.pid)).exists(), "hostapd pid {} is not running", hostapd.pid);

    // The AKA card as it is after the payment (eapol_test's USIM simulator
    // keeps no state: its SQN comes from the configuration).
    let after_payment = server.scratch("aka-after-payment.conf");
    let seen = UsimPassword { sqn: "000000000021".to_owned(), ..password.clone() };
    write_usim_password(&aka.eapol_conf, &after_payment, &seen);
    assert_eapol_success(&hostapd.eapol_test(&eapol, &after_payment), "AKA card", &hostapd);
    assert_eapol_success(&hostapd.eapol_test(&eapol, &aka_prime.eapol_conf), "AKA' card", &hostapd);
    // The SIM card: hlr_auc_gw makes its triplets with GSM-Milenage from the
    // same K/OPc line, eapol_test's SIM simulator answers with GSM-Milenage.
    assert_eapol_success(&hostapd.eapol_test(&eapol, &sim.eapol_conf), "SIM card", &hostapd);

    // With AT_RESULT_IND the card gets hostapd's protected success notification.
    let conf = std::fs::read_to_string(&aka_prime.eapol_conf).expect("conf");
    let result_ind = server.scratch("aka-prime-result-ind.conf");
    std::fs::write(&result_ind, conf.replace("\tpassword=", "\tphase1=\"result_ind=1\"\n\tpassword=")).expect("write");
    let out = hostapd.eapol_test(&eapol, &result_ind);
    assert_eapol_success(&out, "AKA' card with result_ind=1", &hostapd);
    assert!(
        out.stdout.contains("EAP-AKA: Successful authentication notification"),
        "no protected success notification\n{}",
        out.tail(40)
    );

    // The blocked card is unknown to hlr_auc_gw: rejected.
    let out = hostapd.eapol_test(&eapol, &blocked.eapol_conf);
    assert!(!out.success(), "the blocked card authenticated at hostapd\n{}", out.tail(30));

    let stopped = hostapd.stop();
    assert!(stopped.success() && stopped.stdout.contains("stopped hostapd"), "{}", stopped.tail(10));
    // hostapd asks hlr_auc_gw by the first 18 characters of the card id, and
    // no card needed a resynchronisation (the exported SQNs were current).
    let hlr = hostapd.log("hlr_auc_gw.log");
    for card in [&aka, &aka_prime] {
        let request = format!("Received: AKA-REQ-AUTH {}", &card.card_id[..18]);
        assert!(hlr.contains(&request), "no `{request}` in hlr_auc_gw.log:\n{hlr}");
    }
    let request = format!("Received: SIM-REQ-AUTH {}", &sim.card_id[..18]);
    assert!(hlr.contains(&request), "no `{request}` in hlr_auc_gw.log:\n{hlr}");
    assert!(!hlr.contains("AKA-AUTS"), "a card had to resynchronise:\n{hlr}");
}

#[test]
fn bulk_issue_writes_one_card_file_per_card_and_lists_them() {
    let server = Server::start_default();
    let _capture = server.capture();
    let dir = server.scratch("bulk cards");
    let config = server.config.to_str().expect("utf-8");
    let dir_arg = dir.to_str().expect("utf-8");
    let started = std::time::Instant::now();
    let out = eapay_tests::run_server_command(&[
        "card",
        "issue",
        "--config",
        config,
        "--method",
        "aka-prime",
        "--count",
        "1000",
        "--card-dir",
        dir_arg,
        "--limit",
        "1000",
        "--currency",
        "EUR",
        "--confirmation",
        "optional",
    ]);
    let took = started.elapsed();
    assert!(out.stdout.starts_with("issued 1000 aka-prime cards -> "), "{}", out.tail(5));
    assert_eq!(mode(&dir), 0o700, "the card directory holds keys");

    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("card dir") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).expect("card file");
        let card: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let id = card["card_id"].as_str().expect("card_id").to_owned();
        assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(format!("{id}.json").as_str()));
        assert_eq!(card["method"], "aka-prime");
        assert_eq!(card["identity"], format!("6{id}@{}", server.realm));
        assert_eq!(card["aka"]["k"].as_str().map(str::len), Some(32), "{text}");
        assert_eq!(mode(&path), 0o600, "{} holds keys", path.display());
        ids.push(id);
    }
    assert_eq!(ids.len(), 1000, "card files in {}", dir.display());

    let list = server.admin(&["card", "list"]);
    let rows: Vec<&str> = list.lines().filter(|l| l.contains("aka-prime")).collect();
    assert_eq!(rows.len(), 1000, "card list:\n{}", eapay_tests::last_lines(&list, 5));
    for id in &ids {
        let row = rows.iter().find(|r| r.split_whitespace().next() == Some(id.as_str()));
        let row = row.unwrap_or_else(|| panic!("card list has no row for {id}"));
        assert!(row.contains("active") && row.contains("optional") && row.contains("10.00 EUR"), "{row}");
    }
    let out = server.admin(&["card", "export", "--format", "hostapd", "--method", "aka-prime", "--out", dir_arg]);
    assert!(out.contains("exported 1000 aka-prime cards"), "{out}");
    eprintln!("bulk issue of 1000 cards took {took:?} (debug build, SQLite)");

    // Wrong combinations: one line on stderr, non-zero exit, nothing issued.
    let bad: [&[&str]; 5] = [
        &["--card-file", "x.json", "--count", "3"],
        &["--card-file", "x.json", "--card-dir", dir_arg],
        &["--card-dir", dir_arg],
        &["--count", "3"],
        &["--card-dir", dir_arg, "--count", "0"],
    ];
    for args in bad {
        let mut all = vec!["card", "issue", "--method", "aka"];
        all.extend_from_slice(args);
        let out = server.try_admin(&all);
        assert!(
            !out.success() && out.stderr.lines().count() == 1 && out.stdout.is_empty(),
            "`card issue {}` must fail with one line:\n{}",
            args.join(" "),
            out.tail(5)
        );
    }
    assert_eq!(server.admin(&["card", "list"]).lines().count(), 1001, "a refused bulk issue issued cards");
}

#[test]
fn aka_cards_do_not_export_to_freeradius() {
    let server = Server::start_default();
    let _capture = server.capture();
    server.card(Method::Aka);
    let out_dir = server.scratch("freeradius-export");
    for extra in [&[][..], &["--method", "aka"][..], &["--method", "aka-prime"][..]] {
        let mut args = vec!["card", "export", "--format", "freeradius", "--out", out_dir.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        let out = server.try_admin(&args);
        assert!(!out.success(), "export to FreeRADIUS succeeded:\n{}", out.tail(5));
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].contains("FreeRADIUS 3.2 has no EAP-AKA"),
            "want one line saying FreeRADIUS 3.2 has no EAP-AKA:\n{}",
            out.tail(5)
        );
    }
    assert!(!out_dir.exists(), "a refused export wrote {}", out_dir.display());
}
