//! End-to-end harness for eapay-server interop tests.
//!
//! Every test starts its own server ([`Server::start`]) in its own temporary
//! data directory, on ephemeral ports, so tests are independent and can run
//! in parallel (cargo test threads or nextest processes).
//!
//! External tools (eapol_test, radclient) are optional locally: a test that
//! needs a missing tool prints `SKIP: ...` and returns. With
//! `EAPAY_REQUIRE_INTEROP=1` (CI, `.ci/run`) a missing tool is a failure.
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

use aaa_proto::dictionary::rfc;
use aaa_proto::radius::{encode_request, verify_response_to, Code, Packet};

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
/// directory of this test executable (`target/debug/deps/x` -> `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EAPAY_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a directory");
    deps.parent().unwrap_or(deps).to_path_buf()
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

fn interop_required() -> bool {
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
        _ => "install it",
    };
    if interop_required() {
        panic!(
            "{name} is required in CI (EAPAY_REQUIRE_INTEROP=1) but was not found; \
             run scripts/build-eapol-test.sh / apt-get install freeradius-utils ({install})"
        );
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
    Aka,
    AkaPrime,
}

impl Method {
    /// The `card issue --method` argument.
    pub fn arg(self) -> &'static str {
        match self {
            Method::Aka => "aka",
            Method::AkaPrime => "aka-prime",
        }
    }

    /// The EAP type number (RFC 4187 / RFC 5448).
    pub fn eap_type(self) -> u8 {
        match self {
            Method::Aka => 23,
            Method::AkaPrime => 50,
        }
    }
}

/// One issued card.
#[derive(Debug, Clone)]
pub struct Card {
    pub method: Method,
    /// `card issue --card-file`.
    pub json: PathBuf,
    /// `card issue --eapol-test`: the eapol_test network configuration.
    pub eapol_conf: PathBuf,
    /// The permanent NAI from the card file.
    pub identity: String,
}

/// A running `eapay-server serve` with its own data directory. The process
/// is killed when this is dropped.
pub struct Server {
    child: Mutex<Child>,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
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
    let mut cmd = Command::new(server_bin());
    cmd.args(args);
    let out = run_with_timeout(cmd, None, Duration::from_secs(60));
    if !out.success() {
        panic!("eapay-server command failed:\n{}", out.tail(40));
    }
    out
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
    let rest = line.trim().strip_prefix("listening radius ")?.strip_prefix(what)?;
    rest.trim().parse().ok()
}

impl Server {
    /// A server for realm `issuer.test` with a per-test secret.
    pub fn start_default() -> Server {
        Server::start("issuer.test", "eapay-test-secret")
    }

    /// `init` a fresh data directory (RADIUS on 127.0.0.1:0) and run `serve`
    /// until it prints both listening lines.
    pub fn start(realm: &str, secret: &str) -> Server {
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
        ]);
        let config = data_dir.join("eapay.toml");
        assert!(config.is_file(), "`eapay-server init` did not write {}", config.display());

        let mut cmd = Command::new(server_bin());
        cmd.arg("serve").arg("--config").arg(&config).env("RUST_BACKTRACE", "1");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = describe(&cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        spawn_stderr_reader(child.stderr.take().expect("stderr pipe"), stderr.clone());
        let lines = spawn_line_reader(child.stdout.take().expect("stdout pipe"), stdout.clone());

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (mut auth, mut acct) = (None, None);
        let failure = loop {
            if auth.is_some() && acct.is_some() {
                break None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    auth = auth.or_else(|| parse_listening(&line, "auth"));
                    acct = acct.or_else(|| parse_listening(&line, "acct"));
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
            panic!(
                "`{command}`: {why}\n--- server stdout ---\n{}\n--- server stderr ---\n{}",
                stdout.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
                String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner())),
            );
        }
        Server {
            child: Mutex::new(child),
            auth: auth.expect("auth address"),
            acct: acct.expect("acct address"),
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

    /// Issues a card; returns (card file, eapol_test configuration).
    pub fn issue_card(&self, method: Method) -> (PathBuf, PathBuf) {
        let card = self.card(method);
        (card.json, card.eapol_conf)
    }

    /// Issues a card and reads its identity.
    pub fn card(&self, method: Method) -> Card {
        let n = self.cards.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.path();
        let json = dir.join(format!("card-{}-{n}.json", method.arg()));
        let conf = dir.join(format!("card-{}-{n}.conf", method.arg()));
        let config = self.config.to_str().expect("utf-8 path");
        run_server_command(&[
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
        ]);
        let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("reading {}: {e}", json.display()));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", json.display()));
        let identity = value
            .get("identity")
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{} has no \"identity\" string:\n{text}", json.display()))
            .to_owned();
        assert!(conf.is_file(), "`card issue --eapol-test` did not write {}", conf.display());
        Card { method, json, eapol_conf: conf, identity }
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
