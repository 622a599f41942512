//! The README's first command (`cargo run -p eapay-demo`) and the payment
//! server's zero-config mode (`eapay-server` without arguments), on a fresh
//! `./eapay-data`; and the server binary carrying no card.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eapay_tests::{repo_root, run_with_timeout, server_bin, workspace_bin};

/// A long-running process, SIGKILLed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` in `dir` and collects its stdout until a line contains
/// `until` (or 60 s pass); returns the lines so far.
fn run_until(program: &Path, dir: &Path, until: &str) -> (Running, Vec<String>) {
    let mut child = Command::new(program)
        .current_dir(dir)
        .env("EAPAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let done = line.contains(until);
        lines.push(line);
        if done {
            break;
        }
    }
    (running, lines)
}

/// A fresh directory whose `./eapay-data` is configured on ephemeral ports,
/// so the demo can run beside other tests (a newcomer gets 1812, 1813, 3868).
fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("eapay-demo-").tempdir().expect("temp dir");
    let mut init = Command::new(server_bin());
    init.current_dir(dir.path()).args([
        "init",
        "--data-dir",
        "eapay-data",
        "--radius-listen",
        "127.0.0.1:0",
        "--diameter-listen",
        "127.0.0.1:0",
    ]);
    let out = run_with_timeout(init, None, Duration::from_secs(60));
    assert!(out.success(), "{}", out.all());
    dir
}

#[test]
fn the_demo_pays_through_a_terminal_and_the_card_sees_the_approval() {
    let dir = demo_dir();
    let (_demo, lines) = run_until(&workspace_bin("eapay-demo"), dir.path(), "demo payment:");
    let all = lines.join("\n");
    let payment = lines.iter().find(|l| l.starts_with("demo payment:")).unwrap_or_else(|| panic!("no payment:\n{all}"));
    assert!(payment.contains("APPROVED 12.50 USD at M-DEMO, approval code "), "{payment}");
    assert!(payment.contains("the card confirmed the amount and received the same approval"), "{payment}");
    assert!(all.contains("listening radius auth") && all.contains("listening diameter"), "{all}");
    for card in ["demo-aka.json", "demo-tls.json", "demo-card.json", "demo-aka.eapol.conf"] {
        assert!(dir.path().join("eapay-data/cards").join(card).is_file(), "{card} issued");
    }
}

#[test]
fn the_server_alone_serves_the_demo_and_says_how_to_pay() {
    let dir = demo_dir();
    let (_server, lines) = run_until(&server_bin(), dir.path(), "listening radius acct");
    let all = lines.join("\n");
    assert!(all.contains("eapay-terminal pay --server 127.0.0.1:"), "{all}");
    assert!(all.contains("eapay-terminal pay --protocol diameter --server 127.0.0.1:"), "{all}");
    assert!(all.contains("demo-card.json"), "{all}");
    assert!(lines.last().is_some_and(|l| l.starts_with("listening radius acct 127.0.0.1:")), "{all}");
}

/// The symbols of a binary that come from the card side: the e-card and
/// nas-terminal crates and eap-methods' peer state machines.
fn card_symbols(binary: &Path) -> Vec<String> {
    let mut nm = Command::new("nm");
    nm.args(["--demangle", "--defined-only"]).arg(binary);
    let out = run_with_timeout(nm, None, Duration::from_secs(60));
    assert!(out.success(), "nm {}: {}", binary.display(), out.all());
    let card_paths = ["e_card::", "nas_terminal::", "eap_methods::peer::", "eap_methods::sim_aka::aka::peer::"];
    let card_paths = card_paths.iter().chain(&["eap_methods::tls::peer::", "eap_methods::ttls::peer::"]);
    let starts = |symbol: &str, path: &str| {
        symbol.match_indices(path).any(|(i, _)| {
            i == 0 || !symbol.as_bytes()[i - 1].is_ascii_alphanumeric() && symbol.as_bytes()[i - 1] != b'_'
        })
    };
    out.stdout
        .lines()
        .filter_map(|l| l.splitn(3, ' ').nth(2))
        .filter(|symbol| card_paths.clone().any(|path| starts(symbol, path)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_payment_server_links_no_card_code() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut tree = Command::new(cargo);
    tree.current_dir(repo_root()).args(["tree", "--offline", "-p", "aaa-server", "-e", "normal", "--prefix", "none"]);
    let out = run_with_timeout(tree, None, Duration::from_secs(120));
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("eapay-card-file"), "{}", out.stdout);
    for forbidden in ["e-card", "nas-terminal"] {
        assert!(
            !out.stdout.lines().any(|l| l.split_whitespace().next() == Some(forbidden)),
            "{forbidden} is linked into the payment server:\n{}",
            out.stdout
        );
    }
    let in_server = card_symbols(&server_bin());
    assert!(in_server.is_empty(), "card code in eapay-server: {:?}", &in_server[..in_server.len().min(10)]);
    // The check can fail: the demo, which plays the card, has such symbols.
    assert!(!card_symbols(&workspace_bin("eapay-demo")).is_empty(), "eapay-demo must show card symbols");
}
