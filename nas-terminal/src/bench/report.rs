//! The final report: a table for people (stdout) and every figure as JSON
//! (`--json`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use nas_terminal::radsec::{LinkStats, RadsecLink};
use serde::Serialize;

use super::args::Plan;
use super::cpu::{CpuReport, ProcessCpu};
use super::journal::JournalSummary;
use super::runner::Primed;
use super::stats::Summary;

/// What the RADIUS/TLS links saw over the whole run (priming included).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RadsecReport {
    /// `--connections`: connections per server.
    pub connections_per_server: usize,
    /// Connections established in all (more than the above: some were lost
    /// and made again).
    pub connections_opened: u64,
    pub connect_failures: u64,
    /// Replies for an identifier with nothing outstanding, dropped.
    pub replies_unmatched: u64,
}

impl RadsecReport {
    pub fn of(connections_per_server: usize, links: &[Arc<RadsecLink>]) -> Option<Self> {
        if links.is_empty() {
            return None;
        }
        let sum = |f: fn(&LinkStats) -> &AtomicU64| links.iter().map(|l| f(l.stats()).load(Ordering::Relaxed)).sum();
        Some(Self {
            connections_per_server,
            connections_opened: sum(|s| &s.connections),
            connect_failures: sum(|s| &s.failed_connects),
            replies_unmatched: sum(|s| &s.unmatched),
        })
    }
}

/// Everything a run measured, as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version of this JSON.
    pub version: u32,
    pub tool: String,
    /// UTC start time.
    pub started_at: String,
    pub method: String,
    /// `on` (each card resumes: the TLS session of its previous
    /// conversation, or a fast re-authentication with the identity the
    /// previous one handed out) or `off` (a full authentication every
    /// time). Always given now; an Option because earlier versions wrote
    /// null for AKA.
    pub resumption: Option<String>,
    /// TLS and TTLS: the share of completed conversations whose card
    /// offered a stored session (`session_offered / completed`).
    pub session_offered_share: Option<f64>,
    /// SIM, AKA and AKA': the share of completed conversations whose card
    /// began with a fast re-authentication identity (`reauth_offered /
    /// completed`).
    pub reauth_offered_share: Option<f64>,
    /// `--resumption on`: the priming payments made before the run.
    pub primed: Option<Primed>,
    /// `payment` or `auth-only`.
    pub mode: String,
    /// `0.01 USD` (payments only).
    pub amount: Option<String>,
    pub merchant: Option<String>,
    pub servers: Vec<String>,
    /// `radius` or `diameter`.
    pub protocol: String,
    /// RADIUS: `udp` or `tls` (RFC 6614); Diameter: `tcp` or `tls` (RFC 6733 §13).
    pub transport: String,
    /// `--transport tls`: the connections and what went over them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radsec: Option<RadsecReport>,
    pub cards: usize,
    pub concurrency: usize,
    /// Open-loop target rate, conversations per second; None: closed loop.
    pub target_rate_per_s: Option<u32>,
    pub warmup_s: f64,
    pub duration_s: f64,
    #[serde(flatten)]
    pub summary: Summary,
    pub cpu: CpuReport,
    /// `--outcomes`, `--reversals`: what the journal holds (all payments,
    /// not only those in the measurement window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalSummary>,
    /// Which family's resumption the table describes.
    #[serde(skip)]
    tls_family: bool,
}

impl Report {
    pub fn new(plan: &Plan, started_at: String, summary: Summary, cpu: CpuReport, primed: Option<Primed>) -> Self {
        let tls_family = plan.method.is_tls_family();
        let share = |n: u64| if summary.completed == 0 { 0.0 } else { n as f64 / summary.completed as f64 };
        Report {
            version: 1,
            tool: format!("eapay-terminal bench {}", env!("CARGO_PKG_VERSION")),
            started_at,
            method: plan.method.name().to_string(),
            resumption: Some(if plan.resumption { "on" } else { "off" }.to_string()),
            session_offered_share: tls_family.then(|| share(summary.session_offered)),
            reauth_offered_share: (!tls_family).then(|| share(summary.reauth_offered)),
            primed,
            mode: if plan.payment.is_some() { "payment" } else { "auth-only" }.to_string(),
            amount: plan.payment.as_ref().map(|p| p.display.clone()),
            merchant: plan.payment.as_ref().map(|p| p.merchant_id.clone()),
            servers: plan.servers.iter().map(ToString::to_string).collect(),
            protocol: if plan.diameter.is_some() { "diameter" } else { "radius" }.to_string(),
            transport: match (&plan.diameter, &plan.tls) {
                (Some(d), _) if d.tls.is_some() => "tls",
                (Some(_), _) => "tcp",
                (None, Some(_)) => "tls",
                (None, None) => "udp",
            }
            .to_string(),
            radsec: None,
            cards: plan.cards,
            concurrency: plan.concurrency,
            target_rate_per_s: plan.rate,
            warmup_s: plan.warmup.as_secs_f64(),
            duration_s: plan.duration.as_secs_f64(),
            summary,
            cpu,
            journal: None,
            tls_family,
        }
    }

    /// Writes the JSON file.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("--json {}", path.display()))
    }

    /// The table.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let what = match (&self.amount, &self.merchant) {
            (Some(amount), Some(merchant)) => format!("full payments of {amount} to {merchant}"),
            _ => "authentication only".to_string(),
        };
        let load = match self.target_rate_per_s {
            Some(rate) => format!("open loop at {rate}/s"),
            None => "closed loop".to_string(),
        };
        let resumption = self.resumption.as_ref().map_or_else(String::new, |r| format!(", resumption {r}"));
        let _ = writeln!(
            out,
            "eapay-terminal bench: EAP-{} over {}, {what}{resumption}",
            method_title(&self.method),
            match (self.protocol.as_str(), self.transport.as_str()) {
                ("diameter", "tls") => "Diameter/TLS",
                ("diameter", _) => "Diameter",
                (_, "tls") => "RADIUS/TLS",
                _ => "RADIUS",
            }
        );
        let _ = writeln!(
            out,
            "  server {}  cards {}  concurrency {}  {load}  {:.1} s measured after {:.1} s warm-up",
            self.servers.join(", "),
            self.cards,
            self.concurrency,
            s.window_secs,
            self.warmup_s
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  throughput   {:>10.1} completed/s  ({} completed in {:.1} s)",
            s.throughput_per_s, s.completed, s.window_secs
        );
        let l = &s.latency_us;
        let _ = writeln!(
            out,
            "  latency ms   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.3}, min {})",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p99_9),
            ms(l.max),
            l.mean / 1000.0,
            ms(l.min)
        );
        let o = &s.outcomes;
        let mut outcomes = Vec::new();
        if o.approved > 0 || self.mode == "payment" {
            outcomes.push(format!("approved {}", o.approved));
        }
        if o.authenticated > 0 || self.mode == "auth-only" {
            outcomes.push(format!("authenticated {}", o.authenticated));
        }
        if o.refused_by_card > 0 {
            outcomes.push(format!("refused by the card {}", o.refused_by_card));
        }
        let _ = writeln!(out, "  outcomes     {}", outcomes.join("  "));
        for (code, n) in &o.declined {
            let _ = writeln!(out, "               declined {code}: {n}");
        }
        if !s.round_trips.is_empty() {
            let trips: Vec<String> = s.round_trips.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            let request = if self.protocol == "diameter" { "DERs" } else { "Access-Requests" };
            let _ = writeln!(out, "  round trips  {}  ({request} per conversation: conversations)", trips.join("  "));
        }
        if let (Some(resumption), Some(share)) = (&self.resumption, self.session_offered_share) {
            let why = if resumption == "on" { "" } else { "; off: every conversation is a full handshake" };
            let _ = writeln!(
                out,
                "  resumption   {resumption}: {:.1}% of completed conversations offered the card's stored TLS session \
                 ({} of {}{why})",
                share * 100.0,
                s.session_offered,
                s.completed
            );
        }
        if let (Some(resumption), Some(share)) = (&self.resumption, self.reauth_offered_share) {
            let why = if resumption == "on" {
                ""
            } else {
                "; off: every conversation is a full authentication with the permanent identity"
            };
            let _ = writeln!(
                out,
                "  resumption   {resumption}: {:.1}% of completed conversations started with the card's fast \
                 re-authentication identity ({} of {}{why})",
                share * 100.0,
                s.reauth_offered,
                s.completed
            );
        }
        if let Some(p) = &self.primed {
            let _ = writeln!(
                out,
                "               primed before the run: {} cards made one payment each in {:.1} s ({} not approved); \
                 {}",
                p.cards,
                p.seconds,
                p.not_approved,
                p.holding(self.tls_family)
            );
        }
        if self.mode == "auth-only" && o.authenticated == 0 && o.declined.contains_key("12 Invalid-Transaction") {
            let _ = writeln!(
                out,
                "               (a payment server such as eapay-server runs the whole EAP method, then declines \
                 an authentication without payment attributes with 12)"
            );
        }
        if s.errors.is_empty() {
            let _ = writeln!(out, "  errors       none");
        } else {
            let _ = writeln!(out, "  errors       {} in all", s.errors_total);
            for e in &s.errors {
                let _ = writeln!(out, "               {:<16} {:>8}  e.g. {}", e.kind, e.count, e.example);
            }
        }
        match &self.journal {
            Some(j) if j.reversals_file.is_some() => {
                let _ = writeln!(
                    out,
                    "  reversals    {} in-doubt payment(s) stored in {} (eapay-terminal flush sends them){}",
                    j.reversals_stored,
                    j.reversals_file.as_deref().unwrap_or_default(),
                    if j.reversals_not_stored > 0 {
                        format!("; {} could NOT be stored", j.reversals_not_stored)
                    } else {
                        String::new()
                    }
                );
            }
            _ if s.in_doubt > 0 => {
                let _ = writeln!(
                    out,
                    "               {} failed payment(s) the server may have approved (not reversed: see --reversals)",
                    s.in_doubt
                );
            }
            _ => {}
        }
        if let Some(j) = &self.journal {
            if let Some(path) = &j.outcomes_file {
                let _ =
                    writeln!(out, "  journal      {} payment(s), each with its outcome, in {path}", j.outcomes_written);
            }
        }
        if let Some(r) = &self.radsec {
            let _ = writeln!(
                out,
                "  radius/tls   {} connection(s) per server ({} opened in all, {} failed attempts), {} replies for \
                 no outstanding request dropped",
                r.connections_per_server, r.connections_opened, r.connect_failures, r.replies_unmatched
            );
        }
        let per = if self.mode == "payment" { "payment" } else { "authentication" };
        let c = &self.cpu;
        match &c.server {
            Some(p) => {
                let _ = writeln!(out, "  server cpu   {}", cpu_line(p, per));
            }
            None => {
                let _ =
                    writeln!(out, "  server cpu   not measured (give --server-pid, of a process that lasts the run)");
            }
        }
        if let Some(p) = &c.load_generator {
            let _ = writeln!(out, "  bench cpu    {}", cpu_line(p, per));
        }
        if let Some(busy) = c.machine_busy {
            let others = c.other_cores.map_or_else(String::new, |o| format!(" (other processes {o:.2} cores)"));
            let _ = writeln!(out, "  machine      {} cores, {:.0}% busy{others}", c.machine_cores, busy * 100.0);
        }
        out
    }
}

/// `AKA'` for `aka-prime`: what follows "EAP-" in titles.
pub(super) fn method_title(method: &str) -> &str {
    match method {
        "sim" => "SIM",
        "aka" => "AKA",
        "aka-prime" => "AKA'",
        "tls" => "TLS",
        "ttls" => "TTLS",
        other => other,
    }
}

/// Microseconds as milliseconds with microsecond precision.
fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

fn cpu_line(p: &ProcessCpu, per: &str) -> String {
    let each = p.ms_per_completed.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let pid = match p.pids.as_slice() {
        [] => String::new(),
        [one] => format!(", pid {one}"),
        many => {
            let each: Vec<String> =
                many.iter().zip(&p.cpu_s_per_pid).map(|(pid, s)| format!("{pid}: {s:.2} s")).collect();
            format!(", pids {}", each.join(" + "))
        }
    };
    format!("{each} ms per completed {per}  ({:.2} s CPU, {:.2} cores{pid})", p.cpu_s, p.cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_keep_microseconds() {
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(1234), "1.234");
        assert_eq!(ms(1_000_005), "1000.005");
    }
}
