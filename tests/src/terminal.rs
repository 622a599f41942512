//! The terminal and the card as separate processes: `eapay-card serve` and
//! `eapay-terminal`, as a merchant would run them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    describe, run_with_timeout, spawn_line_reader, spawn_stderr_reader, workspace_bin, Server, ToolOutput, MERCHANT,
    STARTUP_TIMEOUT, TOOL_TIMEOUT,
};

/// A card served by `eapay-card serve` on an ephemeral port.
pub struct CardProcess {
    child: Child,
    /// `tcp://127.0.0.1:PORT`.
    pub link: String,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl CardProcess {
    /// Serves the card file until dropped.
    pub fn serve(card_file: &Path) -> CardProcess {
        CardProcess::serve_with(card_file, &[])
    }

    /// Serves with extra `serve` arguments (`--once`, `--consent refuse`).
    pub fn serve_with(card_file: &Path, extra: &[&str]) -> CardProcess {
        let mut cmd = Command::new(workspace_bin("eapay-card"));
        cmd.arg("serve").arg("--card-file").arg(card_file).args(["--listen", "127.0.0.1:0"]).args(extra);
        cmd.env("EAPAY_LOG", "debug").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = describe(&cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        spawn_stderr_reader(child.stderr.take().expect("stderr pipe"), stderr.clone());
        let lines = spawn_line_reader(child.stdout.take().expect("stdout pipe"), stdout.clone());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("tcp://"))
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        break addr;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "`{command}` printed no listening address ({}):\n{}",
                        if e == mpsc::RecvTimeoutError::Timeout { "timeout" } else { "exited" },
                        String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner()))
                    );
                }
            }
        };
        CardProcess { child, link: format!("tcp://{addr}"), addr, stdout, stderr }
    }

    /// What the card printed so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// What the card logged so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits (up to `timeout`) until the card's stdout holds `needle`.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if out.contains(needle) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `eapay-terminal` with `args` (logging at `EAPAY_LOG=trace` so a test
/// sees everything the terminal would ever log).
pub fn terminal(args: &[&str]) -> ToolOutput {
    let mut cmd = Command::new(workspace_bin("eapay-terminal"));
    cmd.args(args).env("EAPAY_LOG", "trace");
    run_with_timeout(cmd, None, TOOL_TIMEOUT)
}

/// The arguments of a `pay` to `server` (auth port `auth`, accounting port
/// `acct`) at the test merchant, with the reversal store `reversals`.
pub fn pay_args(server: &Server, auth: SocketAddr, acct: SocketAddr, reversals: &Path) -> Vec<String> {
    vec![
        "pay".into(),
        "--server".into(),
        auth.to_string(),
        "--acct-server".into(),
        acct.to_string(),
        "--secret".into(),
        server.secret.clone(),
        "--merchant".into(),
        MERCHANT.into(),
        "--reversals".into(),
        reversals.display().to_string(),
    ]
}

/// [`ToolOutput`] lines on stderr that are not log records: the error lines.
pub fn error_lines(out: &ToolOutput) -> Vec<String> {
    out.stderr.lines().filter(|l| l.starts_with("eapay-terminal:")).map(str::to_owned).collect()
}

/// The Diameter identity `init` gives the demo terminal in realm `issuer.test`.
pub const DIAMETER_TERMINAL: &str = "demo-terminal.issuer.test";

/// The arguments of `pay --protocol diameter` as the demo terminal to
/// `servers` (repeated `--server`, in order) at the test merchant, the card
/// played in process from `card`, then `extra`.
pub fn diameter_pay_args(
    servers: &[SocketAddr],
    card: &Path,
    amount: &str,
    reversals: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec!["pay".into(), "--protocol".into(), "diameter".into()];
    for s in servers {
        args.extend(["--server".into(), s.to_string()]);
    }
    let named = ["--origin-host", DIAMETER_TERMINAL, "--destination-realm", "issuer.test", "--merchant", MERCHANT];
    args.extend(named.map(String::from));
    args.extend(["--currency", "USD", "--amount", amount].map(String::from));
    args.extend(["--card".into(), card.display().to_string(), "--reversals".into(), reversals.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs `pay --protocol diameter` (see [`diameter_pay_args`]).
pub fn pay_diameter(servers: &[SocketAddr], card: &Path, amount: &str, reversals: &Path, extra: &[&str]) -> ToolOutput {
    let args = diameter_pay_args(servers, card, amount, reversals, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    terminal(&args)
}

/// The word after `word` in `text` (`approval code XXXXXX`, `transaction T-1`).
pub fn word_after(text: &str, word: &str) -> Option<String> {
    text.split_whitespace().skip_while(|w| *w != word).nth(1).map(str::to_owned)
}
