//! Live metrics: the server's counters, gauges and latency histograms in the
//! Prometheus text format (version 0.0.4), served over HTTP at `/metrics`
//! when `[metrics] listen` is configured (the zero-config demo turns it on).
//!
//! Names follow the Prometheus conventions: `eapay_` prefix, `_total` for
//! counters, base units (`_seconds`, `_bytes`), and one family with a label
//! where the `stopped` line has one counter per reason (`dropped_malformed`
//! becomes `eapay_radius_dropped_total{reason="malformed"}`). Nothing here
//! holds a secret: the labels are reasons, codes, actions and front ends.
//!
//! The endpoint is deliberately small (HTTP/1.1, one request per
//! connection, a bounded request head and a deadline, a few connections at
//! once): it serves a scraper on a management network, not the public.

pub mod histogram;
mod http;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::core::Core;
use crate::diameter::Diameter;
use crate::ledger::SqlLedger;
use crate::radius::tls::Radsec;
use crate::radius::Radius;
use histogram::{HistogramSnapshot, BOUNDS_SECONDS};

pub use http::serve;

/// What the endpoint reads: the core and the front ends, all shared with
/// the request path (reads are relaxed atomic loads and two table lengths).
pub struct Sources {
    pub core: Arc<Core<SqlLedger>>,
    pub radius: Arc<Radius<SqlLedger>>,
    pub diameter: Option<Arc<Diameter<SqlLedger>>>,
    pub radsec: Option<Arc<Radsec>>,
    /// Unix seconds at start, for `process_start_time_seconds`.
    pub started_unix: u64,
}

/// The exposition text.
pub fn render(s: &Sources) -> String {
    let mut m = Exposition::default();
    m.family("eapay_build_info", "gauge", "The running build; the value is always 1.");
    m.sample("eapay_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    m.gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        s.started_unix,
    );
    if let Some(bytes) = resident_memory_bytes() {
        m.gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", bytes);
    }
    radius(&mut m, s);
    if let Some(d) = &s.diameter {
        diameter(&mut m, d);
    }
    if let Some(r) = &s.radsec {
        radsec(&mut m, r);
    }
    eap(&mut m, s);
    payments(&mut m, &s.core);
    ledger(&mut m, &s.core.ledger);
    m.out
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn radius(m: &mut Exposition, s: &Sources) {
    let c = &s.radius.counters;
    m.counter(
        "eapay_radius_datagrams_total",
        "Datagrams received on the RADIUS ports, except those dropped for overload.",
        load(&c.requests),
    );
    m.counter(
        "eapay_radius_status_server_total",
        "Status-Server requests answered (RFC 5997).",
        load(&c.status_server),
    );
    m.counter("eapay_radius_accounting_responses_total", "Accounting-Responses sent.", load(&c.accounting_responses));
    m.family("eapay_radius_duplicates_total", "counter", "Retransmitted requests (RFC 5080), by what was done.");
    m.sample("eapay_radius_duplicates_total", &[("action", "resent")], load(&c.duplicates_resent));
    m.sample("eapay_radius_duplicates_total", &[("action", "dropped")], load(&c.duplicates_dropped));
    m.family("eapay_radius_dropped_total", "counter", "Datagrams dropped without an answer, by reason.");
    for (reason, counter) in [
        ("unknown_client", &c.dropped_unknown_client),
        ("malformed", &c.dropped_malformed),
        ("wrong_code", &c.dropped_wrong_code),
        ("missing_message_authenticator", &c.dropped_missing_message_authenticator),
        ("bad_authenticator", &c.dropped_bad_authenticator),
        ("overload", &c.dropped_overload),
    ] {
        m.sample("eapay_radius_dropped_total", &[("reason", reason)], load(counter));
    }
}

fn diameter(m: &mut Exposition, d: &Diameter<SqlLedger>) {
    let c = &d.counters;
    m.counter("eapay_diameter_connections_total", "Diameter connections accepted.", load(&c.diameter_connections));
    m.counter("eapay_diameter_closed_total", "Diameter connections closed.", load(&c.diameter_closed));
    m.counter(
        "eapay_diameter_connections_refused_total",
        "Diameter connections closed unread: from an address of no configured peer, over the per-address cap, or over the server's cap.",
        load(&c.diameter_connections_refused),
    );
    m.counter(
        "eapay_diameter_tls_refused_total",
        "Diameter/TLS connections refused: a failed handshake (no, expired or foreign certificate; plain Diameter), or a CER from a key not registered for its Origin-Host (3010).",
        load(&c.diameter_tls_refused),
    );
    m.counter("eapay_diameter_requests_total", "Diameter requests received.", load(&c.diameter_requests));
    m.counter("eapay_diameter_answers_total", "Diameter answers sent.", load(&c.diameter_answers));
    m.counter(
        "eapay_diameter_protocol_errors_total",
        "Diameter messages answered with a protocol error or closing the connection.",
        load(&c.diameter_protocol_errors),
    );
    m.family("eapay_diameter_duplicates_total", "counter", "Retransmitted Diameter requests, by what was done.");
    m.sample("eapay_diameter_duplicates_total", &[("action", "resent")], load(&c.diameter_duplicates_resent));
    m.sample("eapay_diameter_duplicates_total", &[("action", "dropped")], load(&c.diameter_duplicates_dropped));
}

fn radsec(m: &mut Exposition, r: &Radsec) {
    let c = &r.counters;
    m.counter("eapay_radsec_connections_total", "RADIUS/TLS connections accepted.", load(&c.radsec_connections));
    m.counter("eapay_radsec_closed_total", "RADIUS/TLS connections ended.", load(&c.radsec_closed));
    m.family("eapay_radsec_refused_total", "counter", "RADIUS/TLS connections refused, by reason.");
    m.sample("eapay_radsec_refused_total", &[("reason", "handshake")], load(&c.radsec_refused_handshake));
    m.sample("eapay_radsec_refused_total", &[("reason", "certificate")], load(&c.radsec_refused_certificate));
    m.sample("eapay_radsec_refused_total", &[("reason", "busy")], load(&c.radsec_refused_busy));
    m.family("eapay_radsec_cut_total", "counter", "RADIUS/TLS connections closed by the server, by reason.");
    m.sample("eapay_radsec_cut_total", &[("reason", "framing")], load(&c.radsec_closed_framing));
    m.sample("eapay_radsec_cut_total", &[("reason", "stalled")], load(&c.radsec_closed_stalled));
    m.sample("eapay_radsec_cut_total", &[("reason", "idle")], load(&c.radsec_closed_idle));
}

fn eap(m: &mut Exposition, s: &Sources) {
    let c = &s.core.counters;
    m.family("eapay_eap_conversations", "gauge", "EAP conversations waiting for the peer, by front end.");
    m.sample("eapay_eap_conversations", &[("front", "radius")], s.radius.conversations.len());
    let (mut expired, mut evicted) = (s.radius.conversations.expired(), s.radius.conversations.evicted());
    if let Some(d) = &s.diameter {
        m.sample("eapay_eap_conversations", &[("front", "diameter")], d.conversations.len());
        expired += d.conversations.expired();
        evicted += d.conversations.evicted();
    }
    m.counter(
        "eapay_eap_conversations_expired_total",
        "EAP conversations forgotten after the peer fell silent.",
        expired,
    );
    m.counter(
        "eapay_eap_conversations_evicted_total",
        "EAP conversations evicted to make room (a terminal over its share, or a full table).",
        evicted,
    );
    m.family("eapay_eap_answers_total", "counter", "EAP rounds answered, by answer.");
    m.sample("eapay_eap_answers_total", &[("answer", "challenge")], load(&c.challenges));
    m.sample("eapay_eap_answers_total", &[("answer", "accept")], load(&c.accepts));
    m.sample("eapay_eap_answers_total", &[("answer", "reject")], load(&c.rejects));
    m.family("eapay_eap_refused_total", "counter", "EAP packets not taken into a conversation, by reason.");
    m.sample("eapay_eap_refused_total", &[("reason", "discarded")], load(&c.eap_discarded));
    m.sample("eapay_eap_refused_total", &[("reason", "unknown_conversation")], load(&c.eap_unknown_conversation));
    // Of those, the ones left unanswered because the ledger holds their
    // payment approved (a restart lost the conversation): the terminal
    // stays in doubt and reverses.
    m.sample(
        "eapay_eap_refused_total",
        &[("reason", "unknown_conversation_approved")],
        load(&c.eap_unknown_conversation_approved),
    );
    m.sample("eapay_eap_refused_total", &[("reason", "table_full")], load(&c.eap_table_full));
    m.family("eapay_eap_failures_total", "counter", "EAP conversations that ended in EAP-Failure, by reason.");
    for (reason, counter) in [
        ("authentication", &c.eap_failed_authentication),
        ("protocol", &c.eap_failed_protocol),
        ("unknown_card", &c.eap_failed_unknown_card),
        ("by_peer", &c.eap_failed_by_peer),
        ("too_many_rounds", &c.eap_failed_too_many_rounds),
        ("pin", &c.eap_failed_pin),
        ("declined", &c.eap_declined),
    ] {
        m.sample("eapay_eap_failures_total", &[("reason", reason)], load(counter));
    }
    m.family("eapay_eap_identities_refused_total", "counter", "Pseudonyms and re-authentication identities refused.");
    m.sample("eapay_eap_identities_refused_total", &[("kind", "pseudonym")], load(&c.pseudonyms_refused));
    m.sample("eapay_eap_identities_refused_total", &[("kind", "reauth")], load(&c.reauth_ids_refused));
    m.counter("eapay_eap_reauth_total", "Fast re-authentications started.", load(&c.reauth_ids_used));
    m.counter(
        "eapay_store_errors_total",
        "Requests left unanswered because the ledger failed (the terminal retries).",
        load(&c.store_errors),
    );
}

fn payments(m: &mut Exposition, core: &Core<SqlLedger>) {
    m.counter("eapay_payment_approvals_total", "Payments approved.", core.answers.approved());
    m.family("eapay_payment_declines_total", "counter", "Payments declined, by decline code.");
    for (code, count) in core.answers.declined() {
        let value = format!("{:02}", code.value());
        m.sample("eapay_payment_declines_total", &[("code", &value), ("name", code.name())], count);
    }
    m.family("eapay_settlements_total", "counter", "Settlement requests (capture, reverse, refund), by result.");
    for (action, result, count) in core.settlements.snapshot() {
        let action = action.name().to_ascii_lowercase();
        m.sample("eapay_settlements_total", &[("action", &action), ("result", result.label())], count);
    }
    m.histogram(
        "eapay_decision_seconds",
        "From the request completing a payment's authentication to its durable decision: that EAP round, the ledger queue and the commit.",
        &core.decision_seconds.snapshot(),
    );
}

fn ledger(m: &mut Exposition, ledger: &SqlLedger) {
    let stats = ledger.stats();
    m.counter("eapay_ledger_jobs_total", "Changes handed to the ledger writer.", stats.commands);
    m.counter(
        "eapay_ledger_commits_total",
        "Ledger transactions committed (a group commit counts once).",
        stats.commits,
    );
    m.counter(
        "eapay_ledger_fallbacks_total",
        "Group commits that failed and were re-run one change at a time.",
        stats.fallbacks,
    );
    m.histogram(
        "eapay_ledger_commit_seconds",
        "From a ledger transaction's start to its durable commit (a group commit counts once).",
        &stats.commit_seconds,
    );
}

/// The resident set, from `/proc/self/status` (Linux; `None` elsewhere).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The text being written.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in BOUNDS_SECONDS.iter().zip(h.cumulative) {
            self.sample(&bucket, &[("le", &bound.to_string())], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum_nanos as f64 / 1e9);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// Label values as the text format wants them.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_written_cumulatively_with_an_infinite_bucket() {
        let h = histogram::Histogram::default();
        h.observe(std::time::Duration::from_millis(2));
        h.observe(std::time::Duration::from_secs(5));
        let mut m = Exposition::default();
        m.histogram("x_seconds", "help", &h.snapshot());
        assert!(m.out.contains("# TYPE x_seconds histogram\n"), "{}", m.out);
        assert!(m.out.contains("x_seconds_bucket{le=\"0.001\"} 0\n"), "{}", m.out);
        assert!(m.out.contains("x_seconds_bucket{le=\"0.0025\"} 1\n"), "{}", m.out);
        assert!(m.out.contains("x_seconds_bucket{le=\"2.5\"} 1\n"), "{}", m.out);
        assert!(m.out.contains("x_seconds_bucket{le=\"+Inf\"} 2\n"), "{}", m.out);
        assert!(m.out.contains("x_seconds_sum 5.002\n"), "{}", m.out);
        assert!(m.out.contains("x_seconds_count 2\n"), "{}", m.out);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Exposition::default();
        m.sample("x", &[("a", "q\"b\\n\n")], 1);
        assert_eq!(m.out, "x{a=\"q\\\"b\\\\n\\n\"} 1\n");
    }
}
