//! The card link: how [`eapol`](crate::eapol) frames travel between a card
//! and a terminal. Over TCP or a Unix socket when the card runs in a
//! process of its own (`eapay-card serve`), or over an in-process channel
//! for tests and the load generator. Both ends use the same [`CardLink`].

use std::future::Future;
use std::path::PathBuf;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::eapol::{EapolError, Frame, HEADER_LEN};

/// Why the link failed.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("the other end closed the card link")]
    Closed,
    #[error("card link: {0}")]
    Io(#[from] std::io::Error),
    #[error("card link: {0}")]
    Frame(#[from] EapolError),
}

/// One end of a card link.
pub trait CardLink: Send {
    /// Sends one frame.
    fn send(&mut self, frame: Frame) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// Waits for the next frame.
    fn recv(&mut self) -> impl Future<Output = Result<Frame, LinkError>> + Send;
}

/// A byte stream that can carry a card link.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A card link over a byte stream (TCP, Unix socket).
pub struct StreamLink<S> {
    io: S,
}

impl<S: Stream> StreamLink<S> {
    /// Frames `io`.
    pub fn new(io: S) -> Self {
        Self { io }
    }
}

impl<S: Stream> CardLink for StreamLink<S> {
    async fn send(&mut self, frame: Frame) -> Result<(), LinkError> {
        let bytes = frame.encode()?;
        self.io.write_all(&bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Frame, LinkError> {
        let mut header = [0u8; HEADER_LEN];
        match self.io.read_exact(&mut header).await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(LinkError::Closed),
            other => other?,
        };
        // The length is checked before the body is read, so an oversize
        // announcement costs no memory.
        let len = Frame::body_len(&header)?;
        let mut body = vec![0u8; len];
        match self.io.read_exact(&mut body).await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(LinkError::Closed),
            other => other?,
        };
        Ok(Frame::from_parts(header[1], &body)?)
    }
}

/// One end of an in-process card link.
pub struct ChannelLink {
    tx: mpsc::Sender<Frame>,
    rx: mpsc::Receiver<Frame>,
}

/// Both ends of an in-process card link: (terminal end, card end).
pub fn channel() -> (ChannelLink, ChannelLink) {
    // A conversation is strictly request/response: one frame in flight each
    // way, plus the payment frames around it.
    let (to_card, from_terminal) = mpsc::channel(4);
    let (to_terminal, from_card) = mpsc::channel(4);
    (ChannelLink { tx: to_card, rx: from_card }, ChannelLink { tx: to_terminal, rx: from_terminal })
}

impl CardLink for ChannelLink {
    async fn send(&mut self, frame: Frame) -> Result<(), LinkError> {
        self.tx.send(frame).await.map_err(|_| LinkError::Closed)
    }

    async fn recv(&mut self) -> Result<Frame, LinkError> {
        self.rx.recv().await.ok_or(LinkError::Closed)
    }
}

/// Where a card link listens or connects: `tcp://HOST:PORT`, `HOST:PORT`,
/// or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAddress {
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for LinkAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(LinkAddress::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(LinkAddress::Tcp(hostport.to_string()))
            }
            _ => Err(format!("{s:?} is not tcp://HOST:PORT, HOST:PORT or unix:/PATH")),
        }
    }
}

impl std::fmt::Display for LinkAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkAddress::Tcp(a) => write!(f, "tcp://{a}"),
            LinkAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A card link over a boxed stream, whatever its transport.
pub type BoxedLink = StreamLink<Box<dyn Stream>>;

/// Connects to a card listening at `address`.
pub async fn connect(address: &LinkAddress) -> Result<BoxedLink, LinkError> {
    let io: Box<dyn Stream> = match address {
        LinkAddress::Tcp(a) => {
            let s = TcpStream::connect(a.as_str()).await?;
            // Frames are small and strictly alternate: no Nagle delay.
            s.set_nodelay(true)?;
            Box::new(s)
        }
        LinkAddress::Unix(p) => Box::new(UnixStream::connect(p).await?),
    };
    Ok(StreamLink::new(io))
}

/// A listening card link.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Listens at `address`. A stale Unix socket file is replaced.
    pub async fn bind(address: &LinkAddress) -> Result<Listener, LinkError> {
        Ok(match address {
            LinkAddress::Tcp(a) => Listener::Tcp(TcpListener::bind(a.as_str()).await?),
            LinkAddress::Unix(p) => {
                if std::fs::symlink_metadata(p).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    std::fs::remove_file(p)?;
                }
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        })
    }

    /// The bound address (with the real port for `:0`).
    pub fn local_address(&self) -> Result<LinkAddress, LinkError> {
        Ok(match self {
            Listener::Tcp(l) => LinkAddress::Tcp(l.local_addr()?.to_string()),
            Listener::Unix(_, p) => LinkAddress::Unix(p.clone()),
        })
    }

    /// Waits for a terminal to connect; returns the link and a description
    /// of the peer for logs.
    pub async fn accept(&self) -> Result<(BoxedLink, String), LinkError> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                (StreamLink::new(Box::new(s) as Box<dyn Stream>), peer.to_string())
            }
            Listener::Unix(l, p) => {
                let (s, _) = l.accept().await?;
                (StreamLink::new(Box::new(s) as Box<dyn Stream>), format!("unix:{}", p.display()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eapol::PaymentFrame;

    #[test]
    fn addresses_parse() {
        assert_eq!("tcp://127.0.0.1:7000".parse(), Ok(LinkAddress::Tcp("127.0.0.1:7000".into())));
        assert_eq!("localhost:7000".parse(), Ok(LinkAddress::Tcp("localhost:7000".into())));
        assert_eq!("unix:/tmp/card".parse(), Ok(LinkAddress::Unix("/tmp/card".into())));
        assert!("tcp://host".parse::<LinkAddress>().is_err());
        assert!("unix:".parse::<LinkAddress>().is_err());
        assert!("7000".parse::<LinkAddress>().is_err());
    }

    #[tokio::test]
    async fn stream_link_carries_frames_and_reports_close() {
        let (a, b) = tokio::io::duplex(64);
        let (mut a, mut b) = (StreamLink::new(a), StreamLink::new(b));
        a.send(Frame::Payment(PaymentFrame::Consent(true))).await.unwrap();
        a.send(Frame::Eap(vec![1, 7, 0, 5, 1])).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Frame::Payment(PaymentFrame::Consent(true)));
        assert_eq!(b.recv().await.unwrap(), Frame::Eap(vec![1, 7, 0, 5, 1]));
        drop(a);
        assert!(matches!(b.recv().await, Err(LinkError::Closed)));
    }

    #[tokio::test]
    async fn oversize_announcement_is_refused_before_reading() {
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = StreamLink::new(b);
        raw.write_all(&[2, 0, 0xff, 0xff]).await.unwrap();
        assert!(matches!(b.recv().await, Err(LinkError::Frame(EapolError::Oversize { len: 0xffff }))));
    }

    #[tokio::test]
    async fn truncated_frame_is_a_close() {
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = StreamLink::new(b);
        raw.write_all(&[2, 0, 0, 10, 1, 2]).await.unwrap();
        drop(raw);
        assert!(matches!(b.recv().await, Err(LinkError::Closed)));
    }

    #[tokio::test]
    async fn channel_link_pairs() {
        let (mut terminal, mut card) = channel();
        terminal.send(Frame::Start).await.unwrap();
        assert_eq!(card.recv().await.unwrap(), Frame::Start);
        drop(terminal);
        assert!(matches!(card.recv().await, Err(LinkError::Closed)));
    }
}
