//! The log: human lines or JSON objects, to stderr or to a file, with
//! phone numbers masked on the way out.
//!
//! Code that logs a number masks it itself (`phone::mask`); the writer
//! here is the second line of defence, for a number that slips in through
//! an Okta error text or a future log line: any `+` followed by seven or
//! more digits is cut to its last two digits before it is written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::cli::LogFormatArg;
use crate::config::LogSettings;
use crate::progress::LogWriter;

/// Masks `+` and 7 or more digits, keeping the last two digits.
pub fn scrub(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let digits = j - i - 1;
            if digits >= 7 {
                out.push_str(&line[copied..i]);
                out.push('+');
                out.push_str(&"*".repeat(digits - 2));
                out.push_str(&line[j - 2..j]);
                copied = j;
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out.push_str(&line[copied..]);
    out
}

/// A writer that scrubs what it is given, then hands it on whole.
pub struct Scrubbed<W: Write> {
    buf: Vec<u8>,
    inner: Option<W>,
}

impl<W: Write> Write for Scrubbed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Scrubbed<W> {
    fn drop(&mut self) {
        if let Some(mut w) = self.inner.take() {
            let text = scrub(&String::from_utf8_lossy(&self.buf));
            let _ = w.write_all(text.as_bytes());
            let _ = w.flush();
        }
    }
}

/// Stderr through the progress bars' writer, scrubbed.
#[derive(Clone, Copy)]
struct StderrMaker;

impl<'a> MakeWriter<'a> for StderrMaker {
    type Writer = Scrubbed<LogWriter>;
    fn make_writer(&'a self) -> Self::Writer {
        Scrubbed {
            buf: Vec::new(),
            inner: Some(LogWriter::default()),
        }
    }
}

/// The log file, shared, scrubbed.
#[derive(Clone)]
struct FileMaker(Arc<Mutex<File>>);

struct FileHandle(Arc<Mutex<File>>);

impl Write for FileHandle {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl<'a> MakeWriter<'a> for FileMaker {
    type Writer = Scrubbed<FileHandle>;
    fn make_writer(&'a self) -> Self::Writer {
        Scrubbed {
            buf: Vec::new(),
            inner: Some(FileHandle(self.0.clone())),
        }
    }
}

/// Appends to the log file, creating it readable by its owner only.
fn open_log(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_env("OKTA_PHONE_MIGRATE_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},hyper=warn,reqwest=warn,h2=warn,rustls=warn"
        ))
    })
}

type BoxedLayer<S> = Box<dyn tracing_subscriber::Layer<S> + Send + Sync>;

fn stderr_layer<S>(json: bool, ansi: bool, level: &str) -> BoxedLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let base = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(StderrMaker);
    if json {
        base.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter(level))
            .boxed()
    } else {
        base.with_ansi(ansi).with_filter(filter(level)).boxed()
    }
}

/// Sets up the log once per process. With a log file, the file gets the
/// log at the chosen level and stderr only warnings and errors.
pub fn init(s: &LogSettings) -> Result<(), String> {
    let level = match (s.quiet, s.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = s.format == LogFormatArg::Json;
    let result = match &s.file {
        None => tracing_subscriber::registry()
            .with(stderr_layer(json, ansi, level))
            .try_init(),
        Some(path) => {
            let file = open_log(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            let maker = FileMaker(Arc::new(Mutex::new(file)));
            let base = tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(maker);
            let file_layer = if json {
                base.json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_filter(filter(level))
                    .boxed()
            } else {
                base.with_filter(filter(level)).boxed()
            };
            let stderr_level = if s.quiet { "error" } else { "warn" };
            tracing_subscriber::registry()
                .with(file_layer)
                .with(stderr_layer(json, ansi, stderr_level))
                .try_init()
        }
    };
    // A second init (tests driving `run` twice in one process) keeps the
    // first subscriber; that is fine.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_and_ids_left_alone() {
        assert_eq!(
            scrub("row 3 (+12135550111 -> +12135550211): refused"),
            "row 3 (+*********11 -> +*********11): refused"
        );
        assert_eq!(
            scrub("user 00u1abc0000000000011 wait_ms=1234567"),
            "user 00u1abc0000000000011 wait_ms=1234567"
        );
        assert_eq!(scrub("+12 and +"), "+12 and +");
        assert_eq!(scrub("é+4412345678"), "é+********78");
    }
}
