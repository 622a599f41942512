//! RADIUS over TLS (RFC 6614, "RadSec"), the terminal's side: one
//! long-lived TLS connection per server carries authentication and
//! accounting alike (§2.1), the shared secret is "radsec" (§2.3), and the
//! terminal proves who it is with its certificate (`eapay-server terminal
//! issue`), not with a secret.
//!
//! - **Trust**: [`crate::tls`]: the issuer CA, the serverAuth purpose and,
//!   if given, the server's name.
//! - **Connecting** is the TLS handshake and then a Status-Server (RFC 5997)
//!   that must be answered: in TLS 1.3 the server judges the terminal's
//!   certificate after the client's half of the handshake is over, so only
//!   an answer proves the server took us (an unregistered key gets its
//!   connection closed, an expired certificate an alert). A failed attempt
//!   is remembered for [`HOLDOFF`], so a down server fails every waiting
//!   conversation at once instead of each trying its own connection.
//! - **Multiplexing**: the requests of many conversations share one
//!   connection, each under an identifier of its own (at most
//!   [`MAX_OUTSTANDING`] at once; more wait for one to free); replies are
//!   matched by identifier and then verified by their request's waiter
//!   exactly as over UDP (Message-Authenticator first and valid, Response
//!   Authenticator valid). A reply for an identifier with nothing
//!   outstanding is dropped and counted ([`LinkStats::unmatched`]).
//! - **No retransmission** (RFC 6613 §2.6.x: TCP is reliable): a request
//!   waits its whole time. If its connection closes, or it stays silent
//!   (not one reply on it) for that time, the connection is given up and
//!   the request is sent once more on a fresh one. A request that goes
//!   unanswered on a connection that keeps answering others was dropped by
//!   the server on purpose; sending it again there would only meet the
//!   server's duplicate cache, so the caller fails over instead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aaa_proto::radius::{self, Code, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::client::{ClientError, Dropped};
use crate::tls::{one_line, TlsContext, TlsStream};

/// The shared secret of RADIUS over TLS (RFC 6614 §2.3).
pub const SECRET: &[u8] = b"radsec";
/// Requests outstanding on one connection at most: the identifier is one octet.
pub const MAX_OUTSTANDING: usize = 256;
/// After a failed connection attempt, requests to that server fail at once
/// for this long rather than each trying again.
pub const HOLDOFF: Duration = Duration::from_secs(1);
/// Packets gathered into one TLS write at most, in bytes.
const WRITE_BATCH: usize = 32 * 1024;
/// Replies queued for one waiter at most; beyond, they are dropped (a
/// well-behaved server sends one).
const WAITER_QUEUE: usize = 4;
/// How long a polite close may take.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type Stream = TlsStream;

/// What one server's link has seen, for reports.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Connections established (handshake and Status-Server answered).
    pub connections: AtomicU64,
    /// Connection attempts that failed.
    pub failed_connects: AtomicU64,
    /// Replies for an identifier with nothing outstanding, dropped.
    pub unmatched: AtomicU64,
}

/// How one request over TLS ended, short of a usable reply.
pub(crate) enum Unanswered {
    /// Sent `attempts` times (on as many connections), never answered validly.
    NoAnswer { attempts: u32, why: Option<String> },
    /// Never sent: no connection could be made.
    NoConnection(String),
}

/// One server reached over RADIUS/TLS: at most one connection at a time,
/// made when first needed and again when lost, shared by every
/// [`crate::client::RadiusClient`] built on this link.
pub struct RadsecLink {
    address: SocketAddr,
    context: Arc<TlsContext>,
    /// For the TCP connect, the handshake and the Status-Server together.
    connect_timeout: Duration,
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting; holds the last failure and when it happened.
    connecting: tokio::sync::Mutex<Option<(Instant, String)>>,
    stats: Arc<LinkStats>,
}

impl RadsecLink {
    /// A link to `address`; nothing is connected until needed (or [`Self::connect`]).
    pub fn new(address: SocketAddr, context: Arc<TlsContext>, connect_timeout: Duration) -> Self {
        Self {
            address,
            context,
            connect_timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(None),
            stats: Arc::new(LinkStats::default()),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Makes sure a connection is up; why not, if it cannot be.
    pub async fn connect(&self) -> Result<(), String> {
        self.connection().await.map(drop)
    }

    /// Closes the connection politely (TLS close_notify), if there is one.
    pub async fn close(&self) {
        let conn = self.current.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(conn) = conn {
            conn.shut_down().await;
        }
    }

    fn open_connection(&self) -> Option<Arc<Connection>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    async fn connection(&self) -> Result<Arc<Connection>, String> {
        if let Some(conn) = self.open_connection() {
            return Ok(conn);
        }
        let mut last_failure = self.connecting.lock().await;
        // Another request may have connected while this one waited.
        if let Some(conn) = self.open_connection() {
            return Ok(conn);
        }
        if let Some((at, why)) = last_failure.as_ref() {
            if at.elapsed() < HOLDOFF {
                return Err(why.clone());
            }
        }
        let attempt = tokio::time::timeout(self.connect_timeout, self.open()).await;
        let result = match attempt {
            Ok(result) => result,
            Err(_) => Err(format!("no RADIUS/TLS connection within {:?}", self.connect_timeout)),
        };
        match result {
            Ok(conn) => {
                *last_failure = None;
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                Ok(conn)
            }
            Err(why) => {
                self.stats.failed_connects.fetch_add(1, Ordering::Relaxed);
                let why = format!("{}: {why}", self.address);
                debug!(error = %why, "RADIUS/TLS connection failed");
                *last_failure = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    /// TCP, TLS, then a Status-Server the server must answer.
    async fn open(&self) -> Result<Arc<Connection>, String> {
        let tcp = TcpStream::connect(self.address).await.map_err(|e| format!("TCP connect: {e}"))?;
        // Requests are single small writes that someone waits for.
        let _ = tcp.set_nodelay(true);
        let mut stream = self.context.handshake(tcp).await?;
        let mut status = Packet::new_request(Code::StatusServer, 0);
        status.add_message_authenticator();
        let wire = radius::encode_request(&status, SECRET).map_err(|e| e.to_string())?;
        let refused = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => {
                "the server closed the connection after the TLS handshake: it does not take this terminal's \
                 certificate (is its key registered in [[radius.tls.clients]]?)"
                    .to_string()
            }
            _ => format!("the server refused this terminal's certificate: {}", one_line(&e.to_string())),
        };
        stream.write_all(&wire).await.map_err(refused)?;
        let reply = read_packet(&mut stream).await.map_err(|e| match e {
            ReadError::Io(e) => refused(e),
            ReadError::Length(len) => format!("framing lost: a RADIUS length of {len}"),
        })?;
        radius::verify_response_to(&reply, Code::StatusServer, &status.authenticator, SECRET, true)
            .map_err(|e| format!("the answer to Status-Server does not verify: {e}"))?;
        info!(server = %self.address, version = stream.ssl().version_str(), "RADIUS/TLS connected");
        Ok(Connection::start(self.address, stream, self.stats.clone()))
    }

    /// Sends `request` (its identifier assigned here, per connection) and
    /// waits up to `wait` for the verified reply; once more on a new
    /// connection if the first one closed or stayed silent (module docs).
    pub(crate) async fn exchange(
        &self,
        request: &Packet,
        wait: Duration,
        dropped: &mut Dropped,
    ) -> Result<Result<Packet, Unanswered>, ClientError> {
        let mut attempts = 0u32;
        let mut why = None;
        let unmatched_before = self.stats.unmatched.load(Ordering::Relaxed);
        for _ in 0..2 {
            let conn = match self.connection().await {
                Ok(conn) => conn,
                Err(e) => {
                    why = Some(e);
                    break;
                }
            };
            let Some(mut outstanding) = conn.register().await else { continue };
            let mut packet = request.clone();
            packet.identifier = outstanding.id;
            let bytes = radius::encode_request(&packet, SECRET)?;
            // The authenticator on the wire (an Accounting-Request's is the
            // encoder's): what the reply is checked against.
            let mut authenticator = packet.authenticator;
            if let Some(wire) = bytes.get(4..20) {
                authenticator.copy_from_slice(wire);
            }
            let replies_before = conn.replies.load(Ordering::Relaxed);
            if !conn.send(bytes).await {
                continue;
            }
            attempts += 1;
            let deadline = Instant::now() + wait;
            let timed_out = loop {
                match tokio::time::timeout_at(deadline, outstanding.replies.recv()).await {
                    Err(_) => break true,
                    Ok(None) => break false,
                    Ok(Some(reply)) => {
                        match radius::verify_response_to(&reply, packet.code, &authenticator, SECRET, true) {
                            Ok(reply) => return Ok(Ok(reply)),
                            Err(e) => {
                                warn!(server = %self.address, error = %e, "reply dropped");
                                dropped.count(&e);
                            }
                        }
                    }
                }
            };
            drop(outstanding);
            if timed_out {
                if conn.replies.load(Ordering::Relaxed) != replies_before {
                    // The server answers others on this connection: it
                    // dropped this request on purpose.
                    break;
                }
                conn.close(&format!("no reply within {wait:?}"));
            }
            debug!(server = %self.address, "RADIUS/TLS connection lost; sending again on a new one");
        }
        let unmatched = self.stats.unmatched.load(Ordering::Relaxed).saturating_sub(unmatched_before);
        dropped.wrong_identifier += u32::try_from(unmatched).unwrap_or(u32::MAX);
        Ok(Err(match (attempts, why) {
            (0, Some(why)) => Unanswered::NoConnection(why),
            (0, None) => {
                Unanswered::NoConnection(format!("{}: the connection closed before the request left", self.address))
            }
            (attempts, why) => Unanswered::NoAnswer { attempts, why },
        }))
    }
}

/// What goes to the writer task.
enum Out {
    Packet(Vec<u8>),
    /// Send close_notify and stop.
    Shutdown,
}

/// One TLS connection: a reader task routing replies to their waiters by
/// identifier, a writer task batching the requests of all conversations.
struct Connection {
    remote: SocketAddr,
    outgoing: mpsc::Sender<Out>,
    waiters: Mutex<Waiters>,
    slots: Arc<Semaphore>,
    /// Replies read (matched or not): tells a silent connection from one
    /// whose server ignores a request.
    replies: AtomicU64,
    stats: Arc<LinkStats>,
    reader: Mutex<Option<JoinHandle<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Waiters {
    closed: bool,
    by_id: Vec<Option<mpsc::Sender<Vec<u8>>>>,
    /// The next identifier to try: identifiers go round, so a late reply to
    /// a request given up on rarely meets a new request under its number.
    next: u8,
}

/// A request's claim on an identifier of a connection, released on drop.
struct Outstanding {
    conn: Arc<Connection>,
    id: u8,
    replies: mpsc::Receiver<Vec<u8>>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut waiters = self.conn.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = waiters.by_id.get_mut(usize::from(self.id)) {
            *slot = None;
        }
    }
}

impl Connection {
    fn start(remote: SocketAddr, stream: Stream, stats: Arc<LinkStats>) -> Arc<Self> {
        let (reader, writer) = tokio::io::split(stream);
        let (outgoing, queue) = mpsc::channel(MAX_OUTSTANDING);
        let conn = Arc::new(Self {
            remote,
            outgoing,
            waiters: Mutex::new(Waiters { closed: false, by_id: vec![None; MAX_OUTSTANDING], next: rand::random() }),
            slots: Arc::new(Semaphore::new(MAX_OUTSTANDING)),
            replies: AtomicU64::new(0),
            stats,
            reader: Mutex::new(None),
            writer: Mutex::new(None),
        });
        // The tasks hold the connection weakly: dropping the link ends them.
        let read = tokio::spawn(read_loop(Arc::downgrade(&conn), reader));
        let write = tokio::spawn(write_loop(Arc::downgrade(&conn), writer, queue));
        *conn.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(read);
        *conn.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(write);
        conn
    }

    fn is_closed(&self) -> bool {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).closed
    }

    /// Claims a free identifier (waiting while all are taken); `None` once closed.
    async fn register(self: &Arc<Self>) -> Option<Outstanding> {
        let slot = self.slots.clone().acquire_owned().await.ok()?;
        let (sender, replies) = mpsc::channel(WAITER_QUEUE);
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if waiters.closed {
            return None;
        }
        let start = waiters.next;
        let id =
            (0..=u8::MAX).map(|step| start.wrapping_add(step)).find(|id| waiters.by_id[usize::from(*id)].is_none())?;
        waiters.by_id[usize::from(id)] = Some(sender);
        waiters.next = id.wrapping_add(1);
        drop(waiters);
        Some(Outstanding { conn: self.clone(), id, replies, _slot: slot })
    }

    /// Queues a packet for the writer; false if the connection is gone.
    async fn send(&self, bytes: Vec<u8>) -> bool {
        self.outgoing.send(Out::Packet(bytes)).await.is_ok()
    }

    /// A reply from the server: to its waiter, or dropped and counted.
    fn deliver(&self, packet: Vec<u8>) {
        self.replies.fetch_add(1, Ordering::Relaxed);
        let id = usize::from(packet[1]);
        let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        match waiters.by_id.get(id).and_then(Option::as_ref) {
            Some(waiter) => {
                if waiter.try_send(packet).is_err() {
                    self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                debug!(server = %self.remote, id, "RADIUS/TLS reply for no outstanding request dropped");
            }
        }
    }

    /// Marks the connection closed and wakes every waiter (their reply
    /// channels close); the tasks stop and the socket closes.
    fn close(&self, why: &str) {
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if waiters.closed {
                return;
            }
            waiters.closed = true;
            waiters.by_id.iter_mut().for_each(|w| *w = None);
        }
        self.slots.close();
        debug!(server = %self.remote, why, "RADIUS/TLS connection closed");
        for task in [&self.reader, &self.writer] {
            if let Some(task) = task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
            }
        }
    }

    /// Lets the writer send close_notify, then closes.
    async fn shut_down(&self) {
        if self.outgoing.send(Out::Shutdown).await.is_ok() {
            let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(writer) = writer {
                let _ = tokio::time::timeout(CLOSE_WAIT, writer).await;
            }
        }
        self.close("closed by the terminal");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in [&mut self.reader, &mut self.writer] {
            if let Some(task) = task.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
            }
        }
    }
}

enum ReadError {
    Io(std::io::Error),
    Length(usize),
}

/// One RADIUS packet, framed by its Length field (RFC 6613 §2.2).
async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut header = [0u8; radius::STREAM_HEADER_LEN];
    reader.read_exact(&mut header).await.map_err(ReadError::Io)?;
    let len = radius::stream_packet_len(&header).map_err(ReadError::Length)?;
    let mut packet = vec![0u8; len];
    packet[..header.len()].copy_from_slice(&header);
    reader.read_exact(&mut packet[header.len()..]).await.map_err(ReadError::Io)?;
    Ok(packet)
}

async fn read_loop(conn: Weak<Connection>, reader: ReadHalf<Stream>) {
    let mut reader = BufReader::with_capacity(16 * 1024, reader);
    let why = loop {
        match read_packet(&mut reader).await {
            Ok(packet) => match conn.upgrade() {
                Some(conn) => conn.deliver(packet),
                None => return,
            },
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break "closed by the server".to_string()
            }
            Err(ReadError::Io(e)) => break format!("read: {}", one_line(&e.to_string())),
            // The stream cannot be followed past a bad length.
            Err(ReadError::Length(len)) => break format!("framing lost: a RADIUS length of {len}"),
        }
    };
    if let Some(conn) = conn.upgrade() {
        conn.close(&why);
    }
}

async fn write_loop(conn: Weak<Connection>, mut writer: WriteHalf<Stream>, mut queue: mpsc::Receiver<Out>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut shutdown = false;
    while !shutdown {
        match queue.recv().await {
            Some(Out::Packet(p)) => batch.extend_from_slice(&p),
            Some(Out::Shutdown) | None => shutdown = true,
        }
        // Under load other conversations are about to send: let them, and
        // their requests go out in the same write and TLS records (one
        // system call and record per request was most of TLS's cost).
        if !shutdown {
            tokio::task::yield_now().await;
        }
        while !shutdown && batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(Out::Packet(p)) => batch.extend_from_slice(&p),
                Ok(Out::Shutdown) => shutdown = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = writer.write_all(&batch).await {
            if let Some(conn) = conn.upgrade() {
                conn.close(&format!("write: {}", one_line(&e.to_string())));
            }
            return;
        }
        batch.clear();
    }
    let _ = writer.shutdown().await;
}
