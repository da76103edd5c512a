//! What the admin watches: a rows bar and a status line on a terminal; a
//! plain log line every few seconds without one (cron). Logs go through the
//! same place so that they never tear the bars.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::outcome::Outcome;
use crate::pacer::PaceStatus;
use crate::report::Summary;

/// The bars currently on screen, if any, for the log writer to step around.
fn active() -> &'static Mutex<Option<MultiProgress>> {
    static ACTIVE: OnceLock<Mutex<Option<MultiProgress>>> = OnceLock::new();
    ACTIVE.get_or_init(|| Mutex::new(None))
}

/// A `tracing` writer for stderr that hides the bars while it prints.
#[derive(Default)]
pub struct LogWriter {
    buf: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let print = || {
            let _ = io::stderr().lock().write_all(&buf);
        };
        let guard = active().lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(mp) => mp.suspend(print),
            None => print(),
        }
    }
}

/// Prints a line to stderr without tearing the bars.
pub fn eprint_line(line: &str) {
    let mut w = LogWriter::default();
    let _ = writeln!(w, "{line}");
}

/// The live view of a run.
pub struct Progress {
    mp: Option<MultiProgress>,
    bar: Option<ProgressBar>,
    status: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_plain: Instant,
    plain_every: Duration,
    quiet: bool,
    rate_samples: Vec<(Instant, u64)>,
}

impl Progress {
    /// Bars only when stderr is a terminal and not quiet.
    pub fn new(total: u64, quiet: bool) -> Progress {
        let tty = io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let (mp, bar, status) = if tty && !quiet {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            let bar = mp.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {pos}/{len} rows  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let status = mp.add(ProgressBar::new_spinner());
            status.set_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            *active().lock().unwrap_or_else(|e| e.into_inner()) = Some(mp.clone());
            (Some(mp), Some(bar), Some(status))
        } else {
            (None, None, None)
        };
        let now = Instant::now();
        Progress {
            mp,
            bar,
            status,
            total,
            started: now,
            last_plain: now,
            plain_every: Duration::from_secs(5),
            quiet,
            rate_samples: vec![(now, 0)],
        }
    }

    /// How often a plain progress line is logged without a terminal.
    pub fn set_plain_interval(&mut self, every: Duration) {
        self.plain_every = every.max(Duration::from_secs(1));
    }

    /// Requests per minute over the last few seconds.
    fn request_rate(&mut self, requests: u64) -> f64 {
        let now = Instant::now();
        self.rate_samples.push((now, requests));
        self.rate_samples
            .retain(|(t, _)| now.duration_since(*t) <= Duration::from_secs(10));
        let (t0, r0) = self.rate_samples[0];
        let secs = now.duration_since(t0).as_secs_f64();
        if secs < 0.5 {
            return 0.0;
        }
        (requests - r0) as f64 * 60.0 / secs
    }

    /// Refreshes the view; call on every finished row and on a timer.
    pub fn update(&mut self, summary: &Summary, pace: &PaceStatus, requests: u64) {
        let rate = self.request_rate(requests);
        let mut parts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| summary.get(**o) > 0)
            .map(|o| format!("{} {}", o, summary.get(*o)))
            .collect();
        if parts.is_empty() {
            parts.push("starting".into());
        }
        let mut line = parts.join(" · ");
        match pace.limit {
            Some(limit) => line.push_str(&format!(
                "  |  {rate:.0} req/min (Okta's limit: {limit} per window)"
            )),
            None => line.push_str(&format!("  |  {rate:.0} req/min")),
        }
        if let Some(w) = pace.waiting {
            line.push_str(&format!(
                "  |  waiting {}s for rate limit reset",
                w.as_secs().max(1)
            ));
        }
        if let (Some(bar), Some(status)) = (&self.bar, &self.status) {
            bar.set_position(summary.rows);
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{:.1} rows/s", summary.rows as f64 / secs));
            status.set_message(line);
        } else if !self.quiet && self.last_plain.elapsed() >= self.plain_every {
            self.last_plain = Instant::now();
            // Through the log, so a cron job's --log-file or a JSON log
            // gets it too.
            tracing::info!(
                rows_done = summary.rows,
                rows_total = self.total,
                elapsed_s = self.started.elapsed().as_secs(),
                "progress: {}/{} rows ({:.0}s) {}",
                summary.rows,
                self.total,
                self.started.elapsed().as_secs_f64(),
                line
            );
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        if let Some(status) = self.status.take() {
            status.finish();
        }
        if self.mp.take().is_some() {
            *active().lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
