//! Packet captures as an independent judge of every byte a test exchanged
//! (issue 14 §1): dumpcap records the test's loopback traffic, and when the
//! test is done tshark, with eapay's RADIUS dictionary and Diameter XML
//! loaded, dissects it. A test fails on
//! - any packet tshark finds malformed, or any expert info of severity error;
//! - any RADIUS Response Authenticator tshark finds invalid
//!   (`radius.validate_authenticator` with the port's shared secret);
//! - any reply from eapay-server whose Message-Authenticator is missing,
//!   wrong or not the first attribute (tshark does not check it: our own
//!   `verify_response_to` does, and the order is read again by hand from
//!   the raw bytes, independently of our codec: the crates.io `radius`
//!   crate, our other independent reader, keeps attributes by type and
//!   cannot say which one came first);
//! - any eapay attribute or AVP that tshark does not show by its name.
//!
//! Other vendors' attributes, and standard ones tshark's dictionaries lack,
//! are not judged: the peers under test (hostapd, FreeRADIUS) send some.
//!
//! RADIUS over TLS (RFC 6614, [`RadsecPort`]) is judged the same way once
//! tshark has decrypted it with the client's TLS key log. tshark 4.0 has no
//! RADIUS-over-TLS dissector of its own (4.0's RADIUS registers on UDP
//! only, and `-d tls.port==P,radius` is refused: RADIUS is no "Decode As"
//! choice for TLS), so a one-line Lua script adds the UDP RADIUS dissector
//! to the `tls.port` table. It reads one RADIUS packet per TLS record, which
//! is how eapay-server, radsecproxy, FreeRADIUS and the tests' client write
//! them. Without a key log only the TLS layer is judged.
//!
//! The capture files of a failing test are kept and named in the failure.
//! With `EAPAY_FUZZ_SEEDS=DIR` a capture that passes gives the fuzz targets
//! its packets as seeds (`capture/seeds.rs`).
//! [`Capture`] judges when it is dropped (not while the test is already
//! failing). tshark ignores `WIRESHARK_DATA_DIR` and `WIRESHARK_CONFIG_DIR`
//! as root, so it runs as `nobody` then; dumpcap captures as root.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use aaa_proto::radius::{self, Code};

use crate::{find_in_path, interop_required, repo_root, run_with_timeout, ToolOutput, TOOL_TIMEOUT};

mod seeds;

/// A RADIUS server port in the capture and what to hold it to.
#[derive(Debug, Clone)]
pub struct RadiusPort {
    pub port: u16,
    /// Its shared secret (tshark checks Response Authenticators with it).
    pub secret: String,
    /// eapay-server answers here: every reply must carry a correct
    /// Message-Authenticator as its first attribute.
    pub eapay: bool,
}

/// A RADIUS-over-TLS port of eapay-server in the capture (secret
/// "radsec", RFC 6614 §2.3).
#[derive(Debug, Clone)]
pub struct RadsecPort {
    pub port: u16,
    /// The NSS key log the TLS client wrote (`SSLKEYLOGFILE` format), read
    /// when the capture is judged; with it every RADIUS packet inside is
    /// judged as over UDP, and eapay-server's replies must carry their
    /// Message-Authenticator first.
    pub keylog: Option<PathBuf>,
}

/// A running capture of a test's traffic; judged when dropped.
pub struct Capture {
    test: String,
    dumpcap: Dumpcap,
    /// A socket of our own whose port is in the capture filter: a datagram
    /// to it, once it is in the file, proves that everything before it is.
    marker: UdpSocket,
    work: Option<tempfile::TempDir>,
    pcap: PathBuf,
    radius: Vec<RadiusPort>,
    diameter: Vec<u16>,
    radsec: Vec<RadsecPort>,
    /// The end marker is captured and dumpcap stopped.
    finished: bool,
}

/// dumpcap capturing loopback into a file; stopped (SIGINT, so it finishes
/// the file) and waited for by [`Dumpcap::stop`] or when dropped.
///
/// dumpcap writes to a pipe, not to the file: it flushes a pipe after every
/// packet, a file only now and then, and what has been captured must be
/// readable while it runs ([`Dumpcap::has_captured`]). A thread copies the
/// pipe into the file.
pub struct Dumpcap {
    child: Child,
    stopped: bool,
    captured: Arc<Mutex<Vec<u8>>>,
    copier: Option<std::thread::JoinHandle<()>>,
}

impl Dumpcap {
    /// Starts capturing what matches the capture `filter` on `lo` into
    /// `file`, and waits until dumpcap says it captures; `Err` with its
    /// words if it cannot.
    pub fn start(filter: &str, file: &Path) -> Result<Dumpcap, String> {
        let dumpcap = dumpcap().ok_or("no dumpcap (apt-get install tshark)")?;
        let mut cmd = Command::new(&dumpcap);
        cmd.args(["-q", "-i", "lo", "-f", filter, "-w", "-"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut out = std::fs::File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", dumpcap.display()))?;
        let captured = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let copier = {
            let captured = captured.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 65536];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 || out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    captured.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
                }
                let _ = out.flush();
            })
        };
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Dumpcap { child, stopped: false, captured, copier: Some(copier) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("Capturing on") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    running.stop();
                    return Err(format!("dumpcap did not start capturing on lo: {}", said.join(" / ")));
                }
            }
        }
        // The socket is bound before that line; a little slack for the filter.
        std::thread::sleep(Duration::from_millis(150));
        Ok(running)
    }

    /// SIGINT (dumpcap finishes the file), then waits.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        if let Some(copier) = self.copier.take() {
            let _ = copier.join();
        }
    }

    /// Whether these octets are in a packet captured so far.
    pub fn has_captured(&self, octets: &[u8]) -> bool {
        let captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        captured.windows(octets.len()).any(|w| w == octets)
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the tests run as root (dumpcap then always can capture on lo).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn dumpcap() -> Option<PathBuf> {
    find_in_path("dumpcap").or_else(|| Some(PathBuf::from("/usr/bin/dumpcap")).filter(|p| p.is_file()))
}

/// The name of the running test (libtest names its thread after it).
fn test_name() -> String {
    std::thread::current().name().filter(|n| *n != "main").unwrap_or("capture").replace("::", "-")
}

impl Capture {
    /// Starts capturing the UDP `radius` ports and TCP `diameter` ports on
    /// `lo`. Without tshark/dumpcap (or the right to capture) it prints a
    /// `SKIP:` line and returns None, unless `EAPAY_REQUIRE_INTEROP=1`.
    pub fn start(radius: Vec<RadiusPort>, diameter: Vec<u16>) -> Option<Capture> {
        Capture::start_with_radsec(radius, diameter, Vec::new())
    }

    /// [`Capture::start`] with RADIUS-over-TLS ports (TCP) as well.
    pub fn start_with_radsec(radius: Vec<RadiusPort>, diameter: Vec<u16>, radsec: Vec<RadsecPort>) -> Option<Capture> {
        let test = test_name();
        let missing = |what: &str| -> Option<Capture> {
            if interop_required() {
                panic!("EAPAY_REQUIRE_INTEROP=1 but the capture of {test} cannot run: {what}");
            }
            eprintln!("SKIP: capture of {test}: {what}");
            None
        };
        if find_in_path("tshark").is_none() {
            return missing("no tshark (apt-get install tshark)");
        }
        let work = tempfile::Builder::new().prefix(&format!("eapay-capture-{test}-")).tempdir().expect("temp dir");
        {
            use std::os::unix::fs::PermissionsExt;
            // Readable by the unprivileged user that decodes.
            std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let pcap = work.path().join("capture.pcapng");
        let marker = UdpSocket::bind("127.0.0.1:0").expect("bind the marker socket");
        let marker_port = marker.local_addr().expect("marker address").port();
        let filter = radius
            .iter()
            .map(|r| format!("udp port {}", r.port))
            .chain(diameter.iter().map(|p| format!("tcp port {p}")))
            .chain(radsec.iter().map(|r| format!("tcp port {}", r.port)))
            .chain([format!("udp port {marker_port}")])
            .collect::<Vec<_>>()
            .join(" or ");
        let dumpcap = match Dumpcap::start(&filter, &pcap) {
            Ok(d) => d,
            // Capturing on lo needs root (or capabilities); as root it must work.
            Err(why) if interop_required() || is_root() => panic!("the capture of {test}: {why}"),
            Err(why) => return missing(&why),
        };
        let capture =
            Capture { test, dumpcap, marker, work: Some(work), pcap, radius, diameter, radsec, finished: false };
        // The filter is attached once a datagram after it is in the file.
        if let Err(why) = capture.mark("start") {
            panic!("the capture of {}: {why}", capture.test);
        }
        Some(capture)
    }

    /// Sends a marker datagram and waits until dumpcap has captured it:
    /// the kernel delivers packets to dumpcap in batches, so a capture
    /// stopped right after a test's last reply could miss that reply.
    fn mark(&self, what: &str) -> Result<(), String> {
        let token = format!("eapay-capture-{what}-{}", hex::encode(rand::random::<[u8; 8]>()));
        let to = self.marker.local_addr().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent = Instant::now() - Duration::from_secs(1);
        loop {
            // Sent again now and then: the first may precede the filter.
            if sent.elapsed() >= Duration::from_millis(250) {
                // Larger than dumpcap's output buffer, so that its write
                // goes out at once rather than when the buffer fills.
                let mut datagram = token.as_bytes().to_vec();
                datagram.resize(60_000, b'.');
                self.marker.send_to(&datagram, to).map_err(|e| e.to_string())?;
                sent = Instant::now();
            }
            if self.dumpcap.has_captured(token.as_bytes()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("dumpcap did not capture the {what} marker within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the capture and judges it now; panics with the findings and
    /// keeps the capture files.
    pub fn judge(mut self) {
        self.judge_now();
    }

    /// Stops the capture (everything sent so far is in the file) and runs
    /// tshark on it with the same dissection the judge uses (dictionaries,
    /// ports, TLS keys) and `args`; the capture is still judged when
    /// dropped.
    pub fn tshark(&mut self, args: &[&str]) -> ToolOutput {
        self.finish();
        let work = self.work.as_ref().expect("the capture is not judged yet").path().to_owned();
        Judge::new(&work, &self.pcap, &self.radius, &self.diameter, &self.radsec).tshark(args)
    }

    /// Waits for the end marker, then stops dumpcap; once.
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        // The last replies are still on their way when a test ends.
        std::thread::sleep(Duration::from_millis(50));
        if let Err(why) = self.mark("end") {
            panic!("the capture of {}: {why}", self.test);
        }
        self.dumpcap.stop();
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.pcap, std::fs::Permissions::from_mode(0o644));
    }

    fn judge_now(&mut self) {
        if self.work.is_none() {
            // Judged already (`judge`, then the drop).
            return;
        }
        self.finish();
        let Some(work) = self.work.take() else { return };
        let judge = Judge::new(work.path(), &self.pcap, &self.radius, &self.diameter, &self.radsec);
        let findings = judge.findings();
        if findings.is_empty() {
            if let Some(dir) = std::env::var_os(seeds::SEEDS_ENV) {
                seeds::write(Path::new(&dir), |args| judge.tshark(args).stdout);
            }
            return;
        }
        let kept = work.keep();
        panic!(
            "the capture of {} has {} finding(s) (kept in {}):\n{}",
            self.test,
            findings.len(),
            kept.display(),
            findings.join("\n")
        );
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dumpcap.stop();
            if let Some(work) = self.work.take() {
                let kept = work.keep();
                eprintln!("the capture of the failed test {} is kept in {}", self.test, kept.display());
            }
            return;
        }
        self.judge_now();
    }
}

/// (server port, client port, identifier): what a RADIUS reply is matched by.
type RequestKey = (u16, u16, u8);

/// What the pairing of eapay-server's replies with their requests found.
struct Pairs {
    findings: Vec<String>,
    diameter_seen: bool,
    /// Replies tshark pairs wrongly (verified here against their request):
    /// those that answer an earlier request than the last one with their
    /// identifier (the client reused it while the server was silent), and
    /// answers to a Status-Server whose identifier an earlier request had.
    reused: Vec<u64>,
}

/// tshark over one capture, with eapay's dictionaries.
struct Judge<'a> {
    work: &'a Path,
    pcap: &'a Path,
    radius: &'a [RadiusPort],
    diameter: &'a [u16],
    radsec: &'a [RadsecPort],
    data_dir: PathBuf,
}

impl<'a> Judge<'a> {
    fn new(
        work: &'a Path,
        pcap: &'a Path,
        radius: &'a [RadiusPort],
        diameter: &'a [u16],
        radsec: &'a [RadsecPort],
    ) -> Self {
        let data_dir = work.join("wireshark");
        // Made once per capture ([`Capture::tshark`] may have made it).
        if !data_dir.exists() {
            data_dir_with_eapay(&wireshark_data_dir(), &data_dir);
        }
        // RADIUS dictionaries are read from the personal configuration
        // directory's radius/dictionary.
        let radius_dir = work.join("config/radius");
        std::fs::create_dir_all(&radius_dir).expect("create the tshark configuration");
        // Wireshark resolves $INCLUDE within that directory.
        std::fs::copy(repo_root().join("dictionaries/radius/dictionary.eapay"), radius_dir.join("dictionary.eapay"))
            .expect("copy dictionary.eapay");
        std::fs::write(radius_dir.join("dictionary"), "$INCLUDE dictionary.eapay\n").expect("write radius/dictionary");
        {
            use std::os::unix::fs::PermissionsExt;
            for dir in [work.join("config"), radius_dir.clone()] {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            }
        }
        if !radsec.is_empty() {
            write_radsec_decoding(work, radsec);
        }
        Self { work, pcap, radius, diameter, radsec, data_dir }
    }

    /// tshark with the capture and every port decoded as its protocol.
    fn tshark(&self, extra: &[&str]) -> ToolOutput {
        let mut cmd = tshark_command();
        cmd.arg("-r").arg(self.pcap);
        for r in self.radius {
            cmd.args(["-d", &format!("udp.port=={},radius", r.port)]);
        }
        for p in self.diameter {
            cmd.args(["-d", &format!("tcp.port=={p},diameter")]);
        }
        if !self.radsec.is_empty() {
            let script = self.work.join("radsec.lua");
            let keylog = self.work.join("keylog.txt");
            cmd.arg("-X").arg(format!("lua_script:{}", script.display()));
            cmd.arg("-o").arg(format!("tls.keylog_file:{}", keylog.display()));
            for r in self.radsec {
                cmd.args(["-d", &format!("tcp.port=={},tls", r.port)]);
            }
        }
        cmd.args(extra)
            .env("WIRESHARK_DATA_DIR", &self.data_dir)
            .env("WIRESHARK_CONFIG_DIR", self.work.join("config"))
            .env("HOME", self.work);
        run_with_timeout(cmd, None, TOOL_TIMEOUT)
    }

    fn findings(&self) -> Vec<String> {
        let mut findings = Vec::new();
        let pairs = self.message_authenticators();
        // tshark pairs a reply with the last request of its identifier; a
        // client that reused an identifier for a request the server had not
        // answered yet (FreeRADIUS, once a paused home server looks dead)
        // gets replies tshark pairs wrongly. Those replies were verified
        // against each candidate request above instead.
        let reused = match pairs.reused.is_empty() {
            true => String::new(),
            false => {
                let frames = pairs.reused.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
                format!(" && !(frame.number in {{{frames}}})")
            }
        };
        // Response Authenticators are checked with one secret per run.
        let mut by_secret: HashMap<&str, Vec<String>> = HashMap::new();
        for r in self.radius {
            by_secret.entry(r.secret.as_str()).or_default().push(format!("udp.port=={}", r.port));
        }
        for r in self.radsec {
            by_secret.entry(RADSEC_SECRET).or_default().push(format!("tcp.port=={}", r.port));
        }
        // Malformed or erroneous packets, invalid Response Authenticators,
        // and attributes tshark cannot name (an eapay one without the
        // dictionary shows as Unknown-Attribute): one tshark run per secret,
        // the Diameter ports judged in the first.
        let bad = "_ws.malformed || _ws.expert.severity >= error";
        let mut diameter = (!self.diameter.is_empty()).then(|| {
            let on = self.diameter.iter().map(|p| format!("tcp.port=={p}")).collect::<Vec<_>>().join(" || ");
            format!("(({on}) && ({bad}))")
        });
        let mut passes: Vec<(Option<&str>, String)> = by_secret
            .iter()
            .map(|(secret, ports)| {
                let on = ports.join(" || ");
                let radius = format!("(({on}) && ({bad} || (radius.authenticator.invalid == 1{reused})))");
                let filter = match diameter.take() {
                    Some(d) => format!("{radius} || {d}"),
                    None => radius,
                };
                (Some(*secret), filter)
            })
            .collect();
        if let Some(d) = diameter {
            passes.push((None, d));
        }
        for (secret, filter) in passes {
            let prefs: Vec<String> = match secret {
                Some(s) => {
                    vec![
                        "-o".into(),
                        format!("radius.shared_secret:{s}"),
                        "-o".into(),
                        "radius.validate_authenticator:TRUE".into(),
                    ]
                }
                None => Vec::new(),
            };
            let mut args: Vec<&str> = prefs.iter().map(String::as_str).collect();
            args.extend(["-Y", &filter]);
            let out = self.tshark(&args);
            if !out.success() || !out.stderr.trim().is_empty() {
                findings.push(format!("tshark failed or complained ({filter}):\n{}", out.tail(20)));
                continue;
            }
            findings
                .extend(out.stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("tshark: {}", l.trim())));
        }
        findings.extend(self.radius_names());
        findings.extend(pairs.findings);
        findings.extend(self.radsec_replies());
        if pairs.diameter_seen {
            findings.extend(self.diameter_names());
        }
        findings
    }

    /// Every reply from eapay-server carries a correct Message-Authenticator
    /// as its first attribute (checked against every captured request with
    /// its identifier from that client port: one of them is the request it
    /// answers); also says whether any Diameter was captured.
    fn message_authenticators(&self) -> Pairs {
        let eapay: Vec<&RadiusPort> = self.radius.iter().filter(|r| r.eapay).collect();
        let out = self.tshark(&[
            "-Y",
            "udp || diameter",
            "-T",
            "fields",
            "-E",
            "separator=;",
            "-e",
            "frame.number",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "udp.payload",
            "-e",
            "diameter.cmd.code",
        ]);
        if !out.success() {
            return Pairs {
                findings: vec![format!("tshark -T fields failed:\n{}", out.tail(20))],
                diameter_seen: !self.diameter.is_empty(),
                reused: Vec::new(),
            };
        }
        let mut findings = Vec::new();
        let mut diameter_seen = false;
        let mut reused = Vec::new();
        let mut requests: HashMap<RequestKey, Vec<(Code, [u8; 16])>> = HashMap::new();
        for line in out.stdout.lines() {
            let f: Vec<&str> = line.split(';').collect();
            let [frame, src, dst, payload, diameter] = f.as_slice() else { continue };
            if !diameter.is_empty() {
                diameter_seen = true;
                continue;
            }
            let (Ok(src), Ok(dst)) = (src.parse::<u16>(), dst.parse::<u16>()) else { continue };
            let Ok(bytes) = hex::decode(payload.replace(':', "")) else { continue };
            if bytes.len() < 20 {
                findings.push(format!("frame {frame}: {} octets, not RADIUS", bytes.len()));
                continue;
            }
            let (code, id) = (bytes[0], bytes[1]);
            let mut authenticator = [0u8; 16];
            authenticator.copy_from_slice(&bytes[4..20]);
            match eapay.iter().find(|r| r.port == src || r.port == dst) {
                Some(r) if r.port == dst => {
                    let code = Code::from_u8(code).unwrap_or(Code::AccessRequest);
                    requests.entry((dst, src, id)).or_default().push((code, authenticator));
                }
                Some(r) => {
                    let Some(candidates) = requests.get(&(src, dst, id)) else {
                        findings.push(format!("frame {frame}: a reply to no captured request"));
                        continue;
                    };
                    let verdicts: Vec<_> = candidates
                        .iter()
                        .rev()
                        .map(|(code, auth)| radius::verify_response_to(&bytes, *code, auth, r.secret.as_bytes(), true))
                        .collect();
                    // tshark pairs an Access-Accept with the last Access-Request
                    // of its identifier: the answer to a Status-Server (RFC 5997)
                    // that reuses an earlier request's identifier is paired wrongly.
                    let status_server = candidates.last().is_some_and(|(c, _)| *c == Code::StatusServer);
                    match verdicts.iter().position(Result::is_ok) {
                        Some(0) if status_server && candidates.len() > 1 => reused.push(frame.parse().unwrap_or(0)),
                        Some(0) => {}
                        Some(_) => reused.push(frame.parse().unwrap_or(0)),
                        None => {
                            if let Some(Err(e)) = verdicts.first() {
                                findings.push(format!("frame {frame}: reply from eapay-server: {e}"));
                            }
                        }
                    }
                    // The order, read from the raw bytes without our codec.
                    if bytes.get(20) != Some(&80) {
                        findings.push(format!(
                            "frame {frame}: reply from eapay-server whose first attribute is {:?}, not Message-Authenticator (80)",
                            bytes.get(20)
                        ));
                    }
                }
                None => {}
            }
        }
        Pairs { findings, diameter_seen, reused }
    }

    /// Over TLS, with keys: RADIUS was decrypted at all (else the key log
    /// did not fit and nothing inside was judged), and every reply of
    /// eapay-server has Message-Authenticator (80) as its first attribute
    /// (tshark lists a packet's attribute types in order). Its value is
    /// checked by the client that received it; tshark 4.0 cannot.
    fn radsec_replies(&self) -> Vec<String> {
        let mut findings = Vec::new();
        // A client that never connected left an empty key log, and nothing to decrypt.
        let has_keys =
            |r: &&RadsecPort| r.keylog.as_ref().is_some_and(|k| std::fs::metadata(k).is_ok_and(|m| m.len() > 0));
        for r in self.radsec.iter().filter(has_keys) {
            let out = self.tshark(&[
                "-Y",
                &format!("radius && tcp.port=={}", r.port),
                "-T",
                "fields",
                "-E",
                "separator=;",
                "-E",
                "occurrence=f",
                "-e",
                "frame.number",
                "-e",
                "tcp.srcport",
                "-e",
                "radius.code",
                "-e",
                "radius.avp.type",
            ]);
            if !out.success() {
                findings.push(format!("tshark -T fields (RADIUS over TLS) failed:\n{}", out.tail(20)));
                continue;
            }
            let mut seen = 0;
            for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
                seen += 1;
                let f: Vec<&str> = line.split(';').collect();
                let [frame, src, code, first] = f.as_slice() else { continue };
                if src.parse() == Ok(r.port) && *first != "80" {
                    findings.push(format!(
                        "frame {frame}: RADIUS/TLS reply (code {code}) from eapay-server whose first attribute is {first:?}, not Message-Authenticator (80)"
                    ));
                }
            }
            if seen == 0 {
                findings.push(format!("tshark decrypted no RADIUS on tcp port {} with the key log", r.port));
            }
        }
        findings
    }

    /// tshark shows every eapay RADIUS attribute by its name (another
    /// vendor's or a standard attribute its dictionaries lack, such as
    /// hostapd's WLAN-Reason-Code, is not ours to judge).
    fn radius_names(&self) -> Vec<String> {
        let out = self.tshark(&["-Y", "radius.avp.vendor_id == 32473 && radius.Unknown_Attribute", "-V"]);
        if !out.success() {
            return vec![format!("tshark -V failed:\n{}", out.tail(20))];
        }
        let mut findings = Vec::new();
        let mut eapay_vsa = false;
        for line in out.stdout.lines() {
            let t = line.trim_start();
            if t.starts_with("AVP: ") {
                eapay_vsa = t.contains("(32473)");
            } else if eapay_vsa && t.starts_with("VSA: t=Unknown-Attribute") {
                findings.push(format!("tshark: an eapay attribute without its name: {t}"));
            }
        }
        findings
    }

    /// tshark shows every eapay Diameter AVP by its name.
    fn diameter_names(&self) -> Vec<String> {
        let out = self.tshark(&["-Y", "diameter", "-V"]);
        if !out.success() {
            return vec![format!("tshark -V failed:\n{}", out.tail(20))];
        }
        out.stdout
            .lines()
            .filter(|l| l.contains("vnd=32473") || l.contains("Unknown AVP"))
            .map(|l| format!("tshark: an AVP without its name: {}", l.trim()))
            .collect()
    }
}

/// The RADIUS-over-TLS shared secret (RFC 6614 §2.3).
const RADSEC_SECRET: &str = "radsec";

/// `work/radsec.lua`, which hands the decrypted TLS of each RadSec port to
/// the RADIUS dissector, and `work/keylog.txt`, the key logs of all of them
/// (readable by the user tshark runs as).
fn write_radsec_decoding(work: &Path, radsec: &[RadsecPort]) {
    let mut lua = String::from("-- RADIUS over TLS (RFC 6614): one RADIUS packet per TLS record.\n");
    lua.push_str("local tls_port = DissectorTable.get(\"tls.port\")\nlocal radius = Dissector.get(\"radius\")\n");
    for r in radsec {
        lua.push_str(&format!("tls_port:add({}, radius)\n", r.port));
    }
    let mut keys = Vec::new();
    for path in radsec.iter().filter_map(|r| r.keylog.as_ref()) {
        // A client that never connected wrote nothing: nothing to decrypt.
        keys.extend(std::fs::read(path).unwrap_or_default());
        keys.push(b'\n');
    }
    for (name, bytes) in [("radsec.lua", lua.into_bytes()), ("keylog.txt", keys)] {
        use std::os::unix::fs::PermissionsExt;
        let path = work.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
    }
}

/// tshark, run as `nobody` when we are root: as root it ignores
/// `WIRESHARK_DATA_DIR` and `WIRESHARK_CONFIG_DIR`, which carry our
/// dictionaries.
pub fn tshark_command() -> Command {
    let tshark = find_in_path("tshark").unwrap_or_else(|| PathBuf::from("tshark"));
    if !is_root() {
        return Command::new(tshark);
    }
    let runuser = find_in_path("runuser")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runuser")).filter(|p| p.is_file()))
        .expect("runuser (util-linux) to run tshark as nobody");
    let mut cmd = Command::new(runuser);
    cmd.args(["-u", "nobody", "--"]).arg(tshark);
    cmd
}

/// Wireshark's data directory (`tshark -G folders`: "Global configuration").
pub fn wireshark_data_dir() -> PathBuf {
    let tshark = find_in_path("tshark").unwrap_or_else(|| PathBuf::from("tshark"));
    let out = Command::new(tshark).args(["-G", "folders"]).output().expect("tshark -G folders");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Global configuration:").map(|d| PathBuf::from(d.trim())))
        .filter(|d| d.join("diameter/dictionary.xml").is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/share/wireshark"))
}

/// A Wireshark data directory at `to`: everything of `global` (symbolic
/// links), with diameter/dictionary.xml including the repository's eapay.xml
/// (`<!ENTITY Eapay SYSTEM "eapay.xml">` and `&Eapay;`).
pub fn data_dir_with_eapay(global: &Path, to: &Path) {
    use std::os::unix::fs::symlink;
    let diameter = to.join("diameter");
    std::fs::create_dir_all(&diameter).expect("create the data dir");
    for entry in std::fs::read_dir(global).expect("read the Wireshark data dir").flatten() {
        if entry.file_name() != "diameter" {
            symlink(entry.path(), to.join(entry.file_name())).expect("symlink");
        }
    }
    for entry in std::fs::read_dir(global.join("diameter")).expect("read diameter/").flatten() {
        if entry.file_name() != "dictionary.xml" {
            symlink(entry.path(), diameter.join(entry.file_name())).expect("symlink");
        }
    }
    std::fs::copy(repo_root().join("dictionaries/diameter/eapay.xml"), diameter.join("eapay.xml"))
        .expect("copy eapay.xml");
    let stock = std::fs::read_to_string(global.join("diameter/dictionary.xml")).expect("Wireshark's dictionary.xml");
    // The entity goes into the internal DTD subset, the reference after the
    // others, just before </dictionary>.
    let subset_end = stock.find("]>").expect("dictionary.xml has an internal DTD subset");
    let close = stock.rfind("</dictionary>").expect("dictionary.xml ends with </dictionary>");
    let mut text = String::with_capacity(stock.len() + 100);
    text.push_str(&stock[..subset_end]);
    text.push_str("\t<!ENTITY Eapay\t\tSYSTEM \"eapay.xml\">\n");
    text.push_str(&stock[subset_end..close]);
    text.push_str("\t&Eapay;\n");
    text.push_str(&stock[close..]);
    std::fs::write(diameter.join("dictionary.xml"), text).expect("write dictionary.xml");
}
