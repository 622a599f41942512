//! CPU time from /proc: of the server (`--server-pid`), of this process,
//! and of the whole machine. On a small machine the server and the load
//! generator share the cores, so CPU time per conversation is the fair
//! figure, not the rate alone.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const USER_HZ: u64 = 100;

/// utime + stime of a process, in clock ticks (fields 14 and 15 of
/// /proc/PID/stat, counted after the parenthesised command name, which may
/// contain spaces).
pub fn process_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    parse_process_ticks(&text)
}

fn parse_process_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    // After ") ": state(3) ppid(4) ... utime(14) stime(15).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) ticks of all CPUs from the first line of /proc/stat.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_ticks(&text)
}

fn parse_machine_ticks(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already in user.
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// A reading at the start of the measurement window.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    /// Ticks of each server process, in the order of the pids.
    server: Vec<Option<u64>>,
    own: Option<u64>,
    machine: Option<(u64, u64)>,
}

/// Takes a reading of this process, the machine and `server_pids`.
pub fn snapshot(server_pids: &[u32]) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        server: server_pids.iter().map(|pid| process_ticks(&format!("/proc/{pid}/stat"))).collect(),
        own: process_ticks("/proc/self/stat"),
        machine: machine_ticks(),
    }
}

/// CPU use of a process (or of several together) over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub pids: Vec<u32>,
    /// CPU seconds (user + system) used in the window.
    pub cpu_s: f64,
    /// CPU seconds of each process, in the order of `pids`.
    pub cpu_s_per_pid: Vec<f64>,
    /// Average cores busy: cpu_s / window.
    pub cores: f64,
    /// Milliseconds of CPU per completed conversation.
    pub ms_per_completed: Option<f64>,
}

/// CPU use over the window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// The processes of `--server-pid` together; None if not given, or if
    /// one of them could not be read at both ends of the window.
    pub server: Option<ProcessCpu>,
    pub load_generator: Option<ProcessCpu>,
    pub machine_cores: usize,
    /// Fraction of all cores busy (whole machine), 0 to 1.
    pub machine_busy: Option<f64>,
    /// Cores busy with anything but the server and the load generator
    /// (other processes, interrupts): a run that competed for the CPU shows it here.
    pub other_cores: Option<f64>,
    /// Resolution of the process figures (one clock tick).
    pub tick_ms: f64,
}

impl Snapshot {
    /// The CPU used since this snapshot, per completed conversation.
    pub fn since(&self, server_pids: &[u32], completed: u64) -> CpuReport {
        let now = snapshot(server_pids);
        let wall = now.at.saturating_duration_since(self.at).max(Duration::from_millis(1)).as_secs_f64();
        let process = |pids: &[u32], before: &[Option<u64>], after: &[Option<u64>]| {
            if pids.is_empty() {
                return None;
            }
            let per_pid: Vec<f64> = before
                .iter()
                .zip(after)
                .map(|(b, a)| a.zip(*b).and_then(|(a, b)| a.checked_sub(b)).map(|t| t as f64 / USER_HZ as f64))
                .collect::<Option<_>>()?;
            let cpu_s: f64 = per_pid.iter().sum();
            Some(ProcessCpu {
                pids: pids.to_vec(),
                cpu_s,
                cpu_s_per_pid: per_pid,
                cores: cpu_s / wall,
                ms_per_completed: (completed > 0).then(|| cpu_s * 1000.0 / completed as f64),
            })
        };
        let machine_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let machine_busy = match (self.machine, now.machine) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                Some(busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64)
            }
            _ => None,
        };
        let server = process(server_pids, &self.server, &now.server);
        let load_generator = process(&[std::process::id()], &[self.own], &[now.own]);
        let other_cores = machine_busy.map(|busy| {
            let ours = server.as_ref().map_or(0.0, |p| p.cores) + load_generator.as_ref().map_or(0.0, |p| p.cores);
            (busy * machine_cores as f64 - ours).max(0.0)
        });
        CpuReport { server, load_generator, machine_cores, machine_busy, other_cores, tick_ms: 1000.0 / USER_HZ as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_lines() {
        let line = "1234 (eapay server) S 1 1234 1234 0 -1 4194560 2870 0 0 0 157 42 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_process_ticks(line), Some(199));
        assert_eq!(parse_process_ticks("garbage"), None);
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 980)));
        assert!(process_ticks("/proc/self/stat").is_some());
    }
}
