//! End-to-end harness for eapay-server interop tests.
//!
//! Every test starts its own server ([`Server::start`]) in its own temporary
//! data directory, on ephemeral ports, so tests are independent and can run
//! in parallel (cargo test threads or nextest processes). A server shared
//! per test file through a static would not be shared under nextest (one
//! process per test) and would never be stopped (statics are not dropped);
//! starting one takes a few tens of milliseconds, so related scenarios are
//! grouped into one test instead.
//!
//! External tools (eapol_test, radclient) are optional locally: a test that
//! needs a missing tool prints `SKIP: ...` and returns. With
//! `EAPAY_REQUIRE_INTEROP=1` (CI, `.ci/run`) a missing tool is a failure.
//!
//! Payments are relayed by [`relay_payment`]: the real card (e-card's EAP
//! peer, confirming the payment inside EAP-AKA/AKA') on one side, raw RADIUS
//! datagrams to the server on the other, so a test controls every byte the
//! terminal sends (tampering, retransmission, attributes per round).
//!
//! Binaries come from `EAPAY_BIN_DIR`, or from the cargo profile directory
//! this test executable was built in (`target/debug/`). Build them first with
//! `cargo build --workspace --bins` (`scripts/test` does).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aaa_proto::dictionary::eapay::{self, CardConfirmation, DeclineCode, SettlementAction};
use aaa_proto::dictionary::{microsoft, rfc};
use aaa_proto::payment::{is_approval_code, PaymentDetails, PaymentOutcome, PaymentResult};
use aaa_proto::radius::{decrypt_mppe_key, encode_request, verify_response_to, Attribute, Code, Packet};
use aaa_proto::receipt::IssuerPublicKey;
use e_card::card_file::CardFile;
use eap_methods::peer::{PeerEvent, PeerSession};

pub mod capture;
pub mod eapol;
pub mod metrics;
pub mod proxy;
pub mod radsec;
pub mod reconcile;
pub mod terminal;

/// How long `serve` may take to print both listening lines.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for a reply that must come (loopback, 2-core CI).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to listen before concluding that a packet was dropped.
pub const NO_REPLY_WAIT: Duration = Duration::from_millis(1500);
/// Upper bound for one eapol_test / radclient run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------

/// The repository root (this crate lives in `<repo>/tests`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where the workspace binaries are: `EAPAY_BIN_DIR`, else the profile
/// directory of this executable: a test's (`target/debug/deps/x` ->
/// `target/debug`) or a workspace binary's that uses this harness
/// (`target/debug/payment-schemes` -> `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EAPAY_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the executable has a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary; panics with instructions when it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found (looked in {}; set EAPAY_BIN_DIR to override). \
             Build the binaries first: `cargo build --workspace --bins` (scripts/test does this).",
            name,
            bin_dir().display()
        );
    }
    path
}

/// The eapay-server binary.
pub fn server_bin() -> PathBuf {
    workspace_bin("eapay-server")
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// eapol_test with the USIM simulator: `EAPOL_TEST`, else
/// `$EAPAY_TOOLS_DIR/bin/eapol_test`, else `<repo>/.tools/bin/eapol_test`
/// (where `scripts/build-eapol-test.sh` installs it).
pub fn eapol_test() -> Option<PathBuf> {
    let path = env_path("EAPOL_TEST").unwrap_or_else(|| {
        env_path("EAPAY_TOOLS_DIR").unwrap_or_else(|| repo_root().join(".tools")).join("bin").join("eapol_test")
    });
    path.is_file().then_some(path)
}

/// FreeRADIUS's server binary: `FREERADIUS`, else `freeradius` (Debian's
/// name) or `radiusd` in PATH or /usr/sbin.
pub fn freeradius() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FREERADIUS").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    ["freeradius", "radiusd"]
        .into_iter()
        .find_map(|name| find_in_path(name).or_else(|| Some(Path::new("/usr/sbin").join(name)).filter(|p| p.is_file())))
}

/// radsecproxy: `RADSECPROXY`, else `radsecproxy` in PATH or /usr/sbin
/// (Debian installs it there).
pub fn radsecproxy() -> Option<PathBuf> {
    if let Some(path) = env_path("RADSECPROXY") {
        return Some(path).filter(|p| p.is_file());
    }
    find_in_path("radsecproxy").or_else(|| Some(PathBuf::from("/usr/sbin/radsecproxy")).filter(|p| p.is_file()))
}

/// FreeRADIUS `radclient` from PATH.
pub fn radclient() -> Option<PathBuf> {
    find_in_path("radclient")
}

/// The first executable file called `name` in PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// `EAPAY_REQUIRE_INTEROP=1`: a missing tool is a failure, not a skip.
pub fn interop_required() -> bool {
    std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1")
}

fn current_test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .or_else(|| std::env::args().skip(1).find(|a| !a.starts_with('-')))
        .unwrap_or_else(|| "this test".to_owned())
}

/// Returns the tool, or (tool missing) panics under
/// `EAPAY_REQUIRE_INTEROP=1` and otherwise prints a SKIP line and returns
/// `None`, in which case the test returns early.
pub fn require_tool(name: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    let install = match name {
        "eapol_test" => "run scripts/build-eapol-test.sh, or set EAPOL_TEST / EAPAY_TOOLS_DIR",
        "radclient" => "apt-get install freeradius-utils",
        "freeradius" => "apt-get install freeradius, or set FREERADIUS",
        "hostapd" => "run scripts/build-hostapd.sh",
        "radsecproxy" => "apt-get install radsecproxy, or set RADSECPROXY",
        "cc" => "apt-get install gcc (builds scripts/sslkeylog.c)",
        _ => "install it",
    };
    if interop_required() {
        panic!("{name} is required in CI (EAPAY_REQUIRE_INTEROP=1) but was not found: {install}");
    }
    // Straight to the stderr handle: libtest's capture only covers the
    // print macros, so the skip shows up in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "SKIP: {} needs {name} ({install})", current_test_name());
    None
}

// ---------------------------------------------------------------------------
// Running processes with a deadline
// ---------------------------------------------------------------------------

/// Exit status and captured output of a finished tool run.
#[derive(Debug)]
pub struct ToolOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout followed by stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The last `n` lines of stdout and stderr, for assertion messages.
    pub fn tail(&self, n: usize) -> String {
        fn last(s: &str, n: usize) -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        format!(
            "$ {}\nexit: {}\n--- stdout (last {n} lines) ---\n{}\n--- stderr (last {n} lines) ---\n{}",
            self.command,
            self.status,
            last(&self.stdout, n),
            last(&self.stderr, n)
        )
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn drain<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `cmd` with `stdin` fed in, output captured, killed (and the test
/// failed) after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> ToolOutput {
    let command = describe(&cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).unwrap_or_else(|e| panic!("writing stdin of `{command}`: {e}"));
    }
    let out = drain(child.stdout.take().expect("stdout pipe"));
    let err = drain(child.stderr.take().expect("stderr pipe"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!("`{command}` did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ToolOutput {
        command,
        status,
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// EAP methods a card can be issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Sim,
    Aka,
    AkaPrime,
    Tls,
    Ttls,
}

impl Method {
    /// The `card issue --method` argument (also the Eapay-Auth-Method value).
    pub fn arg(self) -> &'static str {
        match self {
            Method::Sim => "sim",
            Method::Aka => "aka",
            Method::AkaPrime => "aka-prime",
            Method::Tls => "tls",
            Method::Ttls => "ttls",
        }
    }

    /// The EAP type number (RFC 4186 / RFC 4187 / RFC 5448).
    pub fn eap_type(self) -> u8 {
        match self {
            Method::Sim => 18,
            Method::Aka => 23,
            Method::AkaPrime => 50,
            Method::Tls => 13,
            Method::Ttls => 21,
        }
    }
}

/// One issued card.
#[derive(Debug, Clone)]
pub struct Card {
    pub method: Method,
    /// The random card id (`card_id` of the card file; `card block ID`).
    pub card_id: String,
    /// `card issue --card-file`.
    pub json: PathBuf,
    /// `card issue --eapol-test`: the eapol_test network configuration.
    pub eapol_conf: PathBuf,
    /// The permanent NAI from the card file.
    pub identity: String,
}

impl Card {
    /// The card file, as the card (e-card) reads it.
    pub fn file(&self) -> CardFile {
        CardFile::load(&self.json).unwrap_or_else(|e| panic!("loading {}: {e}", self.json.display()))
    }
}

/// A running `eapay-server serve` with its own data directory. The process
/// is killed when this is dropped.
pub struct Server {
    child: Mutex<Child>,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    /// The Diameter listener (`init` configures one on an ephemeral port).
    pub diameter: Option<SocketAddr>,
    /// The metrics endpoint (likewise).
    pub metrics: Option<SocketAddr>,
    /// RADIUS over TLS, when the test configures `[radius.tls]`.
    pub radsec: Option<SocketAddr>,
    /// Diameter over TLS, when the test configures `[diameter.tls]`.
    pub diameter_tls: Option<SocketAddr>,
    pub realm: String,
    pub secret: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    cards: AtomicUsize,
    // Last: removed after the child is killed.
    dir: tempfile::TempDir,
}

/// Runs `eapay-server ARGS` to completion; panics with its stderr on failure.
pub fn run_server_command(args: &[&str]) -> ToolOutput {
    let out = try_server_command(args);
    if !out.success() {
        panic!("eapay-server command failed:\n{}", out.tail(40));
    }
    out
}

/// Runs `eapay-server ARGS` to completion, whatever its exit status.
pub fn try_server_command(args: &[&str]) -> ToolOutput {
    let mut cmd = Command::new(server_bin());
    cmd.args(args);
    run_with_timeout(cmd, None, Duration::from_secs(60))
}

fn spawn_line_reader(stdout: ChildStdout, keep: Arc<Mutex<Vec<String>>>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            keep.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
            // The receiver is gone once startup is over; keep draining.
            let _ = tx.send(line);
        }
    });
    rx
}

fn spawn_stderr_reader<R: Read + Send + 'static>(mut stderr: R, keep: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => keep.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]),
            }
        }
    });
}

fn parse_listening(line: &str, what: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening ")?.strip_prefix(what)?;
    rest.trim().parse().ok()
}

/// Where a running server listens.
struct Listening {
    auth: SocketAddr,
    acct: SocketAddr,
    /// Announced before the RADIUS lines when `[diameter]` is configured.
    diameter: Option<SocketAddr>,
    /// Likewise when `[metrics]` is.
    metrics: Option<SocketAddr>,
    /// Likewise when `[radius.tls]` is.
    radsec: Option<SocketAddr>,
    /// Likewise when `[diameter.tls]` is.
    diameter_tls: Option<SocketAddr>,
}

/// Runs `serve --config CONFIG` until it prints both RADIUS listening lines
/// (the Diameter one comes first); its output is appended to `stdout` / `stderr`.
fn spawn_serve(config: &Path, stdout: &Arc<Mutex<Vec<String>>>, stderr: &Arc<Mutex<Vec<u8>>>) -> (Child, Listening) {
    try_spawn_serve(config, stdout, stderr).unwrap_or_else(|why| panic!("{why}"))
}

/// [`spawn_serve`], with the reason (the command, its output) when the
/// server did not come up.
fn try_spawn_serve(
    config: &Path,
    stdout: &Arc<Mutex<Vec<String>>>,
    stderr: &Arc<Mutex<Vec<u8>>>,
) -> Result<(Child, Listening), String> {
    let mut cmd = Command::new(server_bin());
    cmd.arg("serve").arg("--config").arg(config).env("RUST_BACKTRACE", "1");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let command = describe(&cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    spawn_stderr_reader(child.stderr.take().expect("stderr pipe"), stderr.clone());
    let lines = spawn_line_reader(child.stdout.take().expect("stdout pipe"), stdout.clone());

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let (mut auth, mut acct, mut diameter, mut metrics, mut radsec, mut diameter_tls) =
        (None, None, None, None, None, None);
    let failure = loop {
        if auth.is_some() && acct.is_some() {
            break None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                auth = auth.or_else(|| parse_listening(&line, "radius auth"));
                acct = acct.or_else(|| parse_listening(&line, "radius acct"));
                diameter = diameter.or_else(|| parse_listening(&line, "diameter"));
                metrics = metrics.or_else(|| parse_listening(&line, "metrics"));
                radsec = radsec.or_else(|| parse_listening(&line, "radius tls"));
                diameter_tls = diameter_tls.or_else(|| parse_listening(&line, "diameter tls"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Some(format!("no `listening radius auth/acct` lines within {STARTUP_TIMEOUT:?}"));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the process is exiting.
                let status = wait_briefly(&mut child);
                break Some(format!("server closed stdout before listening ({status})"));
            }
        }
    };
    if let Some(why) = failure {
        let _ = child.kill();
        let _ = child.wait();
        // Let the reader threads collect what is left.
        std::thread::sleep(Duration::from_millis(100));
        return Err(format!(
            "`{command}`: {why}\n--- server stdout ---\n{}\n--- server stderr ---\n{}",
            stdout.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
            String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner())),
        ));
    }
    Ok((
        child,
        Listening {
            auth: auth.expect("auth address"),
            acct: acct.expect("acct address"),
            diameter,
            metrics,
            radsec,
            diameter_tls,
        },
    ))
}

/// Reads a TOML file, lets `edit` change it, writes it back.
pub fn edit_toml(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{} is not TOML: {e}\n{text}", path.display()));
    edit(&mut table);
    let text = toml::to_string_pretty(&table).expect("serialise TOML");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The `[name]` table of a configuration, created if absent.
pub fn section<'t>(config: &'t mut toml::Table, name: &str) -> &'t mut toml::Table {
    config
        .entry(name)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap_or_else(|| panic!("[{name}] is not a table"))
}

impl Server {
    /// A server for realm `issuer.test` with a per-test secret.
    pub fn start_default() -> Server {
        Server::start("issuer.test", "eapay-test-secret")
    }

    /// `init` a fresh data directory (RADIUS on 127.0.0.1:0) and run `serve`
    /// until it prints both listening lines.
    pub fn start(realm: &str, secret: &str) -> Server {
        Server::start_with(realm, secret, |_| {})
    }

    /// [`Server::start_default`] with `[payment]` settings changed before
    /// `serve`, e.g. `&[("velocity_max", 2)]`.
    pub fn start_with_payment(settings: &[(&str, i64)]) -> Server {
        Server::start_with("issuer.test", "eapay-test-secret", |config| {
            let payment = section(config, "payment");
            for (key, value) in settings {
                payment.insert((*key).to_owned(), toml::Value::Integer(*value));
            }
        })
    }

    /// Like [`Server::start`], with `edit` applied to the `eapay.toml` that
    /// `init` wrote, before `serve`.
    pub fn start_with(realm: &str, secret: &str, edit: impl FnOnce(&mut toml::Table)) -> Server {
        Server::start_prepared(realm, secret, |config_path| edit_toml(config_path, edit))
    }

    /// Like [`Server::start`], running `prepare(config path)` between `init`
    /// and `serve` (edit the configuration, run admin commands).
    /// [`Server::start_default`] on the ledger at `url` (a scratch PostgreSQL
    /// database), with the demo merchant registered there: `init` put it
    /// only in its own SQLite ledger.
    pub fn start_on_ledger(url: &str) -> Server {
        Server::start_prepared("issuer.test", "eapay-test-secret", |config| {
            edit_toml(config, |c| {
                section(c, "ledger").insert("url".to_owned(), toml::Value::String(url.to_owned()));
            });
            let c = config.to_str().expect("utf-8 path");
            let listed = run_server_command(&["merchant", "list", "--config", c]);
            if !listed.stdout.contains(MERCHANT) {
                run_server_command(&["merchant", "add", MERCHANT, "--client", "demo-terminal", "--config", c]);
            }
        })
    }

    pub fn start_prepared(realm: &str, secret: &str, prepare: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::Builder::new().prefix("eapay-test-").tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let data = data_dir.to_str().expect("utf-8 temp path");
        run_server_command(&[
            "init",
            "--data-dir",
            data,
            "--realm",
            realm,
            "--radius-secret",
            secret,
            "--radius-listen",
            "127.0.0.1:0",
            "--diameter-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        let config = data_dir.join("eapay.toml");
        assert!(config.is_file(), "`eapay-server init` did not write {}", config.display());
        prepare(&config);
        Server::serve(config, data_dir, realm, secret, dir)
    }

    /// Runs `serve` on `config` until it prints its listening lines; `dir`
    /// (which holds what belongs to this instance) lives as long as it.
    fn serve(config: PathBuf, data_dir: PathBuf, realm: &str, secret: &str, dir: tempfile::TempDir) -> Server {
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (child, listening) = spawn_serve(&config, &stdout, &stderr);
        Server {
            child: Mutex::new(child),
            auth: listening.auth,
            acct: listening.acct,
            diameter: listening.diameter,
            metrics: listening.metrics,
            radsec: listening.radsec,
            diameter_tls: listening.diameter_tls,
            realm: realm.to_owned(),
            secret: secret.to_owned(),
            config,
            data_dir,
            stderr,
            stdout,
            cards: AtomicUsize::new(0),
            dir,
        }
    }

    /// SIGKILL (std's `Child::kill` on Unix): no shutdown code runs, nothing
    /// buffered is flushed. Waits until the process is gone.
    pub fn kill9(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(Some(status)) = child.try_wait() {
            panic!("eapay-server had already exited ({status}) before SIGKILL\n{}", self.stderr());
        }
        child.kill().expect("SIGKILL eapay-server");
        let status = child.wait().expect("wait for eapay-server");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "eapay-server did not die of SIGKILL: {status}"
        );
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b"\n--- killed with SIGKILL ---\n");
    }

    /// Runs `serve` again with the same configuration and data directory
    /// (after [`Server::kill9`]); the ports are new ephemeral ones, unless
    /// [`Server::pin_ports`] wrote the current ones into the configuration.
    /// A pinned port that another process took in between (nothing holds it
    /// while the server is down) is tried again for a few seconds.
    pub fn restart(&mut self) {
        {
            let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let (child, listening) = loop {
            match try_spawn_serve(&self.config, &self.stdout, &self.stderr) {
                Ok(up) => break up,
                Err(why) if Instant::now() < deadline && why.contains("Address already in use") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(why) => panic!("{why}"),
            }
        };
        *self.child.get_mut().unwrap_or_else(|e| e.into_inner()) = child;
        self.auth = listening.auth;
        self.acct = listening.acct;
        self.diameter = listening.diameter;
        self.metrics = listening.metrics;
        self.radsec = listening.radsec;
        self.diameter_tls = listening.diameter_tls;
    }

    /// A scrape of the server's `/metrics`.
    pub fn scrape(&self) -> metrics::Scrape {
        metrics::scrape(self.metrics.expect("the test server serves metrics (init --metrics-listen)"))
    }

    /// Writes the addresses the server listens on now into its
    /// configuration, so that [`Server::restart`] comes back on the same
    /// ports and a terminal started before a restart reaches the new process.
    pub fn pin_ports(&self) {
        edit_toml(&self.config, |config| {
            let radius = section(config, "radius");
            radius.insert("auth_listen".to_owned(), toml::Value::String(self.auth.to_string()));
            radius.insert("acct_listen".to_owned(), toml::Value::String(self.acct.to_string()));
            if let Some(diameter) = self.diameter {
                section(config, "diameter").insert("listen".to_owned(), toml::Value::String(diameter.to_string()));
            }
        });
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Everything the server wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Panics (with the server's stderr) if the process has exited.
    pub fn assert_running(&self) {
        let status = self.child.lock().unwrap_or_else(|e| e.into_inner()).try_wait().expect("try_wait");
        if let Some(status) = status {
            panic!("eapay-server exited ({status})\n--- server stderr ---\n{}", self.stderr());
        }
    }

    /// Issues an `optional` card (a standard peer such as eapol_test may pay
    /// with it without confirming); returns (card file, eapol_test configuration).
    pub fn issue_card(&self, method: Method) -> (PathBuf, PathBuf) {
        let card = self.card(method);
        (card.json, card.eapol_conf)
    }

    /// Issues a `--confirmation optional` card and reads its identity.
    pub fn card(&self, method: Method) -> Card {
        self.card_with(method, &["--confirmation", "optional"])
    }

    /// Issues a card with `extra` arguments to `card issue` (`--limit`,
    /// `--currency`, `--expires`, `--confirmation`, ...). Without
    /// `--confirmation` the server's default applies: `required`.
    pub fn card_with(&self, method: Method, extra: &[&str]) -> Card {
        let n = self.cards.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.path();
        let json = dir.join(format!("card-{}-{n}.json", method.arg()));
        let conf = dir.join(format!("card-{}-{n}.conf", method.arg()));
        let config = self.config.to_str().expect("utf-8 path");
        let mut args = vec![
            "card",
            "issue",
            "--config",
            config,
            "--method",
            method.arg(),
            "--card-file",
            json.to_str().expect("utf-8 path"),
            "--eapol-test",
            conf.to_str().expect("utf-8 path"),
        ];
        args.extend_from_slice(extra);
        let out = run_server_command(&args);
        let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("reading {}: {e}", json.display()));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", json.display()));
        let field = |name: &str| {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("{} has no {name:?} string:\n{text}", json.display()))
                .to_owned()
        };
        let (identity, card_id) = (field("identity"), field("card_id"));
        assert!(conf.is_file(), "`card issue --eapol-test` did not write {}", conf.display());
        let expected = format!("issued {} card {card_id} as {identity} -> {}", method.arg(), json.display());
        assert!(
            out.stdout.lines().any(|l| l.trim_end() == expected),
            "`card issue` printed {:?}, want {expected:?}",
            out.stdout
        );
        Card { method, card_id, json, eapol_conf: conf, identity }
    }

    /// Runs an admin command (`card list`, `txn show ID`, ...) with
    /// `--config` of this server, whatever its exit status.
    pub fn try_admin(&self, args: &[&str]) -> ToolOutput {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--config");
        all.push(self.config.to_str().expect("utf-8 path"));
        try_server_command(&all)
    }

    /// [`Server::try_admin`] that must succeed; returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.try_admin(args);
        if !out.success() {
            panic!("admin command failed:\n{}", out.tail(40));
        }
        out.stdout
    }

    /// `txn show MERCHANT:TXN`, which must succeed; its stdout.
    pub fn txn_show(&self, merchant: &str, transaction_id: &str) -> String {
        self.admin(&["txn", "show", &format!("{merchant}:{transaction_id}")])
    }

    /// The fields `txn show` prints for an authorization, without their
    /// values: what two authorizations of the same kind have in common.
    pub fn txn_fields(&self, merchant: &str, transaction_id: &str) -> Vec<String> {
        self.txn_show(merchant, transaction_id)
            .lines()
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// Authorization `txn` (test merchant) is approved with the card's
    /// confirmation and has the same fields as `like` (the same payment made
    /// another way); `what` names the case in the failure message.
    pub fn assert_confirmed_approval_like(&self, txn: &str, like: &str, what: &str) {
        let shown = self.txn_show(MERCHANT, txn).to_lowercase();
        assert!(has_token(&shown, "approved"), "{what}:\n{shown}");
        assert!(has_token(&shown, "confirmed"), "{what}: the card confirmed inside EAP:\n{shown}");
        assert_eq!(self.txn_fields(MERCHANT, like), self.txn_fields(MERCHANT, txn), "{what}: the same ledger record");
    }

    /// A second eapay-server on this one's configuration (its data directory,
    /// KEK and ledger: on PostgreSQL, the two share the ledger), listening on
    /// ports of its own. Stopped when dropped.
    pub fn second_instance(&self) -> Server {
        let dir = tempfile::Builder::new().prefix("eapay-test-second-").tempdir().expect("temp dir");
        let config = dir.path().join("eapay.toml");
        std::fs::copy(&self.config, &config).expect("copy the configuration");
        Server::serve(config, self.data_dir.clone(), &self.realm, &self.secret, dir)
    }

    /// Captures this server's RADIUS and Diameter traffic until the returned
    /// guard is dropped, then has tshark judge it (`capture.rs`). None (with
    /// a `SKIP:` line) where tshark cannot run, unless required.
    pub fn capture(&self) -> Option<capture::Capture> {
        let radius = [self.auth, self.acct]
            .iter()
            .map(|a| capture::RadiusPort { port: a.port(), secret: self.secret.clone(), eapay: true })
            .collect();
        capture::Capture::start(radius, self.diameter.iter().map(SocketAddr::port).collect())
    }

    /// `card block ID`.
    pub fn block(&self, card: &Card) {
        self.admin(&["card", "block", &card.card_id]);
    }

    /// The card's (credit limit, available amount) in minor units, as
    /// `card list` shows them (`5000.00 USD    4987.50 USD`).
    pub fn card_amounts(&self, card: &Card) -> (u64, u64) {
        let list = self.admin(&["card", "list"]);
        let row = list
            .lines()
            .find(|l| l.split_whitespace().next() == Some(card.card_id.as_str()))
            .unwrap_or_else(|| panic!("card list has no row for {}:\n{list}", card.card_id));
        let tokens: Vec<&str> = row.split_whitespace().collect();
        let amounts: Vec<u64> = tokens
            .windows(2)
            .filter_map(|w| {
                let currency = aaa_proto::currency::by_alpha(w[1])?;
                aaa_proto::currency::parse_amount(w[0], currency).ok()
            })
            .collect();
        match amounts.as_slice() {
            [limit, available] => (*limit, *available),
            _ => panic!("card list row does not show a limit and an available amount: {row}"),
        }
    }

    /// The issuer's receipt verification key (`DATA_DIR/issuer.pub`).
    pub fn issuer_key(&self) -> IssuerPublicKey {
        let path = self.data_dir.join("issuer.pub");
        let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        IssuerPublicKey::from_pem(&pem)
            .unwrap_or_else(|e| panic!("{} is not an issuer public key: {e}", path.display()))
    }

    /// Path for a scratch file in this server's temp directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn wait_briefly(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    "still running".to_owned()
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let exited = child.try_wait().ok().flatten();
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() || std::env::var_os("EAPAY_TEST_SERVER_LOG").is_some() {
            let stderr = self.stderr();
            let lines: Vec<&str> = stderr.lines().collect();
            eprintln!(
                "--- eapay-server (auth {}, acct {}, {}) stderr, last 60 lines ---\n{}",
                self.auth,
                self.acct,
                match exited {
                    Some(s) => format!("had exited: {s}"),
                    None => "was running".to_owned(),
                },
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------
// eapol_test configuration editing
// ---------------------------------------------------------------------------

/// The `password="K:OPc:SQN"` of an eapol_test AKA network block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsimPassword {
    pub k: String,
    pub opc: String,
    pub sqn: String,
}

fn password_span(conf: &str) -> Option<(usize, usize)> {
    let key = conf.find("password=\"")?;
    let start = key + "password=\"".len();
    let end = start + conf[start..].find('"')?;
    Some((start, end))
}

/// The `(name, value)` counters of the last `stopped counters=a=1 b=2 ...`
/// line eapay-server logs on SIGTERM ([`Server::terminate`]); counters at 0
/// are not logged. Empty if there is no such line.
pub fn stopped_counters(stderr: &str) -> Vec<(String, u64)> {
    let Some(line) = stderr.lines().rev().find(|l| l.contains("stopped") && l.contains("counters=")) else {
        return Vec::new();
    };
    line.split(|c: char| c.is_whitespace() || c == '"')
        .map(|w| w.strip_prefix("counters=").unwrap_or(w))
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// One counter of [`stopped_counters`]; 0 if it is not there.
pub fn stopped_counter(stderr: &str, name: &str) -> u64 {
    stopped_counters(stderr).iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

/// Reads the USIM password of an eapol_test configuration.
pub fn read_usim_password(conf: &Path) -> UsimPassword {
    let text = std::fs::read_to_string(conf).unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
    let (start, end) =
        password_span(&text).unwrap_or_else(|| panic!("no password=\"...\" in {}:\n{text}", conf.display()));
    let parts: Vec<&str> = text[start..end].split(':').collect();
    match parts.as_slice() {
        [k, opc, sqn] => UsimPassword { k: (*k).to_owned(), opc: (*opc).to_owned(), sqn: (*sqn).to_owned() },
        _ => panic!("password in {} is not K:OPc:SQN:\n{text}", conf.display()),
    }
}

/// Writes a copy of `conf` at `to` with the password replaced.
pub fn write_usim_password(conf: &Path, to: &Path, password: &UsimPassword) {
    let text = std::fs::read_to_string(conf).unwrap_or_else(|e| panic!("reading {}: {e}", conf.display()));
    let (start, end) = password_span(&text).expect("password");
    let new = format!("{}{}:{}:{}{}", &text[..start], password.k, password.opc, password.sqn, &text[end..]);
    std::fs::write(to, new).unwrap_or_else(|e| panic!("writing {}: {e}", to.display()));
}

// ---------------------------------------------------------------------------
// Raw RADIUS over UDP
// ---------------------------------------------------------------------------

/// A UDP socket bound to `local` (e.g. "127.0.0.1:0").
pub fn udp_socket(local: &str) -> UdpSocket {
    UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"))
}

/// Waits up to `timeout` for one datagram.
pub fn recv_within(socket: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).expect("set_read_timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ICMP port unreachable surfaces as ConnectionRefused: no reply.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => panic!("recv_from: {e}"),
        }
    }
}

/// Sends `datagram` to `to` and waits up to `timeout` for the answer.
pub fn exchange(socket: &UdpSocket, to: SocketAddr, datagram: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    socket.send_to(datagram, to).unwrap_or_else(|e| panic!("send_to {to}: {e}"));
    recv_within(socket, timeout).map(|(d, _)| d)
}

/// EAP-Response/Identity (RFC 3748 §5.1).
pub fn eap_identity_response(eap_id: u8, identity: &str) -> Vec<u8> {
    let len = u16::try_from(5 + identity.len()).expect("identity fits");
    let mut eap = vec![2, eap_id];
    eap.extend_from_slice(&len.to_be_bytes());
    eap.push(1);
    eap.extend_from_slice(identity.as_bytes());
    eap
}

/// A signed Status-Server (RFC 5997) with Message-Authenticator.
pub fn status_server(identifier: u8, secret: &str) -> (Packet, Vec<u8>) {
    let mut p = Packet::new_request(Code::StatusServer, identifier);
    p.add_message_authenticator();
    let wire = encode_request(&p, secret.as_bytes()).expect("encode Status-Server");
    (p, wire)
}

/// An Access-Request carrying `eap` (with User-Name, and Message-Authenticator
/// first), signed with `secret`.
pub fn eap_access_request(
    identifier: u8,
    user_name: &str,
    eap: &[u8],
    state: Option<&[u8]>,
    secret: &str,
) -> (Packet, Vec<u8>) {
    let p = eap_access_request_packet(identifier, user_name, eap, state);
    let wire = encode_request(&p, secret.as_bytes()).expect("encode Access-Request");
    (p, wire)
}

/// [`eap_access_request`] with the payment attributes of `payment` appended
/// (a payment terminal's request: an authentication-only one is declined).
pub fn eap_payment_request(
    identifier: u8,
    user_name: &str,
    eap: &[u8],
    state: Option<&[u8]>,
    payment: &PaymentDetails,
    secret: &str,
) -> (Packet, Vec<u8>) {
    let mut p = eap_access_request_packet(identifier, user_name, eap, state);
    p.attributes.extend(payment_attributes(payment));
    let wire = encode_request(&p, secret.as_bytes()).expect("encode Access-Request");
    (p, wire)
}

/// The unsigned packet of [`eap_access_request`], for tests that corrupt it.
pub fn eap_access_request_packet(identifier: u8, user_name: &str, eap: &[u8], state: Option<&[u8]>) -> Packet {
    let mut p = Packet::new_request(Code::AccessRequest, identifier);
    p.add_message_authenticator();
    p.push(rfc::USER_NAME, user_name.as_bytes()).expect("User-Name");
    p.push_u32(rfc::NAS_PORT_TYPE, 19); // Wireless-802.11, as eapol_test sends
    p.push_eap_message(eap);
    if let Some(state) = state {
        p.push(rfc::STATE, state).expect("State");
    }
    p
}

/// Checks a reply to a request with authenticator `request_authenticator`:
/// Response Authenticator and Message-Authenticator valid, and the
/// Message-Authenticator first (Blast-RADIUS). Panics with details otherwise.
pub fn verify_reply(reply: &[u8], request_code: Code, request_authenticator: &[u8; 16], secret: &str) -> Packet {
    verify_response_to(reply, request_code, request_authenticator, secret.as_bytes(), true)
        .unwrap_or_else(|e| panic!("reply fails verification ({e}): {}", hex_dump(reply)))
}

/// Lower-case hex of some bytes.
pub fn hex_dump(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends a Status-Server from 127.0.0.1 and returns the verified answer;
/// panics when none comes within [`REPLY_TIMEOUT`].
pub fn expect_status_answer(server: &Server) -> Packet {
    let socket = udp_socket("127.0.0.1:0");
    let (req, wire) = status_server(0x5a, &server.secret);
    // Retransmitted (same datagram, as a NAS would) in case a burst of test
    // traffic overflowed a socket buffer; a live server answers the first.
    let reply = (0..4).find_map(|_| exchange(&socket, server.auth, &wire, REPLY_TIMEOUT / 4)).unwrap_or_else(|| {
        panic!(
            "no answer to a valid Status-Server within {REPLY_TIMEOUT:?}\n--- server stderr ---\n{}",
            server.stderr()
        )
    });
    let p = verify_reply(&reply, Code::StatusServer, &req.authenticator, &server.secret);
    assert_eq!(p.identifier, req.identifier, "Status-Server answer identifier");
    p
}

// ---------------------------------------------------------------------------
// Payments: details, the terminal's relay, the server's answers
// ---------------------------------------------------------------------------

/// The merchant `init` registers for the client `demo-terminal` (127.0.0.1/32).
pub const MERCHANT: &str = "M-DEMO";
/// ISO 4217 numeric of USD, the default card currency.
pub const USD: u32 = 840;
/// `card issue` default credit limit (minor units).
pub const DEFAULT_LIMIT: u64 = 500_000;
const VENDOR: u32 = eapay::VENDOR_ID;

/// The local clock, Unix milliseconds (the server runs on the same clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// A transaction id unique across tests and runs: `TAG-<random hex>`.
pub fn transaction_id(tag: &str) -> String {
    format!("{tag}-{:016x}", rand::random::<u64>())
}

/// A fresh payment of `amount` USD minor units at merchant [`MERCHANT`]: new
/// transaction id and nonce, terminal time now, lump sum.
pub fn details(tag: &str, amount: u64) -> PaymentDetails {
    PaymentDetails {
        transaction_id: transaction_id(tag),
        merchant_id: MERCHANT.to_owned(),
        amount,
        currency: USD,
        installments: 0,
        terminal_nonce: rand::random(),
        terminal_time_ms: now_ms(),
    }
}

/// The same payment as a new transaction: new transaction id and nonce.
pub fn renewed(d: &PaymentDetails, tag: &str) -> PaymentDetails {
    PaymentDetails { transaction_id: transaction_id(tag), terminal_nonce: rand::random(), ..d.clone() }
}

/// The seven payment attributes (Vendor-Specific, vendor 32473) of `details`.
pub fn payment_attributes(details: &PaymentDetails) -> Vec<Attribute> {
    let mut p = Packet::new(Code::AccessRequest, 0, [0; 16]);
    details.push_to(&mut p, VENDOR).expect("payment attributes encode");
    p.attributes
}

/// One Vendor-Specific (vendor 32473) holding one sub-attribute, raw: lets a
/// test send values the encoder would not (wrong lengths, duplicates).
pub fn eapay_vsa(vendor_type: u8, value: &[u8]) -> Attribute {
    let mut v = VENDOR.to_be_bytes().to_vec();
    v.push(vendor_type);
    v.push(u8::try_from(value.len() + 2).expect("sub-attribute fits"));
    v.extend_from_slice(value);
    Attribute { kind: rfc::VENDOR_SPECIFIC, value: v }
}

/// `-N 26:x:00007ed9<type><len><value>` for each payment attribute: what
/// eapol_test puts in every Access-Request.
pub fn eapol_test_payment_args(details: &PaymentDetails) -> Vec<String> {
    details
        .sub_attributes()
        .into_iter()
        .flat_map(|tlv| ["-N".to_owned(), format!("26:x:{}{}", hex_dump(&VENDOR.to_be_bytes()), hex_dump(&tlv))])
        .collect()
}

/// The Eapay attributes of a final answer (Access-Accept / Access-Reject).
#[derive(Debug, Clone, Default)]
pub struct PaymentReply {
    /// The EAP code inside EAP-Message: 3 Success, 4 Failure.
    pub eap_code: Option<u8>,
    pub transaction_id: Option<String>,
    pub approval_code: Option<String>,
    pub approved_amount: Option<u64>,
    pub decline_code: Option<u32>,
    pub decline_reason: Option<String>,
    pub reply_message: Option<String>,
    pub card_confirmation: Option<u32>,
    pub receipt: Option<Vec<u8>>,
    pub auth_method: Option<String>,
    pub has_mppe_keys: bool,
}

impl PaymentReply {
    /// Reads the attributes; panics on ones that do not decode (wrong
    /// length, not UTF-8): a terminal could not use them either.
    pub fn of(p: &Packet) -> PaymentReply {
        let vendor = p.vendor_attributes(VENDOR).unwrap_or_else(|e| panic!("Vendor-Specific does not parse: {e}"));
        let one = |t: u8| {
            let all: Vec<&[u8]> = vendor.iter().filter(|a| a.vendor_type == t).map(|a| a.value).collect();
            assert!(all.len() <= 1 || t == eapay::RECEIPT, "Eapay type {t} appears {} times: {p:?}", all.len());
            all.first().map(|v| v.to_vec())
        };
        let text = |t: u8| one(t).map(|v| String::from_utf8(v).unwrap_or_else(|e| panic!("Eapay type {t}: {e}")));
        let int = |t: u8| {
            one(t).map(|v| u32::from_be_bytes(v.try_into().unwrap_or_else(|v| panic!("Eapay type {t}: {v:?}"))))
        };
        let int64 = |t: u8| {
            one(t).map(|v| u64::from_be_bytes(v.try_into().unwrap_or_else(|v| panic!("Eapay type {t}: {v:?}"))))
        };
        let ms = p.vendor_attributes(microsoft::VENDOR_ID).unwrap_or_default();
        PaymentReply {
            eap_code: p.eap_message().and_then(|e| e.first().copied()),
            transaction_id: text(eapay::TRANSACTION_ID),
            approval_code: text(eapay::APPROVAL_CODE),
            approved_amount: int64(eapay::APPROVED_AMOUNT),
            decline_code: int(eapay::DECLINE_CODE),
            decline_reason: text(eapay::DECLINE_REASON),
            reply_message: p.get(rfc::REPLY_MESSAGE).map(|v| String::from_utf8_lossy(v).into_owned()),
            card_confirmation: int(eapay::CARD_CONFIRMATION),
            receipt: aaa_proto::payment::concat(p, VENDOR, eapay::RECEIPT),
            auth_method: text(eapay::AUTH_METHOD),
            has_mppe_keys: ms
                .iter()
                .any(|a| a.vendor_type == microsoft::MS_MPPE_RECV_KEY || a.vendor_type == microsoft::MS_MPPE_SEND_KEY),
        }
    }
}

/// What the card concluded from the final EAP packet.
#[derive(Debug, Clone)]
pub enum CardSaw {
    /// EAP-Success after mutual authentication, with the MSK and the result
    /// the server delivered inside the protected channel.
    Success { msk: Vec<u8>, result: Option<Vec<u8>> },
    /// EAP-Failure (or the method gave up).
    Failure(String),
    /// The card ignored the final packet (or there was none).
    Nothing(String),
}

impl CardSaw {
    /// What the card makes of the EAP packet in the final Access-Accept or
    /// Access-Reject `reply`.
    pub fn of_final(peer: &mut PeerSession, reply: &Packet) -> CardSaw {
        match reply.eap_message() {
            None => CardSaw::Nothing("no EAP-Message in the final answer".to_owned()),
            Some(last) => match peer.handle(&last) {
                PeerEvent::Success { keys, result } => CardSaw::Success { msk: keys.msk.to_vec(), result },
                PeerEvent::Failure(why) => CardSaw::Failure(format!("{why:?}")),
                PeerEvent::Ignore(why) => CardSaw::Nothing(why.to_owned()),
                PeerEvent::Send(r) => CardSaw::Nothing(format!("answered with {}", hex_dump(&r))),
            },
        }
    }
}

/// One relayed payment conversation, ended by Access-Accept or Access-Reject.
pub struct PaymentRun {
    /// The final answer, verified.
    pub reply: Packet,
    pub answer: PaymentReply,
    /// The final answer as received.
    pub reply_datagram: Vec<u8>,
    /// The final Access-Request as sent, for a retransmission.
    pub final_request: Vec<u8>,
    pub final_authenticator: [u8; 16],
    /// The terminal's socket (a retransmission comes from the same port).
    pub socket: UdpSocket,
    pub server_auth: SocketAddr,
    pub secret: String,
    pub card: CardSaw,
    pub card_id: String,
    /// Access-Requests sent.
    pub rounds: usize,
    /// Server stderr when the answer arrived (for messages).
    pub server_log: String,
}

/// Sends `datagram` and waits for the verified answer with the request's
/// identifier; one retransmission of the same bytes if none comes.
fn request_reply(
    socket: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    code: Code,
    secret: &str,
) -> Option<(Packet, Vec<u8>)> {
    let authenticator: [u8; 16] = datagram[4..20].try_into().expect("datagram has an authenticator");
    for _ in 0..2 {
        socket.send_to(datagram, to).unwrap_or_else(|e| panic!("send_to {to}: {e}"));
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((reply, from)) = recv_within(socket, left) else { break };
            // A late answer to an earlier round has another identifier.
            if from != to || reply.get(1) != Some(&datagram[1]) {
                continue;
            }
            return Some((verify_reply(&reply, code, &authenticator, secret), reply));
        }
    }
    None
}

/// Relays one EAP conversation between the card `card` (an e-card peer that
/// confirms `confirmation`, the canonical details, if given) and the
/// server, over raw RADIUS: `attributes(round)` are added to the
/// Access-Request of each round (0 = the EAP-Response/Identity).
pub fn relay_payment(
    server: &Server,
    card: &CardFile,
    confirmation: Option<Vec<u8>>,
    attributes: &mut dyn FnMut(usize) -> Vec<Attribute>,
) -> PaymentRun {
    relay_payment_with(server, card, confirmation, attributes, &mut |_, response| response)
}

/// Replaces the card's answer to an EAP request: `(request, response) -> sent`.
pub type CardOverride<'a> = dyn FnMut(&[u8], Vec<u8>) -> Vec<u8> + 'a;

/// [`relay_payment`] with the card's answer to each EAP request passed
/// through `respond(request, response)`: a test can replace what the card
/// sends (a misbehaving card or link).
pub fn relay_payment_with(
    server: &Server,
    card: &CardFile,
    confirmation: Option<Vec<u8>>,
    attributes: &mut dyn FnMut(usize) -> Vec<Attribute>,
    respond: &mut CardOverride<'_>,
) -> PaymentRun {
    let mut peer = e_card::peer::session(card, confirmation).expect("the card file drives a peer");
    let socket = udp_socket("127.0.0.1:0");
    let mut eap = peer.identity_response(0);
    let mut state: Option<Vec<u8>> = None;
    let mut identifier: u8 = rand::random();
    for round in 0..64 {
        let mut p = eap_access_request_packet(identifier, &card.identity, &eap, state.as_deref());
        p.attributes.extend(attributes(round));
        let wire = encode_request(&p, server.secret.as_bytes()).expect("encode Access-Request");
        let Some((reply, datagram)) = request_reply(&socket, server.auth, &wire, Code::AccessRequest, &server.secret)
        else {
            panic!(
                "round {round}: no answer within {REPLY_TIMEOUT:?} (twice)\n--- server stderr ---\n{}",
                server.stderr()
            );
        };
        match reply.code {
            Code::AccessChallenge => {
                let challenge =
                    reply.eap_message().unwrap_or_else(|| panic!("Access-Challenge without EAP: {reply:?}"));
                state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                eap = match peer.handle(&challenge) {
                    PeerEvent::Send(response) => respond(&challenge, response),
                    other => panic!(
                        "round {round}: the card has no answer to {} ({other:?})\n--- server stderr ---\n{}",
                        hex_dump(&challenge),
                        server.stderr()
                    ),
                };
            }
            Code::AccessAccept | Code::AccessReject => {
                let card_saw = CardSaw::of_final(&mut peer, &reply);
                return PaymentRun {
                    answer: PaymentReply::of(&reply),
                    reply,
                    reply_datagram: datagram,
                    final_authenticator: p.authenticator,
                    final_request: wire,
                    socket,
                    server_auth: server.auth,
                    secret: server.secret.clone(),
                    card: card_saw,
                    card_id: card.card_id.clone(),
                    rounds: round + 1,
                    server_log: server.stderr(),
                };
            }
            other => panic!("round {round}: unexpected {other:?}: {reply:?}"),
        }
        identifier = identifier.wrapping_add(1);
    }
    panic!("no final answer after 64 rounds\n--- server stderr ---\n{}", server.stderr());
}

/// The last `n` lines of a log, for messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Server {
    /// The card confirms `details` and the terminal sends them in every round.
    pub fn pay(&self, card: &Card, details: &PaymentDetails) -> PaymentRun {
        let attributes = payment_attributes(details);
        relay_payment(self, &card.file(), Some(details.canonical()), &mut |_| attributes.clone())
    }

    /// The terminal sends `details`; the card confirms nothing (a standard peer).
    pub fn pay_unconfirmed(&self, card: &Card, details: &PaymentDetails) -> PaymentRun {
        let attributes = payment_attributes(details);
        relay_payment(self, &card.file(), None, &mut |_| attributes.clone())
    }

    /// A tampering terminal: the card confirms `confirmed`, the terminal
    /// asserts `asserted`.
    pub fn pay_tampered(&self, card: &Card, confirmed: &PaymentDetails, asserted: &PaymentDetails) -> PaymentRun {
        let attributes = payment_attributes(asserted);
        relay_payment(self, &card.file(), Some(confirmed.canonical()), &mut |_| attributes.clone())
    }

    /// The card confirms `details`; the terminal sends `attributes` (raw) in every round.
    pub fn pay_raw(&self, card: &Card, details: &PaymentDetails, attributes: Vec<Attribute>) -> PaymentRun {
        relay_payment(self, &card.file(), Some(details.canonical()), &mut |_| attributes.clone())
    }

    /// Plain authentication: no payment attributes, no confirmation.
    pub fn authenticate_only(&self, card: &Card) -> PaymentRun {
        relay_payment(self, &card.file(), None, &mut |_| Vec::new())
    }
}

impl PaymentRun {
    /// Context for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "after {} round(s): {:?}\n  {:?}\n  card saw: {:?}\n--- server stderr (last 30 lines) ---\n{}",
            self.rounds,
            self.reply.code,
            self.answer,
            self.card,
            last_lines(&self.server_log, 30)
        )
    }

    /// The final Access-Request sent again, byte for byte, from the same
    /// socket; the answer as received.
    pub fn retransmit_final(&self) -> Vec<u8> {
        let (_, datagram) =
            request_reply(&self.socket, self.server_auth, &self.final_request, Code::AccessRequest, &self.secret)
                .unwrap_or_else(|| panic!("no answer to the retransmitted final Access-Request"));
        datagram
    }

    /// MS-MPPE-Recv-Key, decrypted with the final request's authenticator.
    pub fn mppe_recv_key(&self) -> Option<Vec<u8>> {
        self.reply
            .vendor_attribute(microsoft::VENDOR_ID, microsoft::MS_MPPE_RECV_KEY)
            .expect("Vendor-Specific parses")
            .map(|v| {
                decrypt_mppe_key(v, self.secret.as_bytes(), &self.final_authenticator)
                    .expect("MS-MPPE-Recv-Key decrypts")
            })
    }

    /// Checks an approval of `details` from `server` and returns the
    /// approval code: Access-Accept with EAP-Success, keys equal to the
    /// card's MSK, Eapay-Transaction-Id, a 6-character approval code, the
    /// approved amount, Eapay-Card-Confirmation, Eapay-Auth-Method and a
    /// receipt that verifies with the issuer key and names this payment;
    /// the card accepted, and (if it confirmed) got the same result.
    pub fn assert_approved(&self, server: &Server, details: &PaymentDetails) -> String {
        self.check_approved(server, details).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`PaymentRun::assert_approved`] without the panic: the first problem.
    pub fn check_approved(&self, server: &Server, details: &PaymentDetails) -> Result<String, String> {
        let a = &self.answer;
        let fail = |what: String| Err(format!("{what}: {}", self.describe()));
        if self.reply.code != Code::AccessAccept {
            return fail(format!("not approved ({:?})", self.reply.code));
        }
        if a.eap_code != Some(3) {
            return fail("Access-Accept without EAP-Success".into());
        }
        if a.transaction_id.as_deref() != Some(details.transaction_id.as_str()) {
            return fail(format!("Eapay-Transaction-Id {:?}, want {:?}", a.transaction_id, details.transaction_id));
        }
        let Some(code) = a.approval_code.clone() else { return fail("no Eapay-Approval-Code".into()) };
        if !is_approval_code(&code) {
            return fail(format!("approval code {code:?} is not 6 characters A-Z0-9"));
        }
        if a.approved_amount != Some(details.amount) {
            return fail(format!("Eapay-Approved-Amount {:?}, want {}", a.approved_amount, details.amount));
        }
        if a.card_confirmation.is_none() {
            return fail("no Eapay-Card-Confirmation".into());
        }
        if !matches!(a.auth_method.as_deref(), Some("sim" | "aka" | "aka-prime" | "tls" | "ttls")) {
            return fail(format!("Eapay-Auth-Method {:?}", a.auth_method));
        }
        if a.decline_code.is_some() {
            return fail("an approval with a decline code".into());
        }
        let Some(receipt) = a.receipt.as_ref() else { return fail("no Eapay-Receipt".into()) };
        let body = match server.issuer_key().verify(receipt) {
            Ok(body) => body,
            Err(e) => return fail(format!("receipt {} does not verify: {e}", hex_dump(receipt))),
        };
        let signed = (
            &body.approval_code,
            &body.transaction_id,
            &body.merchant_id,
            &body.card_id,
            body.amount,
            u32::from(body.currency),
        );
        let facts =
            (&code, &details.transaction_id, &details.merchant_id, &self.card_id, details.amount, details.currency);
        if signed != facts {
            return fail(format!("the receipt signs {body:?}, not the approval {facts:?}"));
        }
        let CardSaw::Success { msk, result } = &self.card else {
            return fail("the card did not accept the server's EAP-Success".into());
        };
        if self.mppe_recv_key().as_deref() != Some(&msk[..32]) {
            return fail("MS-MPPE-Recv-Key is not the card's MSK".into());
        }
        if a.card_confirmation == Some(CardConfirmation::Confirmed.value()) {
            let Some(result) = result.as_ref() else {
                return fail("the card confirmed but got no protected result".into());
            };
            let told = match PaymentResult::decode(result) {
                Ok(told) => told,
                Err(e) => return fail(format!("protected result {} does not decode: {e}", hex_dump(result))),
            };
            let want = PaymentResult {
                transaction_id: details.transaction_id.clone(),
                outcome: PaymentOutcome::Approved { approval_code: code.clone(), approved_amount: details.amount },
            };
            if told != want {
                return fail(format!("the card was told {told:?}, the terminal {want:?}"));
            }
        }
        Ok(code)
    }

    /// Checks a decline with `code`: Access-Reject with EAP-Failure,
    /// Eapay-Decline-Code, a reason in Eapay-Decline-Reason and
    /// Reply-Message, Eapay-Card-Confirmation, the request's transaction id
    /// (`transaction_id`, when it had a valid one), nothing of an approval,
    /// no keys; the card did not accept.
    pub fn assert_declined(&self, code: DeclineCode, transaction_id: Option<&str>) {
        if let Err(e) = self.check_declined(code, transaction_id) {
            panic!("{e}");
        }
    }

    /// [`PaymentRun::assert_declined`] without the panic: the first problem.
    pub fn check_declined(&self, code: DeclineCode, transaction_id: Option<&str>) -> Result<(), String> {
        let a = &self.answer;
        let fail =
            |what: String| Err(format!("want decline {} ({}): {what}: {}", code.value(), code.name(), self.describe()));
        if self.reply.code != Code::AccessReject {
            return fail(format!("got {:?}", self.reply.code));
        }
        if a.decline_code != Some(code.value()) {
            return fail(format!("Eapay-Decline-Code is {:?}", a.decline_code));
        }
        if a.eap_code != Some(4) {
            return fail("Access-Reject without EAP-Failure".into());
        }
        if a.decline_reason.as_deref().is_none_or(str::is_empty) {
            return fail("no Eapay-Decline-Reason".into());
        }
        if a.reply_message.as_deref().is_none_or(str::is_empty) {
            return fail("no Reply-Message".into());
        }
        if a.card_confirmation.is_none() {
            return fail("no Eapay-Card-Confirmation".into());
        }
        if let Some(txn) = transaction_id {
            if a.transaction_id.as_deref() != Some(txn) {
                return fail(format!("Eapay-Transaction-Id is {:?}, the request's was {txn:?}", a.transaction_id));
            }
        }
        if a.approval_code.is_some() || a.approved_amount.is_some() || a.receipt.is_some() {
            return fail("a decline with approval attributes".into());
        }
        if a.has_mppe_keys {
            return fail("a decline carries MS-MPPE keys".into());
        }
        if matches!(self.card, CardSaw::Success { .. }) {
            return fail("the card believes it succeeded".into());
        }
        Ok(())
    }

    /// The Eapay-Card-Confirmation value.
    pub fn confirmation(&self) -> Option<CardConfirmation> {
        self.answer.card_confirmation.and_then(CardConfirmation::from_value)
    }
}

/// Whether `text` holds `token` as a whole word (split at anything that is
/// not a letter, digit, `-` or `_`): "63" in "decline 63 (Security-Violation)".
pub fn has_token(text: &str, token: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).any(|w| w.eq_ignore_ascii_case(token))
}

/// The approval code `txn show` prints: a 6-character A-Z0-9 word on a line
/// that mentions "approval".
pub fn approval_code_in(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| l.to_lowercase().contains("approval"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_alphanumeric()))
        .find(|w| is_approval_code(w))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Settlement over RADIUS accounting
// ---------------------------------------------------------------------------

/// An Accounting-Response to a settlement.
pub struct Settled {
    pub reply: Packet,
    pub datagram: Vec<u8>,
    pub request: Vec<u8>,
    pub socket: UdpSocket,
    pub decline_code: Option<u32>,
    pub server_log: String,
}

impl Settled {
    /// The action was carried out (or had been): no Eapay-Decline-Code.
    pub fn assert_done(&self, what: &str) {
        assert_eq!(
            self.decline_code,
            None,
            "{what}: refused: {:?}\n--- server stderr (last 30 lines) ---\n{}",
            self.reply,
            last_lines(&self.server_log, 30)
        );
    }

    /// The action was refused with `code`.
    pub fn assert_refused(&self, code: DeclineCode, what: &str) {
        assert_eq!(
            self.decline_code,
            Some(code.value()),
            "{what}: want Eapay-Decline-Code {} ({}): {:?}\n--- server stderr (last 30 lines) ---\n{}",
            code.value(),
            code.name(),
            self.reply,
            last_lines(&self.server_log, 30)
        );
    }
}

/// The Accounting-Request of a settlement: Eapay-Settlement-Action,
/// Eapay-Transaction-Id, Eapay-Merchant-Id, and Eapay-Amount if given.
pub fn settlement_request(
    identifier: u8,
    action: SettlementAction,
    merchant: &str,
    transaction_id: &str,
    amount: Option<u64>,
    secret: &str,
) -> Vec<u8> {
    let mut p = Packet::new_request(Code::AccountingRequest, identifier);
    p.add_message_authenticator();
    p.push_vendor_u32(VENDOR, eapay::SETTLEMENT_ACTION, action.value()).expect("Eapay-Settlement-Action");
    p.push_vendor(VENDOR, eapay::TRANSACTION_ID, transaction_id.as_bytes()).expect("Eapay-Transaction-Id");
    p.push_vendor(VENDOR, eapay::MERCHANT_ID, merchant.as_bytes()).expect("Eapay-Merchant-Id");
    if let Some(amount) = amount {
        p.push_vendor_u64(VENDOR, eapay::AMOUNT, amount).expect("Eapay-Amount");
    }
    encode_request(&p, secret.as_bytes()).expect("encode Accounting-Request")
}

impl Server {
    /// Sends a settlement to the accounting port; returns the verified answer.
    pub fn settle(
        &self,
        action: SettlementAction,
        merchant: &str,
        transaction_id: &str,
        amount: Option<u64>,
    ) -> Settled {
        let request = settlement_request(rand::random(), action, merchant, transaction_id, amount, &self.secret);
        let socket = udp_socket("127.0.0.1:0");
        let (reply, datagram) = request_reply(&socket, self.acct, &request, Code::AccountingRequest, &self.secret)
            .unwrap_or_else(|| {
                panic!("no Accounting-Response to {} {transaction_id}\n{}", action.name(), self.stderr())
            });
        assert_eq!(reply.code, Code::AccountingResponse, "{reply:?}");
        let decline_code =
            reply.vendor_attribute(VENDOR, eapay::DECLINE_CODE).expect("Vendor-Specific parses").map(|v| {
                u32::from_be_bytes(v.try_into().unwrap_or_else(|_| panic!("Eapay-Decline-Code of {} bytes", v.len())))
            });
        Settled { reply, datagram, request, socket, decline_code, server_log: self.stderr() }
    }

    /// [`Server::settle`] for [`MERCHANT`], no amount.
    pub fn settle_demo(&self, action: SettlementAction, transaction_id: &str) -> Settled {
        self.settle(action, MERCHANT, transaction_id, None)
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL scratch databases
// ---------------------------------------------------------------------------

/// A fresh database `eapay_e2e_<random>` on `EAPAY_TEST_POSTGRES_URL`,
/// dropped again with this value.
pub struct ScratchDatabase {
    /// The URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// `url` with its database (the last path segment) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

impl ScratchDatabase {
    /// None (test skipped, with a SKIP line) when `EAPAY_TEST_POSTGRES_URL`
    /// is unset; a panic under `EAPAY_REQUIRE_INTEROP=1` when it is unset or
    /// the server is unreachable.
    pub fn create() -> Option<ScratchDatabase> {
        use sqlx::Connection;
        let Some(admin_url) = std::env::var("EAPAY_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
            if interop_required() {
                panic!("EAPAY_TEST_POSTGRES_URL is required in CI (EAPAY_REQUIRE_INTEROP=1) but is not set");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIP: {} needs PostgreSQL (set EAPAY_TEST_POSTGRES_URL, e.g. postgres://postgres@127.0.0.1:5432/test)",
                current_test_name()
            );
            return None;
        };
        let name = format!("eapay_e2e_{:016x}", rand::random::<u64>());
        let created: Result<(), sqlx::Error> = block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
            conn.close().await
        });
        if let Err(e) = created {
            // Unreachable although configured: a failure, not a skip.
            panic!("cannot create database {name} on EAPAY_TEST_POSTGRES_URL={admin_url}: {e}");
        }
        Some(ScratchDatabase { url: with_database(&admin_url, &name), admin_url, name })
    }
}

impl ScratchDatabase {
    /// The first column of the first row of `sql` (text), with `args`
    /// bound as text parameters $1, $2, ...; None if no row.
    pub fn text(&self, sql: &str, args: &[&str]) -> Option<String> {
        use sqlx::{Connection, Row};
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.url).await?;
            let mut query = sqlx::query(sql);
            for a in args {
                query = query.bind(*a);
            }
            let row = query.fetch_optional(&mut conn).await?;
            let value = row.map(|r| r.try_get::<String, _>(0)).transpose()?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(value)
        })
        .unwrap_or_else(|e| panic!("{sql} on {}: {e}", self.url))
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        let dropped: Result<(), sqlx::Error> = block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn).await?;
            conn.close().await
        });
        if let Err(e) = dropped {
            eprintln!("could not drop scratch database {}: {e}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Load generator (tests/tests/bench.rs)
// ---------------------------------------------------------------------------

impl Server {
    /// The process id of `eapay-server serve` (for `bench --server-pid`).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// Stops the server with SIGTERM (as an operator would) and returns
    /// everything it wrote on stderr, its closing counters included.
    pub fn terminate(&self) -> String {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM {}", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "eapay-server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(child);
        // The stderr reader thread may still be draining the pipe.
        std::thread::sleep(Duration::from_millis(100));
        self.stderr()
    }

    /// Issues `count` cards of `method` in bulk (`card issue --count N
    /// --card-dir DIR`, with `extra` arguments) into a new scratch directory;
    /// returns the directory.
    pub fn issue_cards(&self, method: Method, count: u32, extra: &[&str]) -> PathBuf {
        let n = self.cards.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.path().join(format!("cards-{}-{n}", method.arg()));
        let count = count.to_string();
        let dir_arg = dir.to_str().expect("utf-8 path");
        let mut args = vec!["card", "issue", "--method", method.arg(), "--count", &count, "--card-dir", dir_arg];
        args.extend_from_slice(extra);
        self.admin(&args);
        dir
    }
}
