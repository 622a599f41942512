//! `eapay-card serve` as a process: the listening line, a payment over TCP,
//! bad input from the terminal, signals.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aaa_proto::card_link::{connect, CardLink, LinkAddress};
use aaa_proto::eapol::Frame;
use common::*;
use e_card::card_file::CardFile;

struct Card {
    child: Child,
    lines: mpsc::Receiver<String>,
    address: LinkAddress,
    _dir: tempfile::TempDir,
    file: PathBuf,
}

fn write_card(dir: &Path) -> PathBuf {
    let path = dir.join("card.json");
    std::fs::write(&path, card_file("aka").to_json()).unwrap();
    // As `eapay-server card issue` leaves it.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

/// Starts `eapay-card serve` on a fresh card file and waits for the
/// listening line.
fn start(listen: &str, extra: &[&str]) -> Card {
    let dir = tempfile::tempdir().unwrap();
    let file = write_card(dir.path());
    let listen = listen.replace("$DIR", &dir.path().display().to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_eapay-card"))
        .args(["serve", "--card-file"])
        .arg(&file)
        .args(["--listen", &listen])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("the listening line");
    let address = first.strip_prefix("card c0ffee listening on ").unwrap_or_else(|| panic!("{first:?}"));
    let address: LinkAddress = address.parse().unwrap();
    Card { child, lines, address, _dir: dir, file }
}

impl Card {
    /// Waits for the process to exit; returns its status and stderr.
    fn exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "eapay-card did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status, stderr)
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("a line on stdout")
    }

    fn tcp(&self) -> std::net::TcpStream {
        let LinkAddress::Tcp(a) = &self.address else { panic!("not TCP") };
        std::net::TcpStream::connect(a).unwrap()
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one line a failed run leaves on stderr.
fn one_error_line(stderr: &str) -> &str {
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("eapay-card: "), "{stderr}");
    lines[0]
}

#[test]
fn garbage_from_the_terminal_is_one_error_line_and_exit_2() {
    let cases: [(&[u8], &str); 3] = [
        (&[0xff, 0x00, 0x00, 0x00], "card link: EAPOL version 255 is not supported"),
        (&[2, 0, 0xff, 0xff], "card link: frame body of 65535 bytes exceeds the 4096-byte limit"),
        (&[2, 0x33, 0, 0], "card link: EAPOL frame type 51 is not used on the card link"),
    ];
    for (bytes, message) in cases {
        let mut card = start("127.0.0.1:0", &["--once"]);
        let mut tcp = card.tcp();
        tcp.write_all(bytes).unwrap();
        let (status, stderr) = card.exit();
        assert_eq!(status.code(), Some(2), "{stderr}");
        let line = one_error_line(&stderr);
        assert!(line.starts_with("eapay-card: terminal 127.0.0.1:"), "{line}");
        assert!(line.ends_with(message), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_frame_is_a_protocol_error() {
    let mut card = start("tcp://127.0.0.1:0", &["--once"]);
    let mut link = connect(&card.address).await.unwrap();
    link.send(Frame::Start).await.unwrap();
    let (status, stderr) = tokio::task::block_in_place(|| card.exit());
    assert_eq!(status.code(), Some(2));
    let line = one_error_line(&stderr);
    assert!(
        line.ends_with(
            "protocol error: the terminal sent EAPOL-Start while the card waited for payment details or an EAP request"
        ),
        "{line}"
    );
}

#[test]
fn a_terminal_that_leaves_without_paying_fails_once() {
    let mut card = start("127.0.0.1:0", &["--once"]);
    drop(card.tcp());
    let (status, stderr) = card.exit();
    assert_eq!(status.code(), Some(2));
    assert!(one_error_line(&stderr).ends_with("ended the session before any payment"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_over_tcp_prints_what_the_holder_sees_and_keeps_the_sqn() {
    let mut card = start("127.0.0.1:0", &["--once"]);
    let mut link = connect(&card.address).await.unwrap();
    let mut issuer = Issuer::new();
    let saw = terminal(&mut link, &mut issuer, &Plan::pay(details("T-1", 1250))).await;
    assert_eq!(saw.accepted, Some(true));
    drop(link);
    assert_eq!(card.line(), "confirm 12.50 USD to M-DEMO, transaction T-1? accepted");
    assert_eq!(card.line(), "issuer APPROVED 12.50 USD, approval code ABC123; terminal displays the same");
    let (status, stderr) = tokio::task::block_in_place(|| card.exit());
    assert!(status.success(), "{stderr}");
    assert_eq!(CardFile::load(&card.file).unwrap().aka.unwrap().sqn, issuer.sqn.value());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_declines_over_a_unix_socket() {
    let mut card = start("unix:$DIR/card.sock", &["--max-amount", "100.00"]);
    assert!(matches!(card.address, LinkAddress::Unix(_)));
    let mut issuer = Issuer::new();
    let mut link = connect(&card.address).await.unwrap();
    let saw = terminal(&mut link, &mut issuer, &Plan::pay(details("T-2", 10_001))).await;
    assert_eq!(saw.consent, Some(false));
    let plan = Plan { decision: Decision::Decline(51), ..Plan::pay(details("T-3", 10_000)) };
    let saw = terminal(&mut link, &mut issuer, &plan).await;
    assert_eq!(saw.accepted, Some(false));
    drop(link);
    assert_eq!(card.line(), "confirm 100.01 USD to M-DEMO, transaction T-2? refused");
    assert_eq!(card.line(), "confirm 100.00 USD to M-DEMO, transaction T-3? accepted");
    assert_eq!(card.line(), "issuer DECLINED 51 (Insufficient-Funds); terminal displays the same");
    // Without --once the card waits for the next terminal; SIGTERM stops it cleanly.
    let pid = card.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (status, stderr) = tokio::task::block_in_place(|| card.exit());
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_card_file_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("card.json");
    std::fs::write(&file, "{\"version\": 1}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eapay-card"))
        .args(["serve", "--card-file"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(one_error_line(&stderr).contains("not a card file"), "{stderr}");
    assert!(out.stdout.is_empty());
}
