//! Reading the server's Prometheus endpoint (`GET /metrics`) the way a
//! scraper does: plain HTTP/1.1 over TCP, the text format parsed into
//! samples.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One scrape: every sample by its series (`name{label="v",...}` exactly as
/// written), plus the response head.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub head: String,
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// The value of `series`; panics with the whole text if it is missing.
    pub fn value(&self, series: &str) -> f64 {
        *self.samples.get(series).unwrap_or_else(|| panic!("no series {series} in\n{}", self.text))
    }

    /// The value of `series` as a count.
    pub fn count(&self, series: &str) -> u64 {
        let v = self.value(series);
        assert!(v >= 0.0 && v.fract() == 0.0, "{series} = {v} is not a count");
        v as u64
    }
}

/// Sends `request` to `addr`; the raw response (head and body), as much as arrived.
pub fn http_get(addr: SocketAddr, request: &str) -> String {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    // The server may close on a request it refuses before reading all of
    // it; what it sent until then (perhaps nothing) is the answer.
    let _ = stream.write_all(request.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8(response).expect("the response is UTF-8")
}

/// Scrapes `addr/metrics`; panics unless the answer is 200 with the
/// Prometheus text content type.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let response = http_get(addr, "GET /metrics HTTP/1.1\r\nHost: eapay\r\nAccept: text/plain\r\n\r\n");
    let (head, text) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200 "), "metrics answered\n{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "metrics content type\n{head}");
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("sample value {value:?} in {line:?}"));
        assert!(samples.insert(series.to_string(), value).is_none(), "series {series} written twice");
    }
    Scrape { head: head.to_string(), text: text.to_string(), samples }
}
