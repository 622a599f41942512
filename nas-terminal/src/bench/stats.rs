//! What the workers record: one HDR histogram of the measured latencies
//! (microseconds, 3 significant digits), a per-second timeline for the plot,
//! the outcomes (declines by code) and the errors by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nas_terminal::payment::describe_decline;
use serde::Serialize;

/// Longest latency the total histogram tells apart (larger ones are clamped).
const MAX_US: u64 = 3_600_000_000;
/// Same for the per-second histograms, which are smaller (2 digits).
const MAX_SECOND_US: u64 = 60_000_000;

/// How a conversation that reached an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    /// Access-Reject, with the decline code if there was one.
    Declined(Option<u32>),
    /// Access-Accept of an authentication-only conversation.
    Authenticated,
    /// The simulated holder refused (never, with the holder the bench uses).
    RefusedByCard,
}

/// What a card held to resume with when its conversation began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// A full authentication (as far as the card can tell).
    Nothing,
    /// TLS family: a stored TLS session.
    TlsSession,
    /// SIM/AKA family: a fast re-authentication identity.
    ReauthIdentity,
}

/// A conversation that did not reach an answer.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Short, stable name: `timeout`, `link`, `bad-answer`...
    pub kind: &'static str,
    pub message: String,
    /// The server may have approved: a real terminal would reverse it.
    pub in_doubt: bool,
}

/// Counters the progress bar reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

struct Second {
    latency: Histogram<u32>,
    completed: u64,
    errors: u64,
}

#[derive(Default)]
struct ErrorCount {
    count: u64,
    example: String,
}

/// Everything recorded; one behind a mutex for all workers (one short lock
/// per conversation).
pub struct Recorder {
    origin: Instant,
    window_start: Duration,
    window_end: Duration,
    total: Histogram<u64>,
    timeline: Vec<Second>,
    approved: u64,
    authenticated: u64,
    refused: u64,
    declined: BTreeMap<Option<u32>, u64>,
    errors: BTreeMap<&'static str, ErrorCount>,
    in_doubt: u64,
    /// Completed conversations by RADIUS round trips.
    rounds: BTreeMap<usize, u64>,
    /// Completed conversations whose card offered a stored TLS session.
    session_offered: u64,
    /// Completed conversations whose card began with a fast
    /// re-authentication identity.
    reauth_offered: u64,
    /// Conversations outside the window (warm-up, and those started after
    /// the deadline that were already under way).
    outside: u64,
}

impl Recorder {
    /// Measures the conversations started within `[origin + warmup, origin + warmup + duration)`.
    pub fn new(origin: Instant, warmup: Duration, duration: Duration) -> Self {
        Self {
            origin,
            window_start: warmup,
            window_end: warmup + duration,
            // 1 µs to 1 h at 3 significant digits: always valid bounds.
            total: new_histogram(MAX_US, 3),
            timeline: Vec::new(),
            approved: 0,
            authenticated: 0,
            refused: 0,
            declined: BTreeMap::new(),
            errors: BTreeMap::new(),
            in_doubt: 0,
            rounds: BTreeMap::new(),
            session_offered: 0,
            reauth_offered: 0,
            outside: 0,
        }
    }

    /// Whether a conversation that started at `started` is measured.
    pub fn in_window(&self, started: Instant) -> bool {
        let at = started.saturating_duration_since(self.origin);
        at >= self.window_start && at < self.window_end
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let index = at.saturating_duration_since(self.origin).as_secs() as usize;
        while self.timeline.len() <= index {
            self.timeline.push(Second { latency: new_histogram(MAX_SECOND_US, 2), completed: 0, errors: 0 });
        }
        &mut self.timeline[index]
    }

    /// A conversation that `started` (for an open loop: was due to start)
    /// and ended at `finished` after `rounds` RADIUS round trips; `offered`:
    /// what its card held to resume with.
    pub fn record(
        &mut self,
        started: Instant,
        finished: Instant,
        rounds: usize,
        offered: Offered,
        result: Result<Outcome, Failure>,
    ) {
        let micros = finished.saturating_duration_since(started).as_micros().clamp(1, u128::from(MAX_US)) as u64;
        let measured = self.in_window(started);
        let second = self.second(finished);
        match &result {
            Ok(_) => {
                second.completed += 1;
                let _ = second.latency.record(micros.min(MAX_SECOND_US));
            }
            Err(_) => second.errors += 1,
        }
        if !measured {
            self.outside += 1;
            return;
        }
        match result {
            Ok(outcome) => {
                let _ = self.total.record(micros);
                *self.rounds.entry(rounds).or_default() += 1;
                self.session_offered += u64::from(offered == Offered::TlsSession);
                self.reauth_offered += u64::from(offered == Offered::ReauthIdentity);
                match outcome {
                    Outcome::Approved => self.approved += 1,
                    Outcome::Authenticated => self.authenticated += 1,
                    Outcome::RefusedByCard => self.refused += 1,
                    Outcome::Declined(code) => *self.declined.entry(code).or_default() += 1,
                }
            }
            Err(failure) => {
                let entry = self.errors.entry(failure.kind).or_default();
                entry.count += 1;
                if entry.example.is_empty() {
                    entry.example = failure.message;
                }
                if failure.in_doubt {
                    self.in_doubt += 1;
                }
            }
        }
    }

    /// The figures of the run.
    pub fn summary(&self) -> Summary {
        let completed = self.total.len();
        let errors: Vec<ErrorSummary> = self
            .errors
            .iter()
            .map(|(kind, e)| ErrorSummary { kind: (*kind).to_string(), count: e.count, example: e.example.clone() })
            .collect();
        let errors_total = errors.iter().map(|e| e.count).sum();
        let window = self.window_end - self.window_start;
        let window_secs = window.as_secs_f64();
        let timeline = self
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let start = Duration::from_secs(i as u64);
                SecondSummary {
                    second: i as u32,
                    measured: start + Duration::from_secs(1) > self.window_start && start < self.window_end,
                    completed: s.completed,
                    errors: s.errors,
                    p50_us: quantile(&s.latency, 0.5),
                    p99_us: quantile(&s.latency, 0.99),
                    max_us: s.latency.max(),
                }
            })
            .collect();
        Summary {
            window_secs,
            completed,
            throughput_per_s: if window_secs > 0.0 { completed as f64 / window_secs } else { 0.0 },
            latency_us: LatencySummary::of(&self.total),
            outcomes: Outcomes {
                approved: self.approved,
                authenticated: self.authenticated,
                refused_by_card: self.refused,
                declined_total: self.declined.values().sum(),
                declined: self
                    .declined
                    .iter()
                    .map(|(code, n)| (code.map_or_else(|| "no decline code".to_string(), describe_decline), *n))
                    .collect(),
            },
            errors_total,
            errors,
            in_doubt: self.in_doubt,
            round_trips: self.rounds.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            session_offered: self.session_offered,
            reauth_offered: self.reauth_offered,
            outside_window: self.outside,
            timeline,
            distribution: distribution(&self.total),
        }
    }
}

fn new_histogram<T: hdrhistogram::Counter>(max: u64, digits: u8) -> Histogram<T> {
    match Histogram::new_with_bounds(1, max, digits) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts.
        Err(_) => unreachable!("valid histogram bounds"),
    }
}

fn quantile<T: hdrhistogram::Counter>(h: &Histogram<T>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// The latency percentile curve: from p0 to the last percentile the sample
/// count resolves (at most p99.999), then the maximum.
fn distribution(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    let n = h.len() as f64;
    // x = -log10(1 - q), 0 to 5 in steps of 0.05.
    for step in 0..=100u32 {
        let tail = 10f64.powf(-f64::from(step) * 0.05);
        if tail * n < 1.0 {
            break;
        }
        let q = 1.0 - tail;
        points.push(PercentilePoint { percentile: q * 100.0, latency_us: h.value_at_quantile(q) });
    }
    points.push(PercentilePoint { percentile: 100.0, latency_us: h.max() });
    points
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The measurement window (the run less the warm-up).
    pub window_secs: f64,
    /// Conversations started in the window that reached an answer.
    pub completed: u64,
    pub throughput_per_s: f64,
    pub latency_us: LatencySummary,
    pub outcomes: Outcomes,
    pub errors_total: u64,
    pub errors: Vec<ErrorSummary>,
    /// Failed payments the server may have approved (a real terminal reverses them).
    pub in_doubt: u64,
    /// Completed conversations by the number of RADIUS round trips they took.
    pub round_trips: BTreeMap<String, u64>,
    /// Completed conversations whose card offered a stored TLS session (the
    /// server may still have made a full handshake); 0 for the SIM/AKA family.
    pub session_offered: u64,
    /// Completed conversations whose card began with a fast
    /// re-authentication identity (the server may still have made a full
    /// authentication); 0 for the TLS family.
    pub reauth_offered: u64,
    /// Conversations outside the window (warm-up, tail), not counted above.
    pub outside_window: u64,
    pub timeline: Vec<SecondSummary>,
    pub distribution: Vec<PercentilePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self { min: 0, mean: 0.0, stdev: 0.0, p50: 0, p90: 0, p99: 0, p99_9: 0, max: 0 };
        }
        Self {
            min: h.min(),
            mean: h.mean(),
            stdev: h.stdev(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcomes {
    pub approved: u64,
    pub authenticated: u64,
    pub refused_by_card: u64,
    pub declined_total: u64,
    /// By decline code (`51 Insufficient-Funds`).
    pub declined: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorSummary {
    pub kind: String,
    pub count: u64,
    /// The first error of this kind.
    pub example: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondSummary {
    /// Seconds since the run started (warm-up included).
    pub second: u32,
    /// Whether this second overlaps the measurement window.
    pub measured: bool,
    pub completed: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_window_and_keeps_the_timeline() {
        let origin = Instant::now();
        let mut r = Recorder::new(origin, Duration::from_secs(1), Duration::from_secs(2));
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let (session, reauth) = (Offered::TlsSession, Offered::ReauthIdentity);
        r.record(at(500), at(501), 2, session, Ok(Outcome::Approved)); // warm-up
        for i in 0..100 {
            let offered = if i % 4 != 0 { session } else { Offered::Nothing };
            r.record(at(1000 + i), at(1000 + i + 2), 2, offered, Ok(Outcome::Approved));
        }
        r.record(at(1500), at(1510), 2, reauth, Ok(Outcome::Declined(Some(51))));
        r.record(at(1600), at(1700), 1, session, Ok(Outcome::Declined(None)));
        let failure = Failure { kind: "timeout", message: "no answer".into(), in_doubt: true };
        r.record(at(2000), at(2900), 1, reauth, Err(failure.clone()));
        r.record(at(2100), at(2900), 1, session, Err(Failure { message: "second".into(), ..failure }));
        r.record(at(3000), at(3001), 2, reauth, Ok(Outcome::Approved)); // after the window
        let s = r.summary();
        assert_eq!(s.completed, 102);
        assert!((s.throughput_per_s - 51.0).abs() < 1e-9);
        assert_eq!(s.outcomes.approved, 100);
        assert_eq!(s.outcomes.declined_total, 2);
        assert_eq!(s.outcomes.declined["51 Insufficient-Funds"], 1);
        assert_eq!(s.outcomes.declined["no decline code"], 1);
        assert_eq!(s.errors_total, 2);
        assert_eq!(s.errors[0].kind, "timeout");
        assert_eq!(s.errors[0].example, "no answer");
        assert_eq!(s.in_doubt, 2);
        assert_eq!(s.round_trips, BTreeMap::from([("1".to_string(), 1), ("2".to_string(), 101)]));
        assert_eq!(s.outside_window, 2);
        // Completed in the window only: 75 of the 100 approvals and one decline.
        assert_eq!(s.session_offered, 76);
        // The decline; the failure and the one after the window do not count.
        assert_eq!(s.reauth_offered, 1);
        assert!((1999..=2001).contains(&s.latency_us.p50), "{}", s.latency_us.p50);
        assert!((99_000..=101_000).contains(&s.latency_us.max));
        assert_eq!(s.timeline.len(), 4);
        assert!(!s.timeline[0].measured && s.timeline[1].measured && !s.timeline[3].measured);
        assert_eq!(s.timeline[1].completed, 102);
        assert_eq!(s.timeline[2].errors, 2);
        let last = s.distribution.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert!(s.distribution.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
    }
}
