//! A container's log in the format of Docker's default `json-file` log
//! driver: one JSON object per line of output, with the stream it came on
//! and the time it arrived,
//!
//! ```text
//! {"log":"hello\n","stream":"stdout","time":"2026-11-29T09:15:02.123456789Z"}
//! ```
//!
//! so that `logs --timestamps` can say when each line was written and
//! `logs` can keep stdout and stderr apart. A line longer than 16 KiB is
//! cut into several entries, as Docker does; an unfinished last line is
//! written when the stream ends.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The longest entry: a longer line is split.
const MAX_ENTRY: usize = 16 * 1024;

/// Which stream a line came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The text, with its newline (none for a cut or unfinished line).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it arrived, RFC 3339 with nanoseconds.
    pub time: String,
}

impl Entry {
    /// Whether it came on stderr.
    pub fn is_stderr(&self) -> bool {
        self.stream == "stderr"
    }
}

/// Appends a container's output to its log, line by line.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    /// The unfinished line of stdout and of stderr.
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (or creates) the log at `path` for appending.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogWriter { file, partial: [Vec::new(), Vec::new()] })
    }

    /// Output as it arrived on `stream`: each finished line becomes an entry.
    pub fn write(&mut self, stream: Stream, mut chunk: &[u8]) -> io::Result<()> {
        let i = stream as usize;
        while !chunk.is_empty() {
            let room = MAX_ENTRY - self.partial[i].len();
            let (take, ends_line) = match chunk.iter().take(room).position(|&b| b == b'\n') {
                Some(nl) => (nl + 1, true),
                None => (chunk.len().min(room), chunk.len() >= room),
            };
            self.partial[i].extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if ends_line {
                self.flush_partial(stream)?;
            }
        }
        Ok(())
    }

    /// Writes the unfinished lines out (the streams ended).
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush_partial(Stream::Stdout)?;
        self.flush_partial(Stream::Stderr)
    }

    fn flush_partial(&mut self, stream: Stream) -> io::Result<()> {
        let bytes = std::mem::take(&mut self.partial[stream as usize]);
        if bytes.is_empty() {
            return Ok(());
        }
        let entry = Entry {
            log: String::from_utf8_lossy(&bytes).into_owned(),
            stream: stream.name().into(),
            time: crate::time::rfc3339(SystemTime::now()),
        };
        let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write(2) per entry on an O_APPEND file: a reader never sees
        // half of one.
        self.file.write_all(&line)
    }
}

/// Reads the entries of the log at `path` from byte `from` on; returns
/// them and the offset after the last whole line. A torn or foreign line
/// is skipped.
pub fn read_from(path: &Path, from: u64) -> io::Result<(Vec<Entry>, u64)> {
    use std::io::Seek;
    let mut file = File::open(path)?;
    file.seek(io::SeekFrom::Start(from))?;
    let mut reader = BufReader::new(file);
    let (mut entries, mut offset) = (Vec::new(), from);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        offset += n as u64;
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            entries.push(e);
        }
    }
    Ok((entries, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(chunks: &[(Stream, &[u8])]) -> Vec<Entry> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = LogWriter::open(&path).unwrap();
        for (s, c) in chunks {
            w.write(*s, c).unwrap();
        }
        w.finish().unwrap();
        read_from(&path, 0).unwrap().0
    }

    #[test]
    fn lines_become_entries_per_stream() {
        let e = written(&[
            (Stream::Stdout, b"hel"),
            (Stream::Stderr, b"oops\n"),
            (Stream::Stdout, b"lo\nwor"),
            (Stream::Stdout, b"ld"),
        ]);
        let got: Vec<(&str, &str)> = e.iter().map(|e| (e.stream.as_str(), e.log.as_str())).collect();
        assert_eq!(got, [("stderr", "oops\n"), ("stdout", "hello\n"), ("stdout", "world")]);
        assert!(crate::time::parse_rfc3339(&e[0].time).is_some(), "{}", e[0].time);
    }

    #[test]
    fn a_long_line_is_cut() {
        let long = vec![b'x'; MAX_ENTRY * 2 + 10];
        let e = written(&[(Stream::Stdout, &long), (Stream::Stdout, b"\n")]);
        let lens: Vec<usize> = e.iter().map(|e| e.log.len()).collect();
        assert_eq!(lens, [MAX_ENTRY, MAX_ENTRY, 11]);
    }

    #[test]
    fn a_torn_last_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"t\"}\n{\"log\":").unwrap();
        let (e, off) = read_from(&path, 0).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(off, 43, "the offset stops after the last whole line");
    }
}
