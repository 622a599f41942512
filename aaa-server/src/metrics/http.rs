//! The HTTP side of the metrics endpoint: `GET /metrics` and nothing else,
//! one request per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{render, Sources};

/// Scrapes served at once; a connection beyond this is closed unanswered.
const MAX_CONNECTIONS: usize = 8;
/// The longest request head read (a scraper sends a few hundred bytes).
const MAX_HEAD: usize = 8192;
/// A connection must have sent its request head and taken the answer within this.
const DEADLINE: Duration = Duration::from_secs(5);

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    Bad,
}

/// Serves `/metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refused = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "metrics accept");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Counted and logged once per thousand: a scraper gone wild must
            // not fill the log.
            if refused.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                warn!(%peer, "metrics endpoint busy, connection closed");
            }
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(DEADLINE, answer(stream, &sources)).await.is_err() {
                debug!(%peer, "metrics connection timed out");
            }
            drop(slot);
        });
    }
}

async fn answer(mut stream: TcpStream, sources: &Sources) {
    let head = match read_head(&mut stream).await {
        Some(head) => head,
        None => return,
    };
    let (status, body) = match parse(&head) {
        Request::Metrics { head_only } => {
            let text = render(sources);
            ("200 OK", if head_only { String::new() } else { text })
        }
        Request::NotFound => ("404 Not Found", "the metrics are at /metrics\n".to_string()),
        Request::MethodNotAllowed => ("405 Method Not Allowed", "GET /metrics\n".to_string()),
        Request::Bad => ("400 Bad Request", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line that ends the request head; `None` if the
/// peer closes first or sends more than [`MAX_HEAD`] bytes of head.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(head);
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

fn parse(head: &[u8]) -> Request {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else { return Request::Bad };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    // A scraper may add a query string (`?name[]=...`); everything is served.
    match target.split('?').next() {
        Some("/metrics") => Request::Metrics { head_only },
        _ => Request::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_from_the_request_line() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Request::Metrics { head_only: false });
        assert_eq!(parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Request::Metrics { head_only: true });
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::MethodNotAllowed);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b"GET /metrics SPDY/3 x\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b""), Request::Bad);
    }
}
