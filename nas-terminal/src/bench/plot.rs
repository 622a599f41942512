//! `--plot FILE.svg`, written by hand: latency over time (p50 and p99 of
//! each second), throughput over time, and the latency distribution (the
//! percentile curve on the usual HDR axis, where 90%, 99%, 99.9%... are
//! equally spaced).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::report::Report;
use super::stats::SecondSummary;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 900.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const P50_COLOUR: &str = "#1f77b4";
const P99_COLOUR: &str = "#d62728";
const RATE_COLOUR: &str = "#2ca02c";
const ERROR_COLOUR: &str = "#ff7f0e";

/// Writes the plot of `report` to `path`.
pub fn write(report: &Report, path: &Path) -> Result<()> {
    std::fs::write(path, svg(report)).with_context(|| format!("--plot {}", path.display()))
}

/// A drawing area and the data ranges it maps.
struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    x_max: f64,
    y_max: f64,
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        self.x + (x / self.x_max).clamp(0.0, 1.0) * self.w
    }

    fn py(&self, y: f64) -> f64 {
        self.y + self.h - (y / self.y_max).clamp(0.0, 1.0) * self.h
    }

    /// Frame, title, y grid with labels, y axis title.
    fn frame(&self, out: &mut String, title: &str, y_title: &str, y_ticks: &[f64], y_label: impl Fn(f64) -> String) {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold">{}</text>"##,
            self.x,
            self.y - 10.0,
            escape(title)
        );
        for &t in y_ticks {
            let y = self.py(t);
            let _ = writeln!(
                out,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                self.x,
                self.x + self.w,
                self.x - 6.0,
                y + 4.0,
                escape(&y_label(t))
            );
        }
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##,
            self.x, self.y, self.w, self.h
        );
        let (cx, cy) = (self.x - 58.0, self.y + self.h / 2.0);
        let _ = writeln!(
            out,
            r##"<text x="{cx:.1}" y="{cy:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {cx:.1} {cy:.1})">{}</text>"##,
            escape(y_title)
        );
    }

    fn x_tick(&self, out: &mut String, x: f64, label: &str) {
        let px = self.px(x);
        let bottom = self.y + self.h;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{bottom:.1}" x2="{px:.1}" y2="{:.1}" stroke="#444"/><text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
            escape(label)
        );
    }

    fn x_title(&self, out: &mut String, title: &str) {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            self.x + self.w / 2.0,
            self.y + self.h + 36.0,
            escape(title)
        );
    }

    /// A line through the points; `None` breaks it.
    fn line(&self, out: &mut String, points: &[Option<(f64, f64)>], colour: &str, width: f64) {
        let mut d = String::new();
        let mut pen_down = false;
        for p in points {
            match p {
                Some((x, y)) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, self.px(*x), self.py(*y));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !d.is_empty() {
            let _ = writeln!(
                out,
                r##"<path d="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-linejoin="round"/>"##,
                d.trim_end()
            );
        }
    }

    fn legend(&self, out: &mut String, items: &[(&str, &str)]) {
        let mut x = self.x + self.w - 10.0;
        for (label, colour) in items.iter().rev() {
            let width = 30.0 + 7.0 * label.len() as f64;
            x -= width;
            let y = self.y + 16.0;
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
                x + 20.0,
                x + 25.0,
                y + 4.0,
                escape(label)
            );
        }
    }
}

/// The SVG document.
pub fn svg(report: &Report) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"##
    );
    let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let mode = if report.mode == "payment" { "full payments" } else { "authentication only" };
    let load = report.target_rate_per_s.map_or_else(|| "closed loop".to_string(), |r| format!("open loop {r}/s"));
    let method = super::report::method_title(&report.method);
    let resumption = report.resumption.as_ref().map_or_else(String::new, |r| format!(" (resumption {r})"));
    let title = format!(
        "EAP-{method}{resumption} {mode}, server {}, {} cards, {} terminals, {load}",
        report.servers.join(", "),
        report.cards,
        report.concurrency
    );
    let _ = writeln!(out, r##"<text x="{LEFT}" y="26" font-size="15">{}</text>"##, escape(&title));
    let summary = format!(
        "{}: {:.1} completed/s; latency p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; {} errors",
        report.started_at,
        s.throughput_per_s,
        s.latency_us.p50 as f64 / 1000.0,
        s.latency_us.p99 as f64 / 1000.0,
        s.latency_us.p99_9 as f64 / 1000.0,
        s.latency_us.max as f64 / 1000.0,
        s.errors_total
    );
    let _ = writeln!(out, r##"<text x="{LEFT}" y="46" font-size="13" fill="#444">{}</text>"##, escape(&summary));

    let w = WIDTH - LEFT - RIGHT;
    // The run itself: the conversations still finishing after the end would
    // draw a last, nearly empty second.
    let run_secs = (report.warmup_s + report.duration_s).ceil().max(1.0);
    let timeline: Vec<&SecondSummary> = s.timeline.iter().filter(|t| f64::from(t.second) < run_secs).collect();
    let seconds = run_secs;

    // Latency over time.
    let lat_max_ms = timeline.iter().map(|t| t.p99_us).max().unwrap_or(0) as f64 / 1000.0;
    let (lat_ticks, lat_top) = ticks(lat_max_ms);
    let lat = Panel { x: LEFT, y: 90.0, w, h: 220.0, x_max: seconds, y_max: lat_top };
    shade_warmup(&mut out, &lat, report);
    lat.frame(&mut out, "Latency over time (per second)", "latency (ms)", &lat_ticks, label);
    time_axis(&mut out, &lat, seconds);
    let point = |f: fn(&SecondSummary) -> u64| -> Vec<Option<(f64, f64)>> {
        timeline.iter().map(|t| (t.completed > 0).then(|| (f64::from(t.second) + 0.5, f(t) as f64 / 1000.0))).collect()
    };
    lat.line(&mut out, &point(|t| t.p99_us), P99_COLOUR, 2.0);
    lat.line(&mut out, &point(|t| t.p50_us), P50_COLOUR, 2.0);
    lat.legend(&mut out, &[("p50", P50_COLOUR), ("p99", P99_COLOUR)]);

    // Throughput over time.
    let rate_max = timeline.iter().map(|t| t.completed.max(t.errors)).max().unwrap_or(0) as f64;
    let (rate_ticks, rate_top) = ticks(rate_max);
    let rate = Panel { x: LEFT, y: 370.0, w, h: 160.0, x_max: seconds, y_max: rate_top };
    shade_warmup(&mut out, &rate, report);
    rate.frame(&mut out, "Throughput over time", "per second", &rate_ticks, |v| format!("{v:.0}"));
    time_axis(&mut out, &rate, seconds);
    let steps = |f: fn(&SecondSummary) -> u64| -> Vec<Option<(f64, f64)>> {
        timeline
            .iter()
            .flat_map(|t| {
                let v = f(t) as f64;
                [Some((f64::from(t.second), v)), Some((f64::from(t.second) + 1.0, v))]
            })
            .collect()
    };
    rate.line(&mut out, &steps(|t| t.completed), RATE_COLOUR, 2.0);
    if s.errors_total > 0 || timeline.iter().any(|t| t.errors > 0) {
        rate.line(&mut out, &steps(|t| t.errors), ERROR_COLOUR, 1.5);
        rate.legend(&mut out, &[("completed", RATE_COLOUR), ("errors", ERROR_COLOUR)]);
    } else {
        rate.legend(&mut out, &[("completed", RATE_COLOUR)]);
    }

    // Latency distribution: x = log10(1 / (1 - q)).
    let nines = |percentile: f64| -> f64 {
        let tail = (1.0 - percentile / 100.0).max(1e-6);
        -tail.log10()
    };
    // The axis ends at the first "nines" mark past the last percentile the
    // samples resolve; the maximum is drawn there.
    let resolved = s.distribution.iter().filter(|p| p.percentile < 100.0).map(|p| nines(p.percentile));
    let x_max = (resolved.fold(0.0, f64::max) + 0.01).ceil().clamp(2.0, 6.0);
    let dist_max = s.distribution.iter().map(|p| p.latency_us).max().unwrap_or(0) as f64 / 1000.0;
    let (dist_ticks, dist_top) = ticks(dist_max);
    let dist = Panel { x: LEFT, y: 600.0, w, h: 240.0, x_max, y_max: dist_top };
    dist.frame(&mut out, "Latency distribution (measured window)", "latency (ms)", &dist_ticks, label);
    for n in 0..=(x_max as u32) {
        let text = match n {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            _ => format!("99.{}%", "9".repeat(n as usize - 2)),
        };
        dist.x_tick(&mut out, f64::from(n), &text);
    }
    dist.x_title(&mut out, "percentile");
    let curve: Vec<Option<(f64, f64)>> =
        s.distribution.iter().map(|p| Some((nines(p.percentile).min(x_max), p.latency_us as f64 / 1000.0))).collect();
    dist.line(&mut out, &curve, P50_COLOUR, 2.0);
    let _ = writeln!(out, "</svg>");
    out
}

fn shade_warmup(out: &mut String, panel: &Panel, report: &Report) {
    if report.warmup_s <= 0.0 {
        return;
    }
    let x1 = panel.px(report.warmup_s);
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#eee"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#888">warm-up</text>"##,
        panel.x,
        panel.y,
        x1 - panel.x,
        panel.h,
        panel.x + 4.0,
        panel.y + panel.h - 4.0
    );
}

fn time_axis(out: &mut String, panel: &Panel, seconds: f64) {
    let (marks, _) = ticks(seconds);
    for t in marks {
        if t <= seconds {
            panel.x_tick(out, t, &format!("{t:.0}"));
        }
    }
    panel.x_title(out, "seconds since start");
}

/// Gridlines at 1, 2 or 5 times a power of ten, up to at least `max`;
/// returns them and the top of the axis.
fn ticks(max: f64) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|s| *s >= rough).unwrap_or(10.0 * power);
    let count = (max / step).ceil().max(1.0) as u32;
    let marks = (0..=count).map(|i| f64::from(i) * step).collect();
    (marks, f64::from(count) * step)
}

fn label(ms: f64) -> String {
    if ms >= 10.0 || ms == 0.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(9.3), (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 10.0));
        let (marks, top) = ticks(0.0);
        assert_eq!((marks.len(), top), (6, 1.0));
        assert_eq!(ticks(31.0).1, 40.0);
        assert!((ticks(0.37).1 - 0.4).abs() < 1e-9);
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
