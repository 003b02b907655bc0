//! Progress of long operations (snapshot save, upload, download, restore): bytes done, rate
//! and time left.
//!
//! On a terminal ([`Progress::terminal_or_log`] with stderr a TTY) one line on stderr is
//! redrawn at most five times a second and ended with a newline when the operation ends;
//! otherwise a log line is written every [`LOG_INTERVAL`] and one at the end. Reporting never
//! fails the operation it reports on.

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// How often progress is logged when not drawn on a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often the terminal line is redrawn.
const REDRAW_INTERVAL: Duration = Duration::from_millis(200);

/// The progress of one operation over a known or unknown number of bytes.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_report: Instant,
    terminal: bool,
    finished: bool,
}

impl Progress {
    /// Drawn on stderr when it is a terminal, logged otherwise (foreground commands).
    pub fn terminal_or_log(label: impl Into<String>, total: Option<u64>) -> Self {
        Self::new(label.into(), total, std::io::stderr().is_terminal())
    }

    /// Always logged (work done inside the server).
    pub fn log_only(label: impl Into<String>, total: Option<u64>) -> Self {
        Self::new(label.into(), total, false)
    }

    fn new(label: String, total: Option<u64>, terminal: bool) -> Self {
        let now = Instant::now();
        Self {
            label,
            total,
            done: 0,
            started: now,
            last_report: now,
            terminal,
            finished: false,
        }
    }

    /// Counts `bytes` more done.
    pub fn advance(&mut self, bytes: u64) {
        self.done = self.done.saturating_add(bytes);
        let interval = if self.terminal {
            REDRAW_INTERVAL
        } else {
            LOG_INTERVAL
        };
        if self.last_report.elapsed() >= interval {
            self.last_report = Instant::now();
            self.report(false);
        }
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Reports the end (once).
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.report(true);
        }
    }

    fn report(&self, last: bool) {
        let line = describe(
            &self.label,
            self.done,
            self.total,
            self.started.elapsed(),
            last,
        );
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            if last {
                let _ = writeln!(stderr);
            }
            let _ = stderr.flush();
        } else {
            tracing::info!("{line}");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A terminal line left without its newline would be overwritten by the next output.
        if self.terminal && !self.finished {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `label: 120.5 MiB / 512.0 MiB (23%), 85.3 MiB/s, 5s left` (or `..., done in 6s`).
pub fn describe(
    label: &str,
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
    last: bool,
) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    let mut line = format!("{label}: {}", bytes(done));
    if let Some(total) = total.filter(|total| *total > 0) {
        let percent = (done as f64 / total as f64 * 100.0).min(100.0);
        line.push_str(&format!(" / {} ({percent:.0}%)", bytes(total)));
    }
    line.push_str(&format!(", {}/s", bytes(rate as u64)));
    if last {
        line.push_str(&format!(", done in {}", duration(elapsed)));
    } else if let Some(total) = total {
        if rate > 0.0 && total > done {
            let left = Duration::from_secs_f64((total - done) as f64 / rate);
            line.push_str(&format!(", {} left", duration(left)));
        }
    }
    line
}

/// `512 B`, `3.4 KiB`, `120.5 MiB`, `1.2 GiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `42s`, `3m05s`, `1h02m`.
fn duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// A reader that counts what passes through it.
pub struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R> ProgressReader<R> {
    pub fn new(inner: R, progress: Progress) -> Self {
        Self { inner, progress }
    }

    /// Reports the end; returns the bytes read.
    pub fn finish(mut self) -> u64 {
        self.progress.finish();
        self.progress.done()
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.progress.advance(read as u64);
        Ok(read)
    }
}

/// A writer that counts what passes through it.
pub struct ProgressWriter<W> {
    inner: W,
    progress: Progress,
}

impl<W> ProgressWriter<W> {
    pub fn new(inner: W, progress: Progress) -> Self {
        Self { inner, progress }
    }

    /// Reports the end; returns the bytes written.
    pub fn finish(mut self) -> u64 {
        self.progress.finish();
        self.progress.done()
    }
}

impl<W: Write> Write for ProgressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.progress.advance(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 + 512), "3.5 KiB");
        assert_eq!(bytes(120 * 1024 * 1024 + 512 * 1024), "120.5 MiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn a_line_says_done_total_rate_and_time_left() {
        let line = describe(
            "uploading snap",
            100 << 20,
            Some(400 << 20),
            Duration::from_secs(10),
            false,
        );
        assert_eq!(
            line,
            "uploading snap: 100.0 MiB / 400.0 MiB (25%), 10.0 MiB/s, 30s left"
        );
        let last = describe("restoring", 400 << 20, None, Duration::from_secs(125), true);
        assert_eq!(last, "restoring: 400.0 MiB, 3.2 MiB/s, done in 2m05s");
    }

    #[test]
    fn readers_and_writers_count_every_byte() {
        let mut reader = ProgressReader::new(&b"hello world"[..], Progress::log_only("r", None));
        let mut copied = Vec::new();
        let mut writer = ProgressWriter::new(&mut copied, Progress::log_only("w", Some(11)));
        std::io::copy(&mut reader, &mut writer).expect("copy");
        assert_eq!(writer.finish(), 11);
        assert_eq!(reader.finish(), 11);
        assert_eq!(copied, b"hello world");
    }
}
