//! Where guest output goes, and the ready marker spotted in it.

use std::fmt;
use std::io::Write;
use std::time::Instant;

use crate::sandbox::ConsoleFd;

/// The line a workload prints when it starts running.
pub const READY_MARKER: &[u8] = b"virtlab.ready";

/// Where guest console output is sent.
pub enum ConsoleSink {
    /// To this process's standard output, as it arrives.
    Stdout,
    /// To this process's standard error, as it arrives.
    Stderr,
    /// Kept in memory ([`Console::output`]).
    Capture,
    /// Counted, then dropped.
    Discard,
    /// To any writer.
    Writer(Box<dyn Write + Send>),
}

impl ConsoleSink {
    /// Where it writes, for the vCPU thread's seccomp filter.
    pub(crate) fn fd(&self) -> ConsoleFd {
        match self {
            ConsoleSink::Stdout => ConsoleFd::Fd(1),
            ConsoleSink::Stderr => ConsoleFd::Fd(2),
            ConsoleSink::Capture | ConsoleSink::Discard => ConsoleFd::Nowhere,
            ConsoleSink::Writer(_) => ConsoleFd::Unknown,
        }
    }
}

impl fmt::Debug for ConsoleSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConsoleSink::Stdout => "Stdout",
            ConsoleSink::Stderr => "Stderr",
            ConsoleSink::Capture => "Capture",
            ConsoleSink::Discard => "Discard",
            ConsoleSink::Writer(_) => "Writer",
        })
    }
}

/// The guest's console: the UART and the paravirtual port both write here.
#[derive(Debug)]
pub struct Console {
    sink: ConsoleSink,
    captured: Vec<u8>,
    line: Vec<u8>,
    ready_at: Option<Instant>,
    bytes: u64,
}

impl Console {
    /// A console writing to `sink`.
    pub fn new(sink: ConsoleSink) -> Console {
        Console { sink, captured: Vec::new(), line: Vec::new(), ready_at: None, bytes: 0 }
    }

    /// Takes guest output.
    pub fn write(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        // A console that cannot be written (a closed pipe) must not stop the
        // guest: its output is lost, the run goes on.
        let _ = match &mut self.sink {
            ConsoleSink::Stdout => std::io::stdout().write_all(bytes),
            ConsoleSink::Stderr => std::io::stderr().write_all(bytes),
            ConsoleSink::Capture => {
                self.captured.extend_from_slice(bytes);
                Ok(())
            }
            ConsoleSink::Discard => Ok(()),
            ConsoleSink::Writer(w) => w.write_all(bytes),
        };
        if self.ready_at.is_some() {
            return;
        }
        for &b in bytes {
            if b == b'\n' {
                if self.line.starts_with(READY_MARKER) {
                    self.ready_at = Some(Instant::now());
                    self.line.clear();
                    return;
                }
                self.line.clear();
            } else if self.line.len() < 64 {
                self.line.push(b);
            }
        }
    }

    /// Flushes the sink.
    pub fn flush(&mut self) {
        let _ = match &mut self.sink {
            ConsoleSink::Stdout => std::io::stdout().flush(),
            ConsoleSink::Stderr => std::io::stderr().flush(),
            ConsoleSink::Writer(w) => w.flush(),
            _ => Ok(()),
        };
    }

    /// When the ready marker line was complete.
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Captured output ([`ConsoleSink::Capture`] only).
    pub fn output(&self) -> &[u8] {
        &self.captured
    }

    /// Takes the captured output.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.captured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_the_ready_marker_once_the_line_is_complete() {
        let mut c = Console::new(ConsoleSink::Capture);
        c.write(b"boot\nvirtlab.rea");
        assert!(c.ready_at().is_none());
        c.write(b"dy pid=1");
        assert!(c.ready_at().is_none());
        c.write(b"\n");
        assert!(c.ready_at().is_some());
        assert_eq!(c.bytes(), 25);
        assert_eq!(c.output(), b"boot\nvirtlab.ready pid=1\n");
    }

    #[test]
    fn other_lines_are_not_the_marker() {
        let mut c = Console::new(ConsoleSink::Discard);
        c.write(b"xvirtlab.ready\n  virtlab.ready\n");
        assert!(c.ready_at().is_none());
        assert!(c.output().is_empty());
    }
}
