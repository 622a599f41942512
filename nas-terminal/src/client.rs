//! One RADIUS request/response transaction (RFC 2865 §2.5, RFC 5080 §2.2.1):
//! the same identifier and authenticator on every retransmission, the
//! timeout doubling each time, and a reply accepted only if its Response
//! Authenticator and Message-Authenticator (required, first) verify.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use aaa_proto::radius::{self, Packet};
use thiserror::Error;
use tokio::net::UdpSocket;
use tracing::warn;

/// Why a transaction failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the request: {0}")]
    Encode(#[from] radius::EncodeError),
    #[error("no valid answer from {server} after {attempts} attempts")]
    Timeout { server: SocketAddr, attempts: u32 },
}

/// A RADIUS client talking to one server.
pub struct RadiusClient {
    socket: UdpSocket,
    server: SocketAddr,
    secret: Vec<u8>,
    timeout: Duration,
    retries: u32,
    next_id: u8,
}

impl RadiusClient {
    /// A client with its own ephemeral socket. `timeout` is the first
    /// wait; each retransmission doubles it.
    pub async fn new(server: SocketAddr, secret: &[u8], timeout: Duration, retries: u32) -> Result<Self, ClientError> {
        let bind = if server.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = UdpSocket::bind(bind).await?;
        Ok(Self { socket, server, secret: secret.to_vec(), timeout, retries, next_id: rand::random() })
    }

    /// Sends `request` (its identifier is assigned here, Message-Authenticator
    /// added) and returns the verified reply.
    pub async fn exchange(&mut self, mut request: Packet) -> Result<Packet, ClientError> {
        request.identifier = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        request.add_message_authenticator();
        let bytes = radius::encode_request(&request, &self.secret)?;
        let mut wait = self.timeout;
        let mut buf = vec![0u8; radius::MAX_PACKET_LEN];
        for _ in 0..=self.retries {
            self.socket.send_to(&bytes, self.server).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let received = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await;
                let Ok(Ok((n, from))) = received else { break };
                if from != self.server || buf.get(1) != Some(&request.identifier) {
                    continue;
                }
                match radius::verify_response_to(&buf[..n], request.code, &request.authenticator, &self.secret, true) {
                    Ok(reply) => return Ok(reply),
                    Err(e) => warn!(server = %self.server, error = %e, "reply dropped"),
                }
            }
            wait = wait.saturating_mul(2);
        }
        Err(ClientError::Timeout { server: self.server, attempts: self.retries + 1 })
    }
}
