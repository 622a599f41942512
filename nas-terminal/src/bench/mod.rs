//! `eapay-terminal bench`: the load generator. Many simulated cards and
//! terminals in one process (in-process card links), full payments or
//! `--auth-only`, for a fixed time at a fixed concurrency (closed loop) or
//! at a fixed rate (`--rate`, open loop); then a table of throughput,
//! latency percentiles (HDR histogram), outcomes and errors, optionally
//! JSON (`--json`) and an SVG plot (`--plot`).
//!
//! Methods: EAP-SIM, EAP-AKA, EAP-AKA', EAP-TLS and EAP-TTLS cards (e-card's
//! peers). `--resumption on` first makes one payment per card, not measured
//! ([`runner::prime`]: eapay-server issues a TLS session only with an
//! approval, so auth-only conversations alone would never resume, and a
//! SIM/AKA card gets its first re-authentication identity from a full
//! authentication), then lets each card resume in every conversation: the
//! TLS family offers the session it holds, the SIM/AKA family names itself
//! with its fast re-authentication identity (RFC 4186/4187 §5; the server
//! still makes a full authentication after every `[eap] fast_reauth_limit`
//! re-authentications). `--resumption off` makes every conversation a full
//! one: the card drops its stored session, or its pseudonym and
//! re-authentication identity, before each conversation. It is the default
//! for the SIM/AKA family: its in-memory cards keep the identities the
//! server hands out, so without it a run would drift into
//! re-authentications. The report says which, and how many conversations
//! offered a session or started with a re-authentication identity (whether
//! the server honoured it shows in its CPU time and the round trips).
//!
//! Transports: RADIUS over UDP (a socket per simulated terminal), RADIUS
//! over TLS (`--transport tls`: `--connections` connections per server,
//! shared by all terminals, at most 256 requests outstanding on each) and
//! Diameter over TCP or TLS (one connection per server, shared).
//!
//! When the server dies under load, each simulated terminal does what `pay`
//! does: it retransmits per `--timeout` and `--retries`, fails over to the
//! next `--server`, and ends the payment in doubt if no usable answer comes
//! (a payment is in doubt exactly when its payment attributes left the
//! terminal and no usable final answer came back; a Reject is an answer).
//! Nothing aborts the run: the next payment starts as usual, and once a
//! server is back on its address (RADIUS: the terminal's UDP socket stays
//! open; Diameter: the shared connection is re-established after
//! `--reconnect`) payments go through again. `--outcomes` and `--reversals`
//! ([`journal`]) make such a run reconcilable; the reversal store is the one
//! the user names, never a default file, because a plain benchmark owes no
//! reversals and should leave nothing behind in the working directory.
//!
//! - [`args`]: the command line and its checked [`args::Plan`].
//! - [`cards`]: card files from `--card-dir`, played in memory.
//! - [`runner`]: the workers.
//! - [`stats`]: what they record.
//! - [`cpu`]: CPU time from /proc (`--server-pid`).
//! - [`journal`]: what each terminal concluded (`--outcomes`) and the
//!   reversals it owes (`--reversals`).
//! - [`progress`], [`report`], [`plot`]: what the user sees.

mod args;
mod cards;
mod cpu;
mod journal;
mod plot;
mod progress;
mod report;
mod runner;
mod stats;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

pub use args::BenchArgs;

use aaa_proto::time::utc_ms as utc_time;

use crate::options::now_ms;

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> Result<()> {
    let plan = args.plan()?;
    let journal = journal::Journal::open(plan.outcomes.as_deref(), plan.reversals.as_deref())?;
    let cards = {
        let (dir, method, count) = (plan.card_dir.clone(), plan.method, plan.cards);
        tokio::task::spawn_blocking(move || cards::load(&dir, method, count)).await??
    };
    let (clients, links) = runner::clients(&plan).await?;
    let hands = runner::deal(cards, plan.concurrency);
    let (clients, hands, primed) = if plan.prime.is_some() {
        let what = if plan.method.is_tls_family() { "a TLS session" } else { "a fast re-authentication identity" };
        eprintln!("bench: priming: one payment per card, so that each holds {what}");
        let (clients, hands, primed) = runner::prime(&plan, clients, hands).await;
        eprintln!(
            "bench: primed {} cards in {:.1} s: {}, {} priming payments not approved",
            primed.cards,
            primed.seconds,
            primed.holding(plan.method.is_tls_family()),
            primed.not_approved
        );
        (clients, hands, Some(primed))
    } else {
        (clients, hands, None)
    };
    // Longest wait for the conversations under way at the deadline.
    let drain = Duration::from_secs(5) + plan.retransmit.timeout.saturating_mul(2);
    let server_pids = plan.server_pids.clone();
    let (json, svg) = (plan.json.clone(), plan.plot.clone());
    eprintln!(
        "bench: {} {} cards{}, {} terminals, {} for {} s{} against {}",
        plan.cards,
        plan.method.name(),
        if plan.resumption { " (resumption on)" } else { " (resumption off)" },
        plan.concurrency,
        plan.rate.map_or_else(|| "closed loop".to_string(), |r| format!("{r}/s")),
        plan.duration.as_secs_f64(),
        if plan.warmup.is_zero() { String::new() } else { format!(" after {} s warm-up", plan.warmup.as_secs_f64()) },
        plan.servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );

    let started_at = utc_time(now_ms());
    let origin = Instant::now();
    let shared = Arc::new(runner::Shared::new(plan, origin, journal));
    let progress = progress::Progress::start(shared.clone());
    // CPU over the measurement window, per conversation completed in it.
    let cpu = {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(shared.origin + shared.plan.warmup).await;
            let before = cpu::snapshot(&server_pids);
            let completed_before = shared.live.completed();
            tokio::time::sleep_until(shared.deadline).await;
            before.since(&server_pids, shared.live.completed().saturating_sub(completed_before))
        })
    };
    let mut workers = tokio::task::JoinSet::new();
    for (index, (client, hand)) in clients.into_iter().zip(hands).enumerate() {
        workers.spawn(runner::worker(shared.clone(), index, client, hand));
    }
    let cpu = cpu.await?;
    let all_done = async {
        while let Some(joined) = workers.join_next().await {
            joined?;
        }
        Ok::<(), tokio::task::JoinError>(())
    };
    // A journal must not lose a payment: one abandoned here might have been
    // approved with no outcome line and no reversal. Every conversation ends
    // by itself (retries, card timeout, round limit), so wait for all.
    let last = if shared.journal.is_some() { Ok(all_done.await) } else { tokio::time::timeout(drain, all_done).await };
    let cut_off = match last {
        Ok(joined) => {
            joined?;
            0
        }
        Err(_) => {
            let n = workers.len();
            workers.abort_all();
            n
        }
    };
    progress.finish();

    let summary = shared.recorder.lock().unwrap_or_else(|e| e.into_inner()).summary();
    let journal = shared.journal.as_ref().map(journal::Journal::finish).transpose()?;
    let mut report = report::Report::new(&shared.plan, started_at, summary, cpu, primed);
    report.journal = journal;
    report.radsec = report::RadsecReport::of(shared.plan.connections, &links);
    let mut table = report.table();
    if cut_off > 0 {
        table.push_str(&format!(
            "  note         {cut_off} conversation(s) still waiting {} s after the end were abandoned\n",
            drain.as_secs()
        ));
    }
    std::io::stdout().lock().write_all(table.as_bytes())?;
    if let Some(path) = &json {
        report.write_json(path)?;
    }
    if let Some(path) = &svg {
        plot::write(&report, path)?;
    }
    if let Some(j) = report.journal.as_ref().filter(|j| j.reversals_file.is_some() && j.reversals_not_stored > 0) {
        anyhow::bail!(
            "{} in-doubt payment(s) could NOT be stored in the reversal store (see the log): they may be approved",
            j.reversals_not_stored
        );
    }
    Ok(())
}
