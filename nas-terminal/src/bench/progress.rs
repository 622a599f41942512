//! The progress bar: time elapsed and the live rate, on stderr, drawn only
//! when stderr is a terminal.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::runner::Shared;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// The live rate is over this much of the recent past.
const RATE_SPAN: Duration = Duration::from_secs(1);

/// A running progress bar; [`Progress::finish`] removes it.
pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Starts the bar for the run of `shared`.
    pub fn start(shared: Arc<Shared>) -> Progress {
        let total = shared.deadline.saturating_duration_since(shared.origin);
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix:>9} [{bar:20}] {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        let ticker = tokio::spawn(tick(bar.clone(), shared));
        Progress { bar, ticker }
    }

    /// Stops and clears the bar.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

async fn tick(bar: ProgressBar, shared: Arc<Shared>) {
    let warmup_end = shared.origin + shared.plan.warmup;
    let mut recent: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let completed = shared.live.completed();
        recent.push_back((now, completed));
        while recent.len() > 2 && recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_SPAN) {
            recent.pop_front();
        }
        let rate = match (recent.front(), recent.back()) {
            (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => (c1 - c0) as f64 / t1.duration_since(*t0).as_secs_f64(),
            _ => 0.0,
        };
        let phase = if now < warmup_end {
            "warm-up"
        } else if now < shared.deadline {
            "measuring"
        } else {
            "draining"
        };
        let elapsed = now.saturating_duration_since(shared.origin);
        bar.set_message(format!(
            "{:>3}s {rate:>7.0}/s {completed} done {} errors",
            elapsed.as_secs(),
            shared.live.errors()
        ));
        bar.set_position(elapsed.as_millis() as u64);
        bar.set_prefix(phase);
    }
}
