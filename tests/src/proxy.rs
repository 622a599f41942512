//! Loopback proxies that sit between the real terminal and the real server
//! or card: they record every byte the terminal receives and, for RADIUS,
//! can lose or damage replies the way a network or a broken server would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use aaa_proto::radius::Code;

/// What the RADIUS proxy does with the server's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass everything.
    Forward,
    /// Drop the first Access-Accept and every reply after it: the server
    /// decided, the terminal never hears of it.
    LoseApproval,
    /// Flip a bit of the Response Authenticator of every reply.
    CorruptAuthenticator,
    /// Change the identifier of every reply.
    WrongIdentifier,
}

#[derive(Default)]
struct Recorded {
    client: Option<SocketAddr>,
    to_client: Vec<Vec<u8>>,
    to_server: Vec<Vec<u8>>,
    lost_approval: bool,
}

/// A UDP proxy for one RADIUS client.
pub struct RadiusProxy {
    /// Where the terminal sends its requests.
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: Arc<Mutex<Mode>>,
    recorded: Arc<Mutex<Recorded>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RadiusProxy {
    pub fn start(upstream: SocketAddr, mode: Mode) -> RadiusProxy {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind proxy");
        socket.set_read_timeout(Some(Duration::from_millis(20))).expect("read timeout");
        let addr = socket.local_addr().expect("proxy address");
        let upstream = Arc::new(Mutex::new(upstream));
        let mode = Arc::new(Mutex::new(mode));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (upstream, mode, recorded, stop) = (upstream.clone(), mode.clone(), recorded.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65535];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                    let server = *lock(&upstream);
                    if from != server {
                        let mut rec = lock(&recorded);
                        rec.client = Some(from);
                        rec.to_server.push(buf[..n].to_vec());
                        drop(rec);
                        let _ = socket.send_to(&buf[..n], server);
                        continue;
                    }
                    let mut reply = buf[..n].to_vec();
                    let mut rec = lock(&recorded);
                    let Some(client) = rec.client else { continue };
                    match *lock(&mode) {
                        Mode::Forward => {}
                        Mode::LoseApproval => {
                            if reply.first() == Some(&Code::AccessAccept.as_u8()) {
                                rec.lost_approval = true;
                            }
                            if rec.lost_approval {
                                continue;
                            }
                        }
                        Mode::CorruptAuthenticator => {
                            if let Some(b) = reply.get_mut(4) {
                                *b ^= 0x01;
                            }
                        }
                        Mode::WrongIdentifier => {
                            if let Some(b) = reply.get_mut(1) {
                                *b = b.wrapping_add(77);
                            }
                        }
                    }
                    rec.to_client.push(reply.clone());
                    let _ = socket.send_to(&reply, client);
                }
            })
        };
        RadiusProxy { addr, upstream, mode, recorded, stop, thread: Some(thread) }
    }

    /// Points the proxy at another server (after a restart on new ports).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.upstream) = upstream;
    }

    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.mode) = mode;
    }

    /// True once an Access-Accept was swallowed in [`Mode::LoseApproval`].
    pub fn lost_approval(&self) -> bool {
        lock(&self.recorded).lost_approval
    }

    /// Every datagram passed to the terminal.
    pub fn to_client(&self) -> Vec<Vec<u8>> {
        lock(&self.recorded).to_client.clone()
    }

    /// Every datagram the terminal sent, in order.
    pub fn to_server(&self) -> Vec<Vec<u8>> {
        lock(&self.recorded).to_server.clone()
    }
}

impl Drop for RadiusProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP proxy in front of a card link that records what flows each way.
pub struct StreamRecorder {
    pub addr: SocketAddr,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl StreamRecorder {
    /// Accepts connections and pipes each to `upstream`.
    pub fn start(upstream: SocketAddr) -> StreamRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let addr = listener.local_addr().expect("recorder address");
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let record = to_client.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let (Ok(client_w), Ok(server_r)) = (client.try_clone(), server.try_clone()) else { continue };
                pipe(client, server, None);
                pipe(server_r, client_w, Some(record.clone()));
            }
        });
        StreamRecorder { addr, to_client }
    }

    /// Every byte the terminal received from the card.
    pub fn to_client(&self) -> Vec<u8> {
        lock(&self.to_client).clone()
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, record: Option<Arc<Mutex<Vec<u8>>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(r) = &record {
                        lock(r).extend_from_slice(&buf[..n]);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
