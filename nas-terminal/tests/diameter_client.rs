//! The terminal's Diameter client against small in-test responders on
//! loopback, each a real `aaa_proto::diameter::peer::Peer::responder` on a
//! TCP listener that answers any application request with its Session-Id and
//! Result-Code 2001, or can be told to stay silent or to drop the connection.
//! The watchdog is not exercised here: the Peer keeps Tw at 6 s or more.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aaa_proto::diameter::message::{Limits, Message, OwnedAvp, FLAG_RETRANSMIT};
use aaa_proto::diameter::peer::{Action, LocalPeer, Peer, PeerConfig, Remote, Timers};
use aaa_proto::dictionary::diameter::{application, avp, command, ResultCode};
use nas_terminal::diameter::{DiameterClient, DiameterError, DiameterSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What a responder does with an application request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answer with the request's Session-Id and Result-Code 2001.
    Answer,
    /// Never answer (the connection and its watchdog stay up).
    Silent,
    /// Close the connection without answering.
    Drop,
}

/// An application request as the responder received it.
#[derive(Debug, Clone)]
struct Seen {
    flags: u8,
    end_to_end: u32,
    session_id: Option<String>,
}

impl Seen {
    fn retransmit(&self) -> bool {
        self.flags & FLAG_RETRANSMIT != 0
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Seen>,
    /// The client as its CER described it, per connection.
    opened: Vec<Remote>,
    /// The responder Peer's Close reasons.
    closed: Vec<String>,
}

struct Responder {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    log: Arc<Mutex<Log>>,
    task: JoinHandle<()>,
}

impl Responder {
    async fn start(mode: Mode) -> Self {
        Self::start_on(SocketAddr::new(LOCALHOST, 0), mode, true).await
    }

    /// `known`: what the Peer's check of the CER's sender says.
    async fn start_on(addr: SocketAddr, mode: Mode, known: bool) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind the responder");
        let addr = listener.local_addr().expect("local address");
        let mode = Arc::new(Mutex::new(mode));
        let log = Arc::new(Mutex::new(Log::default()));
        let config = Arc::new(PeerConfig {
            local: LocalPeer {
                origin_host: "aaa.issuer.example".into(),
                origin_realm: "issuer.example".into(),
                host_ip_addresses: vec![LOCALHOST],
                vendor_id: aaa_proto::dictionary::eapay::VENDOR_ID,
                product_name: "test responder".into(),
                firmware_revision: None,
                origin_state_id: 7,
                auth_applications: vec![application::EAP],
                acct_applications: vec![application::ACCOUNTING],
            },
            timers: Timers::default(),
            limits: Limits::default(),
        });
        let (m, l) = (Arc::clone(&mode), Arc::clone(&log));
        let task = tokio::spawn(async move {
            // Dropped with the task (stop): every connection goes with it.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, Arc::clone(&config), known, Arc::clone(&m), Arc::clone(&l)));
            }
        });
        Responder { addr, mode, log, task }
    }

    /// Stops listening and drops every connection (no DPR: a crash).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().requests.clone()
    }
}

async fn serve(stream: TcpStream, config: Arc<PeerConfig>, known: bool, mode: Arc<Mutex<Mode>>, log: Arc<Mutex<Log>>) {
    let mut peer = Peer::responder(config, Box::new(move |_, _| known), Instant::now(), rand::random());
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let wake = peer.poll_timeout().map(tokio::time::Instant::from_std);
        let actions = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => peer.handle_bytes(&buf[..n], Instant::now()),
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                peer.handle_timeout(Instant::now())
            }
        };
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Action::Open(remote) => log.lock().unwrap().opened.push(remote),
                Action::Close { reason } => {
                    log.lock().unwrap().closed.push(reason);
                    return;
                }
                Action::Deliver(request) if request.is_request() => {
                    let session_id = request.session_id().map(str::to_string);
                    log.lock().unwrap().requests.push(Seen {
                        flags: request.flags,
                        end_to_end: request.end_to_end,
                        session_id: session_id.clone(),
                    });
                    let mode = *mode.lock().unwrap();
                    match mode {
                        Mode::Answer => {
                            let mut answer = Message::answer_to(&request);
                            if let Some(sid) = &session_id {
                                answer.push(OwnedAvp::utf8(avp::SESSION_ID, None, true, sid));
                            }
                            answer
                                .push(OwnedAvp::u32(avp::RESULT_CODE, None, true, ResultCode::Success.value()))
                                .push(OwnedAvp::utf8(avp::ORIGIN_HOST, None, true, "aaa.issuer.example"))
                                .push(OwnedAvp::utf8(avp::ORIGIN_REALM, None, true, "issuer.example"));
                            queue
                                .extend(peer.send_answer(&answer, Instant::now()).expect("answer a delivered request"));
                        }
                        Mode::Silent => {}
                        Mode::Drop => return,
                    }
                }
                Action::Deliver(_) => {}
            }
        }
    }
}

/// Fast settings: answers within 300 ms, 2 attempts, reconnect after 100 ms.
fn settings(servers: &[SocketAddr]) -> DiameterSettings {
    let mut s = DiameterSettings::new("nas.merchant.example", "merchant.example", "issuer.example", servers.to_vec());
    s.timeout = Duration::from_millis(300);
    s.attempts = 2;
    s.reconnect = Duration::from_millis(100);
    s.timers = Timers {
        tw: Duration::from_secs(30),
        cer_timeout: Duration::from_secs(1),
        dpa_timeout: Duration::from_millis(500),
    };
    s
}

/// A DER skeleton (the client does not look inside).
fn der(client: &DiameterClient) -> Message {
    let session_id = client.new_session_id();
    let mut m = client.new_request(command::DIAMETER_EAP, application::EAP, &session_id);
    m.push(OwnedAvp::u32(avp::AUTH_APPLICATION_ID, None, true, application::EAP));
    m
}

/// Waits (up to 3 s) until the client has exactly these connections open.
async fn wait_open(client: &DiameterClient, expected: &[SocketAddr]) {
    let until = Instant::now() + Duration::from_secs(3);
    while client.open_servers() != expected {
        assert!(Instant::now() < until, "open: {:?}, expected {expected:?}", client.open_servers());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 3 s) for `condition`.
async fn eventually(condition: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(3);
    while !condition() {
        assert!(Instant::now() < until, "condition not met within 3 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn connect_and_request() {
    let server = Responder::start(Mode::Answer).await;
    let client = DiameterClient::connect(settings(&[server.addr])).await.expect("connect");
    assert_eq!(client.open_servers(), [server.addr]);

    let request = der(&client);
    let session_id = request.session_id().unwrap().to_string();
    let fut = client.request(request.clone());
    assert_send(&fut);
    let (answer, index) = fut.await.expect("answer");
    assert_eq!(index, 0);
    assert!(!answer.is_request() && !answer.is_error());
    assert_eq!(answer.session_id(), Some(session_id.as_str()));
    assert_eq!(answer.result_code(), Some(2001));
    assert_eq!((answer.command, answer.application), (command::DIAMETER_EAP, application::EAP));
    assert_eq!(answer.end_to_end, request.end_to_end);

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].retransmit());
    assert_eq!(seen[0].session_id.as_deref(), Some(session_id.as_str()));

    // The CER described the terminal as configured.
    let opened = server.log.lock().unwrap().opened.clone();
    assert_eq!(opened.len(), 1);
    let cer = &opened[0];
    assert_eq!((cer.origin_host.as_str(), cer.origin_realm.as_str()), ("nas.merchant.example", "merchant.example"));
    assert_eq!(cer.host_ip_addresses, [LOCALHOST]);
    assert_eq!(cer.product_name, "eapay-terminal");
    assert!(cer.origin_state_id.is_some());
    assert_eq!((cer.auth_applications.as_slice(), cer.acct_applications.as_slice()), (&[5][..], &[3][..]));

    // Session-Ids: <origin_host>;<high>;<low>, all different; End-to-End ids too.
    let a = client.new_session_id();
    let b = client.new_session_id();
    assert_ne!(a, b);
    let parts: Vec<&str> = a.split(';').collect();
    assert_eq!(parts.len(), 3, "{a}");
    assert_eq!(parts[0], "nas.merchant.example");
    assert!(parts[1].parse::<u32>().is_ok() && parts[2].parse::<u32>().is_ok(), "{a}");
    assert_ne!(client.next_end_to_end(), client.next_end_to_end());
    // The Destination-Realm from the settings is in new requests.
    let dest = request.find(avp::DESTINATION_REALM, None).and_then(|a| a.as_str().ok());
    assert_eq!(dest, Some("issuer.example"));

    // Not a request, or a base-protocol request: refused before anything is sent.
    let answer_like = Message::answer_to(&request);
    assert!(matches!(client.request(answer_like).await, Err(DiameterError::Invalid(_))));
    let mut dwr = der(&client);
    dwr.command = command::DEVICE_WATCHDOG;
    assert!(matches!(client.request(dwr).await, Err(DiameterError::Invalid(_))));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_dropped_connection_fails_over_at_once_with_the_t_flag() {
    let first = Responder::start(Mode::Drop).await;
    let second = Responder::start(Mode::Answer).await;
    let mut s = settings(&[first.addr, second.addr]);
    // Long enough to tell "at once" from "after the timeout".
    s.timeout = Duration::from_secs(2);
    let client = DiameterClient::connect(s).await.expect("connect");
    wait_open(&client, &[first.addr, second.addr]).await;

    let request = der(&client);
    let started = Instant::now();
    let (answer, index) = client.request(request.clone()).await.expect("answered by the second server");
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(index, 1);
    assert_eq!(answer.result_code(), Some(2001));
    assert_eq!(answer.session_id(), request.session_id());

    let (one, two) = (first.requests(), second.requests());
    assert_eq!(one.len(), 1);
    assert!(!one[0].retransmit());
    assert_eq!(two.len(), 1);
    assert!(two[0].retransmit(), "the failed-over request carries T");
    assert_eq!(two[0].end_to_end, request.end_to_end);
    assert_eq!(one[0].end_to_end, request.end_to_end);
}

#[tokio::test]
async fn a_silent_server_fails_over_after_the_timeout() {
    let first = Responder::start(Mode::Silent).await;
    let second = Responder::start(Mode::Answer).await;
    let client = DiameterClient::connect(settings(&[first.addr, second.addr])).await.expect("connect");
    wait_open(&client, &[first.addr, second.addr]).await;

    let request = der(&client);
    let started = Instant::now();
    let (answer, index) = client.request(request.clone()).await.expect("answered by the second server");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited {:?}", started.elapsed());
    assert_eq!(index, 1);
    assert_eq!(answer.end_to_end, request.end_to_end);
    let (one, two) = (first.requests(), second.requests());
    assert_eq!((one.len(), two.len()), (1, 1));
    assert!(!one[0].retransmit() && two[0].retransmit());
    assert_eq!(two[0].end_to_end, one[0].end_to_end);
    // The silent connection stays open: only the request moved.
    assert_eq!(client.open_servers(), [first.addr, second.addr]);
}

#[tokio::test]
async fn request_on_stays_on_its_server() {
    let first = Responder::start(Mode::Silent).await;
    let second = Responder::start(Mode::Answer).await;
    let client = DiameterClient::connect(settings(&[first.addr, second.addr])).await.expect("connect");
    wait_open(&client, &[first.addr, second.addr]).await;

    let request = der(&client);
    let e = client.request_on(0, request.clone()).await.expect_err("the first server never answers");
    assert!(matches!(e, DiameterError::Timeout { attempts: 2, .. }), "{e}");
    assert!(e.to_string().contains(&first.addr.to_string()), "{e}");
    assert!(second.requests().is_empty(), "never sent elsewhere");
    let one = first.requests();
    assert_eq!(one.len(), 2);
    assert!(!one[0].retransmit() && one[1].retransmit());
    assert_eq!((one[0].end_to_end, one[1].end_to_end), (request.end_to_end, request.end_to_end));

    // Once the server answers again, the conversation goes on there.
    first.set_mode(Mode::Answer);
    let answer = client.request_on(0, der(&client)).await.expect("answer");
    assert_eq!(answer.result_code(), Some(2001));
    assert_eq!(first.requests().len(), 3);
    assert!(client.request_on(1, der(&client)).await.is_ok());
    assert!(matches!(
        client.request_on(2, der(&client)).await,
        Err(DiameterError::NoSuchServer { index: 2, count: 2 })
    ));
}

#[tokio::test]
async fn request_on_waits_for_its_server_to_reconnect() {
    let server = Responder::start(Mode::Drop).await;
    let mut s = settings(&[server.addr]);
    s.timeout = Duration::from_secs(1);
    let client = DiameterClient::connect(s).await.expect("connect");
    let request = der(&client);
    let pending = tokio::spawn({
        let client = client.clone();
        let request = request.clone();
        async move { client.request_on(0, request).await }
    });
    // The first request drops the connection; the retransmission waits for
    // the reconnect (100 ms later) and goes over the new connection.
    eventually(|| !server.requests().is_empty()).await;
    server.set_mode(Mode::Answer);
    let answer = pending.await.unwrap().expect("answered after the reconnect");
    assert_eq!(answer.end_to_end, request.end_to_end);
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].retransmit() && seen[1].retransmit());
    assert_eq!(server.log.lock().unwrap().opened.len(), 2);
}

#[tokio::test]
async fn an_unknown_peer_is_one_clear_connect_error() {
    let server = Responder::start_on(SocketAddr::new(LOCALHOST, 0), Mode::Answer, false).await;
    let started = Instant::now();
    let e = DiameterClient::connect(settings(&[server.addr])).await.expect_err("CEA 3010");
    let line = e.to_string();
    assert!(matches!(e, DiameterError::Connect(_)), "{line}");
    assert!(line.contains("3010") && line.contains("DIAMETER_UNKNOWN_PEER"), "{line}");
    assert!(line.contains(&server.addr.to_string()), "{line}");
    assert!(!line.contains('\n'));
    // Every server failed once: no need to wait out the timeout.
    assert!(started.elapsed() < Duration::from_millis(300), "took {:?}", started.elapsed());
    let closed = server.log.lock().unwrap().closed.clone();
    assert!(closed.iter().any(|r| r.contains("DIAMETER_UNKNOWN_PEER")), "{closed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_one_clear_connect_error() {
    let addr = {
        let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap()
    };
    let e = DiameterClient::connect(settings(&[addr])).await.expect_err("nobody listens");
    let line = e.to_string();
    assert!(line.contains("cannot connect") && line.contains(&addr.to_string()), "{line}");
    assert!(matches!(DiameterClient::connect(settings(&[])).await, Err(DiameterError::NoServer)));
}

#[tokio::test]
async fn connect_succeeds_with_one_of_two_servers() {
    let dead = {
        let listener = TcpListener::bind(SocketAddr::new(LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap()
    };
    let server = Responder::start(Mode::Answer).await;
    let client = DiameterClient::connect(settings(&[dead, server.addr])).await.expect("one is enough");
    let (_, index) = client.request(der(&client)).await.expect("answer");
    assert_eq!(index, 1);
    assert_eq!(client.open_servers(), [server.addr]);
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let server = Responder::start(Mode::Answer).await;
    let addr = server.addr;
    let client = DiameterClient::connect(settings(&[addr])).await.expect("connect");
    assert!(client.request(der(&client)).await.is_ok());

    server.stop().await;
    wait_open(&client, &[]).await;
    // Nothing to send on: after the attempts' time, a clear error.
    let e = client.request(der(&client)).await.expect_err("server down");
    assert!(matches!(e, DiameterError::NoOpenPeer { .. }), "{e}");

    let restarted = Responder::start_on(addr, Mode::Answer, true).await;
    wait_open(&client, &[addr]).await;
    let (answer, index) = client.request(der(&client)).await.expect("answer after the reconnect");
    assert_eq!((index, answer.result_code()), (0, Some(2001)));
    assert_eq!(restarted.requests().len(), 1);
    assert_eq!(restarted.log.lock().unwrap().opened.len(), 1);
}

#[tokio::test]
async fn close_sends_dpr() {
    let first = Responder::start(Mode::Answer).await;
    let second = Responder::start(Mode::Answer).await;
    let client = DiameterClient::connect(settings(&[first.addr, second.addr])).await.expect("connect");
    wait_open(&client, &[first.addr, second.addr]).await;

    let started = Instant::now();
    client.close().await;
    // Each responder answered the DPR with a DPA: no DPA timeout was waited out.
    assert!(started.elapsed() < Duration::from_millis(400), "took {:?}", started.elapsed());
    for server in [&first, &second] {
        // The responder logs its Close right after writing the DPA.
        eventually(|| !server.log.lock().unwrap().closed.is_empty()).await;
        let closed = server.log.lock().unwrap().closed.clone();
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert!(closed[0].contains("DPR") && closed[0].contains("Disconnect-Cause 0"), "{closed:?}");
    }
    assert!(client.open_servers().is_empty());
    assert!(matches!(client.request(der(&client)).await, Err(DiameterError::Closed)));
    // A second close returns at once.
    client.close().await;
    // And nothing reconnects.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(first.log.lock().unwrap().opened.len(), 1);
}
